//! The Lambda adapter: one function serves `$connect`, `$disconnect` and `$default`, an
//! EventBridge scheduled event (`"source": "aws.events"`) runs the sweeper, and SQS events
//! from the fan-out queue (`VK_WS_FANOUT_QUEUE_URL`) are worked off as spilled fan-out
//! segments (see [`crate::fanout`]), answering with partial batch failures.
//!
//! Client mistakes (bad JSON, unknown action, bad token) are answered to the client and the
//! invocation returns `{"statusCode":200}`; a Lambda error is only for events that are not
//! API Gateway WebSocket events at all.

use crate::aws::ManagementApi;
use crate::delivery::{Delivery, DeliveryError};
use crate::dispatch::sweep_deadline_margin as DEADLINE_MARGIN;
use crate::dispatch::{Dispatcher, SweepOptions, SweepReport};
use crate::error::Error;
use crate::event::{RequestInfo, Route, WebSocketEvent, WebSocketResponse};
use lambda_runtime::{LambdaEvent, service_fn};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Serves events from the Lambda Runtime API until the process ends.
///
/// The payload is taken as raw JSON text and parsed once, straight into the API Gateway event
/// (no intermediate `serde_json::Value` tree): that parse is about half the cost of a message.
pub async fn run(dispatcher: Dispatcher, api: ManagementApi) -> Result<(), Error> {
    let dispatcher = Arc::new(dispatcher);
    let api = Arc::new(api);
    let emf = metrics_enabled();
    let handler = service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let dispatcher = dispatcher.clone();
        let api = api.clone();
        let deadline = remaining(event.context.deadline);
        // lambda_runtime runs this in its `Lambda runtime invoke` span (request id and X-Ray
        // trace id); the dispatcher's per-message span nests inside it.
        async move {
            let set = Arc::new(std::sync::Mutex::new(crate::metrics::MetricSet::default()));
            let output = crate::metrics::scope(
                set.clone(),
                "-",
                handle_until(&dispatcher, &api, event.payload.get(), deadline),
            )
            .await;
            if emf {
                write_emf(&set.lock().unwrap_or_else(|p| p.into_inner()));
            }
            output
        }
    });
    lambda_runtime::run(handler)
        .await
        .map_err(|e| Error::Lambda(e.to_string()))
}

/// Whether EMF lines are written (`VK_WS_METRICS`, on unless `0`/`false`/`off`).
fn metrics_enabled() -> bool {
    !matches!(
        std::env::var("VK_WS_METRICS").ok().as_deref(),
        Some("0" | "false" | "off")
    )
}

/// Writes the invocation's metrics to stdout, one EMF document a line (CloudWatch Logs
/// extracts the metrics).
fn write_emf(set: &crate::metrics::MetricSet) {
    use std::io::Write;
    if set.is_empty() {
        return;
    }
    // Serialized into one buffer and written at once: stdout's line buffering would otherwise
    // scan every formatted piece for a newline.
    let mut lines = Vec::with_capacity(1024);
    set.write_emf(crate::clock::now_ms(), &mut lines);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&lines);
    let _ = out.flush();
}

/// What one invocation carries.
#[derive(Debug)]
pub enum Invocation {
    /// An API Gateway WebSocket event (`$connect`, `$disconnect`, `$default`).
    WebSocket(Box<WebSocketEvent>),
    /// An EventBridge scheduled event: run the sweeper.
    Scheduled,
    /// An SQS event: fan-out segments to work off.
    Queue(Vec<QueueMessage>),
}

/// One SQS message of a queue event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// `messageId`, the batch item identifier.
    pub message_id: String,
    /// `body`.
    pub body: String,
}

impl Invocation {
    /// Reads an invocation payload. API Gateway events are parsed directly; only a payload
    /// that is not one (the once-a-minute schedule, or a mistake) is looked at a second time.
    pub fn parse(raw: &str) -> Result<Invocation, String> {
        match serde_json::from_str::<WebSocketEvent>(raw) {
            Ok(event) => Ok(Invocation::WebSocket(Box::new(event))),
            Err(not_websocket) => match serde_json::from_str::<Value>(raw) {
                Ok(value) if is_scheduled(&value) => Ok(Invocation::Scheduled),
                Ok(value) if is_sqs(&value) => Ok(Invocation::Queue(queue_messages(&value))),
                Ok(_) => Err(format!(
                    "not an API Gateway WebSocket event: {not_websocket}"
                )),
                Err(e) => Err(format!("the invocation payload is not JSON: {e}")),
            },
        }
    }
}

/// Whether `payload` is an EventBridge scheduled event.
pub fn is_scheduled(payload: &Value) -> bool {
    payload.get("source").and_then(Value::as_str) == Some("aws.events")
        || payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
}

