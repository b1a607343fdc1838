//! The chat binary as a Lambda function: a Lambda Runtime API stand-in feeds it real-shaped
//! API Gateway events (built from the published fixtures), connection state lives in moto's
//! DynamoDB, and every management API call lands on a recording server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use venturekit_ws::aws::DynamoStore;
use venturekit_ws::clock::now_secs;
use venturekit_ws::{Connection, ConnectionStore};
use venturekit_ws_tests::aws::*;
use venturekit_ws_tests::aws::{connect_event as connect, message_event as message};
use venturekit_ws_tests::{SECRET, token};

const BIN: &str = env!("CARGO_BIN_EXE_chat");

struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn clean_command() -> Command {
    clean_command_for(BIN)
}

/// `bin` with no VK_WS_* / AWS_* variables of the test's own environment, and the Lambda
/// runtime's variables set.
fn clean_command_for(bin: &str) -> Command {
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars() {
        if key.starts_with("VK_WS_") || key.starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "warn")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_LAMBDA_FUNCTION_NAME", "chat")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test-stream")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/chat");
    cmd
}

/// Creates the chat's history table and the topics table beside the connections table
/// `table`.
async fn history_table(client: &aws_sdk_dynamodb::Client, table: &str) {
    chat::history::create_table(client, &format!("{table}-history"))
        .await
        .expect("creating the history table in moto failed");
    venturekit_ws::aws::create_topics_table(client, &format!("{table}-topics"))
        .await
        .expect("creating the topics table in moto failed");
}

fn start(runtime: &RuntimeApi, table: &str, mgmt: &ManagementServer) -> Function {
    let child = with_lambda_env(clean_command(), runtime, table, mgmt)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Function(child)
}

fn with_lambda_env(
    mut cmd: Command,
    runtime: &RuntimeApi,
    table: &str,
    mgmt: &ManagementServer,
) -> Command {
    cmd.env("AWS_LAMBDA_RUNTIME_API", runtime.addr.to_string())
        .env("VK_WS_TABLE", table)
        .env("CHAT_HISTORY_TABLE", format!("{table}-history"))
        .env("VK_WS_TOPICS_TABLE", format!("{table}-topics"))
        .env("VK_WS_JWT_SECRET", SECRET)
        .env("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint())
        .env(
            "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI",
            mgmt.endpoint("dev"),
        );
    cmd
}

fn disconnect(id: &str) -> Value {
    let mut event = connect(id);
    event["requestContext"]["routeKey"] = json!("$disconnect");
    event["requestContext"]["eventType"] = json!("DISCONNECT");
    event["requestContext"]["disconnectStatusCode"] = json!(1001);
    event
}

fn scheduled() -> Value {
    json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-26T12:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/vk-sweeper"], "detail": {}
    })
}

async fn ok(runtime: &RuntimeApi, event: Value) -> Value {
    let response = runtime
        .invoke(event)
        .await
        .unwrap_or_else(|e| panic!("the invocation failed: {e}"));
    assert_eq!(response["statusCode"], 200, "{response}");
    response
}

async fn auth(
    runtime: &RuntimeApi,
    mgmt: &ManagementServer,
    id: &str,
    user: &str,
    tenants: &[&str],
) {
    ok(runtime, connect(id)).await;
    ok(
        runtime,
        message(id, json!({"action": "auth", "token": token(user, tenants)})),
    )
    .await;
    let reply = mgmt.posts_to(id).pop().expect("no auth reply posted");
    assert_eq!(reply["success"], true, "{reply}");
}

