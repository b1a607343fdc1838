//! Messaging: the store API's delivery half (post to one connection, a user's devices, a
//! tenant, everyone), with stale-connection cleanup and a report per fan-out.

use crate::delivery::{Delivery, DeliveryError};
use crate::error::WsError;
use crate::hooks::{DisconnectReason, HookCtx, OnRemoved};
use crate::protocol::{ErrorCode, MAX_MESSAGE_BYTES};
use crate::store::{Connection, ConnectionStore, StoreError};
use futures_util::StreamExt;
use serde::Serialize;
use std::sync::Arc;

mod worker;

pub use worker::WorkError;

pub use crate::config::DEFAULT_FANOUT_CONCURRENCY;

/// Which connections a fan-out may reach.
///
/// In a spilled fan-out segment it is written `"all"`, `"noTenant"` or `{"tenant":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Scope {
    /// Every authenticated connection.
    All,
    /// Authenticated connections of this tenant.
    Tenant(String),
    /// Authenticated connections that joined no tenant.
    NoTenant,
}

impl Scope {
    /// The scope of a connection in `tenant` (or of a tenant-less one).
    pub fn of_tenant(tenant: Option<&str>) -> Scope {
        match tenant {
            Some(t) => Scope::Tenant(t.to_owned()),
            None => Scope::NoTenant,
        }
    }

    /// Whether `connection` is inside this scope.
    pub fn contains(&self, connection: &Connection) -> bool {
        match self {
            Scope::All => true,
            Scope::Tenant(t) => connection.tenant_id.as_deref() == Some(t.as_str()),
            Scope::NoTenant => connection.tenant_id.is_none(),
        }
    }
}

/// What a fan-out did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FanoutReport {
    /// Connections that received the message.
    pub delivered: usize,
    /// Connections that were gone (410); their records were removed.
    pub gone: usize,
    /// Connections whose delivery failed for another reason.
    pub failed: usize,
    /// Segments handed to the fan-out queue (`VK_WS_FANOUT_QUEUE_URL`) because the fan-out
    /// was larger than `VK_WS_SPILL_THRESHOLD`: worker invocations reach those connections,
    /// and they are not counted in `delivered`.
    pub queued: usize,
}

/// A messaging operation failed before or while sending.
///
/// It deliberately does not implement `std::error::Error`, so that `?` in a handler maps
/// `PayloadTooLarge` to the `payload_too_large` reply instead of a generic `internal`.
#[derive(Debug)]
#[non_exhaustive]
pub enum MessagingError {
    /// The serialized message exceeds 128 KB; nothing was sent.
    PayloadTooLarge(usize),
    /// The message could not be serialized.
    Serialize(String),
    /// Looking up the targets failed.
    Store(StoreError),
    /// Posting to a single connection failed.
    Delivery(DeliveryError),
}

impl std::fmt::Display for MessagingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessagingError::PayloadTooLarge(n) => {
                write!(f, "message of {n} bytes exceeds the 128 KB limit")
            }
            MessagingError::Serialize(e) => write!(f, "message could not be serialized: {e}"),
            MessagingError::Store(e) => write!(f, "{e}"),
            MessagingError::Delivery(e) => write!(f, "{e}"),
        }
    }
}

impl From<StoreError> for MessagingError {
    fn from(e: StoreError) -> Self {
        MessagingError::Store(e)
    }
}

impl From<DeliveryError> for MessagingError {
    fn from(e: DeliveryError) -> Self {
        MessagingError::Delivery(e)
    }
}

impl From<MessagingError> for WsError {
    fn from(err: MessagingError) -> Self {
        match err {
            MessagingError::PayloadTooLarge(n) => WsError::new(
                ErrorCode::PayloadTooLarge,
                format!("message of {n} bytes exceeds the 128 KB limit"),
            ),
            MessagingError::Delivery(DeliveryError::PayloadTooLarge(n)) => WsError::new(
                ErrorCode::PayloadTooLarge,
                format!("message of {n} bytes exceeds the 128 KB limit"),
            ),
            other => WsError::internal(other),
        }
    }
}

