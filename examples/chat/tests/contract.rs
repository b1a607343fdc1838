//! The chat's contract (`contract --out DIR`): the committed copy is current; frames are
//! judged the same by serde, the JSON Schemas and the AsyncAPI document; the official
//! AsyncAPI parser accepts the document; `client.ts` compiles with `tsc --strict`; and the
//! generated client drives every chat action under Node against the local server.
//!
//! The Node checks need the packages `scripts/node.sh` installs (the test command runs it
//! and sets `VK_TEST_NODE_TOOLS`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/contract.rs"]
mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{Checker, contract};

fn committed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contract")
}

fn generated() -> tempdir::Dir {
    let dir = tempdir::Dir::new("contract");
    contract().write(dir.path()).unwrap();
    dir
}

/// A scratch directory, removed when dropped.
mod tempdir {
    pub(crate) struct Dir(std::path::PathBuf);
    impl Dir {
        pub(crate) fn new(label: &str) -> Dir {
            let path = std::env::temp_dir().join(format!(
                "vk-{label}-{}-{}",
                std::process::id(),
                rand_suffix()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
        pub(crate) fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn rand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    }
}

fn files(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                found.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn the_committed_contract_is_current() {
    let fresh = generated();
    let want = files(fresh.path());
    let have = files(&committed());
    let names = |f: &[(String, String)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&have),
        names(&want),
        "examples/chat/contract/ is stale: run `cargo run -p chat -- contract --out examples/chat/contract`"
    );
    for ((name, have), (_, want)) in have.iter().zip(&want) {
        assert!(
            have == want,
            "examples/chat/contract/{name} is stale: run `cargo run -p chat -- contract --out examples/chat/contract`"
        );
    }
}

/// The example frames of docs/PROTOCOL.md and the README (`→` lines and ```json blocks)
/// that are complete JSON.
fn documented_frames() -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut frames = Vec::new();
    for doc in ["docs/PROTOCOL.md", "README.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        let mut in_json = false;
        for line in text.lines() {
            if line.starts_with("```") {
                in_json = line == "```json";
                continue;
            }
            let candidate = match line.strip_prefix("→ ") {
                Some(rest) => rest,
                None if in_json => line,
                None => continue,
            };
            let mut stream = serde_json::Deserializer::from_str(candidate).into_iter::<Value>();
            if let Some(Ok(frame)) = stream.next() {
                frames.push(frame);
            }
        }
    }
    frames
}

#[tokio::test]
async fn documented_and_hostile_frames_are_judged_alike_three_ways() {
    let checker = Checker::new().await;
    let documented = documented_frames();
    let mut judged = 0;
    for frame in &documented {
        if let Some(accepted) = checker.agree(frame).await {
            assert!(accepted, "a documented frame is refused: {frame}");
            judged += 1;
        }
    }
    assert!(judged >= 6, "only {judged} documented frames were judged");
    let rejected = [
        json!({"action": "send", "to": 7, "data": 1}),
        json!({"action": "send", "data": 1}),
        json!({"action": "kick"}),
        json!({"action": "kick", "userId": ["bob"]}),
        json!({"action": "say", "room": "room:1"}),
        json!({"action": "broadcast"}),
        json!({"action": "auth"}),
        json!({"action": "auth", "token": 42}),
        json!({"action": "auth", "token": "t", "tenantId": 7}),
        json!({"action": "vk:join"}),
        json!({"action": "vk:join", "topic": 7}),
        json!({"action": "ping", "ref": ""}),
        json!({"action": "send", "to": "bob", "data": 1, "ref": "no spaces"}),
        json!({"action": "history", "ref": -1}),
        json!({"action": "broadcast", "data": 1, "ref": 9007199254740992u64}),
    ];
    for frame in &rejected {
        assert_eq!(checker.agree(frame).await, Some(false), "{frame}");
    }
    let accepted = [
        json!({"action": "send", "to": "bob", "data": {"any": ["json"]}, "ref": 7}),
        json!({"action": "kick", "userId": "bob", "ref": "k-1"}),
        json!({"action": "history", "extra": true}),
        json!({"action": "say", "room": "room:9", "data": null}),
        json!({"action": "vk:leave", "topic": "room:9", "ref": "a.b:c_d-1"}),
    ];
    for frame in &accepted {
        assert_eq!(checker.agree(frame).await, Some(true), "{frame}");
    }
}

/// The Node tools folder, or a failure saying how to get it.
fn node_tools() -> PathBuf {
    let dir = std::env::var_os("VK_TEST_NODE_TOOLS").map(PathBuf::from).unwrap_or_else(|| {
        panic!("VK_TEST_NODE_TOOLS is not set: run the test command (scripts/test.sh), or `VK_TEST_NODE_TOOLS=$(scripts/node.sh) cargo test -p chat --test contract`")
    });
    assert!(
        dir.join("node_modules/.bin/tsc").exists(),
        "{} has no node_modules: run scripts/node.sh",
        dir.display()
    );
    dir
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

#[test]
fn the_official_asyncapi_parser_accepts_the_document() {
    let tools = node_tools();
    let out = run(Command::new("node")
        .arg(tools.join("asyncapi-check.mjs"))
        .arg(committed().join("asyncapi.json"))
        .current_dir(&tools));
    assert!(out.contains("valid AsyncAPI 3.0.0"), "{out}");
    assert!(!out.contains("error:"), "{out}");
}

fn tsc(tools: &Path, dir: &Path, emit: bool) -> String {
    let config = json!({
        "compilerOptions": {
            "strict": true,
            "noEmit": !emit,
            "target": "es2020",
            "lib": ["es2020"],
            "module": "es2020",
            "types": [],
            "outDir": dir.join("js"),
        },
        "files": [dir.join("client.ts")]
    });
    let path = dir.join("tsconfig.json");
    std::fs::write(&path, config.to_string()).unwrap();
    run(Command::new(tools.join("node_modules/.bin/tsc"))
        .arg("-p")
        .arg(&path))
}

#[test]
fn client_ts_compiles_with_tsc_strict() {
    let tools = node_tools();
    let dir = tempdir::Dir::new("tsc");
    std::fs::copy(committed().join("client.ts"), dir.path().join("client.ts")).unwrap();
    tsc(&tools, dir.path(), false);
}

#[tokio::test]
async fn the_generated_client_drives_every_chat_action_under_node() {
    let tools = node_tools();
    let dir = tempdir::Dir::new("e2e");
    std::fs::copy(committed().join("client.ts"), dir.path().join("client.ts")).unwrap();
    tsc(&tools, dir.path(), true);
    // Node loads the compiled ES module: mark its folder as `"type": "module"`.
    std::fs::write(dir.path().join("js/package.json"), r#"{"type":"module"}"#).unwrap();

    let mut config = venturekit_ws::Config::default();
    let secret = b"the-contract-e2e-secret-of-32-bytes!".to_vec();
    config.jwt_key = Some(venturekit_ws::config::JwtKey::Secret(secret.clone()));
    let app = chat::configure(
        venturekit_ws::App::new(config.clone()),
        chat::History::new(chat::MemoryHistory::default()),
    );
    let server = app
        .local_server("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let task = tokio::spawn(server.serve());
    let token = |user: &str, roles: &[&str]| {
        let spec = venturekit_ws::auth::DevToken {
            sub: user.into(),
            tenants: vec!["acme".into()],
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            ..Default::default()
        };
        venturekit_ws::auth::mint_dev_token(&secret, &spec, &config).unwrap()
    };
    let (alice, bob, ann) = (
        token("alice", &[]),
        token("bob", &[]),
        token("ann", &["admin"]),
    );
    let client_js = dir.path().join("js/client.js");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(tools.join("e2e.mjs"))
            .current_dir(&tools)
            .env("VK_CLIENT_JS", client_js)
            .env("VK_URL", url)
            .env("VK_TOKEN_ALICE", alice)
            .env("VK_TOKEN_BOB", bob)
            .env("VK_TOKEN_ANN", ann)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    task.abort();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the Node end-to-end run failed:\n{text}"
    );
    assert!(text.contains("every chat action passed"), "{text}");
}
