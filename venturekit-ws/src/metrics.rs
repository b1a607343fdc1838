//! Metrics: what the dispatcher and the deliveries did, counted per action.
//!
//! On Lambda every invocation ends with CloudWatch Embedded Metric Format lines on stdout
//! (CloudWatch Logs turns them into metrics, no API call): namespace `VentureKitWs`,
//! dimension `Action`, metrics `Messages` (messages received), `Delivered`, `Gone` (410),
//! `Failed` (other delivery failures), `Throttled` (429s from the management API, retried
//! or not), `WindowExpired` (a message or `auth` refused because the authentication window or
//! the session had passed, and connections the sweeper expired) and `FanoutMs` (time spent in
//! fan-outs); and `AuthFailures` with dimension `Code` (`invalid_token`, `token_expired`, …).
//! The local server keeps the same counts: `GET /_vk/metrics`, and a summary line when it
//! stops.
//!
//! Counting is scoped: [`scope`] runs a future with a [`MetricSet`] to count into; outside a
//! scope (tests, the kit) nothing is counted.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

/// The CloudWatch namespace.
pub const NAMESPACE: &str = "VentureKitWs";

/// The counts of one action.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct ActionCounts {
    /// Messages received.
    pub messages: u64,
    /// Frames delivered.
    pub delivered: u64,
    /// Deliveries answered 410.
    pub gone: u64,
    /// Deliveries that failed otherwise.
    pub failed: u64,
    /// 429s from the management API.
    pub throttled: u64,
    /// Refusals and sweeps because a window or session had passed.
    pub window_expired: u64,
    /// Milliseconds spent in fan-outs.
    pub fanout_ms: f64,
}

impl ActionCounts {
    /// Adds `other`'s counts to these.
    fn add(&mut self, other: &ActionCounts) {
        self.messages += other.messages;
        self.delivered += other.delivered;
        self.gone += other.gone;
        self.failed += other.failed;
        self.throttled += other.throttled;
        self.window_expired += other.window_expired;
        self.fanout_ms += other.fanout_ms;
    }
}

/// Counts by action, and authentication failures by code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricSet {
    /// By action (`-` for a message without a readable action, `vk:sweep` for the sweeper).
    pub actions: BTreeMap<String, ActionCounts>,
    /// Failed `auth` attempts by error code.
    pub auth_failures: BTreeMap<String, u64>,
}

/// Something to count.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    Message,
    Delivered,
    Gone,
    Failed,
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    Throttled,
    WindowExpired,
}

#[derive(Clone)]
struct Recorder {
    set: Arc<Mutex<MetricSet>>,
    action: Arc<Mutex<String>>,
}