/// The store plus delivery: everything needed to reach connections, across tenants.
///
/// Names, one per concept: a [`Connection`] is one record; a [`ConnectionStore`] keeps the
/// records; a `Messenger` reaches connections (post, fan-out, close) through the store and
/// a [`Delivery`]. Cheap to clone. In handlers, prefer the caller-scoped sends of
/// [`crate::Ctx`]; this type is [`crate::Ctx::all_tenants`], and it is usable outside any
/// WebSocket event (cron jobs, queue consumers: `venturekit_ws::aws::messenger_from_env`).
#[derive(Clone)]
pub struct Messenger {
    store: Arc<dyn ConnectionStore>,
    delivery: Arc<dyn Delivery>,
    concurrency: usize,
    on_removed: Option<OnRemoved>,
    topics: Option<crate::topics::Topics>,
    clock: crate::clock::Clock,
    spill: Option<crate::fanout::Spill>,
}

impl std::fmt::Debug for Messenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messenger")
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// Removals found while a removal's hook runs, waiting for the outermost one to run them.
type RemovedQueue = Arc<std::sync::Mutex<Vec<(Connection, DisconnectReason)>>>;

tokio::task_local! {
    static REMOVED_QUEUE: RemovedQueue;
}

/// Counts one post's outcome in the current metrics scope.
fn count_delivery(result: &Result<(), DeliveryError>) {
    use crate::metrics::{Count, count};
    match result {
        Ok(()) => count(Count::Delivered, 1),
        Err(DeliveryError::Gone) => count(Count::Gone, 1),
        Err(_) => count(Count::Failed, 1),
    }
}

/// Whether `id` can be a user or tenant id: non-empty and at most
/// [`crate::auth::MAX_ID_BYTES`] (DynamoDB cannot even query an empty or oversized key).
fn is_storable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= crate::auth::MAX_ID_BYTES
}

/// What [`Messenger::post_all`] did.
#[derive(Debug, Default)]
pub(crate) struct Posted {
    pub(crate) report: FanoutReport,
    /// Posts that failed for a reason other than 410 (throttled, timed out).
    pub(crate) failed: Vec<String>,
    /// Connections not tried before the deadline.
    pub(crate) untried: Vec<String>,
}

/// Counts a fan-out's outcome and time in the current metrics scope.
fn count_posted(report: &FanoutReport, started: std::time::Instant) {
    use crate::metrics::{Count, count};
    count(Count::Delivered, report.delivered as u64);
    count(Count::Gone, report.gone as u64);
    count(Count::Failed, report.failed as u64);
    crate::metrics::fanout_time(started.elapsed());
}

/// The ids of the authenticated records inside `scope`.
fn in_scope(targets: Vec<Connection>, scope: &Scope) -> Vec<String> {
    targets
        .into_iter()
        .filter(|c| c.authenticated && scope.contains(c))
        .map(|c| c.connection_id)
        .collect()
}

/// Serializes `message` once for a whole fan-out, enforcing the 128 KB limit.
pub(crate) fn encode<T: Serialize + ?Sized>(message: &T) -> Result<String, MessagingError> {
    let text =
        serde_json::to_string(message).map_err(|e| MessagingError::Serialize(e.to_string()))?;
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(MessagingError::PayloadTooLarge(text.len()));
    }
    Ok(text)
}

impl Messenger {
    /// Combines a store and a delivery.
    pub fn new(store: Arc<dyn ConnectionStore>, delivery: Arc<dyn Delivery>) -> Self {
        Messenger {
            store,
            delivery,
            concurrency: DEFAULT_FANOUT_CONCURRENCY,
            on_removed: None,
            topics: None,
            clock: crate::clock::Clock::system(),
            spill: None,
        }
    }

    /// Spills fan-outs larger than the spill's threshold to its queue (see
    /// [`crate::fanout`]); `None` keeps every fan-out in this process.
    pub fn with_spill(mut self, spill: Option<crate::fanout::Spill>) -> Self {
        self.spill = spill;
        self
    }

    /// The spill settings, if fan-outs spill.
    pub fn spill(&self) -> Option<&crate::fanout::Spill> {
        self.spill.as_ref()
    }

    /// Reads time (topic TTLs, join times) from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock this messenger reads time from.
    pub fn clock(&self) -> &crate::clock::Clock {
        &self.clock
    }

    /// Publishes to, and cleans up, topic memberships kept in `store` (for code outside
    /// WebSocket events: jobs, queue consumers, benchmarks).
    pub fn with_topic_store(self, store: Arc<dyn crate::topics::TopicStore>) -> Self {
        let topics =
            crate::topics::Topics::new(store, Vec::new(), crate::topics::DEFAULT_MAX_TOPICS);
        self.with_topics(Some(topics))
    }

