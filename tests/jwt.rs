//! Token verification against hostile tokens: expired, not yet valid, wrong key,
//! `alg: none`, HS/RS confusion, wrong `iss`/`aud`, bad claims. Keys in `keys/` are
//! test-only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use venturekit_ws::auth::Verifier;
use venturekit_ws::config::JwtKey;
use venturekit_ws::{Config, ErrorCode};
use venturekit_ws_tests::*;

fn key_file(name: &str) -> String {
    std::fs::read_to_string(format!("{}/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn hs_verifier() -> Verifier {
    Verifier::new(
        &JwtKey::Secret(SECRET.as_bytes().to_vec()),
        &Config::default(),
    )
    .unwrap()
}

fn rsa_verifier() -> Verifier {
    Verifier::new(
        &JwtKey::PublicKeyPem(key_file("rsa_public.pem")),
        &Config::default(),
    )
    .unwrap()
}

fn ec_verifier() -> Verifier {
    Verifier::new(
        &JwtKey::PublicKeyPem(key_file("ec_public.pem")),
        &Config::default(),
    )
    .unwrap()
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(key_file("rsa_private.pem").as_bytes()).unwrap()
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(key_file("ec_private.pem").as_bytes()).unwrap()
}

fn claims() -> Value {
    json!({"sub": "alice", "exp": now() + 600, "email": "a@example.com", "tenantId": ["acme", "globex"]})
}

fn code(
    result: Result<venturekit_ws::auth::VerifiedToken, venturekit_ws::auth::AuthFailure>,
) -> ErrorCode {
    result.expect_err("the token must be refused").code
}

#[test]
fn valid_tokens_of_each_key_type() {
    let v = hs_verifier()
        .verify(&sign_hs256(&claims(), SECRET.as_bytes()))
        .unwrap();
    assert_eq!(v.sub, "alice");
    assert_eq!(v.email.as_deref(), Some("a@example.com"));
    assert_eq!(
        v.tenants,
        Some(vec!["acme".to_owned(), "globex".to_owned()])
    );

    let v = rsa_verifier()
        .verify(&sign(Algorithm::RS256, &rsa_key(), &claims()))
        .unwrap();
    assert_eq!(v.sub, "alice");
    let v = ec_verifier()
        .verify(&sign(Algorithm::ES256, &ec_key(), &claims()))
        .unwrap();
    assert_eq!(v.sub, "alice");
}

#[test]
fn expired_and_not_yet_valid() {
    let v = hs_verifier();
    let mut c = claims();
    c["exp"] = json!(now() - 60);
    assert_eq!(
        code(v.verify(&sign_hs256(&c, SECRET.as_bytes()))),
        ErrorCode::TokenExpired
    );
    // Within the 5 s leeway: still accepted.
    c["exp"] = json!(now() - 1);
    assert!(v.verify(&sign_hs256(&c, SECRET.as_bytes())).is_ok());
    let mut c = claims();
    c["nbf"] = json!(now() + 120);
    assert_eq!(
        code(v.verify(&sign_hs256(&c, SECRET.as_bytes()))),
        ErrorCode::InvalidToken
    );
}

#[test]
fn wrong_key_or_tampered_payload() {
    assert_eq!(
        code(hs_verifier().verify(&sign_hs256(&claims(), b"wrong-secret"))),
        ErrorCode::InvalidToken
    );
    // Re-sign nothing, just swap the payload for another user's.
    let token = sign_hs256(&claims(), SECRET.as_bytes());
    let parts: Vec<&str> = token.split('.').collect();
    let evil = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"sub": "admin", "exp": now() + 600}).to_string());
    let tampered = format!("{}.{}.{}", parts[0], evil, parts[2]);
    assert_eq!(
        code(hs_verifier().verify(&tampered)),
        ErrorCode::InvalidToken
    );
    // A token signed by another RSA key.
    let other = sign(Algorithm::HS256, &EncodingKey::from_secret(b"x"), &claims());
    assert_eq!(code(rsa_verifier().verify(&other)), ErrorCode::InvalidToken);
}

#[test]
fn alg_none_is_refused() {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    for alg in ["none", "None", "NONE"] {
        let token = format!(
            "{}.{}.",
            b64(json!({"alg": alg, "typ": "JWT"})),
            b64(claims())
        );
        assert_eq!(
            code(hs_verifier().verify(&token)),
            ErrorCode::InvalidToken,
            "{alg}"
        );
        assert_eq!(
            code(rsa_verifier().verify(&token)),
            ErrorCode::InvalidToken,
            "{alg}"
        );
    }
}

