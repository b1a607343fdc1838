//! Real servers for the AWS paths: moto (DynamoDB) started by `scripts/test.sh`, a
//! recording management API server, and a Lambda Runtime API stand-in — all on loopback.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The moto server's endpoint, from `VK_TEST_MOTO_ENDPOINT` (set by `scripts/test.sh`).
///
/// Fails the test with instructions when it is missing: these tests never pass by
/// skipping.
pub fn moto_endpoint() -> String {
    match std::env::var("VK_TEST_MOTO_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => endpoint,
        _ => panic!(
            "the DynamoDB tests need moto's server: run `scripts/test.sh` (it installs moto into .venv and starts it), \
             or start `moto_server -H 127.0.0.1 -p 5000` yourself and set VK_TEST_MOTO_ENDPOINT=http://127.0.0.1:5000"
        ),
    }
}

/// A DynamoDB client for moto, with dummy credentials.
pub fn dynamo_client() -> aws_sdk_dynamodb::Client {
    dynamo_client_at(&moto_endpoint())
}

/// A DynamoDB client for `endpoint` (moto, or a proxy in front of it), with dummy
/// credentials.
pub fn dynamo_client_at(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// The SDK configuration the framework itself would load, pointed at loopback servers.
pub fn sdk_config() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "tests"),
        ))
        .build()
}

/// A fresh table with the framework's schema, named uniquely for this test.
pub async fn fresh_table(client: &aws_sdk_dynamodb::Client, label: &str) -> String {
    let table = format!("vk-{label}-{:08x}", rand::random::<u32>());
    venturekit_ws::aws::create_table(client, &table)
        .await
        .expect("creating the table in moto failed");
    table
}

/// One call the management server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `POST`, `GET` or `DELETE`.
    pub method: String,
    /// The stage prefix, if any.
    pub stage: Option<String>,
    /// The connection id, percent-decoded.
    pub connection_id: String,
    /// The raw (still encoded) path.
    pub path: String,
    /// The body.
    pub body: String,
}

impl Call {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct MgmtState {
    calls: Mutex<Vec<Call>>,
    gone: Mutex<HashSet<String>>,
    throttle: Mutex<HashMap<String, u32>>,
    stall: Mutex<HashSet<String>>,
    /// Bodies of the posts answered 200, by connection id.
    received: Mutex<HashMap<String, Vec<String>>>,
}

/// A recording management API server on loopback: answers 410 for chosen ids, 429 a chosen
/// number of times, or stalls.
#[derive(Clone)]
pub struct ManagementServer {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<MgmtState>,
}

impl ManagementServer {
    /// Starts the server.
    pub async fn start() -> ManagementServer {
        let state = Arc::new(MgmtState::default());
        let app = Router::new()
            .route("/{*path}", any(mgmt_call))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        ManagementServer { addr, state }
    }

    /// `http://127.0.0.1:PORT/{stage}`.
    pub fn endpoint(&self, stage: &str) -> String {
        format!("http://{}/{stage}", self.addr)
    }

    /// Answer 410 Gone for `id` from now on.
    pub fn gone(&self, id: &str) {
        self.state.gone.lock().unwrap().insert(id.to_owned());
    }

    /// Answer 429 for the next `times` calls about `id`.
    pub fn throttle(&self, id: &str, times: u32) {
        self.state
            .throttle
            .lock()
            .unwrap()
            .insert(id.to_owned(), times);
    }

    /// Never answer calls about `id`.
    pub fn stall(&self, id: &str) {
        self.state.stall.lock().unwrap().insert(id.to_owned());
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Calls about one connection.
    pub fn calls_for(&self, id: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.connection_id == id)
            .collect()
    }

