//! The hostile-input suite: what an attacker may send, and exactly what they get back.
//! Every case asserts the reply or close code, that user code did not run, and that the
//! connection records are unchanged where they must be. The server must stay up throughout.
//!
//! | # | attack | expected |
//! |---|---|---|
//! | 1 | malformed JSON, non-objects, empty frames | `bad_request`, `requestAction: null` |
//! | 2 | 10,000-deep nesting | `bad_request` (no stack overflow) |
//! | 3 | huge numbers | `bad_request` for typed fields, never a panic |
//! | 4 | wrong types for every field of `auth` | `bad_request` |
//! | 5 | unknown, huge and unicode action names | `unknown_action` |
//! | 6 | binary frames / frames over 128 KB | close 1003 / close 1009 |
//! | 7 | every broken token (truncated, bad base64, bad signature, `alg: none`, HS/RS confusion, expired, not yet valid, wrong iss/aud, oversized) | `invalid_token` / `token_expired` |
//! | 8 | tenant spoofing (token or message fields) | `forbidden_tenant`; fan-out stays in the token's tenant |
//! | 9 | re-auth as another user | `invalid_token`, identity kept |
//! | 10 | guarded messages before auth / after the window | `unauthorized` (then close after the window) |
//! | 11 | floods | `rate_limited`, user code not run |
//! | 12 | auth brute force | closed after the failure cap |
//! | 13 | secrets in logs | tokens and secrets never logged |

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use venturekit_ws::{App, Ctx, actions, ws_action};
use venturekit_ws_tests::*;

static TOUCHED: AtomicUsize = AtomicUsize::new(0);

#[derive(serde::Deserialize)]
struct Amount {
    #[allow(dead_code)]
    n: u32,
}

/// The action every hostile message aims at; it must never run for them.
#[ws_action("touch")]
async fn touch(_ctx: Ctx, _msg: Amount) {
    TOUCHED.fetch_add(1, Ordering::SeqCst);
}

async fn server() -> Server {
    start(chat_app(config()).actions(actions![touch])).await
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn expect_error(c: &mut Client, frame: &str, request_action: Value, code: &str) {
    c.send_text(frame).await;
    let reply = c.recv().await;
    let shown: String = frame.chars().take(60).collect();
    assert_eq!(reply["action"], "error", "{shown}: {reply}");
    assert_eq!(reply["requestAction"], request_action, "{shown}: {reply}");
    assert_eq!(reply["error"]["code"], code, "{shown}: {reply}");
}

async fn expect_auth_failure(c: &mut Client, frame: Value, code: &str) {
    c.send(frame.clone()).await;
    let reply = c.recv().await;
    assert_eq!(reply["action"], "auth", "{frame}: {reply}");
    assert_eq!(reply["success"], false, "{frame}: {reply}");
    assert_eq!(reply["error"]["code"], code, "{frame}: {reply}");
}

#[tokio::test]
async fn malformed_frames_deep_nesting_and_huge_numbers() {
    let server = server().await;
    let mut c = Client::authed(server.addr, "alice", &[]).await;
    let before = records(server.addr).await;
    for frame in [
        "{",
        "}",
        "{\"action\":",
        "[]",
        "[\"touch\"]",
        "true",
        "1",
        "\"touch\"",
        "null",
        "",
        " ",
        "\u{feff}{}",
        "{\"action\":\"touch\"} trailing",
    ] {
        expect_error(&mut c, frame, Value::Null, "bad_request").await;
    }
    // 10,000 levels of nesting, inside and outside the payload.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    expect_error(&mut c, &deep, Value::Null, "bad_request").await;
    let deep_field = format!(
        r#"{{"action":"touch","n":{}1{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    expect_error(&mut c, &deep_field, json!("touch"), "bad_request").await;
    // Huge numbers.
    expect_error(
        &mut c,
        r#"{"action":"touch","n":1e400}"#,
        json!("touch"),
        "bad_request",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"action":"touch","n":99999999999999999999999}"#,
        json!("touch"),
        "bad_request",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"action":"touch","n":-1}"#,
        json!("touch"),
        "bad_request",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"action":"touch","n":4294967296}"#,
        json!("touch"),
        "bad_request",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"action":"touch","n":"1"}"#,
        json!("touch"),
        "bad_request",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"action":"touch"}"#,
        json!("touch"),
        "bad_request",
    )
    .await;
    assert_eq!(TOUCHED.load(Ordering::SeqCst), 0);
    assert_eq!(records(server.addr).await, before);
    c.assert_no_pending().await;
}

