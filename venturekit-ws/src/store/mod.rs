//! The connection store: where connection records live.
//!
//! [`ConnectionStore`] is the storage half of the store API (save, authenticate, remove,
//! get, by user, by tenant); [`crate::Messenger`] adds the messaging half on top.
//! Every read treats a record whose `ttl` has passed as absent, because DynamoDB's TTL
//! deletes lazily.

mod memory;

pub use memory::MemoryStore;

use crate::auth::Identity;
use crate::claims::Claims;
use serde::{Deserialize, Serialize};

/// One connection record, with the field names of the DynamoDB table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// API Gateway connection id (partition key).
    pub connection_id: String,
    /// Whether the connection has authenticated.
    pub authenticated: bool,
    /// The JWT `sub`; absent until authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The tenant the connection joined, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The `email` claim, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Claims kept from the token at `auth` (roles, scopes, `VK_WS_KEEP_CLAIMS`).
    #[serde(default, skip_serializing_if = "Claims::is_empty")]
    pub claims: Claims,
    /// When the connection opened, epoch milliseconds.
    pub connected_at: i64,
    /// When the record expires, epoch **seconds** (DynamoDB TTL).
    pub ttl: i64,
}

impl Connection {
    /// A fresh unauthenticated record expiring at `ttl` (epoch seconds).
    pub fn unauthenticated(connection_id: impl Into<String>, connected_at: i64, ttl: i64) -> Self {
        Connection {
            connection_id: connection_id.into(),
            authenticated: false,
            user_id: None,
            tenant_id: None,
            email: None,
            claims: Claims::default(),
            connected_at,
            ttl,
        }
    }

    /// Whether the record is still valid at `now` (epoch seconds): `ttl > now`.
    pub fn is_live(&self, now_secs: i64) -> bool {
        self.ttl > now_secs
    }

    /// The identity of an authenticated record.
    pub fn identity(&self) -> Option<Identity> {
        match (&self.authenticated, &self.user_id) {
            (true, Some(user_id)) => Some(Identity {
                user_id: user_id.clone(),
                tenant_id: self.tenant_id.clone(),
                email: self.email.clone(),
                claims: self.claims.clone(),
            }),
            _ => None,
        }
    }
}

/// One page of expired records (see [`ConnectionStore::expired_page`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpiredPage {
    /// Expired records of this page.
    pub records: Vec<Connection>,
    /// The cursor of the next page, if any.
    pub next: Option<String>,
}

impl ExpiredPage {
    /// A page of `records`, followed by `next`.
    pub fn new(records: Vec<Connection>, next: Option<String>) -> Self {
        ExpiredPage { records, next }
    }
}

/// The scan segment (of `segments`) that [`ConnectionStore::scan_page`]'s default puts
/// `connection_id` in: FNV-1a of the id, modulo `segments`.
pub fn segment_of(connection_id: &str, segments: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in connection_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(segments.max(1))) as u32
}

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `authenticate`: the record is gone or its window has passed.
    #[error("connection record is missing or expired")]
    NotFound,
    /// `authenticate`: the connection is already authenticated as another user.
    #[error("connection is authenticated as another user")]
    OtherUser,
    /// The backend failed (network, throttling, …).
    #[error("store backend: {0}")]
    Backend(String),
}