    /// Bodies of the posts to `id` that were answered 200 (what the client received), as
    /// JSON.
    pub fn received_by(&self, id: &str) -> Vec<Value> {
        self.state
            .received
            .lock()
            .unwrap()
            .get(id)
            .map(|bodies| {
                bodies
                    .iter()
                    .map(|b| serde_json::from_str(b).unwrap_or(Value::Null))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Bodies posted to one connection, as JSON.
    pub fn posts_to(&self, id: &str) -> Vec<Value> {
        self.calls_for(id)
            .into_iter()
            .filter(|c| c.method == "POST")
            .map(|c| c.json())
            .collect()
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 3 <= bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn mgmt_call(
    State(state): State<Arc<MgmtState>>,
    method: Method,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let Some((prefix, raw_id)) = path.split_once("/@connections/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let stage = prefix.trim_start_matches('/');
    let id = percent_decode(raw_id);
    state.calls.lock().unwrap().push(Call {
        method: method.to_string(),
        stage: (!stage.is_empty()).then(|| stage.to_owned()),
        connection_id: id.clone(),
        path: path.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if state.stall.lock().unwrap().contains(&id) {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let throttled = {
        let mut throttle = state.throttle.lock().unwrap();
        match throttle.get_mut(&id) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    };
    let error = |status: StatusCode, kind: &'static str| {
        let mut r = (status, r#"{"message":null}"#).into_response();
        r.headers_mut()
            .insert("x-amzn-ErrorType", HeaderValue::from_static(kind));
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        r
    };
    if throttled {
        return error(StatusCode::TOO_MANY_REQUESTS, "LimitExceededException");
    }
    if state.gone.lock().unwrap().contains(&id) {
        return error(StatusCode::GONE, "GoneException");
    }
    match method {
        Method::DELETE => StatusCode::NO_CONTENT.into_response(),
        _ => {
            if method == Method::POST {
                state
                    .received
                    .lock()
                    .unwrap()
                    .entry(id)
                    .or_default()
                    .push(String::from_utf8_lossy(&body).into_owned());
            }
            StatusCode::OK.into_response()
        }
    }
}

#[derive(Default)]
struct RuntimeState {
    queue: Mutex<VecDeque<(String, Value)>>,
    queued: Notify,
    results: Mutex<HashMap<String, Result<Value, Value>>>,
    answered: Notify,
    init_errors: Mutex<Vec<Value>>,
    next_calls: Mutex<u32>,
}

/// A Lambda Runtime API stand-in (`/2018-06-01/runtime/...`).
#[derive(Clone)]
pub struct RuntimeApi {
    /// Where it listens (the value for `AWS_LAMBDA_RUNTIME_API`).
    pub addr: SocketAddr,
    state: Arc<RuntimeState>,
}

impl RuntimeApi {
    /// Starts the stand-in.
    pub async fn start() -> RuntimeApi {
        let state = Arc::new(RuntimeState::default());
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(invocation_response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(invocation_error),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        RuntimeApi { addr, state }
    }

    /// Queues an event and waits for the function's answer: `Ok(response)` or
    /// `Err(error report)`.
    pub async fn invoke(&self, event: Value) -> Result<Value, Value> {
        let id = format!("req-{:016x}", rand::random::<u64>());
        self.state
            .queue
            .lock()
            .unwrap()
            .push_back((id.clone(), event));
        self.state.queued.notify_waiters();
        self.state.queued.notify_one();
        let wait = async {
            loop {
                let notified = self.state.answered.notified();
                if let Some(result) = self.state.results.lock().unwrap().remove(&id) {
                    return result;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .expect("the function never answered the invocation")
    }

    /// Errors the function reported during init.
    pub fn init_errors(&self) -> Vec<Value> {
        self.state.init_errors.lock().unwrap().clone()
    }

    /// How many times the function asked for the next invocation.
    pub fn next_calls(&self) -> u32 {
        *self.state.next_calls.lock().unwrap()
    }
}

async fn next_invocation(State(state): State<Arc<RuntimeState>>) -> Response {
    *state.next_calls.lock().unwrap() += 1;
    loop {
        let notified = state.queued.notified();
        if let Some((id, event)) = state.queue.lock().unwrap().pop_front() {
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 30_000;
            let mut response = axum::Json(event).into_response();
            let headers = response.headers_mut();
            headers.insert(
                "lambda-runtime-aws-request-id",
                HeaderValue::from_str(&id).unwrap(),
            );
            headers.insert(
                "lambda-runtime-deadline-ms",
                HeaderValue::from_str(&deadline.to_string()).unwrap(),
            );
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:chat"),
            );
            headers.insert(
                "lambda-runtime-trace-id",
                HeaderValue::from_static("Root=1-00000000-000000000000000000000000"),
            );
            return response;
        }
        notified.await;
    }
}

async fn invocation_response(
    State(state): State<Arc<RuntimeState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.results.lock().unwrap().insert(id, Ok(value));
    state.answered.notify_waiters();
    StatusCode::ACCEPTED
}

async fn invocation_error(
    State(state): State<Arc<RuntimeState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.results.lock().unwrap().insert(id, Err(value));
    state.answered.notify_waiters();
    StatusCode::ACCEPTED
}

async fn init_error(State(state): State<Arc<RuntimeState>>, body: Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.init_errors.lock().unwrap().push(value);
    StatusCode::ACCEPTED
}

/// A fresh connections table in moto, a recording management API server, and the
/// framework's management API client pointed at it with `policy`.
pub struct Rig {
    /// The DynamoDB client (moto).
    pub client: aws_sdk_dynamodb::Client,
    /// The store on the fresh table.
    pub store: Arc<venturekit_ws::aws::DynamoStore>,
    /// The recording management API.
    pub server: ManagementServer,
    /// The client, with `VK_WS_MANAGEMENT_ENDPOINT` set to the server's `prod` stage.
    pub api: venturekit_ws::aws::ManagementApi,
}

/// A [`Rig`] whose table name is tagged with `label`.
pub async fn rig(label: &str, policy: venturekit_ws::aws::RetryPolicy) -> Rig {
    let client = dynamo_client();
    let table = fresh_table(&client, label).await;
    let server = ManagementServer::start().await;
    let mut config = venturekit_ws::Config::default();
    config.management_endpoint = Some(server.endpoint("prod"));
    config.delivery_timeout = policy.timeout;
    let api = venturekit_ws::aws::ManagementApi::new(&sdk_config(), &config).with_policy(policy);
    Rig {
        store: Arc::new(venturekit_ws::aws::DynamoStore::new(client.clone(), table)),
        client,
        server,
        api,
    }
}

impl Rig {
    /// Messaging through the store and the management API client (no app hooks).
    pub fn messenger(&self) -> venturekit_ws::Messenger {
        let endpoint = self.api.configured_endpoint().unwrap();
        venturekit_ws::Messenger::new(self.store.clone(), self.api.delivery(&endpoint))
    }

    /// Messaging as `dispatcher` does it (with the app's hooks and topics).
    pub fn messenger_of(&self, dispatcher: &venturekit_ws::Dispatcher) -> venturekit_ws::Messenger {
        let endpoint = self.api.configured_endpoint().unwrap();
        dispatcher.messenger(self.api.delivery(&endpoint))
    }
}

/// A `$connect` event for `id`, from the published API Gateway fixture.
pub fn connect_event(id: &str) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/apigw-websocket/example-apigw-websocket-request-without-method.json"
    );
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    event["requestContext"]["connectionId"] = serde_json::json!(id);
    event["requestContext"]["apiId"] = serde_json::json!("abcd1234");
    event
}

/// A `$default` event from `id` carrying `body` (a JSON string is sent as is, raw). Like
/// API Gateway's MESSAGE events, it has the request context and the body, no headers.
pub fn message_event(id: &str, body: Value) -> Value {
    let mut event = connect_event(id);
    if let Some(fields) = event.as_object_mut() {
        fields.remove("headers");
        fields.remove("multiValueHeaders");
    }
    event["requestContext"]["routeKey"] = serde_json::json!("$default");
    event["requestContext"]["eventType"] = serde_json::json!("MESSAGE");
    event["body"] = serde_json::json!(match body {
        Value::String(raw) => raw,
        other => other.to_string(),
    });
    event
}

/// An SQS client for moto, with dummy credentials.
pub fn sqs_client() -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .endpoint_url(moto_endpoint())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// A fresh SQS queue in moto, named uniquely for this test; returns its URL.
pub async fn fresh_queue(client: &aws_sdk_sqs::Client, label: &str) -> String {
    let name = format!("vk-{label}-{:08x}", rand::random::<u32>());
    client
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("creating the queue in moto failed")
        .queue_url()
        .expect("moto returned no queue URL")
        .to_owned()
}

/// An SQS event as the event source mapping delivers it (the published fixture's shape),
/// carrying `messages` (message id, body).
pub fn sqs_event(messages: &[(String, String)]) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/sqs/example-sqs-event.json"
    );
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let template = fixture["Records"][0].clone();
    let records = messages
        .iter()
        .map(|(id, body)| {
            let mut record = template.clone();
            record["messageId"] = Value::from(id.as_str());
            record["receiptHandle"] = Value::from(format!("receipt-{id}"));
            record["body"] = Value::from(body.as_str());
            record["messageAttributes"] = serde_json::json!({});
            record
        })
        .collect::<Vec<_>>();
    serde_json::json!({ "Records": records })
}

/// Writes authenticated records (user, tenant, ttl two hours ahead) in batches of 25.
pub async fn put_authenticated(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    records: &[(String, String, Option<String>)],
) {
    use aws_sdk_dynamodb::types::AttributeValue;
    let now = venturekit_ws::clock::now_secs();
    let items = records.iter().map(|(id, user, tenant)| {
        let mut item = HashMap::from([
            ("connectionId".to_owned(), AttributeValue::S(id.clone())),
            ("authenticated".to_owned(), AttributeValue::Bool(true)),
            ("userId".to_owned(), AttributeValue::S(user.clone())),
            ("connectedAt".to_owned(), AttributeValue::N("1".into())),
            (
                "ttl".to_owned(),
                AttributeValue::N((now + 7200).to_string()),
            ),
        ]);
        if let Some(tenant) = tenant {
            item.insert("tenantId".to_owned(), AttributeValue::S(tenant.clone()));
        }
        item
    });
    put_items(client, table, items).await;
}

/// Writes raw items with `BatchWriteItem`, 25 at a time, failing if moto leaves any
/// unprocessed.
pub async fn put_items(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: impl IntoIterator<Item = HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
) {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    let requests: Vec<WriteRequest> = items
        .into_iter()
        .map(|item| {
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                .build()
        })
        .collect();
    for chunk in requests.chunks(25) {
        let out = client
            .batch_write_item()
            .request_items(table, chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert!(
            out.unprocessed_items().is_none_or(|u| u.is_empty()),
            "moto left items unprocessed"
        );
    }
}

/// One received SQS message.
#[derive(Debug, Clone)]
pub struct Received {
    /// `MessageId`.
    pub id: String,
    /// `Body`.
    pub body: String,
    /// `ReceiptHandle`, to delete it or make it visible again.
    pub receipt: String,
}

/// Receives up to 10 messages (hidden for two minutes), as the event source mapping does.
pub async fn receive(client: &aws_sdk_sqs::Client, url: &str) -> Vec<Received> {
    client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(120)
        .send()
        .await
        .expect("ReceiveMessage on moto failed")
        .messages()
        .iter()
        .map(|m| Received {
            id: m.message_id().unwrap_or_default().to_owned(),
            body: m.body().unwrap_or_default().to_owned(),
            receipt: m.receipt_handle().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// Settles a batch as the event source mapping does after the function answered: deletes
/// the messages not listed in `response`'s `batchItemFailures`, and makes the failed ones
/// visible again at once (instead of after the visibility timeout). Returns the failures.
pub async fn settle(
    client: &aws_sdk_sqs::Client,
    url: &str,
    batch: &[Received],
    response: &Value,
) -> usize {
    let failures = response["batchItemFailures"].as_array().unwrap_or_else(|| {
        panic!("an SQS event must be answered with batchItemFailures: {response}")
    });
    let failed: HashSet<&str> = failures
        .iter()
        .map(|f| f["itemIdentifier"].as_str().expect("itemIdentifier"))
        .collect();
    for m in batch {
        if failed.contains(m.id.as_str()) {
            client
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(&m.receipt)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        } else {
            client
                .delete_message()
                .queue_url(url)
                .receipt_handle(&m.receipt)
                .send()
                .await
                .unwrap();
        }
    }
    failed.len()
}

/// How many messages the queue holds (visible ones).
pub async fn queue_depth(client: &aws_sdk_sqs::Client, url: &str) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages as Depth;
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(Depth)
        .send()
        .await
        .unwrap()
        .attributes()
        .and_then(|a| a.get(&Depth))
        .and_then(|n| n.parse().ok())
        .unwrap_or_default()
}

/// A keep-alive front for moto, for measurements.
///
/// Real DynamoDB keeps HTTPS connections open between requests; moto answers each request
/// and closes its connection, so a client talking to moto pays a TCP connect (and a new
/// HTTP connection) per call that it never pays on AWS. This proxy accepts kept-alive
/// HTTP/1.1 connections on loopback and forwards each request to moto on a connection of
/// its own. It runs in the measuring process, so its CPU is not counted against the
/// process being measured.
pub struct KeepAliveProxy {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl KeepAliveProxy {
    /// Starts a proxy in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> KeepAliveProxy {
        let upstream: Arc<str> = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .into();
        use axum::serve::ListenerExt;
        let app = Router::new().fallback(any(forward)).with_state(upstream);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Answers go out at once, as DynamoDB's do (no Nagle delay on a kept-alive socket).
        let listener = listener.tap_io(|socket| {
            let _ = socket.set_nodelay(true);
        });
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        KeepAliveProxy { addr }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn forward(State(upstream): State<Arc<str>>, request: axum::extract::Request) -> Response {
    match forward_once(&upstream, request).await {
        Ok(response) => response,
        Err(e) => (StatusCode::BAD_GATEWAY, format!("proxy: {e}")).into_response(),
    }
}

async fn forward_once(
    upstream: &str,
    request: axum::extract::Request,
) -> std::io::Result<Response> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(std::io::Error::other)?;
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut head = format!("{} {target} HTTP/1.1\r\n", parts.method);
    for (name, value) in &parts.headers {
        if name == "connection" || name == "content-length" || name == "transfer-encoding" {
            continue;
        }
        head.push_str(name.as_str());
        head.push_str(": ");
        head.push_str(value.to_str().unwrap_or_default());
        head.push_str("\r\n");
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut stream = tokio::net::TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let mut request = head.into_bytes();
    request.extend_from_slice(&body);
    stream.write_all(&request).await?;
    // Read until the response is whole (its Content-Length), or until moto closes.
    let mut raw = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16384];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        if response_complete(&raw) {
            break;
        }
    }
    parse_response(&raw).ok_or_else(|| std::io::Error::other("unreadable response from moto"))
}

/// Whether `raw` holds a response's head and its whole `Content-Length` body.
fn response_complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let length = head.lines().find_map(|line| {
        line.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    length.is_some_and(|length| raw.len() >= split + 4 + length)
}

/// Parses a whole HTTP/1.1 response read until the server closed the connection.
fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut response = Response::builder().status(status);
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
            continue;
        }
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        response = response.header(name, value);
    }
    if chunked {
        body = dechunk(&body)?;
    }
    response.body(axum::body::Body::from(body)).ok()
}

/// Decodes a chunked body.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}