#[tokio::test]
async fn wrong_types_for_every_auth_field() {
    let server = server().await;
    let mut c = Client::connect(server.addr).await;
    for token in [
        json!(1),
        json!(true),
        json!(null),
        json!([]),
        json!({}),
        json!(["a.b.c"]),
        json!(""),
    ] {
        expect_auth_failure(
            &mut c,
            json!({"action": "auth", "token": token}),
            "bad_request",
        )
        .await;
        // Fresh connection each time: the failure cap is tested separately.
        c = Client::connect(server.addr).await;
    }
    for tenant in [json!(1), json!(true), json!([]), json!({}), json!(["acme"])] {
        let frame =
            json!({"action": "auth", "token": token("alice", &["acme"]), "tenantId": tenant});
        expect_auth_failure(&mut c, frame, "bad_request").await;
        c = Client::connect(server.addr).await;
    }
    // Extra fields on built-ins are ignored.
    c.send(json!({"action": "ping", "extra": {"deep": [1, 2]}}))
        .await;
    assert_eq!(c.recv().await["action"], "pong");
    assert!(
        records(server.addr)
            .await
            .iter()
            .all(|r| r["authenticated"] == false)
    );
}

#[tokio::test]
async fn unknown_huge_and_unicode_action_names() {
    let server = server().await;
    let mut c = Client::authed(server.addr, "alice", &[]).await;
    for name in [
        "TOUCH", "touch ", "$default", "$connect", "ßü🙂", "../admin", "\u{0000}",
    ] {
        let frame = json!({"action": name, "n": 1}).to_string();
        expect_error(&mut c, &frame, json!(name), "unknown_action").await;
    }
    let long = "a".repeat(100_000);
    c.send(json!({"action": long})).await;
    let reply = c.recv().await;
    assert_eq!(reply["error"]["code"], "unknown_action");
    assert!(
        reply["error"]["message"].as_str().unwrap().len() < 200,
        "the message is bounded"
    );
    assert_eq!(TOUCHED.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn binary_empty_and_oversized_frames() {
    let server = server().await;
    let mut c = Client::connect(server.addr).await;
    c.send_message(Message::binary(Vec::<u8>::new())).await;
    assert_eq!(c.expect_close().await, Some(1003));
    let mut c = Client::connect(server.addr).await;
    c.send_text("").await;
    assert_eq!(c.recv().await["error"]["code"], "bad_request");
    c.send_text(&"x".repeat(128 * 1024 + 1)).await;
    assert_eq!(c.expect_close().await, Some(1009));
    Client::connect(server.addr).await.assert_no_pending().await;
}

#[tokio::test]
async fn every_broken_token() {
    let server = server().await;
    let good = token("alice", &[]);
    let parts: Vec<&str> = good.split('.').collect();
    let claims = json!({"sub": "alice", "exp": now() + 600});
    let header = |alg: &str| b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "truncated",
            good[..good.len() - 10].to_owned(),
            "invalid_token",
        ),
        (
            "two parts",
            format!("{}.{}", parts[0], parts[1]),
            "invalid_token",
        ),
        (
            "bad base64",
            format!("{}.!!!$$$.{}", parts[0], parts[2]),
            "invalid_token",
        ),
        (
            "not JSON inside",
            format!("{}.{}.{}", parts[0], b64(b"not json"), parts[2]),
            "invalid_token",
        ),
        (
            "wrong signature",
            sign_hs256(&claims, b"guessed-secret"),
            "invalid_token",
        ),
        (
            "signature stripped",
            format!("{}.{}.", parts[0], parts[1]),
            "invalid_token",
        ),
        (
            "alg none",
            format!("{}.{}.", header("none"), b64(claims.to_string().as_bytes())),
            "invalid_token",
        ),
        (
            "alg RS256 on an HS key",
            format!("{}.{}.{}", header("RS256"), parts[1], parts[2]),
            "invalid_token",
        ),
        (
            "expired",
            sign_hs256(
                &json!({"sub": "alice", "exp": now() - 300}),
                SECRET.as_bytes(),
            ),
            "token_expired",
        ),
        (
            "not yet valid",
            sign_hs256(
                &json!({"sub": "alice", "exp": now() + 600, "nbf": now() + 300}),
                SECRET.as_bytes(),
            ),
            "invalid_token",
        ),
        (
            "no exp",
            sign_hs256(&json!({"sub": "alice"}), SECRET.as_bytes()),
            "invalid_token",
        ),
        (
            "no sub",
            sign_hs256(&json!({"exp": now() + 600}), SECRET.as_bytes()),
            "invalid_token",
        ),
        (
            "numeric sub",
            sign_hs256(&json!({"sub": 42, "exp": now() + 600}), SECRET.as_bytes()),
            "invalid_token",
        ),
        (
            "oversized",
            sign_hs256(
                &json!({"sub": "alice", "exp": now() + 600, "pad": "x".repeat(9000)}),
                SECRET.as_bytes(),
            ),
            "invalid_token",
        ),
        (
            "random bytes",
            "\u{1}\u{2}\u{3}".to_owned(),
            "invalid_token",
        ),
    ];
    for (name, bad, code) in cases {
        let mut c = Client::connect(server.addr).await;
        c.send(json!({"action": "auth", "token": bad})).await;
        let reply = c.recv().await;
        assert_eq!(reply["success"], false, "{name}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{name}: {reply}");
        // The token is never echoed back.
        assert!(
            !reply.to_string().contains(&bad[..bad.len().min(40)]) || bad.len() < 8,
            "{name}"
        );
    }
    assert!(
        records(server.addr)
            .await
            .iter()
            .all(|r| r["authenticated"] == false)
    );
}

