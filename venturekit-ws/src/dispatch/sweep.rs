//! The sweeper: closes and removes connections whose record expired (an auth window that
//! passed in silence, or a session past its lifetime). DynamoDB's TTL deletes lazily, so
//! without it a silent connection would stay open and unauthenticated.
//!
//! It pages through the expired records with a strongly consistent scan, handles each page
//! with bounded concurrency, and stops before a deadline (the next run continues where
//! the table stands). For each record it first deletes it **conditionally** (`ttl <= now`):
//! a connection that authenticated a moment ago fails the condition and is left alone. Only
//! a sweeper whose own delete succeeded closes the socket; when that close fails with
//! anything but 410 the record is put back, to be retried by the next sweep.

use super::Dispatcher;
use crate::delivery::DeliveryError;
use crate::hooks::DisconnectReason;
use crate::messaging::Messenger;
use crate::protocol::{self, ErrorCode};
use crate::store::{Connection, StoreError};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

/// Expired records read per page.
pub const SWEEP_PAGE: usize = 500;

/// What a sweep did: the scheduled invocation's result on Lambda,
/// `{"expired":N,"closed":M,"kept":K,"complete":true}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SweepReport {
    /// Expired records this sweep removed.
    pub expired: usize,
    /// Of those, connections it closed (the rest were already gone, or not to be closed).
    pub closed: usize,
    /// Records put back because closing their connection failed; the next sweep retries them.
    pub kept: usize,
    /// `false` when the sweep stopped at its deadline with expired records left.
    pub complete: bool,
}

/// How a sweep runs.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SweepOptions {
    /// Stop starting new work at this instant (on Lambda: shortly before the deadline).
    pub deadline: Option<Instant>,
    /// Close the sockets (post `unauthorized`, then `DELETE @connections`). `false` only
    /// removes the records: for a sweep with no management endpoint to reach the sockets.
    pub close: bool,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            deadline: None,
            close: true,
        }
    }
}

impl SweepOptions {
    /// Closes sockets; stops at `deadline` when given.
    pub fn until(deadline: Option<Instant>) -> Self {
        SweepOptions {
            deadline,
            ..SweepOptions::default()
        }
    }

    /// Only removes records (no management endpoint to close the sockets with).
    pub fn remove_only(mut self) -> Self {
        self.close = false;
        self
    }

    fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// What happened to one expired record.
enum Outcome {
    /// Someone else removed it, or it became live again: not ours.
    Skipped,
    /// Removed; the socket was closed (`true`) or already gone / not to be closed.
    Removed { closed: bool },
    /// Closing failed; the record was put back.
    Kept,
    /// Past the deadline: not started.
    Deferred,
}

impl Dispatcher {
    /// Closes and removes every expired record, with no deadline.
    pub async fn sweep(&self, connections: &Messenger) -> Result<SweepReport, StoreError> {
        self.sweep_with(connections, SweepOptions::default()).await
    }

    /// Closes and removes expired records page by page until none is left or the deadline
    /// passes. Each closed connection gets an `unauthorized` frame first.
    pub async fn sweep_with(
        &self,
        connections: &Messenger,
        options: SweepOptions,
    ) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        let mut cursor: Option<String> = None;
        loop {
            if options.out_of_time() {
                return Ok(report);
            }
            let page = self
                .store
                .expired_page(cursor.as_deref(), SWEEP_PAGE, self.clock.now_secs())
                .await?;
            let outcomes: Vec<Outcome> = futures_util::stream::iter(page.records)
                .map(|record| self.sweep_one(connections, record, options))
                .buffer_unordered(self.fanout_concurrency)
                .collect()
                .await;
            let mut deferred = false;
            for outcome in outcomes {
                match outcome {
                    Outcome::Skipped => {}
                    Outcome::Removed { closed } => {
                        crate::metrics::count(crate::metrics::Count::WindowExpired, 1);
                        report.expired += 1;
                        report.closed += usize::from(closed);
                    }
                    Outcome::Kept => report.kept += 1,
                    Outcome::Deferred => deferred = true,
                }
            }
            match page.next {
                Some(next) if !deferred => cursor = Some(next),
                _ => {
                    report.complete = !deferred;
                    return Ok(report);
                }
            }
        }
    }

    async fn sweep_one(
        &self,
        connections: &Messenger,
        record: Connection,
        options: SweepOptions,
    ) -> Outcome {
        if options.out_of_time() {
            return Outcome::Deferred;
        }
        let id = record.connection_id.as_str();
        let removed = match self.store.remove_expired(id, self.clock.now_secs()).await {
            Ok(Some(removed)) => removed,
            Ok(None) => return Outcome::Skipped,
            Err(e) => {
                tracing::warn!(connection_id = %id, error = %e, "sweep: removing failed; retried next sweep");
                return Outcome::Skipped;
            }
        };
        if !options.close {
            connections
                .removed(removed, DisconnectReason::Expired)
                .await;
            return Outcome::Removed { closed: false };
        }
        let message = if removed.authenticated {
            "the session has expired; reconnect"
        } else {
            "the authentication window has passed; reconnect"
        };
        let frame = protocol::error_frame(None, ErrorCode::Unauthorized, message);
        let delivery = connections.delivery();
        let closed = match delivery.post(id, &frame).await {
            Err(DeliveryError::Gone) => Ok(false),
            _ => match delivery.close(id).await {
                Ok(()) => Ok(true),
                Err(DeliveryError::Gone) => Ok(false),
                Err(e) => Err(e),
            },
        };
        match closed {
            Ok(closed) => {
                connections
                    .removed(removed, DisconnectReason::Expired)
                    .await;
                Outcome::Removed { closed }
            }
            Err(e) => {
                tracing::warn!(connection_id = %id, error = %e, "sweep: closing failed; the record is kept for the next sweep");
                if let Err(e) = self.store.save(&removed).await {
                    tracing::warn!(connection_id = %id, error = %e, "sweep: putting the record back failed");
                }
                Outcome::Kept
            }
        }
    }
}

/// How long before the Lambda deadline a scheduled sweep stops starting new work.
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
pub(crate) const DEADLINE_MARGIN: Duration = Duration::from_millis(1500);