#[tokio::test]
async fn the_chat_runs_on_lambda_with_dynamodb_and_the_management_api() {
    let client = dynamo_client();
    let table = fresh_table(&client, "lambda").await;
    history_table(&client, &table).await;
    let store = DynamoStore::new(client.clone(), table.clone());
    let runtime = RuntimeApi::start().await;
    let mgmt = ManagementServer::start().await;
    let _function = start(&runtime, &table, &mgmt);

    // $connect saves an unauthenticated record with the auth window as TTL.
    ok(&runtime, connect("anon=")).await;
    let row = store.get("anon=").await.unwrap().unwrap();
    assert!(!row.authenticated);
    assert_eq!(row.connected_at, 1645556857902);
    assert!(row.ttl > now_secs() + 25 && row.ttl <= now_secs() + 30);
    assert!(mgmt.calls().is_empty(), "nothing is posted from $connect");

    // auth: reply through the management API, at the stage path.
    ok(&runtime, connect("alice1=")).await;
    ok(
        &runtime,
        message(
            "alice1=",
            json!({"action": "auth", "token": token("alice", &["acme"])}),
        ),
    )
    .await;
    let call = mgmt.calls_for("alice1=").pop().unwrap();
    assert_eq!(call.method, "POST");
    assert_eq!(call.stage.as_deref(), Some("dev"));
    assert_eq!(
        call.json(),
        json!({"action": "auth", "success": true, "userId": "alice", "tenantId": "acme"})
    );
    let row = store.get("alice1=").await.unwrap().unwrap();
    assert!(row.authenticated);
    assert!(row.ttl > now_secs() + 7000);

    auth(&runtime, &mgmt, "bob1=", "bob", &["acme"]).await;
    auth(&runtime, &mgmt, "bob2=", "bob", &["acme"]).await;
    auth(&runtime, &mgmt, "bob3=", "bob", &["globex"]).await;

    // Multi-device send inside the tenant, through the userId GSI.
    ok(
        &runtime,
        message(
            "alice1=",
            json!({"action": "send", "to": "bob", "data": "hi"}),
        ),
    )
    .await;
    let expected = json!({"action": "message", "from": "alice", "data": "hi"});
    assert_eq!(mgmt.posts_to("bob1=").pop().unwrap(), expected);
    assert_eq!(mgmt.posts_to("bob2=").pop().unwrap(), expected);
    assert_eq!(
        mgmt.posts_to("bob3=").len(),
        1,
        "only its auth reply: other tenant"
    );
    assert_eq!(
        mgmt.posts_to("alice1=").pop().unwrap(),
        json!({"action": "send", "delivered": 2})
    );

    // Broadcast in the tenant: unauthenticated and other-tenant connections get nothing.
    ok(
        &runtime,
        message("alice1=", json!({"action": "broadcast", "data": 7})),
    )
    .await;
    let expected = json!({"action": "message", "from": "alice", "data": 7});
    for id in ["alice1=", "bob1=", "bob2="] {
        assert_eq!(mgmt.posts_to(id).pop().unwrap(), expected, "{id}");
    }
    assert!(mgmt.posts_to("anon=").is_empty());
    assert_eq!(mgmt.posts_to("bob3=").len(), 1);

    // 410 Gone removes exactly that record.
    mgmt.gone("bob2=");
    ok(
        &runtime,
        message("alice1=", json!({"action": "send", "to": "bob", "data": 2})),
    )
    .await;
    assert_eq!(
        mgmt.posts_to("alice1=").pop().unwrap(),
        json!({"action": "send", "delivered": 1})
    );
    assert!(store.get("bob2=").await.unwrap().is_none());
    assert!(store.get("bob1=").await.unwrap().is_some());
    assert!(store.get("bob3=").await.unwrap().is_some());

    // Client mistakes: answered, and the invocation still succeeds.
    ok(
        &runtime,
        message("alice1=", Value::String("{not json".into())),
    )
    .await;
    assert_eq!(
        mgmt.posts_to("alice1=").pop().unwrap()["error"]["code"],
        "bad_request"
    );
    ok(
        &runtime,
        message("anon=", json!({"action": "broadcast", "data": 1})),
    )
    .await;
    assert_eq!(
        mgmt.posts_to("anon=").pop().unwrap()["error"]["code"],
        "unauthorized"
    );
    ok(
        &runtime,
        message(
            "anon=",
            json!({"action": "auth", "token": "forged.token.x"}),
        ),
    )
    .await;
    assert_eq!(
        mgmt.posts_to("anon=").pop().unwrap()["error"]["code"],
        "invalid_token"
    );

    // The auth window, enforced on the next message: unauthorized, DELETE, record removed.
    store
        .save(&Connection::unauthenticated("late=", 1, now_secs() - 1))
        .await
        .unwrap();
    ok(
        &runtime,
        message("late=", json!({"action": "send", "to": "bob", "data": 1})),
    )
    .await;
    let calls = mgmt.calls_for("late=");
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].json()["error"]["code"], "unauthorized");
    assert_eq!(calls[1].method, "DELETE");
    assert!(store.list_expired().await.unwrap().is_empty());

    // ... and by the scheduled sweep for connections that never send anything.
    store
        .save(&Connection::unauthenticated("silent=", 1, now_secs() - 1))
        .await
        .unwrap();
    let swept = runtime.invoke(scheduled()).await.unwrap();
    assert_eq!(
        swept,
        json!({"expired": 1, "closed": 1, "kept": 0, "complete": true})
    );
    let calls = mgmt.calls_for("silent=");
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].json()["error"]["code"], "unauthorized");
    assert_eq!(calls[1].method, "DELETE");
    assert!(store.list_expired().await.unwrap().is_empty());
    assert!(
        store.get("anon=").await.unwrap().is_some(),
        "live windows are untouched"
    );

    // $disconnect removes the record.
    ok(&runtime, disconnect("bob1=")).await;
    assert!(store.get("bob1=").await.unwrap().is_none());

    // Something that is not a WebSocket event is a real failure: a Lambda error.
    let err = runtime.invoke(json!({"hello": "world"})).await.unwrap_err();
    assert!(err.to_string().contains("WebSocket"), "{err}");

    assert!(runtime.init_errors().is_empty());
}

