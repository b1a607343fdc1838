//! Topic publish cost: wall time, process CPU and peak memory of publishing to a topic of N
//! members, through the real management API client to a loopback server that answers 200 at
//! once (`vk-fanout serve`, in its own process), with the members in memory (the local
//! server's store) or in moto's DynamoDB (the Lambda path: a paginated, strongly consistent
//! Query per publish).
//!
//! `vk-topics [--moto] [--runs R] [N ...]`  (default: 1000 10000); `--moto` reads the
//! endpoint from `VK_TEST_MOTO_ENDPOINT` (`scripts/moto.sh` starts one).
//! Loopback only; every wait is bounded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use venturekit_ws::aws::{DynamoTopics, ManagementApi};
use venturekit_ws::clock::now_secs;
use venturekit_ws::topics::{TopicMember, TopicStore, topic_key};
use venturekit_ws::{Config, MemoryTopics, Messenger};
use venturekit_ws_tests::fanout::store_with;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// This process's CPU time so far.
fn cpu() -> Duration {
    Duration::from_secs_f64(venturekit_ws_tests::cpu_ms("self") / 1000.0)
}

async fn members_in(store: &dyn TopicStore, n: usize) {
    let key = topic_key(None, "bench");
    let joins = (0..n).map(|i| {
        let member = TopicMember {
            topic: key.clone(),
            connection_id: format!("conn{i:05}="),
            user_id: format!("u{i}"),
            meta: serde_json::Map::new(),
            joined_at: 1,
            ttl: now_secs() + 3600,
        };
        async move { store.join(&member).await.unwrap() }
    });
    use futures_util::StreamExt;
    futures_util::stream::iter(joins)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

async fn case(endpoint: &str, moto: bool, n: usize, runs: usize) {
    let config = {
        let mut c = Config::default();
        c.management_endpoint = Some(endpoint.to_owned());
        c
    };
    let sdk = venturekit_ws_tests::aws::sdk_config();
    let (topics, backend): (Arc<dyn TopicStore>, &str) = match moto {
        true => {
            let client = venturekit_ws_tests::aws::dynamo_client();
            let table = format!("vk-bench-topics-{:08x}", rand::random::<u32>());
            venturekit_ws::aws::create_topics_table(&client, &table)
                .await
                .unwrap();
            (Arc::new(DynamoTopics::new(client, table)), "moto")
        }
        false => (Arc::new(MemoryTopics::new()), "memory"),
    };
    members_in(topics.as_ref(), n).await;
    let store = store_with(n).await;
    let api = ManagementApi::new(&sdk, &config);
    let messenger = Messenger::new(store, api.delivery(endpoint))
        .with_concurrency(32)
        .with_topic_store(topics);
    let message =
        serde_json::json!({"action": "message", "room": "bench", "data": "x".repeat(100)});
    std::fs::write("/proc/self/clear_refs", "5").expect("cannot reset VmHWM (Linux only)");
    let before = venturekit_ws_tests::proc_status_kb("self", "VmRSS:");
    let mut samples = Vec::with_capacity(runs);
    let cpu_before = cpu();
    for _ in 0..runs {
        let started = Instant::now();
        let report = messenger.publish_in(None, "bench", &message).await.unwrap();
        samples.push(started.elapsed());
        assert_eq!(report.delivered, n, "{report:?}");
    }
    let cpu_per = (cpu() - cpu_before) / runs as u32;
    let peak = venturekit_ws_tests::proc_status_kb("self", "VmHWM:");
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{n:>7} {backend:>7} {:>10.1} {:>15} {:>12.0} {:>14.1}",
        ms(samples[runs / 2]),
        format!("{:.1}-{:.1}", ms(samples[0]), ms(samples[runs - 1])),
        ms(cpu_per),
        peak.saturating_sub(before) as f64 / 1024.0
    );
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 5usize;
    let mut moto = false;
    let mut sizes = Vec::new();
    while !args.is_empty() {
        let arg = args.remove(0);
        match arg.as_str() {
            "--runs" => runs = args.remove(0).parse().expect("--runs N"),
            "--moto" => moto = true,
            n => sizes.push(
                n.parse::<usize>()
                    .expect("usage: vk-topics [--moto] [--runs R] [N ...]"),
            ),
        }
    }
    if sizes.is_empty() {
        sizes = vec![1_000, 10_000];
    }
    let sink = std::env::current_exe().unwrap().with_file_name("vk-fanout");
    let mut server = Killed(
        Command::new(&sink)
            .arg("serve")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} (build it: cargo build --release -p venturekit-ws-tests --bins)", sink.display())),
    );
    let mut endpoint = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut endpoint)
        .unwrap();
    let endpoint = endpoint.trim().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("publish to one topic of N members, {runs} runs per case, 32 posts in flight");
    println!(
        "{:>7} {:>7} {:>10} {:>15} {:>12} {:>14}",
        "members", "store", "median ms", "min-max ms", "CPU ms/pub", "peak extra MB"
    );
    for &n in &sizes {
        rt.block_on(case(&endpoint, moto, n, runs));
    }
}
