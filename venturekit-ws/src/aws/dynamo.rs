//! The DynamoDB connection store (table schema: docs/PROTOCOL.md, "Connection state").
//!
//! - `authenticate` is a conditional update: the record must exist, be live and be
//!   unauthenticated or the same user, so a removed or expired connection is never revived.
//! - `get` is strongly consistent (the guard reads right after `auth`); the GSIs are
//!   eventually consistent and are only used for fan-out.
//! - Every read drops rows with `ttl <= now`: DynamoDB's TTL deletes lazily.
//! - Queries and scans are paginated to the end.
//! - The sweeper reads expired rows with a strongly consistent scan, one page at a time,
//!   and deletes each conditionally (`ttl <= now`), so a row refreshed by `auth` meanwhile
//!   survives.

use crate::auth::Identity;
use crate::claims::Claims;
use crate::clock::now_secs;
use crate::store::{Connection, ConnectionStore, ExpiredPage, StoreError};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ReturnValue, ReturnValuesOnConditionCheckFailure,
    ScalarAttributeType, TimeToLiveSpecification,
};
use futures_util::future::try_join_all;
use std::collections::HashMap;

type Item = HashMap<String, AttributeValue>;

/// The name of the user GSI.
pub const USER_INDEX: &str = "userId-index";
/// The name of the tenant GSI.
pub const TENANT_INDEX: &str = "tenantId-index";

/// Connection records in a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: super::deferred::ClientCell<Client>,
    table: String,
    scan_segments: i32,
    page_size: Option<i32>,
    /// The rate window this process last counted for each connection: which conditional
    /// write to try first (see `count`). A hint only; bounded by [`WINDOW_HINTS`].
    windows: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
}

/// Most connections whose last rate window a store remembers; past it the hints start over.
const WINDOW_HINTS: usize = 10_000;

/// Maps any SDK error (with its full cause chain) to a store error with context.
pub(super) fn backend<E: std::error::Error>(
    context: impl std::fmt::Display,
) -> impl FnOnce(E) -> StoreError {
    move |e| {
        StoreError::Backend(format!(
            "{context}: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(e)
        ))
    }
}

/// Whether an `UpdateItem` failed only because its condition did not hold.
fn condition_failed<R>(
    err: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::update_item::UpdateItemError,
        R,
    >,
) -> bool {
    matches!(
        err.as_service_error(),
        Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(_))
    )
}

pub(super) fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

pub(super) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn to_item(c: &Connection) -> Item {
    let mut item = Item::new();
    item.insert("connectionId".into(), s(&c.connection_id));
    item.insert(
        "authenticated".into(),
        AttributeValue::Bool(c.authenticated),
    );
    if let Some(v) = &c.user_id {
        item.insert("userId".into(), s(v));
    }
    if let Some(v) = &c.tenant_id {
        item.insert("tenantId".into(), s(v));
    }
    if let Some(v) = &c.email {
        item.insert("email".into(), s(v));
    }
    if !c.claims.is_empty() {
        item.insert("claims".into(), claims_to_attribute(&c.claims));
    }
    item.insert("connectedAt".into(), n(c.connected_at));
    item.insert("ttl".into(), n(c.ttl));
    item
}

/// JSON → DynamoDB attribute: strings `S`, numbers `N`, booleans `BOOL`, null `NULL`,
/// arrays `L`, objects `M` (kept claims are stored verbatim as a map).
pub(super) fn to_attribute(value: &serde_json::Value) -> AttributeValue {
    use serde_json::Value;
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(to_attribute).collect()),
        Value::Object(map) => AttributeValue::M(
            map.iter()
                .map(|(k, v)| (k.clone(), to_attribute(v)))
                .collect(),
        ),
    }
}

/// DynamoDB attribute → JSON (the inverse of [`to_attribute`]; other types become null).
pub(super) fn from_attribute(value: &AttributeValue) -> serde_json::Value {
    use serde_json::Value;
    match value {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(n) => serde_json::from_str::<serde_json::Number>(n)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::L(items) => Value::Array(items.iter().map(from_attribute).collect()),
        AttributeValue::M(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), from_attribute(v)))
                .collect(),
        ),
        _ => Value::Null,
    }
}

fn claims_to_attribute(claims: &Claims) -> AttributeValue {
    AttributeValue::M(
        claims
            .as_map()
            .iter()
            .map(|(k, v)| (k.clone(), to_attribute(v)))
            .collect(),
    )
}

