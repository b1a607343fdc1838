//! The dev console in a real headless Chromium, driven over the DevTools protocol: load the
//! page, open two clients (alice and bob), authenticate both with dev tokens, broadcast from
//! alice, see the message in bob's log, see both in the connections panel, see an error in
//! red, and no JavaScript errors. `VK_CONSOLE_SCREENSHOT=path.png` saves a screenshot.
//!
//! Chromium comes from Debian (`scripts/chromium.sh` installs it; the test command runs it
//! and sets `VK_TEST_CHROMIUM`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use venturekit_ws::Config;
use venturekit_ws_tests::{chat_app, start};

fn chromium() -> PathBuf {
    let path = std::env::var_os("VK_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "Chromium is needed at {}: run scripts/chromium.sh (the test command does), or set VK_TEST_CHROMIUM",
        path.display()
    );
    path
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium and one page, over the DevTools protocol.
struct Browser {
    child: Child,
    ws: Socket,
    session: String,
    next_id: u64,
    events: Vec<Value>,
    _profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._profile);
    }
}

impl Browser {
    async fn launch() -> Browser {
        let profile = std::env::temp_dir().join(format!("vk-chromium-{}", std::process::id()));
        let mut child = Command::new(chromium())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1400,950",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting chromium");
        // Chromium prints the browser's DevTools address on stderr; keep draining it after,
        // or a full pipe would stall the browser.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(at) = line.find("ws://") {
                    let _ = tx.send(line[at..].trim().to_owned());
                    sent = true;
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium did not print its DevTools address within 30 s");
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        let mut browser = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 1,
            events: Vec::new(),
            _profile: profile,
        };
        let target = browser
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call("Runtime.enable", json!({})).await;
        browser.call("Page.enable", json!({})).await;
        browser
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within 30 s"))
                .expect("the DevTools connection closed")
                .unwrap();
            let Message::Text(text) = next else { continue };
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            if value["id"] == id {
                assert!(value["error"].is_null(), "{method}: {}", value["error"]);
                return value["result"].clone();
            }
            if value["method"].is_string() {
                self.events.push(value);
            }
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(
            result["exceptionDetails"].is_null(),
            "`{expression}` threw: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Waits (up to 10 s) until `expression` is true in the page.
    async fn until(&mut self, what: &str, expression: &str) {
        for _ in 0..200 {
            if self.eval(expression).await == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let body = self.eval("document.querySelector('main').innerText").await;
        panic!("the console never showed {what} (`{expression}`); the page reads:\n{body}");
    }

    /// JavaScript errors: uncaught exceptions and `console.error` calls.
    fn js_errors(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| {
                e["method"] == "Runtime.exceptionThrown"
                    || (e["method"] == "Runtime.consoleAPICalled" && e["params"]["type"] == "error")
            })
            .collect()
    }
}

#[tokio::test]
async fn two_clients_authenticate_and_chat_in_a_real_browser() {
    // The public dev secret (no key configured): the console's dev-token button works.
    let server = start(chat_app(Config::default())).await;
    let mut browser = Browser::launch().await;
    browser
        .call(
            "Page.navigate",
            json!({"url": format!("http://{}/", server.addr)}),
        )
        .await;
    browser
        .until(
            "the page",
            "document.readyState === 'complete' && typeof window.vkConsole === 'object'",
        )
        .await;

    // alice is there from the start; add bob.
    browser
        .eval("document.getElementById('add-name').value = 'bob'; document.getElementById('add').click(); true")
        .await;
    browser
        .until(
            "two open sockets",
            "[...vkConsole.clients.values()].length === 2 && [...vkConsole.clients.values()].every(c => c.ws && c.ws.readyState === 1)",
        )
        .await;
    // The action picker comes from the server (the chat's actions, with example payloads).
    browser
        .until(
            "the action picker",
            "[...document.querySelectorAll('[data-client=alice] .picker option')].some(o => o.value === 'broadcast')",
        )
        .await;

    // Dev tokens in tenant acme, then auth, for both.
    browser
        .eval("document.getElementById('dev-tenant').value = 'acme'; document.querySelector('[data-client=alice] .devauth').click(); document.querySelector('[data-client=bob] .devauth').click(); true")
        .await;
    browser
        .until(
            "both authenticated",
            "document.querySelector('[data-client=alice] .who').textContent === 'authenticated as alice in tenant acme' && document.querySelector('[data-client=bob] .who').textContent === 'authenticated as bob in tenant acme'",
        )
        .await;

    // alice broadcasts with the keyboard; bob sees it.
    browser
        .eval(
            r#"(() => {
                const box = document.querySelector('[data-client=alice] .message');
                box.value = JSON.stringify({action: 'broadcast', data: 'hello from alice'});
                box.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', ctrlKey: true, bubbles: true}));
                return true;
            })()"#,
        )
        .await;
    browser
        .until(
            "bob receiving alice's message",
            "document.querySelector('[data-client=bob] .log').textContent.includes('hello from alice')",
        )
        .await;

    // The connections panel lists both, authenticated.
    browser
        .until(
            "both in the connections panel",
            "(() => { const t = document.getElementById('connections').innerText; return t.includes('alice') && t.includes('bob') && document.querySelectorAll('#connections tr').length === 2; })()",
        )
        .await;

    // An error frame is shown as an error, with its JSON collapsible.
    browser
        .eval("document.querySelector('[data-client=alice] .message').value = '{\"action\":\"nope\"}'; document.querySelector('[data-client=alice] .send').click(); true")
        .await;
    browser
        .until(
            "the error in red",
            "[...document.querySelectorAll('[data-client=alice] .entry.err')].some(e => e.textContent.includes('unknown_action') && e.querySelector('details pre'))",
        )
        .await;

    if let Some(path) = std::env::var_os("VK_CONSOLE_SCREENSHOT") {
        // Open the last frame of bob's log, for the picture.
        browser
            .eval("document.querySelectorAll('[data-client=bob] details').forEach(d => d.open = false); const all = document.querySelectorAll('[data-client=bob] details'); if (all.length) all[all.length - 1].open = true; true")
            .await;
        let shot = browser
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    let errors = browser.js_errors();
    assert!(errors.is_empty(), "JavaScript errors: {errors:#?}");
}
