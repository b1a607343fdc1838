//! The worker half of spilled fan-out: delivering one queued [`Segment`].

use super::{Messenger, Posted, in_scope};
use crate::fanout::{
    MAX_ATTEMPTS, QueueError, SCAN_PAGE, Segment, Target, WorkReport, id_segments,
};
use crate::store::StoreError;
use std::time::Instant;

/// What delivering one segment did, before anything is queued again.
pub(crate) struct Worked {
    /// The posts.
    pub(crate) posted: Posted,
    /// Where a scan segment stopped early (deadline, or a failed read), to continue later.
    pub(crate) resume: Option<Target>,
    /// The failed read that stopped a scan segment, if that is what stopped it.
    pub(crate) stopped_by: Option<StoreError>,
}

/// A segment could not be worked off, and SQS should deliver it again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkError {
    /// The messenger has no fan-out queue to put leftovers on.
    #[error(
        "no fan-out queue is configured (VK_WS_FANOUT_QUEUE_URL) to queue the segment's leftovers"
    )]
    NoQueue,
    /// Reading the segment's targets failed on the first page (nothing was posted).
    #[error("reading the segment's connections failed: {0}")]
    Store(StoreError),
    /// Reading kept failing for [`MAX_ATTEMPTS`] attempts.
    #[error("reading the segment's connections failed {MAX_ATTEMPTS} times: {0}")]
    GaveUp(StoreError),
    /// Queuing the leftovers failed.
    #[error(transparent)]
    Queue(QueueError),
}

impl Messenger {
    /// Delivers one segment: its ids, or the pages of its scan segment, paced by the spill's
    /// [`crate::fanout::Pacer`], stopping at `deadline`.
    pub(crate) async fn deliver_segment(
        &self,
        segment: &Segment,
        deadline: Option<Instant>,
    ) -> Worked {
        let pacer = self.spill.as_ref().map(|s| s.pacer());
        let text = segment.frame.as_str();
        match &segment.target {
            Target::Ids { ids } => Worked {
                posted: self.post_all(ids.clone(), text, pacer, deadline).await,
                resume: None,
                stopped_by: None,
            },
            Target::Scan {
                segment: index,
                segments,
                scope,
                after,
            } => {
                let mut worked = Worked {
                    posted: Posted::default(),
                    resume: None,
                    stopped_by: None,
                };
                let mut after = after.clone();
                let continuation = |after: Option<String>| Target::Scan {
                    segment: *index,
                    segments: *segments,
                    scope: scope.clone(),
                    after,
                };
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        worked.resume = Some(continuation(after));
                        break;
                    }
                    let page = match self
                        .store
                        .scan_page(*index, *segments, after.as_deref(), SCAN_PAGE)
                        .await
                    {
                        Ok(page) => page,
                        Err(error) => {
                            worked.resume = Some(continuation(after));
                            worked.stopped_by = Some(error);
                            break;
                        }
                    };
                    let ids = in_scope(page.records, scope);
                    let posted = self.post_all(ids, text, pacer, deadline).await;
                    let stopped = !posted.untried.is_empty();
                    let total = &mut worked.posted;
                    total.report.delivered += posted.report.delivered;
                    total.report.gone += posted.report.gone;
                    total.report.failed += posted.report.failed;
                    total.failed.extend(posted.failed);
                    total.untried.extend(posted.untried);
                    match page.next {
                        Some(next) if stopped => {
                            worked.resume = Some(continuation(Some(next)));
                            break;
                        }
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
                worked
            }
        }
    }

    /// Works off one spilled fan-out segment (the worker side of [`crate::fanout`]): posts
    /// its frame to its connections at the spill's pace, removes gone connections, and
    /// queues again what is left — posts that failed (up to
    /// [`crate::fanout::MAX_ATTEMPTS`] times), connections not reached by `deadline`, and
    /// the rest of a scan segment. An `Err` means the segment should be delivered again
    /// (report it as a failed batch item).
    pub async fn work(
        &self,
        segment: &Segment,
        deadline: Option<Instant>,
    ) -> Result<WorkReport, WorkError> {
        let spill = self.spill.as_ref().ok_or(WorkError::NoQueue)?;
        let worked = self.deliver_segment(segment, deadline).await;
        let posted = worked.posted;
        let mut report = WorkReport {
            delivered: posted.report.delivered,
            gone: posted.report.gone,
            ..WorkReport::default()
        };
        let mut follow_ups = Vec::new();
        if let Some(error) = worked.stopped_by {
            let nothing_done = posted.report == super::FanoutReport::default();
            if nothing_done && segment.attempt + 1 < MAX_ATTEMPTS {
                // Nothing was posted: let the queue deliver the segment again.
                return Err(WorkError::Store(error));
            }
            if segment.attempt + 1 >= MAX_ATTEMPTS {
                return Err(WorkError::GaveUp(error));
            }
            tracing::warn!(%error, "reading a fan-out segment failed part-way; queuing the rest");
            if let Some(resume) = worked.resume {
                follow_ups.push(segment.follow_up(segment.attempt + 1, resume));
            }
        } else if let Some(resume) = worked.resume {
            follow_ups.push(segment.follow_up(segment.attempt, resume));
        }
        if !posted.failed.is_empty() {
            if segment.attempt + 1 < MAX_ATTEMPTS {
                let retry = segment.follow_up(segment.attempt + 1, Target::Ids { ids: Vec::new() });
                follow_ups.extend(id_segments(&retry, posted.failed, spill.threshold));
            } else {
                report.given_up = posted.failed.len();
                tracing::error!(
                    connections = report.given_up,
                    attempts = MAX_ATTEMPTS,
                    "fan-out posts kept failing; giving up on them"
                );
            }
        }
        if !posted.untried.is_empty() {
            let later = segment.follow_up(segment.attempt, Target::Ids { ids: Vec::new() });
            follow_ups.extend(id_segments(&later, posted.untried, spill.threshold));
        }
        if !follow_ups.is_empty() {
            spill
                .queue
                .send(&follow_ups)
                .await
                .map_err(WorkError::Queue)?;
            report.requeued = follow_ups.len();
        }
        Ok(report)
    }
}
