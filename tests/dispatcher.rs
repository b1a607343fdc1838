//! The dispatcher fed with real API Gateway event JSON (`fixtures/apigw-websocket`, the
//! samples published with the AWS Lambda Rust runtime), as Lambda would deliver them.
//! Delivery is recorded in-process here; the local-server tests cover real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use venturekit_ws::auth::Identity;
use venturekit_ws::clock::now_secs;
use venturekit_ws::lambda::Invocation;
use venturekit_ws::{
    Connection, ConnectionStore, Delivery, DeliveryError, Dispatcher, MemoryStore, Mode, TopicStore,
};
use venturekit_ws_tests::*;

#[derive(Default)]
struct Recorder {
    posts: Mutex<Vec<(String, Value)>>,
    closes: Mutex<Vec<String>>,
    gone: Mutex<HashSet<String>>,
}

#[async_trait::async_trait]
impl Delivery for Recorder {
    async fn post(&self, id: &str, payload: &str) -> Result<(), DeliveryError> {
        if self.gone.lock().unwrap().contains(id) {
            return Err(DeliveryError::Gone);
        }
        let value = serde_json::from_str(payload).unwrap();
        self.posts.lock().unwrap().push((id.to_owned(), value));
        Ok(())
    }
    async fn close(&self, id: &str) -> Result<(), DeliveryError> {
        self.closes.lock().unwrap().push(id.to_owned());
        Ok(())
    }
}

impl Recorder {
    fn posts_to(&self, id: &str) -> Vec<Value> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .filter(|(to, _)| to == id)
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn last_to(&self, id: &str) -> Value {
        self.posts_to(id).pop().expect("nothing was posted")
    }
}

struct Harness {
    dispatcher: Dispatcher,
    store: Arc<MemoryStore>,
    delivery: Arc<Recorder>,
}

fn harness() -> Harness {
    harness_of(chat_app(config()))
}

fn harness_of(app: venturekit_ws::App) -> Harness {
    let store = Arc::new(MemoryStore::new());
    let dispatcher = app.store(store.clone()).dispatcher(Mode::Lambda).unwrap();
    Harness {
        dispatcher,
        store,
        delivery: Arc::new(Recorder::default()),
    }
}

