//! Local server scale: open N concurrent WebSocket connections, authenticate them all,
//! broadcast to all, and report connect rate, auth time, broadcast completion time and
//! the server's memory per connection. Only loopback; bounded in count and time.
//!
//! `vk-loadtest <ws://127.0.0.1:PORT> <server pid> [connections] [broadcasts]` — see
//! scripts/bench.sh. Broadcasts (default 5) are sent one after another, each timed until the
//! last connection has it. Any server speaking the same protocol can be measured.
//!
//! With `VK_LOADTEST_TOPIC=bench:1` (against `vk-topicserver`), every connection first joins
//! that topic (`vk:join`), and each timed round is a topic publish
//! (`{"action":"publish","topic":…}`) instead of a broadcast; the server's CPU per publish is
//! reported too. Otherwise, after the broadcasts, 1,000 direct messages are sent at once
//! (`send` from client 2j to client 2j+1's user) and timed until every reply and message
//! has arrived. `VK_LOADTEST_HOLD_SECS=N` keeps the connections open N seconds after the
//! report (to profile the server with all of them idle) and reports the server CPU over that
//! time. Last, every connection closes and the server CPU the disconnects cost is reported.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use venturekit_ws_tests::each_receives;

fn rss_kb(pid: &str) -> u64 {
    venturekit_ws_tests::proc_status_kb(pid, "VmRSS:")
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: vk-loadtest <ws url> <server pid> [connections] [broadcasts]");
    assert!(
        url.starts_with("ws://127.") || url.starts_with("ws://localhost"),
        "loopback only"
    );
    let pid = args.next().expect("server pid");
    let n: usize = args.next().map(|v| v.parse().unwrap()).unwrap_or(10_000);
    let rounds: usize = args.next().map(|v| v.parse().unwrap()).unwrap_or(5).max(1);
    let secret = std::env::var("VK_WS_JWT_SECRET").expect("VK_WS_JWT_SECRET");
    let deadline = Instant::now() + Duration::from_secs(300);

    let rss_before = rss_kb(&pid);
    let started = Instant::now();
    let sockets = venturekit_ws_tests::open_clients(&url, n).await;
    assert!(Instant::now() < deadline, "took too long");
    let connect_time = started.elapsed();
    let rss_connected = rss_kb(&pid);

    // Authenticate every connection (one token per user).
    let auth_started = Instant::now();
    let (sinks, mut streams): (Vec<_>, Vec<_>) = sockets.into_iter().map(|s| s.split()).unzip();
    let mut sinks = sinks;
    let sends = sinks.iter_mut().enumerate().map(|(i, sink)| {
        let spec = venturekit_ws::auth::DevToken {
            sub: format!("user{i}"),
            tenants: vec![],
            email: None,
            ttl_secs: 3600,
            ..Default::default()
        };
        let token = venturekit_ws::auth::mint_dev_token(
            secret.as_bytes(),
            &spec,
            &venturekit_ws::Config::default(),
        )
        .unwrap();
        async move {
            sink.send(Message::text(
                serde_json::json!({"action": "auth", "token": token}).to_string(),
            ))
            .await
            .unwrap();
        }
    });
    futures_util::future::join_all(sends).await;
    each_receives(
        "auth replies",
        &mut streams,
        Duration::from_secs(120),
        |text| assert!(text.contains("\"success\":true"), "{text}"),
    )
    .await;
    let auth_time = auth_started.elapsed();
    let topic = std::env::var("VK_LOADTEST_TOPIC").ok();
    let mut joined = (Duration::ZERO, 0.0);
    if let Some(topic) = &topic {
        joined = measured(&pid, async {
            let joins = sinks.iter_mut().map(|sink| async move {
                let join = serde_json::json!({"action": "vk:join", "topic": topic});
                sink.send(Message::text(join.to_string())).await.unwrap();
            });
            futures_util::future::join_all(joins).await;
            each_receives(
                "join replies",
                &mut streams,
                Duration::from_secs(120),
                |text| assert!(text.contains("\"ok\":true"), "{text}"),
            )
            .await;
        })
        .await;
    }
    let rss_authed = rss_kb(&pid);
    let cpu_before = venturekit_ws_tests::cpu_ms(&pid);

    // Broadcasts to everyone, one at a time; each done when the last connection has it.
    let mut broadcast_times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let data = format!("load{round}");
        let broadcast_started = Instant::now();
        let frame = match &topic {
            Some(topic) => serde_json::json!({"action": "publish", "topic": topic, "data": data}),
            None => serde_json::json!({"action": "broadcast", "data": data}),
        };
        sinks[0]
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
        let expected = format!("\"data\":\"{data}\"");
        let expected = expected.as_str();
        each_receives(
            &format!("broadcast or publish {}", round + 1),
            &mut streams,
            Duration::from_secs(120),
            |text| assert!(text.contains(expected), "{text}"),
        )
        .await;
        broadcast_times.push(broadcast_started.elapsed());
    }
    let cpu_per_round = (venturekit_ws_tests::cpu_ms(&pid) - cpu_before) / rounds as f64;
    broadcast_times.sort();
    let sends = if topic.is_none() {
        let pairs = sinks.len().min(2000) / 2;
        Some((
            pairs,
            measured(&pid, direct_messages(pairs, &mut sinks, &mut streams)).await,
        ))
    } else {
        None
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if let Some(topic) = &topic {
        println!(
            "{n} members of {topic}: all joined in {:.2} s (server CPU {:.0} ms); publish delivered to all in {:.0} ms median ({:.0}-{:.0} ms, {rounds} publishes); server CPU {:.0} ms per publish; server RSS {} MB with everyone joined",
            joined.0.as_secs_f64(),
            joined.1,
            ms(broadcast_times[rounds / 2]),
            ms(broadcast_times[0]),
            ms(broadcast_times[rounds - 1]),
            cpu_per_round,
            rss_authed / 1024,
        );
        disconnect_all(&pid, sinks, streams).await;
        return;
    }

    println!(
        "{n} connections: connect {:.2} s ({:.0}/s); auth all {:.2} s; broadcast to all delivered in {:.0} ms median ({:.0}-{:.0} ms, {rounds} broadcasts; server CPU {:.0} ms per broadcast); server RSS {} MB -> {} MB ({:.1} KB per authenticated connection; {:.1} KB connected, before auth)",
        connect_time.as_secs_f64(),
        n as f64 / connect_time.as_secs_f64(),
        auth_time.as_secs_f64(),
        ms(broadcast_times[rounds / 2]),
        ms(broadcast_times[0]),
        ms(broadcast_times[rounds - 1]),
        cpu_per_round,
        rss_before / 1024,
        rss_authed / 1024,
        (rss_authed.saturating_sub(rss_before)) as f64 / n as f64,
        (rss_connected.saturating_sub(rss_before)) as f64 / n as f64,
    );
    if let Some((count, (time, cpu))) = sends {
        println!(
            "{count} direct messages at once (`send` to another user): all delivered in {:.0} ms; server CPU {:.1} µs per message",
            ms(time),
            cpu * 1000.0 / count as f64
        );
    }
    hold(&pid);
    disconnect_all(&pid, sinks, streams).await;
}

