//! Cold start: time from spawning the Lambda binary to its first
//! `GET /2018-06-01/runtime/invocation/next` against a Runtime API stand-in on loopback.
//! No AWS call happens at init (the SDK resolves credentials lazily).
//!
//! `vk-coldstart <path to bootstrap> [runs]` — see scripts/bench.sh.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use venturekit_ws_tests::aws::RuntimeApi;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let binary = args.next().expect("usage: vk-coldstart <bootstrap> [runs]");
    let runs: usize = args.next().map(|r| r.parse().unwrap()).unwrap_or(20);
    let size = std::fs::metadata(&binary).unwrap().len();
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let runtime = RuntimeApi::start().await;
        let started = Instant::now();
        let mut child = Command::new(&binary)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", runtime.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "chat")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/chat")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("VK_WS_TABLE", "connections")
            .env("VK_WS_JWT_SECRET", "bench-secret")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while runtime.next_calls() == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the function never asked for work"
            );
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
        samples.push(started.elapsed());
        let _ = child.kill();
        let _ = child.wait();
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "cold start to first /invocation/next over {runs} runs: median {:.2} ms, min {:.2} ms, max {:.2} ms; binary {:.1} MB",
        ms(samples[runs / 2]),
        ms(samples[0]),
        ms(samples[runs - 1]),
        size as f64 / 1_000_000.0
    );
}
