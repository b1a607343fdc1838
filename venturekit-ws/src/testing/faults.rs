//! Injected failures: a connection that answers 410, a management API that throttles or
//! times out, a store that fails. Layers around the real delivery and the real store.

use crate::auth::Identity;
use crate::delivery::{Delivery, DeliveryError};
use crate::store::{Connection, ConnectionStore, ExpiredPage, StoreError};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// The failures a [`TestKit`](super::TestKit) injects, from [`TestKit::faults`](super::TestKit::faults).
/// Cheap to clone; clones share the settings.
///
/// ```
/// # use venturekit_ws::{App, Config, testing::{TestKit, User}};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let kit = TestKit::new(App::new(Config::default())).unwrap();
/// let bob = kit.authed(User::new("bob")).await;
/// kit.faults().gone(&bob); // posts to bob now answer 410: his record is removed on the next one
/// kit.faults().throttle_next_posts(2); // the next two posts fail like a 429 from the management API
/// kit.faults().fail_next_store_calls(1); // the next store call fails
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Faults {
    state: Arc<FaultState>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("gone", &*lock(&self.state.gone))
            .field("posts", &*lock(&self.state.posts))
            .field("store_calls", &*lock(&self.state.store_calls))
            .finish()
    }
}

#[derive(Default)]
struct FaultState {
    gone: Mutex<HashSet<String>>,
    posts: Mutex<VecDeque<PostFault>>,
    store_calls: Mutex<usize>,
}

#[derive(Debug, Clone, Copy)]
enum PostFault {
    Throttled,
    TimedOut,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The message of an injected throttle, as the SDK reports API Gateway's 429.
pub const THROTTLED: &str =
    "TooManyRequestsException: rate exceeded (injected by venturekit_ws::testing)";
/// The message of an injected timeout.
pub const TIMED_OUT: &str = "the request timed out (injected by venturekit_ws::testing)";
/// The message of an injected store failure.
pub const STORE_FAILED: &str = "injected store failure (venturekit_ws::testing)";

impl Faults {
    /// Every post to and close of `client`'s connection answers 410 (`GoneException`) from
    /// now on, as when the device vanished without a `$disconnect`.
    pub fn gone(&self, client: &super::TestClient) {
        lock(&self.state.gone).insert(client.connection_id().to_owned());
    }

    /// The next `n` posts (to any connection) fail as throttled (HTTP 429).
    pub fn throttle_next_posts(&self, n: usize) {
        let mut posts = lock(&self.state.posts);
        posts.extend(std::iter::repeat_n(PostFault::Throttled, n));
    }

    /// The next `n` posts (to any connection) time out.
    pub fn time_out_next_posts(&self, n: usize) {
        let mut posts = lock(&self.state.posts);
        posts.extend(std::iter::repeat_n(PostFault::TimedOut, n));
    }

    /// The next `n` calls to the connection store fail with a backend error.
    pub fn fail_next_store_calls(&self, n: usize) {
        *lock(&self.state.store_calls) += n;
    }

    /// Removes every injected fault.
    pub fn clear(&self) {
        lock(&self.state.gone).clear();
        lock(&self.state.posts).clear();
        *lock(&self.state.store_calls) = 0;
    }

    fn post_fault(&self, connection_id: &str) -> Option<DeliveryError> {
        if lock(&self.state.gone).contains(connection_id) {
            return Some(DeliveryError::Gone);
        }
        lock(&self.state.posts).pop_front().map(|fault| {
            DeliveryError::Failed(
                match fault {
                    PostFault::Throttled => THROTTLED,
                    PostFault::TimedOut => TIMED_OUT,
                }
                .into(),
            )
        })
    }

    fn store_fault(&self) -> Result<(), StoreError> {
        let mut left = lock(&self.state.store_calls);
        if *left == 0 {
            return Ok(());
        }
        *left -= 1;
        Err(StoreError::Backend(STORE_FAILED.into()))
    }
}

/// A delivery that fails as [`Faults`] say, and otherwise delegates.
pub(super) struct FaultDelivery {
    pub(super) inner: Arc<dyn Delivery>,
    pub(super) faults: Faults,
}

#[async_trait::async_trait]
impl Delivery for FaultDelivery {
    async fn post(&self, connection_id: &str, payload: &str) -> Result<(), DeliveryError> {
        match self.faults.post_fault(connection_id) {
            Some(error) => Err(error),
            None => self.inner.post(connection_id, payload).await,
        }
    }

    async fn close(&self, connection_id: &str) -> Result<(), DeliveryError> {
        if lock(&self.faults.state.gone).contains(connection_id) {
            return Err(DeliveryError::Gone);
        }
        self.inner.close(connection_id).await
    }
}

/// A store that fails as [`Faults`] say, and otherwise delegates.
pub(super) struct FaultStore {
    pub(super) inner: Arc<dyn ConnectionStore>,
    pub(super) faults: Faults,
}

#[async_trait::async_trait]
impl ConnectionStore for FaultStore {
    async fn save(&self, connection: &Connection) -> Result<(), StoreError> {
        self.faults.store_fault()?;
        self.inner.save(connection).await
    }

    async fn authenticate(
        &self,
        connection_id: &str,
        identity: &Identity,
        ttl: i64,
    ) -> Result<Connection, StoreError> {
        self.faults.store_fault()?;
        self.inner.authenticate(connection_id, identity, ttl).await
    }

    async fn remove(&self, connection_id: &str) -> Result<Option<Connection>, StoreError> {
        self.faults.store_fault()?;
        self.inner.remove(connection_id).await
    }

    async fn get(&self, connection_id: &str) -> Result<Option<Connection>, StoreError> {
        self.faults.store_fault()?;
        self.inner.get(connection_id).await
    }

    async fn get_by_user(&self, user_id: &str) -> Result<Vec<Connection>, StoreError> {
        self.faults.store_fault()?;
        self.inner.get_by_user(user_id).await
    }

    async fn get_by_tenant(&self, tenant_id: &str) -> Result<Vec<Connection>, StoreError> {
        self.faults.store_fault()?;
        self.inner.get_by_tenant(tenant_id).await
    }

    async fn list(&self) -> Result<Vec<Connection>, StoreError> {
        self.faults.store_fault()?;
        self.inner.list().await
    }

    async fn list_expired(&self) -> Result<Vec<Connection>, StoreError> {
        self.faults.store_fault()?;
        self.inner.list_expired().await
    }

    async fn expired_page(
        &self,
        after: Option<&str>,
        limit: usize,
        now_secs: i64,
    ) -> Result<ExpiredPage, StoreError> {
        self.faults.store_fault()?;
        self.inner.expired_page(after, limit, now_secs).await
    }

    async fn remove_expired(
        &self,
        connection_id: &str,
        now_secs: i64,
    ) -> Result<Option<Connection>, StoreError> {
        self.faults.store_fault()?;
        self.inner.remove_expired(connection_id, now_secs).await
    }

    async fn count_message(
        &self,
        connection_id: &str,
        window_start_ms: i64,
    ) -> Result<Option<u32>, StoreError> {
        self.faults.store_fault()?;
        self.inner
            .count_message(connection_id, window_start_ms)
            .await
    }

    async fn count_auth_failure(&self, connection_id: &str) -> Result<Option<u32>, StoreError> {
        self.faults.store_fault()?;
        self.inner.count_auth_failure(connection_id).await
    }
}
