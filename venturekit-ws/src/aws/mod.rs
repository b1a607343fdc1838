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
use std::sync::Arc;

/// Loads the shared AWS configuration (region, credentials, endpoint overrides such as
/// `AWS_ENDPOINT_URL_DYNAMODB`). Credentials are resolved lazily, on first use.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
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
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table)
        .with_scan_segments(config.scan_segments);
    let api = ManagementApi::new(&sdk, &config);
    let endpoint = api.configured_endpoint().ok_or_else(|| {
        Error::Config(
            "VK_WS_MANAGEMENT_ENDPOINT (or AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI) is required to send without an incoming event".into(),
        )
    })?;
    let topics = config.topics_table.clone().map(|table| {
        crate::topics::Topics::new(
            Arc::new(DynamoTopics::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                table,
            )),
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