fn from_item(item: &Item) -> Result<Connection, StoreError> {
    let text = |key: &str| match item.get(key) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    };
    let number = |key: &str| match item.get(key) {
        Some(AttributeValue::N(v)) => v.parse::<i64>().ok(),
        _ => None,
    };
    let connection_id = text("connectionId")
        .ok_or_else(|| StoreError::Backend("record without connectionId".into()))?;
    Ok(Connection {
        authenticated: matches!(item.get("authenticated"), Some(AttributeValue::Bool(true))),
        user_id: text("userId"),
        tenant_id: text("tenantId"),
        email: text("email"),
        claims: match item.get("claims") {
            Some(attribute @ AttributeValue::M(_)) => match from_attribute(attribute) {
                serde_json::Value::Object(map) => Claims::new(map),
                _ => Claims::default(),
            },
            _ => Claims::default(),
        },
        connected_at: number("connectedAt").unwrap_or(0),
        // A row without a readable ttl is treated as expired.
        ttl: number("ttl").unwrap_or(0),
        connection_id,
    })
}

impl DynamoStore {
    /// Counts a message in its rate window; with `whole`, the same call returns the record
    /// after the count (`ALL_NEW`), saving the guard its `GetItem`.
    async fn count(
        &self,
        connection_id: &str,
        window_start_ms: i64,
        whole: bool,
    ) -> Result<Option<(u32, Option<Connection>)>, StoreError> {
        let returned = if whole {
            ReturnValue::AllNew
        } else {
            ReturnValue::UpdatedNew
        };
        // Same window: one atomic increment. New window: reset. Which to try first comes
        // from the window this process last counted for the connection: a message after a
        // quiet spell (most chat traffic, with a two-second window) starts with the reset,
        // a burst with the increment, so either takes one request. A wrong guess (another
        // instance counted in between) costs a second request, never a wrong count: each
        // write is conditional on the window it expects.
        let same_first = self.last_window(connection_id) == Some(window_start_ms);
        let client = self.client().await;
        // Both writes share everything but their condition and their update.
        let write = |condition: &'static str, update: &'static str| {
            client
                .update_item()
                .table_name(&self.table)
                .key("connectionId", s(connection_id))
                .condition_expression(condition)
                .update_expression(update)
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":now", n(now_secs()))
                .expression_attribute_values(":w", n(window_start_ms))
                .expression_attribute_values(":one", n(1))
                .return_values(returned.clone())
        };
        let add = write(
            "attribute_exists(connectionId) AND #ttl > :now AND rateWindow = :w",
            "ADD rateCount :one",
        );
        let reset = write(
            "attribute_exists(connectionId) AND #ttl > :now AND (attribute_not_exists(rateWindow) OR rateWindow <> :w)",
            "SET rateWindow = :w, rateCount = :one",
        );
        let (first, second) = if same_first {
            (add, reset)
        } else {
            (reset, add)
        };
        let output = match first.send().await {
            Ok(output) => output,
            Err(err) if condition_failed(&err) => match second.send().await {
                Ok(output) => output,
                // Neither window matched: no live record.
                Err(err) if condition_failed(&err) => {
                    self.forget_window(connection_id);
                    return Ok(None);
                }
                Err(err) => return Err(backend("count message")(err)),
            },
            Err(err) => return Err(backend("count message")(err)),
        };
        self.remember_window(connection_id, window_start_ms);
        let count = counter(output.attributes(), "rateCount");
        let record = match (whole, output.attributes()) {
            (true, Some(item)) => Some(from_item(item)?),
            _ => None,
        };
        Ok(Some((count, record)))
    }
    /// A store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self::with_client(super::deferred::ClientCell::Ready(client), table.into())
    }

    /// A store on `table` whose client is built on first use, once `sdk` has loaded (the
    /// Lambda bootstrap's way to keep the SDK's load off the cold start).
    pub fn deferred(sdk: super::SdkLoader, table: impl Into<String>) -> Self {
        Self::with_client(
            super::deferred::ClientCell::deferred(sdk, |sdk| {
                Client::new(&super::framework_config(sdk))
            }),
            table.into(),
        )
    }

    fn with_client(client: super::deferred::ClientCell<Client>, table: String) -> Self {
        DynamoStore {
            client,
            table,
            scan_segments: 1,
            page_size: None,
            windows: Default::default(),
        }
    }

    fn last_window(&self, connection_id: &str) -> Option<i64> {
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows.get(connection_id).copied()
    }

    fn remember_window(&self, connection_id: &str, window_start_ms: i64) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(window) = windows.get_mut(connection_id) {
            *window = window_start_ms;
            return;
        }
        if windows.len() >= WINDOW_HINTS {
            windows.clear();
        }
        windows.insert(connection_id.to_owned(), window_start_ms);
    }

    fn forget_window(&self, connection_id: &str) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows.remove(connection_id);
    }

    /// Scans (broadcast, sweeper) with `segments` parallel segments (1 = sequential).
    pub fn with_scan_segments(mut self, segments: u32) -> Self {
        self.scan_segments = segments.clamp(1, 64) as i32;
        self
    }

    /// Caps the items DynamoDB evaluates per query/scan page (`Limit`); by default pages
    /// are DynamoDB's 1 MB. Mostly useful to exercise pagination.
    pub fn with_page_size(mut self, items: u32) -> Self {
        self.page_size = Some(items.clamp(1, 10_000) as i32);
        self
    }

    async fn client(&self) -> &Client {
        self.client.get().await
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    async fn query_index(
        &self,
        index: &str,
        key: &str,
        value: &str,
    ) -> Result<Vec<Connection>, StoreError> {
        let request = self
            .client()
            .await
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#k = :v")
            .filter_expression("#ttl > :now")
            .expression_attribute_names("#k", key)
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":v", s(value))
            .expression_attribute_values(":now", n(now_secs()))
            .set_limit(self.page_size);
        query_all(request, index)
            .await?
            .iter()
            .map(from_item)
            .collect()
    }

    /// Scans the table with `filter` (over `#ttl` and `:now`), in parallel segments.
    async fn scan(&self, filter: &'static str) -> Result<Vec<Connection>, StoreError> {
        let now = now_secs();
        let total = self.scan_segments;
        let segments = (0..total).map(|segment| async move {
            let mut found = Vec::new();
            let mut start: Option<Item> = None;
            loop {
                let mut request = self
                    .client()
                    .await
                    .scan()
                    .table_name(&self.table)
                    .filter_expression(filter)
                    .expression_attribute_names("#ttl", "ttl")
                    .expression_attribute_values(":now", n(now))
                    .set_exclusive_start_key(start.take())
                    .set_limit(self.page_size);
                if total > 1 {
                    request = request.segment(segment).total_segments(total);
                }
                let page = request.send().await.map_err(backend("scan"))?;
                for item in page.items() {
                    found.push(from_item(item)?);
                }
                match page.last_evaluated_key() {
                    Some(key) if !key.is_empty() => start = Some(key.clone()),
                    _ => break,
                }
            }
            Ok::<_, StoreError>(found)
        });
        Ok(try_join_all(segments)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }
}

