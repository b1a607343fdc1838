//! The test kit's own tests: every assertion's failure message (what was expected, what
//! arrived), connect requests and refusals, virtual time (tokens, rate windows), faults,
//! and the same calls over real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use std::time::Duration;
use venturekit_ws::testing::{TestKit, User};
use venturekit_ws::{App, Config, Ctx, TopicRule, WsError, actions, ws_action};

#[ws_action("echo")]
async fn echo(_ctx: Ctx, msg: Value) -> Result<Value, WsError> {
    Ok(json!({"action": "echo", "said": msg["text"]}))
}

#[ws_action("twice")]
async fn twice(ctx: Ctx) -> Result<Value, WsError> {
    ctx.push(&json!({"action": "first"})).await?;
    Ok(json!({"action": "second"}))
}

#[ws_action("shout")]
async fn shout(ctx: Ctx, msg: Value) -> Result<(), WsError> {
    ctx.broadcast(&json!({"action": "shouted", "text": msg["text"]}))
        .await?;
    Ok(())
}

#[ws_action("whoami")]
async fn whoami(ctx: Ctx) -> Result<Value, WsError> {
    Ok(json!({
        "action": "whoami",
        "user": ctx.user_id(),
        "tenant": ctx.tenant_id(),
        "roles": ctx.roles(),
        "plan": ctx.claims().and_then(|c| c.get("plan")),
    }))
}

fn app() -> App {
    let mut config = Config::default();
    config.keep_claims = vec!["plan".into()];
    App::new(config)
        .actions(actions![echo, twice, shout, whoami])
        .topic(TopicRule::new("room:*").presence())
        .on_connect(|request, _ctx| async move {
            if request.query.contains_key("refuse") {
                return Err(WsError::forbidden("refused"));
            }
            match request.headers.get("x-client").map(String::as_str) {
                Some("bad") => Err(WsError::forbidden("bad client")),
                _ => Ok(()),
            }
        })
}

fn kit() -> TestKit {
    TestKit::new(app()).unwrap()
}

fn starts(text: &str, prefix: &str) {
    assert!(
        text.starts_with(prefix),
        "failure message\n{text}\ndoes not start with\n{prefix}"
    );
}

#[tokio::test]
async fn push_reply_and_single_failures_list_what_arrived() {
    let kit = kit();
    let alice = kit.authed(User::new("alice").tenant("acme")).await;

    // Nothing arrived at all.
    let e = alice.try_push(&json!({"action": "x"})).await.unwrap_err();
    assert_eq!(
        e.0,
        "alice: no frame matching {\"action\":\"x\"}; no unread frames (1 already read)"
    );

    // Something else arrived: it is listed, and stays unread.
    alice.send(&json!({"action": "twice"})).await;
    let e = alice
        .try_push(&json!({"action": "third"}))
        .await
        .unwrap_err();
    assert_eq!(
        e.0,
        "alice: no frame matching {\"action\":\"third\"}; 2 unread frame(s) (1 already read):\n    {\"action\":\"first\"}\n    {\"action\":\"second\"}"
    );
    let e = alice
        .try_single(&json!({"action": "first"}))
        .await
        .unwrap_err();
    starts(
        &e.0,
        "alice: expected a single frame matching {\"action\":\"first\"}; 2 unread frame(s)",
    );
    alice.assert_push(json!({"action": "second"})).await;
    alice.assert_single(json!({"action": "first"})).await;
    let e = alice.try_single(&json!({})).await.unwrap_err();
    starts(
        &e.0,
        "alice: expected a single frame matching {}; no unread frames",
    );

    // Replies by `ref`: missing, and not matching.
    let e = alice.try_reply("kit-999", &json!({})).await.unwrap_err();
    starts(&e.0, "alice: no reply to ref kit-999; no unread frames");
    let reference = alice.push(&json!({"action": "echo", "text": "hi"})).await;
    let e = alice
        .try_reply(&reference, &json!({"said": "bye"}))
        .await
        .unwrap_err();
    assert_eq!(
        e.0,
        format!(
            "alice: the reply to ref {reference} does not match {{\"said\":\"bye\"}}: it is {{\"action\":\"echo\",\"ref\":\"{reference}\",\"said\":\"hi\"}}"
        )
    );

    // Errors by code.
    alice.send(&json!({"action": "nope"})).await;
    let e = alice.try_error("forbidden").await.unwrap_err();
    starts(&e.0, "alice: no `forbidden` error; 1 unread frame(s)");
    assert!(e.0.contains("unknown_action"), "{e}");
    let error = alice.assert_error("unknown_action").await;
    assert_eq!(error["requestAction"], "nope");

    // Nothing within a time.
    alice.send(&json!({"action": "ping"})).await;
    let e = alice.try_no_push(Duration::ZERO).await.unwrap_err();
    starts(
        &e.0,
        "alice: expected nothing within 0ns; 1 unread frame(s)",
    );
    assert_eq!(alice.frames().len(), 1);
    alice.clear();
    alice.assert_no_push(Duration::ZERO).await;
}