#[test]
fn hs_rs_confusion_is_refused() {
    // The classic attack: HS256 with the server's public key as the HMAC secret.
    let public_pem = key_file("rsa_public.pem");
    let forged = sign_hs256(&claims(), public_pem.as_bytes());
    assert_eq!(
        code(rsa_verifier().verify(&forged)),
        ErrorCode::InvalidToken
    );
    let ec_pem = key_file("ec_public.pem");
    let forged = sign_hs256(&claims(), ec_pem.as_bytes());
    assert_eq!(code(ec_verifier().verify(&forged)), ErrorCode::InvalidToken);
    // And an RS256 token does not pass an HS256 verifier.
    let rs = sign(Algorithm::RS256, &rsa_key(), &claims());
    assert_eq!(code(hs_verifier().verify(&rs)), ErrorCode::InvalidToken);
    // Nor an ES256 token an RSA verifier.
    let es = sign(Algorithm::ES256, &ec_key(), &claims());
    assert_eq!(code(rsa_verifier().verify(&es)), ErrorCode::InvalidToken);
}

#[test]
fn issuer_and_audience() {
    let config = {
        let mut c = Config::default();
        c.issuer = Some("https://issuer.example".into());
        c.audience = Some("venturekit".into());
        c
    };
    let v = Verifier::new(&JwtKey::Secret(SECRET.as_bytes().to_vec()), &config).unwrap();
    let mut c = claims();
    c["iss"] = json!("https://issuer.example");
    c["aud"] = json!("venturekit");
    assert!(v.verify(&sign_hs256(&c, SECRET.as_bytes())).is_ok());
    let mut wrong_iss = c.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    assert_eq!(
        code(v.verify(&sign_hs256(&wrong_iss, SECRET.as_bytes()))),
        ErrorCode::InvalidToken
    );
    let mut wrong_aud = c.clone();
    wrong_aud["aud"] = json!("other");
    assert_eq!(
        code(v.verify(&sign_hs256(&wrong_aud, SECRET.as_bytes()))),
        ErrorCode::InvalidToken
    );
    let mut missing = c.clone();
    missing.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        code(v.verify(&sign_hs256(&missing, SECRET.as_bytes()))),
        ErrorCode::InvalidToken
    );
}

#[test]
fn required_and_typed_claims() {
    let v = hs_verifier();
    let sign = |c: &Value| sign_hs256(c, SECRET.as_bytes());
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(code(v.verify(&sign(&no_exp))), ErrorCode::InvalidToken);
    let mut no_sub = claims();
    no_sub.as_object_mut().unwrap().remove("sub");
    assert_eq!(code(v.verify(&sign(&no_sub))), ErrorCode::InvalidToken);
    let mut empty_sub = claims();
    empty_sub["sub"] = json!("");
    assert_eq!(code(v.verify(&sign(&empty_sub))), ErrorCode::InvalidToken);
    let mut bad_tenant = claims();
    bad_tenant["tenantId"] = json!(42);
    assert_eq!(code(v.verify(&sign(&bad_tenant))), ErrorCode::InvalidToken);
    let mut bad_tenant_item = claims();
    bad_tenant_item["tenantId"] = json!(["acme", 1]);
    assert_eq!(
        code(v.verify(&sign(&bad_tenant_item))),
        ErrorCode::InvalidToken
    );
    // Garbage of every shape.
    for junk in [
        "",
        ".",
        "..",
        "a.b.c",
        "eyJ.eyJ.sig",
        "x".repeat(10_000).as_str(),
    ] {
        assert_eq!(code(v.verify(junk)), ErrorCode::InvalidToken, "{junk:.20}");
    }
}

#[test]
fn custom_tenant_claim_name() {
    let config = {
        let mut c = Config::default();
        c.tenant_claim = "https://example.com/orgs".into();
        c
    };
    let v = Verifier::new(&JwtKey::Secret(SECRET.as_bytes().to_vec()), &config).unwrap();
    let c = json!({"sub": "a", "exp": now() + 60, "https://example.com/orgs": "acme"});
    let t = v.verify(&sign_hs256(&c, SECRET.as_bytes())).unwrap();
    assert_eq!(t.tenants, Some(vec!["acme".to_owned()]));
}

#[test]
fn a_malformed_public_key_is_a_startup_error() {
    let err = Verifier::new(
        &JwtKey::PublicKeyPem("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----".into()),
        &Config::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("VK_WS_JWT_PUBLIC_KEY"), "{err}");
}

#[test]
fn secrets_and_tokens_never_appear_in_failure_messages() {
    let token = sign_hs256(&claims(), b"wrong-secret");
    let failure = hs_verifier().verify(&token).unwrap_err();
    assert!(!failure.message.contains(&token[..20]));
    assert!(!failure.message.contains(SECRET));
}

#[test]
fn a_configured_audience_must_be_present() {
    let config = {
        let mut c = Config::default();
        c.audience = Some("venturekit".into());
        c
    };
    let v = Verifier::new(&JwtKey::Secret(SECRET.as_bytes().to_vec()), &config).unwrap();
    let failure = v
        .verify(&sign_hs256(&claims(), SECRET.as_bytes()))
        .unwrap_err();
    assert_eq!(failure.code, ErrorCode::InvalidToken);
    assert!(failure.message.contains("`aud`"), "{}", failure.message);
}
