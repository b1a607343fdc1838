//! Delivery through the API Gateway management API (`POST`/`DELETE @connections/{id}`).
//!
//! One client per endpoint, cached for the life of the process. Each call has a timeout
//! (a hung endpoint must not hang the Lambda); throttling (HTTP 429,
//! `LimitExceededException`) is retried with exponential backoff and jitter; 410
//! `GoneException` is reported as [`DeliveryError::Gone`] so the caller removes the record.

use crate::config::Config;
use crate::delivery::{Delivery, DeliveryError};
use crate::event::RequestInfo;
use crate::protocol::MAX_MESSAGE_BYTES;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::config::retry::RetryConfig;
use aws_sdk_apigatewaymanagement::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Timeouts and retries of management API calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per call, including the first (throttling only).
    pub attempts: u32,
    /// The first backoff; doubled on each retry, plus up to 50% jitter.
    pub base_delay: Duration,
    /// Limit for one HTTP call.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(50),
            timeout: Duration::from_secs(3),
        }
    }
}

/// Resolves management endpoints and hands out one cached client per endpoint.
pub struct ManagementApi {
    sdk: super::SdkLoader,
    region: Option<String>,
    override_endpoint: Option<String>,
    policy: RetryPolicy,
    route_response: bool,
    clients: Mutex<HashMap<String, Arc<ApiGatewayDelivery>>>,
}

impl std::fmt::Debug for ManagementApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementApi")
            .field("override_endpoint", &self.override_endpoint)
            .field("policy", &self.policy)
            .field("route_response", &self.route_response)
            .finish_non_exhaustive()
    }
}

impl ManagementApi {
    /// Endpoint precedence: `VK_WS_MANAGEMENT_ENDPOINT`, then
    /// `AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI`, then derived from each event.
    pub fn new(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        let region = sdk.region().map(ToString::to_string);
        Self::with_loader(super::SdkLoader::ready(sdk.clone()), region, config)
    }

    /// [`ManagementApi::new`] with the SDK configuration still loading: clients are built
    /// on first use. The region (for endpoints derived from events) comes from
    /// `AWS_REGION`, as Lambda sets it.
    pub fn deferred(sdk: super::SdkLoader, config: &Config) -> Self {
        let region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|r| !r.trim().is_empty()));
        Self::with_loader(sdk, region, config)
    }

    fn with_loader(sdk: super::SdkLoader, region: Option<String>, config: &Config) -> Self {
        let env_override = std::env::var("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI")
            .ok()
            .filter(|v| !v.trim().is_empty());
        ManagementApi {
            sdk,
            region,
            override_endpoint: config.management_endpoint.clone().or(env_override),
            policy: RetryPolicy {
                timeout: config.delivery_timeout,
                ..RetryPolicy::default()
            },
            route_response: config.route_response,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Whether replies travel back in the function's response (`VK_WS_ROUTE_RESPONSE`: the
    /// API's message routes have a route response) instead of a `POST @connections`.
    pub fn route_response(&self) -> bool {
        self.route_response
    }

    /// Sets [`ManagementApi::route_response`].
    pub fn with_route_response(mut self, on: bool) -> Self {
        self.route_response = on;
        self
    }

    /// Replaces the retry policy (for clients created afterwards).
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The endpoint configured explicitly, if any.
    pub fn configured_endpoint(&self) -> Option<String> {
        self.override_endpoint.clone()
    }

    /// The endpoint for an event: the override, or
    /// `https://{apiId}.execute-api.{region}.amazonaws.com/{stage}` (from the API id, so
    /// custom domains work).
    pub fn endpoint_for(&self, request: &RequestInfo) -> Option<String> {
        if let Some(endpoint) = &self.override_endpoint {
            return Some(endpoint.clone());
        }
        let region = self.region.as_deref()?;
        let api = request.api_id.as_deref()?;
        let stage = request.stage.as_deref()?;
        Some(format!(
            "https://{api}.execute-api.{region}.amazonaws.com/{stage}"
        ))
    }

    /// The (cached) delivery for `endpoint`.
    pub fn delivery(&self, endpoint: &str) -> Arc<ApiGatewayDelivery> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(endpoint.to_owned())
            .or_insert_with(|| {
                let url = endpoint.to_owned();
                let client = super::deferred::ClientCell::deferred(self.sdk.clone(), move |sdk| {
                    let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
                        // Each call is bounded by the policy's timeout, which covers what
                        // stalled-stream protection would (a 128 KB body at most).
                        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
                        .endpoint_url(&url)
                        // Retries are ours: throttling only, with a bounded budget.
                        .retry_config(RetryConfig::disabled())
                        .build();
                    Client::from_conf(config)
                });
                Arc::new(ApiGatewayDelivery {
                    client,
                    policy: self.policy,
                    endpoint: endpoint.to_owned(),
                })
            })
            .clone()
    }
}

