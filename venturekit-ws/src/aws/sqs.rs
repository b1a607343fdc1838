//! The fan-out queue on SQS: spilled segments go out with `SendMessageBatch`.

use crate::fanout::{QueueError, Segment, SegmentQueue};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

/// SQS takes at most 10 messages and 256 KiB per `SendMessageBatch`.
const BATCH_ENTRIES: usize = 10;
const BATCH_BYTES: usize = 256 * 1024;
/// Tries per batch for entries SQS did not accept.
const BATCH_TRIES: u32 = 3;

/// [`SegmentQueue`] on an SQS queue (`VK_WS_FANOUT_QUEUE_URL`).
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: super::deferred::ClientCell<Client>,
    url: String,
}

impl SqsQueue {
    /// The queue at `url`.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client: super::deferred::ClientCell::Ready(client),
            url: url.into(),
        }
    }

    /// The queue at `url`, with a client built on first use once `sdk` has loaded.
    pub fn deferred(sdk: super::SdkLoader, url: impl Into<String>) -> Self {
        SqsQueue {
            client: super::deferred::ClientCell::deferred(sdk, |sdk| {
                Client::new(&super::framework_config(sdk))
            }),
            url: url.into(),
        }
    }

    async fn client(&self) -> &Client {
        self.client.get().await
    }

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one batch (indices into `bodies`), retrying entries SQS did not take. Returns
    /// the indices still not queued, with the last error.
    async fn send_batch(&self, bodies: &[String], batch: Vec<usize>) -> Option<QueueError> {
        let mut pending = batch;
        let mut last = String::new();
        for _ in 0..BATCH_TRIES {
            let entries = pending
                .iter()
                .map(|&i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&bodies[i])
                        .build()
                })
                .collect::<Result<Vec<_>, _>>();
            let entries = match entries {
                Ok(entries) => entries,
                Err(e) => {
                    last = e.to_string();
                    break;
                }
            };
            match self
                .client()
                .await
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => {
                    if output.failed().is_empty() {
                        return None;
                    }
                    last = output
                        .failed()
                        .iter()
                        .map(|f| format!("{}: {}", f.code(), f.message().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join("; ");
                    pending = output
                        .failed()
                        .iter()
                        .filter_map(|f| f.id().parse().ok())
                        .collect();
                }
                Err(e) => last = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
            }
        }
        Some(QueueError {
            message: last,
            unqueued: pending,
        })
    }
}

#[async_trait::async_trait]
impl SegmentQueue for SqsQueue {
    async fn send(&self, segments: &[Segment]) -> Result<(), QueueError> {
        let bodies: Vec<String> = segments.iter().map(Segment::to_body).collect();
        let mut batches: Vec<Vec<usize>> = Vec::new();
        let mut bytes = 0;
        for (i, body) in bodies.iter().enumerate() {
            match batches.last_mut() {
                Some(batch) if batch.len() < BATCH_ENTRIES && bytes + body.len() <= BATCH_BYTES => {
                    batch.push(i);
                    bytes += body.len();
                }
                _ => {
                    batches.push(vec![i]);
                    bytes = body.len();
                }
            }
        }
        let mut failed: Option<QueueError> = None;
        for batch in batches {
            if let Some(error) = self.send_batch(&bodies, batch).await {
                match &mut failed {
                    Some(f) => f.unqueued.extend(error.unqueued),
                    None => failed = Some(error),
                }
            }
        }
        match failed {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }
}
