//! The programming model over real sockets against the local server: `ref`
//! acknowledgements, `forbidden` with roles, scopes, kept claims and the app-wide check,
//! typed state, lifecycle hooks, and caller-scoped sending. The chat example's own actions
//! are tested with the test kit in `examples/chat/tests/actions.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use venturekit_ws::{App, Ctx, State, WsError, actions, ws_action};
use venturekit_ws_tests::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Strict {
    text: String,
}

/// A non-object reply.
#[ws_action("echo")]
async fn echo(_ctx: Ctx, msg: Strict) -> Result<String, WsError> {
    Ok(msg.text)
}

/// No reply.
#[ws_action("mark")]
async fn mark(_ctx: Ctx) {}

/// Needs a scope.
#[ws_action("write", scope = "chat:write")]
async fn write(_ctx: Ctx) -> Result<Value, WsError> {
    Ok(json!({"action": "write", "ok": true}))
}

/// Reads a kept claim.
#[ws_action("plan")]
async fn plan(ctx: Ctx) -> Result<Value, WsError> {
    let plan = ctx.claims().and_then(|c| c.get("plan")).cloned();
    Ok(json!({"action": "plan", "plan": plan, "admin": ctx.has_role("admin")}))
}

/// Refused by the app-wide rule for tenant `trial`.
#[ws_action("export")]
async fn export(_ctx: Ctx) -> Result<Value, WsError> {
    Ok(json!({"action": "export", "ok": true}))
}

/// A public action that sends in the caller's scope.
#[ws_action("shout", public)]
async fn shout(ctx: Ctx) -> Result<Value, WsError> {
    let report = ctx.broadcast(&json!({"action": "shouted"})).await?;
    Ok(json!({"action": "shout", "delivered": report.delivered}))
}

/// What the connect and auth hooks saw.
#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

#[ws_action("seen")]
async fn seen(_ctx: Ctx, seen: State<Arc<Seen>>) -> Result<Vec<String>, WsError> {
    Ok(seen.0.0.lock().unwrap().clone())
}

fn model_app() -> (App, Arc<Seen>) {
    let mut config = config();
    config.keep_claims = vec!["plan".into()];
    config.rate_limit_per_sec = 0;
    let seen = Arc::new(Seen::default());
    let on_connect = seen.clone();
    let on_auth = seen.clone();
    let app = chat_app(config)
        .state(seen.clone())
        .actions(actions![echo, mark, write, plan, export, shout, seen])
        .authorize(|call| {
            if call.action == "export" && call.connection.tenant_id.as_deref() == Some("trial") {
                return Err("exports are not part of the trial".into());
            }
            Ok(())
        })
        .on_connect(move |request, _ctx| {
            let seen = on_connect.clone();
            async move {
                let agent = request.headers.get("x-client").cloned().unwrap_or_default();
                seen.0.lock().unwrap().push(format!("connect {agent}"));
                if request.query.contains_key("panic") {
                    panic!("a connect hook with a bug");
                }
                match request.query.get("refuse") {
                    Some(_) => Err(WsError::forbidden("refused by the test")),
                    None => Ok(()),
                }
            }
        })
        .on_auth(move |record, _ctx| {
            let seen = on_auth.clone();
            async move {
                let user = record.user_id.unwrap_or_default();
                if user == "panicky" {
                    panic!("an auth hook with a bug");
                }
                seen.0.lock().unwrap().push(format!("auth {user}"));
            }
        });
    (app, seen)
}

/// Opening a socket with `query` is refused with HTTP `status`.
async fn assert_upgrade_refused(addr: std::net::SocketAddr, query: &str, status: u16) {
    match tokio_tungstenite::connect_async(format!("ws://{addr}/?{query}")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), status)
        }
        other => panic!("expected HTTP {status}, got {other:?}"),
    }
}

async fn authed_as(addr: std::net::SocketAddr, token: &str) -> Client {
    let mut c = Client::connect(addr).await;
    let reply = c.auth(token).await;
    assert_eq!(reply["success"], true, "{reply}");
    c
}