    /// Topic memberships to clean up when a record is removed.
    pub(crate) fn with_topics(mut self, topics: Option<crate::topics::Topics>) -> Self {
        self.topics = topics;
        self
    }

    /// The app's topics, or an error saying the app has none.
    pub(crate) fn topics(&self) -> Result<&crate::topics::Topics, MessagingError> {
        self.topics.as_ref().ok_or_else(|| {
            MessagingError::Store(StoreError::Backend(
                "this app has no topic store (declare topics with App::topic, and set VK_WS_TOPICS_TABLE on Lambda)".into(),
            ))
        })
    }

    /// Publishes `message` to every member of topic `name` in `tenant`'s scope (`None`:
    /// the tenant-less scope). Strongly consistent: a member that just joined receives it.
    pub async fn publish_in<T: Serialize + ?Sized>(
        &self,
        tenant: Option<&str>,
        name: &str,
        message: &T,
    ) -> Result<FanoutReport, MessagingError> {
        let now = self.clock.now_secs();
        let report = self
            .topics()?
            .publish(self, tenant, name, message, None, now);
        Ok(report.await?.unwrap_or_default())
    }

    /// [`Messenger::publish_in`], but only if `member` is a member of the topic: `None`
    /// (nothing sent) otherwise.
    pub async fn publish_as_member<T: Serialize + ?Sized>(
        &self,
        tenant: Option<&str>,
        name: &str,
        member: &str,
        message: &T,
    ) -> Result<Option<FanoutReport>, MessagingError> {
        let now = self.clock.now_secs();
        self.topics()?
            .publish(self, tenant, name, message, Some(member), now)
            .await
    }

    /// The live members of topic `name` in `tenant`'s scope.
    pub async fn topic_members(
        &self,
        tenant: Option<&str>,
        name: &str,
    ) -> Result<Vec<crate::topics::TopicMember>, MessagingError> {
        let key = crate::topics::topic_key(tenant, name);
        let now = self.clock.now_secs();
        Ok(self.topics()?.store.members(&key, now).await?)
    }

    /// Joins connection `connection_id` (authenticated, live) to topic `name` in its own
    /// tenant scope, with presence metadata; presence members are told.
    pub async fn join_topic(
        &self,
        connection_id: &str,
        name: &str,
        meta: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), WsError> {
        let topics = self.topics()?;
        let record = self
            .store
            .get(connection_id)
            .await
            .map_err(WsError::internal)?
            .ok_or_else(|| WsError::bad_request("no such connection"))?;
        topics.check_join(&record, name, &meta).await?;
        let member = topics.add(&record, name, meta, self.clock.now_ms()).await?;
        topics
            .announce_joined(self, &member)
            .await
            .map_err(WsError::internal)
    }

    /// Removes `connection_id` from topic `name` in `tenant`'s scope; returns whether it
    /// was a member.
    pub async fn leave_topic(
        &self,
        tenant: Option<&str>,
        connection_id: &str,
        name: &str,
    ) -> Result<bool, MessagingError> {
        let now = self.clock.now_secs();
        Ok(self
            .topics()?
            .leave(self, tenant, connection_id, name, now)
            .await?)
    }

    /// Runs the app's disconnect hook for the records this messenger removes.
    pub(crate) fn with_on_removed(mut self, on_removed: Option<OnRemoved>) -> Self {
        self.on_removed = on_removed;
        self
    }

    /// Runs the disconnect hook (if any) for a record this messenger or its dispatcher
    /// removed, and takes the connection out of its topics.
    ///
    /// A hook may send, a send may find gone connections, and removing those runs hooks
    /// again. Those nested removals are not run inside the send that found them: they wait
    /// in a queue the outermost call works off in batches (the connections of a batch leave
    /// their topics together, then their hooks run one after another), so a chain of stale
    /// connections (thousands after a deploy) costs a loop, not a stack frame per connection.
    pub(crate) fn removed(
        &self,
        record: Connection,
        reason: DisconnectReason,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        let mut pending = Some((record, reason));
        let queued = REMOVED_QUEUE.try_with(|queue| {
            queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(pending.take())
        });
        if queued.is_ok() {
            // An outer call is working the queue off; it runs this one after its own.
            return Box::pin(std::future::ready(()));
        }
        let pending: RemovedQueue = Arc::new(std::sync::Mutex::new(pending.into_iter().collect()));
        let queue = pending.clone();
        Box::pin(REMOVED_QUEUE.scope(pending, async move {
            loop {
                // Everything queued so far goes together: one read of each topic's
                // members and one leave notice for all of it, not one per connection.
                let batch = std::mem::take(
                    &mut *queue
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                );
                if batch.is_empty() {
                    break;
                }
                self.run_removed(batch).await;
            }
        }))
    }

