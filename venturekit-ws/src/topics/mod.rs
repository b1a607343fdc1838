//! Topics and presence: named groups of connections inside one tenant scope.
//!
//! A topic's stored key is `"{tenantId or -}#{name}"`, so the same name in two tenants can
//! never mix. Names are 1–128 characters from `[A-Za-z0-9._:/-]`; a connection may be in at
//! most 50 topics (`VK_WS_MAX_TOPICS`); presence metadata is a JSON object of at most 1 KB.
//!
//! Clients join with `{"action":"vk:join","topic":"room:42","meta":{…}}` and leave with
//! `{"action":"vk:leave","topic":"room:42"}` — deny by default: the app declares which
//! patterns clients may join ([`TopicRule`]), each with an optional authorizer. Server code
//! joins, leaves, publishes and lists members through [`crate::Ctx::join_topic`],
//! [`crate::Ctx::publish`], [`crate::Ctx::topic_members`] and [`crate::Messenger::publish_in`].
//!
//! Presence (opt-in per rule) groups members by user id with one meta per connection: a
//! joiner receives `vk:presence_state`, every member `vk:presence_diff`; above
//! `max_presence` members (default 100) members get only `vk:presence_count`. A connection
//! removed in any way leaves all its topics and the members hear its leave.

mod memory;

pub use memory::MemoryTopics;

use crate::messaging::{FanoutReport, MessagingError, Messenger, encode};
use crate::store::{Connection, StoreError};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Longest topic name, in characters.
pub const MAX_TOPIC_NAME: usize = 128;
/// Most bytes of presence metadata (a JSON object).
pub const MAX_META_BYTES: usize = 1024;
/// Most leaves one `vk:presence_diff` carries (connections that vanished together leave
/// together); with metas of at most [`MAX_META_BYTES`] a diff stays far under 128 KB.
const LEAVES_PER_DIFF: usize = 50;
/// Default most topics per connection.
pub const DEFAULT_MAX_TOPICS: usize = 50;
/// Default most members for which presence state and diffs are sent.
pub const DEFAULT_MAX_PRESENCE: usize = 100;

/// One connection's membership of a topic (a row of the topics table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicMember {
    /// `"{tenantId or -}#{topic name}"` (partition key).
    pub topic: String,
    /// The member connection (sort key).
    pub connection_id: String,
    /// The member's user id.
    pub user_id: String,
    /// Presence metadata (a JSON object).
    pub meta: Map<String, Value>,
    /// When it joined, epoch ms.
    pub joined_at: i64,
    /// The connection's TTL, epoch seconds: the row is absent once it passes.
    pub ttl: i64,
}

impl TopicMember {
    /// The topic's name (without the tenant scope prefix).
    pub fn name(&self) -> &str {
        self.topic.split_once('#').map_or("", |(_, n)| n)
    }
}

/// The stored key of topic `name` in a tenant scope.
pub fn topic_key(tenant: Option<&str>, name: &str) -> String {
    format!("{}#{name}", tenant.unwrap_or("-"))
}

/// Checks a topic name; the error is client-facing and names the limit.
pub fn check_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_TOPIC_NAME {
        return Err(format!(
            "topic names are 1-{MAX_TOPIC_NAME} characters, got {chars}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'))
    {
        return Err("topic names may use only [A-Za-z0-9._:/-]".into());
    }
    Ok(())
}

/// Where topic memberships live: [`MemoryTopics`] (local server, tests) or the DynamoDB
/// table `VK_WS_TOPICS_TABLE` (`venturekit_ws::aws::DynamoTopics`).
#[async_trait::async_trait]
pub trait TopicStore: Send + Sync + 'static {
    /// Adds (or refreshes) a membership.
    async fn join(&self, member: &TopicMember) -> Result<(), StoreError>;
    /// Removes a membership, returning it as it was (`None`: it was not there).
    async fn leave(
        &self,
        topic: &str,
        connection_id: &str,
    ) -> Result<Option<TopicMember>, StoreError>;
    /// The live members of a topic (strongly consistent: a join followed at once by a
    /// publish reaches the new member).
    async fn members(&self, topic: &str, now_secs: i64) -> Result<Vec<TopicMember>, StoreError>;
    /// The memberships of a connection (expired ones included: for cleanup).
    async fn topics_of(&self, connection_id: &str) -> Result<Vec<TopicMember>, StoreError>;
    /// Removes every membership of a connection, returning them.
    async fn remove_connection(&self, connection_id: &str) -> Result<Vec<TopicMember>, StoreError>;
}

/// Who may join a topic from the client side: decides a `vk:join`.
pub type TopicAuthorizer = dyn Fn(&Connection, &str) -> bool + Send + Sync;

/// A declared topic pattern clients may join (`room:*`, or an exact name), with presence
/// on or off and an optional authorizer.
#[derive(Clone)]
pub struct TopicRule {
    pattern: String,
    presence: bool,
    max_presence: usize,
    authorize: Option<Arc<TopicAuthorizer>>,
}

impl std::fmt::Debug for TopicRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicRule")
            .field("pattern", &self.pattern)
            .field("presence", &self.presence)
            .field("max_presence", &self.max_presence)
            .finish_non_exhaustive()
    }
}

