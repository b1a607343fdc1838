//! Test support: start the local server on an ephemeral loopback port, real WebSocket
//! clients (tokio-tungstenite), token minting, and a minimal HTTP/1.1 client for the
//! management API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use venturekit_ws::auth::{DevToken, mint_dev_token};
use venturekit_ws::config::JwtKey;
use venturekit_ws::{App, Config};

/// The HS256 secret every test server uses.
pub const SECRET: &str = "integration-test-secret";

/// How long a test waits for a frame before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// A configuration with the test secret.
pub fn config() -> Config {
    let mut config = Config::default();
    config.jwt_key = Some(JwtKey::Secret(SECRET.as_bytes().to_vec()));
    config
}

/// The chat example's app (actions, hooks, in-memory history and topics) on the test
/// configuration.
pub fn chat_app(config: Config) -> App {
    chat::configure(
        App::new(config),
        chat::History::new(chat::MemoryHistory::default()),
    )
    .topic_store(std::sync::Arc::new(venturekit_ws::MemoryTopics::new()))
}

/// A running local server; stopped when dropped.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts `app` on an ephemeral loopback port.
pub async fn start(app: App) -> Server {
    let server = app
        .local_server("127.0.0.1:0".parse().unwrap())
        .await
        .expect("the local server should bind to an ephemeral loopback port");
    let addr = server.local_addr();
    let task = tokio::spawn(async move {
        server.serve().await.expect("local server failed");
    });
    Server { addr, task }
}

/// Starts the chat example with the test configuration.
pub async fn start_chat() -> Server {
    start(chat_app(config())).await
}

/// A dev token for `sub`, listing `tenants`.
pub fn token(sub: &str, tenants: &[&str]) -> String {
    token_with(sub, tenants, None)
}

/// A dev token with an email claim.
pub fn token_with(sub: &str, tenants: &[&str], email: Option<&str>) -> String {
    let spec = DevToken {
        sub: sub.into(),
        tenants: tenants.iter().map(|t| t.to_string()).collect(),
        email: email.map(String::from),
        ttl_secs: 600,
        ..DevToken::default()
    };
    mint_dev_token(SECRET.as_bytes(), &spec, &Config::default()).unwrap()
}