tokio::task_local! {
    static CURRENT: Recorder;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `future`, counting what it does into `set` (under action `action` until the
/// dispatcher names the message's action).
///
/// A plain function returning the scoped future: an `async fn` would hold `future` twice in
/// its state, as its argument and inside the scope (rust-lang/rust#62958), doubling every
/// message's future (≈ 5 KB more for each message in flight).
pub fn scope<F: Future>(
    set: Arc<Mutex<MetricSet>>,
    action: &str,
    future: F,
) -> impl Future<Output = F::Output> {
    let recorder = Recorder {
        set,
        action: Arc::new(Mutex::new(action.to_owned())),
    };
    CURRENT.scope(recorder, future)
}

/// Names the action being handled (the dimension of what is counted next).
pub(crate) fn set_action(action: &str) {
    let _ = CURRENT.try_with(|r| *lock(&r.action) = action.to_owned());
}

/// The action being handled, inside a metrics scope.
pub(crate) fn current_action() -> Option<String> {
    CURRENT.try_with(|r| lock(&r.action).clone()).ok()
}

fn with_counts(f: impl FnOnce(&mut ActionCounts)) {
    let _ = CURRENT.try_with(|r| {
        let action = lock(&r.action).clone();
        f(lock(&r.set).actions.entry(action).or_default());
    });
}

/// Counts `n` of `what` under the current action.
pub(crate) fn count(what: Count, n: u64) {
    with_counts(|c| match what {
        Count::Message => c.messages += n,
        Count::Delivered => c.delivered += n,
        Count::Gone => c.gone += n,
        Count::Failed => c.failed += n,
        Count::Throttled => c.throttled += n,
        Count::WindowExpired => c.window_expired += n,
    });
}

/// Adds fan-out time under the current action.
pub(crate) fn fanout_time(elapsed: std::time::Duration) {
    with_counts(|c| c.fanout_ms += elapsed.as_secs_f64() * 1000.0);
}

/// Counts a failed `auth` with its error code.
pub(crate) fn auth_failure(code: &str) {
    let _ = CURRENT.try_with(|r| {
        *lock(&r.set)
            .auth_failures
            .entry(code.to_owned())
            .or_default() += 1
    });
}

/// A metric's definition in an EMF directive.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDefinition {
    name: &'static str,
    unit: &'static str,
}

const fn count_metric(name: &'static str) -> MetricDefinition {
    MetricDefinition {
        name,
        unit: "Count",
    }
}

/// The metrics of a document with dimension `Action` (the fields of [`ActionCounts`]).
const ACTION_METRICS: &[MetricDefinition] = &[
    count_metric("Messages"),
    count_metric("Delivered"),
    count_metric("Gone"),
    count_metric("Failed"),
    count_metric("Throttled"),
    count_metric("WindowExpired"),
    MetricDefinition {
        name: "FanoutMs",
        unit: "Milliseconds",
    },
];

/// The metric of a document with dimension `Code`.
const AUTH_METRICS: &[MetricDefinition] = &[count_metric("AuthFailures")];

/// One EMF directive: where CloudWatch finds the metrics of the document.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct EmfDirective {
    namespace: &'static str,
    dimensions: [[&'static str; 1]; 1],
    metrics: &'static [MetricDefinition],
}

/// A document's `_aws` member.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct EmfMetadata {
    timestamp: i64,
    cloud_watch_metrics: [EmfDirective; 1],
}

impl EmfMetadata {
    fn new(timestamp: i64, dimension: &'static str, metrics: &'static [MetricDefinition]) -> Self {
        EmfMetadata {
            timestamp,
            cloud_watch_metrics: [EmfDirective {
                namespace: NAMESPACE,
                dimensions: [[dimension]],
                metrics,
            }],
        }
    }
}

#[derive(serde::Serialize)]
struct ActionDocument<'a> {
    #[serde(rename = "_aws")]
    aws: EmfMetadata,
    #[serde(rename = "Action")]
    action: &'a str,
    #[serde(flatten)]
    counts: &'a ActionCounts,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct AuthFailureDocument<'a> {
    #[serde(rename = "_aws")]
    aws: EmfMetadata,
    code: &'a str,
    auth_failures: u64,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum EmfDocument<'a> {
    Action(ActionDocument<'a>),
    AuthFailures(AuthFailureDocument<'a>),
}

impl MetricSet {
    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.auth_failures.is_empty()
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &MetricSet) {
        for (action, counts) in &other.actions {
            self.actions.entry(action.clone()).or_default().add(counts);
        }
        for (code, n) in &other.auth_failures {
            *self.auth_failures.entry(code.clone()).or_default() += n;
        }
    }

    /// The counts as CloudWatch Embedded Metric Format documents: one per action (dimension
    /// `Action`) and one per auth failure code (dimension `Code`).
    pub fn emf(&self, timestamp_ms: i64) -> Vec<Value> {
        self.emf_documents(timestamp_ms)
            .filter_map(|document| serde_json::to_value(document).ok())
            .collect()
    }

    /// The same documents as [`MetricSet::emf`], one JSON line each, appended to `out` (what
    /// a Lambda invocation writes to stdout). Serialized straight from the counts: no JSON
    /// tree is built.
    pub fn write_emf(&self, timestamp_ms: i64, out: &mut Vec<u8>) {
        for document in self.emf_documents(timestamp_ms) {
            let start = out.len();
            if serde_json::to_writer(&mut *out, &document).is_ok() {
                out.push(b'\n');
            } else {
                out.truncate(start);
            }
        }
    }

    fn emf_documents(&self, timestamp_ms: i64) -> impl Iterator<Item = EmfDocument<'_>> {
        let actions = self.actions.iter().map(move |(action, counts)| {
            EmfDocument::Action(ActionDocument {
                aws: EmfMetadata::new(timestamp_ms, "Action", ACTION_METRICS),
                action,
                counts,
            })
        });
        let auth = self.auth_failures.iter().map(move |(code, n)| {
            EmfDocument::AuthFailures(AuthFailureDocument {
                aws: EmfMetadata::new(timestamp_ms, "Code", AUTH_METRICS),
                code,
                auth_failures: *n,
            })
        });
        actions.chain(auth)
    }

    /// One human-readable line: totals, then the busiest actions.
    pub fn summary(&self) -> String {
        let mut total = ActionCounts::default();
        for counts in self.actions.values() {
            total.add(counts);
        }
        let auth_failures: u64 = self.auth_failures.values().sum();
        let mut busiest: Vec<(&String, &ActionCounts)> = self.actions.iter().collect();
        busiest.sort_by_key(|(_, c)| std::cmp::Reverse(c.messages));
        let top: Vec<String> = busiest
            .iter()
            .take(5)
            .filter(|(_, c)| c.messages > 0)
            .map(|(a, c)| format!("{a}={}", c.messages))
            .collect();
        format!(
            "messages={} delivered={} gone={} failed={} throttled={} window_expired={} auth_failures={} fanout_ms={:.1} by_action=[{}]",
            total.messages,
            total.delivered,
            total.gone,
            total.failed,
            total.throttled,
            total.window_expired,
            auth_failures,
            total.fanout_ms,
            top.join(" ")
        )
    }

    /// The counts as JSON (`{"actions":{…},"authFailures":{…}}`).
    pub fn to_json(&self) -> Value {
        json!({"actions": self.actions, "authFailures": self.auth_failures})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_scope_holds_its_future_once() {
        // A future with 4 KB of state across an await, like a message's.
        let inner = async {
            let state = [7u8; 4096];
            tokio::task::yield_now().await;
            state.iter().map(|b| usize::from(*b)).sum::<usize>()
        };
        let inner_size = std::mem::size_of_val(&inner);
        assert!(inner_size >= 4096);
        let scoped = scope(Arc::new(Mutex::new(MetricSet::default())), "-", inner);
        let scoped_size = std::mem::size_of_val(&scoped);
        assert!(
            scoped_size < inner_size + 256,
            "the scope holds {scoped_size} bytes for a {inner_size}-byte future"
        );
        assert_eq!(scoped.await, 7 * 4096);
    }

    #[tokio::test]
    async fn counts_land_in_the_scope_under_the_current_action() {
        let set = Arc::new(Mutex::new(MetricSet::default()));
        scope(set.clone(), "-", async {
            count(Count::Message, 1);
            set_action("send");
            count(Count::Delivered, 2);
            count(Count::Gone, 1);
            auth_failure("invalid_token");
        })
        .await;
        count(Count::Message, 5); // outside a scope: not counted
        let set = set.lock().unwrap().clone();
        assert_eq!(set.actions["-"].messages, 1);
        assert_eq!(set.actions["send"].delivered, 2);
        assert_eq!(set.auth_failures["invalid_token"], 1);
        let emf = set.emf(1_700_000_000_000);
        assert_eq!(emf.len(), 3);
        let send = emf.iter().find(|d| d["Action"] == "send").unwrap();
        assert_eq!(send["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(send["Delivered"], 2);
        assert_eq!(send["Gone"], 1);
        assert!(set.summary().starts_with("messages=1 delivered=2 gone=1"));
    }

    #[test]
    fn emf_lines_are_whole_documents_in_cloudwatch_shape() {
        let mut set = MetricSet::default();
        set.actions.insert(
            "send".into(),
            ActionCounts {
                messages: 3,
                delivered: 2,
                fanout_ms: 1.5,
                ..ActionCounts::default()
            },
        );
        set.auth_failures.insert("token_expired".into(), 4);
        let mut out = b"earlier\n".to_vec();
        set.write_emf(1_700_000_000_000, &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "earlier");
        let action: Value = serde_json::from_str(lines[1]).unwrap();
        let metric = |name: &str, unit: &str| json!({"Name": name, "Unit": unit});
        assert_eq!(
            action,
            json!({
                "_aws": {
                    "Timestamp": 1_700_000_000_000_i64,
                    "CloudWatchMetrics": [{
                        "Namespace": "VentureKitWs",
                        "Dimensions": [["Action"]],
                        "Metrics": [
                            metric("Messages", "Count"),
                            metric("Delivered", "Count"),
                            metric("Gone", "Count"),
                            metric("Failed", "Count"),
                            metric("Throttled", "Count"),
                            metric("WindowExpired", "Count"),
                            metric("FanoutMs", "Milliseconds")
                        ]
                    }]
                },
                "Action": "send",
                "Messages": 3,
                "Delivered": 2,
                "Gone": 0,
                "Failed": 0,
                "Throttled": 0,
                "WindowExpired": 0,
                "FanoutMs": 1.5
            })
        );
        let auth: Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(
            auth,
            json!({
                "_aws": {
                    "Timestamp": 1_700_000_000_000_i64,
                    "CloudWatchMetrics": [{
                        "Namespace": "VentureKitWs",
                        "Dimensions": [["Code"]],
                        "Metrics": [metric("AuthFailures", "Count")]
                    }]
                },
                "Code": "token_expired",
                "AuthFailures": 4
            })
        );
        assert_eq!(set.emf(1_700_000_000_000), vec![action, auth]);
    }
}
