//! Delivery through the real management API client (`aws-sdk-apigatewaymanagement`)
//! against a recording HTTP server on loopback, with the DynamoDB store on moto:
//! fan-out reports, 410 cleanup of exactly the gone record, throttling retries, timeouts,
//! size limits, and the sweeper.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::time::{Duration, Instant};
use venturekit_ws::aws::{ManagementApi, RetryPolicy};
use venturekit_ws::clock::now_secs;
use venturekit_ws::{
    Config, Connection, ConnectionStore, Delivery, DeliveryError, Identity, MessagingError, Mode,
    Scope,
};
use venturekit_ws_tests::aws::*;
use venturekit_ws_tests::{chat_app, config};

async fn rig(label: &str) -> Rig {
    venturekit_ws_tests::aws::rig(
        label,
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(10),
            timeout: Duration::from_millis(500),
        },
    )
    .await
}

/// Saves an authenticated record for `user` in `tenant`.
async fn user(rig: &Rig, id: &str, user: &str, tenant: Option<&str>) {
    let now = now_secs();
    rig.store
        .save(&Connection::unauthenticated(id, 1, now + 30))
        .await
        .unwrap();
    let identity = Identity {
        user_id: user.into(),
        tenant_id: tenant.map(String::from),
        email: None,
        claims: Default::default(),
    };
    rig.store
        .authenticate(id, &identity, now + 600)
        .await
        .unwrap();
}

#[tokio::test]
async fn posts_go_to_the_stage_path_with_encoded_ids() {
    let rig = rig("post").await;
    user(&rig, "a+b/c=", "alice", None).await;
    rig.messenger()
        .post_to_connection("a+b/c=", &json!({"action": "hi"}))
        .await
        .unwrap();
    let calls = rig.server.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "POST");
    assert_eq!(calls[0].stage.as_deref(), Some("prod"));
    assert_eq!(calls[0].connection_id, "a+b/c=");
    assert!(calls[0].path.contains("%3D"), "{}", calls[0].path);
    assert_eq!(calls[0].json(), json!({"action": "hi"}));
}

#[tokio::test]
async fn fan_out_reports_and_removes_only_the_gone_connection() {
    let rig = rig("fanout").await;
    user(&rig, "phone=", "bob", Some("acme")).await;
    user(&rig, "laptop=", "bob", Some("acme")).await;
    user(&rig, "stale=", "bob", Some("acme")).await;
    user(&rig, "other=", "bob", Some("globex")).await;
    user(&rig, "carol=", "carol", Some("acme")).await;
    rig.server.gone("stale=");

    let msg = json!({"action": "message", "from": "alice", "data": 1});
    let report = rig
        .messenger()
        .send_to_user_in("bob", &Scope::Tenant("acme".into()), &msg)
        .await
        .unwrap();
    assert_eq!((report.delivered, report.gone, report.failed), (2, 1, 0));
    assert_eq!(rig.server.posts_to("phone="), vec![msg.clone()]);
    assert_eq!(rig.server.posts_to("laptop="), vec![msg.clone()]);
    assert!(rig.server.posts_to("other=").is_empty(), "other tenant");
    assert!(rig.server.posts_to("carol=").is_empty());
    // Exactly the gone record was removed.
    assert!(rig.store.get("stale=").await.unwrap().is_none());
    for id in ["phone=", "laptop=", "other=", "carol="] {
        assert!(rig.store.get(id).await.unwrap().is_some(), "{id}");
    }

    // Tenant fan-out through the GSI, and a broadcast scan.
    let report = rig.messenger().send_to_tenant("acme", &msg).await.unwrap();
    assert_eq!(report.delivered, 3);
    let report = rig.messenger().broadcast(&msg).await.unwrap();
    assert_eq!(report.delivered, 4);
}

#[tokio::test]
async fn throttling_is_retried_with_backoff() {
    let rig = rig("throttle").await;
    user(&rig, "busy=", "bob", None).await;
    user(&rig, "swamped=", "bob", None).await;
    rig.server.throttle("busy=", 2);
    rig.server.throttle("swamped=", 100);
    let report = rig
        .messenger()
        .send_to_user("bob", &json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!((report.delivered, report.gone, report.failed), (1, 0, 1));
    assert_eq!(
        rig.server.calls_for("busy=").len(),
        3,
        "two 429s, then success"
    );
    assert_eq!(
        rig.server.calls_for("swamped=").len(),
        4,
        "gives up after 4 attempts"
    );
    // Throttled is not gone: the record stays.
    assert!(rig.store.get("swamped=").await.unwrap().is_some());
}

#[tokio::test]
async fn a_hung_endpoint_times_out_without_blocking_the_others() {
    let rig = rig("timeout").await;
    user(&rig, "hung=", "bob", None).await;
    user(&rig, "fine=", "bob", None).await;
    rig.server.stall("hung=");
    let started = Instant::now();
    let report = rig
        .messenger()
        .send_to_user("bob", &json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!((report.delivered, report.gone, report.failed), (1, 0, 1));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timeout did not apply"
    );
    let endpoint = rig.api.configured_endpoint().unwrap();
    let err = rig
        .api
        .delivery(&endpoint)
        .post("hung=", "{}")
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::Failed(ref m) if m.contains("timed out")),
        "{err}"
    );
}

