//! Topics and presence over real sockets against the local server (the chat's rooms and a
//! test app; the chat's room scenario is in `examples/chat/tests/actions.rs`): deny by
//! default, presence state and diffs,
//! the switch to `vk:presence_count`, limits, join-then-publish at once, tenant isolation,
//! and the leaves of removed connections.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use venturekit_ws::{TopicRule, WsError};
use venturekit_ws_tests::*;

#[tokio::test]
async fn deny_by_default_limits_and_bad_input() {
    let mut config = config();
    config.max_topics = 2;
    let server = start(chat_app(config)).await;
    let mut c = Client::authed(server.addr, "alice", &[]).await;
    for (topic, code) in [
        (json!("lobby"), "forbidden"),
        (json!("room:has space"), "bad_request"),
        (json!("room:#1"), "bad_request"),
        (json!(""), "bad_request"),
        (json!(format!("room:{}", "x".repeat(124))), "bad_request"),
        (json!(5), "bad_request"),
    ] {
        c.send(json!({"action": "vk:join", "ref": "j", "topic": topic}))
            .await;
        let reply = c.recv().await;
        assert_eq!(reply["error"]["code"], code, "{topic}: {reply}");
        assert_eq!(reply["requestAction"], "vk:join");
        assert_eq!(reply["ref"], "j");
    }
    // meta over 1 KB names the limit.
    let meta = json!({"blob": "x".repeat(1100)});
    c.send(json!({"action": "vk:join", "topic": "room:1", "meta": meta}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["error"]["code"], "bad_request");
    assert!(
        reply["error"]["message"].as_str().unwrap().contains("1024"),
        "{reply}"
    );
    // At most `max_topics` topics per connection (rejoining one is fine).
    for room in ["room:1", "room:2", "room:1"] {
        c.send(json!({"action": "vk:join", "topic": room})).await;
        assert_eq!(c.recv().await["ok"], true);
        c.recv().await; // presence state
        c.recv().await; // own diff
    }
    c.send(json!({"action": "vk:join", "topic": "room:3"}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["error"]["code"], "bad_request");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 2 topics")
    );
    // Before auth: unauthorized.
    let mut anon = Client::connect(server.addr).await;
    anon.send(json!({"action": "vk:join", "topic": "room:1"}))
        .await;
    assert_eq!(anon.recv().await["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn the_same_room_name_in_two_tenants_never_mixes() {
    let server = start_chat().await;
    let mut acme = Client::authed(server.addr, "a", &["acme"]).await;
    let mut globex = Client::authed(server.addr, "g", &["globex"]).await;
    for c in [&mut acme, &mut globex] {
        c.send(json!({"action": "vk:join", "topic": "room:1"}))
            .await;
        c.recv().await;
        let state = c.recv().await;
        assert_eq!(state["presences"].as_object().unwrap().len(), 1, "{state}");
        c.recv().await;
    }
    acme.send(json!({"action": "say", "room": "room:1", "data": 1}))
        .await;
    acme.recv().await;
    assert_eq!(acme.recv().await, json!({"action": "say", "delivered": 1}));
    globex.assert_no_pending().await;
}

#[tokio::test]
async fn above_max_presence_members_get_only_the_count() {
    let app = chat_app(config()).topic(
        TopicRule::new("big:*")
            .presence()
            .max_presence(2)
            .authorize(|connection, _| connection.user_id.as_deref() != Some("mallory")),
    );
    let server = start(app).await;
    let mut clients = Vec::new();
    for user in ["u1", "u2"] {
        let mut c = Client::authed(server.addr, user, &[]).await;
        c.send(json!({"action": "vk:join", "topic": "big:1"})).await;
        assert_eq!(c.recv().await["ok"], true);
        clients.push(c);
    }
    // Drain the state/diff frames of the first two joins.
    for _ in 0..3 {
        let frame = clients[0].recv().await;
        assert!(frame["action"].as_str().unwrap().starts_with("vk:presence"));
        if frame["action"] == "vk:presence_diff" && frame["joins"].get("u2").is_some() {
            break;
        }
    }
    let mut third = Client::authed(server.addr, "u3", &[]).await;
    third
        .send(json!({"action": "vk:join", "topic": "big:1"}))
        .await;
    assert_eq!(third.recv().await["ok"], true);
    assert_eq!(
        third.recv().await,
        json!({"action": "vk:presence_count", "topic": "big:1", "count": 3})
    );
    assert_eq!(
        clients[0].recv_skipping("vk:presence_diff").await,
        json!({"action": "vk:presence_count", "topic": "big:1", "count": 3})
    );
    // The rule's authorizer refuses with `forbidden`.
    let mut mallory = Client::authed(server.addr, "mallory", &[]).await;
    mallory
        .send(json!({"action": "vk:join", "topic": "big:1"}))
        .await;
    assert_eq!(mallory.recv().await["error"]["code"], "forbidden");
}

#[venturekit_ws::ws_action("join_and_publish")]
async fn join_and_publish(ctx: venturekit_ws::Ctx) -> Result<serde_json::Value, WsError> {
    // Server side: join the caller, then publish at once; the new member receives it.
    ctx.join_topic("news", serde_json::Map::new()).await?;
    let report = ctx
        .publish("news", &json!({"action": "news", "n": 1}))
        .await?;
    let members = ctx.topic_members("news").await?;
    Ok(
        json!({"action": "join_and_publish", "delivered": report.delivered, "members": members.len()}),
    )
}

#[tokio::test]
async fn a_server_side_join_followed_at_once_by_a_publish_reaches_the_new_member() {
    let app = chat_app(config()).actions(venturekit_ws::actions![join_and_publish]);
    let server = start(app).await;
    let mut c = Client::authed(server.addr, "alice", &[]).await;
    c.send(json!({"action": "join_and_publish"})).await;
    assert_eq!(c.recv().await, json!({"action": "news", "n": 1}));
    assert_eq!(
        c.recv().await,
        json!({"action": "join_and_publish", "delivered": 1, "members": 1})
    );
}

/// Topic memberships that take `delay` to store (a slow DynamoDB write), so that anything
/// sent to a joiner before its membership is stored shows.
struct SlowJoins {
    inner: venturekit_ws::MemoryTopics,
    delay: std::time::Duration,
}

#[async_trait::async_trait]
impl venturekit_ws::TopicStore for SlowJoins {
    async fn join(
        &self,
        member: &venturekit_ws::topics::TopicMember,
    ) -> Result<(), venturekit_ws::StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.join(member).await
    }
    async fn leave(
        &self,
        topic: &str,
        connection_id: &str,
    ) -> Result<Option<venturekit_ws::topics::TopicMember>, venturekit_ws::StoreError> {
        self.inner.leave(topic, connection_id).await
    }
    async fn members(
        &self,
        topic: &str,
        now_secs: i64,
    ) -> Result<Vec<venturekit_ws::topics::TopicMember>, venturekit_ws::StoreError> {
        self.inner.members(topic, now_secs).await
    }
    async fn topics_of(
        &self,
        connection_id: &str,
    ) -> Result<Vec<venturekit_ws::topics::TopicMember>, venturekit_ws::StoreError> {
        self.inner.topics_of(connection_id).await
    }
    async fn remove_connection(
        &self,
        connection_id: &str,
    ) -> Result<Vec<venturekit_ws::topics::TopicMember>, venturekit_ws::StoreError> {
        self.inner.remove_connection(connection_id).await
    }
}

#[tokio::test]
async fn a_member_that_has_its_join_ack_receives_the_next_publish() {
    // The ack comes only once the membership is stored: a client that publishes as soon
    // as a friend's ack arrives reaches the friend, however slow the store's write.
    let slow = SlowJoins {
        inner: venturekit_ws::MemoryTopics::new(),
        delay: std::time::Duration::from_millis(300),
    };
    let server = start(chat_app(config()).topic_store(std::sync::Arc::new(slow))).await;
    let mut alice = Client::authed(server.addr, "alice", &[]).await;
    let mut bob = Client::authed(server.addr, "bob", &[]).await;
    alice
        .send(json!({"action": "vk:join", "topic": "room:1"}))
        .await;
    assert_eq!(alice.recv().await["ok"], true);
    assert_eq!(alice.recv().await["action"], "vk:presence_state");
    alice.recv().await; // its own join, as a diff
    bob.send(json!({"action": "vk:join", "topic": "room:1"}))
        .await;
    assert_eq!(bob.recv().await["ok"], true);
    // At once, before bob reads anything else: alice says something in the room.
    alice
        .send(json!({"action": "say", "room": "room:1", "data": "hi bob"}))
        .await;
    // Bob's presence state and diff, and the message, in whatever order they come; without
    // the message the read times out ("no frame within the wait").
    loop {
        let frame = bob.recv().await;
        if frame["action"] == "message" {
            assert_eq!(frame["data"], "hi bob", "{frame}");
            break;
        }
        let action = frame["action"].as_str().unwrap_or_default();
        assert!(action.starts_with("vk:presence"), "{frame}");
    }
}