#[tokio::test]
async fn tenant_spoofing() {
    let server = server().await;
    let addr = server.addr;
    let mut mallory = Client::connect(addr).await;
    expect_auth_failure(
        &mut mallory,
        json!({"action": "auth", "token": token("mallory", &["acme"]), "tenantId": "globex"}),
        "forbidden_tenant",
    )
    .await;
    expect_auth_failure(
        &mut mallory,
        json!({"action": "auth", "token": token("mallory", &[]), "tenantId": "globex"}),
        "forbidden_tenant",
    )
    .await;
    // Tenant fields in messages change nothing: fan-out uses the record's tenant.
    let mut victim = Client::authed(addr, "victim", &["globex"]).await;
    let mut mallory = Client::authed(addr, "mallory", &["acme"]).await;
    mallory
        .send(json!({"action": "broadcast", "data": "x", "tenantId": "globex", "scope": "all"}))
        .await;
    assert_eq!(mallory.recv().await["from"], "mallory");
    mallory
        .send(json!({"action": "send", "to": "victim", "data": "x", "tenantId": "globex"}))
        .await;
    assert_eq!(
        mallory.recv().await,
        json!({"action": "send", "delivered": 0})
    );
    victim.assert_no_pending().await;
}

#[tokio::test]
async fn reauth_as_another_user_keeps_the_identity() {
    let server = server().await;
    let mut c = Client::authed(server.addr, "alice", &["acme"]).await;
    expect_auth_failure(
        &mut c,
        json!({"action": "auth", "token": token("mallory", &["acme"])}),
        "invalid_token",
    )
    .await;
    let rows = records(server.addr).await;
    assert_eq!(rows[0]["userId"], "alice");
    assert_eq!(rows[0]["tenantId"], "acme");
}

