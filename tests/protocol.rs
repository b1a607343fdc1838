//! The wire protocol (docs/PROTOCOL.md), driven with real WebSocket clients against
//! the local server on an ephemeral loopback port.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use venturekit_ws::{Ctx, WsError, actions, ws_action};
use venturekit_ws_tests::*;

fn error_code(frame: &Value) -> &str {
    frame["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn ping_works_before_auth_and_returns_rfc3339_millis() {
    let server = start_chat().await;
    let mut c = Client::connect(server.addr).await;
    c.send(json!({"action": "ping"})).await;
    let pong = c.recv().await;
    assert_eq!(pong["action"], "pong");
    let ts = pong["timestamp"].as_str().unwrap();
    // 2026-11-26T12:00:00.000Z
    assert_eq!(ts.len(), 24, "{ts}");
    assert_eq!(&ts[10..11], "T");
    assert_eq!(&ts[19..20], ".");
    assert!(ts.ends_with('Z'));
    assert_eq!(pong.as_object().unwrap().len(), 2);
}

#[tokio::test]
async fn guarded_actions_refuse_unauthenticated_connections() {
    let server = start_chat().await;
    let mut c = Client::connect(server.addr).await;
    c.send(json!({"action": "broadcast", "data": "hi"})).await;
    let reply = c.recv().await;
    assert_eq!(reply["action"], "error");
    assert_eq!(reply["requestAction"], "broadcast");
    assert_eq!(error_code(&reply), "unauthorized");
    // Still open: the auth window has not passed.
    c.assert_no_pending().await;
}

#[tokio::test]
async fn auth_success_without_and_with_tenant() {
    let server = start_chat().await;
    let mut c = Client::connect(server.addr).await;
    let reply = c.auth(&token("alice", &[])).await;
    assert_eq!(
        reply,
        json!({"action": "auth", "success": true, "userId": "alice"})
    );

    // One tenant in the claim and none requested: that tenant is joined.
    let mut d = Client::connect(server.addr).await;
    let reply = d.auth(&token("bob", &["acme"])).await;
    assert_eq!(
        reply,
        json!({"action": "auth", "success": true, "userId": "bob", "tenantId": "acme"})
    );

    // Several tenants: the requested one must be listed.
    let mut e = Client::connect(server.addr).await;
    e.send(json!({"action": "auth", "token": token("carol", &["acme", "globex"]), "tenantId": "globex"}))
        .await;
    let reply = e.recv().await;
    assert_eq!(reply["tenantId"], "globex");

    // Several tenants and none requested: no tenant.
    let mut f = Client::connect(server.addr).await;
    let reply = f.auth(&token("dan", &["acme", "globex"])).await;
    assert_eq!(
        reply,
        json!({"action": "auth", "success": true, "userId": "dan"})
    );

    // The record carries the identity, with the table's field names.
    let rows = records(server.addr).await;
    let bob = rows.iter().find(|r| r["userId"] == "bob").unwrap();
    assert_eq!(bob["authenticated"], true);
    assert_eq!(bob["tenantId"], "acme");
    assert!(bob["connectedAt"].as_i64().unwrap() > 1_600_000_000_000);
    let ttl = bob["ttl"].as_i64().unwrap();
    let now = now() as i64;
    assert!(
        ttl > now + 7000 && ttl <= now + 7200,
        "ttl {ttl}, now {now}"
    );
}

#[tokio::test]
async fn email_claim_is_stored() {
    let server = start_chat().await;
    let mut c = Client::connect(server.addr).await;
    let reply = c
        .auth(&token_with("erin", &[], Some("erin@example.com")))
        .await;
    assert_eq!(reply["success"], true);
    let rows = records(server.addr).await;
    assert_eq!(rows[0]["email"], "erin@example.com");
}

async fn auth_failure(addr: std::net::SocketAddr, message: Value) -> Value {
    let mut c = Client::connect(addr).await;
    c.send(message).await;
    let reply = c.recv().await;
    assert_eq!(reply["action"], "auth", "{reply}");
    assert_eq!(reply["success"], false, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    // A failed auth leaves the connection unauthenticated.
    c.send(json!({"action": "broadcast", "data": 1})).await;
    assert_eq!(error_code(&c.recv().await), "unauthorized");
    reply
}

#[tokio::test]
async fn every_auth_failure_code() {
    let server = start_chat().await;
    let addr = server.addr;
    let code = |v: Value| v["error"]["code"].as_str().unwrap().to_owned();

    // bad_request: missing or ill-typed token / tenantId
    let r = auth_failure(addr, json!({"action": "auth"})).await;
    assert_eq!(code(r), "bad_request");
    let r = auth_failure(addr, json!({"action": "auth", "token": 42})).await;
    assert_eq!(code(r), "bad_request");
    let r = auth_failure(addr, json!({"action": "auth", "token": ""})).await;
    assert_eq!(code(r), "bad_request");
    let r = auth_failure(
        addr,
        json!({"action": "auth", "token": token("a", &[]), "tenantId": 7}),
    )
    .await;
    assert_eq!(code(r), "bad_request");

    // invalid_token: malformed, wrong signature, alg none
    let r = auth_failure(addr, json!({"action": "auth", "token": "not.a.jwt"})).await;
    assert_eq!(code(r), "invalid_token");
    let forged = sign_hs256(
        &json!({"sub": "alice", "exp": now() + 600}),
        b"another-secret",
    );
    let r = auth_failure(addr, json!({"action": "auth", "token": forged})).await;
    assert_eq!(code(r), "invalid_token");
    let none = unsigned_token(&json!({"sub": "alice", "exp": now() + 600}));
    let r = auth_failure(addr, json!({"action": "auth", "token": none})).await;
    assert_eq!(code(r), "invalid_token");

    // token_expired
    let expired = sign_hs256(
        &json!({"sub": "alice", "exp": now() - 120}),
        SECRET.as_bytes(),
    );
    let r = auth_failure(addr, json!({"action": "auth", "token": expired})).await;
    assert_eq!(code(r), "token_expired");

    // forbidden_tenant: not in the claim, or no claim at all
    let r = auth_failure(
        addr,
        json!({"action": "auth", "token": token("alice", &["acme"]), "tenantId": "globex"}),
    )
    .await;
    assert_eq!(code(r), "forbidden_tenant");
    let r = auth_failure(
        addr,
        json!({"action": "auth", "token": token("alice", &[]), "tenantId": "acme"}),
    )
    .await;
    assert_eq!(code(r), "forbidden_tenant");

    // The server is still up.
    Client::connect(addr).await.assert_no_pending().await;
}

fn unsigned_token(claims: &Value) -> String {
    use base64::Engine;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}

#[tokio::test]
async fn issuer_and_audience_are_enforced_when_configured() {
    let mut config = config();
    config.issuer = Some("https://issuer.example".into());
    config.audience = Some("venturekit".into());
    let server = start(chat_app(config)).await;
    let claims =
        |iss: &str, aud: &str| json!({"sub": "alice", "exp": now() + 600, "iss": iss, "aud": aud});
    let good = sign_hs256(
        &claims("https://issuer.example", "venturekit"),
        SECRET.as_bytes(),
    );
    let mut c = Client::connect(server.addr).await;
    assert_eq!(c.auth(&good).await["success"], true);

    for bad in [
        claims("https://evil.example", "venturekit"),
        claims("https://issuer.example", "someone-else"),
    ] {
        let t = sign_hs256(&bad, SECRET.as_bytes());
        let r = auth_failure(server.addr, json!({"action": "auth", "token": t})).await;
        assert_eq!(r["error"]["code"], "invalid_token", "{bad}");
    }
}

#[tokio::test]
async fn reauth_same_user_refreshes_other_user_is_refused() {
    let server = start_chat().await;
    let mut alice = Client::authed(server.addr, "alice", &[]).await;
    // Same user: a fresh token refreshes the session.
    let again = alice.auth(&token("alice", &[])).await;
    assert_eq!(
        again,
        json!({"action": "auth", "success": true, "userId": "alice"})
    );
    // Another user: refused, identity kept.
    let other = alice.auth(&token("mallory", &[])).await;
    assert_eq!(other["success"], false);
    assert_eq!(other["error"]["code"], "invalid_token");
    alice
        .send(json!({"action": "broadcast", "data": "still me"}))
        .await;
    let msg = alice.recv().await;
    assert_eq!(
        msg,
        json!({"action": "message", "from": "alice", "data": "still me"})
    );
    let rows = records(server.addr).await;
    assert_eq!(rows[0]["userId"], "alice");
}

#[tokio::test]
async fn bad_input_gets_bad_request_or_unknown_action() {
    let server = start_chat().await;
    let mut c = Client::authed(server.addr, "alice", &[]).await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("{not json", Value::Null, "bad_request"),
        ("[1,2,3]", Value::Null, "bad_request"),
        ("\"just a string\"", Value::Null, "bad_request"),
        ("42", Value::Null, "bad_request"),
        ("null", Value::Null, "bad_request"),
        ("", Value::Null, "bad_request"),
        (r#"{"data":1}"#, Value::Null, "bad_request"),
        (r#"{"action":7}"#, Value::Null, "bad_request"),
        (r#"{"action":null}"#, Value::Null, "bad_request"),
        (
            r#"{"action":"send","to":5,"data":1}"#,
            json!("send"),
            "bad_request",
        ),
        (
            r#"{"action":"send","data":1}"#,
            json!("send"),
            "bad_request",
        ),
        (
            r#"{"action":"broadcast"}"#,
            json!("broadcast"),
            "bad_request",
        ),
        (r#"{"action":"nope"}"#, json!("nope"), "unknown_action"),
        (
            r#"{"action":"Broadcast","data":1}"#,
            json!("Broadcast"),
            "unknown_action",
        ),
    ];
    for (text, request_action, code) in cases {
        c.send_text(text).await;
        let reply = c.recv().await;
        assert_eq!(reply["action"], "error", "{text}: {reply}");
        assert_eq!(reply["requestAction"], request_action, "{text}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{text}: {reply}");
        assert!(reply["error"]["message"].is_string());
    }
    // The message names the offending field.
    c.send_text(r#"{"action":"send","to":5,"data":1}"#).await;
    let reply = c.recv().await;
    assert!(
        reply["error"]["message"].as_str().unwrap().contains("`to`"),
        "{reply}"
    );
    c.send_text(r#"{"action":"send","data":1}"#).await;
    let reply = c.recv().await;
    assert!(
        reply["error"]["message"].as_str().unwrap().contains("`to`"),
        "{reply}"
    );
    // Nothing was broadcast by the rejected messages, and the connection still works.
    c.assert_no_pending().await;
}

// --- handler behaviour, with actions defined here ------------------------------------

static GUARDED_CALLS: AtomicUsize = AtomicUsize::new(0);
static TYPED_CALLS: AtomicUsize = AtomicUsize::new(0);

#[derive(serde::Deserialize)]
struct Typed {
    n: u32,
}

#[ws_action("probe")]
async fn probe(_ctx: Ctx) {
    GUARDED_CALLS.fetch_add(1, Ordering::SeqCst);
}

#[ws_action("typed")]
async fn typed(_ctx: Ctx, msg: Typed) -> Result<Value, WsError> {
    TYPED_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(json!({"action": "typed", "n": msg.n}))
}

#[ws_action("whoami")]
async fn whoami(ctx: Ctx) -> Result<Value, WsError> {
    Ok(json!({
        "action": "whoami",
        "userId": ctx.user_id(),
        "tenantId": ctx.tenant_id(),
        "email": ctx.email(),
        "connectionId": ctx.connection_id(),
    }))
}

#[ws_action("open", public)]
async fn open(ctx: Ctx) -> Result<Value, WsError> {
    Ok(json!({"action": "open", "userId": ctx.user_id()}))
}

#[ws_action("fail")]
async fn fail(_ctx: Ctx) -> Result<(), std::io::Error> {
    Err(std::io::Error::other("database password is hunter2"))
}

#[ws_action("refuse")]
async fn refuse(_ctx: Ctx) -> Result<(), WsError> {
    Err(WsError::bad_request("`amount` must be positive"))
}

#[ws_action("boom")]
async fn boom(_ctx: Ctx) -> Result<(), WsError> {
    panic!("handler bug with secret details");
}

#[ws_action("huge")]
async fn huge(_ctx: Ctx) -> Result<String, WsError> {
    Ok("x".repeat(200 * 1024))
}

#[ws_action("silent")]
async fn silent(_ctx: Ctx) -> Result<Option<u32>, WsError> {
    Ok(None)
}

async fn start_test_app() -> Server {
    start(venturekit_ws::App::new(config()).actions(actions![
        probe, typed, whoami, open, fail, refuse, boom, huge, silent
    ]))
    .await
}

#[tokio::test]
async fn user_code_never_runs_for_unauthorized_or_bad_request() {
    let server = start_test_app().await;
    let mut anon = Client::connect(server.addr).await;
    anon.send(json!({"action": "probe"})).await;
    assert_eq!(error_code(&anon.recv().await), "unauthorized");
    assert_eq!(GUARDED_CALLS.load(Ordering::SeqCst), 0);

    let mut c = Client::authed(server.addr, "alice", &[]).await;
    for bad in [
        json!({"action": "typed"}),
        json!({"action": "typed", "n": "x"}),
        json!({"action": "typed", "n": -1}),
    ] {
        c.send(bad.clone()).await;
        let reply = c.recv().await;
        assert_eq!(error_code(&reply), "bad_request", "{bad}");
        assert!(reply["error"]["message"].as_str().unwrap().contains('n'));
    }
    assert_eq!(TYPED_CALLS.load(Ordering::SeqCst), 0);
    c.send(json!({"action": "typed", "n": 3})).await;
    assert_eq!(c.recv().await, json!({"action": "typed", "n": 3}));
    assert_eq!(TYPED_CALLS.load(Ordering::SeqCst), 1);
    c.send(json!({"action": "probe"})).await;
    c.assert_no_pending().await;
    assert_eq!(GUARDED_CALLS.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn handlers_see_the_identity_public_actions_run_unauthenticated() {
    let server = start_test_app().await;
    let mut c = Client::connect(server.addr).await;
    c.send(json!({"action": "open"})).await;
    assert_eq!(c.recv().await, json!({"action": "open", "userId": null}));
    c.auth(&token_with("alice", &["acme"], Some("a@example.com")))
        .await;
    c.send(json!({"action": "whoami"})).await;
    let me = c.recv().await;
    assert_eq!(me["userId"], "alice");
    assert_eq!(me["tenantId"], "acme");
    assert_eq!(me["email"], "a@example.com");
    let rows = records(server.addr).await;
    assert_eq!(me["connectionId"], rows[0]["connectionId"]);
}

#[tokio::test]
async fn handler_errors_become_replies_without_internals() {
    let server = start_test_app().await;
    let mut c = Client::authed(server.addr, "alice", &[]).await;

    c.send(json!({"action": "fail"})).await;
    let reply = c.recv().await;
    assert_eq!(
        reply,
        json!({"action": "error", "requestAction": "fail", "error": {"code": "internal", "message": "internal error"}})
    );

    c.send(json!({"action": "refuse"})).await;
    let reply = c.recv().await;
    assert_eq!(error_code(&reply), "bad_request");
    assert_eq!(reply["error"]["message"], "`amount` must be positive");

    c.send(json!({"action": "boom"})).await;
    let reply = c.recv().await;
    assert_eq!(error_code(&reply), "internal");
    assert!(!reply.to_string().contains("secret"));

    c.send(json!({"action": "huge"})).await;
    let reply = c.recv().await;
    assert_eq!(error_code(&reply), "payload_too_large");
    assert_eq!(reply["requestAction"], "huge");

    c.send(json!({"action": "silent"})).await;
    c.assert_no_pending().await;

    // The panic did not take the connection or the server down.
    Client::connect(server.addr).await.assert_no_pending().await;
}
