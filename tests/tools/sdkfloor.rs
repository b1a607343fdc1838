//! The floor for the CPU-per-message comparison: the `send` path with nothing but the AWS
//! SDK for Rust on a bare `lambda_runtime` loop — no framework, no dispatcher, no metrics, no
//! span, no log line. It does for `$connect`, `auth` and `send` exactly what the Node.js peer
//! (`tools/node/lambda/peer-lambda.mjs`) does, with the same table and the same requests:
//!
//! - `$connect`: `PutItem` of an unauthenticated record (30 s);
//! - `auth`: the HS256 JWT check, `UpdateItem` to authenticated (2 h), the reply in the
//!   response;
//! - `send`: the rate counter and the guard's read in one conditional `UpdateItem` returning
//!   the record (with the same window guess), a `Query` of the recipient's connections
//!   (`userId-index`) in the caller's tenant, one `PostToConnection` per live one, the count
//!   in the response (a route response).
//!
//! Built as the chat is deployed: the release profile, a current-thread runtime, mimalloc.
//! What `chat` spends per `send` above this binary is the framework's and the app's share;
//! what this binary spends is the SDK's, the runtime client's and the kernel's.
//!
//! `target/release/vk-lambdacpu target/release/vk-sdkfloor 1000` (scripts/bench-lambda.sh
//! runs it beside `chat` with `--floor`).

#![allow(missing_docs, clippy::print_stdout)]

use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Item = HashMap<String, AttributeValue>;