#[tokio::test]
async fn payloads_over_128_kb_are_refused_before_any_call() {
    let rig = rig("size").await;
    user(&rig, "a=", "alice", None).await;
    let big = json!({"data": "x".repeat(128 * 1024)});
    let err = rig.messenger().broadcast(&big).await.unwrap_err();
    assert!(matches!(err, MessagingError::PayloadTooLarge(_)), "{err}");
    let err = rig
        .messenger()
        .post_to_connection("a=", &big)
        .await
        .unwrap_err();
    assert!(matches!(err, MessagingError::PayloadTooLarge(_)), "{err}");
    assert!(rig.server.calls().is_empty());
}

#[tokio::test]
async fn close_deletes_the_connection_and_the_record() {
    let rig = rig("close").await;
    user(&rig, "a=", "alice", None).await;
    rig.messenger().close("a=").await.unwrap();
    let calls = rig.server.calls_for("a=");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "DELETE");
    assert!(rig.store.get("a=").await.unwrap().is_none());
}

#[tokio::test]
async fn the_sweeper_closes_expired_connections_through_the_management_api() {
    let rig = rig("sweep").await;
    let now = now_secs();
    rig.store
        .save(&Connection::unauthenticated("late=", 1, now - 2))
        .await
        .unwrap();
    rig.store
        .save(&Connection::unauthenticated("fresh=", 1, now + 30))
        .await
        .unwrap();
    rig.store
        .save(&Connection::unauthenticated("vanished=", 1, now - 2))
        .await
        .unwrap();
    rig.server.gone("vanished=");
    let dispatcher = chat_app(config())
        .store(rig.store.clone())
        .dispatcher(Mode::Lambda)
        .unwrap();
    let endpoint = rig.api.configured_endpoint().unwrap();
    let report = dispatcher
        .sweep(&dispatcher.messenger(rig.api.delivery(&endpoint)))
        .await
        .unwrap();
    assert_eq!(report.expired, 2);
    assert_eq!(report.closed, 1);
    let calls = rig.server.calls_for("late=");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].method, "POST");
    assert_eq!(calls[0].json()["error"]["code"], "unauthorized");
    assert_eq!(calls[1].method, "DELETE");
    assert!(rig.store.list_expired().await.unwrap().is_empty());
    assert!(rig.store.get("fresh=").await.unwrap().is_some());
    assert!(rig.server.calls_for("fresh=").is_empty());
}

#[test]
fn endpoints_are_derived_from_the_event_unless_overridden() {
    let sdk = sdk_config();
    let api = ManagementApi::new(&sdk, &Config::default());
    let request = venturekit_ws::event::RequestInfo {
        connection_id: "c=".into(),
        api_id: Some("abcd1234".into()),
        stage: Some("prod".into()),
        domain_name: Some("chat.example.com".into()),
        ..Default::default()
    };
    // From the API id, not the (custom) domain name.
    assert_eq!(
        api.endpoint_for(&request).as_deref(),
        Some("https://abcd1234.execute-api.us-east-1.amazonaws.com/prod")
    );
    let config = {
        let mut c = Config::default();
        c.management_endpoint = Some("https://chat.example.com/prod".into());
        c
    };
    let api = ManagementApi::new(&sdk, &config);
    assert_eq!(
        api.endpoint_for(&request).as_deref(),
        Some("https://chat.example.com/prod")
    );
}

#[tokio::test]
async fn a_scheduled_sweep_without_an_endpoint_still_removes_expired_records() {
    let rig = rig("noendpoint").await;
    let now = now_secs();
    rig.store
        .save(&Connection::unauthenticated("late=", 1, now - 2))
        .await
        .unwrap();
    rig.store
        .save(&Connection::unauthenticated("fresh=", 1, now + 30))
        .await
        .unwrap();
    let dispatcher = chat_app(config())
        .store(rig.store.clone())
        .dispatcher(Mode::Lambda)
        .unwrap();
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI").is_none(),
        "this test needs the variable unset"
    );
    let api = ManagementApi::new(&sdk_config(), &Config::default());
    let event = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    let result = venturekit_ws::lambda::handle(&dispatcher, &api, &event.to_string())
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(result).unwrap(),
        json!({"expired": 1, "closed": 0, "kept": 0, "complete": true})
    );
    assert!(rig.store.list_expired().await.unwrap().is_empty());
    assert!(rig.store.get("fresh=").await.unwrap().is_some());
    assert!(rig.server.calls().is_empty());
}
