//! The test kit: a suite of 1,000 kit-driven messages (`venturekit_ws::testing`, in
//! process), against the chat app. Each iteration builds a fresh kit, authenticates three
//! clients, then sends 1,000 messages, asserting on each: 500 `send` requests (a reply by
//! `ref`, a push to the recipient) and 500 `broadcast`s (delivered to exactly the tenant's
//! three clients). The virtual clock moves 100 ms per message so the rate limit never trips.
//!
//! `cargo bench -p venturekit-ws-tests --bench kit`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::time::Duration;
use venturekit_ws::testing::{TestKit, User};
use venturekit_ws_tests::{chat_app, config};

async fn thousand_messages() {
    let kit = TestKit::new(chat_app(config())).unwrap();
    let alice = kit.authed(User::new("alice").tenant("acme")).await;
    let bob = kit.authed(User::new("bob").tenant("acme")).await;
    let carol = kit.authed(User::new("carol").tenant("acme")).await;
    for i in 0..500 {
        kit.advance(Duration::from_millis(100));
        let reply = alice
            .request(&json!({"action": "send", "to": "bob", "data": i}))
            .await;
        assert_eq!(reply["delivered"], 1);
        bob.assert_push(json!({"action": "message", "data": i}))
            .await;
        kit.advance(Duration::from_millis(100));
        carol.send(&json!({"action": "broadcast", "data": i})).await;
        kit.assert_delivered(
            json!({"action": "message", "from": "carol"}),
            &[&alice, &bob, &carol],
        )
        .await;
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("kit");
    group.sample_size(20);
    group.bench_function("1000_messages", |b| {
        b.iter(|| runtime.block_on(thousand_messages()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