/// A scan page's records and the connection id the next page starts after.
fn page_of(items: &[Item], last: Option<&Item>) -> Result<ExpiredPage, StoreError> {
    let records = items.iter().map(from_item).collect::<Result<Vec<_>, _>>()?;
    let next = match last.and_then(|k| k.get("connectionId")) {
        Some(AttributeValue::S(id)) => Some(id.clone()),
        _ => None,
    };
    Ok(ExpiredPage::new(records, next))
}

#[async_trait::async_trait]
impl ConnectionStore for DynamoStore {
    async fn save(&self, connection: &Connection) -> Result<(), StoreError> {
        self.client()
            .await
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(connection)))
            .send()
            .await
            .map_err(backend("put"))?;
        Ok(())
    }

    async fn authenticate(
        &self,
        connection_id: &str,
        identity: &Identity,
        ttl: i64,
    ) -> Result<Connection, StoreError> {
        let mut set = vec!["authenticated = :true", "userId = :uid", "#ttl = :ttl"];
        let mut remove = Vec::new();
        let mut request = self
            .client().await
            .update_item()
            .table_name(&self.table)
            .key("connectionId", s(connection_id))
            .condition_expression(
                "attribute_exists(connectionId) AND #ttl > :now AND (authenticated = :false OR userId = :uid)",
            )
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":uid", s(&identity.user_id))
            .expression_attribute_values(":ttl", n(ttl))
            .expression_attribute_values(":now", n(now_secs()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match &identity.tenant_id {
            Some(t) => {
                set.push("tenantId = :tenant");
                request = request.expression_attribute_values(":tenant", s(t));
            }
            None => remove.push("tenantId"),
        }
        match &identity.email {
            Some(e) => {
                set.push("email = :email");
                request = request.expression_attribute_values(":email", s(e));
            }
            None => remove.push("email"),
        }
        if identity.claims.is_empty() {
            remove.push("claims");
        } else {
            set.push("claims = :claims");
            request = request
                .expression_attribute_values(":claims", claims_to_attribute(&identity.claims));
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        match request.update_expression(expression).send().await {
            Ok(output) => match output.attributes() {
                Some(item) => from_item(item),
                None => Err(StoreError::Backend("update returned no attributes".into())),
            },
            Err(err) => {
                use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
                if let Some(UpdateItemError::ConditionalCheckFailedException(failed)) =
                    err.as_service_error()
                {
                    // Tell "gone or expired" from "someone else's connection".
                    let old = failed.item().map(from_item).transpose()?;
                    return Err(match old {
                        Some(row) if row.is_live(now_secs()) && row.authenticated => {
                            StoreError::OtherUser
                        }
                        _ => StoreError::NotFound,
                    });
                }
                Err(backend("update")(err))
            }
        }
    }

    async fn remove(&self, connection_id: &str) -> Result<Option<Connection>, StoreError> {
        let output = self
            .client()
            .await
            .delete_item()
            .table_name(&self.table)
            .key("connectionId", s(connection_id))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(backend("delete"))?;
        output.attributes().map(from_item).transpose()
    }

    async fn get(&self, connection_id: &str) -> Result<Option<Connection>, StoreError> {
        let output = self
            .client()
            .await
            .get_item()
            .table_name(&self.table)
            .key("connectionId", s(connection_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend("get"))?;
        let now = now_secs();
        match output.item() {
            Some(item) => Ok(Some(from_item(item)?).filter(|c| c.is_live(now))),
            None => Ok(None),
        }
    }

    async fn get_by_user(&self, user_id: &str) -> Result<Vec<Connection>, StoreError> {
        self.query_index(USER_INDEX, "userId", user_id).await
    }

    async fn get_by_tenant(&self, tenant_id: &str) -> Result<Vec<Connection>, StoreError> {
        self.query_index(TENANT_INDEX, "tenantId", tenant_id).await
    }

    async fn list(&self) -> Result<Vec<Connection>, StoreError> {
        self.scan("#ttl > :now").await
    }

    async fn list_expired(&self) -> Result<Vec<Connection>, StoreError> {
        self.scan("#ttl <= :now").await
    }

    async fn scan_page(
        &self,
        segment: u32,
        segments: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ExpiredPage, StoreError> {
        let start = after.map(|id| HashMap::from([("connectionId".to_owned(), s(id))]));
        let mut request = self
            .client()
            .await
            .scan()
            .table_name(&self.table)
            .filter_expression("#ttl > :now")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", n(now_secs()))
            .set_exclusive_start_key(start)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX));
        if segments > 1 {
            let total = i32::try_from(segments).unwrap_or(i32::MAX);
            request = request
                .segment(i32::try_from(segment).unwrap_or(0))
                .total_segments(total);
        }
        let page = request.send().await.map_err(backend("scan segment"))?;
        page_of(page.items(), page.last_evaluated_key())
    }

    async fn expired_page(
        &self,
        after: Option<&str>,
        limit: usize,
        now_secs: i64,
    ) -> Result<ExpiredPage, StoreError> {
        let start = after.map(|id| HashMap::from([("connectionId".to_owned(), s(id))]));
        let page = self
            .client()
            .await
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .filter_expression("#ttl <= :now")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", n(now_secs))
            .set_exclusive_start_key(start)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(backend("scan expired"))?;
        page_of(page.items(), page.last_evaluated_key())
    }

    async fn remove_expired(
        &self,
        connection_id: &str,
        now_secs: i64,
    ) -> Result<Option<Connection>, StoreError> {
        use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
        let result = self
            .client()
            .await
            .delete_item()
            .table_name(&self.table)
            .key("connectionId", s(connection_id))
            .condition_expression("#ttl <= :now")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", n(now_secs))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => output.attributes().map(from_item).transpose(),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(DeleteItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(None)
            }
            Err(err) => Err(backend("delete expired")(err)),
        }
    }

    async fn count_message(
        &self,
        connection_id: &str,
        window_start_ms: i64,
    ) -> Result<Option<u32>, StoreError> {
        Ok(self
            .count(connection_id, window_start_ms, false)
            .await?
            .map(|(count, _)| count))
    }

    async fn count_message_and_get(
        &self,
        connection_id: &str,
        window_start_ms: i64,
    ) -> Result<Option<(u32, Option<Connection>)>, StoreError> {
        self.count(connection_id, window_start_ms, true).await
    }

    async fn count_auth_failure(&self, connection_id: &str) -> Result<Option<u32>, StoreError> {
        let result = self
            .client()
            .await
            .update_item()
            .table_name(&self.table)
            .key("connectionId", s(connection_id))
            .condition_expression("attribute_exists(connectionId) AND #ttl > :now")
            .update_expression("ADD authFailures :one")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", n(now_secs()))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Some(counter(output.attributes(), "authFailures"))),
            Err(err) if condition_failed(&err) => Ok(None),
            Err(err) => Err(backend("count auth failure")(err)),
        }
    }
}

