//! The DynamoDB store against moto's server (a real DynamoDB-compatible HTTP server):
//! exact attribute names and types, conditional authentication, expiry filtering,
//! pagination past many pages, parallel scans.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_sdk_dynamodb::types::AttributeValue;
use venturekit_ws::aws::DynamoStore;
use venturekit_ws::clock::now_secs;
use venturekit_ws::{Connection, ConnectionStore, Identity, StoreError};
use venturekit_ws_tests::aws::*;

async fn store(label: &str) -> (DynamoStore, aws_sdk_dynamodb::Client) {
    let client = dynamo_client();
    let table = fresh_table(&client, label).await;
    (DynamoStore::new(client.clone(), table), client)
}

fn identity(user: &str, tenant: Option<&str>, email: Option<&str>) -> Identity {
    Identity {
        user_id: user.into(),
        tenant_id: tenant.map(String::from),
        email: email.map(String::from),
        claims: Default::default(),
    }
}

async fn raw(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    id: &str,
) -> Option<std::collections::HashMap<String, AttributeValue>> {
    client
        .get_item()
        .table_name(table)
        .key("connectionId", AttributeValue::S(id.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item()
        .cloned()
}

#[tokio::test]
async fn table_has_the_contract_schema() {
    let (store, client) = store("schema").await;
    let table = client
        .describe_table()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    let table = table.table().unwrap();
    assert_eq!(table.key_schema()[0].attribute_name(), "connectionId");
    let mut indexes: Vec<(String, String)> = table
        .global_secondary_indexes()
        .iter()
        .map(|i| {
            (
                i.index_name().unwrap().to_owned(),
                i.key_schema()[0].attribute_name().to_owned(),
            )
        })
        .collect();
    indexes.sort();
    assert_eq!(
        indexes,
        [
            ("tenantId-index".to_owned(), "tenantId".to_owned()),
            ("userId-index".to_owned(), "userId".to_owned())
        ]
    );
    let ttl = client
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description().unwrap().attribute_name(),
        Some("ttl")
    );
}

#[tokio::test]
async fn save_writes_exact_attribute_names_and_types() {
    let (store, client) = store("save").await;
    let now = now_secs();
    store
        .save(&Connection::unauthenticated(
            "abc=",
            1_700_000_000_123,
            now + 30,
        ))
        .await
        .unwrap();
    let item = raw(&client, store.table(), "abc=").await.unwrap();
    assert_eq!(item["connectionId"], AttributeValue::S("abc=".into()));
    assert_eq!(item["authenticated"], AttributeValue::Bool(false));
    assert_eq!(
        item["connectedAt"],
        AttributeValue::N("1700000000123".into())
    );
    assert_eq!(item["ttl"], AttributeValue::N((now + 30).to_string()));
    assert!(!item.contains_key("userId"), "userId is absent until auth");
    assert_eq!(item.len(), 4);

    store
        .authenticate(
            "abc=",
            &identity("alice", Some("acme"), Some("a@example.com")),
            now + 7200,
        )
        .await
        .unwrap();
    let item = raw(&client, store.table(), "abc=").await.unwrap();
    assert_eq!(item["authenticated"], AttributeValue::Bool(true));
    assert_eq!(item["userId"], AttributeValue::S("alice".into()));
    assert_eq!(item["tenantId"], AttributeValue::S("acme".into()));
    assert_eq!(item["email"], AttributeValue::S("a@example.com".into()));
    assert_eq!(item["ttl"], AttributeValue::N((now + 7200).to_string()));
    assert_eq!(
        item["connectedAt"],
        AttributeValue::N("1700000000123".into())
    );

    let row = store.get("abc=").await.unwrap().unwrap();
    assert_eq!(row.user_id.as_deref(), Some("alice"));
    assert_eq!(row.connected_at, 1_700_000_000_123);
}

#[tokio::test]
async fn authenticate_is_conditional() {
    let (store, client) = store("cond").await;
    let now = now_secs();
    // Missing record: refused, and not created.
    let err = store
        .authenticate("ghost=", &identity("alice", None, None), now + 100)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err}");
    assert!(raw(&client, store.table(), "ghost=").await.is_none());

    // Expired window (the row is still there: TTL deletes lazily).
    store
        .save(&Connection::unauthenticated("late=", 1, now - 1))
        .await
        .unwrap();
    let err = store
        .authenticate("late=", &identity("alice", None, None), now + 100)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err}");
    let item = raw(&client, store.table(), "late=").await.unwrap();
    assert_eq!(item["authenticated"], AttributeValue::Bool(false));

    // Removed: cannot be resurrected.
    store
        .save(&Connection::unauthenticated("gone=", 1, now + 30))
        .await
        .unwrap();
    store.remove("gone=").await.unwrap();
    let err = store
        .authenticate("gone=", &identity("alice", None, None), now + 100)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err}");
    assert!(raw(&client, store.table(), "gone=").await.is_none());

    // Another user's connection: refused, identity kept.
    store
        .save(&Connection::unauthenticated("c=", 1, now + 30))
        .await
        .unwrap();
    store
        .authenticate("c=", &identity("alice", Some("acme"), None), now + 100)
        .await
        .unwrap();
    let err = store
        .authenticate("c=", &identity("mallory", None, None), now + 100)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::OtherUser), "{err}");
    let row = store.get("c=").await.unwrap().unwrap();
    assert_eq!(row.user_id.as_deref(), Some("alice"));
    assert_eq!(row.tenant_id.as_deref(), Some("acme"));

    // Same user: refreshed; a tenant-less re-auth drops the tenant attribute.
    let row = store
        .authenticate("c=", &identity("alice", None, None), now + 500)
        .await
        .unwrap();
    assert_eq!(row.ttl, now + 500);
    assert_eq!(row.tenant_id, None);
    let item = raw(&client, store.table(), "c=").await.unwrap();
    assert!(!item.contains_key("tenantId"));
}

