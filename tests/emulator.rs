//! The local server as a faithful and safe API Gateway emulator: the AWS SDK's own
//! `GetConnection` reads it, a client that stops reading cannot grow the server's memory,
//! and one connection's messages are dispatched concurrently, as API Gateway invokes them
//! (with an ordered mode for debugging).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::time::Duration;
use venturekit_ws::{App, Ctx, WsError, actions, ws_action};
use venturekit_ws_tests::aws::sdk_config;
use venturekit_ws_tests::*;

#[tokio::test]
async fn the_aws_sdk_reads_get_connection() {
    let server = start_chat().await;
    let _c = Client::connect(server.addr).await;
    let id = records(server.addr).await[0]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let config = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk_config())
        .endpoint_url(format!("http://{}/local", server.addr))
        .build();
    let api = aws_sdk_apigatewaymanagement::Client::from_conf(config);
    let info = api
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap();
    let connected = info.connected_at().expect("connectedAt was read");
    assert!(connected.secs() > 1_700_000_000, "{connected:?}");
    assert!(info.last_active_at().is_some());
    let identity = info.identity().expect("identity was read");
    assert_eq!(identity.source_ip(), Some("127.0.0.1"));
    assert!(identity.user_agent().is_some());
    // And a gone connection is the SDK's GoneException.
    api.delete_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap();
    let err = api
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_gone_exception()),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_cannot_grow_the_server() {
    let server = start_chat().await;
    // Connect, then never read again.
    let _stalled = Client::connect(server.addr).await;
    let id = records(server.addr).await[0]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/@connections/{}", encode_id(&id));
    let frame = format!(r#"{{"data":"{}"}}"#, "x".repeat(64 * 1024));
    let mut refused = None;
    // 800 x 64 KB = 50 MB: far beyond the socket buffers and the 1 MB queue.
    for i in 0..800 {
        let r = http(server.addr, "POST", &path, frame.as_bytes()).await;
        if r.status != 200 {
            assert_eq!(r.status, 429, "{}", r.body);
            assert_eq!(r.header("x-amzn-errortype"), Some("LimitExceededException"));
            refused = Some(i);
            break;
        }
    }
    let refused = refused.expect("posts to a client that never reads must start failing");
    assert!(refused > 4, "the first posts fit the queue ({refused})");
    // Other clients are unaffected.
    let mut c = Client::connect(server.addr).await;
    c.send(json!({"action": "ping"})).await;
    assert_eq!(c.recv().await["action"], "pong");
}

#[ws_action("slow")]
async fn slow(_ctx: Ctx) -> Result<serde_json::Value, WsError> {
    tokio::time::sleep(Duration::from_millis(400)).await;
    Ok(json!({"action": "slow", "done": true}))
}

#[tokio::test]
async fn messages_of_one_connection_run_concurrently_unless_ordered() {
    let mut config = config();
    let server = start(App::new(config.clone()).actions(actions![slow])).await;
    let mut c = Client::authed(server.addr, "alice", &[]).await;
    c.send(json!({"action": "slow"})).await;
    c.send(json!({"action": "ping"})).await;
    assert_eq!(
        c.recv().await["action"],
        "pong",
        "ping overtakes the slow action"
    );
    assert_eq!(c.recv().await["action"], "slow");

    config.local_ordered = true;
    let server = start(App::new(config).actions(actions![slow])).await;
    let mut c = Client::authed(server.addr, "alice", &[]).await;
    c.send(json!({"action": "slow"})).await;
    c.send(json!({"action": "ping"})).await;
    assert_eq!(
        c.recv().await["action"],
        "slow",
        "ordered mode keeps arrival order"
    );
    assert_eq!(c.recv().await["action"], "pong");
}
