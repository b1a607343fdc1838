//! The chat binary as a user runs it: `token` prints a dev JWT, the default command serves
//! the local emulator, Lambda mode and bad configuration fail with clear messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_chat");

fn chat() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("VK_WS_") || key.starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

fn mint(secret: Option<&str>, args: &[&str]) -> (String, String) {
    let mut cmd = chat();
    if let Some(secret) = secret {
        cmd.env("VK_WS_JWT_SECRET", secret);
    }
    let out = cmd.arg("token").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn token_prints_only_the_jwt_on_stdout() {
    let (stdout, stderr) = mint(
        Some("cli-secret"),
        &[
            "--sub",
            "alice",
            "--tenant",
            "acme",
            "--email",
            "a@example.com",
        ],
    );
    let token = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["tenantId"], "acme");
    assert_eq!(claims["email"], "a@example.com");
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());
    assert!(stderr.contains("\"action\":\"auth\""), "{stderr}");
}

#[test]
fn token_without_a_secret_uses_the_dev_secret_and_says_so() {
    let (stdout, stderr) = mint(None, &["--sub", "bob"]);
    assert_eq!(stdout.trim().split('.').count(), 3);
    assert!(stderr.contains("dev secret"), "{stderr}");
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn cargo_run_serves_the_chat_and_a_minted_token_works() {
    let mut child = chat()
        .env("VK_WS_LISTEN", "127.0.0.1:0")
        .env("VK_WS_JWT_SECRET", "serve-secret")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _guard = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("ws://") {
                let _ = tx.send(line[at..].trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server never printed its ws:// address");

    let (token, _) = mint(Some("serve-secret"), &["--sub", "alice"]);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let auth = serde_json::json!({"action": "auth", "token": token.trim()});
    ws.send(Message::text(auth.to_string())).await.unwrap();
    let reply = next_json(&mut ws).await;
    assert_eq!(
        reply,
        serde_json::json!({"action": "auth", "success": true, "userId": "alice"})
    );
    ws.send(Message::text(r#"{"action":"broadcast","data":"hello"}"#))
        .await
        .unwrap();
    let reply = next_json(&mut ws).await;
    assert_eq!(
        reply,
        serde_json::json!({"action": "message", "from": "alice", "data": "hello"})
    );
}

async fn next_json<S>(ws: &mut S) -> serde_json::Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no reply")
            .expect("closed")
            .unwrap();
        if let Message::Text(text) = msg {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

#[test]
fn lambda_mode_without_configuration_fails_clearly() {
    // The chat's own setting: history must not live in one instance's memory.
    let out = chat()
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CHAT_HISTORY_TABLE"), "{stderr}");
    // The framework's.
    let out = chat()
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("CHAT_HISTORY_TABLE", "history")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("VK_WS_TABLE"), "{stderr}");
}

#[test]
fn invalid_configuration_names_the_variable() {
    let out = chat()
        .env("VK_WS_AUTH_TIMEOUT_SEC", "soon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("VK_WS_AUTH_TIMEOUT_SEC"), "{stderr}");
}

/// A `chat serve` process and everything it has written to stderr so far.
struct Served {
    /// The process, while it runs (`None`: it exited before printing its address).
    running: Option<Running>,
    /// Its `ws://` address.
    url: Option<String>,
    /// Every stderr line, collected as they come.
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Served {
    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

/// Starts `chat serve` with `args` and `env`, and waits until it prints its WebSocket
/// address (or exits).
fn serve(args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut cmd = chat();
    cmd.arg("serve").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("ws://") {
                let _ = tx.send(line[at..].trim().to_owned());
            }
            sink.lock().unwrap().push(line);
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => Served {
            running: Some(Running(child)),
            url: Some(url),
            lines,
        },
        Err(_) => {
            let _ = child.wait();
            Served {
                running: None,
                url: None,
                lines,
            }
        }
    }
}

#[test]
fn localhost_is_a_listen_address() {
    let served = serve(
        &["--listen", "127.0.0.1:0"],
        &[("VK_WS_JWT_SECRET", "short"), ("RUST_LOG", "warn")],
    );
    assert!(served.running.is_some(), "{}", served.text());
    assert!(
        served.text().contains("shorter than 32 bytes"),
        "{}",
        served.text()
    );
}

#[test]
fn a_zero_token_lifetime_is_refused() {
    let out = chat()
        .args(["token", "--sub", "alice", "--ttl", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--ttl"), "{stderr}");
    assert!(out.stdout.is_empty(), "no token is printed");
}

#[tokio::test]
async fn the_dev_server_logs_connects_auths_messages_and_closes() {
    let served = serve(
        &["--listen", "127.0.0.1:0"],
        &[
            (
                "VK_WS_JWT_SECRET",
                "a-long-enough-secret-for-the-log-test-0123456789",
            ),
            ("RUST_LOG", "info"),
        ],
    );
    let url = served
        .url
        .clone()
        .expect("the server never printed its ws:// address");
    let (token, _) = mint(
        Some("a-long-enough-secret-for-the-log-test-0123456789"),
        &["--sub", "alice", "--tenant", "acme"],
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    for frame in [
        serde_json::json!({"action": "auth", "token": token.trim()}),
        serde_json::json!({"action": "broadcast", "data": 1}),
        serde_json::json!({"action": "nope"}),
    ] {
        ws.send(Message::text(frame.to_string())).await.unwrap();
        next_json(&mut ws).await;
    }
    ws.close(None).await.unwrap();
    let wanted = [
        "connected",
        "authenticated",
        "user=alice",
        "action=broadcast outcome=ok",
        "action=nope outcome=unknown_action",
        "closed",
    ];
    for _ in 0..100 {
        let text = served.text();
        if wanted.iter().all(|w| text.contains(w)) {
            assert!(
                !text.contains(token.trim()),
                "the token never reaches the log"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("missing log lines; got:\n{}", served.text());
}
