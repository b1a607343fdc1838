//! Topic memberships in memory (the local server, tests).

use super::{TopicMember, TopicStore};
use crate::store::StoreError;
use std::collections::{BTreeMap, HashMap, hash_map::Entry};
use std::sync::{Mutex, MutexGuard};

/// A [`TopicStore`] in a map keyed by (topic, connection id), with an index of each
/// connection's topics, so that a join's check and a disconnect's cleanup cost the
/// connection's own memberships rather than a scan of every row. Like DynamoDB it never
/// deletes expired rows by itself; reads hide them.
#[derive(Debug, Default)]
pub struct MemoryTopics {
    rows: Mutex<Rows>,
}

#[derive(Debug, Default)]
struct Rows {
    /// (topic, connection id) → membership: a topic's members are one range.
    by_topic: BTreeMap<(String, String), TopicMember>,
    /// connection id → its topics, in the order joined (kept in step with `by_topic`; a
    /// connection is in few topics, so a list is smaller and as fast as a set).
    by_connection: HashMap<String, Vec<String>>,
}

impl Rows {
    fn remove(&mut self, topic: &str, connection_id: &str) -> Option<TopicMember> {
        let removed = self
            .by_topic
            .remove(&(topic.to_owned(), connection_id.to_owned()))?;
        if let Some(topics) = self.by_connection.get_mut(connection_id) {
            topics.retain(|t| t != topic);
            if topics.is_empty() {
                self.by_connection.remove(connection_id);
            }
        }
        Some(removed)
    }
}

impl MemoryTopics {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn rows(&self) -> MutexGuard<'_, Rows> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl TopicStore for MemoryTopics {
    async fn join(&self, member: &TopicMember) -> Result<(), StoreError> {
        let mut rows = self.rows();
        rows.by_topic.insert(
            (member.topic.clone(), member.connection_id.clone()),
            member.clone(),
        );
        match rows.by_connection.entry(member.connection_id.clone()) {
            Entry::Vacant(none) => {
                none.insert(vec![member.topic.clone()]);
            }
            Entry::Occupied(mut some) if !some.get().contains(&member.topic) => {
                some.get_mut().push(member.topic.clone());
            }
            Entry::Occupied(_) => {}
        }
        Ok(())
    }

    async fn leave(
        &self,
        topic: &str,
        connection_id: &str,
    ) -> Result<Option<TopicMember>, StoreError> {
        Ok(self.rows().remove(topic, connection_id))
    }

    async fn members(&self, topic: &str, now_secs: i64) -> Result<Vec<TopicMember>, StoreError> {
        Ok(self
            .rows()
            .by_topic
            .range((topic.to_owned(), String::new())..)
            .take_while(|((t, _), _)| t == topic)
            .map(|(_, m)| m)
            .filter(|m| m.ttl > now_secs)
            .cloned()
            .collect())
    }

    async fn topics_of(&self, connection_id: &str) -> Result<Vec<TopicMember>, StoreError> {
        let rows = self.rows();
        let Some(topics) = rows.by_connection.get(connection_id) else {
            return Ok(Vec::new());
        };
        Ok(topics
            .iter()
            .filter_map(|t| rows.by_topic.get(&(t.clone(), connection_id.to_owned())))
            .cloned()
            .collect())
    }

    async fn remove_connection(&self, connection_id: &str) -> Result<Vec<TopicMember>, StoreError> {
        let mut rows = self.rows();
        let Some(topics) = rows.by_connection.remove(connection_id) else {
            return Ok(Vec::new());
        };
        Ok(topics
            .into_iter()
            .filter_map(|t| rows.by_topic.remove(&(t, connection_id.to_owned())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(topic: &str, connection_id: &str, ttl: i64) -> TopicMember {
        TopicMember {
            topic: topic.into(),
            connection_id: connection_id.into(),
            user_id: format!("user-{connection_id}"),
            meta: Default::default(),
            joined_at: 1,
            ttl,
        }
    }

    fn topics(members: Vec<TopicMember>) -> Vec<String> {
        members.into_iter().map(|m| m.topic).collect()
    }

    #[tokio::test]
    async fn the_connection_index_follows_joins_leaves_and_disconnects() {
        let store = MemoryTopics::new();
        for (topic, conn) in [("-#b", "c1"), ("-#a", "c1"), ("-#a", "c2"), ("-#b", "c1")] {
            store.join(&member(topic, conn, 100)).await.unwrap();
        }
        assert_eq!(topics(store.topics_of("c1").await.unwrap()), ["-#b", "-#a"]);
        assert_eq!(topics(store.topics_of("c2").await.unwrap()), ["-#a"]);
        assert!(store.topics_of("c3").await.unwrap().is_empty());

        let left = store.leave("-#a", "c1").await.unwrap().unwrap();
        assert_eq!(left.connection_id, "c1");
        assert!(store.leave("-#a", "c1").await.unwrap().is_none());
        assert_eq!(topics(store.topics_of("c1").await.unwrap()), ["-#b"]);
        let members = store.members("-#a", 0).await.unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].connection_id, "c2");

        assert_eq!(
            topics(store.remove_connection("c1").await.unwrap()),
            ["-#b"]
        );
        assert!(store.topics_of("c1").await.unwrap().is_empty());
        assert!(store.members("-#b", 0).await.unwrap().is_empty());
        assert!(store.remove_connection("c1").await.unwrap().is_empty());
        assert!(
            store
                .remove_connection("never-joined")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            topics(store.remove_connection("c2").await.unwrap()),
            ["-#a"]
        );
        let rows = store.rows();
        assert!(rows.by_topic.is_empty() && rows.by_connection.is_empty());
    }

    #[tokio::test]
    async fn expired_members_are_hidden_from_readers_but_cleaned_up_with_the_connection() {
        let store = MemoryTopics::new();
        store.join(&member("-#a", "old", 10)).await.unwrap();
        store.join(&member("-#a", "new", 100)).await.unwrap();
        let live = store.members("-#a", 50).await.unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].connection_id, "new");
        assert_eq!(topics(store.topics_of("old").await.unwrap()), ["-#a"]);
        assert_eq!(store.remove_connection("old").await.unwrap().len(), 1);
    }
}
