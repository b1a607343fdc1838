//! API Gateway's limits on the local server: message size, binary frames, idle and
//! maximum connection time, and the auth window (the sweeper and the guard).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use venturekit_ws_tests::*;

const LIMIT: usize = 128 * 1024;

/// A `ping` message padded to exactly `len` bytes.
fn padded_ping(len: usize) -> String {
    let head = r#"{"action":"ping","pad":""#;
    let tail = r#""}"#;
    let pad = "x".repeat(len - head.len() - tail.len());
    let text = format!("{head}{pad}{tail}");
    assert_eq!(text.len(), len);
    text
}

#[tokio::test]
async fn a_message_of_exactly_128_kb_is_processed() {
    let server = start_chat().await;
    let mut c = Client::connect(server.addr).await;
    c.send_text(&padded_ping(LIMIT)).await;
    assert_eq!(c.recv().await["action"], "pong");
}

#[tokio::test]
async fn a_message_over_128_kb_closes_with_1009() {
    let server = start_chat().await;
    let mut c = Client::connect(server.addr).await;
    c.send_text(&padded_ping(LIMIT + 1)).await;
    assert_eq!(c.expect_close().await, Some(1009));
    // Far over the limit too (refused by the socket layer before being buffered).
    let mut d = Client::connect(server.addr).await;
    d.send_text(&padded_ping(3 * 1024 * 1024)).await;
    assert_eq!(d.expect_close().await, Some(1009));
    // The server stays up; the closed connections' records are gone.
    let mut e = Client::connect(server.addr).await;
    e.assert_no_pending().await;
    for _ in 0..100 {
        if records(server.addr).await.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(records(server.addr).await.len(), 1);
}

#[tokio::test]
async fn a_binary_frame_closes_with_1003() {
    let server = start_chat().await;
    let mut c = Client::connect(server.addr).await;
    c.send_message(Message::binary(vec![1u8, 2, 3])).await;
    assert_eq!(c.expect_close().await, Some(1003));
    Client::connect(server.addr).await.assert_no_pending().await;
}

#[tokio::test]
async fn idle_connections_close_with_1001() {
    let mut config = config();
    config.idle_timeout = Some(Duration::from_secs(1));
    let server = start(chat_app(config)).await;
    let mut c = Client::connect(server.addr).await;
    assert_eq!(c.expect_close().await, Some(1001));
}

#[tokio::test]
async fn connections_close_with_1001_at_the_maximum_duration_even_when_busy() {
    let mut config = config();
    config.max_connection = Duration::from_secs(2);
    let server = start(chat_app(config)).await;
    let mut c = Client::authed(server.addr, "alice", &[]).await;
    let mut pongs = 0;
    let code = loop {
        c.send(json!({"action": "ping"})).await;
        match c.next_event().await {
            Event::Frame(f) => {
                assert_eq!(f["action"], "pong");
                pongs += 1;
                assert!(pongs < 200, "never closed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Event::Closed(code) => break code,
        }
    };
    assert_eq!(code, Some(1001));
    assert!(pongs >= 5, "closed too early, after {pongs} pongs");
}

#[tokio::test]
async fn the_sweeper_closes_silent_unauthenticated_connections() {
    let mut config = config();
    config.auth_timeout = Duration::from_secs(1);
    let server = start(chat_app(config)).await;
    let mut silent = Client::connect(server.addr).await;
    let mut authed = Client::authed(server.addr, "alice", &[]).await;
    // Within the window (1 s) plus the sweep interval: an unauthorized frame, then the close.
    let frame = silent.recv().await;
    assert_eq!(frame["action"], "error");
    assert_eq!(frame["error"]["code"], "unauthorized");
    assert_eq!(frame["requestAction"], serde_json::Value::Null);
    assert!(silent.expect_close().await.is_some());
    // The authenticated connection is untouched, and the silent one's record is gone.
    authed.assert_no_pending().await;
    let rows = records(server.addr).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["userId"], "alice");
}

#[tokio::test]
async fn messages_after_the_window_get_unauthorized_and_the_connection_closes() {
    let mut config = config();
    config.auth_timeout = Duration::from_secs(1);
    let server = start(chat_app(config)).await;
    let mut late = Client::connect(server.addr).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Whether the guard or the sweeper gets there first, the answer is the same.
    late.send(json!({"action": "broadcast", "data": 1})).await;
    match late.next_event().await {
        Event::Frame(f) => {
            assert_eq!(f["error"]["code"], "unauthorized", "{f}");
            assert!(late.expect_close().await.is_some());
        }
        Event::Closed(code) => assert!(code.is_some()),
    }
    let mut authed_late = Client::connect(server.addr).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    authed_late
        .send(json!({"action": "auth", "token": token("alice", &[])}))
        .await;
    match authed_late.next_event().await {
        Event::Frame(f) => {
            assert_eq!(f["error"]["code"], "unauthorized", "{f}");
            assert!(authed_late.expect_close().await.is_some());
        }
        Event::Closed(code) => assert!(code.is_some()),
    }
    Client::connect(server.addr).await.assert_no_pending().await;
}

/// Holds every message at the guard's rate counter until opened, and records how many
/// were held at once.
#[derive(Default)]
struct Gate {
    held: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    open: tokio::sync::Notify,
    opened: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Interpose for Gate {
    async fn before(&self, op: &'static str) -> Result<(), venturekit_ws::StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        if op != "count_message" {
            return Ok(());
        }
        let now = self.held.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        while !self.opened.load(SeqCst) {
            let wait = self.open.notified();
            if self.opened.load(SeqCst) {
                break;
            }
            wait.await;
        }
        self.held.fetch_sub(1, SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_client_with_16_messages_in_flight_waits_and_resumes_when_they_finish() {
    use std::sync::atomic::Ordering::SeqCst;
    let gate = std::sync::Arc::new(Interposed {
        inner: std::sync::Arc::new(venturekit_ws::MemoryStore::new()),
        with: Gate::default(),
    });
    let server = start(chat_app(config()).store(gate.clone())).await;
    let mut c = Client::connect(server.addr).await;
    for _ in 0..40 {
        c.send(json!({"action": "ping"})).await;
    }
    // 16 messages reach the store; the server stops reading the other 24.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while gate.with.held.load(SeqCst) < 16 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} messages reached the store",
            gate.with.held.load(SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gate.with.most.load(SeqCst), 16, "more than 16 in flight");
    // Finishing them lets the server read on: every message is answered.
    gate.with.opened.store(true, SeqCst);
    gate.with.open.notify_waiters();
    for _ in 0..40 {
        assert_eq!(c.recv().await["action"], "pong");
    }
    assert!(gate.with.most.load(SeqCst) <= 16);
}