#[test]
fn missing_jwt_configuration_is_a_clear_startup_error() {
    let out = clean_command()
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("VK_WS_TABLE", "connections")
        .env("CHAT_HISTORY_TABLE", "history")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("VK_WS_JWT_SECRET"), "{stderr}");
    assert!(stderr.contains("VK_WS_JWKS_URL"), "{stderr}");
}

/// Runs `bin` as the function with `VK_WS_PANIC_PROBE=1`: a panicking action must be
/// answered `internal`, and the same process must serve the next invocation.
async fn panics_are_contained(bin: &str) {
    let client = dynamo_client();
    let table = fresh_table(&client, "panic").await;
    history_table(&client, &table).await;
    let runtime = RuntimeApi::start().await;
    let mgmt = ManagementServer::start().await;
    let log = std::env::temp_dir().join(format!("vk-panic-{:08x}.log", rand_suffix()));
    let child = with_lambda_env(clean_command_for(bin), &runtime, &table, &mgmt)
        .env("VK_WS_PANIC_PROBE", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut function = Function(child);
    ok(&runtime, connect("p1=")).await;
    ok(
        &runtime,
        message("p1=", json!({"action": "vk:panic-probe"})),
    )
    .await;
    let reply = mgmt.posts_to("p1=").pop().expect("the panic was answered");
    assert_eq!(reply["action"], "error", "{reply}");
    assert_eq!(reply["requestAction"], "vk:panic-probe", "{reply}");
    assert_eq!(reply["error"]["code"], "internal", "{reply}");
    ok(&runtime, message("p1=", json!({"action": "ping"}))).await;
    let reply = mgmt.posts_to("p1=").pop().unwrap();
    assert_eq!(
        reply["action"], "pong",
        "the same process served on: {reply}"
    );
    assert!(
        function.0.try_wait().unwrap().is_none(),
        "the function process is still alive"
    );
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(
        !stderr.contains("panic = \"abort\""),
        "built with panic = \"abort\":\n{stderr}"
    );
}

fn rand_suffix() -> u32 {
    std::process::id() ^ (now_secs() as u32)
}

/// The debug binary, or the artifact users deploy when `VK_TEST_BOOTSTRAP` names it: `.ci/run`
/// builds it with `cargo lambda build --release` (which adds `panic = "abort"` unless the
/// workspace sets `panic`) and runs this test again with
/// `VK_TEST_BOOTSTRAP=target/lambda/x86_64/chat/bootstrap`.
#[tokio::test]
async fn a_panicking_action_is_internal_and_the_function_serves_on() {
    let bin = match std::env::var("VK_TEST_BOOTSTRAP") {
        // Relative paths are from the workspace root (tests run in the package's directory).
        Ok(bin) => {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            std::fs::canonicalize(root.join(&bin))
                .unwrap_or_else(|e| panic!("VK_TEST_BOOTSTRAP={bin}: {e}"))
        }
        Err(_) => std::path::PathBuf::from(BIN),
    };
    eprintln!("testing {}", bin.display());
    panics_are_contained(bin.to_str().unwrap()).await;
}

/// The second round on Lambda: `ref` replies, roles with claims kept in DynamoDB, the
/// history in its own DynamoDB table, `kick`, and `left` notices from the disconnect hook.
#[tokio::test]
async fn refs_roles_history_kick_and_left_notices_on_lambda() {
    let client = dynamo_client();
    let table = fresh_table(&client, "round2").await;
    history_table(&client, &table).await;
    let store = DynamoStore::new(client.clone(), table.clone());
    let runtime = RuntimeApi::start().await;
    let mgmt = ManagementServer::start().await;
    let _function = start(&runtime, &table, &mgmt);

    // auth with a ref; the admin's roles are kept on the record as a DynamoDB map.
    ok(&runtime, connect("ann=")).await;
    let admin = venturekit_ws_tests::token_as("ann", &["acme"], &["admin"], json!({}));
    ok(
        &runtime,
        message(
            "ann=",
            json!({"action": "auth", "ref": "a1", "token": admin}),
        ),
    )
    .await;
    assert_eq!(
        mgmt.posts_to("ann=").pop().unwrap(),
        json!({"action": "auth", "ref": "a1", "success": true, "userId": "ann", "tenantId": "acme"})
    );
    let row = store.get("ann=").await.unwrap().unwrap();
    assert_eq!(row.claims.strings("roles"), ["admin"]);
    auth(&runtime, &mgmt, "bob1=", "bob", &["acme"]).await;
    auth(&runtime, &mgmt, "bob2=", "bob", &["acme"]).await;
    auth(&runtime, &mgmt, "carol=", "carol", &["acme"]).await;

    // ping with an integer ref.
    ok(
        &runtime,
        message("carol=", json!({"action": "ping", "ref": 5})),
    )
    .await;
    let pong = mgmt.posts_to("carol=").pop().unwrap();
    assert_eq!(
        (pong["action"].clone(), pong["ref"].clone()),
        (json!("pong"), json!(5))
    );

    // History lives in DynamoDB: a broadcast, then `history` from another invocation.
    ok(
        &runtime,
        message("carol=", json!({"action": "broadcast", "data": "hello"})),
    )
    .await;
    ok(
        &runtime,
        message("bob1=", json!({"action": "history", "ref": "h"})),
    )
    .await;
    let history = mgmt.posts_to("bob1=").pop().unwrap();
    assert_eq!(history["ref"], "h");
    assert_eq!(history["messages"][0]["from"], "carol");
    assert_eq!(history["messages"][0]["data"], "hello");

    // A non-admin may not kick.
    ok(
        &runtime,
        message(
            "carol=",
            json!({"action": "kick", "ref": 1, "userId": "bob"}),
        ),
    )
    .await;
    let refused = mgmt.posts_to("carol=").pop().unwrap();
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    assert_eq!(refused["ref"], 1);
    assert!(store.get("bob1=").await.unwrap().is_some());

    // The admin does: both of bob's connections are told, closed and removed; the
    // scope hears why.
    ok(
        &runtime,
        message("ann=", json!({"action": "kick", "ref": 2, "userId": "bob"})),
    )
    .await;
    for id in ["bob1=", "bob2="] {
        let calls = mgmt.calls_for(id);
        let last_two: Vec<_> = calls.iter().rev().take(2).collect();
        assert_eq!(last_two[0].method, "DELETE", "{calls:?}");
        assert_eq!(last_two[1].json(), json!({"action": "kicked", "by": "ann"}));
        assert!(store.get(id).await.unwrap().is_none());
    }
    let to_carol = mgmt.posts_to("carol=");
    let left: Vec<_> = to_carol.iter().filter(|f| f["action"] == "left").collect();
    assert_eq!(left.len(), 2, "{to_carol:?}");
    assert_eq!(
        left[0],
        &json!({"action": "left", "userId": "bob", "reason": "closed"})
    );
    let reply = mgmt
        .posts_to("ann=")
        .into_iter()
        .find(|f| f["action"] == "kick")
        .unwrap();
    assert_eq!(reply, json!({"action": "kick", "ref": 2, "closed": 2}));

    // $disconnect: the record is removed and the scope hears reason `client`, once.
    ok(&runtime, disconnect("carol=")).await;
    ok(&runtime, disconnect("carol=")).await;
    let to_ann: Vec<_> = mgmt
        .posts_to("ann=")
        .into_iter()
        .filter(|f| f["userId"] == "carol")
        .collect();
    assert_eq!(
        to_ann,
        [json!({"action": "left", "userId": "carol", "reason": "client"})]
    );
}

/// Rooms on Lambda with the DynamoDB topics table: presence, `say`, tenant isolation, a
/// synthetic leave after a 410, and the sweeper's leaves.
#[tokio::test]
async fn rooms_with_presence_on_lambda_and_dynamodb() {
    let client = dynamo_client();
    let table = fresh_table(&client, "rooms").await;
    history_table(&client, &table).await;
    let store = DynamoStore::new(client.clone(), table.clone());
    let runtime = RuntimeApi::start().await;
    let mgmt = ManagementServer::start().await;
    let _function = start(&runtime, &table, &mgmt);
    for (id, user, tenant) in [
        ("a1=", "alice", "acme"),
        ("b1=", "bob", "acme"),
        ("c1=", "carol", "acme"),
        ("g1=", "gus", "globex"),
    ] {
        auth(&runtime, &mgmt, id, user, &[tenant]).await;
        let r = id.trim_end_matches('=');
        let join = json!({"action": "vk:join", "ref": r, "topic": "room:1", "meta": {"who": user}});
        ok(&runtime, message(id, join)).await;
        let posts = mgmt.posts_to(id);
        assert!(
            posts.contains(&json!({"action": "vk:join", "ref": r, "topic": "room:1", "ok": true})),
            "{posts:?}"
        );
    }
    // Gus, alone in globex's room:1, sees only himself.
    let state = mgmt
        .posts_to("g1=")
        .into_iter()
        .find(|f| f["action"] == "vk:presence_state")
        .unwrap();
    assert_eq!(
        state["presences"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["gus"]
    );
    // Alice heard bob and carol join.
    let joins: Vec<_> = mgmt
        .posts_to("a1=")
        .into_iter()
        .filter(|f| f["action"] == "vk:presence_diff")
        .map(|f| {
            f["joins"]
                .as_object()
                .unwrap()
                .keys()
                .next()
                .unwrap()
                .clone()
        })
        .collect();
    assert_eq!(joins, ["alice", "bob", "carol"]);

    // say reaches the three acme members only.
    ok(
        &runtime,
        message(
            "a1=",
            json!({"action": "say", "ref": 9, "room": "room:1", "data": "hi"}),
        ),
    )
    .await;
    assert_eq!(
        mgmt.posts_to("a1=").pop().unwrap(),
        json!({"action": "say", "ref": 9, "delivered": 3})
    );
    assert!(
        !mgmt
            .posts_to("g1=")
            .iter()
            .any(|f| f["action"] == "message")
    );

    // Bob's socket vanished: the next say gets 410 for him; his record and membership go,
    // and the room hears a synthetic leave.
    mgmt.gone("b1=");
    ok(
        &runtime,
        message("a1=", json!({"action": "say", "room": "room:1", "data": 2})),
    )
    .await;
    assert!(store.get("b1=").await.unwrap().is_none());
    let to_carol = mgmt.posts_to("c1=");
    assert!(
        to_carol
            .iter()
            .any(|f| f["action"] == "vk:presence_diff" && f["leaves"].get("bob").is_some()),
        "{to_carol:?}"
    );
    assert!(to_carol.contains(&json!({"action": "left", "userId": "bob", "reason": "gone"})));

    // Alice's session expires; the scheduled sweep removes her and the room hears it.
    let mut expired = store.get("a1=").await.unwrap().unwrap();
    expired.ttl = now_secs() - 1;
    store.save(&expired).await.unwrap();
    let swept = runtime.invoke(scheduled()).await.unwrap();
    assert_eq!(swept["expired"], 1, "{swept}");
    let to_carol = mgmt.posts_to("c1=");
    assert!(
        to_carol
            .iter()
            .any(|f| f["action"] == "vk:presence_diff" && f["leaves"].get("alice").is_some()),
        "{to_carol:?}"
    );
    assert!(to_carol.contains(&json!({"action": "left", "userId": "alice", "reason": "expired"})));
}

/// The lines `stream` (the function's stdout or stderr) has written so far, read on a thread.
fn collect_lines(
    stream: impl std::io::Read + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::BufRead;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// The EMF lines the function printed so far (stdout lines starting `{"_aws"`).
fn emf_lines(lines: &std::sync::Mutex<Vec<String>>) -> Vec<Value> {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("{\"_aws\""))
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("an EMF line is not JSON ({e}): {l}"))
        })
        .collect()
}

