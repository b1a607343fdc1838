//! CPU per message of a Lambda binary: the function process's CPU time (all threads, from
//! `/proc/<pid>/task/*/schedstat`) over N `send` invocations fed by a Runtime API stand-in,
//! with the connection table in moto's DynamoDB and a recording management API on loopback.
//!
//! `VK_TEST_MOTO_ENDPOINT=… vk-lambdacpu <bootstrap> [invocations] [--direct] [--gap-ms N] [--env K=V ...]`
//! (scripts/moto.sh starts moto). The function reaches moto through a keep-alive proxy in
//! this process (DynamoDB keeps connections open; moto closes each one, which would add a
//! TCP connect per call that AWS does not have); `--direct` skips the proxy. The bootstrap is
//! the chat example (it needs its history and topics tables, which the tool creates). The rate limit is raised so that every send
//! runs the whole path (counter, guard, query, post, reply); the tool checks that they did.
//! Replies travel in the route response and the log level is `info`, as the generated template
//! deploys the function.
//! `--gap-ms N` waits N ms before each send (a user typing rather than a burst: with a gap
//! longer than the rate window, each message starts a new window).
//! Prints CPU and wall time per `send`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use serde_json::json;
use std::process::{Command, Stdio};
use std::time::Instant;
use venturekit_ws_tests::aws::{
    KeepAliveProxy, ManagementServer, RuntimeApi, connect_event, dynamo_client, fresh_table,
    message_event, moto_endpoint,
};
use venturekit_ws_tests::{SECRET, token};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let usage = "usage: VK_TEST_MOTO_ENDPOINT=… vk-lambdacpu <bootstrap> [invocations] [--direct] [--gap-ms N] [--env K=V ...]";
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    assert!(!args.is_empty(), "{usage}");
    let bin = args.remove(0);
    let mut invocations = 300usize;
    let mut extra = Vec::new();
    let mut direct = false;
    let mut gap = std::time::Duration::ZERO;
    while !args.is_empty() {
        let arg = args.remove(0);
        if arg == "--direct" {
            direct = true;
        } else if arg == "--gap-ms" {
            gap = std::time::Duration::from_millis(args.remove(0).parse().expect(usage));
        } else if arg == "--env" {
            let pair = args.remove(0);
            let (k, v) = pair.split_once('=').expect(usage);
            extra.push((k.to_owned(), v.to_owned()));
        } else {
            invocations = arg.parse().expect(usage);
        }
    }
    let client = dynamo_client();
    let table = fresh_table(&client, "cpu").await;
    chat::history::create_table(&client, &format!("{table}-history"))
        .await
        .unwrap();
    venturekit_ws::aws::create_topics_table(&client, &format!("{table}-topics"))
        .await
        .unwrap();
    let runtime = RuntimeApi::start().await;
    let mgmt = ManagementServer::start().await;
    let proxy = KeepAliveProxy::start(&moto_endpoint()).await;
    let dynamo_endpoint = if direct {
        moto_endpoint()
    } else {
        proxy.endpoint()
    };
    let mut cmd = Command::new(&bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // The generated template's level: a span per message (its fields formatted once),
        // no line per message but the metrics.
        .env("RUST_LOG", "info")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_LAMBDA_FUNCTION_NAME", "chat")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_RUNTIME_API", runtime.addr.to_string())
        .env("VK_WS_TABLE", &table)
        .env("CHAT_HISTORY_TABLE", format!("{table}-history"))
        .env("VK_WS_TOPICS_TABLE", format!("{table}-topics"))
        .env("VK_WS_JWT_SECRET", SECRET)
        // The rate counter runs for every message, but never limits this load.
        .env("VK_WS_RATE_LIMIT_PER_SEC", "10000")
        .env("VK_WS_RATE_LIMIT_BURST", "20000")
        // As the generated template deploys it: replies in the route response
        // (`--env VK_WS_ROUTE_RESPONSE=0` posts them instead).
        .env("VK_WS_ROUTE_RESPONSE", "1")
        .env("AWS_ENDPOINT_URL_DYNAMODB", &dynamo_endpoint)
        .env(
            "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI",
            mgmt.endpoint("dev"),
        )
        .stdout(Stdio::null());
    for (k, v) in &extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("starting the bootstrap");
    let pid = child.id();

    for (id, user) in [("alice=", "alice"), ("bob=", "bob")] {
        runtime.invoke(connect_event(id)).await.unwrap();
        let auth = json!({"action": "auth", "token": token(user, &["acme"])});
        runtime.invoke(message_event(id, auth)).await.unwrap();
    }
    let send = |i: usize| json!({"action": "send", "to": "bob", "data": i});
    for i in 0..20 {
        runtime
            .invoke(message_event("alice=", send(i)))
            .await
            .unwrap();
    }
    let pid = pid.to_string();
    let cpu_before = venturekit_ws_tests::cpu_ms(&pid);
    let started = Instant::now();
    let mut response = serde_json::Value::Null;
    for i in 0..invocations {
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        response = runtime
            .invoke(message_event("alice=", send(i)))
            .await
            .unwrap();
    }
    let wall = started.elapsed().as_secs_f64() - gap.as_secs_f64() * invocations as f64;
    let cpu = (venturekit_ws_tests::cpu_ms(&pid) - cpu_before) / 1000.0;
    // Every send went all the way: bob got it and alice got the count (in the response
    // with a route response, else posted).
    let last = match response["body"].as_str() {
        Some(body) => serde_json::from_str(body).unwrap(),
        None => mgmt.posts_to("alice=").pop().expect("alice got no reply"),
    };
    assert_eq!(
        last["delivered"], 1,
        "the last send was not delivered: {last}"
    );
    assert!(
        mgmt.posts_to("bob=").len() > invocations,
        "bob did not receive every send"
    );
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "{invocations} sends: process CPU {:.3} ms per send ({:.2} s in all); wall {:.2} ms per send",
        cpu * 1000.0 / invocations as f64,
        cpu,
        wall * 1000.0 / invocations as f64
    );
}