/// [`Delivery`] through one management API endpoint.
#[derive(Debug)]
pub struct ApiGatewayDelivery {
    client: super::deferred::ClientCell<Client>,
    policy: RetryPolicy,
    endpoint: String,
}

enum Failure {
    Gone,
    Throttled(String),
    TooLarge,
    Other(String),
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: SdkError<E, aws_sdk_apigatewaymanagement::config::http::HttpResponse>,
) -> Failure {
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err
        .as_service_error()
        .and_then(|e| e.code())
        .map(str::to_owned);
    match (status, code.as_deref()) {
        (_, Some("GoneException")) | (Some(410), _) => Failure::Gone,
        (
            _,
            Some("LimitExceededException" | "TooManyRequestsException" | "ThrottlingException"),
        )
        | (Some(429), _) => Failure::Throttled(code.unwrap_or_else(|| "HTTP 429".into())),
        (_, Some("PayloadTooLargeException")) | (Some(413), _) => Failure::TooLarge,
        _ => Failure::Other(
            aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&err).to_string(),
        ),
    }
}

impl ApiGatewayDelivery {
    async fn client(&self) -> &Client {
        self.client.get().await
    }

    /// The endpoint this delivery posts to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn with_retries<F, Fut>(
        &self,
        what: &str,
        connection_id: &str,
        call: F,
    ) -> Result<(), DeliveryError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), Failure>>,
    {
        let mut attempt = 1;
        loop {
            let failure = match tokio::time::timeout(self.policy.timeout, call()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(failure)) => failure,
                Err(_) => {
                    return Err(DeliveryError::Failed(format!(
                        "{what} timed out after {:?}",
                        self.policy.timeout
                    )));
                }
            };
            match failure {
                Failure::Gone => return Err(DeliveryError::Gone),
                Failure::TooLarge => return Err(DeliveryError::PayloadTooLarge(0)),
                Failure::Other(message) => {
                    return Err(DeliveryError::Failed(format!("{what}: {message}")));
                }
                Failure::Throttled(code) if attempt >= self.policy.attempts => {
                    crate::metrics::count(crate::metrics::Count::Throttled, 1);
                    return Err(DeliveryError::Failed(format!(
                        "{what}: throttled ({code}) after {attempt} attempts"
                    )));
                }
                Failure::Throttled(code) => {
                    crate::metrics::count(crate::metrics::Count::Throttled, 1);
                    let base = self.policy.base_delay * 2u32.saturating_pow(attempt - 1);
                    let jitter = base.mul_f64(rand::random::<f64>() * 0.5);
                    tracing::debug!(%connection_id, attempt, %code, "throttled; retrying");
                    tokio::time::sleep(base + jitter).await;
                    attempt += 1;
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Delivery for ApiGatewayDelivery {
    async fn post(&self, connection_id: &str, payload: &str) -> Result<(), DeliveryError> {
        if payload.len() > MAX_MESSAGE_BYTES {
            return Err(DeliveryError::PayloadTooLarge(payload.len()));
        }
        self.with_retries("post", connection_id, || async {
            self.client()
                .await
                .post_to_connection()
                .connection_id(connection_id)
                .data(Blob::new(payload.as_bytes()))
                .send()
                .await
                .map(|_| ())
                .map_err(classify)
        })
        .await
    }

    fn endpoint(&self) -> Option<String> {
        Some(self.endpoint.clone())
    }

    async fn close(&self, connection_id: &str) -> Result<(), DeliveryError> {
        self.with_retries("delete", connection_id, || async {
            self.client()
                .await
                .delete_connection()
                .connection_id(connection_id)
                .send()
                .await
                .map(|_| ())
                .map_err(classify)
        })
        .await
    }
}