    async fn run_removed(&self, batch: Vec<(Connection, DisconnectReason)>) {
        if let Some(topics) = &self.topics {
            let ids: Vec<&str> = batch
                .iter()
                .map(|(r, _)| r.connection_id.as_str())
                .collect();
            let now = self.clock.now_secs();
            topics.connections_removed(self, &ids, now).await;
        }
        if let Some(on) = &self.on_removed {
            for (record, reason) in batch {
                let ctx = HookCtx::new(self.clone(), on.app.clone());
                (on.hook)(record, reason, ctx).await;
            }
        }
    }

    /// Sets how many posts a fan-out keeps in flight (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The underlying store (save, authenticate, remove, get, by user, by tenant).
    pub fn store(&self) -> &Arc<dyn ConnectionStore> {
        &self.store
    }

    /// The underlying delivery.
    pub fn delivery(&self) -> &Arc<dyn Delivery> {
        &self.delivery
    }

    /// A live record by id.
    pub async fn get(&self, connection_id: &str) -> Result<Option<Connection>, StoreError> {
        self.store.get(connection_id).await
    }

    /// Live records of a user (none for an id no user can have: empty or over 1024 bytes).
    pub async fn get_by_user(&self, user_id: &str) -> Result<Vec<Connection>, StoreError> {
        if !is_storable_id(user_id) {
            return Ok(Vec::new());
        }
        self.store.get_by_user(user_id).await
    }

    /// Live records of a tenant (none for an id no tenant can have).
    pub async fn get_by_tenant(&self, tenant_id: &str) -> Result<Vec<Connection>, StoreError> {
        if !is_storable_id(tenant_id) {
            return Ok(Vec::new());
        }
        self.store.get_by_tenant(tenant_id).await
    }

    /// Posts `message` (as JSON) to one connection. A gone connection's record is removed.
    pub async fn post_to_connection<T: Serialize + ?Sized>(
        &self,
        connection_id: &str,
        message: &T,
    ) -> Result<(), MessagingError> {
        let text = encode(message)?;
        self.post_text(connection_id, &text).await?;
        Ok(())
    }

