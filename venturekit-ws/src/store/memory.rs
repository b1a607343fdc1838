//! The in-memory store used by the local server and tests.

use super::{Connection, ConnectionStore, ExpiredPage, StoreError};
use crate::auth::Identity;
use crate::clock::Clock;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

/// A [`ConnectionStore`] in a hash table. Like DynamoDB it never deletes expired rows by
/// itself; reads hide them and the sweeper removes them.
#[derive(Debug, Default)]
pub struct MemoryStore {
    rows: Mutex<Rows>,
    clock: Clock,
}

/// The rows by connection id, and indexes of them by user and by tenant. Each row is boxed
/// and keyed by its own record's id: a table slot is one pointer and the id is stored once
/// (the local server keeps a row for every open connection).
#[derive(Debug, Default)]
struct Rows {
    table: hashbrown::HashTable<Box<Row>>,
    hasher: std::collections::hash_map::RandomState,
    /// The ids of the connections that have a user id, hashed by that user id.
    by_user: Index,
    /// The ids of the connections that have a tenant id, hashed by that tenant id.
    by_tenant: Index,
    /// The next row's place in the order the rows were inserted.
    next_seq: u64,
}

/// Connection ids hashed by another field of their rows (a multimap without the keys: a
/// lookup checks each candidate's row). About 40 bytes per indexed connection.
#[derive(Debug, Default)]
struct Index(hashbrown::HashTable<Box<str>>);

/// Which field an [`Index`] is by.
type Field = fn(&Connection) -> Option<&str>;

fn user_of(c: &Connection) -> Option<&str> {
    c.user_id.as_deref()
}

fn tenant_of(c: &Connection) -> Option<&str> {
    c.tenant_id.as_deref()
}

/// A record's keys in the indexes: its user id and its tenant id.
fn keys(c: &Connection) -> [Option<&str>; 2] {
    [user_of(c), tenant_of(c)]
}

impl Rows {
    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn get(&self, connection_id: &str) -> Option<&Row> {
        let hash = self.hash(connection_id);
        self.table.find(hash, is(connection_id)).map(|r| &**r)
    }

    fn get_mut(&mut self, connection_id: &str) -> Option<&mut Row> {
        let hash = self.hash(connection_id);
        self.table
            .find_mut(hash, is(connection_id))
            .map(|r| &mut **r)
    }

    fn remove(&mut self, connection_id: &str) -> Option<Box<Row>> {
        let hash = self.hash(connection_id);
        let entry = self.table.find_entry(hash, is(connection_id)).ok()?;
        let row = entry.remove().0;
        self.unindex(connection_id, keys(&row.connection));
        Some(row)
    }

    /// Inserts the record, or replaces the record of a row that has its id (keeping the
    /// row's counters).
    fn save(&mut self, connection: &Connection) {
        let replaced = self.replace(&connection.connection_id, |c| {
            c.clone_from(connection);
            Some(())
        });
        if replaced.is_some() {
            return;
        }
        let hash = self.hash(&connection.connection_id);
        let hasher = &self.hasher;
        self.next_seq += 1;
        self.table.insert_unique(
            hash,
            Box::new(Row {
                connection: connection.clone(),
                counters: Counters::default(),
                seq: self.next_seq,
            }),
            |r| hasher.hash_one(r.connection.connection_id.as_str()),
        );
        self.index(&connection.connection_id, keys(connection));
    }

    /// Changes the record of `connection_id` in place, keeping the indexes in step; `None`
    /// (and nothing changed) when there is no such row or `change` refuses.
    fn replace<T>(
        &mut self,
        connection_id: &str,
        change: impl FnOnce(&mut Connection) -> Option<T>,
    ) -> Option<T> {
        let row = self.get_mut(connection_id)?;
        let before = keys(&row.connection).map(|k| k.map(str::to_owned));
        let out = change(&mut row.connection)?;
        let after = keys(&row.connection).map(|k| k.map(str::to_owned));
        if before != after {
            self.unindex(connection_id, before.each_ref().map(Option::as_deref));
            self.index(connection_id, after.each_ref().map(Option::as_deref));
        }
        Some(out)
    }

