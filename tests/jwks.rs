//! JWKS verification against a JWKS server on loopback: selection by `kid`, caching,
//! rotation, the refresh rate limit under a flood of bogus `kid`s, algorithms taken from
//! the key, symmetric keys ignored, Cognito's `token_use` and `client_id`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use venturekit_ws::auth::JwksVerifier;
use venturekit_ws::{App, Config, ErrorCode};
use venturekit_ws_tests::*;

fn key_file(name: &str) -> String {
    std::fs::read_to_string(format!("{}/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(key_file("rsa_private.pem").as_bytes()).unwrap()
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(key_file("ec_private.pem").as_bytes()).unwrap()
}

fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).unwrap()
}

#[derive(Clone)]
struct Jwks {
    url: String,
    body: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

impl Jwks {
    async fn start(keys: Vec<Value>) -> Jwks {
        let body = Arc::new(Mutex::new(json!({ "keys": keys })));
        let hits = Arc::new(AtomicUsize::new(0));
        let state = (body.clone(), hits.clone());
        let app = Router::new()
            .route(
                "/.well-known/jwks.json",
                get(
                    |State((body, hits)): State<(Arc<Mutex<Value>>, Arc<AtomicUsize>)>| async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        axum::Json(body.lock().unwrap().clone())
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Jwks {
            url: format!("http://{addr}/.well-known/jwks.json"),
            body,
            hits,
        }
    }

    fn set(&self, keys: Vec<Value>) {
        *self.body.lock().unwrap() = json!({ "keys": keys });
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn config(&self) -> Config {
        let mut config = Config::default();
        config.jwks_url = Some(self.url.clone());
        config.jwks_min_refresh = Duration::from_secs(1);
        config
    }
}

fn sign(key: &EncodingKey, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn claims() -> Value {
    json!({"sub": "alice", "exp": now() + 600, "tenantId": "acme"})
}

#[tokio::test]
async fn keys_are_selected_by_kid_and_cached() {
    let jwks = Jwks::start(vec![
        jwk(&rsa(), Algorithm::RS256, "k1"),
        jwk(&ec(), Algorithm::ES256, "k2"),
    ])
    .await;
    let v = JwksVerifier::new(&jwks.url, &jwks.config()).unwrap();
    assert_eq!(jwks.hits(), 0, "nothing is fetched before the first token");
    let t = v
        .verify(&sign(&rsa(), Algorithm::RS256, Some("k1"), &claims()))
        .await
        .unwrap();
    assert_eq!(t.sub, "alice");
    let t = v
        .verify(&sign(&ec(), Algorithm::ES256, Some("k2"), &claims()))
        .await
        .unwrap();
    assert_eq!(t.tenants, Some(vec!["acme".to_owned()]));
    assert_eq!(jwks.hits(), 1);
    // The RSA key under the EC kid: refused.
    let wrong = sign(&rsa(), Algorithm::RS256, Some("k2"), &claims());
    assert_eq!(
        v.verify(&wrong).await.unwrap_err().code,
        ErrorCode::InvalidToken
    );
    // No kid with two keys in the set: refused.
    let no_kid = sign(&rsa(), Algorithm::RS256, None, &claims());
    assert_eq!(
        v.verify(&no_kid).await.unwrap_err().code,
        ErrorCode::InvalidToken
    );
}

#[tokio::test]
async fn rotation_is_picked_up_and_bogus_kids_cannot_hammer_the_provider() {
    let jwks = Jwks::start(vec![jwk(&rsa(), Algorithm::RS256, "old")]).await;
    let v = JwksVerifier::new(&jwks.url, &jwks.config()).unwrap();
    v.verify(&sign(&rsa(), Algorithm::RS256, Some("old"), &claims()))
        .await
        .unwrap();
    assert_eq!(jwks.hits(), 1);

    // A flood of unknown kids: at most one refresh per interval. (Signed with a cheap
    // key: the kid lookup fails before any signature check.)
    let cheap = EncodingKey::from_secret(b"x");
    let started = std::time::Instant::now();
    for i in 0..200 {
        let bogus = sign(
            &cheap,
            Algorithm::HS256,
            Some(&format!("bogus-{i}")),
            &claims(),
        );
        let failure = v.verify(&bogus).await.unwrap_err();
        assert_eq!(failure.code, ErrorCode::InvalidToken);
    }
    let allowed = 2 + started.elapsed().as_secs() as usize;
    assert!(
        jwks.hits() <= allowed,
        "{} fetches for 200 bogus kids",
        jwks.hits()
    );

    // The provider rotates to a new key.
    jwks.set(vec![jwk(&ec(), Algorithm::ES256, "new")]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = sign(&ec(), Algorithm::ES256, Some("new"), &claims());
    assert_eq!(v.verify(&fresh).await.unwrap().sub, "alice");
    // The retired key no longer verifies.
    let retired = sign(&rsa(), Algorithm::RS256, Some("old"), &claims());
    assert_eq!(
        v.verify(&retired).await.unwrap_err().code,
        ErrorCode::InvalidToken
    );
}

#[tokio::test]
async fn the_algorithm_comes_from_the_key() {
    // The JWK names RS256: an RS512 or PS256 signature by the same key is refused.
    let jwks = Jwks::start(vec![jwk(&rsa(), Algorithm::RS256, "k1")]).await;
    let v = JwksVerifier::new(&jwks.url, &jwks.config()).unwrap();
    for alg in [Algorithm::RS512, Algorithm::PS256] {
        let t = sign(&rsa(), alg, Some("k1"), &claims());
        assert_eq!(
            v.verify(&t).await.unwrap_err().code,
            ErrorCode::InvalidToken,
            "{alg:?}"
        );
    }
    // HS256 with the public modulus as the secret: refused.
    let public = key_file("rsa_public.pem");
    let t = sign(
        &EncodingKey::from_secret(public.as_bytes()),
        Algorithm::HS256,
        Some("k1"),
        &claims(),
    );
    assert_eq!(
        v.verify(&t).await.unwrap_err().code,
        ErrorCode::InvalidToken
    );
}

#[tokio::test]
async fn symmetric_keys_in_a_jwks_are_ignored() {
    use base64::Engine;
    let secret = b"shared-secret-in-a-public-set";
    let oct = json!({"kty": "oct", "kid": "sym", "alg": "HS256",
        "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)});
    let jwks = Jwks::start(vec![oct, jwk(&rsa(), Algorithm::RS256, "k1")]).await;
    let v = JwksVerifier::new(&jwks.url, &jwks.config()).unwrap();
    let t = sign(
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
        Some("sym"),
        &claims(),
    );
    assert_eq!(
        v.verify(&t).await.unwrap_err().code,
        ErrorCode::InvalidToken
    );
}

#[tokio::test]
async fn cognito_token_use_and_client_id() {
    let jwks = Jwks::start(vec![jwk(&rsa(), Algorithm::RS256, "k1")]).await;
    let issuer = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example";
    let mut config = jwks.config();
    config.issuer = Some(issuer.into());
    config.audience = Some("client123".into());
    config.token_use = Some("access".into());
    let v = JwksVerifier::new(&jwks.url, &config).unwrap();
    let access = |token_use: &str, client_id: &str| json!({"sub": "alice", "exp": now() + 600, "iss": issuer, "token_use": token_use, "client_id": client_id});
    let ok = sign(
        &rsa(),
        Algorithm::RS256,
        Some("k1"),
        &access("access", "client123"),
    );
    assert_eq!(v.verify(&ok).await.unwrap().sub, "alice");
    let id_token = json!({"sub": "alice", "exp": now() + 600, "iss": issuer, "token_use": "id", "aud": "client123"});
    let t = sign(&rsa(), Algorithm::RS256, Some("k1"), &id_token);
    assert_eq!(
        v.verify(&t).await.unwrap_err().code,
        ErrorCode::InvalidToken
    );
    let t = sign(
        &rsa(),
        Algorithm::RS256,
        Some("k1"),
        &access("access", "other-client"),
    );
    assert_eq!(
        v.verify(&t).await.unwrap_err().code,
        ErrorCode::InvalidToken
    );
}

#[tokio::test]
async fn an_unreachable_jwks_is_an_internal_failure_not_a_crash() {
    let config = {
        let mut c = Config::default();
        c.jwks_url = Some("http://127.0.0.1:9/jwks.json".into());
        c
    };
    let v = JwksVerifier::new("http://127.0.0.1:9/jwks.json", &config).unwrap();
    let t = sign(&rsa(), Algorithm::RS256, Some("k1"), &claims());
    assert_eq!(v.verify(&t).await.unwrap_err().code, ErrorCode::Internal);
}

#[tokio::test]
async fn the_local_server_authenticates_with_a_jwks() {
    let jwks = Jwks::start(vec![jwk(&rsa(), Algorithm::RS256, "k1")]).await;
    let server = start(chat_app(jwks.config())).await;
    let mut c = Client::connect(server.addr).await;
    let reply = c
        .auth(&sign(&rsa(), Algorithm::RS256, Some("k1"), &claims()))
        .await;
    assert_eq!(
        reply,
        json!({"action": "auth", "success": true, "userId": "alice", "tenantId": "acme"})
    );
    let _ = App::new(jwks.config());
}

#[test]
fn plain_http_jwks_urls_are_refused_beyond_loopback() {
    let err = Config::from_lookup(|k| {
        (k == "VK_WS_JWKS_URL").then(|| "http://example.com/jwks.json".to_owned())
    })
    .unwrap_err();
    assert!(err.to_string().contains("https"), "{err}");
    assert!(
        Config::from_lookup(
            |k| (k == "VK_WS_JWKS_URL").then(|| "https://example.com/jwks.json".to_owned())
        )
        .is_ok()
    );
}