struct Floor {
    dynamo: aws_sdk_dynamodb::Client,
    management: aws_sdk_apigatewaymanagement::Client,
    table: String,
    secret: Vec<u8>,
    burst: u64,
    window_ms: i64,
    /// The window this process last counted per connection: which write to try first.
    windows: Mutex<HashMap<String, i64>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn now_secs() -> i64 {
    now_ms() / 1000
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn reply(body: Value) -> Value {
    json!({"statusCode": 200, "body": body.to_string()})
}

fn error(action: &str, code: &str) -> Value {
    reply(json!({"action": "error", "requestAction": action, "error": {"code": code}}))
}

fn condition_failed<E: ProvideErrorMetadata>(err: &E) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

impl Floor {
    async fn on_connect(&self, connection_id: &str) -> Result<Value, Error> {
        self.dynamo
            .put_item()
            .table_name(&self.table)
            .item("connectionId", s(connection_id))
            .item("authenticated", AttributeValue::Bool(false))
            .item("connectedAt", n(now_ms()))
            .item("ttl", n(now_secs() + 30))
            .send()
            .await?;
        Ok(json!({"statusCode": 200}))
    }

    async fn on_auth(&self, connection_id: &str, message: &Value) -> Result<Value, Error> {
        let token = message["token"].as_str().unwrap_or_default();
        let key = jsonwebtoken::DecodingKey::from_secret(&self.secret);
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.validate_aud = false;
        let Ok(claims) = jsonwebtoken::decode::<Value>(token, &key, &validation) else {
            return Ok(error("auth", "invalid_token"));
        };
        let claims = claims.claims;
        let Some(sub) = claims["sub"].as_str() else {
            return Ok(error("auth", "invalid_token"));
        };
        let mut update = self
            .dynamo
            .update_item()
            .table_name(&self.table)
            .key("connectionId", s(connection_id))
            .condition_expression("attribute_exists(connectionId)")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":u", s(sub))
            .expression_attribute_values(":ttl", n(now_secs() + 7200));
        let mut expression = String::from("SET authenticated = :t, userId = :u, #ttl = :ttl");
        if let Some(tenant) = claims["tenantId"].as_str() {
            expression.push_str(", tenantId = :tenant");
            update = update.expression_attribute_values(":tenant", s(tenant));
        }
        update.update_expression(expression).send().await?;
        Ok(reply(
            json!({"action": "auth_ok", "userId": sub, "connectionId": connection_id}),
        ))
    }

    /// Counts the message in the current window and returns the record (`None`: no live
    /// record).
    async fn count_and_get(&self, connection_id: &str) -> Result<Option<Item>, Error> {
        let window = now_ms() / self.window_ms * self.window_ms;
        let write = |condition: &'static str, update: &'static str| {
            self.dynamo
                .update_item()
                .table_name(&self.table)
                .key("connectionId", s(connection_id))
                .condition_expression(condition)
                .update_expression(update)
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":now", n(now_secs()))
                .expression_attribute_values(":w", n(window))
                .expression_attribute_values(":one", n(1))
                .return_values(ReturnValue::AllNew)
        };
        let same = write(
            "attribute_exists(connectionId) AND #ttl > :now AND rateWindow = :w",
            "ADD rateCount :one",
        );
        let fresh = write(
            "attribute_exists(connectionId) AND #ttl > :now AND (attribute_not_exists(rateWindow) OR rateWindow <> :w)",
            "SET rateWindow = :w, rateCount = :one",
        );
        let last = self
            .windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(connection_id)
            .copied();
        let order = if last == Some(window) {
            [same, fresh]
        } else {
            [fresh, same]
        };
        for attempt in order {
            match attempt.send().await {
                Ok(out) => {
                    self.windows
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(connection_id.to_owned(), window);
                    return Ok(out.attributes);
                }
                Err(err) if condition_failed(&err) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(None)
    }

    async fn on_send(&self, connection_id: &str, message: &Value) -> Result<Value, Error> {
        let Some(record) = self.count_and_get(connection_id).await? else {
            return Ok(error("send", "unauthorized"));
        };
        if record.get("authenticated") != Some(&AttributeValue::Bool(true)) {
            return Ok(error("send", "unauthorized"));
        }
        let count = match record.get("rateCount") {
            Some(AttributeValue::N(v)) => v.parse().unwrap_or(u64::MAX),
            _ => 0,
        };
        if count > self.burst {
            return Ok(error("send", "rate_limited"));
        }
        let text = |item: &Item, name: &str| match item.get(name) {
            Some(AttributeValue::S(v)) => Some(v.clone()),
            _ => None,
        };
        let from = text(&record, "userId").unwrap_or_default();
        let tenant = text(&record, "tenantId");
        let to = match &message["to"] {
            Value::String(to) => to.clone(),
            other => other.to_string(),
        };
        let found = self
            .dynamo
            .query()
            .table_name(&self.table)
            .index_name("userId-index")
            .key_condition_expression("userId = :u")
            .expression_attribute_values(":u", s(&to))
            .send()
            .await?;
        let now = now_secs();
        let data = Blob::new(
            json!({"action": "message", "from": from, "data": message["data"]}).to_string(),
        );
        let mut delivered = 0;
        for item in found.items() {
            let live = item.get("authenticated") == Some(&AttributeValue::Bool(true))
                && match item.get("ttl") {
                    Some(AttributeValue::N(v)) => v.parse::<i64>().unwrap_or(0) > now,
                    _ => false,
                }
                && text(item, "tenantId") == tenant;
            let Some(target) = text(item, "connectionId").filter(|_| live) else {
                continue;
            };
            match self
                .management
                .post_to_connection()
                .connection_id(target)
                .data(data.clone())
                .send()
                .await
            {
                Ok(_) => delivered += 1,
                Err(err) if err.code() == Some("GoneException") => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(reply(json!({"action": "send", "delivered": delivered})))
    }

    async fn handle(&self, event: Value) -> Result<Value, Error> {
        let context = &event["requestContext"];
        let connection_id = context["connectionId"].as_str().unwrap_or_default();
        match context["routeKey"].as_str() {
            Some("$connect") => self.on_connect(connection_id).await,
            Some("$disconnect") => Ok(json!({"statusCode": 200})),
            _ => {
                let body = event["body"].as_str().unwrap_or_default();
                let Ok(message) = serde_json::from_str::<Value>(body) else {
                    return Ok(error("", "bad_request"));
                };
                match message["action"].as_str() {
                    Some("auth") => self.on_auth(connection_id, &message).await,
                    Some("send") => self.on_send(connection_id, &message).await,
                    other => Ok(error(other.unwrap_or_default(), "unknown_action")),
                }
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let number = |name: &str, default: f64| env(name).parse().unwrap_or(default);
    let rate = number("VK_WS_RATE_LIMIT_PER_SEC", 20.0);
    let burst = number("VK_WS_RATE_LIMIT_BURST", 40.0);
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let floor = Floor {
        dynamo: aws_sdk_dynamodb::Client::new(&sdk),
        management: aws_sdk_apigatewaymanagement::Client::new(&sdk),
        table: env("VK_WS_TABLE"),
        secret: env("VK_WS_JWT_SECRET").into_bytes(),
        burst: burst as u64,
        window_ms: ((burst / rate.max(1.0)) * 1000.0).round().max(1.0) as i64,
        windows: Mutex::new(HashMap::new()),
    };
    let floor = &floor;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        floor.handle(event.payload)
    }))
    .await
}