#[tokio::test]
async fn guarded_messages_before_auth_never_run_user_code() {
    let server = server().await;
    let mut c = Client::connect(server.addr).await;
    for frame in [
        json!({"action": "touch", "n": 1}),
        json!({"action": "broadcast", "data": 1}),
        json!({"action": "send", "to": "x", "data": 1}),
    ] {
        let action = frame["action"].clone();
        expect_error(&mut c, &frame.to_string(), action, "unauthorized").await;
    }
    assert_eq!(TOUCHED.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn floods_are_rate_limited_before_user_code() {
    let mut config = config();
    config.rate_limit_per_sec = 5;
    config.rate_limit_burst = 10;
    let calls = AtomicUsize::new(0);
    let server = start(chat_app(config)).await;
    let mut c = Client::authed(server.addr, "alice", &[]).await;
    // Up to 10 messages per 2 s window (the auth above counted as one).
    let mut codes = Vec::new();
    for i in 0..30 {
        c.send(json!({"action": "broadcast", "data": i})).await;
        let reply = c.recv().await;
        if reply["action"] == "message" {
            calls.fetch_add(1, Ordering::SeqCst);
        } else {
            codes.push(reply["error"]["code"].as_str().unwrap().to_owned());
            assert_eq!(reply["requestAction"], "broadcast");
        }
    }
    assert!(codes.iter().all(|c| c == "rate_limited"), "{codes:?}");
    // At most two windows' worth got through, however the 30 sends fell across windows.
    let through = calls.load(Ordering::SeqCst);
    assert!((9..=20).contains(&through), "{through} got through");
    assert!(codes.len() >= 10);
    // After the window, the connection works again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    c.send(json!({"action": "broadcast", "data": "later"}))
        .await;
    assert_eq!(c.recv().await["data"], "later");
}

#[tokio::test]
async fn auth_brute_force_is_cut_off() {
    let server = server().await;
    let mut c = Client::connect(server.addr).await;
    for attempt in 1..=5 {
        c.send(json!({"action": "auth", "token": sign_hs256(&json!({"sub": "root", "exp": now() + 60}), format!("guess-{attempt}").as_bytes())}))
            .await;
        let reply = c.recv().await;
        assert_eq!(reply["error"]["code"], "invalid_token", "attempt {attempt}");
    }
    assert!(
        c.expect_close().await.is_some(),
        "closed after the 5th failure"
    );
    assert!(
        records(server.addr).await.is_empty() || {
            tokio::time::sleep(Duration::from_millis(300)).await;
            records(server.addr).await.is_empty()
        }
    );
    // A valid token on a new connection still works.
    Client::authed(server.addr, "alice", &[]).await;
}

#[tokio::test]
async fn the_dev_secret_never_listens_beyond_loopback() {
    let mut config = venturekit_ws::Config::default();
    let err = App::new(config.clone())
        .local_server("0.0.0.0:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("dev secret"), "{err}");
    config.allow_dev_secret = true;
    App::new(config)
        .local_server("0.0.0.0:0".parse().unwrap())
        .await
        .unwrap();
}

#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

struct Sink;

#[async_trait::async_trait]
impl venturekit_ws::Delivery for Sink {
    async fn post(&self, _: &str, _: &str) -> Result<(), venturekit_ws::DeliveryError> {
        Ok(())
    }
    async fn close(&self, _: &str) -> Result<(), venturekit_ws::DeliveryError> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_and_secrets_never_reach_the_logs() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dispatcher = chat_app(config())
        .dispatcher(venturekit_ws::Mode::Local)
        .unwrap();
    let events = venturekit_ws::event::EventBuilder::default();
    let delivery: std::sync::Arc<dyn venturekit_ws::Delivery> = std::sync::Arc::new(Sink);
    let good = token("alice", &["acme"]);
    let forged = sign_hs256(&json!({"sub": "root", "exp": now() + 60}), b"guess");
    let expired = sign_hs256(
        &json!({"sub": "alice", "exp": now() - 600}),
        SECRET.as_bytes(),
    );
    dispatcher
        .handle(&events.connect("c=", 1), delivery.clone())
        .await;
    for t in [&forged, &expired, &good] {
        let body = json!({"action": "auth", "token": t}).to_string();
        dispatcher
            .handle(&events.message("c=", 1, &body), delivery.clone())
            .await;
    }
    dispatcher
        .handle(
            &events.message("c=", 1, r#"{"action":"broadcast","data":1}"#),
            delivery.clone(),
        )
        .await;
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("auth refused"),
        "the test captured nothing: {logs}"
    );
    for secret in [&good, &forged, &expired] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(
            !logs.contains(signature),
            "a token reached the logs:\n{logs}"
        );
    }
    assert!(!logs.contains(SECRET), "the secret reached the logs");
}

#[tokio::test]
async fn hostile_connection_ids_on_the_management_api() {
    let server = server().await;
    let mut victim = Client::connect(server.addr).await;
    let before = records(server.addr).await;
    let long = format!("/@connections/{}", "A".repeat(10_000));
    for path in [
        "/@connections/..%2F_vk%2Fconnections",
        "/@connections/%2e%2e%2f%2e%2e%2f",
        "/@connections/%252e%252e",
        "/@connections/%00%0d%0aX-Injected:%201",
        "/@connections/*",
        "/local/@connections/..%2F..%2F",
        long.as_str(),
    ] {
        for method in ["POST", "GET", "DELETE"] {
            let r = http(server.addr, method, path, br#"{"action":"spoofed"}"#).await;
            assert!(
                r.status == 410 || r.status == 404,
                "{method} {path}: {}",
                r.status
            );
            assert!(r.header("x-injected").is_none());
        }
    }
    // Nothing reached the real connection, and its record is untouched.
    victim.assert_no_pending().await;
    assert_eq!(records(server.addr).await, before);
}

#[tokio::test]
async fn tokens_with_an_unknown_kid() {
    use axum::routing::get;
    let rsa = std::fs::read_to_string(format!(
        "{}/keys/rsa_private.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(rsa.as_bytes()).unwrap();
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("real".into());
    let set = json!({ "keys": [jwk] });
    let app =
        axum::Router::new().route("/jwks", get(move || async move { axum::Json(set.clone()) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = {
        let mut c = venturekit_ws::Config::default();
        c.jwks_url = Some(format!("http://{jwks_addr}/jwks"));
        c
    };
    let server = start(chat_app(config)).await;
    let sign = |kid: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &json!({"sub": "alice", "exp": now() + 60}), &key).unwrap()
    };
    let mut c = Client::connect(server.addr).await;
    expect_auth_failure(
        &mut c,
        json!({"action": "auth", "token": sign("forged")}),
        "invalid_token",
    )
    .await;
    let reply = c.auth(&sign("real")).await;
    assert_eq!(reply["success"], true, "{reply}");
}