#[tokio::test]
async fn close_and_store_failures_say_what_the_store_holds() {
    let kit = kit();
    let alice = kit
        .authed(
            User::new("alice")
                .tenant("acme")
                .claim("plan", json!("pro")),
        )
        .await;
    let e = alice.try_closed().await.unwrap_err();
    starts(
        &e.0,
        "alice: expected the connection to be closed, it is open; no unread frames",
    );
    let e = kit.try_no_connection(&alice).await.unwrap_err();
    assert_eq!(
        e.0,
        "alice: expected no live connection record, found authenticated as alice in tenant acme, claims {\"plan\":\"pro\"}"
    );
    let stranger = kit.connect("stranger").await;
    alice.disconnect().await;
    let closed = alice.assert_closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1000, "closed by the client")
    );
    let e = kit.try_connection(&alice).await.unwrap_err();
    assert_eq!(
        e.0,
        format!(
            "alice: no live connection record (connection id {}); 1 live record(s):\n    stranger: unauthenticated",
            alice.connection_id()
        )
    );
    kit.assert_no_connection(&alice).await;
    assert!(!kit.connection(&stranger).await.authenticated);
}

#[tokio::test]
async fn delivery_and_membership_failures_name_the_clients() {
    let kit = kit();
    let alice = kit.authed(User::new("alice").tenant("acme")).await;
    let bob = kit.authed(User::new("bob").tenant("acme")).await;
    let gus = kit.authed(User::new("gus").tenant("globex")).await;

    alice.send(&json!({"action": "shout", "text": "hi"})).await;
    let e = kit
        .try_delivered(json!({"action": "shouted"}), &[&alice, &gus])
        .await
        .unwrap_err();
    assert_eq!(
        e.0,
        "{\"action\":\"shouted\"} was not delivered as expected:\n  gus did not receive it; no unread frames (1 already read)\n  received by clients not listed: bob"
    );
    alice
        .send(&json!({"action": "shout", "text": "again"}))
        .await;
    kit.assert_delivered(json!({"text": "again"}), &[&alice, &bob])
        .await;

    alice
        .request(&json!({"action": "vk:join", "topic": "room:1"}))
        .await;
    let e = kit
        .try_members(Some("acme"), "room:1", &[&bob, &alice])
        .await
        .unwrap_err();
    assert_eq!(
        e.0,
        "topic `room:1` (tenant acme): expected members [alice, bob], found [alice]"
    );
    kit.assert_members(Some("acme"), "room:1", &[&alice]).await;
    kit.assert_members(Some("globex"), "room:1", &[]).await;
    let members = kit.members(Some("acme"), "room:1").await;
    assert_eq!(members[0].user_id, "alice");
}

#[tokio::test]
async fn connect_requests_reach_the_hook_and_refusals_are_errors() {
    for kit in [kit(), TestKit::over_sockets(app()).await.unwrap()] {
        let refused = kit
            .connect_with(
                "mallory",
                venturekit_ws::testing::Connect::new().query("refuse", "1"),
            )
            .await
            .unwrap_err();
        assert_eq!(
            refused.0,
            "mallory: the connection was refused with HTTP 403"
        );
        let refused = kit
            .connect_with(
                "bad",
                venturekit_ws::testing::Connect::new().header("x-client", "bad"),
            )
            .await
            .unwrap_err();
        assert_eq!(refused.0, "bad: the connection was refused with HTTP 403");
        let fine = kit
            .connect_with(
                "fine",
                venturekit_ws::testing::Connect::new()
                    .header("x-client", "good")
                    .query("room", "a b&c"),
            )
            .await
            .unwrap();
        assert!(!kit.connection(&fine).await.authenticated);
    }
}

#[tokio::test]
#[should_panic(expected = "nobody: authenticating as nobody failed: {\"action\":\"auth\"")]
async fn a_failed_auth_panics_with_the_reply() {
    let kit = kit();
    let c = kit.connect("nobody").await;
    kit.advance(Duration::from_secs(31));
    c.auth(User::new("nobody")).await;
}

