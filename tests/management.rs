//! The local management API (`/@connections/{id}`), `/_vk/connections` and the dev console.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::time::Duration;
use venturekit_ws_tests::*;

async fn only_connection_id(addr: std::net::SocketAddr) -> String {
    let rows = records(addr).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0]["connectionId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn post_get_delete_like_api_gateway() {
    let server = start_chat().await;
    let addr = server.addr;
    let mut c = Client::connect(addr).await;
    let id = only_connection_id(addr).await;
    assert!(id.ends_with('='), "API Gateway-like ids end with `=`: {id}");
    let path = format!("/@connections/{}", encode_id(&id));

    let r = http(addr, "POST", &path, br#"{"action":"notice","n":1}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(c.recv().await, json!({"action": "notice", "n": 1}));

    // With a stage prefix, as the AWS SDK sends it.
    let r = http(addr, "POST", &format!("/local{path}"), br#"{"n":2}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(c.recv().await, json!({"n": 2}));

    let r = http(addr, "GET", &path, b"").await;
    assert_eq!(r.status, 200);
    let info = r.json();
    // The service's wire names, which the AWS SDKs read.
    assert!(info["connectedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(info["identity"]["sourceIp"], "127.0.0.1");
    assert!(info["lastActiveAt"].is_string());

    let r = http(addr, "DELETE", &path, b"").await;
    assert_eq!(r.status, 204);
    assert_eq!(c.expect_close().await, Some(1000));

    // Now gone: 410 with the GoneException error type, and the record is removed.
    let r = http(addr, "POST", &path, b"{}").await;
    assert_eq!(r.status, 410);
    assert_eq!(r.header("x-amzn-errortype"), Some("GoneException"));
    for _ in 0..100 {
        if records(addr).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(records(addr).await.is_empty());
}

#[tokio::test]
async fn unknown_and_hostile_ids_get_410() {
    let server = start_chat().await;
    let addr = server.addr;
    let _c = Client::connect(addr).await;
    for path in [
        "/@connections/unknown%3D",
        "/@connections/..%2F..%2Fetc%2Fpasswd",
        "/@connections/%00",
        "/prod/@connections/nope",
    ] {
        for method in ["POST", "GET", "DELETE"] {
            let r = http(addr, method, path, b"{}").await;
            assert_eq!(r.status, 410, "{method} {path}");
            assert_eq!(r.header("x-amzn-errortype"), Some("GoneException"));
        }
    }
    // The real connection is unaffected.
    assert_eq!(records(addr).await.len(), 1);
}

#[tokio::test]
async fn posts_over_128_kb_are_refused() {
    let server = start_chat().await;
    let addr = server.addr;
    let mut c = Client::connect(addr).await;
    let id = only_connection_id(addr).await;
    let body = vec![b'x'; 128 * 1024 + 1];
    let r = http(
        addr,
        "POST",
        &format!("/@connections/{}", encode_id(&id)),
        &body,
    )
    .await;
    assert_eq!(r.status, 413);
    c.assert_no_pending().await;
}

#[tokio::test]
async fn records_use_the_table_field_names() {
    let server = start_chat().await;
    let addr = server.addr;
    let _anon = Client::connect(addr).await;
    let _alice = Client::authed(addr, "alice", &["acme"]).await;
    let rows = records(addr).await;
    assert_eq!(rows.len(), 2);
    let anon = rows.iter().find(|r| r["authenticated"] == false).unwrap();
    let mut keys: Vec<_> = anon.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["authenticated", "connectedAt", "connectionId", "ttl"]
    );
    let ttl = anon["ttl"].as_i64().unwrap();
    let now = now() as i64;
    assert!(ttl > now + 25 && ttl <= now + 30, "ttl {ttl} now {now}");
    let alice = rows.iter().find(|r| r["authenticated"] == true).unwrap();
    let mut keys: Vec<_> = alice.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "authenticated",
            "connectedAt",
            "connectionId",
            "tenantId",
            "ttl",
            "userId"
        ]
    );
}

#[tokio::test]
async fn a_browser_gets_the_dev_console() {
    let server = start_chat().await;
    let r = http(server.addr, "GET", "/", b"").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.body.contains("venturekit-ws dev console"));
    assert!(r.body.contains("new WebSocket"));
}

#[tokio::test]
async fn dev_tokens_only_with_the_public_dev_secret() {
    // A real key: the console's dev-token endpoint refuses.
    let server = start_chat().await;
    let r = http(server.addr, "POST", "/_vk/token", br#"{"sub":"alice"}"#).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("public development secret"), "{}", r.body);
    // The dev secret: a token for the user, tenant and roles asked for, which authenticates.
    let server = start(chat_app(venturekit_ws::Config::default())).await;
    let r = http(
        server.addr,
        "POST",
        "/_vk/token",
        br#"{"sub":"ann","tenant":"acme","roles":["admin"]}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut c = Client::connect(server.addr).await;
    c.send(serde_json::json!({"action": "auth", "token": token}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["userId"], "ann");
    assert_eq!(reply["tenantId"], "acme");
    // The action picker's catalog: every action with an example message.
    let r = http(server.addr, "GET", "/_vk/actions", b"").await;
    let list: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let send = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "send")
        .unwrap();
    assert_eq!(
        send["example"],
        serde_json::json!({"action": "send", "to": "text", "data": "any JSON"})
    );
    let kick = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "kick")
        .unwrap();
    assert_eq!(kick["roles"], serde_json::json!(["admin"]));
}

#[tokio::test]
async fn the_local_server_counts_what_lambda_would_report() {
    let server = start_chat().await;
    let mut alice = Client::authed(server.addr, "alice", &["acme"]).await;
    alice.send(json!({"action": "broadcast", "data": 1})).await;
    alice.recv().await;
    let mut anon = Client::connect(server.addr).await;
    anon.send(json!({"action": "auth", "token": "not.a.jwt"}))
        .await;
    anon.recv().await;
    let r = http(server.addr, "GET", "/_vk/metrics", b"").await;
    assert_eq!(r.status, 200);
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["actions"]["broadcast"]["Messages"], 1, "{body}");
    assert_eq!(body["actions"]["broadcast"]["Delivered"], 1, "{body}");
    assert_eq!(body["actions"]["auth"]["Messages"], 2, "{body}");
    assert_eq!(body["authFailures"]["invalid_token"], 1, "{body}");
    assert!(
        body["summary"]
            .as_str()
            .unwrap()
            .starts_with("messages=3 delivered=3"),
        "{body}"
    );
}