impl TopicRule {
    /// Clients may join topics matching `pattern`: an exact name, or a prefix ending in `*`
    /// (`room:*`).
    pub fn new(pattern: &str) -> Self {
        TopicRule {
            pattern: pattern.to_owned(),
            presence: false,
            max_presence: DEFAULT_MAX_PRESENCE,
            authorize: None,
        }
    }

    /// Turns presence on for these topics.
    pub fn presence(mut self) -> Self {
        self.presence = true;
        self
    }

    /// Above this many members, members get `vk:presence_count` instead of state and diffs.
    pub fn max_presence(mut self, members: usize) -> Self {
        self.max_presence = members;
        self
    }

    /// Decides each client-side join: `false` is `forbidden`.
    pub fn authorize(
        mut self,
        check: impl Fn(&Connection, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.authorize = Some(Arc::new(check));
        self
    }

    /// Whether `record` may join `name` from the client side.
    pub(crate) fn allows(&self, record: &Connection, name: &str) -> bool {
        self.authorize
            .as_ref()
            .is_none_or(|check| check(record, name))
    }

    /// Whether `name` matches the pattern.
    pub fn matches(&self, name: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == self.pattern,
        }
    }
}

/// The topic machinery of an app: the store, the declared rules and the limits.
#[derive(Clone)]
pub struct Topics {
    pub(crate) store: Arc<dyn TopicStore>,
    pub(crate) rules: Vec<TopicRule>,
    pub(crate) max_per_connection: usize,
}

impl std::fmt::Debug for Topics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topics")
            .field("rules", &self.rules)
            .field("max_per_connection", &self.max_per_connection)
            .finish_non_exhaustive()
    }
}

/// Why a join was refused.
#[derive(Debug)]
pub(crate) enum JoinError {
    /// Over a limit or ill-formed: `bad_request`.
    BadRequest(String),
    /// Not allowed: `forbidden`.
    Forbidden(String),
    /// The store failed.
    Store(StoreError),
}

impl From<JoinError> for crate::WsError {
    fn from(e: JoinError) -> Self {
        match e {
            JoinError::BadRequest(m) => crate::WsError::bad_request(m),
            JoinError::Forbidden(m) => crate::WsError::forbidden(m),
            JoinError::Store(e) => crate::WsError::internal(e),
        }
    }
}

impl Topics {
    pub(crate) fn new(store: Arc<dyn TopicStore>, rules: Vec<TopicRule>, max: usize) -> Self {
        Topics {
            store,
            rules,
            max_per_connection: max,
        }
    }

    pub(crate) fn rule_for(&self, name: &str) -> Option<&TopicRule> {
        self.rules.iter().find(|r| r.matches(name))
    }

    fn presence_for(&self, name: &str) -> Option<usize> {
        self.rule_for(name)
            .filter(|r| r.presence)
            .map(|r| r.max_presence)
    }