#[tokio::test]
async fn every_terminal_frame_carries_the_ref_with_its_json_type() {
    let (app, _) = model_app();
    let server = start(app).await;
    let mut c = Client::connect(server.addr).await;
    c.send(json!({"action": "ping", "ref": 2})).await;
    let pong = c.recv().await;
    assert_eq!(pong["ref"], 2);
    assert_eq!(pong["action"], "pong");
    // Before auth: unauthorized, with the ref.
    c.send(json!({"action": "send", "ref": "u1", "to": "bob", "data": 1}))
        .await;
    assert_eq!(
        c.recv().await,
        json!({"action": "error", "requestAction": "send", "ref": "u1",
               "error": {"code": "unauthorized", "message": "authenticate first: send {\"action\":\"auth\",\"token\":\"<jwt>\"}"}})
    );
    c.send(json!({"action": "auth", "ref": "a1", "token": token("alice", &[])}))
        .await;
    assert_eq!(
        c.recv().await,
        json!({"action": "auth", "ref": "a1", "success": true, "userId": "alice"})
    );
    // Object reply: ref merged in, right after `action`.
    c.send_text(r#"{"action":"send","ref":"7","to":"bob","data":1}"#)
        .await;
    let text = c.recv_text().await;
    assert_eq!(text, r#"{"action":"send","ref":"7","delivered":0}"#);
    // `()` handler: sent only because of the ref.
    c.send(json!({"action": "mark", "ref": 8})).await;
    assert_eq!(
        c.recv().await,
        json!({"action": "mark", "ref": 8, "ok": true})
    );
    c.send(json!({"action": "mark"})).await;
    // Non-object reply; the strict type accepts the envelope fields.
    c.send(json!({"action": "echo", "ref": "9", "text": "x"}))
        .await;
    assert_eq!(
        c.recv().await,
        json!({"action": "echo", "ref": "9", "data": "x"})
    );
    // Errors.
    c.send(json!({"action": "send", "ref": "10", "to": 5}))
        .await;
    let error = c.recv().await;
    assert_eq!(error["ref"], "10");
    assert_eq!(error["error"]["code"], "bad_request");
    c.send(json!({"action": "nope", "ref": 11})).await;
    let error = c.recv().await;
    assert_eq!(
        (error["ref"].clone(), error["error"]["code"].clone()),
        (json!(11), json!("unknown_action"))
    );
    c.send(json!({"action": "echo", "ref": "12", "text": "x", "extra": 1}))
        .await;
    assert_eq!(c.recv().await["error"]["code"], "bad_request");
    // Exactly one frame per ref: nothing else is pending (the `mark` without ref sent none).
    c.assert_no_pending().await;
}

#[tokio::test]
async fn an_ill_formed_ref_is_bad_request_without_a_ref_and_runs_nothing() {
    let (app, _) = model_app();
    let server = start(app).await;
    let mut c = Client::authed(server.addr, "alice", &[]).await;
    for bad in [
        json!(""),
        json!("has space"),
        json!(-1),
        json!(1.5),
        json!(null),
        json!("x".repeat(65)),
        json!(9_007_199_254_740_992_u64),
    ] {
        c.send(json!({"action": "send", "ref": bad, "to": "bob", "data": 1}))
            .await;
        let reply = c.recv().await;
        assert_eq!(reply["error"]["code"], "bad_request", "{bad}: {reply}");
        assert_eq!(reply["requestAction"], "send");
        assert!(reply.get("ref").is_none(), "{bad}: {reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`ref`")
        );
    }
    c.assert_no_pending().await;
}

#[tokio::test]
async fn roles_scopes_kept_claims_and_the_app_wide_rule() {
    let (app, _) = model_app();
    let server = start(app).await;
    // No role: kick is forbidden and the target is untouched.
    let mut bob = Client::authed(server.addr, "bob", &["acme"]).await;
    let mut eve = authed_as(
        server.addr,
        &token_as("eve", &["acme"], &["user"], json!({})),
    )
    .await;
    eve.send(json!({"action": "kick", "ref": "k", "userId": "bob"}))
        .await;
    let reply = eve.recv().await;
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    assert_eq!(reply["ref"], "k");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin")
    );
    bob.assert_no_pending().await;
    // Scopes: `scope` (space-separated) and `scp` (array).
    eve.send(json!({"action": "write"})).await;
    assert_eq!(eve.recv().await["error"]["code"], "forbidden");
    let writer = token_as("w", &[], &[], json!({"scope": "chat:read chat:write"}));
    let mut w = authed_as(server.addr, &writer).await;
    w.send(json!({"action": "write"})).await;
    assert_eq!(w.recv().await, json!({"action": "write", "ok": true}));
    let scp = token_as("s", &[], &[], json!({"scp": ["chat:write"]}));
    let mut s = authed_as(server.addr, &scp).await;
    s.send(json!({"action": "write"})).await;
    assert_eq!(s.recv().await["ok"], true);
    // Kept claims: roles, scope, and VK_WS_KEEP_CLAIMS; visible to handlers and on the record.
    let pro = token_as(
        "p",
        &[],
        &["admin"],
        json!({"plan": "pro", "other": "dropped"}),
    );
    let mut p = authed_as(server.addr, &pro).await;
    p.send(json!({"action": "plan"})).await;
    assert_eq!(
        p.recv().await,
        json!({"action": "plan", "plan": "pro", "admin": true})
    );
    let rows = records(server.addr).await;
    let row = rows.iter().find(|r| r["userId"] == "p").unwrap();
    assert_eq!(row["claims"], json!({"roles": ["admin"], "plan": "pro"}));
    // Kept claims over 2 KB fail auth.
    let fat = token_as("f", &[], &[], json!({"plan": "x".repeat(2100)}));
    let mut f = Client::connect(server.addr).await;
    let reply = f.auth(&fat).await;
    assert_eq!(reply["error"]["code"], "invalid_token", "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("2 KB"));
    // The app-wide rule.
    let mut trial = Client::authed(server.addr, "t", &["trial"]).await;
    trial.send(json!({"action": "export"})).await;
    let reply = trial.recv().await;
    assert_eq!(reply["error"]["code"], "forbidden");
    assert_eq!(
        reply["error"]["message"],
        "exports are not part of the trial"
    );
    bob.send(json!({"action": "export"})).await;
    assert_eq!(bob.recv().await["ok"], true);
}

#[tokio::test]
async fn hooks_see_connects_and_auths_and_may_refuse() {
    let (app, _seen) = model_app();
    let server = start(app).await;
    // Refused by the connect hook: HTTP 403 to the upgrade, and no record.
    assert_upgrade_refused(server.addr, "refuse=1", 403).await;
    assert!(records(server.addr).await.is_empty());
    // Headers reach the hook.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-client", "test-suite/1".parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    drop(ws);
    let mut c = Client::authed(server.addr, "alice", &[]).await;
    c.send(json!({"action": "seen"})).await;
    let seen: Vec<String> = serde_json::from_value(c.recv().await).unwrap();
    assert!(
        seen.contains(&"connect test-suite/1".to_owned()),
        "{seen:?}"
    );
    assert!(seen.contains(&"auth alice".to_owned()), "{seen:?}");
    assert_eq!(
        seen.iter().filter(|s| s.starts_with("connect")).count(),
        3,
        "{seen:?}"
    );
}

/// Hooks with bugs: a panicking connect hook answers the upgrade with HTTP 500 and saves
/// nothing; a panicking auth hook leaves the connection authenticated and working; the
/// server goes on serving.
#[tokio::test]
async fn a_panicking_hook_is_an_error_not_an_outage() {
    let (app, _seen) = model_app();
    let server = start(app).await;
    assert_upgrade_refused(server.addr, "panic=1", 500).await;
    assert!(records(server.addr).await.is_empty());
    let mut panicky = Client::authed(server.addr, "panicky", &[]).await;
    panicky
        .send(json!({"action": "echo", "text": "still here"}))
        .await;
    assert_eq!(panicky.recv().await, json!("still here"));
    let mut alice = Client::authed(server.addr, "alice", &[]).await;
    alice.send(json!({"action": "seen"})).await;
    let seen: Vec<String> = serde_json::from_value(alice.recv().await).unwrap();
    // Three connects (the panicking one got that far), one auth hook finished.
    assert_eq!(seen, ["connect ", "connect ", "connect ", "auth alice"]);
}

#[tokio::test]
async fn a_public_action_sends_in_the_callers_scope_or_not_at_all() {
    let (app, _) = model_app();
    let server = start(app).await;
    let mut anon = Client::connect(server.addr).await;
    let mut lonely = Client::authed(server.addr, "lonely", &[]).await;
    let mut a = Client::authed(server.addr, "alice", &["acme"]).await;
    let mut b = Client::authed(server.addr, "bob", &["acme"]).await;
    // Unauthenticated: no scope, so no tenant-less user is reached.
    anon.send(json!({"action": "shout"})).await;
    assert_eq!(anon.recv().await["error"]["code"], "unauthorized");
    lonely.assert_no_pending().await;
    // Authenticated (read on demand): its tenant only.
    a.send(json!({"action": "shout"})).await;
    assert_eq!(
        a.recv_skipping("shouted").await,
        json!({"action": "shout", "delivered": 2})
    );
    assert_eq!(b.recv().await, json!({"action": "shouted"}));
    lonely.assert_no_pending().await;
}

async fn plain_echo(_ctx: Ctx, msg: Strict) -> Result<String, WsError> {
    Ok(msg.text)
}

async fn plain_admin(ctx: Ctx) -> Result<Value, WsError> {
    Ok(json!({"action": "plain_admin", "user": ctx.require_user()?}))
}

#[tokio::test]
async fn plain_functions_are_actions_without_the_macro() {
    use venturekit_ws::ActionDef;
    let app = chat_app(config())
        .action(ActionDef::from_fn("plain_echo", plain_echo).public())
        .action(ActionDef::from_fn("plain_admin", plain_admin).with_roles(&["admin"]))
        .action(ActionDef::from_fn("closure", |_ctx: Ctx| async {
            Ok::<_, WsError>(json!({"action": "closure"}))
        }));
    let server = start(app).await;
    let mut anon = Client::connect(server.addr).await;
    anon.send(json!({"action": "plain_echo", "ref": 1, "text": "hi"}))
        .await;
    assert_eq!(
        anon.recv().await,
        json!({"action": "plain_echo", "ref": 1, "data": "hi"})
    );
    anon.send(json!({"action": "closure"})).await;
    assert_eq!(
        anon.recv().await["error"]["code"],
        "unauthorized",
        "guarded by default"
    );
    let mut user = Client::authed(server.addr, "u", &[]).await;
    user.send(json!({"action": "plain_admin"})).await;
    assert_eq!(user.recv().await["error"]["code"], "forbidden");
    user.send(json!({"action": "closure"})).await;
    assert_eq!(user.recv().await, json!({"action": "closure"}));
    let mut admin = authed_as(server.addr, &token_as("root", &[], &["admin"], json!({}))).await;
    admin.send(json!({"action": "plain_admin"})).await;
    assert_eq!(
        admin.recv().await,
        json!({"action": "plain_admin", "user": "root"})
    );
}

/// A message type whose hand-written `Deserialize` panics on `"boom"`.
struct Fragile;

impl<'de> Deserialize<'de> for Fragile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if value["text"] == "boom" {
            panic!("a Deserialize impl with a bug");
        }
        Ok(Fragile)
    }
}

