//! The sweeper against moto's DynamoDB and a recording management API: thousands of silent
//! connections within two sweeps, a deadline that stops a sweep early, the race with `auth`
//! (a record refreshed after the scan is never closed), and a failed close that keeps the
//! record for the next sweep.
//!
//! `cargo test --release -p venturekit-ws-tests --test sweep -- --nocapture` prints the
//! sweep rate (rows per second) quoted in BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use venturekit_ws::auth::Identity;
use venturekit_ws::aws::RetryPolicy;
use venturekit_ws::clock::now_secs;
use venturekit_ws::dispatch::SweepOptions;
use venturekit_ws::store::ExpiredPage;
use venturekit_ws::{App, Connection, ConnectionStore, Mode};
use venturekit_ws_tests::aws::*;
use venturekit_ws_tests::{Interpose, Interposed, chat_app, config};

async fn rig(label: &str) -> Rig {
    venturekit_ws_tests::aws::rig(
        label,
        RetryPolicy {
            attempts: 2,
            base_delay: Duration::from_millis(10),
            timeout: Duration::from_millis(300),
        },
    )
    .await
}

fn app(store: Arc<dyn ConnectionStore>) -> App {
    let mut config = config();
    config.fanout_concurrency = 32;
    chat_app(config).store(store)
}

/// Writes `n` expired, unauthenticated records in batches of 25.
async fn expired_records(rig: &Rig, n: usize) {
    use aws_sdk_dynamodb::types::AttributeValue;
    let ttl = now_secs() - 5;
    let items = (0..n).map(|i| {
        [
            ("connectionId", AttributeValue::S(format!("silent{i:05}="))),
            ("authenticated", AttributeValue::Bool(false)),
            ("connectedAt", AttributeValue::N("1".into())),
            ("ttl", AttributeValue::N(ttl.to_string())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    });
    put_items(&rig.client, rig.store.table(), items).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_silent_connections_are_closed_within_two_sweeps() {
    const N: usize = 5000;
    let rig = rig("sweep5k").await;
    expired_records(&rig, N).await;
    let dispatcher = app(rig.store.clone()).dispatcher(Mode::Lambda).unwrap();
    let connections = rig.messenger_of(&dispatcher);

    // The first sweep gets a deadline too short for the whole table: it stops early...
    let started = Instant::now();
    let first = dispatcher
        .sweep_with(
            &connections,
            SweepOptions::until(Some(Instant::now() + Duration::from_millis(1500))),
        )
        .await
        .unwrap();
    assert!(
        !first.complete,
        "a 1.5 s deadline cannot cover {N} rows: {first:?}"
    );
    assert!(first.closed > 0, "{first:?}");
    // ... and the next run finishes the job.
    let second = dispatcher.sweep(&connections).await.unwrap();
    let elapsed = started.elapsed();
    assert!(second.complete, "{second:?}");
    assert_eq!(first.expired + second.expired, N, "{first:?} {second:?}");
    assert_eq!(first.closed + second.closed, N, "{first:?} {second:?}");
    let deletes: HashSet<String> = rig
        .server
        .calls()
        .into_iter()
        .filter(|c| c.method == "DELETE")
        .map(|c| c.connection_id)
        .collect();
    assert_eq!(
        deletes.len(),
        N,
        "every silent connection closed exactly once"
    );
    assert!(rig.store.list_expired().await.unwrap().is_empty());
    eprintln!(
        "sweep: {N} rows in {:.2} s = {:.0} rows/s (moto + recording management API, 32 in flight)",
        elapsed.as_secs_f64(),
        N as f64 / elapsed.as_secs_f64()
    );
}

/// Every expired page also lists a record that authenticated after the scan (an eventually
/// consistent read, or a sweep racing `auth`).
struct StalePage {
    stale: Connection,
}

#[async_trait::async_trait]
impl Interpose for StalePage {
    fn page(&self, page: ExpiredPage) -> ExpiredPage {
        let mut records = page.records.clone();
        records.push(self.stale.clone());
        ExpiredPage::new(records, page.next)
    }
}

#[tokio::test]
async fn a_connection_that_authenticated_after_the_scan_is_left_alone() {
    let rig = rig("sweeprace").await;
    let now = now_secs();
    // Saved with a window, then authenticated: live for two hours.
    rig.store
        .save(&Connection::unauthenticated("racer=", 1, now + 30))
        .await
        .unwrap();
    let identity = Identity {
        user_id: "alice".into(),
        tenant_id: None,
        email: None,
        claims: Default::default(),
    };
    rig.store
        .authenticate("racer=", &identity, now + 7200)
        .await
        .unwrap();
    // The sweeper's page still shows it as it was before `auth`, expired.
    let stale = Connection::unauthenticated("racer=", 1, now - 1);
    rig.store
        .save(&Connection::unauthenticated("late=", 1, now - 1))
        .await
        .unwrap();
    let store = Arc::new(Interposed {
        inner: rig.store.clone(),
        with: StalePage { stale },
    });
    let dispatcher = app(store).dispatcher(Mode::Lambda).unwrap();
    let report = dispatcher
        .sweep(&rig.messenger_of(&dispatcher))
        .await
        .unwrap();
    assert_eq!((report.expired, report.closed), (1, 1), "{report:?}");
    assert!(rig.server.calls_for("racer=").is_empty(), "never closed");
    let kept = rig
        .store
        .get("racer=")
        .await
        .unwrap()
        .expect("never deleted");
    assert!(kept.authenticated);
    assert_eq!(rig.server.calls_for("late=").len(), 2);
}

#[tokio::test]
async fn a_failed_close_keeps_the_record_for_the_next_sweep() {
    let rig = rig("sweepkeep").await;
    let now = now_secs();
    for id in ["stuck=", "late=", "vanished="] {
        rig.store
            .save(&Connection::unauthenticated(id, 1, now - 1))
            .await
            .unwrap();
    }
    rig.server.stall("stuck=");
    rig.server.gone("vanished=");
    let dispatcher = app(rig.store.clone()).dispatcher(Mode::Lambda).unwrap();
    let report = dispatcher
        .sweep(&rig.messenger_of(&dispatcher))
        .await
        .unwrap();
    assert_eq!(report.expired, 2, "{report:?}");
    assert_eq!(report.closed, 1, "{report:?}");
    assert_eq!(report.kept, 1, "{report:?}");
    assert!(report.complete);
    // Kept, still expired: the next sweep tries again.
    let left: Vec<String> = rig
        .store
        .list_expired()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.connection_id)
        .collect();
    assert_eq!(left, ["stuck="]);
    assert!(rig.store.get("vanished=").await.unwrap().is_none());
}
