//! Fan-out past one invocation: a broadcast or topic publish to more connections than a
//! threshold is split into **segments** handed to a queue, and worker invocations of the
//! same function deliver them under a post rate they share.
//!
//! On Lambda this is switched on by `VK_WS_FANOUT_QUEUE_URL` (an SQS queue whose event
//! source is the function itself); without it every fan-out stays in the invocation that
//! started it. The pieces:
//!
//! - **Spilling.** [`crate::Messenger::broadcast_in`] first reads one page of at most
//!   `VK_WS_SPILL_THRESHOLD + 1` records. When that is everyone, it delivers in the
//!   invocation as always. Otherwise it queues one [`Target::Scan`] segment per scan segment
//!   (`2 × VK_WS_FANOUT_WORKERS` of them, so every worker has work) and delivers nothing
//!   itself. A topic publish or tenant send that finds more members than the threshold
//!   queues [`Target::Ids`] pages of the member ids instead. The report's
//!   [`crate::FanoutReport::queued`] says how many segments were queued.
//! - **Working.** A worker ([`crate::Messenger::work`]) paces every post through a
//!   [`Pacer`] at `VK_WS_FANOUT_RATE / VK_WS_FANOUT_WORKERS` posts per second, so the
//!   workers together stay under the account-wide management API rate. A gone connection
//!   (410) is removed as usual; a post that still fails after its retries (throttled, timed
//!   out) is queued again in a segment of its own (up to [`MAX_ATTEMPTS`] times); work not
//!   started before the invocation's deadline is queued as a continuation. So a delivered
//!   connection is never posted to twice by the framework, and nothing is dropped silently.
//! - **Failures.** A segment that cannot be read, or whose leftovers cannot be queued, is
//!   reported to SQS as a failed batch item; SQS delivers it again and finally moves it to
//!   the dead-letter queue. Only this redelivery can post a frame twice (to the connections
//!   reached before the failure).

use crate::messaging::Scope;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Default of `VK_WS_SPILL_THRESHOLD`: fan-outs to more connections than this spill.
pub const DEFAULT_SPILL_THRESHOLD: usize = 2000;
/// Default of `VK_WS_FANOUT_RATE`: posts per second shared by all workers (half of API
/// Gateway's default account rate, leaving the rest to ordinary traffic).
pub const DEFAULT_FANOUT_RATE: u32 = 5000;
/// Default of `VK_WS_FANOUT_WORKERS` (the event source's `MaximumConcurrency`).
pub const DEFAULT_FANOUT_WORKERS: u32 = 10;
/// How often a post that keeps failing is queued again before it is given up (logged at
/// error level and counted as `Failed`).
pub const MAX_ATTEMPTS: u32 = 5;
/// Records a worker reads per scan page.
pub const SCAN_PAGE: usize = 1000;
/// Largest segment body: SQS takes 256 KiB per message (and per batch); the rest is left
/// for the message attributes and the batch envelope.
pub const MAX_SEGMENT_BYTES: usize = 250 * 1024;

/// One unit of queued fan-out work: a frame and whom to send it to. Serialized as the body
/// of one queue message:
///
/// ```json
/// {"vkFanout":1,"frame":"{\"action\":\"message\"}","endpoint":"https://abc.execute-api.eu-west-1.amazonaws.com/prod",
///  "action":"broadcast","attempt":0,"target":"scan","segment":3,"segments":20,"scope":"all"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Segment {
    /// Format version (1); marks the body as a fan-out segment.
    pub vk_fanout: u32,
    /// The serialized frame, posted as is.
    pub frame: String,
    /// The management API endpoint of the originating event (`None`: the worker's
    /// configured `VK_WS_MANAGEMENT_ENDPOINT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The originating action, the worker's metrics dimension.
    pub action: String,
    /// How many times these posts have failed before (0 for a fresh segment).
    #[serde(default)]
    pub attempt: u32,
    /// The connections to reach.
    #[serde(flatten)]
    pub target: Target,
}

/// Whom a [`Segment`] reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "camelCase")]
#[non_exhaustive]
pub enum Target {
    /// The authenticated records of scan segment `segment` of `segments` inside `scope`,
    /// after connection id `after`.
    Scan {
        /// Which scan segment.
        segment: u32,
        /// Of how many.
        segments: u32,
        /// Which connections inside the segment.
        scope: Scope,
        /// Where to resume (a continuation queued at a deadline).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// These connection ids (a page of topic members or tenant connections, or posts to
    /// try again).
    Ids {
        /// The connection ids.
        ids: Vec<String>,
    },
}

impl Segment {
    /// A fresh segment (attempt 0) posting `frame` to `target`.
    pub fn new(frame: &str, endpoint: Option<String>, action: &str, target: Target) -> Segment {
        Segment {
            vk_fanout: 1,
            frame: frame.to_owned(),
            endpoint,
            action: action.to_owned(),
            attempt: 0,
            target,
        }
    }

