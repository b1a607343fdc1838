//! The chat's history store: the app state its `broadcast` and `history` actions share.
//!
//! On Lambda the history lives in a DynamoDB table (`CHAT_HISTORY_TABLE`; partition key
//! `scope` = the tenant or `-`, sort key `at` = the time), because warm Lambda instances do
//! not share memory. The local server keeps it in memory.

use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use venturekit_ws::WsError;

/// How many messages `history` returns, and the memory store keeps per scope.
pub const HISTORY_LEN: usize = 50;
/// How long the DynamoDB store keeps a message (its `ttl`), seconds.
pub const HISTORY_TTL_SECS: i64 = 7 * 24 * 3600;

/// One recorded broadcast.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "contract", derive(schemars::JsonSchema))]
pub struct Entry {
    /// The sender's user id.
    pub from: String,
    /// What was broadcast.
    pub data: Value,
    /// When, epoch milliseconds.
    pub at: i64,
}

/// Where history is kept.
#[async_trait::async_trait]
pub trait HistoryStore: Send + Sync + 'static {
    /// Records a broadcast in `scope`.
    async fn record(&self, scope: &str, entry: Entry) -> Result<(), WsError>;
    /// The last `n` broadcasts of `scope`, oldest first.
    async fn last(&self, scope: &str, n: usize) -> Result<Vec<Entry>, WsError>;
}

/// The chat's history: the app state handed to its actions.
#[derive(Clone)]
pub struct History(Arc<dyn HistoryStore>);

impl History {
    /// History in `store`.
    pub fn new(store: impl HistoryStore) -> Self {
        History(Arc::new(store))
    }

    /// DynamoDB when `CHAT_HISTORY_TABLE` is set; memory otherwise, except on Lambda, where
    /// memory would be per instance: there the table is required.
    pub fn from_env() -> Result<Self, venturekit_ws::Error> {
        let table = std::env::var("CHAT_HISTORY_TABLE")
            .ok()
            .filter(|t| !t.is_empty());
        let on_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some_and(|v| !v.is_empty());
        match table {
            Some(table) => Ok(History::new(DynamoHistory::new(table))),
            None if on_lambda => Err(venturekit_ws::Error::Config(
                "CHAT_HISTORY_TABLE is required on Lambda: warm instances do not share memory"
                    .into(),
            )),
            None => Ok(History::new(MemoryHistory::default())),
        }
    }

    /// Records a broadcast in `scope`.
    pub async fn record(&self, scope: &str, entry: Entry) -> Result<(), WsError> {
        self.0.record(scope, entry).await
    }

    /// The last [`HISTORY_LEN`] broadcasts of `scope`, oldest first.
    pub async fn last(&self, scope: &str) -> Result<Vec<Entry>, WsError> {
        self.0.last(scope, HISTORY_LEN).await
    }
}

/// History in memory (the local server, tests).
#[derive(Default)]
pub struct MemoryHistory {
    scopes: Mutex<HashMap<String, VecDeque<Entry>>>,
}

#[async_trait::async_trait]
impl HistoryStore for MemoryHistory {
    async fn record(&self, scope: &str, entry: Entry) -> Result<(), WsError> {
        let mut scopes = self
            .scopes
            .lock()
            .map_err(|_| WsError::internal("poisoned"))?;
        let list = scopes.entry(scope.to_owned()).or_default();
        list.push_back(entry);
        while list.len() > HISTORY_LEN {
            list.pop_front();
        }
        Ok(())
    }

    async fn last(&self, scope: &str, n: usize) -> Result<Vec<Entry>, WsError> {
        let scopes = self
            .scopes
            .lock()
            .map_err(|_| WsError::internal("poisoned"))?;
        let list = scopes
            .get(scope)
            .map(|l| l.iter().cloned().collect::<Vec<_>>());
        let list = list.unwrap_or_default();
        Ok(list[list.len().saturating_sub(n)..].to_vec())
    }
}

/// History in a DynamoDB table (see the module docs). The client is built on first use.
pub struct DynamoHistory {
    table: String,
    client: tokio::sync::OnceCell<aws_sdk_dynamodb::Client>,
}

impl DynamoHistory {
    /// History in `table`.
    pub fn new(table: impl Into<String>) -> Self {
        DynamoHistory {
            table: table.into(),
            client: tokio::sync::OnceCell::new(),
        }
    }

    async fn client(&self) -> &aws_sdk_dynamodb::Client {
        self.client
            .get_or_init(|| async {
                let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                aws_sdk_dynamodb::Client::new(&sdk)
            })
            .await
    }
}

#[async_trait::async_trait]
impl HistoryStore for DynamoHistory {
    async fn record(&self, scope: &str, entry: Entry) -> Result<(), WsError> {
        use aws_sdk_dynamodb::types::AttributeValue::{N, S};
        // The sort key is the time, made unique by a random suffix.
        let at = format!("{:013}#{:08x}", entry.at, rand_suffix());
        self.client()
            .await
            .put_item()
            .table_name(&self.table)
            .item("scope", S(scope.to_owned()))
            .item("at", S(at))
            .item("from", S(entry.from))
            .item("data", S(entry.data.to_string()))
            .item("ttl", N((entry.at / 1000 + HISTORY_TTL_SECS).to_string()))
            .send()
            .await
            .map_err(|e| WsError::internal(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn last(&self, scope: &str, n: usize) -> Result<Vec<Entry>, WsError> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let out = self
            .client()
            .await
            .query()
            .table_name(&self.table)
            .key_condition_expression("#s = :s")
            .expression_attribute_names("#s", "scope")
            .expression_attribute_values(":s", AttributeValue::S(scope.to_owned()))
            .scan_index_forward(false)
            .limit(i32::try_from(n).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| WsError::internal(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        let mut entries: Vec<Entry> = out
            .items()
            .iter()
            .filter_map(|item| {
                let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                let at = text("at")?.split('#').next()?.parse().ok()?;
                Some(Entry {
                    from: text("from")?,
                    data: serde_json::from_str(&text("data")?).ok()?,
                    at,
                })
            })
            .collect();
        entries.reverse();
        Ok(entries)
    }
}

/// Creates a history table (partition key `scope`, sort key `at`, on demand, TTL on `ttl`):
/// for development and tests; deployed tables come from your infrastructure.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), WsError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        TimeToLiveSpecification,
    };
    let internal = |e: &dyn std::fmt::Display| WsError::internal(e.to_string());
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("scope").map_err(|e| internal(&e))?)
        .attribute_definitions(attribute("at").map_err(|e| internal(&e))?)
        .key_schema(key("scope", KeyType::Hash).map_err(|e| internal(&e))?)
        .key_schema(key("at", KeyType::Range).map_err(|e| internal(&e))?)
        .send()
        .await
        .map_err(|e| internal(&aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("ttl")
                .build()
                .map_err(|e| internal(&e))?,
        )
        .send()
        .await
        .map_err(|e| internal(&aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
    Ok(())
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish() as u32
}