    /// Checks a join against the limits: the name, the meta size, the number of topics.
    pub(crate) async fn check_join(
        &self,
        record: &Connection,
        name: &str,
        meta: &Map<String, Value>,
    ) -> Result<(), JoinError> {
        check_name(name).map_err(JoinError::BadRequest)?;
        let meta_len = serde_json::to_string(meta).map_or(usize::MAX, |s| s.len());
        if meta_len > MAX_META_BYTES {
            return Err(JoinError::BadRequest(format!(
                "`meta` is {meta_len} bytes; the limit is {MAX_META_BYTES}"
            )));
        }
        if !record.authenticated || record.user_id.is_none() {
            return Err(JoinError::Forbidden("join topics after `auth`".into()));
        }
        let key = topic_key(record.tenant_id.as_deref(), name);
        let mine = self
            .store
            .topics_of(&record.connection_id)
            .await
            .map_err(JoinError::Store)?;
        let already = mine.iter().any(|m| m.topic == key);
        if !already && mine.len() >= self.max_per_connection {
            return Err(JoinError::BadRequest(format!(
                "a connection may be in at most {} topics",
                self.max_per_connection
            )));
        }
        Ok(())
    }

    /// Joins `record` to topic `name` of its scope (checked with [`Topics::check_join`]):
    /// stores the membership and returns it, for [`Topics::announce_joined`]. Anything that
    /// tells the joiner it has joined comes after this: from then on a publish reaches it.
    pub(crate) async fn add(
        &self,
        record: &Connection,
        name: &str,
        meta: Map<String, Value>,
        now_ms: i64,
    ) -> Result<TopicMember, JoinError> {
        let member = TopicMember {
            topic: topic_key(record.tenant_id.as_deref(), name),
            connection_id: record.connection_id.clone(),
            user_id: record.user_id.clone().unwrap_or_default(),
            meta,
            joined_at: now_ms,
            ttl: record.ttl,
        };
        self.store.join(&member).await.map_err(JoinError::Store)?;
        Ok(member)
    }

    /// Sends the presence frames a join (by [`Topics::add`]) triggers, when the topic has
    /// presence: the state to the joiner, the diff (or the count) to every member.
    pub(crate) async fn announce_joined(
        &self,
        messenger: &Messenger,
        member: &TopicMember,
    ) -> Result<(), StoreError> {
        let name = member.name();
        if let Some(max) = self.presence_for(name) {
            let members = self
                .store
                .members(&member.topic, member.joined_at / 1000)
                .await?;
            self.announce_join(messenger, name, member, &members, max)
                .await;
        }
        Ok(())
    }

