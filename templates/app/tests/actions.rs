//! The actions, through venturekit-ws's test kit: in process, and the same scenario over
//! real WebSockets against the local server.

use serde_json::json;
use std::time::Duration;
use venturekit_ws::testing::{TestKit, User};

async fn shouting_reaches_the_tenant_only(kit: TestKit) {
    let alice = kit.authed(User::new("alice").tenant("acme")).await;
    let bob = kit.authed(User::new("bob").tenant("acme")).await;
    let eve = kit.authed(User::new("eve").tenant("globex")).await;

    let reply = alice
        .request(&json!({"action": "shout", "text": "hi"}))
        .await;
    assert_eq!(reply["delivered"], 2);
    kit.assert_delivered(
        json!({"action": "shouted", "from": "alice", "text": "HI"}),
        &[&alice, &bob],
    )
    .await;
    eve.assert_no_push(Duration::from_millis(100)).await;

    let reply = alice.request(&json!({"action": "shout", "text": 42})).await;
    assert_eq!(reply["error"]["code"], "bad_request");

    let stranger = kit.connect("stranger").await;
    stranger
        .send(&json!({"action": "shout", "text": "hi"}))
        .await;
    stranger.assert_error("unauthorized").await;
}

#[tokio::test]
async fn in_process() {
    shouting_reaches_the_tenant_only(TestKit::new({{crate_name}}::app().unwrap()).unwrap()).await;
}

#[tokio::test]
async fn over_sockets() {
    let kit = TestKit::over_sockets({{crate_name}}::app().unwrap()).await.unwrap();
    shouting_reaches_the_tenant_only(kit).await;
}