/// Whether `payload` is an SQS event (`{"Records":[{"eventSource":"aws:sqs",…}]}`).
pub fn is_sqs(payload: &Value) -> bool {
    payload
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|records| records.first())
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

fn queue_messages(payload: &Value) -> Vec<QueueMessage> {
    let field =
        |r: &Value, name: &str| r.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
    payload["Records"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .map(|r| QueueMessage {
                    message_id: field(r, "messageId"),
                    body: field(r, "body"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The answer to an SQS event (the event source mapping needs
/// `FunctionResponseTypes: [ReportBatchItemFailures]`): the messages to deliver again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    /// `[{"itemIdentifier": messageId}]` of the messages that failed.
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// One failed message of an SQS batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    /// The message's `messageId`.
    pub item_identifier: String,
}

/// What an invocation returns to Lambda.
// One value per invocation, returned at once: boxing the response would only add an
// allocation to every message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Output {
    /// The API Gateway integration response (`{"statusCode":200}` and friends).
    Response(WebSocketResponse),
    /// What a scheduled sweep did: `{"expired":N,"closed":M}`.
    Sweep(SweepReport),
    /// The fan-out segments to deliver again: `{"batchItemFailures":[…]}`.
    Batch(BatchResponse),
}

/// When a sweep must stop starting new work: shortly before the invocation's deadline
/// (`deadline_ms`, epoch milliseconds, as the Runtime API gives it).
fn remaining(deadline_ms: u64) -> Option<Instant> {
    let now = crate::clock::now_ms();
    let left = i64::try_from(deadline_ms).ok()? - now;
    let left = Duration::from_millis(u64::try_from(left).ok()?);
    Some(Instant::now() + left.saturating_sub(DEADLINE_MARGIN))
}

/// Handles one invocation payload (raw JSON text), with no deadline.
pub async fn handle(
    dispatcher: &Dispatcher,
    api: &ManagementApi,
    payload: &str,
) -> Result<Output, lambda_runtime::Error> {
    handle_until(dispatcher, api, payload, None).await
}

/// Handles one invocation payload; a scheduled sweep stops at `deadline`.
pub async fn handle_until(
    dispatcher: &Dispatcher,
    api: &ManagementApi,
    payload: &str,
    deadline: Option<Instant>,
) -> Result<Output, lambda_runtime::Error> {
    let event = match Invocation::parse(payload)? {
        Invocation::WebSocket(event) => event,
        Invocation::Scheduled => {
            return Ok(Output::Sweep(sweep(dispatcher, api, deadline).await?));
        }
        Invocation::Queue(messages) => {
            return Ok(Output::Batch(
                work(dispatcher, api, &messages, deadline).await,
            ));
        }
    };
    let request = RequestInfo::of(&event);
    let endpoint = request.as_ref().and_then(|r| api.endpoint_for(r));
    let delivery: Arc<dyn Delivery> = match endpoint {
        Some(endpoint) => api.delivery(&endpoint),
        None => Arc::new(Undeliverable),
    };
    let caller = request.map(|r| r.connection_id);
    match caller {
        Some(caller) if api.route_response() && Route::of(&event) == Route::Message => {
            let held = Arc::new(RouteReply::new(delivery, caller));
            let mut response = dispatcher.handle(&event, held.clone()).await;
            if let Some(frame) = held.take() {
                response.body = Some(aws_lambda_events::encodings::Body::Text(frame.to_string()));
            }
            Ok(Output::Response(response))
        }
        _ => Ok(Output::Response(dispatcher.handle(&event, delivery).await)),
    }
}

/// Delivery for a message invocation whose route has a route response: the last frame for
/// the calling connection is held and travels back in the integration response, which API
/// Gateway sends to the client (one management API `POST` less per message). Anything else
/// for the caller — another frame, a fan-out that includes it, closing it — first posts
/// the held frame, so the client sees every frame in the order it was sent.
struct RouteReply {
    inner: Arc<dyn Delivery>,
    caller: String,
    held: std::sync::Mutex<Option<Arc<str>>>,
}

impl RouteReply {
    fn new(inner: Arc<dyn Delivery>, caller: String) -> Self {
        RouteReply {
            inner,
            caller,
            held: std::sync::Mutex::new(None),
        }
    }

    /// The frame left for the response.
    fn take(&self) -> Option<Arc<str>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Posts the held frame, if any.
    async fn release(&self) -> Result<(), DeliveryError> {
        match self.take() {
            Some(frame) => self.inner.post_shared(&self.caller, &frame).await,
            None => Ok(()),
        }
    }

    /// Posts what was held, then holds `frame` for the response.
    async fn hold(&self, frame: Arc<str>) -> Result<(), DeliveryError> {
        if frame.len() > crate::protocol::MAX_MESSAGE_BYTES {
            return Err(DeliveryError::PayloadTooLarge(frame.len()));
        }
        self.release().await?;
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(frame);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Delivery for RouteReply {
    async fn post(&self, connection_id: &str, payload: &str) -> Result<(), DeliveryError> {
        if connection_id == self.caller {
            self.hold(payload.into()).await
        } else {
            self.inner.post(connection_id, payload).await
        }
    }

    async fn post_shared(
        &self,
        connection_id: &str,
        payload: &Arc<str>,
    ) -> Result<(), DeliveryError> {
        if connection_id == self.caller {
            self.hold(payload.clone()).await
        } else {
            self.inner.post_shared(connection_id, payload).await
        }
    }

    fn post_now(
        &self,
        connection_ids: &[String],
        payload: &Arc<str>,
    ) -> Option<Vec<Result<(), DeliveryError>>> {
        if connection_ids.contains(&self.caller) {
            // One by one, so that the caller's frame goes through `post_shared`.
            return None;
        }
        self.inner.post_now(connection_ids, payload)
    }

    async fn close(&self, connection_id: &str) -> Result<(), DeliveryError> {
        if connection_id == self.caller {
            // The last frame (an error, the auth failure) must arrive before the close:
            // nothing would carry a response to a closed connection.
            let _ = self.release().await;
        }
        self.inner.close(connection_id).await
    }

    fn endpoint(&self) -> Option<String> {
        self.inner.endpoint()
    }
}

/// The scheduled sweep, stopping at `deadline` (the next scheduled run continues). Without
/// a configured management endpoint the expired records are still removed, with a warning
/// that their sockets could not be closed.
pub async fn sweep(
    dispatcher: &Dispatcher,
    api: &ManagementApi,
    deadline: Option<Instant>,
) -> Result<SweepReport, Error> {
    crate::metrics::set_action("vk:sweep");
    let options = SweepOptions::until(deadline);
    let (delivery, options): (Arc<dyn Delivery>, _) = match api.configured_endpoint() {
        Some(endpoint) => (api.delivery(&endpoint), options),
        None => {
            tracing::warn!(
                "scheduled sweep without VK_WS_MANAGEMENT_ENDPOINT: expired records are removed, but their sockets cannot be closed"
            );
            (Arc::new(Undeliverable), options.remove_only())
        }
    };
    let report = dispatcher
        .sweep_with(&dispatcher.messenger(delivery), options)
        .await
        .map_err(|e| Error::Lambda(format!("sweep failed: {e}")))?;
    tracing::info!(
        expired = report.expired,
        closed = report.closed,
        kept = report.kept,
        complete = report.complete,
        "sweep done"
    );
    Ok(report)
}

/// Works off fan-out segments one after another, stopping at `deadline` (what is left of a
/// segment is queued again). A message that is not a segment, or whose segment could not
/// be worked off, is reported as a batch item failure: SQS delivers it again, and finally
/// moves it to the dead-letter queue.
pub async fn work(
    dispatcher: &Dispatcher,
    api: &ManagementApi,
    messages: &[QueueMessage],
    deadline: Option<Instant>,
) -> BatchResponse {
    let mut response = BatchResponse::default();
    for message in messages {
        let failed = match crate::fanout::Segment::from_body(&message.body) {
            None => {
                tracing::error!(
                    message_id = %message.message_id,
                    "a queue message that is not a venturekit-ws fan-out segment; leaving it to the dead-letter queue"
                );
                true
            }
            Some(segment) => {
                crate::metrics::set_action(&segment.action);
                match segment
                    .endpoint
                    .clone()
                    .or_else(|| api.configured_endpoint())
                {
                    None => {
                        tracing::error!(
                            message_id = %message.message_id,
                            "a fan-out segment without a management endpoint, and no VK_WS_MANAGEMENT_ENDPOINT"
                        );
                        true
                    }
                    Some(endpoint) => {
                        let messenger = dispatcher.messenger(api.delivery(&endpoint));
                        match messenger.work(&segment, deadline).await {
                            Ok(report) => {
                                tracing::info!(
                                    message_id = %message.message_id,
                                    delivered = report.delivered,
                                    gone = report.gone,
                                    requeued = report.requeued,
                                    given_up = report.given_up,
                                    "fan-out segment done"
                                );
                                false
                            }
                            Err(error) => {
                                tracing::warn!(message_id = %message.message_id, %error, "fan-out segment failed; SQS will deliver it again");
                                true
                            }
                        }
                    }
                }
            }
        };
        if failed {
            response.batch_item_failures.push(BatchItemFailure {
                item_identifier: message.message_id.clone(),
            });
        }
    }
    response
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
