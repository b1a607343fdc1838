//! The AWS backends: the DynamoDB connection store and delivery through the API Gateway
//! management API.
//!
//! Both are built once per process (per Lambda cold start) and reused.
//!
//! ## Out-of-band sends
//!
//! Code that runs without an incoming WebSocket event — an SQS consumer, a cron Lambda —
//! can reach connections with [`messenger_from_env`], given `VK_WS_TABLE` and
//! `VK_WS_MANAGEMENT_ENDPOINT` (`https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`):
//!
//! ```no_run
//! # async fn job() -> Result<(), Box<dyn std::error::Error>> {
//! let connections = venturekit_ws::aws::messenger_from_env().await?;
//! let note = serde_json::json!({"action": "notice", "text": "maintenance at 22:00"});
//! let report = connections.send_to_tenant("acme", &note).await.map_err(|e| e.to_string())?;
//! println!("delivered {}, gone {}, failed {}", report.delivered, report.gone, report.failed);
//! # Ok(()) }
//! ```

mod deferred;
mod dynamo;
mod management;
mod sqs;
mod topics;

pub use deferred::SdkLoader;
pub use dynamo::{DynamoStore, TENANT_INDEX, USER_INDEX, create_table};
pub use management::{ApiGatewayDelivery, ManagementApi, RetryPolicy};
pub use sqs::SqsQueue;
pub use topics::{CONNECTION_INDEX, DynamoTopics, create_topics_table};

use crate::config::Config;
use crate::error::Error;
use crate::messaging::Messenger;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use std::sync::Arc;

/// Loads the shared AWS configuration (region, credentials, endpoint overrides such as
/// `AWS_ENDPOINT_URL_DYNAMODB`). Credentials are resolved lazily, on first use.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// How long one attempt of a DynamoDB or SQS request by the framework's own clients may take
/// before it is abandoned and retried: far above what such a request needs, far below a
/// function's timeout. (Management API calls have their own, `VK_WS_DELIVERY_TIMEOUT_MS`.)
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The configuration the framework builds its DynamoDB and SQS clients from (the connection
/// and topic stores, the fan-out queue): `sdk` with each request attempt bounded by
/// [`ATTEMPT_TIMEOUT`] (unless `sdk` sets an attempt timeout itself) instead of the SDK's
/// stalled-stream protection. The bound covers what that protection covers for these small
/// bodies (a response that stops arriving) and what it does not (a server that never answers),
/// and it costs less per request (BENCHMARKS.md). Clients you build from [`sdk_config`] are
/// left as the SDK makes them.
pub fn framework_config(sdk: &aws_config::SdkConfig) -> aws_config::SdkConfig {
    let configured = sdk.timeout_config();
    let mut timeouts = configured.map(|t| t.to_builder()).unwrap_or_default();
    if configured
        .and_then(|t| t.operation_attempt_timeout())
        .is_none()
    {
        timeouts = timeouts.operation_attempt_timeout(ATTEMPT_TIMEOUT);
    }
    sdk.to_builder()
        .timeout_config(timeouts.build())
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .build()
}

/// Messaging for code outside WebSocket events: the DynamoDB store of `VK_WS_TABLE` and
/// the management endpoint of `VK_WS_MANAGEMENT_ENDPOINT`.
pub async fn messenger_from_env() -> Result<Messenger, Error> {
    let config = Config::from_env()?;
    let table = config
        .table
        .clone()
        .ok_or_else(|| Error::Config("VK_WS_TABLE is required".into()))?;
    let sdk = sdk_config().await;
    // The DynamoDB clients take the framework's settings here; the management API and the
    // queue apply theirs when they build their clients.
    let dynamo = aws_sdk_dynamodb::Client::new(&framework_config(&sdk));
    let store = DynamoStore::new(dynamo.clone(), table).with_scan_segments(config.scan_segments);
    let api = ManagementApi::new(&sdk, &config);
    let endpoint = api.configured_endpoint().ok_or_else(|| {
        Error::Config(
            "VK_WS_MANAGEMENT_ENDPOINT (or AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI) is required to send without an incoming event".into(),
        )
    })?;
    let topics = config.topics_table.clone().map(|table| {
        crate::topics::Topics::new(
            Arc::new(DynamoTopics::new(dynamo, table)),
            Vec::new(),
            config.max_topics,
        )
    });
    Ok(Messenger::new(Arc::new(store), api.delivery(&endpoint))
        .with_concurrency(config.fanout_concurrency)
        .with_topics(topics)
        .with_spill(spill_from_config(&SdkLoader::ready(sdk), &config)))
}

/// Spilling to `VK_WS_FANOUT_QUEUE_URL` with the fan-out settings of `config`, when the
/// queue is set.
pub fn spill_from_config(sdk: &SdkLoader, config: &Config) -> Option<crate::fanout::Spill> {
    let url = config.fanout_queue_url.clone()?;
    let queue = SqsQueue::deferred(sdk.clone(), url);
    Some(crate::fanout::Spill::from_config(Arc::new(queue), config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::timeout::TimeoutConfig;
    use std::time::Duration;

    #[test]
    fn framework_clients_bound_each_attempt_and_keep_the_other_timeouts() {
        let sdk = aws_config::SdkConfig::builder()
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_millis(3100))
                    .build(),
            )
            .build();
        let tuned = framework_config(&sdk);
        let timeouts = tuned.timeout_config().unwrap();
        assert_eq!(timeouts.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
        assert_eq!(
            timeouts.connect_timeout(),
            Some(Duration::from_millis(3100))
        );
        assert_eq!(
            tuned.stalled_stream_protection().map(|s| s.is_enabled()),
            Some(false)
        );
        // The configuration it came from is untouched.
        assert_eq!(
            sdk.timeout_config().unwrap().operation_attempt_timeout(),
            None
        );
    }

    #[test]
    fn an_attempt_timeout_already_set_is_kept() {
        let sdk = aws_config::SdkConfig::builder()
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(2))
                    .build(),
            )
            .build();
        let tuned = framework_config(&sdk);
        assert_eq!(
            tuned.timeout_config().unwrap().operation_attempt_timeout(),
            Some(Duration::from_secs(2))
        );
        let bare = framework_config(&aws_config::SdkConfig::builder().build());
        assert_eq!(
            bare.timeout_config().unwrap().operation_attempt_timeout(),
            Some(ATTEMPT_TIMEOUT)
        );
    }
}