    /// The same frame and origin, for another target and attempt.
    pub(crate) fn follow_up(&self, attempt: u32, target: Target) -> Segment {
        Segment {
            attempt,
            target,
            ..Segment::new(
                &self.frame,
                self.endpoint.clone(),
                &self.action,
                Target::Ids { ids: Vec::new() },
            )
        }
    }

    /// The queue message body.
    pub fn to_body(&self) -> String {
        // A struct of strings and numbers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a queue message body; `None` when it is not a fan-out segment.
    pub fn from_body(body: &str) -> Option<Segment> {
        serde_json::from_str::<Segment>(body)
            .ok()
            .filter(|s| s.vk_fanout == 1)
    }
}

/// Splits `ids` into [`Target::Ids`] segments of at most `per_segment` ids whose bodies fit
/// in [`MAX_SEGMENT_BYTES`].
pub(crate) fn id_segments(
    template: &Segment,
    ids: Vec<String>,
    per_segment: usize,
) -> Vec<Segment> {
    let base = template.to_body().len() + 16;
    let mut segments = Vec::new();
    let mut page = Vec::new();
    let mut bytes = base;
    for id in ids {
        // A quoted id and a comma; escaping can only make ids of plain ASCII longer, and API
        // Gateway connection ids are plain ASCII.
        let cost = id.len() + 3;
        if !page.is_empty()
            && (page.len() >= per_segment.max(1) || bytes + cost > MAX_SEGMENT_BYTES)
        {
            segments.push(template.follow_up(
                template.attempt,
                Target::Ids {
                    ids: std::mem::take(&mut page),
                },
            ));
            bytes = base;
        }
        bytes += cost;
        page.push(id);
    }
    if !page.is_empty() {
        segments.push(template.follow_up(template.attempt, Target::Ids { ids: page }));
    }
    segments
}

/// Sending segments to the fan-out queue failed (for some or all of them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fan-out queue: {message}")]
pub struct QueueError {
    /// What went wrong.
    pub message: String,
    /// Indices (into the slice given to [`SegmentQueue::send`]) of the segments that were
    /// not queued.
    pub unqueued: Vec<usize>,
}

/// Where spilled segments go (SQS on Lambda: `venturekit_ws::aws::SqsQueue`).
#[async_trait::async_trait]
pub trait SegmentQueue: Send + Sync + 'static {
    /// Queues `segments`; on error, says which were not queued.
    async fn send(&self, segments: &[Segment]) -> Result<(), QueueError>;
}

/// Spilling settings of a [`crate::Messenger`].
#[derive(Clone)]
pub struct Spill {
    pub(crate) queue: Arc<dyn SegmentQueue>,
    pub(crate) threshold: usize,
    pub(crate) scan_segments: u32,
    pub(crate) pacer: Arc<Pacer>,
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spill")
            .field("threshold", &self.threshold)
            .field("scan_segments", &self.scan_segments)
            .field("pacer", &self.pacer)
            .finish_non_exhaustive()
    }
}

impl Spill {
    /// Spills fan-outs above `threshold` connections to `queue`, with `workers` workers that
    /// share `rate` posts per second.
    pub fn new(queue: Arc<dyn SegmentQueue>, threshold: usize, rate: u32, workers: u32) -> Spill {
        let workers = workers.max(1);
        Spill {
            queue,
            threshold: threshold.max(1),
            scan_segments: workers.saturating_mul(2).clamp(2, 1_000_000),
            pacer: Arc::new(Pacer::per_second(
                f64::from(rate.max(1)) / f64::from(workers),
            )),
        }
    }

    /// The settings of `config` (`VK_WS_SPILL_THRESHOLD`, `VK_WS_FANOUT_RATE`,
    /// `VK_WS_FANOUT_WORKERS`) with `queue`.
    pub fn from_config(queue: Arc<dyn SegmentQueue>, config: &crate::Config) -> Spill {
        Spill::new(
            queue,
            config.spill_threshold,
            config.fanout_rate,
            config.fanout_workers,
        )
    }

    /// Fan-outs to more connections than this spill.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// How many scan segments a spilled broadcast is split into.
    pub fn scan_segments(&self) -> u32 {
        self.scan_segments
    }

    /// Splits broadcasts into `segments` scan segments instead (at least 1).
    pub fn with_scan_segments(mut self, segments: u32) -> Spill {
        self.scan_segments = segments.max(1);
        self
    }

    /// This process's post pacing.
    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }
}

