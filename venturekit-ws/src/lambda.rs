//! The Lambda adapter: one function serves `$connect`, `$disconnect` and `$default`, and an
//! EventBridge scheduled event (`"source": "aws.events"`) runs the sweeper.
//!
//! Client mistakes (bad JSON, unknown action, bad token) are answered to the client and the
//! invocation returns `{"statusCode":200}`; a Lambda error is only for events that are not
//! API Gateway WebSocket events at all.

use crate::aws::ManagementApi;
use crate::delivery::{Delivery, DeliveryError};
use crate::dispatch::{Dispatcher, SweepReport};
use crate::error::Error;
use crate::event::{RequestInfo, WebSocketEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use std::sync::Arc;

/// Serves events from the Lambda Runtime API until the process ends.
pub async fn run(dispatcher: Dispatcher, api: ManagementApi) -> Result<(), Error> {
    let dispatcher = Arc::new(dispatcher);
    let api = Arc::new(api);
    let handler = service_fn(move |event: LambdaEvent<Value>| {
        let dispatcher = dispatcher.clone();
        let api = api.clone();
        async move { handle(&dispatcher, &api, event.payload).await }
    });
    lambda_runtime::run(handler)
        .await
        .map_err(|e| Error::Lambda(e.to_string()))
}

/// Whether `payload` is an EventBridge scheduled event.
pub fn is_scheduled(payload: &Value) -> bool {
    payload.get("source").and_then(Value::as_str) == Some("aws.events")
        || payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
}

/// Handles one invocation payload.
pub async fn handle(
    dispatcher: &Dispatcher,
    api: &ManagementApi,
    payload: Value,
) -> Result<Value, lambda_runtime::Error> {
    if is_scheduled(&payload) {
        let report = sweep(dispatcher, api).await?;
        return Ok(serde_json::json!({ "expired": report.expired, "closed": report.closed }));
    }
    let event: WebSocketEvent = serde_json::from_value(payload)
        .map_err(|e| format!("not an API Gateway WebSocket event: {e}"))?;
    let endpoint = RequestInfo::of(&event).and_then(|r| api.endpoint_for(&r));
    let delivery: Arc<dyn Delivery> = match endpoint {
        Some(endpoint) => api.delivery(&endpoint),
        None => Arc::new(Undeliverable),
    };
    let response = dispatcher.handle(&event, delivery).await;
    Ok(serde_json::to_value(response)?)
}

/// The scheduled sweep. Without a configured management endpoint the expired records are
/// still removed, with a warning that their sockets could not be closed.
pub async fn sweep(dispatcher: &Dispatcher, api: &ManagementApi) -> Result<SweepReport, Error> {
    let delivery: Arc<dyn Delivery> = match api.configured_endpoint() {
        Some(endpoint) => api.delivery(&endpoint),
        None => {
            tracing::warn!(
                "scheduled sweep without VK_WS_MANAGEMENT_ENDPOINT: expired records are removed, but their sockets cannot be closed"
            );
            Arc::new(Undeliverable)
        }
    };
    let report = dispatcher
        .sweep(&dispatcher.connections(delivery))
        .await
        .map_err(|e| Error::Lambda(format!("sweep failed: {e}")))?;
    tracing::info!(
        expired = report.expired,
        closed = report.closed,
        "sweep done"
    );
    Ok(report)
}

/// Delivery when no management endpoint can be determined.
struct Undeliverable;

#[async_trait::async_trait]
impl Delivery for Undeliverable {
    async fn post(&self, _: &str, _: &str) -> Result<(), DeliveryError> {
        Err(DeliveryError::Failed("no management API endpoint".into()))
    }
    async fn close(&self, _: &str) -> Result<(), DeliveryError> {
        Err(DeliveryError::Failed("no management API endpoint".into()))
    }
}