    /// Adds `connection_id` to the user and tenant indexes under `keys` (see [`keys`]).
    fn index(&mut self, connection_id: &str, keys: [Option<&str>; 2]) {
        let indexes = [
            (&mut self.by_user, user_of as Field),
            (&mut self.by_tenant, tenant_of),
        ];
        for ((index, field), key) in indexes.into_iter().zip(keys) {
            let Some(key) = key else { continue };
            let (table, hasher) = (&self.table, &self.hasher);
            // A resize rehashes each id by its row's field (every indexed id has a row).
            index
                .0
                .insert_unique(hasher.hash_one(key), connection_id.into(), |id| {
                    let row = table.find(hasher.hash_one(&**id), is(id));
                    hasher.hash_one(row.and_then(|r| field(&r.connection)).unwrap_or_default())
                });
        }
    }

    /// Takes `connection_id` out of the indexes it is in under `keys`.
    fn unindex(&mut self, connection_id: &str, keys: [Option<&str>; 2]) {
        for (index, key) in [&mut self.by_user, &mut self.by_tenant]
            .into_iter()
            .zip(keys)
        {
            let Some(key) = key else { continue };
            let hash = self.hasher.hash_one(key);
            if let Ok(entry) = index.0.find_entry(hash, |id| **id == *connection_id) {
                entry.remove();
            }
        }
    }

    /// The rows whose `field` is `key`, through its index.
    fn by<'a>(
        &'a self,
        index: &'a Index,
        field: Field,
        key: &'a str,
    ) -> impl Iterator<Item = &'a Row> {
        index
            .0
            .iter_hash(self.hash(key))
            .filter_map(|id| self.get(id))
            .filter(move |r| field(&r.connection) == Some(key))
    }

    fn values(&self) -> impl Iterator<Item = &Row> {
        self.table.iter().map(|r| &**r)
    }
}

/// Whether a row is the one of `connection_id` (the table's key is the record's own id).
fn is(connection_id: &str) -> impl Fn(&Box<Row>) -> bool + '_ {
    move |row| row.connection.connection_id == connection_id
}

/// A record and its counters, kept together (one table entry per connection).
#[derive(Debug)]
struct Row {
    connection: Connection,
    counters: Counters,
    /// When the row was inserted, relative to the others: the order of a fan-out's targets
    /// opened in the same millisecond.
    seq: u64,
}

/// Abuse counters, kept beside the record (not in it) so `/_vk/connections` shows the
/// table's fields only.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    window: i64,
    messages: u32,
    auth_failures: u32,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose reads hide records expired by `clock`'s time.
    pub fn with_clock(clock: Clock) -> Self {
        MemoryStore {
            clock,
            ..Self::default()
        }
    }

    fn rows(&self) -> MutexGuard<'_, Rows> {
        // A panic while holding the lock cannot leave a row half-written (we only insert
        // or remove whole rows), so a poisoned lock is safe to keep using.
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Updates the counters of a live record; `None` when there is none.
    fn count(&self, connection_id: &str, update: impl FnOnce(&mut Counters) -> u32) -> Option<u32> {
        let now = self.clock.now_secs();
        let mut rows = self.rows();
        let row = rows
            .get_mut(connection_id)
            .filter(|r| r.connection.is_live(now))?;
        Some(update(&mut row.counters))
    }

    /// The live records among `rows`, by connection id.
    fn live<'a>(&self, rows: impl Iterator<Item = &'a Row>) -> Vec<Connection> {
        let now = self.clock.now_secs();
        let mut found: Vec<Connection> = rows
            .map(|r| &r.connection)
            .filter(|c| c.is_live(now))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        found
    }
}

