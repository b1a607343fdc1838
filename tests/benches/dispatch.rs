//! Dispatch: a raw API Gateway `$default` event for a small `send`, read as the Lambda adapter
//! reads it ([`Invocation::parse`]) → auth guard (in-memory store) → typed deserialization →
//! the chat handler → serialized reply, next to the same work written by hand with
//! `serde_json::Value` and a `match` over the same store and delivery (what a user would write
//! without the framework). `framework_via_value_before` keeps the adapter's former path
//! (payload → `Value` → event) for comparison; `framework_ping` is the built-in `ping`.
//!
//! `cargo bench -p venturekit-ws-tests --bench dispatch`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use venturekit_ws::clock::now_secs;
use venturekit_ws::event::{EventBuilder, WebSocketEvent};
use venturekit_ws::lambda::Invocation;
use venturekit_ws::{
    Connection, ConnectionStore, Delivery, DeliveryError, Identity, MemoryStore, Mode,
};
use venturekit_ws_tests::{chat_app, config};

#[derive(Default)]
struct Null(AtomicUsize);

#[async_trait::async_trait]
impl Delivery for Null {
    async fn post(&self, _: &str, payload: &str) -> Result<(), DeliveryError> {
        self.0.fetch_add(payload.len(), Ordering::Relaxed);
        Ok(())
    }
    async fn close(&self, _: &str) -> Result<(), DeliveryError> {
        Ok(())
    }
}

async fn seed(store: &MemoryStore) {
    for (id, user) in [("alice=", "alice"), ("bob1=", "bob"), ("bob2=", "bob")] {
        store
            .save(&Connection::unauthenticated(id, 1, now_secs() + 3600))
            .await
            .unwrap();
        let identity = Identity {
            user_id: user.into(),
            tenant_id: Some("acme".into()),
            email: None,
            // alice holds the role the `send_admin` case checks.
            claims: venturekit_ws::Claims::new(
                json!({"roles": ["admin"]})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        };
        store
            .authenticate(id, &identity, now_secs() + 3600)
            .await
            .unwrap();
    }
}

/// The hand-written equivalent: parse, match, check the record, fan out, reply.
async fn by_hand(raw: &str, store: &MemoryStore, delivery: &Null) {
    let event: Value = serde_json::from_str(raw).unwrap();
    let id = event["requestContext"]["connectionId"]
        .as_str()
        .unwrap_or_default();
    let body = event["body"].as_str().unwrap_or_default();
    let message: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => return,
    };
    match message["action"].as_str() {
        Some("send") => {
            let Some(me) = store.get(id).await.unwrap() else {
                return;
            };
            if !me.authenticated {
                return;
            }
            let (Some(to), Some(data)) = (message["to"].as_str(), message.get("data")) else {
                return;
            };
            let out = json!({"action": "message", "from": me.user_id, "data": data}).to_string();
            let mut delivered = 0;
            for c in store.get_by_user(to).await.unwrap() {
                if c.authenticated && c.tenant_id == me.tenant_id {
                    delivery.post(&c.connection_id, &out).await.unwrap();
                    delivered += 1;
                }
            }
            let reply = json!({"action": "send", "delivered": delivered}).to_string();
            delivery.post(id, &reply).await.unwrap();
        }
        other => {
            let reply = json!({"action": "error", "requestAction": other,
                "error": {"code": "unknown_action", "message": "unknown action"}});
            delivery.post(id, &reply.to_string()).await.unwrap();
        }
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(MemoryStore::new());
    rt.block_on(seed(&store));
    let mut config = config();
    config.rate_limit_per_sec = 0; // measure dispatch, not the limiter's window
    // The same `send`, registered again behind a role check (and sent with a `ref` below).
    let dispatcher = chat_app(config)
        .action(venturekit_ws::ActionDef::from_fn("send_admin", chat::send).with_roles(&["admin"]))
        .store(store.clone())
        .dispatcher(Mode::Local)
        .unwrap();
    let delivery = Arc::new(Null::default());
    let event =
        EventBuilder::default().message("alice=", 1, r#"{"action":"send","to":"bob","data":"hi"}"#);
    let raw = serde_json::to_string(&event).unwrap();

    let parse = |raw: &str| match Invocation::parse(raw) {
        Ok(Invocation::WebSocket(event)) => event,
        other => panic!("not a WebSocket event: {other:?}"),
    };
    let mut group = c.benchmark_group("dispatch_send");
    group.bench_function("framework", |b| {
        b.iter(|| {
            let event = parse(black_box(&raw));
            let delivery: Arc<dyn Delivery> = delivery.clone();
            rt.block_on(dispatcher.handle(&event, delivery))
        })
    });
    group.bench_function("framework_via_value_before", |b| {
        b.iter(|| {
            let value: Value = serde_json::from_str(black_box(&raw)).unwrap();
            let event: WebSocketEvent = serde_json::from_value(value).unwrap();
            let delivery: Arc<dyn Delivery> = delivery.clone();
            rt.block_on(dispatcher.handle(&event, delivery))
        })
    });
    group.bench_function("hand_written", |b| {
        b.iter(|| rt.block_on(by_hand(black_box(&raw), &store, &delivery)))
    });
    let with_ref = serde_json::to_string(&EventBuilder::default().message(
        "alice=",
        1,
        r#"{"action":"send_admin","ref":"r1","to":"bob","data":"hi"}"#,
    ))
    .unwrap();
    group.bench_function("framework_ref_and_role", |b| {
        b.iter(|| {
            let event = parse(black_box(&with_ref));
            let delivery: Arc<dyn Delivery> = delivery.clone();
            rt.block_on(dispatcher.handle(&event, delivery))
        })
    });
    let ping = serde_json::to_string(&EventBuilder::default().message(
        "alice=",
        1,
        r#"{"action":"ping"}"#,
    ))
    .unwrap();
    group.bench_function("framework_ping", |b| {
        b.iter(|| {
            let event = parse(black_box(&ping));
            let delivery: Arc<dyn Delivery> = delivery.clone();
            rt.block_on(dispatcher.handle(&event, delivery))
        })
    });
    group.finish();
    assert!(delivery.0.load(Ordering::Relaxed) > 0);
}

criterion_group!(benches, bench);
criterion_main!(benches);