/// Runs `phase`, returning its wall time and the server's CPU over it (ms).
async fn measured(pid: &str, phase: impl std::future::Future<Output = ()>) -> (Duration, f64) {
    let cpu_before = venturekit_ws_tests::cpu_ms(pid);
    let started = Instant::now();
    phase.await;
    (
        started.elapsed(),
        venturekit_ws_tests::cpu_ms(pid) - cpu_before,
    )
}

/// Clients 0, 2, 4, … of the first `2 * pairs` each send a direct message to the next one's
/// user (`{"action":"send","to":"user{i+1}",…}`), all at once; done when every sender has its
/// reply and every recipient its message.
async fn direct_messages<A, B>(pairs: usize, sinks: &mut [A], streams: &mut [B])
where
    A: futures_util::Sink<Message> + Unpin,
    A::Error: std::fmt::Debug,
    B: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let sends = sinks[..pairs * 2]
        .iter_mut()
        .step_by(2)
        .enumerate()
        .map(|(j, sink)| async move {
            let to = format!("user{}", 2 * j + 1);
            let frame = serde_json::json!({"action": "send", "to": to, "data": "dm"});
            sink.send(Message::text(frame.to_string())).await.unwrap();
        });
    futures_util::future::join_all(sends).await;
    each_receives(
        "direct messages and their replies",
        &mut streams[..pairs * 2],
        Duration::from_secs(120),
        |text| {
            assert!(
                text.contains("\"delivered\":1") || text.contains("\"data\":\"dm\""),
                "{text}"
            )
        },
    )
    .await;
}

/// Closes every connection and reports the server CPU spent on the disconnects (read until
/// it stops growing for half a second).
async fn disconnect_all<A, B>(pid: &str, sinks: Vec<A>, streams: Vec<B>) {
    let n = sinks.len();
    let cpu_before = venturekit_ws_tests::cpu_ms(pid);
    let started = Instant::now();
    drop(sinks);
    drop(streams);
    let mut last = cpu_before;
    let mut still = 0;
    while still < 5 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = venturekit_ws_tests::cpu_ms(pid);
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    println!(
        "{n} disconnects: server CPU {:.0} ms (with what the app does on each, such as the chat telling everyone who left)",
        last - cpu_before
    );
}

/// With `VK_LOADTEST_HOLD_SECS=N`, keeps every connection open N seconds after the report
/// (for a profiler to look at the server with all of them idle), and reports the server CPU
/// over that time (its timers and sweeps with every connection idle).
fn hold(pid: &str) {
    if let Some(secs) = std::env::var("VK_LOADTEST_HOLD_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let cpu_before = venturekit_ws_tests::cpu_ms(pid);
        std::thread::sleep(Duration::from_secs(secs));
        println!(
            "idle for {secs} s: server CPU {:.0} ms",
            venturekit_ws_tests::cpu_ms(pid) - cpu_before
        );
    }
}