#[async_trait::async_trait]
impl ConnectionStore for MemoryStore {
    async fn save(&self, connection: &Connection) -> Result<(), StoreError> {
        // Replacing a record keeps its counters, as DynamoDB's PutItem of the same key would
        // not (the framework only saves a record once, at `$connect`).
        self.rows().save(connection);
        Ok(())
    }

    async fn authenticate(
        &self,
        connection_id: &str,
        identity: &Identity,
        ttl: i64,
    ) -> Result<Connection, StoreError> {
        let now = self.clock.now_secs();
        let mut other_user = false;
        let done = self.rows().replace(connection_id, |row| {
            if !row.is_live(now) {
                return None;
            }
            if row.authenticated && row.user_id.as_deref() != Some(identity.user_id.as_str()) {
                other_user = true;
                return None;
            }
            row.authenticated = true;
            row.user_id = Some(identity.user_id.clone());
            row.tenant_id = identity.tenant_id.clone();
            row.email = identity.email.clone();
            row.claims = identity.claims.clone();
            row.ttl = ttl;
            Some(row.clone())
        });
        match done {
            Some(row) => Ok(row),
            None if other_user => Err(StoreError::OtherUser),
            None => Err(StoreError::NotFound),
        }
    }

    async fn remove(&self, connection_id: &str) -> Result<Option<Connection>, StoreError> {
        Ok(self.rows().remove(connection_id).map(|r| r.connection))
    }

    async fn get(&self, connection_id: &str) -> Result<Option<Connection>, StoreError> {
        let now = self.clock.now_secs();
        Ok(self
            .rows()
            .get(connection_id)
            .map(|r| &r.connection)
            .filter(|c| c.is_live(now))
            .cloned())
    }

    async fn get_by_user(&self, user_id: &str) -> Result<Vec<Connection>, StoreError> {
        let rows = self.rows();
        Ok(self.live(rows.by(&rows.by_user, user_of, user_id)))
    }

    async fn get_by_tenant(&self, tenant_id: &str) -> Result<Vec<Connection>, StoreError> {
        let rows = self.rows();
        Ok(self.live(rows.by(&rows.by_tenant, tenant_of, tenant_id)))
    }

    async fn list(&self) -> Result<Vec<Connection>, StoreError> {
        Ok(self.live(self.rows().values()))
    }

    /// In the order the connections opened, oldest first, and those opened in the same
    /// millisecond in the order they were saved (as a server walking its connections
    /// would): a client holding many of them reads a fan-out in the order it
    /// opened them, which it does markedly faster than in the table's order (BENCHMARKS.md).
    async fn target_ids(&self, scope: &crate::messaging::Scope) -> Result<Vec<String>, StoreError> {
        let now = self.clock.now_secs();
        let rows = self.rows();
        let candidates: Box<dyn Iterator<Item = &Row>> = match scope {
            crate::messaging::Scope::Tenant(t) => Box::new(rows.by(&rows.by_tenant, tenant_of, t)),
            _ => Box::new(rows.values()),
        };
        // Ties (thousands of connections open within one millisecond) go by when the rows
        // were saved, not by id: comparing ids made the sort the larger part of a fan-out's
        // lookup.
        let mut found: Vec<(i64, u64, &str)> = candidates
            .filter(|r| {
                let c = &r.connection;
                c.is_live(now) && c.authenticated && scope.contains(c)
            })
            .map(|r| {
                let c = &r.connection;
                (c.connected_at, r.seq, c.connection_id.as_str())
            })
            .collect();
        found.sort_unstable_by_key(|&(opened, seq, _)| (opened, seq));
        Ok(found.into_iter().map(|(_, _, id)| id.to_owned()).collect())
    }

    async fn list_expired(&self) -> Result<Vec<Connection>, StoreError> {
        let now = self.clock.now_secs();
        let mut found: Vec<Connection> = self
            .rows()
            .values()
            .map(|r| &r.connection)
            .filter(|c| !c.is_live(now))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        Ok(found)
    }