#[tokio::test]
async fn every_read_hides_expired_rows() {
    let (store, _client) = store("expiry").await;
    let now = now_secs();
    for (id, ttl) in [("live=", now + 100), ("dead=", now - 5), ("edge=", now)] {
        store
            .save(&Connection::unauthenticated(id, 1, now + 30))
            .await
            .unwrap();
        store
            .authenticate(id, &identity("alice", Some("acme"), None), ttl)
            .await
            .unwrap();
    }
    assert!(store.get("dead=").await.unwrap().is_none());
    assert!(
        store.get("edge=").await.unwrap().is_none(),
        "ttl <= now is expired"
    );
    assert!(store.get("live=").await.unwrap().is_some());
    let ids = |rows: Vec<Connection>| {
        let mut ids: Vec<String> = rows.into_iter().map(|c| c.connection_id).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(store.get_by_user("alice").await.unwrap()), ["live="]);
    assert_eq!(ids(store.get_by_tenant("acme").await.unwrap()), ["live="]);
    assert_eq!(ids(store.list().await.unwrap()), ["live="]);
    assert_eq!(ids(store.list_expired().await.unwrap()), ["dead=", "edge="]);
}

#[tokio::test]
async fn queries_and_scans_page_to_the_end() {
    let (store, _client) = store("pages").await;
    let store = store.with_page_size(25);
    let now = now_secs();
    let mut saves = Vec::new();
    for i in 0..300 {
        let store = store.clone();
        saves.push(tokio::spawn(async move {
            let id = format!("conn-{i:03}=");
            store
                .save(&Connection::unauthenticated(&id, 1, now + 60))
                .await
                .unwrap();
            let (user, tenant) = if i % 2 == 0 {
                ("bob", "acme")
            } else {
                ("carol", "globex")
            };
            store
                .authenticate(&id, &identity(user, Some(tenant), None), now + 600)
                .await
                .unwrap();
        }));
    }
    for save in saves {
        save.await.unwrap();
    }
    assert_eq!(store.get_by_user("bob").await.unwrap().len(), 150);
    assert_eq!(store.get_by_tenant("globex").await.unwrap().len(), 150);
    assert_eq!(store.list().await.unwrap().len(), 300);
    let parallel = store.clone().with_scan_segments(4);
    let mut ids: Vec<String> = parallel
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.connection_id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300);
}