    /// Posts an already-serialized frame; removes the record on [`DeliveryError::Gone`].
    pub async fn post_text(&self, connection_id: &str, text: &str) -> Result<(), DeliveryError> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(DeliveryError::PayloadTooLarge(text.len()));
        }
        let result = self.delivery.post(connection_id, text).await;
        count_delivery(&result);
        if let Err(DeliveryError::Gone) = &result {
            self.remove_gone(connection_id).await;
        }
        result
    }

    /// Closes a connection and removes its record (the disconnect hook runs with
    /// [`DisconnectReason::Closed`] when this call removed it; called from a disconnect
    /// hook, that run waits until the calling hook returns).
    pub async fn close(&self, connection_id: &str) -> Result<(), StoreError> {
        match self.delivery.close(connection_id).await {
            Ok(()) | Err(DeliveryError::Gone) => {}
            Err(e) => tracing::warn!(%connection_id, error = %e, "closing connection failed"),
        }
        if let Some(record) = self.store.remove(connection_id).await? {
            self.removed(record, DisconnectReason::Closed).await;
        }
        Ok(())
    }

    /// Sends to every authenticated connection (device) of `user_id`.
    pub async fn send_to_user<T: Serialize + ?Sized>(
        &self,
        user_id: &str,
        message: &T,
    ) -> Result<FanoutReport, MessagingError> {
        self.send_to_user_in(user_id, &Scope::All, message).await
    }

    /// Sends to the connections of `user_id` inside `scope`.
    pub async fn send_to_user_in<T: Serialize + ?Sized>(
        &self,
        user_id: &str,
        scope: &Scope,
        message: &T,
    ) -> Result<FanoutReport, MessagingError> {
        let text = encode(message)?;
        if !is_storable_id(user_id) {
            // No user can have such an id (the token's `sub` is checked the same way), and
            // the store could not even look it up.
            return Ok(FanoutReport::default());
        }
        let targets = self.store.get_by_user(user_id).await?;
        Ok(self.fan_out(targets, scope, &text).await)
    }

    /// Sends to every authenticated connection of `tenant_id`.
    pub async fn send_to_tenant<T: Serialize + ?Sized>(
        &self,
        tenant_id: &str,
        message: &T,
    ) -> Result<FanoutReport, MessagingError> {
        self.broadcast_in(&Scope::Tenant(tenant_id.to_owned()), message)
            .await
    }

    /// Sends to every authenticated connection.
    pub async fn broadcast<T: Serialize + ?Sized>(
        &self,
        message: &T,
    ) -> Result<FanoutReport, MessagingError> {
        self.broadcast_in(&Scope::All, message).await
    }

    /// Sends to every authenticated connection inside `scope`.
    pub async fn broadcast_in<T: Serialize + ?Sized>(
        &self,
        scope: &Scope,
        message: &T,
    ) -> Result<FanoutReport, MessagingError> {
        let text = encode(message)?;
        let ids = match (scope, &self.spill) {
            (Scope::Tenant(t), _) if !is_storable_id(t) => return Ok(FanoutReport::default()),
            (Scope::All | Scope::NoTenant, Some(spill)) => match self.probe(spill.threshold).await?
            {
                Some(everyone) => in_scope(everyone, scope),
                None => return Ok(self.spill_scan(spill, scope, &text).await),
            },
            _ => self.store.target_ids(scope).await?,
        };
        Ok(self.fan_out_or_spill(ids, &text).await)
    }

    /// Reads records until more than `threshold` are seen: all of them when there are no
    /// more (`Some`), or `None` when the table is larger.
    async fn probe(&self, threshold: usize) -> Result<Option<Vec<Connection>>, StoreError> {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let room = threshold + 1 - seen.len();
            let page = self.store.scan_page(0, 1, after.as_deref(), room).await?;
            seen.extend(page.records);
            if seen.len() > threshold {
                return Ok(None);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(Some(seen)),
            }
        }
    }

    /// The fan-out's origin, for the worker that delivers a spilled segment.
    fn segment_template(&self, text: &str) -> crate::fanout::Segment {
        let action = crate::metrics::current_action().unwrap_or_else(|| "-".to_owned());
        crate::fanout::Segment::new(
            text,
            self.delivery.endpoint(),
            &action,
            crate::fanout::Target::Ids { ids: Vec::new() },
        )
    }

    /// Queues one scan segment per spill scan segment. Segments the queue refuses are
    /// worked here instead, so nothing is lost.
    async fn spill_scan(
        &self,
        spill: &crate::fanout::Spill,
        scope: &Scope,
        text: &str,
    ) -> FanoutReport {
        let template = self.segment_template(text);
        let segments = (0..spill.scan_segments)
            .map(|segment| {
                template.follow_up(
                    0,
                    crate::fanout::Target::Scan {
                        segment,
                        segments: spill.scan_segments,
                        scope: scope.clone(),
                        after: None,
                    },
                )
            })
            .collect();
        self.queue_or_work(spill, segments).await
    }

    /// Posts `text` to `ids` here, or, when there are more than the spill threshold,
    /// queues them in pages for worker invocations.
    pub(crate) async fn fan_out_or_spill(&self, ids: Vec<String>, text: &str) -> FanoutReport {
        match &self.spill {
            Some(spill) if ids.len() > spill.threshold => {
                let template = self.segment_template(text);
                let segments = crate::fanout::id_segments(&template, ids, spill.threshold);
                self.queue_or_work(spill, segments).await
            }
            _ => self.fan_out_ids(ids, text).await,
        }
    }

    async fn queue_or_work(
        &self,
        spill: &crate::fanout::Spill,
        segments: Vec<crate::fanout::Segment>,
    ) -> FanoutReport {
        let error = spill.queue.send(&segments).await.err();
        let unqueued = error.as_ref().map_or(0, |e| e.unqueued.len());
        let mut report = FanoutReport {
            queued: segments.len().saturating_sub(unqueued),
            ..FanoutReport::default()
        };
        tracing::info!(segments = report.queued, "fan-out spilled to the queue");
        if let Some(error) = error {
            tracing::warn!(
                %error,
                unqueued,
                "the fan-out queue refused segments; delivering them in this invocation"
            );
            for segment in error.unqueued.iter().filter_map(|&i| segments.get(i)) {
                let done = self.deliver_segment(segment, None).await;
                report.delivered += done.posted.report.delivered;
                report.gone += done.posted.report.gone;
                report.failed += done.posted.report.failed;
                if let Some(error) = done.stopped_by {
                    tracing::error!(%error, "reading the fan-out's targets failed; part of it was not delivered");
                }
            }
        }
        report
    }

    /// Posts `text` to each of `ids`, `concurrency` at a time. Each post's future removes its
    /// own gone record, so a burst of 410s (stale rows after a deploy) is cleaned up in
    /// parallel instead of stalling the other posts.
    pub(crate) async fn fan_out_ids(&self, ids: Vec<String>, text: &str) -> FanoutReport {
        self.post_all(ids, text, None, None).await.report
    }

    /// Posts `text` to each of `ids`, each post waiting for its slot from `pacer` (if any);
    /// posts not started by `deadline` are left untried.
    pub(crate) async fn post_all(
        &self,
        ids: Vec<String>,
        text: &str,
        pacer: Option<&crate::fanout::Pacer>,
        deadline: Option<std::time::Instant>,
    ) -> Posted {
        enum Outcome {
            Sent(Result<(), DeliveryError>),
            Untried,
        }
        let started = std::time::Instant::now();
        // One copy of the frame for every target (the local server queues it as is).
        let shared: Arc<str> = Arc::from(text);
        if pacer.is_none()
            && deadline.is_none()
            && let Some(results) = self.delivery.post_now(&ids, &shared)
        {
            return self.posted_now(ids, results, started).await;
        }
        let shared = &shared;
        let posts = ids.into_iter().map(|id| async move {
            if let Some(pacer) = pacer {
                pacer.wait().await;
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return (id, Outcome::Untried);
            }
            let result = self.delivery.post_shared(&id, shared).await;
            match &result {
                Err(DeliveryError::Gone) => self.remove_gone(&id).await,
                Err(e) => tracing::warn!(connection_id = %id, error = %e, "delivery failed"),
                Ok(()) => {}
            }
            (id, Outcome::Sent(result))
        });
        let mut results = futures_util::stream::iter(posts).buffer_unordered(self.concurrency);
        let mut posted = Posted::default();
        while let Some((id, outcome)) = results.next().await {
            match outcome {
                Outcome::Sent(Ok(())) => posted.report.delivered += 1,
                Outcome::Sent(Err(DeliveryError::Gone)) => posted.report.gone += 1,
                Outcome::Sent(Err(_)) => {
                    posted.report.failed += 1;
                    posted.failed.push(id);
                }
                Outcome::Untried => posted.untried.push(id),
            }
        }
        count_posted(&posted.report, started);
        posted
    }

    /// Counts what [`Delivery::post_now`] did and removes the gone records.
    async fn posted_now(
        &self,
        ids: Vec<String>,
        results: Vec<Result<(), DeliveryError>>,
        started: std::time::Instant,
    ) -> Posted {
        let mut posted = Posted::default();
        let mut gone = Vec::new();
        for (id, result) in ids.into_iter().zip(results) {
            match result {
                Ok(()) => posted.report.delivered += 1,
                Err(DeliveryError::Gone) => {
                    posted.report.gone += 1;
                    gone.push(id);
                }
                Err(e) => {
                    tracing::warn!(connection_id = %id, error = %e, "delivery failed");
                    posted.report.failed += 1;
                    posted.failed.push(id);
                }
            }
        }
        futures_util::stream::iter(gone)
            .for_each_concurrent(
                self.concurrency,
                |id| async move { self.remove_gone(&id).await },
            )
            .await;
        count_posted(&posted.report, started);
        posted
    }

    async fn fan_out(&self, targets: Vec<Connection>, scope: &Scope, text: &str) -> FanoutReport {
        self.fan_out_ids(in_scope(targets, scope), text).await
    }

    async fn remove_gone(&self, connection_id: &str) {
        match self.store.remove(connection_id).await {
            Ok(Some(record)) => self.removed(record, DisconnectReason::Gone).await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%connection_id, error = %e, "removing a gone connection failed")
            }
        }
    }
}
