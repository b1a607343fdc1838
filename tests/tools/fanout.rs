//! Fan-out rate and peak memory: `broadcast` to N connections through the real management API
//! client against a loopback HTTP server that answers 200 at once (run in its own process, so
//! only the sender's memory is counted). Every case runs in a fresh process: the peak
//! resident memory (`VmHWM`, reset through `/proc/self/clear_refs`) above the resident memory
//! just before the first broadcast is what fanning out costs.
//!
//! `vk-fanout [--runs R] [--concurrency 1,8,32,128] [N ...]`  (default: 1000 10000) —
//! see scripts/bench.sh. Loopback only; every wait is bounded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use venturekit_ws::aws::ManagementApi;
use venturekit_ws::{Config, Messenger};
use venturekit_ws_tests::fanout::{serve_fast_management_api, store_with};

fn status_kb(field: &str) -> u64 {
    venturekit_ws_tests::proc_status_kb("self", field)
}

/// `serve`: the management API stand-in; prints its endpoint, then serves until killed.
async fn serve() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", serve_fast_management_api(listener).await);
    std::future::pending::<()>().await;
}

/// `measure ENDPOINT N CONCURRENCY RUNS`: one case; prints one line of results.
async fn measure(endpoint: String, n: usize, concurrency: usize, runs: usize) {
    let store = store_with(n).await;
    let config = {
        let mut c = Config::default();
        c.management_endpoint = Some(endpoint.clone());
        c
    };
    let api = ManagementApi::new(&venturekit_ws_tests::aws::sdk_config(), &config);
    let connections = Messenger::new(store, api.delivery(&endpoint)).with_concurrency(concurrency);
    let message =
        serde_json::json!({"action": "message", "from": "bench", "data": "x".repeat(100)});
    std::fs::write("/proc/self/clear_refs", "5").expect("cannot reset VmHWM (Linux only)");
    let before = status_kb("VmRSS:");
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let report = connections.broadcast(&message).await.unwrap();
        samples.push(started.elapsed());
        assert_eq!(report.delivered, n, "{report:?}");
    }
    let peak = status_kb("VmHWM:");
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = samples[runs / 2];
    println!(
        "{n} {concurrency} {:.1} {:.1} {:.1} {:.0} {before} {}",
        ms(median),
        ms(samples[0]),
        ms(samples[runs - 1]),
        n as f64 / median.as_secs_f64(),
        peak.saturating_sub(before)
    );
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match args.first().map(String::as_str) {
        Some("serve") => return rt.block_on(serve()),
        Some("measure") => {
            let n = args[2].parse().unwrap();
            let c = args[3].parse().unwrap();
            let runs = args[4].parse().unwrap();
            return rt.block_on(measure(args[1].clone(), n, c, runs));
        }
        _ => {}
    }
    let mut runs = 5usize;
    let mut concurrency = vec![1usize, 8, 32, 128];
    let mut sizes = Vec::new();
    while !args.is_empty() {
        let arg = args.remove(0);
        match arg.as_str() {
            "--runs" => runs = args.remove(0).parse().expect("--runs N"),
            "--concurrency" => {
                concurrency = args
                    .remove(0)
                    .split(',')
                    .map(|c| c.parse().expect("--concurrency 1,8,32"))
                    .collect()
            }
            n => sizes.push(
                n.parse::<usize>()
                    .expect("usage: vk-fanout [--runs R] [--concurrency 1,8,32,128] [N ...]"),
            ),
        }
    }
    if sizes.is_empty() {
        sizes = vec![1_000, 10_000];
    }
    let me = std::env::current_exe().unwrap();
    let mut server = Killed(
        Command::new(&me)
            .arg("serve")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut endpoint = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut endpoint)
        .unwrap();
    let endpoint = endpoint.trim().to_owned();
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "server said {endpoint:?}"
    );
    println!(
        "broadcast through the management API client, {runs} runs per case, each case in a fresh process"
    );
    println!(
        "{:>7} {:>11} {:>11} {:>19} {:>10} {:>13} {:>14}",
        "conns",
        "concurrency",
        "median ms",
        "min-max ms",
        "posts/s",
        "peak extra MB",
        "bytes per conn"
    );
    for &n in &sizes {
        for &c in &concurrency {
            let out = Command::new(&me)
                .args([
                    "measure",
                    &endpoint,
                    &n.to_string(),
                    &c.to_string(),
                    &runs.to_string(),
                ])
                .stderr(Stdio::inherit())
                .output()
                .unwrap();
            assert!(out.status.success(), "case {n}/{c} failed");
            let line = String::from_utf8(out.stdout).unwrap();
            let f: Vec<f64> = line
                .split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect();
            println!(
                "{:>7} {:>11} {:>11.1} {:>19} {:>10.0} {:>13.1} {:>14.0}",
                n,
                c,
                f[2],
                format!("{:.1}-{:.1}", f[3], f[4]),
                f[5],
                f[7] / 1024.0,
                f[7] * 1024.0 / n as f64
            );
        }
    }
}