#[tokio::test]
#[should_panic(expected = "alice: cannot send, the connection is closed with 1000")]
async fn sending_on_a_closed_connection_panics() {
    let kit = kit();
    let alice = kit.authed(User::new("alice")).await;
    alice.disconnect().await;
    alice.send(&json!({"action": "ping"})).await;
}

#[tokio::test]
async fn identity_roles_and_kept_claims_come_from_the_user() {
    let kit = kit();
    let ada = kit
        .authed(
            User::new("ada")
                .tenant("acme")
                .tenant("globex")
                .joining("globex")
                .role("admin")
                .claim("plan", json!("pro")),
        )
        .await;
    let me = ada.request(&json!({"action": "whoami"})).await;
    assert_eq!(me["user"], "ada");
    assert_eq!(me["tenant"], "globex");
    assert_eq!(me["roles"], json!(["admin"]));
    assert_eq!(me["plan"], "pro");
    let record = kit.connection(&ada).await;
    assert_eq!(record.claims.get("plan"), Some(&json!("pro")));
}

#[tokio::test]
async fn virtual_time_moves_rate_windows_and_token_lifetimes() {
    let kit = kit();
    let alice = kit.authed(User::new("alice")).await;
    // The default limit: 40 messages per 2 s window (auth counted).
    for _ in 0..39 {
        alice.send(&json!({"action": "ping"})).await;
    }
    alice.clear();
    alice.send(&json!({"action": "ping"})).await;
    alice.assert_error("rate_limited").await;
    kit.advance(Duration::from_secs(2));
    alice.send(&json!({"action": "ping"})).await;
    let pong = alice.assert_push(json!({"action": "pong"})).await;
    // The pong's timestamp is the kit clock's.
    let at = chrono::DateTime::parse_from_rfc3339(pong["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(at.timestamp_millis(), kit.clock().now_ms());

    // A token minted now expires on the kit clock (5 s leeway).
    let token = kit.token(&User::new("bob").ttl(Duration::from_secs(60)));
    kit.advance(Duration::from_secs(64));
    let bob = kit.connect("bob").await;
    assert_eq!(bob.auth_token(&token).await["success"], true);
    let bob2 = kit.connect("bob2").await;
    kit.advance(Duration::from_secs(2));
    assert_eq!(
        bob2.auth_token(&token).await["error"]["code"],
        "token_expired"
    );
}

#[tokio::test]
async fn faults_apply_then_clear() {
    let kit = kit();
    let alice = kit.authed(User::new("alice")).await;
    kit.faults().fail_next_store_calls(2);
    alice.send(&json!({"action": "echo", "text": "x"})).await;
    alice.assert_error("internal").await;
    kit.faults().fail_next_store_calls(5);
    kit.faults().throttle_next_posts(3);
    kit.faults().clear();
    let reply = alice.request(&json!({"action": "echo", "text": "y"})).await;
    assert_eq!(reply["said"], "y");
    // A gone connection's posts fail: the reply to its own message is lost.
    kit.faults().gone(&alice);
    alice.send(&json!({"action": "echo", "text": "z"})).await;
    alice.assert_no_push(Duration::ZERO).await;
}

#[tokio::test]
async fn over_sockets_the_same_calls_work_end_to_end() {
    let kit = TestKit::over_sockets(app())
        .await
        .unwrap()
        .with_wait(Duration::from_secs(5));
    assert!(kit.is_over_sockets() && kit.url().unwrap().starts_with("ws://127.0.0.1:"));
    let alice = kit.authed(User::new("alice").tenant("acme")).await;
    let bob = kit.authed(User::new("bob").tenant("acme")).await;
    alice.send(&json!({"action": "shout", "text": "hi"})).await;
    kit.assert_delivered(json!({"action": "shouted", "text": "hi"}), &[&alice, &bob])
        .await;
    let reply = bob.request(&json!({"action": "echo", "text": "yo"})).await;
    assert_eq!(reply["said"], "yo");
    // Virtual time reaches the real server: the session ends, the sweep closes both.
    kit.advance(Duration::from_secs(7201));
    let report = kit.sweep().await;
    assert_eq!(report.expired, 2);
    for c in [&alice, &bob] {
        let closed = c.assert_closed().await;
        assert_eq!(closed.code, 1000);
        assert_eq!(closed.error.unwrap()["error"]["code"], "unauthorized");
        kit.assert_no_connection(c).await;
    }
    let e = alice.try_push(&json!({"action": "x"})).await.unwrap_err();
    assert!(
        e.0.contains("and the connection is closed with 1000"),
        "{e}"
    );
}
