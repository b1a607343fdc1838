//! Property-based fuzzing of the dispatcher (runs in CI for a bounded number of cases).
//!
//! Arbitrary message bodies, structured messages with every built-in and chat action and
//! fields of random types, and arbitrary mutations of the real API Gateway event fixtures
//! go through the dispatcher with the in-memory store. Properties: nothing panics; every
//! frame sent back is a JSON object of the protocol (`auth`, `pong`, `error`, `message`,
//! `send`) with a known error code; the event is answered 200, 400 or 500.
//!
//! Run longer: `PROPTEST_CASES=100000 cargo test --release -p venturekit-ws-tests --test fuzz`.
//! A failing case is saved by proptest under `tests/proptest-regressions/` and replayed
//! first on every later run; commit it as a regression test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex};
use venturekit_ws::event::WebSocketEvent;
use venturekit_ws::{Delivery, DeliveryError, Dispatcher, Mode};
use venturekit_ws_tests::*;

#[derive(Default)]
struct Frames(Mutex<Vec<String>>);

#[async_trait::async_trait]
impl Delivery for Frames {
    async fn post(&self, _: &str, payload: &str) -> Result<(), DeliveryError> {
        self.0.lock().unwrap().push(payload.to_owned());
        Ok(())
    }
    async fn close(&self, _: &str) -> Result<(), DeliveryError> {
        Ok(())
    }
}

const CODES: &[&str] = &[
    "unauthorized",
    "bad_request",
    "unknown_action",
    "payload_too_large",
    "rate_limited",
    "internal",
    "invalid_token",
    "token_expired",
    "forbidden_tenant",
];

fn check_frame(frame: &str) {
    let value: Value = serde_json::from_str(frame).unwrap_or_else(|_| panic!("not JSON: {frame}"));
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {frame}"));
    let action = object
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match action {
        "pong" => assert!(object["timestamp"].is_string()),
        "auth" => {
            if object["success"] == true {
                assert!(object["userId"].is_string(), "{frame}");
            } else {
                let code = object["error"]["code"].as_str().unwrap_or_default();
                assert!(CODES.contains(&code), "{frame}");
            }
        }
        "error" => {
            let code = object["error"]["code"].as_str().unwrap_or_default();
            assert!(CODES.contains(&code), "{frame}");
            assert!(object["error"]["message"].is_string(), "{frame}");
            assert!(object["requestAction"].is_null() || object["requestAction"].is_string());
        }
        "message" => assert!(object["from"].is_string(), "{frame}"),
        "send" => assert!(object["delivered"].is_u64(), "{frame}"),
        other => panic!("unexpected frame action `{other}`: {frame}"),
    }
}

struct Rig {
    runtime: tokio::runtime::Runtime,
    dispatcher: Dispatcher,
    frames: Arc<Frames>,
}

fn rig() -> Rig {
    let mut config = config();
    config.rate_limit_per_sec = 0; // the fuzzer sends far more than a person would
    Rig {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        dispatcher: chat_app(config).dispatcher(Mode::Local).unwrap(),
        frames: Arc::new(Frames::default()),
    }
}

impl Rig {
    fn run(&self, event: &WebSocketEvent) -> i64 {
        let delivery: Arc<dyn Delivery> = self.frames.clone();
        let status = self
            .runtime
            .block_on(self.dispatcher.handle(event, delivery))
            .status_code;
        for frame in self.frames.0.lock().unwrap().drain(..) {
            check_frame(&frame);
        }
        status
    }

    /// Connects (and, half the time, authenticates) a connection, then sends `body`.
    fn message(&self, body: &str, authenticate: bool) {
        let events = venturekit_ws::event::EventBuilder::default();
        assert_eq!(self.run(&events.connect("fuzz=", 1)), 200);
        if authenticate {
            let auth = json!({"action": "auth", "token": token("alice", &["acme"])}).to_string();
            self.run(&events.message("fuzz=", 1, &auth));
        }
        assert_eq!(self.run(&events.message("fuzz=", 1, body)), 200);
        self.run(&events.disconnect("fuzz=", 1, Some(1000), "bye"));
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn action_name() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("auth")),
        Just(json!("ping")),
        Just(json!("broadcast")),
        Just(json!("send")),
        ".{0,20}".prop_map(Value::String),
        json_value(),
    ]
}

fn message() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("token".to_owned()),
        Just("tenantId".to_owned()),
        Just("to".to_owned()),
        Just("data".to_owned()),
        ".{0,10}",
    ];
    (
        action_name(),
        prop::collection::vec((field, json_value()), 0..5),
    )
        .prop_map(|(action, fields)| {
            let mut object = Map::new();
            object.insert("action".into(), action);
            for (k, v) in fields {
                object.insert(k, v);
            }
            Value::Object(object)
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bodies(body in ".{0,200}", authenticate in any::<bool>()) {
        let rig = rig();
        rig.message(&body, authenticate);
    }

    #[test]
    fn arbitrary_bytes_as_text(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let rig = rig();
        rig.message(&String::from_utf8_lossy(&bytes), true);
    }

    #[test]
    fn structured_messages(msg in message(), authenticate in any::<bool>()) {
        let rig = rig();
        rig.message(&msg.to_string(), authenticate);
    }

    #[test]
    fn arbitrary_json_values(value in json_value()) {
        let rig = rig();
        rig.message(&value.to_string(), true);
    }

    #[test]
    fn mutated_api_gateway_events(
        path in prop::sample::select(vec![
            "requestContext.routeKey", "requestContext.eventType", "requestContext.connectionId",
            "requestContext.connectedAt", "requestContext.requestTimeEpoch", "requestContext.stage",
            "requestContext.apiId", "requestContext.messageId", "body", "isBase64Encoded", "headers",
        ]),
        replacement in json_value(),
        fixture in prop::sample::select(vec![
            "example-apigw-websocket-request.json",
            "example-apigw-websocket-request-without-method.json",
            "example-apigw-websocket-request-disconnect-route.json",
        ]),
    ) {
        let rig = rig();
        let file = format!("{}/fixtures/apigw-websocket/{fixture}", env!("CARGO_MANIFEST_DIR"));
        let mut event: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let mut target = &mut event;
        let parts: Vec<&str> = path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            target = &mut target[*part];
        }
        target[parts[parts.len() - 1]] = replacement;
        // Malformed events are rejected by deserialization (a Lambda error), never a panic.
        if let Ok(event) = serde_json::from_value::<WebSocketEvent>(event) {
            let status = rig.run(&event);
            prop_assert!([200, 400, 500].contains(&status), "status {}", status);
        }
    }
}