impl Harness {
    /// Feeds the event as Lambda does: JSON text, read by [`Invocation::parse`].
    async fn handle(&self, event: &Value) -> i64 {
        let Invocation::WebSocket(event) = Invocation::parse(&event.to_string()).unwrap() else {
            panic!("not read as a WebSocket event")
        };
        self.dispatcher
            .handle(&event, self.delivery.clone())
            .await
            .status_code
    }
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/fixtures/apigw-websocket/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A `$default` event built from the real `$connect` sample (same connection).
fn message_event(body: &str) -> Value {
    let mut event = fixture("example-apigw-websocket-request-without-method.json");
    event["requestContext"]["routeKey"] = json!("$default");
    event["requestContext"]["eventType"] = json!("MESSAGE");
    event["requestContext"]["messageId"] = json!("abc");
    event["body"] = json!(body);
    event
}

const ID: &str = "asdfasdf=";

#[tokio::test]
async fn connect_fixture_saves_an_unauthenticated_record() {
    let h = harness();
    let status = h
        .handle(&fixture(
            "example-apigw-websocket-request-without-method.json",
        ))
        .await;
    assert_eq!(status, 200);
    let row = h.store.get(ID).await.unwrap().unwrap();
    assert!(!row.authenticated);
    assert_eq!(row.user_id, None);
    assert_eq!(row.connected_at, 1645556857902);
    let now = now_secs();
    assert!(row.ttl > now + 28 && row.ttl <= now + 30, "{row:?}");
    // Nothing may be posted from inside $connect.
    assert!(h.delivery.posts.lock().unwrap().is_empty());
}

#[tokio::test]
async fn connect_fixture_with_rest_style_fields_is_accepted() {
    let h = harness();
    // `"messageId": null`, `"error": "*"`, an authorizer, a body: all tolerated.
    let status = h
        .handle(&fixture("example-apigw-websocket-request.json"))
        .await;
    assert_eq!(status, 200);
    assert!(h.store.get("TWegAcC4EowCHnA=").await.unwrap().is_some());
}

#[tokio::test]
async fn disconnect_fixture_removes_the_record() {
    let h = harness();
    let id = "AAAA1234=";
    h.store
        .save(&Connection::unauthenticated(id, 1, now_secs() + 30))
        .await
        .unwrap();
    let status = h
        .handle(&fixture(
            "example-apigw-websocket-request-disconnect-route.json",
        ))
        .await;
    assert_eq!(status, 200);
    assert!(h.store.get(id).await.unwrap().is_none());
    assert!(h.store.list_expired().await.unwrap().is_empty());
}

#[tokio::test]
async fn auth_then_actions_through_lambda_events() {
    let h = harness();
    h.handle(&fixture(
        "example-apigw-websocket-request-without-method.json",
    ))
    .await;
    let body = json!({"action": "auth", "token": token("alice", &["acme"])}).to_string();
    assert_eq!(h.handle(&message_event(&body)).await, 200);
    assert_eq!(
        h.delivery.last_to(ID),
        json!({"action": "auth", "success": true, "userId": "alice", "tenantId": "acme"})
    );
    let row = h.store.get(ID).await.unwrap().unwrap();
    assert!(row.authenticated);
    assert_eq!(row.tenant_id.as_deref(), Some("acme"));
    assert!(row.ttl > now_secs() + 7000);

    h.handle(&message_event(r#"{"action":"broadcast","data":"hi"}"#))
        .await;
    assert_eq!(
        h.delivery.last_to(ID),
        json!({"action": "message", "from": "alice", "data": "hi"})
    );
}

#[tokio::test]
async fn client_mistakes_answer_the_client_and_return_200() {
    let h = harness();
    h.handle(&fixture(
        "example-apigw-websocket-request-without-method.json",
    ))
    .await;
    for (body, code) in [
        ("{oops", "bad_request"),
        (r#"{"action":"nope"}"#, "unknown_action"),
        (r#"{"action":"broadcast","data":1}"#, "unauthorized"),
    ] {
        assert_eq!(h.handle(&message_event(body)).await, 200);
        assert_eq!(h.delivery.last_to(ID)["error"]["code"], code, "{body}");
    }
    // A binary (base64) body is refused.
    let mut event = message_event("AAEC");
    event["isBase64Encoded"] = json!(true);
    assert_eq!(h.handle(&event).await, 200);
    assert_eq!(h.delivery.last_to(ID)["error"]["code"], "bad_request");
    // An event without a connection id is a 400, not a panic.
    let mut event = message_event("{}");
    event["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("connectionId");
    assert_eq!(h.handle(&event).await, 400);
}

#[tokio::test]
async fn an_expired_window_is_unauthorized_closed_and_removed() {
    let h = harness();
    // Saved 31 s ago with a 30 s window: DynamoDB may still hold the row (lazy TTL).
    h.store
        .save(&Connection::unauthenticated(ID, 1, now_secs() - 1))
        .await
        .unwrap();
    h.handle(&message_event(r#"{"action":"send","to":"bob","data":1}"#))
        .await;
    let reply = h.delivery.last_to(ID);
    assert_eq!(reply["action"], "error");
    assert_eq!(reply["requestAction"], "send");
    assert_eq!(reply["error"]["code"], "unauthorized");
    assert_eq!(*h.delivery.closes.lock().unwrap(), vec![ID.to_owned()]);
    assert!(h.store.list_expired().await.unwrap().is_empty());

    // `auth` after the window cannot resurrect the connection.
    h.store
        .save(&Connection::unauthenticated(ID, 1, now_secs() - 1))
        .await
        .unwrap();
    let body = json!({"action": "auth", "token": token("alice", &[])}).to_string();
    h.handle(&message_event(&body)).await;
    let reply = h.delivery.last_to(ID);
    assert_eq!(
        reply["error"]["code"], "unauthorized",
        "auth after the window: {reply}"
    );
    assert_eq!(reply["success"], false);
    assert_eq!(h.delivery.closes.lock().unwrap().len(), 2);
    assert!(h.store.get(ID).await.unwrap().is_none());
    assert!(h.store.list_expired().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_removed_connection_cannot_authenticate() {
    let h = harness();
    let body = json!({"action": "auth", "token": token("alice", &[])}).to_string();
    h.handle(&message_event(&body)).await;
    assert_eq!(h.delivery.last_to(ID)["error"]["code"], "unauthorized");
    assert!(h.store.list().await.unwrap().is_empty());
}

async fn authed(h: &Harness, id: &str, user: &str, tenant: Option<&str>) {
    h.store
        .save(&Connection::unauthenticated(id, 1, now_secs() + 30))
        .await
        .unwrap();
    let identity = Identity {
        user_id: user.into(),
        tenant_id: tenant.map(String::from),
        email: None,
        claims: Default::default(),
    };
    h.store
        .authenticate(id, &identity, now_secs() + 100)
        .await
        .unwrap();
}

#[tokio::test]
async fn gone_devices_are_removed_and_reported_not_delivered() {
    let h = harness();
    authed(&h, ID, "alice", None).await;
    authed(&h, "bob-phone=", "bob", None).await;
    authed(&h, "bob-stale=", "bob", None).await;
    h.delivery
        .gone
        .lock()
        .unwrap()
        .insert("bob-stale=".to_owned());
    h.handle(&message_event(r#"{"action":"send","to":"bob","data":1}"#))
        .await;
    assert_eq!(
        h.delivery.last_to(ID),
        json!({"action": "send", "delivered": 1})
    );
    let to_phone = h.delivery.posts_to("bob-phone=");
    assert_eq!(
        to_phone.iter().filter(|f| f["action"] == "message").count(),
        1,
        "{to_phone:?}"
    );
    // The chat's disconnect hook told the scope why the stale device left.
    assert!(
        to_phone.contains(&json!({"action": "left", "userId": "bob", "reason": "gone"})),
        "{to_phone:?}"
    );
    // Only the gone connection's record was removed.
    assert!(h.store.get("bob-stale=").await.unwrap().is_none());
    assert!(h.store.get("bob-phone=").await.unwrap().is_some());
    assert!(h.store.get(ID).await.unwrap().is_some());
}

#[tokio::test]
async fn the_sweeper_closes_expired_records_only() {
    let h = harness();
    h.store
        .save(&Connection::unauthenticated("late=", 1, now_secs() - 5))
        .await
        .unwrap();
    h.store
        .save(&Connection::unauthenticated("fresh=", 1, now_secs() + 30))
        .await
        .unwrap();
    let connections = h.dispatcher.messenger(h.delivery.clone());
    let report = h.dispatcher.sweep(&connections).await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(report.closed, 1);
    assert_eq!(h.delivery.last_to("late=")["error"]["code"], "unauthorized");
    assert_eq!(*h.delivery.closes.lock().unwrap(), vec!["late=".to_owned()]);
    assert!(h.store.list_expired().await.unwrap().is_empty());
    assert!(h.store.get("fresh=").await.unwrap().is_some());
}

#[test]
fn lambda_mode_refuses_to_start_without_configuration() {
    let err = venturekit_ws::App::new(venturekit_ws::Config::default())
        .dispatcher(Mode::Lambda)
        .unwrap_err();
    assert!(err.to_string().contains("VK_WS_JWT_SECRET"), "{err}");
    // With a key but no store, Lambda mode does not silently fall back to memory.
    let err = chat_app(config()).dispatcher(Mode::Lambda).unwrap_err();
    assert!(err.to_string().contains("store"), "{err}");
}

#[test]
fn duplicate_and_reserved_names_fail_at_app_construction() {
    use venturekit_ws::{Action, ActionDef, ActionFuture, Ctx};
    struct Dup;
    impl Action for Dup {
        const NAME: &'static str = "broadcast";
        const PUBLIC: bool = false;
        type Message = serde_json::Value;
        fn call(_: Ctx, _: Self::Message) -> ActionFuture {
            Box::pin(async { Ok(None) })
        }
    }
    struct Reserved;
    impl Action for Reserved {
        const NAME: &'static str = "auth";
        const PUBLIC: bool = true;
        type Message = serde_json::Value;
        fn call(_: Ctx, _: Self::Message) -> ActionFuture {
            Box::pin(async { Ok(None) })
        }
    }
    let err = chat_app(config())
        .action(ActionDef::of::<Dup>())
        .dispatcher(Mode::Local)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("duplicate action name `broadcast`"),
        "{err}"
    );
    let err = chat_app(config())
        .action(ActionDef::of::<Reserved>())
        .dispatcher(Mode::Local)
        .unwrap_err();
    assert!(err.to_string().contains("`auth`"), "{err}");
}

#[test]
fn invocation_payloads_are_told_apart() {
    for name in [
        "example-apigw-websocket-request.json",
        "example-apigw-websocket-request-without-method.json",
        "example-apigw-websocket-request-disconnect-route.json",
    ] {
        let raw = fixture(name).to_string();
        assert!(
            matches!(Invocation::parse(&raw), Ok(Invocation::WebSocket(_))),
            "{name}"
        );
    }
    let scheduled = json!({"version": "0", "id": "x", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "1", "time": "2026-11-27T00:00:00Z",
        "region": "us-east-1", "resources": [], "detail": {}});
    assert!(matches!(
        Invocation::parse(&scheduled.to_string()),
        Ok(Invocation::Scheduled)
    ));
    let error = Invocation::parse(r#"{"hello": "world"}"#).unwrap_err();
    assert!(
        error.starts_with("not an API Gateway WebSocket event: missing field `requestContext`"),
        "{error}"
    );
    let error = Invocation::parse("{not json").unwrap_err();
    assert!(
        error.starts_with("the invocation payload is not JSON"),
        "{error}"
    );
}

#[tokio::test]
async fn a_refusing_connect_hook_is_status_403_from_connect_and_saves_nothing() {
    let store = Arc::new(MemoryStore::new());
    let dispatcher = chat_app(config())
        .on_connect(|request, _ctx| async move {
            // The real `$connect` sample carries headers; refuse on one of them.
            match request
                .headers
                .get("sec-websocket-version")
                .map(String::as_str)
            {
                Some("13") if !request.query.contains_key("allow") => {
                    Err(venturekit_ws::WsError::forbidden("refused"))
                }
                _ => Ok(()),
            }
        })
        .store(store.clone())
        .dispatcher(Mode::Lambda)
        .unwrap();
    let h = Harness {
        dispatcher,
        store,
        delivery: Arc::new(Recorder::default()),
    };
    let connect = fixture("example-apigw-websocket-request-without-method.json");
    assert_eq!(h.handle(&connect).await, 403);
    assert!(h.store.get(ID).await.unwrap().is_none());
    let mut allowed = connect.clone();
    allowed["queryStringParameters"] = json!({"allow": "1"});
    assert_eq!(h.handle(&allowed).await, 200);
    assert!(h.store.get(ID).await.unwrap().is_some());
}

#[tokio::test]
async fn the_sweeper_runs_the_disconnect_hook_with_reason_expired() {
    let h = harness();
    authed(&h, "stale=", "sam", Some("acme")).await;
    authed(&h, "peer=", "pat", Some("acme")).await;
    // Sam's session ends: the record is still stored, but expired.
    let mut expired = h.store.get("stale=").await.unwrap().unwrap();
    expired.ttl = now_secs() - 1;
    h.store.save(&expired).await.unwrap();
    let messenger = h.dispatcher.messenger(h.delivery.clone());
    let report = h.dispatcher.sweep(&messenger).await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(
        h.delivery.posts_to("peer="),
        [json!({"action": "left", "userId": "sam", "reason": "expired"})]
    );
    // Once: a second sweep finds nothing and tells nobody again.
    h.dispatcher.sweep(&messenger).await.unwrap();
    assert_eq!(h.delivery.posts_to("peer=").len(), 1);
}

/// `n` authenticated records (users `u0`..) whose sockets are gone: posts to them get 410.
async fn stale_rows(h: &Harness, n: usize) {
    for i in 0..n {
        let id = format!("stale{i}=");
        authed(h, &id, &format!("u{i}"), None).await;
        h.delivery.gone.lock().unwrap().insert(id);
    }
}

/// After a deploy, thousands of rows can be stale. The first broadcast finds them gone; the
/// chat's disconnect hook tells the tenant about each, and those sends find more gone rows.
/// Every hook runs once, one after another: not one stack frame deeper per stale row (2,000
/// nested hooks overflowed the stack before).
#[tokio::test]
async fn a_chain_of_stale_connections_runs_each_disconnect_hook_once() {
    let h = harness();
    authed(&h, ID, "alice", None).await;
    let stale = 2000;
    stale_rows(&h, stale).await;
    h.handle(&message_event(r#"{"action":"broadcast","data":1}"#))
        .await;
    let to_alice = h.delivery.posts_to(ID);
    let mut left: Vec<String> = to_alice
        .iter()
        .filter(|f| f["action"] == "left")
        .map(|f| f["userId"].as_str().unwrap().to_owned())
        .collect();
    left.sort();
    left.dedup();
    assert_eq!(left.len(), stale, "each stale user's leave is told once");
    assert_eq!(
        to_alice.iter().filter(|f| f["action"] == "left").count(),
        stale
    );
    assert_eq!(h.store.get_by_user("u0").await.unwrap(), vec![]);
    assert!(h.store.get(ID).await.unwrap().is_some());
}

/// A panicking disconnect hook is the app's bug, not the framework's: it is caught and
/// logged, the hooks queued behind it still run, and the message that found the stale
/// connections is answered as usual.
#[tokio::test]
async fn a_panicking_disconnect_hook_does_not_stop_the_hooks_queued_behind_it() {
    let app = chat_app(config()).on_disconnect(|record, _reason, ctx| async move {
        let notice = json!({"action": "left", "userId": record.user_id});
        let _ = ctx.all_tenants().broadcast(&notice).await;
        panic!("a hook with a bug");
    });
    let h = harness_of(app);
    authed(&h, ID, "alice", None).await;
    let stale = 50;
    stale_rows(&h, stale).await;
    h.handle(&message_event(
        r#"{"action":"broadcast","ref":"b1","data":1}"#,
    ))
    .await;
    let to_alice = h.delivery.posts_to(ID);
    let left = to_alice.iter().filter(|f| f["action"] == "left").count();
    assert_eq!(left, stale, "every hook ran once: {to_alice:?}");
    let reply = to_alice.iter().find(|f| f["ref"] == "b1").unwrap();
    assert_eq!(reply["action"], "broadcast", "{reply}");
}

/// A panicking connect hook refuses the connection with 500 (the app failed; a refusal is
/// 403) and saves nothing; the next connection is handled as usual.
#[tokio::test]
async fn a_panicking_connect_hook_answers_500_and_saves_nothing() {
    let app = chat_app(config()).on_connect(|request, _ctx| async move {
        if request.query.contains_key("panic") {
            panic!("a hook with a bug");
        }
        Ok(())
    });
    let h = harness_of(app);
    let mut event = fixture("example-apigw-websocket-request-without-method.json");
    event["queryStringParameters"] = json!({"panic": "1"});
    assert_eq!(h.handle(&event).await, 500);
    assert!(h.store.get(ID).await.unwrap().is_none());
    event["queryStringParameters"] = json!({});
    assert_eq!(h.handle(&event).await, 200);
    assert!(h.store.get(ID).await.unwrap().is_some());
}

/// The same chain through topic presence: 2,000 stale members of a presence topic; the
/// first 410 removes one, its leave is announced to the members, which finds the others
/// gone. They leave together after it: one read of the members, diffs of at most 50 leaves,
/// not a notice (and a read of 2,000 members) per stale connection.
#[tokio::test]
async fn a_chain_of_stale_topic_members_leaves_together() {
    let topics = Arc::new(venturekit_ws::MemoryTopics::new());
    let app = chat_app(config())
        .topic_store(topics.clone())
        .on_disconnect(|_record, _reason, _ctx| async {});
    let h = harness_of(app);
    authed(&h, ID, "alice", None).await;
    let stale = 2000;
    stale_rows(&h, stale).await;
    let key = venturekit_ws::topics::topic_key(None, "room:1");
    let ids = std::iter::once(ID.to_owned()).chain((0..stale).map(|i| format!("stale{i}=")));
    for (n, id) in ids.enumerate() {
        let member = venturekit_ws::topics::TopicMember {
            topic: key.clone(),
            connection_id: id,
            user_id: format!("u{n}"),
            meta: Default::default(),
            joined_at: n as i64,
            ttl: now_secs() + 100,
        };
        topics.join(&member).await.unwrap();
    }
    h.handle(&message_event(r#"{"action":"broadcast","data":1}"#))
        .await;
    let members = topics.members(&key, now_secs()).await.unwrap();
    assert_eq!(
        members
            .iter()
            .map(|m| m.connection_id.as_str())
            .collect::<Vec<_>>(),
        [ID]
    );
    let notices: Vec<Value> = h
        .delivery
        .posts_to(ID)
        .into_iter()
        .filter(|f| {
            f["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("vk:presence"))
        })
        .collect();
    // The first leave while the topic is over `max_presence` (100): the count.
    assert_eq!(
        notices[0],
        json!({"action": "vk:presence_count", "topic": "room:1", "count": stale})
    );
    // Then the rest together, to the one member left.
    let mut left: Vec<&str> = Vec::new();
    for diff in &notices[1..] {
        assert_eq!(diff["action"], "vk:presence_diff", "{diff}");
        let leaves = diff["leaves"].as_object().unwrap();
        assert!(!leaves.is_empty() && leaves.len() <= 50, "{}", leaves.len());
        left.extend(leaves.keys().map(String::as_str));
    }
    left.sort_unstable();
    left.dedup();
    assert_eq!(
        left.len(),
        stale - 1,
        "every other stale member's leave, once"
    );
    assert_eq!(notices.len(), 1 + (stale - 1).div_ceil(50));
}