#[tokio::test]
async fn every_invocation_writes_cloudwatch_emf_metrics() {
    let client = dynamo_client();
    let table = fresh_table(&client, "emf").await;
    history_table(&client, &table).await;
    let runtime = RuntimeApi::start().await;
    let mgmt = ManagementServer::start().await;
    let mut child = with_lambda_env(clean_command(), &runtime, &table, &mgmt)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _function = Function(child);
    let lines = collect_lines(stdout);

    // A scripted session: alice authenticates, bob fails twice, alice broadcasts (reaching
    // herself), sends an unknown action, and bob's guarded message is refused.
    auth(&runtime, &mgmt, "alice=", "alice", &["acme"]).await;
    ok(&runtime, connect("bob=")).await;
    for _ in 0..2 {
        ok(
            &runtime,
            message("bob=", json!({"action": "auth", "token": "not.a.jwt"})),
        )
        .await;
    }
    ok(
        &runtime,
        message("alice=", json!({"action": "broadcast", "data": 1})),
    )
    .await;
    ok(
        &runtime,
        message("alice=", json!({"action": "no-such-action"})),
    )
    .await;
    ok(
        &runtime,
        message("bob=", json!({"action": "broadcast", "data": 2})),
    )
    .await;

    let mut documents = Vec::new();
    for _ in 0..100 {
        documents = emf_lines(&lines);
        if documents
            .iter()
            .filter(|d| d["Action"] == "broadcast")
            .count()
            >= 2
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Every document is valid EMF in the VentureKitWs namespace.
    for d in &documents {
        let directive = &d["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "VentureKitWs", "{d}");
        assert!(d["_aws"]["Timestamp"].as_i64().unwrap() > 1_700_000_000_000);
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(d[name].is_number(), "{name} missing in {d}");
        }
        for dimension in directive["Dimensions"][0].as_array().unwrap() {
            assert!(d[dimension.as_str().unwrap()].is_string(), "{d}");
        }
    }
    let sum = |action: &str, metric: &str| -> f64 {
        documents
            .iter()
            .filter(|d| d["Action"] == action)
            .map(|d| d[metric].as_f64().unwrap())
            .sum()
    };
    assert_eq!(sum("auth", "Messages"), 3.0, "{documents:#?}");
    assert_eq!(sum("auth", "Delivered"), 3.0, "three auth replies");
    assert_eq!(sum("broadcast", "Messages"), 2.0);
    assert_eq!(
        sum("broadcast", "Delivered"),
        2.0,
        "alice's message to herself, and bob's refusal"
    );
    assert_eq!(
        sum("unknown", "Messages"),
        1.0,
        "client-chosen names never become dimensions"
    );
    assert!(documents.iter().all(|d| d["Action"] != "no-such-action"));
    let failures: f64 = documents
        .iter()
        .filter(|d| d["Code"] == "invalid_token")
        .map(|d| d["AuthFailures"].as_f64().unwrap())
        .sum();
    assert_eq!(failures, 2.0);
}

/// Log lines written while a message is handled carry its span (connection id, action, `ref`,
/// user, tenant) inside lambda_runtime's invocation span (Lambda's request id and X-Ray trace
/// id).
#[tokio::test]
async fn log_lines_carry_the_message_span_and_the_lambda_trace_id() {
    let client = dynamo_client();
    let table = fresh_table(&client, "span").await;
    history_table(&client, &table).await;
    let runtime = RuntimeApi::start().await;
    let mgmt = ManagementServer::start().await;
    let mut child = with_lambda_env(clean_command(), &runtime, &table, &mgmt)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _function = Function(child);
    let lines = collect_lines(stderr);
    let line_with = |needle: &'static str| {
        let lines = lines.clone();
        async move {
            for _ in 0..250 {
                if let Some(line) = lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
                    return line.clone();
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            panic!(
                "no log line with {needle:?} in {:#?}",
                lines.lock().unwrap()
            );
        }
    };

    // Alice (no admin role) asks to kick bob, with a `ref`: refused as `forbidden`, and the
    // log line says who, what, which request and which trace.
    auth(&runtime, &mgmt, "alice=", "alice", &["acme"]).await;
    ok(
        &runtime,
        message(
            "alice=",
            json!({"action": "kick", "ref": "k-1", "userId": "bob"}),
        ),
    )
    .await;
    let refused = mgmt.posts_to("alice=").pop().expect("no reply to kick");
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    let line = line_with("forbidden").await;
    for field in [
        "Lambda runtime invoke{requestId=",
        "xrayTraceId=\"Root=1-00000000-000000000000000000000000\"}:message{",
        "message{connection_id=alice= ",
        "action=\"kick\"",
        "ref=\"k-1\"",
        "user=\"alice\"",
        "tenant=\"acme\"",
    ] {
        assert!(line.contains(field), "{field} missing in: {line}");
    }

    // A refused token: the span has the connection and the action, a numeric `ref` as is.
    ok(&runtime, connect("bob=")).await;
    ok(
        &runtime,
        message(
            "bob=",
            json!({"action": "auth", "token": "not.a.jwt", "ref": 7}),
        ),
    )
    .await;
    let line = line_with("auth refused").await;
    for field in [
        "xrayTraceId=\"Root=1-",
        "message{connection_id=bob= action=\"auth\" ref=7}",
        "code=invalid_token",
    ] {
        assert!(line.contains(field), "{field} missing in: {line}");
    }
}

#[tokio::test]
async fn large_broadcasts_spill_to_the_fanout_queue_and_sqs_invocations_deliver_them() {
    let client = dynamo_client();
    let table = fresh_table(&client, "spillbin").await;
    history_table(&client, &table).await;
    let sqs = sqs_client();
    let url = fresh_queue(&sqs, "spillbin").await;
    let runtime = RuntimeApi::start().await;
    let mgmt = ManagementServer::start().await;
    // The function's own settings, as the generated template sets them.
    let mut cmd = with_lambda_env(clean_command(), &runtime, &table, &mgmt);
    cmd.env("VK_WS_FANOUT_QUEUE_URL", &url)
        .env("AWS_ENDPOINT_URL_SQS", moto_endpoint())
        .env("VK_WS_SPILL_THRESHOLD", "3")
        .env("VK_WS_FANOUT_WORKERS", "2")
        .env("VK_WS_FANOUT_RATE", "100000");
    let _function = Function(cmd.stdout(Stdio::null()).spawn().unwrap());

    let ids: Vec<String> = (0..7).map(|i| format!("member{i}=")).collect();
    for (i, id) in ids.iter().enumerate() {
        auth(&runtime, &mgmt, id, &format!("user{i}"), &["acme"]).await;
    }
    ok(
        &runtime,
        message(
            &ids[0],
            json!({"action": "broadcast", "data": "to everyone"}),
        ),
    )
    .await;
    let frame = json!({"action": "message", "from": "user0", "data": "to everyone"});
    let delivered = |id: &str| {
        mgmt.posts_to(id)
            .into_iter()
            .filter(|p| *p == frame)
            .count()
    };
    assert!(
        ids.iter().all(|id| delivered(id) == 0),
        "7 connections > threshold 3: the broadcast is queued, not posted"
    );
    assert_eq!(queue_depth(&sqs, &url).await, 3, "7 ids in pages of 3");

    // The event source mapping's part: SQS events into the same function.
    let mut invocations = 0;
    loop {
        let batch = receive(&sqs, &url).await;
        if batch.is_empty() {
            break;
        }
        let event = sqs_event(
            &batch
                .iter()
                .map(|m| (m.id.clone(), m.body.clone()))
                .collect::<Vec<_>>(),
        );
        let response = runtime
            .invoke(event)
            .await
            .unwrap_or_else(|e| panic!("the SQS invocation failed: {e}"));
        assert_eq!(settle(&sqs, &url, &batch, &response).await, 0, "{response}");
        invocations += 1;
        assert!(invocations < 20, "the queue does not drain");
    }
    for id in &ids {
        assert_eq!(delivered(id), 1, "{id} must receive the broadcast once");
    }
}

/// The body of an invocation's response: the frame API Gateway sends back to the caller
/// through the route response.
fn body(response: &Value) -> Value {
    let text = response["body"]
        .as_str()
        .unwrap_or_else(|| panic!("no reply in the response: {response}"));
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn replies_travel_in_the_route_response_and_pushes_keep_their_order() {
    let client = dynamo_client();
    let table = fresh_table(&client, "route").await;
    history_table(&client, &table).await;
    let runtime = RuntimeApi::start().await;
    let mgmt = ManagementServer::start().await;
    let _function = Function(
        with_lambda_env(clean_command(), &runtime, &table, &mgmt)
            .env("VK_WS_ROUTE_RESPONSE", "1")
            .env("VK_WS_MAX_AUTH_FAILURES", "1")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // $connect answers no body (API Gateway would not forward one anyway).
    let connected = ok(&runtime, connect("alice1=")).await;
    assert!(
        connected.get("body").is_none_or(Value::is_null),
        "{connected}"
    );
    for (id, user) in [("alice1=", "alice"), ("bob1=", "bob")] {
        if id != "alice1=" {
            ok(&runtime, connect(id)).await;
        }
        let auth = json!({"action": "auth", "token": token(user, &["acme"])});
        let response = ok(&runtime, message(id, auth)).await;
        assert_eq!(
            body(&response),
            json!({"action": "auth", "success": true, "userId": user, "tenantId": "acme"})
        );
    }
    assert!(
        mgmt.calls().is_empty(),
        "replies need no management API call: {:?}",
        mgmt.calls()
    );

    // A request with a ref: the reply in the response, the push to bob through the API.
    let response = ok(
        &runtime,
        message(
            "alice1=",
            json!({"action": "send", "to": "bob", "data": "hi", "ref": "r1"}),
        ),
    )
    .await;
    assert_eq!(
        body(&response),
        json!({"action": "send", "ref": "r1", "delivered": 1})
    );
    assert_eq!(
        mgmt.posts_to("bob1=").pop().unwrap(),
        json!({"action": "message", "from": "alice", "data": "hi"})
    );
    assert!(mgmt.posts_to("alice1=").is_empty());

    // A broadcast reaches the caller too. Without a ref it has no reply: the caller's
    // copy is the last frame, so it travels in the response.
    let response = ok(
        &runtime,
        message("alice1=", json!({"action": "broadcast", "data": 7})),
    )
    .await;
    let pushed = json!({"action": "message", "from": "alice", "data": 7});
    assert_eq!(body(&response), pushed);
    assert_eq!(mgmt.posts_to("bob1=").pop().unwrap(), pushed);
    assert!(mgmt.posts_to("alice1=").is_empty());
    // With a ref it is acknowledged: the caller's copy is posted (it came first), the
    // acknowledgement travels in the response (it comes last).
    let response = ok(
        &runtime,
        message(
            "alice1=",
            json!({"action": "broadcast", "data": 8, "ref": "b1"}),
        ),
    )
    .await;
    let pushed = json!({"action": "message", "from": "alice", "data": 8});
    assert_eq!(mgmt.posts_to("alice1="), vec![pushed.clone()]);
    assert_eq!(mgmt.posts_to("bob1=").pop().unwrap(), pushed);
    assert_eq!(
        body(&response),
        json!({"action": "broadcast", "ref": "b1", "ok": true}),
        "{response}"
    );

    // Client mistakes are answered in the response too.
    let response = ok(
        &runtime,
        message("alice1=", Value::String("{not json".into())),
    )
    .await;
    assert_eq!(body(&response)["error"]["code"], "bad_request");
    let response = ok(&runtime, message("alice1=", json!({"action": "ping"}))).await;
    assert_eq!(body(&response)["action"], "pong");

    // A reply followed by a close: a closed connection gets no response, so the error is
    // posted first, then the connection is deleted.
    ok(&runtime, connect("anon=")).await;
    let response = ok(
        &runtime,
        message(
            "anon=",
            json!({"action": "auth", "token": "forged.token.x"}),
        ),
    )
    .await;
    assert!(
        response.get("body").is_none_or(Value::is_null),
        "{response}"
    );
    let calls: Vec<(String, String)> = mgmt
        .calls_for("anon=")
        .into_iter()
        .map(|c| {
            let code = c.json()["error"]["code"].as_str().unwrap_or("").to_owned();
            (c.method, code)
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("POST".to_owned(), "invalid_token".to_owned()),
            ("DELETE".to_owned(), String::new())
        ]
    );
}
