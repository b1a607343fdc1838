//! The benchmark tools still work: `scripts/bench.sh` and BENCHMARKS.md depend on them, and a
//! side-by-side comparison reruns them. Small, loopback-only runs; nothing here is timed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use venturekit_ws_tests::{SECRET, start_chat};

/// Runs a tool to the end; its stdout, or a failure showing both of its outputs.
fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{command:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn vk_fanout_reports_every_case() {
    let stdout = run_ok(Command::new(env!("CARGO_BIN_EXE_vk-fanout")).args([
        "--runs",
        "1",
        "--concurrency",
        "1,4",
        "30",
    ]));
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.first() == Some(&"30"))
        .collect();
    assert_eq!(rows.len(), 2, "one row per concurrency:\n{stdout}");
    for (row, concurrency) in rows.iter().zip(["1", "4"]) {
        assert_eq!(row[1], concurrency, "{stdout}");
        let posts_per_sec: f64 = row[4].parse().unwrap();
        assert!(posts_per_sec > 0.0, "{stdout}");
    }
}

#[test]
fn vk_topics_reports_memory_and_dynamodb_cases() {
    for args in [
        vec!["--runs", "1", "20"],
        vec!["--moto", "--runs", "1", "20"],
    ] {
        let stdout = run_ok(Command::new(env!("CARGO_BIN_EXE_vk-topics")).args(&args));
        let row: Vec<&str> = stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("20 "))
            .unwrap_or_else(|| panic!("no row for 20 members:\n{stdout}"))
            .split_whitespace()
            .collect();
        let store = if args[0] == "--moto" {
            "moto"
        } else {
            "memory"
        };
        assert_eq!(row[1], store, "{stdout}");
        let median_ms: f64 = row[2].parse().unwrap();
        assert!(median_ms > 0.0, "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vk_loadtest_drives_the_chat_server() {
    let server = start_chat().await;
    let url = format!("ws://{}", server.addr);
    let pid = std::process::id().to_string();
    let stdout = tokio::task::spawn_blocking(move || {
        run_ok(
            Command::new(env!("CARGO_BIN_EXE_vk-loadtest"))
                .args([url.as_str(), pid.as_str(), "25", "2"])
                .env("VK_WS_JWT_SECRET", SECRET),
        )
    })
    .await
    .unwrap();
    assert!(stdout.starts_with("25 connections: connect"), "{stdout}");
    assert!(stdout.contains("2 broadcasts"), "{stdout}");
    assert!(
        stdout.contains("\n12 direct messages at once (`send` to another user): all delivered in "),
        "{stdout}"
    );
    assert!(stdout.contains("\n25 disconnects: server CPU "), "{stdout}");
}

#[test]
fn vk_loadtest_publishes_to_a_topic_on_vk_topicserver() {
    use std::io::{BufRead, BufReader};
    let mut server = Command::new(env!("CARGO_BIN_EXE_vk-topicserver"))
        .env("VK_WS_LISTEN", "127.0.0.1:0")
        .env("VK_WS_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Keep draining stderr after the address: a closed pipe would kill the server on its
    // next log line.
    let stderr = server.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("ws://") {
                let _ = tx.send(line[at..].trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("vk-topicserver printed no ws:// address");
    let pid = server.id().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_vk-loadtest"))
        .args([url.as_str(), pid.as_str(), "25", "2"])
        .env("VK_WS_JWT_SECRET", SECRET)
        .env("VK_LOADTEST_TOPIC", "bench:1")
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("25 members of bench:1: all joined in "),
        "{stdout}"
    );
    assert!(stdout.contains("2 publishes"), "{stdout}");
    assert!(stdout.contains("\n25 disconnects: server CPU "), "{stdout}");
}

#[test]
fn vk_sendfloor_delivers_every_round() {
    let stdout = run_ok(Command::new(env!("CARGO_BIN_EXE_vk-sendfloor")).args(["40", "2"]));
    assert!(
        stdout.starts_with("40 connections: one frame to all delivered in "),
        "{stdout}"
    );
    assert!(stdout.contains("2 rounds"), "{stdout}");
}

/// `vk-lambdacpu` drives a Lambda binary through the Runtime API stand-in against moto, and
/// checks itself that every `send` reached its recipient; `vk-sdkfloor` is the binary here.
#[test]
fn vk_lambdacpu_runs_the_sdk_floor_to_the_end() {
    venturekit_ws_tests::aws::moto_endpoint();
    let stdout = run_ok(
        Command::new(env!("CARGO_BIN_EXE_vk-lambdacpu"))
            .arg(env!("CARGO_BIN_EXE_vk-sdkfloor"))
            .arg("10"),
    );
    assert!(stdout.starts_with("10 sends: process CPU "), "{stdout}");
}