fn counter(attributes: Option<&Item>, name: &str) -> u32 {
    match attributes.and_then(|a| a.get(name)) {
        Some(AttributeValue::N(v)) => v.parse().unwrap_or(u32::MAX),
        _ => 1,
    }
}

/// Creates the connections table (on-demand, both GSIs, TTL on `ttl`): for local
/// development and tests. Production tables come from the deployment template.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    let index = |name: &str, key_name: &str| -> Result<GlobalSecondaryIndex, StoreError> {
        all_projection_index(name, key_name)
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute("connectionId")?)
        .attribute_definitions(string_attribute("userId")?)
        .attribute_definitions(string_attribute("tenantId")?)
        .key_schema(key_element("connectionId", KeyType::Hash)?)
        .global_secondary_indexes(index(USER_INDEX, "userId")?)
        .global_secondary_indexes(index(TENANT_INDEX, "tenantId")?)
        .send()
        .await
        .map_err(backend("create table"))?;
    enable_ttl(client, table).await
}

/// Every item a Query returns, page after page.
pub(super) async fn query_all(
    request: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    context: &str,
) -> Result<Vec<Item>, StoreError> {
    let mut found = Vec::new();
    let mut request = Some(request);
    while let Some(next) = request.take() {
        // The builder is kept for a next page only when there is one.
        let page = next
            .clone()
            .send()
            .await
            .map_err(|e| backend(format!("query {context}"))(e))?;
        let start = page
            .last_evaluated_key()
            .filter(|key| !key.is_empty())
            .cloned();
        found.extend(page.items.unwrap_or_default());
        request = start.map(|key| next.set_exclusive_start_key(Some(key)));
    }
    Ok(found)
}