/// A dev token for `sub` in `tenants` with `roles`, and further claims.
pub fn token_as(sub: &str, tenants: &[&str], roles: &[&str], claims: Value) -> String {
    let spec = DevToken {
        sub: sub.into(),
        tenants: tenants.iter().map(|t| t.to_string()).collect(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        claims: claims.as_object().cloned().unwrap_or_default(),
        ttl_secs: 600,
        ..DevToken::default()
    };
    mint_dev_token(SECRET.as_bytes(), &spec, &Config::default()).unwrap()
}

/// Signs arbitrary claims with HS256 and `secret`.
pub fn sign_hs256(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// What a client observed next.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// A text frame, parsed as JSON.
    Frame(Value),
    /// The server closed the connection (with its close code, if any).
    Closed(Option<u16>),
}

/// A real WebSocket client.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects to the server at `addr`.
    pub async fn connect(addr: SocketAddr) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}"))
            .await
            .expect("WebSocket handshake with the local server failed");
        Client { ws }
    }

    /// Connects and authenticates as `sub`, asserting success.
    pub async fn authed(addr: SocketAddr, sub: &str, tenants: &[&str]) -> Client {
        let mut client = Client::connect(addr).await;
        let reply = client.auth(&token(sub, tenants)).await;
        assert_eq!(reply["success"], true, "auth failed: {reply}");
        client
    }

    /// The next text frame, unparsed (to check exact bytes).
    pub async fn recv_text(&mut self) -> String {
        let frame = tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("no frame within the wait")
            .expect("the connection ended")
            .expect("reading the frame failed");
        match frame {
            Message::Text(text) => text.to_string(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next frame whose `action` is not `skip`.
    pub async fn recv_skipping(&mut self, skip: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["action"] != skip {
                return frame;
            }
        }
    }

    /// Sends a JSON value as a text frame.
    pub async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("send failed");
    }

    /// Sends any frame.
    pub async fn send_message(&mut self, message: Message) {
        self.ws.send(message).await.expect("send failed");
    }

    /// Sends `auth` and returns the reply.
    pub async fn auth(&mut self, token: &str) -> Value {
        self.send(serde_json::json!({"action": "auth", "token": token}))
            .await;
        self.recv().await
    }

    /// The next event (frame or close), failing the test after [`WAIT`].
    pub async fn next_event(&mut self) -> Event {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for the server");
            match next {
                None => return Event::Closed(None),
                Some(Err(_)) => return Event::Closed(None),
                Some(Ok(Message::Text(text))) => {
                    let value = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|_| panic!("server sent non-JSON text: {text}"));
                    return Event::Frame(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Event::Closed(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(Message::Binary(b))) => panic!("server sent a binary frame: {b:?}"),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next text frame; fails if the connection closes instead.
    pub async fn recv(&mut self) -> Value {
        match self.next_event().await {
            Event::Frame(v) => v,
            Event::Closed(code) => panic!("expected a frame, the server closed with {code:?}"),
        }
    }

    /// Waits for the close; fails if a text frame arrives first.
    pub async fn expect_close(&mut self) -> Option<u16> {
        match self.next_event().await {
            Event::Closed(code) => code,
            Event::Frame(v) => panic!("expected a close, got {v}"),
        }
    }

    /// Asserts that nothing is queued for this client: a `ping` must be answered by the
    /// very next frame.
    pub async fn assert_no_pending(&mut self) {
        self.send(serde_json::json!({"action": "ping"})).await;
        let next = self.recv().await;
        assert_eq!(next["action"], "pong", "unexpected frame queued: {next}");
    }

    /// Closes the connection normally.
    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl HttpResponse {
    /// A header value by (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
}

/// One HTTP/1.1 request over loopback (`Connection: close`).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("HTTP response timed out")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("bad status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The connection records the local server holds (`GET /_vk/connections`).
pub async fn records(addr: SocketAddr) -> Vec<Value> {
    let response = http(addr, "GET", "/_vk/connections", b"").await;
    assert_eq!(response.status, 200);
    match response.json() {
        Value::Array(rows) => rows,
        other => panic!("expected an array, got {other}"),
    }
}

/// Percent-encodes a connection id for a URL path (`=` → `%3D`, as the AWS SDK does).
pub fn encode_id(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub mod aws;
pub mod fanout;

/// A `kB` field of `/proc/<pid>/status` (`"VmRSS:"`, `"VmHWM:"`; pid `"self"` for this
/// process). Linux only; used by the benchmark tools.
pub fn proc_status_kb(pid: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Nanoseconds a thread has spent on a CPU, from one of its `schedstat` files.
fn schedstat_ns(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|stat| stat.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time of every thread of process `pid` (`"self"` for this one), in ms: the sum of
/// `/proc/<pid>/task/*/schedstat` (nanoseconds, where `/proc/<pid>/stat` counts 10 ms
/// ticks). Linux only; used by the benchmark tools. A thread that has ended is no longer
/// counted, so measure differences across spans in which the threads live.
pub fn cpu_ms(pid: &str) -> f64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/task: {e}"));
    let ns: u64 = tasks
        .filter_map(Result::ok)
        .map(|task| schedstat_ns(&task.path().join("schedstat")))
        .sum();
    ns as f64 / 1e6
}

/// CPU time of the calling thread, in ms (`/proc/thread-self/schedstat`).
pub fn thread_cpu_ms() -> f64 {
    schedstat_ns(std::path::Path::new("/proc/thread-self/schedstat")) as f64 / 1e6
}

/// Opens `n` WebSocket clients to `url`, 250 handshakes at a time: how the load tools
/// connect.
pub async fn open_clients(url: &str, n: usize) -> Vec<WebSocketStream<MaybeTlsStream<TcpStream>>> {
    let mut clients = Vec::with_capacity(n);
    while clients.len() < n {
        let batch = (n - clients.len()).min(250);
        let connects = (0..batch).map(|_| tokio_tungstenite::connect_async(url));
        for result in futures_util::future::join_all(connects).await {
            clients.push(result.expect("connect failed").0);
        }
    }
    clients
}

/// Reads the next frame of every stream at once, all within `within`, and checks its text
/// (the load tools' "every client got it"). One timer for them all: a timer per stream
/// would cost the client more than reading the frame (10,000 of them per broadcast). On
/// timeout it panics saying what was awaited and which clients (by index) got nothing.
pub async fn each_receives<S>(
    what: &str,
    streams: &mut [S],
    within: Duration,
    check: impl Fn(&str) + Copy,
) where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let total = streams.len();
    let got: Vec<std::sync::atomic::AtomicBool> = (0..total).map(|_| Default::default()).collect();
    let receipts = streams.iter_mut().zip(&got).map(|(s, got)| async move {
        let msg = s
            .next()
            .await
            .expect("the connection ended")
            .expect("reading failed");
        check(msg.to_text().expect("a text frame"));
        got.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    if tokio::time::timeout(within, futures_util::future::join_all(receipts))
        .await
        .is_err()
    {
        let missing: Vec<usize> = (0..total)
            .filter(|&i| !got[i].load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        panic!(
            "{what}: {} of {total} clients got nothing within {within:?} (first missing: {:?})",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
}

/// A store that delegates to `inner`, letting a test step in before each call (to fail it,
/// or hold it) and rewrite what the sweeper's pages show.
pub struct Interposed<I> {
    /// The real store.
    pub inner: std::sync::Arc<dyn venturekit_ws::ConnectionStore>,
    /// What steps in.
    pub with: I,
}

/// What an [`Interposed`] store does besides delegating.
#[async_trait::async_trait]
pub trait Interpose: Send + Sync + 'static {
    /// Runs before every store call (`op` is the method's name); `Err` fails the call.
    async fn before(&self, _op: &'static str) -> Result<(), venturekit_ws::StoreError> {
        Ok(())
    }
    /// Rewrites a page of expired records.
    fn page(&self, page: venturekit_ws::store::ExpiredPage) -> venturekit_ws::store::ExpiredPage {
        page
    }
}

#[async_trait::async_trait]
impl<I: Interpose> venturekit_ws::ConnectionStore for Interposed<I> {
    async fn save(&self, c: &venturekit_ws::Connection) -> Result<(), venturekit_ws::StoreError> {
        self.with.before("save").await?;
        self.inner.save(c).await
    }
    async fn authenticate(
        &self,
        id: &str,
        identity: &venturekit_ws::Identity,
        ttl: i64,
    ) -> Result<venturekit_ws::Connection, venturekit_ws::StoreError> {
        self.with.before("authenticate").await?;
        self.inner.authenticate(id, identity, ttl).await
    }
    async fn remove(
        &self,
        id: &str,
    ) -> Result<Option<venturekit_ws::Connection>, venturekit_ws::StoreError> {
        self.with.before("remove").await?;
        self.inner.remove(id).await
    }
    async fn get(
        &self,
        id: &str,
    ) -> Result<Option<venturekit_ws::Connection>, venturekit_ws::StoreError> {
        self.with.before("get").await?;
        self.inner.get(id).await
    }
    async fn get_by_user(
        &self,
        user: &str,
    ) -> Result<Vec<venturekit_ws::Connection>, venturekit_ws::StoreError> {
        self.with.before("get_by_user").await?;
        self.inner.get_by_user(user).await
    }
    async fn get_by_tenant(
        &self,
        tenant: &str,
    ) -> Result<Vec<venturekit_ws::Connection>, venturekit_ws::StoreError> {
        self.with.before("get_by_tenant").await?;
        self.inner.get_by_tenant(tenant).await
    }
    async fn list(&self) -> Result<Vec<venturekit_ws::Connection>, venturekit_ws::StoreError> {
        self.with.before("list").await?;
        self.inner.list().await
    }
    async fn list_expired(
        &self,
    ) -> Result<Vec<venturekit_ws::Connection>, venturekit_ws::StoreError> {
        self.with.before("list_expired").await?;
        self.inner.list_expired().await
    }
    async fn expired_page(
        &self,
        after: Option<&str>,
        limit: usize,
        now: i64,
    ) -> Result<venturekit_ws::store::ExpiredPage, venturekit_ws::StoreError> {
        self.with.before("expired_page").await?;
        Ok(self
            .with
            .page(self.inner.expired_page(after, limit, now).await?))
    }
    async fn remove_expired(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<venturekit_ws::Connection>, venturekit_ws::StoreError> {
        self.with.before("remove_expired").await?;
        self.inner.remove_expired(id, now).await
    }
    async fn count_message(
        &self,
        id: &str,
        window: i64,
    ) -> Result<Option<u32>, venturekit_ws::StoreError> {
        self.with.before("count_message").await?;
        self.inner.count_message(id, window).await
    }
    async fn count_auth_failure(&self, id: &str) -> Result<Option<u32>, venturekit_ws::StoreError> {
        self.with.before("count_auth_failure").await?;
        self.inner.count_auth_failure(id).await
    }
}
