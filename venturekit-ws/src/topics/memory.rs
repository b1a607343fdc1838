//! Topic memberships in memory (the local server, tests).

use super::{TopicMember, TopicStore};
use crate::store::StoreError;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// A [`TopicStore`] in a map keyed by (topic, connection id). Like DynamoDB it never
/// deletes expired rows by itself; reads hide them.
#[derive(Debug, Default)]
pub struct MemoryTopics {
    rows: Mutex<BTreeMap<(String, String), TopicMember>>,
}

impl MemoryTopics {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn rows(&self) -> MutexGuard<'_, BTreeMap<(String, String), TopicMember>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl TopicStore for MemoryTopics {
    async fn join(&self, member: &TopicMember) -> Result<(), StoreError> {
        self.rows().insert(
            (member.topic.clone(), member.connection_id.clone()),
            member.clone(),
        );
        Ok(())
    }

    async fn leave(
        &self,
        topic: &str,
        connection_id: &str,
    ) -> Result<Option<TopicMember>, StoreError> {
        Ok(self
            .rows()
            .remove(&(topic.to_owned(), connection_id.to_owned())))
    }

    async fn members(&self, topic: &str, now_secs: i64) -> Result<Vec<TopicMember>, StoreError> {
        Ok(self
            .rows()
            .range((topic.to_owned(), String::new())..)
            .take_while(|((t, _), _)| t == topic)
            .map(|(_, m)| m)
            .filter(|m| m.ttl > now_secs)
            .cloned()
            .collect())
    }

    async fn topics_of(&self, connection_id: &str) -> Result<Vec<TopicMember>, StoreError> {
        Ok(self
            .rows()
            .values()
            .filter(|m| m.connection_id == connection_id)
            .cloned()
            .collect())
    }

    async fn remove_connection(&self, connection_id: &str) -> Result<Vec<TopicMember>, StoreError> {
        let mut rows = self.rows();
        let keys: Vec<_> = rows
            .iter()
            .filter(|(_, m)| m.connection_id == connection_id)
            .map(|(k, _)| k.clone())
            .collect();
        Ok(keys.into_iter().filter_map(|k| rows.remove(&k)).collect())
    }
}