#[tokio::test]
async fn rate_counts_stay_exact_across_instances_with_different_window_hints() {
    // Two stores on one table: two warm Lambda instances, each remembering the window it
    // last counted (which write it tries first). Their guesses differ; the counts do not.
    let (a, client) = store("windows").await;
    let b = DynamoStore::new(client.clone(), a.table().to_owned());
    a.save(&Connection::unauthenticated("c=", 1, now_secs() + 30))
        .await
        .unwrap();
    let steps: [(&DynamoStore, i64, u32); 9] = [
        (&a, 1000, 1),
        (&b, 1000, 2), // b has no hint: tries the reset first, which refuses
        (&a, 1000, 3),
        (&b, 3000, 1), // a new window
        (&a, 3000, 2), // a's hint is stale
        (&a, 3000, 3),
        (&b, 3000, 4),
        (&a, 9000, 1), // after a quiet spell
        (&a, 1000, 1), // an older window (a clock behind) starts over, as before
    ];
    for (i, (store, window, expected)) in steps.into_iter().enumerate() {
        let (count, record) = store
            .count_message_and_get("c=", window)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(count, expected, "step {i}: window {window}");
        assert_eq!(record.unwrap().connection_id, "c=");
    }
    // A record removed behind a hint is still "no live record".
    a.remove("c=").await.unwrap();
    assert_eq!(a.count_message("c=", 1000).await.unwrap(), None);
    assert_eq!(b.count_message("c=", 3000).await.unwrap(), None);
}

#[tokio::test]
async fn abuse_counters_live_in_the_record() {
    let (store, client) = store("counters").await;
    let now = now_secs();
    store
        .save(&Connection::unauthenticated("c=", 1, now + 30))
        .await
        .unwrap();
    assert_eq!(store.count_message("c=", 1000).await.unwrap(), Some(1));
    assert_eq!(store.count_message("c=", 1000).await.unwrap(), Some(2));
    assert_eq!(store.count_message("c=", 1000).await.unwrap(), Some(3));
    assert_eq!(
        store.count_message("c=", 3000).await.unwrap(),
        Some(1),
        "a new window resets"
    );
    assert_eq!(store.count_auth_failure("c=").await.unwrap(), Some(1));
    assert_eq!(store.count_auth_failure("c=").await.unwrap(), Some(2));
    let item = raw(&client, store.table(), "c=").await.unwrap();
    assert_eq!(item["rateWindow"], AttributeValue::N("3000".into()));
    assert_eq!(item["authFailures"], AttributeValue::N("2".into()));
    // Counting never creates a record for an unknown connection, and says there is none.
    assert_eq!(store.count_message("ghost=", 1000).await.unwrap(), None);
    assert_eq!(store.count_auth_failure("ghost=").await.unwrap(), None);
    assert!(raw(&client, store.table(), "ghost=").await.is_none());
    // An expired record (TTL not yet applied by DynamoDB) counts as none either.
    store
        .save(&Connection::unauthenticated("old=", 1, now - 1))
        .await
        .unwrap();
    assert_eq!(store.count_message("old=", 1000).await.unwrap(), None);
    assert_eq!(store.count_auth_failure("old=").await.unwrap(), None);
    // The record itself still reads the same.
    let row = store.get("c=").await.unwrap().unwrap();
    assert!(!row.authenticated);
    // The guard's read in the counting call: one UpdateItem returns the count and the record.
    let (count, record) = store
        .count_message_and_get("c=", 3000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count, 2);
    assert_eq!(record, Some(row));
    let (count, _) = store
        .count_message_and_get("c=", 5000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count, 1, "a new window resets here too");
    assert_eq!(
        store.count_message_and_get("old=", 1000).await.unwrap(),
        None
    );
    assert_eq!(
        store.count_message_and_get("ghost=", 1000).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn the_keep_alive_proxy_forwards_calls_and_errors_unchanged() {
    // The measuring tools reach moto through this proxy (kept-alive connections, as with
    // DynamoDB): what goes through it must be exactly what moto answers.
    let proxy = venturekit_ws_tests::aws::KeepAliveProxy::start(&moto_endpoint()).await;
    let client = venturekit_ws_tests::aws::dynamo_client_at(&proxy.endpoint());
    let table = fresh_table(&client, "proxy").await;
    let store = DynamoStore::new(client.clone(), table);
    let now = now_secs();
    for i in 0..5 {
        let id = format!("p{i}=");
        store
            .save(&Connection::unauthenticated(&id, 1, now + 30))
            .await
            .unwrap();
        assert_eq!(store.get(&id).await.unwrap().unwrap().connection_id, id);
    }
    // A refused conditional write comes back as the same error.
    assert_eq!(store.count_message("ghost=", 1000).await.unwrap(), None);
    // A service error with its code.
    let err = client
        .describe_table()
        .table_name("vk-no-such-table")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{err:?}"
    );
}
