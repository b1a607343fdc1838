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

/// A numbered frame of about 32 KB.
fn numbered(n: usize) -> String {
    format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(32 * 1024))
}

#[tokio::test]
async fn frames_written_at_once_and_frames_that_waited_arrive_whole_and_in_order() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = start_chat().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}", server.addr))
        .await
        .unwrap();
    let id = records(server.addr).await[0]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/@connections/{}", encode_id(&id));
    // The client does not read: the first frames go straight to the socket, one only in part
    // once its buffers are full, then the rest wait in the queue until it refuses (429).
    // Pings meanwhile: their pongs have to wait behind them.
    let mut accepted = Vec::new();
    let mut pings = 0;
    for n in 0.. {
        assert!(
            n < 2_000,
            "posts to a client that does not read must start failing"
        );
        let r = http(server.addr, "POST", &path, numbered(n).as_bytes()).await;
        if r.status == 429 {
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        accepted.push(n);
        if n % 8 == 0 {
            ws.send(Message::Ping(vec![n as u8].into())).await.unwrap();
            pings += 1;
        }
    }
    assert!(accepted.len() > 4, "{accepted:?}");
    // Then it reads, while 100 more are posted (each retried until the queue takes it).
    let next = accepted.len();
    let last = next + 99;
    let addr = server.addr;
    let poster = tokio::spawn(async move {
        for n in next..=last {
            loop {
                let r = http(addr, "POST", &path, numbered(n).as_bytes()).await;
                if r.status == 200 {
                    break;
                }
                assert_eq!(r.status, 429, "{}", r.body);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let mut received = Vec::new();
    let mut pongs = 0;
    while received.last() != Some(&last) {
        let frame = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("the frames arrive")
            .expect("the connection stays open")
            .expect("every frame is whole");
        match frame {
            Message::Text(text) => {
                let value: serde_json::Value = serde_json::from_str(text.as_str())
                    .unwrap_or_else(|e| panic!("a broken frame ({e}): {}", &text[..80]));
                let n = value["n"].as_u64().unwrap() as usize;
                assert_eq!(text.as_str(), numbered(n), "frame {n} is whole");
                received.push(n);
            }
            Message::Pong(_) => pongs += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    poster.await.unwrap();
    let expected: Vec<usize> = accepted.into_iter().chain(next..=last).collect();
    assert_eq!(received, expected, "every accepted frame, once, in order");
    assert_eq!(pongs, pings, "every ping answered");
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