    /// Removes `connection_id` from topic `name` of `tenant`'s scope; members hear the leave.
    pub(crate) async fn leave(
        &self,
        messenger: &Messenger,
        tenant: Option<&str>,
        connection_id: &str,
        name: &str,
        now_secs: i64,
    ) -> Result<bool, StoreError> {
        let key = topic_key(tenant, name);
        match self.store.leave(&key, connection_id).await? {
            Some(member) => {
                self.announce_leaves(messenger, std::slice::from_ref(&member), now_secs)
                    .await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Removed connections leave every topic; presence members hear it (a synthetic leave
    /// when the socket just vanished). Connections removed together (found gone by the same
    /// send) leave together: one read of each topic's members, one notice for all of them.
    pub(crate) async fn connections_removed(
        &self,
        messenger: &Messenger,
        connection_ids: &[&str],
        now_secs: i64,
    ) {
        let mut left_by_topic: std::collections::BTreeMap<String, Vec<TopicMember>> =
            std::collections::BTreeMap::new();
        for &connection_id in connection_ids {
            match self.store.remove_connection(connection_id).await {
                Ok(left) => {
                    for member in left {
                        left_by_topic
                            .entry(member.topic.clone())
                            .or_default()
                            .push(member);
                    }
                }
                Err(e) => {
                    tracing::warn!(%connection_id, error = %e, "leaving the topics of a removed connection failed")
                }
            }
        }
        for left in left_by_topic.values() {
            self.announce_leaves(messenger, left, now_secs).await;
        }
    }

    async fn announce_join(
        &self,
        messenger: &Messenger,
        name: &str,
        joined: &TopicMember,
        members: &[TopicMember],
        max: usize,
    ) {
        if members.len() > max {
            let frame =
                json!({"action": "vk:presence_count", "topic": name, "count": members.len()});
            self.send_to_members(messenger, members, &frame).await;
            return;
        }
        let state =
            json!({"action": "vk:presence_state", "topic": name, "presences": presences(members)});
        if let Err(e) = messenger
            .post_to_connection(&joined.connection_id, &state)
            .await
        {
            tracing::debug!(error = %e, "posting presence state failed");
        }
        let diff = json!({
            "action": "vk:presence_diff", "topic": name,
            "joins": presences(std::slice::from_ref(joined)), "leaves": {}
        });
        self.send_to_members(messenger, members, &diff).await;
    }

    /// Tells the members of one topic that `left` (members of that topic) left: the count
    /// when the topic is over its presence limit, otherwise diffs of at most
    /// [`LEAVES_PER_DIFF`] leaves each.
    async fn announce_leaves(&self, messenger: &Messenger, left: &[TopicMember], now_secs: i64) {
        let Some(first) = left.first() else {
            return;
        };
        let name = first.name().to_owned();
        let Some(max) = self.presence_for(&name) else {
            return;
        };
        let members = match self.store.members(&first.topic, now_secs).await {
            Ok(members) => members,
            Err(e) => {
                tracing::warn!(error = %e, "reading members for a leave failed");
                return;
            }
        };
        if members.len() > max {
            let frame =
                json!({"action": "vk:presence_count", "topic": name, "count": members.len()});
            return self.send_to_members(messenger, &members, &frame).await;
        }
        for leaves in left.chunks(LEAVES_PER_DIFF) {
            let frame = json!({
                "action": "vk:presence_diff", "topic": name,
                "joins": {}, "leaves": presences(leaves)
            });
            self.send_to_members(messenger, &members, &frame).await;
        }
    }

    async fn send_to_members(&self, messenger: &Messenger, members: &[TopicMember], frame: &Value) {
        if let Ok(text) = encode(frame) {
            let ids: Vec<String> = members.iter().map(|m| m.connection_id.clone()).collect();
            messenger.fan_out_ids(ids, &text).await;
        }
    }

    /// Publishes `message` to every live member of `name` in `tenant`'s scope. With
    /// `member`, only if that connection is one of them (`None` otherwise): the same read of
    /// the members decides and delivers.
    pub(crate) async fn publish<T: Serialize + ?Sized>(
        &self,
        messenger: &Messenger,
        tenant: Option<&str>,
        name: &str,
        message: &T,
        member: Option<&str>,
        now_secs: i64,
    ) -> Result<Option<FanoutReport>, MessagingError> {
        let text = encode(message)?;
        let key = topic_key(tenant, name);
        let members = self.store.members(&key, now_secs).await?;
        if let Some(id) = member
            && !members.iter().any(|m| m.connection_id == id)
        {
            return Ok(None);
        }
        let ids = members.into_iter().map(|m| m.connection_id).collect();
        Ok(Some(messenger.fan_out_or_spill(ids, &text).await))
    }
}

/// Members grouped by user: `{"alice":{"metas":[{"connectionId":…,"joinedAt":…,…meta}]}}`.
pub fn presences(members: &[TopicMember]) -> Value {
    let mut by_user = Map::new();
    for m in members {
        let mut meta = Map::new();
        meta.insert(
            "connectionId".into(),
            Value::String(m.connection_id.clone()),
        );
        meta.insert("joinedAt".into(), Value::from(m.joined_at));
        for (k, v) in &m.meta {
            if k != "connectionId" && k != "joinedAt" {
                meta.insert(k.clone(), v.clone());
            }
        }
        let entry = by_user
            .entry(m.user_id.clone())
            .or_insert_with(|| json!({"metas": []}));
        if let Some(metas) = entry["metas"].as_array_mut() {
            metas.push(Value::Object(meta));
        }
    }
    Value::Object(by_user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_patterns_and_keys() {
        assert!(check_name("room:42").is_ok());
        assert!(check_name("a/b.c_d-e:f").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("has#hash").is_err());
        assert!(check_name("sp ace").is_err());
        assert!(check_name(&"x".repeat(129)).unwrap_err().contains("1-128"));
        assert!(check_name(&"x".repeat(128)).is_ok());
        let rule = TopicRule::new("room:*");
        assert!(rule.matches("room:42") && !rule.matches("rooms") && !rule.matches("lobby"));
        assert!(TopicRule::new("lobby").matches("lobby"));
        assert_eq!(topic_key(Some("acme"), "room:1"), "acme#room:1");
        assert_eq!(topic_key(None, "room:1"), "-#room:1");
    }
}