/// A string (S) attribute definition.
pub(super) fn string_attribute(name: &str) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(backend("attribute definition"))
}

/// A key schema element.
pub(super) fn key_element(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(backend("key schema"))
}

/// A GSI on `key_name` projecting every attribute.
pub(super) fn all_projection_index(
    name: &str,
    key_name: &str,
) -> Result<GlobalSecondaryIndex, StoreError> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key_element(key_name, KeyType::Hash)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(backend("index"))
}

/// Turns on TTL over the `ttl` attribute.
pub(super) async fn enable_ttl(client: &Client, table: &str) -> Result<(), StoreError> {
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("ttl")
                .enabled(true)
                .build()
                .map_err(backend("ttl specification"))?,
        )
        .send()
        .await
        .map_err(backend("enable TTL"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_with_exact_types() {
        let c = Connection {
            connection_id: "abc=".into(),
            authenticated: true,
            user_id: Some("alice".into()),
            tenant_id: Some("acme".into()),
            email: Some("a@example.com".into()),
            claims: Claims::new(
                serde_json::json!({"roles": ["admin", "ops"], "scope": "a b", "plan": {"seats": 5, "trial": false, "note": null}})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            connected_at: 1_700_000_000_123,
            ttl: 1_700_007_200,
        };
        let item = to_item(&c);
        assert_eq!(item["connectionId"], AttributeValue::S("abc=".into()));
        assert_eq!(item["authenticated"], AttributeValue::Bool(true));
        assert_eq!(
            item["connectedAt"],
            AttributeValue::N("1700000000123".into())
        );
        assert_eq!(item["ttl"], AttributeValue::N("1700007200".into()));
        assert_eq!(from_item(&item).unwrap(), c);
        let bare = to_item(&Connection::unauthenticated("x", 1, 2));
        assert_eq!(bare.len(), 4, "absent attributes are omitted, not null");
    }
}