    /// Pages through the expired records only (a page is up to `limit` of them, by id): with
    /// none expired, a sweep is one pass over the rows, not a page per `limit` rows.
    async fn expired_page(
        &self,
        after: Option<&str>,
        limit: usize,
        now_secs: i64,
    ) -> Result<ExpiredPage, StoreError> {
        let rows = self.rows();
        let mut page: Vec<&Connection> = rows
            .values()
            .map(|r| &r.connection)
            .filter(|c| !c.is_live(now_secs))
            .filter(|c| after.is_none_or(|a| c.connection_id.as_str() > a))
            .collect();
        let limit = limit.max(1);
        // The first `limit` by id, in order, without sorting the rest.
        let by_id = |a: &&Connection, b: &&Connection| a.connection_id.cmp(&b.connection_id);
        if page.len() > limit {
            page.select_nth_unstable_by(limit - 1, by_id);
        }
        let head = page.len().min(limit);
        page[..head].sort_unstable_by(by_id);
        let next = (page.len() > limit).then(|| page[limit - 1].connection_id.clone());
        let records = page.into_iter().take(limit).cloned().collect();
        Ok(ExpiredPage::new(records, next))
    }

    async fn remove_expired(
        &self,
        connection_id: &str,
        now_secs: i64,
    ) -> Result<Option<Connection>, StoreError> {
        let mut rows = self.rows();
        if rows
            .get(connection_id)
            .is_some_and(|r| !r.connection.is_live(now_secs))
        {
            return Ok(rows.remove(connection_id).map(|r| r.connection));
        }
        Ok(None)
    }

    async fn count_message(
        &self,
        connection_id: &str,
        window_start_ms: i64,
    ) -> Result<Option<u32>, StoreError> {
        Ok(self.count(connection_id, |c| {
            if c.window != window_start_ms {
                c.window = window_start_ms;
                c.messages = 0;
            }
            c.messages = c.messages.saturating_add(1);
            c.messages
        }))
    }

    async fn count_auth_failure(&self, connection_id: &str) -> Result<Option<u32>, StoreError> {
        Ok(self.count(connection_id, |c| {
            c.auth_failures = c.auth_failures.saturating_add(1);
            c.auth_failures
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now_secs;

    fn ids(records: Vec<Connection>) -> Vec<String> {
        records.into_iter().map(|c| c.connection_id).collect()
    }

    fn alice(tenant: Option<&str>) -> Identity {
        Identity {
            user_id: "alice".into(),
            tenant_id: tenant.map(String::from),
            email: Some("alice@example.com".into()),
            claims: Default::default(),
        }
    }

    #[tokio::test]
    async fn lifecycle_and_queries() {
        let store = MemoryStore::new();
        let now = now_secs();
        store
            .save(&Connection::unauthenticated("c1", 1, now + 30))
            .await
            .unwrap();
        store
            .save(&Connection::unauthenticated("c2", 2, now + 30))
            .await
            .unwrap();
        assert!(!store.get("c1").await.unwrap().unwrap().authenticated);
        assert!(store.get_by_user("alice").await.unwrap().is_empty());

        let row = store
            .authenticate("c1", &alice(Some("acme")), now + 7200)
            .await
            .unwrap();
        assert!(row.authenticated);
        assert_eq!(row.ttl, now + 7200);
        assert_eq!(row.email.as_deref(), Some("alice@example.com"));
        let by_user = store.get_by_user("alice").await.unwrap();
        assert_eq!(by_user.len(), 1);
        assert_eq!(by_user[0].connection_id, "c1");
        assert_eq!(store.get_by_tenant("acme").await.unwrap().len(), 1);
        assert!(store.get_by_tenant("globex").await.unwrap().is_empty());
        assert_eq!(store.list().await.unwrap().len(), 2);

        store.remove("c1").await.unwrap();
        assert!(store.get("c1").await.unwrap().is_none());
        store.remove("c1").await.unwrap();
    }

    #[tokio::test]
    async fn a_fan_out_targets_connections_oldest_first() {
        let store = MemoryStore::new();
        let now = now_secs();
        // Opened at 3, 1, 2 (and two in the same millisecond, in the order they were saved);
        // one not authenticated.
        for (id, opened) in [("zz", 3), ("b", 1), ("y", 2), ("a", 2), ("anon", 0)] {
            store
                .save(&Connection::unauthenticated(id, opened, now + 30))
                .await
                .unwrap();
            if id != "anon" {
                store
                    .authenticate(id, &alice(None), now + 100)
                    .await
                    .unwrap();
            }
        }
        let scope = crate::messaging::Scope::All;
        assert_eq!(
            store.target_ids(&scope).await.unwrap(),
            ["b", "y", "a", "zz"]
        );
    }

    #[tokio::test]
    async fn expired_rows_are_absent_but_listed_for_the_sweeper() {
        let store = MemoryStore::new();
        let now = now_secs();
        store
            .save(&Connection::unauthenticated("old", 1, now - 1))
            .await
            .unwrap();
        assert!(store.get("old").await.unwrap().is_none());
        assert!(store.list().await.unwrap().is_empty());
        let err = store
            .authenticate("old", &alice(None), now + 100)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound));
        let expired = store.list_expired().await.unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].connection_id, "old");
    }