#[ws_action("fragile")]
async fn fragile(_ctx: Ctx, _msg: Fragile) -> Result<Value, WsError> {
    Ok(json!({"action": "fragile", "ok": true}))
}

/// The app's code that runs before a handler — the app-wide rule, a topic rule, a message
/// type's `Deserialize` — panicking is answered `internal` (with the `ref`), never silence,
/// and the connection goes on.
#[tokio::test]
async fn panics_before_the_handler_are_answered_internal() {
    let app = chat_app(config())
        .actions(actions![fragile])
        .authorize(|call| {
            if call.connection.user_id.as_deref() == Some("rule-breaker") {
                panic!("an authorization rule with a bug");
            }
            Ok(())
        })
        .topic(
            venturekit_ws::TopicRule::new("boom:*")
                .authorize(|_connection, _topic| panic!("a topic rule with a bug")),
        );
    let server = start(app).await;
    let mut c = Client::authed(server.addr, "alice", &[]).await;
    c.send(json!({"action": "fragile", "ref": "f1", "text": "boom"}))
        .await;
    assert_eq!(
        c.recv().await,
        json!({"action": "error", "requestAction": "fragile", "ref": "f1",
               "error": {"code": "internal", "message": "internal error"}})
    );
    c.send(json!({"action": "fragile", "ref": "f2", "text": "fine"}))
        .await;
    assert_eq!(
        c.recv().await,
        json!({"action": "fragile", "ref": "f2", "ok": true})
    );
    c.send(json!({"action": "vk:join", "ref": "j1", "topic": "boom:1"}))
        .await;
    let reply = c.recv().await;
    assert_eq!(
        (reply["ref"].clone(), reply["error"]["code"].clone()),
        (json!("j1"), json!("internal")),
        "{reply}"
    );
    let mut breaker = Client::authed(server.addr, "rule-breaker", &[]).await;
    breaker
        .send(json!({"action": "fragile", "ref": 3, "text": "fine"}))
        .await;
    let reply = breaker.recv().await;
    assert_eq!(
        (reply["ref"].clone(), reply["error"]["code"].clone()),
        (json!(3), json!("internal")),
        "{reply}"
    );
    // Both connections still work.
    for client in [&mut c, &mut breaker] {
        client.send(json!({"action": "ping", "ref": 9})).await;
        assert_eq!(client.recv().await["action"], "pong");
    }
}