/// Storage of connection records. Implemented by [`MemoryStore`] (local server, tests)
/// and by the DynamoDB backend.
#[async_trait::async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a connection store",
    note = "implement `venturekit_ws::ConnectionStore` or use `venturekit_ws::MemoryStore`"
)]
pub trait ConnectionStore: Send + Sync + 'static {
    /// Saves (or replaces) a record.
    async fn save(&self, connection: &Connection) -> Result<(), StoreError>;

    /// Marks a record authenticated for `identity` with a new `ttl` (epoch seconds).
    ///
    /// Conditional: the record must exist, be live, and be either unauthenticated or
    /// authenticated as the same user (token rotation). Returns the updated record.
    async fn authenticate(
        &self,
        connection_id: &str,
        identity: &Identity,
        ttl: i64,
    ) -> Result<Connection, StoreError>;

    /// Deletes a record (no error when it is already gone).
    /// Returns the record as it was (live or expired), or `None` when there was none: the
    /// caller that gets `Some` is the one that removed it, and runs the disconnect hook.
    async fn remove(&self, connection_id: &str) -> Result<Option<Connection>, StoreError>;

    /// A live record by id (strongly consistent).
    async fn get(&self, connection_id: &str) -> Result<Option<Connection>, StoreError>;

    /// Live records of a user (every device).
    async fn get_by_user(&self, user_id: &str) -> Result<Vec<Connection>, StoreError>;

    /// Live records of a tenant.
    async fn get_by_tenant(&self, tenant_id: &str) -> Result<Vec<Connection>, StoreError>;

    /// Every live record.
    async fn list(&self) -> Result<Vec<Connection>, StoreError>;

    /// Every record whose `ttl` has passed but is still stored.
    async fn list_expired(&self) -> Result<Vec<Connection>, StoreError>;

    /// The ids of the live, authenticated records inside `scope`: a fan-out's targets. The
    /// default filters [`ConnectionStore::list`] (or [`ConnectionStore::get_by_tenant`]); a
    /// store that can answer without copying every record (the memory store) does.
    async fn target_ids(&self, scope: &crate::messaging::Scope) -> Result<Vec<String>, StoreError> {
        use crate::messaging::Scope;
        let records = match scope {
            Scope::Tenant(t) => self.get_by_tenant(t).await?,
            Scope::All | Scope::NoTenant => self.list().await?,
        };
        Ok(records
            .into_iter()
            .filter(|c| c.authenticated && scope.contains(c))
            .map(|c| c.connection_id)
            .collect())
    }

    /// One page of live records in scan segment `segment` of `segments` (DynamoDB: a
    /// parallel-scan segment), in key order after connection id `after`; `next` is where the
    /// following page starts (`None`: the segment is done). Segments are disjoint and together
    /// hold every record. A page may hold fewer than `limit` records, even none, and still
    /// have a `next`. Used by large fan-outs that spill to worker invocations.
    ///
    /// The default pages through [`ConnectionStore::list`], assigning a record to a segment
    /// by a hash of its id.
    async fn scan_page(
        &self,
        segment: u32,
        segments: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ExpiredPage, StoreError> {
        let segments = segments.max(1);
        let mut records: Vec<Connection> = self
            .list()
            .await?
            .into_iter()
            .filter(|c| segment_of(&c.connection_id, segments) == segment)
            .filter(|c| after.is_none_or(|a| c.connection_id.as_str() > a))
            .collect();
        records.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        let limit = limit.max(1);
        let next = (records.len() > limit).then(|| records[limit - 1].connection_id.clone());
        records.truncate(limit);
        Ok(ExpiredPage::new(records, next))
    }

    /// One page of records with `ttl <= now_secs` (strongly consistent), in key order after
    /// connection id `after`. `next` is where the following page starts (`None`: done).
    /// A page may hold fewer than `limit` records, even none, and still have a `next`.
    async fn expired_page(
        &self,
        after: Option<&str>,
        limit: usize,
        now_secs: i64,
    ) -> Result<ExpiredPage, StoreError>;

    /// Deletes the record only if it is still expired (`ttl <= now_secs`), returning it as
    /// it was; `None` when it is live again or already gone (then someone else owns it).
    async fn remove_expired(
        &self,
        connection_id: &str,
        now_secs: i64,
    ) -> Result<Option<Connection>, StoreError>;

    /// Counts one inbound message in the rate window starting at `window_start_ms` and
    /// returns the count in that window (1 for its first message), or `None` when the
    /// connection has no live record (its socket may then not talk at all). Counters live
    /// with the connection, so they survive across Lambda invocations.
    async fn count_message(
        &self,
        connection_id: &str,
        window_start_ms: i64,
    ) -> Result<Option<u32>, StoreError>;

    /// [`ConnectionStore::count_message`], also returning the live record after the count:
    /// the auth guard's read and the rate counter in one call where the store can (DynamoDB:
    /// one conditional `UpdateItem` returning the whole item). The default counts, then reads.
    async fn count_message_and_get(
        &self,
        connection_id: &str,
        window_start_ms: i64,
    ) -> Result<Option<(u32, Option<Connection>)>, StoreError> {
        match self.count_message(connection_id, window_start_ms).await? {
            None => Ok(None),
            Some(count) => Ok(Some((count, self.get(connection_id).await?))),
        }
    }

    /// Counts one failed `auth` on the connection and returns the total so far, or `None`
    /// when the connection has no live record.
    async fn count_auth_failure(&self, connection_id: &str) -> Result<Option<u32>, StoreError>;
}
