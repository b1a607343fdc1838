//! Topic memberships in DynamoDB (`VK_WS_TOPICS_TABLE`).
//!
//! Partition key `topic` = `"{tenantId or -}#{topic name}"`, sort key `connectionId`;
//! attributes `userId`, `meta` (map), `joinedAt` (ms), `ttl` (the connection's); GSI
//! `connectionId-index` for cleanup. Publishing reads the base table with a paginated,
//! strongly consistent Query, so a join followed at once by a publish reaches the new member;
//! rows whose `ttl` has passed are treated as absent. Cleanup queries the GSI and deletes in
//! batches of 25, retrying unprocessed items.

use super::dynamo::{
    all_projection_index, backend, enable_ttl, from_attribute, key_element, n, query_all, s,
    string_attribute, to_attribute,
};
use crate::store::StoreError;
use crate::topics::{TopicMember, TopicStore};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, BillingMode, DeleteRequest, KeyType, ReturnValue, WriteRequest,
};
use std::collections::HashMap;

type Item = HashMap<String, AttributeValue>;

/// The name of the topics table's cleanup index.
pub const CONNECTION_INDEX: &str = "connectionId-index";

/// Topic memberships in a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoTopics {
    client: super::deferred::ClientCell<Client>,
    table: String,
}

impl DynamoTopics {
    /// Memberships in `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoTopics {
            client: super::deferred::ClientCell::Ready(client),
            table: table.into(),
        }
    }

    /// Memberships in `table`, with a client built on first use once `sdk` has loaded.
    pub fn deferred(sdk: super::SdkLoader, table: impl Into<String>) -> Self {
        DynamoTopics {
            client: super::deferred::ClientCell::deferred(sdk, |sdk| {
                Client::new(&super::framework_config(sdk))
            }),
            table: table.into(),
        }
    }

    async fn client(&self) -> &Client {
        self.client.get().await
    }

    async fn query(
        &self,
        index: Option<&str>,
        key: &str,
        value: &str,
        consistent: bool,
    ) -> Result<Vec<TopicMember>, StoreError> {
        let request = self
            .client()
            .await
            .query()
            .table_name(&self.table)
            .set_index_name(index.map(String::from))
            .consistent_read(consistent)
            .key_condition_expression("#k = :v")
            .expression_attribute_names("#k", key)
            .expression_attribute_values(":v", s(value));
        let items = query_all(request, "topics").await?;
        Ok(items.iter().filter_map(from_item).collect())
    }
}

fn to_item(m: &TopicMember) -> Item {
    let mut item = Item::new();
    item.insert("topic".into(), s(&m.topic));
    item.insert("connectionId".into(), s(&m.connection_id));
    item.insert("userId".into(), s(&m.user_id));
    item.insert(
        "meta".into(),
        to_attribute(&serde_json::Value::Object(m.meta.clone())),
    );
    item.insert("joinedAt".into(), n(m.joined_at));
    item.insert("ttl".into(), n(m.ttl));
    item
}

fn from_item(item: &Item) -> Option<TopicMember> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let number = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
    };
    Some(TopicMember {
        topic: text("topic")?,
        connection_id: text("connectionId")?,
        user_id: text("userId").unwrap_or_default(),
        meta: match item.get("meta").map(from_attribute) {
            Some(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        },
        joined_at: number("joinedAt").unwrap_or(0),
        ttl: number("ttl").unwrap_or(0),
    })
}

#[async_trait::async_trait]
impl TopicStore for DynamoTopics {
    async fn join(&self, member: &TopicMember) -> Result<(), StoreError> {
        self.client()
            .await
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(member)))
            .send()
            .await
            .map_err(backend("join topic"))?;
        Ok(())
    }

    async fn leave(
        &self,
        topic: &str,
        connection_id: &str,
    ) -> Result<Option<TopicMember>, StoreError> {
        let output = self
            .client()
            .await
            .delete_item()
            .table_name(&self.table)
            .key("topic", s(topic))
            .key("connectionId", s(connection_id))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(backend("leave topic"))?;
        Ok(output.attributes().and_then(from_item))
    }

    async fn members(&self, topic: &str, now_secs: i64) -> Result<Vec<TopicMember>, StoreError> {
        let mut members = self.query(None, "topic", topic, true).await?;
        members.retain(|m| m.ttl > now_secs);
        Ok(members)
    }

    async fn topics_of(&self, connection_id: &str) -> Result<Vec<TopicMember>, StoreError> {
        self.query(Some(CONNECTION_INDEX), "connectionId", connection_id, false)
            .await
    }

    async fn remove_connection(&self, connection_id: &str) -> Result<Vec<TopicMember>, StoreError> {
        let memberships = self.topics_of(connection_id).await?;
        for chunk in memberships.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|m| {
                    let key = HashMap::from([
                        ("topic".to_owned(), s(&m.topic)),
                        ("connectionId".to_owned(), s(&m.connection_id)),
                    ]);
                    DeleteRequest::builder()
                        .set_key(Some(key))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(backend("delete request"))
                })
                .collect::<Result<_, _>>()?;
            // Unprocessed items (throttling) are retried a few times with a short backoff.
            for attempt in 0..5u32 {
                if requests.is_empty() {
                    break;
                }
                let output = self
                    .client()
                    .await
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(backend("leave topics"))?;
                requests = output
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if !requests.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
                }
            }
            if !requests.is_empty() {
                return Err(StoreError::Backend(format!(
                    "{} topic memberships could not be deleted",
                    requests.len()
                )));
            }
        }
        Ok(memberships)
    }
}

/// Creates the topics table (keys, `connectionId-index`, TTL on `ttl`, on demand): for
/// development and tests; deployed tables come from the generated template.
pub async fn create_topics_table(client: &Client, table: &str) -> Result<(), StoreError> {
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute("topic")?)
        .attribute_definitions(string_attribute("connectionId")?)
        .key_schema(key_element("topic", KeyType::Hash)?)
        .key_schema(key_element("connectionId", KeyType::Range)?)
        .global_secondary_indexes(all_projection_index(CONNECTION_INDEX, "connectionId")?)
        .send()
        .await
        .map_err(backend("create topics table"))?;
    enable_ttl(client, table).await
}
