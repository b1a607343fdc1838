//! Fan-out: `broadcast` to 1,000 and 10,000 connections through the real management API
//! client (`aws-sdk-apigatewaymanagement`) against a fast HTTP server on loopback, with the
//! concurrency bound as a parameter, next to a one-at-a-time loop. Peak memory is measured
//! by `vk-fanout` (one process per case), not here.
//!
//! `cargo bench -p venturekit-ws-tests --bench fanout`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;
use venturekit_ws::aws::ManagementApi;
use venturekit_ws::{Config, ConnectionStore, Delivery, Messenger};
use venturekit_ws_tests::fanout::{serve_fast_management_api, store_with};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let endpoint = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        serve_fast_management_api(listener).await
    });
    let sdk = venturekit_ws_tests::aws::sdk_config();
    let config = {
        let mut c = Config::default();
        c.management_endpoint = Some(endpoint.clone());
        c
    };
    let api = ManagementApi::new(&sdk, &config);
    let delivery = api.delivery(&endpoint);
    let message =
        serde_json::json!({"action": "message", "from": "bench", "data": "x".repeat(100)});
    let text = message.to_string();

    let mut group = c.benchmark_group("broadcast");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for n in [1_000usize, 10_000] {
        let store = rt.block_on(store_with(n));
        group.throughput(Throughput::Elements(n as u64));
        for concurrency in [8usize, 32, 128] {
            let connections =
                Messenger::new(store.clone(), delivery.clone()).with_concurrency(concurrency);
            group.bench_with_input(
                BenchmarkId::new(format!("concurrency_{concurrency}"), n),
                &n,
                |b, _| {
                    b.iter(|| {
                        let report = rt.block_on(connections.broadcast(&message)).unwrap();
                        assert_eq!(report.delivered, n);
                    })
                },
            );
        }
        group.bench_with_input(BenchmarkId::new("one_at_a_time", n), &n, |b, _| {
            b.iter(|| {
                rt.block_on(async {
                    for c in store.list().await.unwrap() {
                        delivery.post(&c.connection_id, &text).await.unwrap();
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
