//! Delivery: posting frames to connections and closing them.
//!
//! The local server delivers through its live sockets; on AWS delivery goes through the
//! API Gateway management API. Both answer [`DeliveryError::Gone`] for a connection that
//! no longer exists (HTTP 410).

/// A post or close failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The connection no longer exists (API Gateway `GoneException`, HTTP 410).
    #[error("connection is gone")]
    Gone,
    /// The payload exceeds API Gateway's 128 KB.
    #[error("payload of {0} bytes exceeds the 128 KB limit")]
    PayloadTooLarge(usize),
    /// Any other failure (network, throttling, timeout).
    #[error("delivery failed: {0}")]
    Failed(String),
}

/// Sends frames to connections by id.
#[async_trait::async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot deliver messages to connections",
    note = "implement `venturekit_ws::Delivery`"
)]
pub trait Delivery: Send + Sync + 'static {
    /// Posts one text frame (`POST @connections/{id}`).
    async fn post(&self, connection_id: &str, payload: &str) -> Result<(), DeliveryError>;

    /// Closes the connection (`DELETE @connections/{id}`).
    async fn close(&self, connection_id: &str) -> Result<(), DeliveryError>;

    /// Posts a frame that a whole fan-out shares: the default posts its text; a delivery
    /// that can keep one copy for every target overrides it (the local server encodes a
    /// fan-out's frame once through [`Delivery::post_now`] instead).
    async fn post_shared(
        &self,
        connection_id: &str,
        payload: &std::sync::Arc<str>,
    ) -> Result<(), DeliveryError> {
        self.post(connection_id, payload).await
    }

    /// Posts one shared frame to many connections at once, without waiting, when this
    /// delivery can (the local server queues frames on its sockets): one result per id, in
    /// order. `None` (the default) means "post them one by one", which the messenger then
    /// does concurrently.
    fn post_now(
        &self,
        connection_ids: &[String],
        payload: &std::sync::Arc<str>,
    ) -> Option<Vec<Result<(), DeliveryError>>> {
        let _ = (connection_ids, payload);
        None
    }

    /// The management API endpoint this delivery posts to, when it has one that a worker
    /// invocation could use too (spilled fan-out segments carry it). Default `None`.
    fn endpoint(&self) -> Option<String> {
        None
    }
}