    #[tokio::test]
    async fn authenticate_refuses_removed_and_other_users() {
        let store = MemoryStore::new();
        let now = now_secs();
        let err = store
            .authenticate("ghost", &alice(None), now + 100)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound));
        store
            .save(&Connection::unauthenticated("c", 1, now + 30))
            .await
            .unwrap();
        store
            .authenticate("c", &alice(None), now + 100)
            .await
            .unwrap();
        let bob = Identity {
            user_id: "bob".into(),
            tenant_id: None,
            email: None,
            claims: Default::default(),
        };
        let err = store.authenticate("c", &bob, now + 100).await.unwrap_err();
        assert!(matches!(err, StoreError::OtherUser));
        let row = store.get("c").await.unwrap().unwrap();
        assert_eq!(row.user_id.as_deref(), Some("alice"));
        // Same user again: refresh.
        let row = store
            .authenticate("c", &alice(None), now + 500)
            .await
            .unwrap();
        assert_eq!(row.ttl, now + 500);
    }

    #[tokio::test]
    async fn counters_are_per_window_and_per_connection() {
        let store = MemoryStore::new();
        store
            .save(&Connection::unauthenticated("c", 1, now_secs() + 30))
            .await
            .unwrap();
        assert_eq!(store.count_message("c", 1000).await.unwrap(), Some(1));
        assert_eq!(store.count_message("c", 1000).await.unwrap(), Some(2));
        assert_eq!(store.count_message("c", 3000).await.unwrap(), Some(1));
        assert_eq!(store.count_auth_failure("c").await.unwrap(), Some(1));
        assert_eq!(store.count_auth_failure("c").await.unwrap(), Some(2));
        store.remove("c").await.unwrap();
        assert_eq!(
            store.count_auth_failure("c").await.unwrap(),
            None,
            "no record: nothing to count"
        );
        assert_eq!(store.count_message("c", 3000).await.unwrap(), None);
    }

    /// Random saves, authentications (as another user too), removals and sweeps over a few
    /// hundred connections: the user and tenant lookups, which go through the indexes, always
    /// agree with a scan of every row (the table and the indexes resize along the way).
    #[tokio::test]
    async fn user_and_tenant_lookups_agree_with_a_scan_of_every_row() {
        let store = MemoryStore::new();
        let now = now_secs();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let identity = |user: u64, tenant: u64| Identity {
            user_id: format!("u{user}"),
            tenant_id: (tenant > 0).then(|| format!("t{tenant}")),
            email: None,
            claims: Default::default(),
        };
        for step in 0..4000_i32 {
            let id = format!("c{}", next(400));
            match next(10) {
                0..=2 => {
                    let ttl = if next(8) == 0 { now - 1 } else { now + 30 };
                    let opened = i64::from(step);
                    let c = Connection::unauthenticated(&id, opened, ttl);
                    store.save(&c).await.unwrap();
                }
                3..=6 => {
                    let who = identity(next(25), next(4));
                    let _ = store.authenticate(&id, &who, now + 100).await;
                }
                7 => {
                    let mut c = Connection::unauthenticated(&id, 0, now + 30);
                    c.authenticated = true;
                    c.user_id = Some(format!("u{}", next(25)));
                    c.tenant_id = Some(format!("t{}", next(4)));
                    store.save(&c).await.unwrap();
                }
                8 => {
                    store.remove(&id).await.unwrap();
                }
                _ => {
                    store.remove_expired(&id, now).await.unwrap();
                }
            }
            if step % 100 != 99 {
                continue;
            }
            let all = store.list().await.unwrap();
            for user in (0..25).map(|u| format!("u{u}")) {
                let want: Vec<_> = all
                    .iter()
                    .filter(|c| c.user_id.as_deref() == Some(user.as_str()))
                    .cloned()
                    .collect();
                let got = store.get_by_user(&user).await.unwrap();
                assert_eq!(got, want, "user {user} at step {step}");
            }
            for tenant in (0..4).map(|t| format!("t{t}")) {
                let want: Vec<_> = all
                    .iter()
                    .filter(|c| c.tenant_id.as_deref() == Some(tenant.as_str()))
                    .cloned()
                    .collect();
                assert_eq!(store.get_by_tenant(&tenant).await.unwrap(), want);
                let scope = crate::messaging::Scope::Tenant(tenant.clone());
                // The same ids, oldest first (ties go by when the rows were saved, which this
                // scan does not know).
                let targets: Vec<_> = want.into_iter().filter(|c| c.authenticated).collect();
                let got = store.target_ids(&scope).await.unwrap();
                let opened = |id: &String| {
                    targets
                        .iter()
                        .find(|c| &c.connection_id == id)
                        .map(|c| c.connected_at)
                };
                let order: Vec<_> = got.iter().map(opened).collect();
                assert!(
                    order.iter().all(Option::is_some),
                    "{got:?} not in {targets:?}"
                );
                assert!(order.is_sorted(), "not oldest first: {order:?}");
                let (mut got, mut want) = (got, ids(targets));
                got.sort();
                want.sort();
                assert_eq!(got, want);
            }
        }
        // Everything removed: the indexes are empty too.
        for id in (0..400).map(|i| format!("c{i}")) {
            store.remove(&id).await.unwrap();
        }
        let rows = store.rows();
        assert!(rows.table.is_empty() && rows.by_user.0.is_empty() && rows.by_tenant.0.is_empty());
    }

    #[tokio::test]
    async fn expired_pages_walk_every_row_once_in_id_order() {
        let store = MemoryStore::new();
        let now = now_secs();
        for i in 0..1234 {
            let ttl = if i % 3 == 0 { now - 1 } else { now + 30 };
            let id = format!("c{:05}", (i * 7919) % 1234);
            store
                .save(&Connection::unauthenticated(&id, 1, ttl))
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = store
                .expired_page(cursor.as_deref(), 100, now)
                .await
                .unwrap();
            pages += 1;
            seen.extend(ids(page.records));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, 5, "412 expired rows in pages of 100");
        let mut want = ids(store.list_expired().await.unwrap());
        want.sort();
        assert_eq!(want.len(), 412);
        assert_eq!(seen, want, "each expired row once, in id order");
    }

    #[test]
    fn record_serializes_with_table_field_names() {
        let mut c = Connection::unauthenticated("abc=", 1700000000000, 1700000030);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"connectionId":"abc=","authenticated":false,
                "connectedAt":1700000000000_i64,"ttl":1700000030})
        );
        c.authenticated = true;
        c.user_id = Some("u".into());
        c.tenant_id = Some("t".into());
        c.email = Some("e".into());
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["userId"], "u");
        assert_eq!(v["tenantId"], "t");
        assert_eq!(v["email"], "e");
    }
}