/// Spaces posts evenly at a fixed rate (no bursts): each caller of [`Pacer::wait`] gets the
/// next free slot.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Pacer {
    /// At most `rate` posts per second (at least one every 1,000 s).
    pub fn per_second(rate: f64) -> Pacer {
        let rate = if rate.is_finite() {
            rate.max(0.001)
        } else {
            0.001
        };
        Pacer {
            interval: Duration::from_secs_f64(1.0 / rate),
            next: std::sync::Mutex::new(None),
        }
    }

    /// The time between two posts.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Waits for this caller's slot.
    pub async fn wait(&self) {
        let now = tokio::time::Instant::now();
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            // A pacer idle for a while does not bank slots: no burst after a pause.
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// What a worker did with one segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WorkReport {
    /// Connections that received the frame.
    pub delivered: usize,
    /// Connections that were gone (410); their records were removed.
    pub gone: usize,
    /// Posts given up after [`MAX_ATTEMPTS`] attempts.
    pub given_up: usize,
    /// Segments queued again: posts to retry, and work past the deadline.
    pub requeued: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Segment {
        Segment::new(
            r#"{"action":"x"}"#,
            None,
            "broadcast",
            Target::Ids { ids: Vec::new() },
        )
    }

    #[test]
    fn bodies_round_trip_and_other_bodies_are_not_segments() {
        let scan = Segment::new(
            "{}",
            Some("https://e/prod".into()),
            "say",
            Target::Scan {
                segment: 3,
                segments: 20,
                scope: Scope::Tenant("acme".into()),
                after: Some("abc=".into()),
            },
        );
        let body = scan.to_body();
        assert!(body.contains(r#""target":"scan""#), "{body}");
        assert!(body.contains(r#""scope":{"tenant":"acme"}"#), "{body}");
        assert_eq!(Segment::from_body(&body), Some(scan));
        let all = Segment::new(
            "{}",
            None,
            "b",
            Target::Scan {
                segment: 0,
                segments: 2,
                scope: Scope::All,
                after: None,
            },
        );
        assert!(all.to_body().contains(r#""scope":"all""#));
        assert_eq!(Segment::from_body(&all.to_body()), Some(all));
        assert_eq!(Segment::from_body(r#"{"hello":1}"#), None);
        assert_eq!(Segment::from_body("not json"), None);
        let mut v2: serde_json::Value = serde_json::from_str(&template().to_body()).unwrap();
        v2["vkFanout"] = 2.into();
        assert_eq!(Segment::from_body(&v2.to_string()), None);
    }

    #[test]
    fn id_segments_respect_count_and_size() {
        let ids: Vec<String> = (0..5000).map(|i| format!("conn{i:012}=")).collect();
        let segments = id_segments(&template(), ids.clone(), 2000);
        assert_eq!(segments.len(), 3);
        let back: Vec<String> = segments
            .iter()
            .flat_map(|s| match &s.target {
                Target::Ids { ids } => ids.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(back, ids);
        // A big frame leaves room for fewer ids per body.
        let mut big = template();
        big.frame = "x".repeat(128 * 1024);
        let many: Vec<String> = (0..10_000).map(|i| format!("conn{i:012}=")).collect();
        let segments = id_segments(&big, many, 100_000);
        assert_eq!(segments.len(), 2);
        for s in &segments {
            assert!(
                s.to_body().len() <= MAX_SEGMENT_BYTES,
                "{}",
                s.to_body().len()
            );
        }
        assert!(id_segments(&template(), Vec::new(), 10).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_spaces_posts_at_its_rate() {
        let pacer = Arc::new(Pacer::per_second(100.0));
        let start = tokio::time::Instant::now();
        let waits = (0..50).map(|_| {
            let pacer = pacer.clone();
            tokio::spawn(async move { pacer.wait().await })
        });
        for w in waits {
            w.await.unwrap();
        }
        // 50 posts at 100/s: the last slot is 49 intervals after the first (paused clock:
        // exact).
        assert_eq!(start.elapsed(), Duration::from_millis(490));
        // Idle time is not banked.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let again = tokio::time::Instant::now();
        pacer.wait().await;
        pacer.wait().await;
        assert_eq!(again.elapsed(), Duration::from_millis(10));
    }

    #[test]
    fn spill_splits_the_rate_between_workers() {
        struct Nowhere;
        #[async_trait::async_trait]
        impl SegmentQueue for Nowhere {
            async fn send(&self, _: &[Segment]) -> Result<(), QueueError> {
                Ok(())
            }
        }
        let spill = Spill::new(Arc::new(Nowhere), 2000, 5000, 10);
        assert_eq!(spill.pacer().interval(), Duration::from_millis(2));
        assert_eq!(spill.scan_segments(), 20);
        assert_eq!(spill.threshold(), 2000);
    }
}
