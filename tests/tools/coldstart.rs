//! Cold start: time from spawning the Lambda binary to its first
//! `GET /2018-06-01/runtime/invocation/next` against a Runtime API stand-in on loopback.
//! No AWS call happens at init (the SDK resolves credentials lazily).
//!
//! `vk-coldstart <path to bootstrap> [runs]` — see scripts/bench.sh. Any other runtime can be
//! measured the same way for a side-by-side figure:
//! `vk-coldstart [--runs N] [--env KEY=VALUE ...] -- <command> [args ...]`
//! (for example a Node.js function started through the Lambda runtime interface client).
//! The environment is cleared except for `PATH`, the Lambda variables and `--env`.

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
    let usage = "usage: vk-coldstart <bootstrap> [runs] | vk-coldstart [--runs N] [--env K=V ...] -- <command> [args ...]";
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 20usize;
    let mut extra_env = Vec::new();
    let command: Vec<String> = if let Some(split) = args.iter().position(|a| a == "--") {
        let command = args.split_off(split + 1);
        args.pop();
        while !args.is_empty() {
            let flag = args.remove(0);
            let value = if args.is_empty() {
                panic!("{usage}")
            } else {
                args.remove(0)
            };
            match flag.as_str() {
                "--runs" => runs = value.parse().expect(usage),
                "--env" => {
                    let (k, v) = value.split_once('=').expect("--env KEY=VALUE");
                    extra_env.push((k.to_owned(), v.to_owned()));
                }
                _ => panic!("{usage}"),
            }
        }
        command
    } else {
        if let Some(r) = args.get(1) {
            runs = r.parse().expect(usage);
        }
        args.into_iter().take(1).collect()
    };
    assert!(!command.is_empty() && runs > 0, "{usage}");
    let binary = &command[0];
    let size = std::fs::metadata(binary).map(|m| m.len()).ok();
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let runtime = RuntimeApi::start().await;
        let started = Instant::now();
        let mut child = Command::new(binary)
            .args(&command[1..])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
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
            .envs(extra_env.iter().cloned())
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
    let size = match size {
        Some(bytes) if command.len() == 1 => {
            format!("; binary {:.1} MB", bytes as f64 / 1_000_000.0)
        }
        _ => String::new(),
    };
    println!(
        "cold start to first /invocation/next over {runs} runs: median {:.2} ms, min {:.2} ms, max {:.2} ms{size}",
        ms(samples[runs / 2]),
        ms(samples[0]),
        ms(samples[runs - 1]),
    );
}
