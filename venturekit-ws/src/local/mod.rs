//! The local server: a faithful stand-in for API Gateway WebSocket APIs.
//!
//! Each WebSocket connect / message / close becomes the same API Gateway event Lambda
//! would receive and runs through the same [`Dispatcher`]. The management API
//! (`POST`/`GET`/`DELETE /@connections/{id}`) is served on the same port. API Gateway's
//! limits are applied: 128 KB messages (close 1009), no binary frames (close 1003),
//! 10 minutes idle and 2 hours total (close 1001).

mod management;
mod socket;

use crate::clock::now_ms;
use crate::config::Config;
use crate::delivery::{Delivery, DeliveryError};
use crate::dispatch::Dispatcher;
use crate::event::EventBuilder;
use crate::messaging::Messenger;
use crate::protocol::MAX_MESSAGE_BYTES;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use futures_util::task::AtomicWaker;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// A connection's WebSocket, as its task reads it.
type WebSocket = WebSocketStream<socket::Socket>;

/// Close code for a message over 128 KB (RFC 6455 "message too big").
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for a binary frame (RFC 6455 "unsupported data").
pub const CLOSE_UNSUPPORTED: u16 = 1003;
/// Close code for the idle timeout and the maximum connection duration ("going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for `DELETE @connections/{id}` (normal closure).
pub const CLOSE_NORMAL: u16 = 1000;

/// Frames larger than this are refused by the socket layer before they are buffered whole.
const SOCKET_LIMIT: usize = 1024 * 1024;
/// API Gateway's idle timeout, when neither the configuration nor `venturekit.toml` sets one.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Read buffer per connection: room for a typical message (an `auth` with its token fits);
/// larger messages grow it while they are read. It is most of an idle connection's memory.
const READ_BUFFER: usize = 512;
/// How often the sweeper looks for expired connections (the contract asks for < 5 s).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How long to wait for the client's close echo after the server closed.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Most bytes queued for one client that is not reading. Past it, deliveries to that
/// connection fail (`LimitExceededException` on the management API) until it reads again,
/// so a stalled client cannot grow the server's memory without limit.
pub const MAX_QUEUED_BYTES: usize = 1024 * 1024;
/// Messages of one connection dispatched at once; the next waits (backpressure on reading).
const MAX_IN_FLIGHT: usize = 16;

/// What waits to be written to one client, how its connection is doing, and what
/// `GET @connections/{id}` tells about it.
///
/// One small allocation per connection, shared by the registry (deliveries, the management
/// API) and the connection's task, which owns the socket and writes the queue out. The task
/// waits on [`Outbox::waker`] alone — for something to write, for a message in flight to
/// finish, or for the socket — so an idle connection holds no waiter of its own.
struct Outbox {
    state: Mutex<Queue>,
    /// Set when there is something to write or a close to send; the task clears it.
    pending: AtomicBool,
    /// The connection's task.
    waker: AtomicWaker,
    /// The connection's messages being dispatched; reading waits past [`MAX_IN_FLIGHT`].
    in_flight: AtomicUsize,
    /// When the client last sent a message, epoch milliseconds (`lastActiveAt`).
    last_active: AtomicI64,
    /// When the client last sent a message, for the idle timeout: milliseconds on the
    /// server's monotonic clock ([`Shared::uptime_ms`]).
    last_message: AtomicU64,
    /// When the connection opened, on the same clock.
    opened: u64,
    /// When the connection opened, epoch milliseconds.
    connected_at: i64,
    /// The client's address (`identity.sourceIp`).
    source_ip: std::net::IpAddr,
    /// The client's `User-Agent`; `None` when it sent none (no allocation).
    user_agent: Option<Box<str>>,
}

#[derive(Default)]
struct Queue {
    /// The oldest frame to write, encoded (most of the time the only one: no queue is
    /// allocated). A fan-out's frame is one allocation shared by every target.
    first: Option<Bytes>,
    /// Frames after `first`, oldest first.
    rest: std::collections::VecDeque<Bytes>,
    /// Bytes in `first` and `rest`.
    bytes: usize,
    /// A close to send once the frames before it are written.
    close: Option<(u16, &'static str)>,
    /// The socket, for a frame written at once when nothing waits and the task is not
    /// using it (`None` once the connection is closing).
    socket: Option<Arc<tokio::net::TcpStream>>,
    /// The connection's task is using the socket (reading, or writing what waited), or
    /// tungstenite holds output not yet written: frames wait in the queue.
    busy: bool,
}

impl Outbox {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes an encoded text frame to the socket at once when nothing waits for it and the
    /// connection's task is not using it; queues it (or what the socket did not take)
    /// otherwise, within [`MAX_QUEUED_BYTES`].
    fn push(&self, mut frame: Bytes) -> Result<(), DeliveryError> {
        let mut queue = self.queue();
        if queue.close.is_some() {
            return Err(DeliveryError::Gone);
        }
        if queue.first.is_none()
            && !queue.busy
            && let Some(socket) = &queue.socket
        {
            match socket.try_write(&frame) {
                Ok(n) if n == frame.len() => return Ok(()),
                // The rest goes first when the task writes (the queue is empty).
                Ok(n) => frame = frame.slice(n..),
                // Would block; or failed, which the task finds when it next reads or writes.
                Err(_) => {}
            }
        }
        if queue.bytes + frame.len() > MAX_QUEUED_BYTES {
            return Err(DeliveryError::Failed(format!(
                "the client is not reading: {} bytes already queued for it",
                queue.bytes
            )));
        }
        queue.bytes += frame.len();
        if queue.first.is_none() {
            queue.first = Some(frame);
        } else {
            queue.rest.push_back(frame);
        }
        drop(queue);
        self.wake();
        Ok(())
    }

    /// Asks the connection's task to close the socket (after what is queued).
    fn close(&self, code: u16, reason: &'static str) {
        let mut queue = self.queue();
        if queue.close.is_none() {
            queue.close = Some((code, reason));
        }
        drop(queue);
        self.wake();
    }

    /// Tells the connection's task there is something to write.
    fn wake(&self) {
        self.pending.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// A message of the connection being dispatched; reading resumes when it is dropped.
struct InFlight(Arc<Outbox>);

impl InFlight {
    fn start(outbox: &Arc<Outbox>) -> Self {
        outbox.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(outbox.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == MAX_IN_FLIGHT {
            self.0.waker.wake();
        }
    }
}

/// The live sockets, by connection id (the key is the connection task's own id).
#[derive(Default)]
struct Registry {
    peers: Mutex<HashMap<Arc<str>, Arc<Outbox>>>,
}

impl Registry {
    fn peers(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Outbox>>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn outbox(&self, connection_id: &str) -> Option<Arc<Outbox>> {
        self.peers().get(connection_id).cloned()
    }
}

/// Delivery through the local server's live sockets.
#[derive(Clone)]
pub struct LocalDelivery {
    registry: Arc<Registry>,
}

#[async_trait::async_trait]
impl Delivery for LocalDelivery {
    async fn post(&self, connection_id: &str, payload: &str) -> Result<(), DeliveryError> {
        if payload.len() > MAX_MESSAGE_BYTES {
            return Err(DeliveryError::PayloadTooLarge(payload.len()));
        }
        let outbox = self
            .registry
            .outbox(connection_id)
            .ok_or(DeliveryError::Gone)?;
        outbox.push(socket::text_frame(payload))
    }

    fn post_now(
        &self,
        connection_ids: &[String],
        payload: &Arc<str>,
    ) -> Option<Vec<Result<(), DeliveryError>>> {
        if payload.len() > MAX_MESSAGE_BYTES {
            let too_large = DeliveryError::PayloadTooLarge(payload.len());
            return Some(
                connection_ids
                    .iter()
                    .map(|_| Err(too_large.clone()))
                    .collect(),
            );
        }
        // Encoded once for every target; the registry is not held while writing.
        let frame = socket::text_frame(payload);
        let outboxes: Vec<Option<Arc<Outbox>>> = {
            let peers = self.registry.peers();
            connection_ids
                .iter()
                .map(|id| peers.get(id.as_str()).cloned())
                .collect()
        };
        Some(
            outboxes
                .into_iter()
                .map(|outbox| match outbox {
                    Some(outbox) => outbox.push(frame.clone()),
                    None => Err(DeliveryError::Gone),
                })
                .collect(),
        )
    }

    async fn close(&self, connection_id: &str) -> Result<(), DeliveryError> {
        let outbox = self
            .registry
            .peers()
            .remove(connection_id)
            .ok_or(DeliveryError::Gone)?;
        outbox.close(CLOSE_NORMAL, "Goodbye");
        Ok(())
    }
}

/// API Gateway's stage throttling: a token bucket shared by all connections.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Self {
        Bucket {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Shared {
    /// The server's monotonic clock starts here (idle and duration limits).
    started: Instant,
    throttle: Option<Mutex<Bucket>>,
    dispatcher: Arc<Dispatcher>,
    registry: Arc<Registry>,
    delivery: Arc<dyn Delivery>,
    events: EventBuilder,
    idle_timeout: Duration,
    max_connection: Duration,
    api_token: Option<String>,
    ordered: bool,
    sweeper: bool,
    /// The dev console's action picker: `[{"action","public","roles","example"}]`.
    catalog: serde_json::Value,
    /// Mints dev tokens (`POST /_vk/token`) when the server uses the public dev secret.
    dev_tokens: Option<Config>,
    /// What the server counted (`GET /_vk/metrics`, and a summary when it stops).
    metrics: Arc<Mutex<crate::metrics::MetricSet>>,
}

impl Shared {
    /// Milliseconds since the server started (monotonic; follows a paused tokio clock).
    fn uptime_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn admit(&self) -> bool {
        match &self.throttle {
            Some(bucket) => bucket.lock().unwrap_or_else(|p| p.into_inner()).take(),
            None => true,
        }
    }

    fn messenger(&self) -> Messenger {
        self.dispatcher.messenger(self.delivery.clone())
    }

    /// Runs one event through the dispatcher, counting it in the server's metrics.
    async fn handle(
        &self,
        event: &crate::event::WebSocketEvent,
    ) -> crate::event::WebSocketResponse {
        crate::metrics::scope(
            self.metrics.clone(),
            "-",
            self.dispatcher.handle(event, self.delivery.clone()),
        )
        .await
    }
}

/// Connections the kernel holds for the server before it accepts them (capped by
/// `net.core.somaxconn`). A burst of clients — every browser tab reconnecting after a
/// restart — must not overflow it: a dropped SYN is retried only after a second. The
/// standard library's default is 128.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds and listens on `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As the standard library does on Unix: a restarted server can bind again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A bound local server. Call [`LocalServer::serve`] to run it.
pub struct LocalServer {
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LocalServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalServer")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl LocalServer {
    /// Binds `addr` (use port 0 for an ephemeral port).
    pub async fn bind(
        dispatcher: Dispatcher,
        config: &Config,
        addr: SocketAddr,
    ) -> Result<Self, crate::Error> {
        let listener = listen(addr).map_err(|e| {
            crate::Error::Io(std::io::Error::new(
                e.kind(),
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    format!(
                        "cannot listen on {addr}: the address is already in use (another server, perhaps an earlier `cargo run`, is listening there): stop it, or pick another port with --listen or VK_WS_LISTEN"
                    )
                } else {
                    format!("cannot listen on {addr}: {e}")
                },
            ))
        })?;
        let local = listener.local_addr()?;
        let registry = Arc::new(Registry::default());
        let shared = Arc::new(Shared {
            throttle: config
                .stage_throttle
                .map(|(rate, burst)| Mutex::new(Bucket::new(rate, burst))),
            dispatcher: Arc::new(dispatcher),
            delivery: Arc::new(LocalDelivery {
                registry: registry.clone(),
            }),
            registry,
            events: EventBuilder {
                api_id: "local".into(),
                stage: "local".into(),
                domain_name: local.to_string(),
            },
            started: Instant::now(),
            idle_timeout: config.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT),
            max_connection: config.max_connection,
            api_token: config.local_api_token.clone(),
            ordered: config.local_ordered,
            sweeper: true,
            catalog: serde_json::Value::Null,
            dev_tokens: (config.jwt_key.is_none() && config.jwks_url.is_none())
                .then(|| config.clone()),
            metrics: Arc::default(),
        });
        Ok(LocalServer { listener, shared })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// What the server has counted so far (see [`crate::metrics`]).
    pub fn metrics(&self) -> crate::metrics::MetricSet {
        self.shared
            .metrics
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Messaging through this server's sockets (for code that sends out of band).
    pub fn messenger(&self) -> Messenger {
        self.shared.messenger()
    }

    /// The dispatcher behind the sockets (to run [`Dispatcher::sweep`] by hand, say).
    pub fn dispatcher(&self) -> Arc<Dispatcher> {
        self.shared.dispatcher.clone()
    }

    /// Routes every post and close through `wrap(sockets)`: a layer that records, delays
    /// or fails deliveries (the test kit's faults). Call before [`LocalServer::serve`].
    pub fn wrap_delivery(
        mut self,
        wrap: impl FnOnce(Arc<dyn Delivery>) -> Arc<dyn Delivery>,
    ) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.delivery = wrap(shared.delivery.clone());
        }
        self
    }

    /// Sets the dev console's action picker: one `{"action", "public", "roles", "example"}`
    /// per action (by default: the dispatcher's actions, each with `{"action": name}`).
    pub fn with_catalog(mut self, catalog: serde_json::Value) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.catalog = catalog;
        }
        self
    }

    /// Turns off the background sweeper (every second): expired connections are then closed
    /// only by [`Dispatcher::sweep`], for tests that sweep at a moment of their choosing.
    pub fn manual_sweep(mut self) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.sweeper = false;
        }
        self
    }

    /// Serves until the process ends.
    pub async fn serve(self) -> Result<(), crate::Error> {
        self.serve_until(std::future::pending()).await
    }

    /// Serves until `shutdown` completes.
    pub async fn serve_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), crate::Error> {
        let sweeper = self
            .shared
            .sweeper
            .then(|| tokio::spawn(sweep_forever(self.shared.clone())));
        let reaper = tokio::spawn(reap_forever(self.shared.clone()));
        let admin = Router::new()
            .route("/_vk/connections", get(management::list_connections))
            .route("/_vk/actions", get(management::list_actions))
            .route("/_vk/metrics", get(management::metrics))
            .route("/_vk/token", axum::routing::post(management::mint_token))
            .route(
                "/@connections/{id}",
                get(management::get_connection)
                    .post(management::post_to_connection)
                    .delete(management::delete_connection),
            )
            .route(
                "/{stage}/@connections/{id}",
                get(management::get_staged)
                    .post(management::post_staged)
                    .delete(management::delete_staged),
            )
            .route_layer(axum::middleware::from_fn_with_state(
                self.shared.clone(),
                management::admin_only,
            ));
        let app = Router::new()
            .route("/", get(root))
            .merge(admin)
            .with_state(self.shared.clone());
        // Frames go out as soon as they are written, as from API Gateway (no Nagle delay).
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let result = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        reaper.abort();
        let metrics = self
            .shared
            .metrics
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        if !metrics.is_empty() {
            tracing::info!(target: "venturekit_ws::local", "metrics: {}", metrics.summary());
        }
        result.map_err(crate::Error::Io)
    }
}

/// Closes connections past API Gateway's idle timeout or maximum duration (1001 "Going
/// away"). One task for all of them, instead of a timer in every connection's task.
async fn reap_forever(shared: Arc<Shared>) {
    let limit = shared.idle_timeout.min(shared.max_connection);
    let every = (limit / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let idle = u64::try_from(shared.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let longest = u64::try_from(shared.max_connection.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = shared.uptime_ms();
        let expired: Vec<Arc<Outbox>> = shared
            .registry
            .peers()
            .values()
            .filter(|outbox| {
                let last = outbox.last_message.load(Ordering::Relaxed);
                now.saturating_sub(last) >= idle || now.saturating_sub(outbox.opened) >= longest
            })
            .cloned()
            .collect();
        for outbox in expired {
            outbox.close(CLOSE_GOING_AWAY, "Going away");
        }
    }
}

async fn sweep_forever(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let messenger = shared.messenger();
        let sweep = shared.dispatcher.sweep(&messenger);
        match crate::metrics::scope(shared.metrics.clone(), "vk:sweep", sweep).await {
            Ok(report) if report.expired > 0 => {
                tracing::info!(
                    expired = report.expired,
                    closed = report.closed,
                    "sweeper closed expired connections"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweeper failed"),
        }
    }
}

pub(crate) fn new_connection_id() -> String {
    // API Gateway ids look like `L0SM9cOFvHcCIhw=`: 11 random bytes, base64 with padding.
    let bytes: [u8; 11] = rand::random();
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

const CONSOLE: &str = include_str!("console.html");

async fn root(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    let accept = match socket::check_handshake(&parts.method, &parts.headers) {
        Ok(Some(accept)) => accept,
        // Not a WebSocket: the dev console.
        Ok(None) => {
            return ([(header::CACHE_CONTROL, "no-store")], Html(CONSOLE)).into_response();
        }
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return (
            StatusCode::BAD_REQUEST,
            "this connection cannot be upgraded to a WebSocket",
        )
            .into_response();
    };
    let (headers, uri) = (parts.headers, parts.uri);
    let id = new_connection_id();
    let connected_at = shared.dispatcher.clock().now_ms();
    let query = axum::extract::Query::<HashMap<String, String>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let event = shared
        .events
        .connect_with(&id, connected_at, headers.clone(), query);
    let response = shared.handle(&event).await;
    if response.status_code != 200 {
        // Like API Gateway: a failed $connect refuses the handshake.
        let status = StatusCode::from_u16(response.status_code as u16)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return status.into_response();
    }
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let connection_header = axum::http::HeaderValue::from_str(&id).ok();
    let peer = PeerInfo {
        id,
        connected_at,
        source_ip: addr.ip(),
        user_agent,
    };
    tokio::spawn(upgrade(shared, on_upgrade, peer));
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response_headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    response_headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    // The emulator's own addition (API Gateway sends no such header): tells a test client
    // or the dev console which connection id it got.
    if let Some(value) = connection_header {
        response_headers.insert(CONNECTION_ID_HEADER, value);
    }
    response
}

/// Takes over the socket once the handshake's response is sent, and starts the
/// connection's task. The connection's id and `$connect` are done already: when the
/// upgrade fails (the client went away in between), `$disconnect` follows at once.
async fn upgrade(shared: Arc<Shared>, on_upgrade: hyper::upgrade::OnUpgrade, peer: PeerInfo) {
    use hyper_util::rt::TokioIo;
    let taken = match on_upgrade.await {
        Ok(upgraded) => hyper_util::server::conn::auto::upgrade::downcast::<
            TokioIo<tokio::net::TcpStream>,
        >(upgraded)
        .map_err(|_| "the upgraded connection is not a TCP socket".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    let parts = match taken {
        Ok(parts) => parts,
        Err(why) => {
            tracing::warn!(
                target: "venturekit_ws::local",
                connection_id = %peer.id,
                "the WebSocket upgrade failed: {why}"
            );
            let event =
                shared
                    .events
                    .disconnect(&peer.id, peer.connected_at, Some(1006), "upgrade failed");
            shared.handle(&event).await;
            return;
        }
    };
    let tcp = Arc::new(parts.io.into_inner());
    // Small read chunks: the default 128 KiB per connection dominated memory at 10k
    // connections (see BENCHMARKS.md); messages still grow the buffer as needed.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(SOCKET_LIMIT))
        .max_frame_size(Some(SOCKET_LIMIT));
    let ws = WebSocketStream::from_partially_read(
        socket::Socket(tcp.clone()),
        parts.read_buf.to_vec(),
        Role::Server,
        Some(config),
    )
    .await;
    // A task of its own: this one ends here instead of carrying the connection's future
    // inside its own state for the life of the socket.
    tokio::spawn(run_connection(shared, ws, tcp, peer));
}

/// The upgrade response header carrying the new connection's id (local server only).
pub const CONNECTION_ID_HEADER: &str = "x-vk-connection-id";

struct PeerInfo {
    id: String,
    connected_at: i64,
    source_ip: std::net::IpAddr,
    user_agent: String,
}

/// Writes out what is queued; returns the close that was asked for, once it is sent, or
/// `Err` when the socket failed. The socket is the task's while it writes: frames pushed
/// meanwhile wait in the queue, and are written by this loop before it lends the socket
/// back (for frames written at once) with the queue empty.
async fn flush_outbox(socket: &mut WebSocket, outbox: &Outbox) -> Result<Option<u16>, ()> {
    outbox.queue().busy = true;
    // What tungstenite holds (a pong) goes before the queued frames.
    socket.flush().await.map_err(|_| ())?;
    let mut written = 0;
    loop {
        let (first, rest, close) = {
            let mut queue = outbox.queue();
            queue.bytes -= written;
            let first = queue.first.take();
            let rest = std::mem::take(&mut queue.rest);
            let close = if first.is_none() { queue.close } else { None };
            if first.is_none() && close.is_none() {
                queue.busy = false;
            }
            (first, rest, close)
        };
        let Some(first) = first else {
            if let Some((code, reason)) = close {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: Utf8Bytes::from_static(reason),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return Ok(Some(code));
            }
            return Ok(None);
        };
        written = 0;
        // Encoded frames, written as they are (tungstenite has nothing buffered now).
        for frame in std::iter::once(first).chain(rest) {
            written += frame.len();
            socket.get_mut().write_all(&frame).await.map_err(|_| ())?;
        }
    }
}

/// One client message through the dispatcher, built into its event only here (an event is
/// large; the connection's task, which lives as long as the socket, never holds one).
async fn handle_message(shared: Arc<Shared>, id: Arc<str>, connected_at: i64, text: Utf8Bytes) {
    let event = shared.events.message(&id, connected_at, text.as_str());
    shared.handle(&event).await;
}

/// Registers the connection and returns its task. Split in two so that the task keeps only
/// what it needs for as long as the socket is open (an async fn's parameters stay in its
/// future for its whole life): an idle connection costs this task (with the socket in it,
/// not split into two halves behind a lock), its outbox, its registry slot and its
/// store row (BENCHMARKS.md, "Local server scale").
fn run_connection(
    shared: Arc<Shared>,
    socket: WebSocket,
    tcp: Arc<tokio::net::TcpStream>,
    info: PeerInfo,
) -> impl Future<Output = ()> + Send + 'static {
    let id: Arc<str> = info.id.into();
    let connected_at = info.connected_at;
    tracing::info!(
        target: "venturekit_ws::local",
        connection_id = %id,
        from = %info.source_ip,
        "connected"
    );
    let opened = shared.uptime_ms();
    let outbox = Arc::new(Outbox {
        state: Mutex::new(Queue {
            socket: Some(tcp),
            ..Queue::default()
        }),
        pending: AtomicBool::new(false),
        waker: AtomicWaker::new(),
        in_flight: AtomicUsize::new(0),
        last_active: AtomicI64::new(connected_at),
        last_message: AtomicU64::new(opened),
        opened,
        connected_at,
        source_ip: info.source_ip,
        user_agent: (!info.user_agent.is_empty()).then(|| info.user_agent.into()),
    });
    shared.registry.peers().insert(id.clone(), outbox.clone());
    let link = Link { shared, outbox, id };
    serve_connection(link, socket)
}

/// What a connection's task knows about its connection.
struct Link {
    shared: Arc<Shared>,
    outbox: Arc<Outbox>,
    id: Arc<str>,
}

/// The connection's task: reads messages, writes the outbox, until either side closes.
///
/// A plain function returning an `async move` block: an `async fn` would keep its by-value
/// arguments twice in its future (rust-lang/rust#62958), in every idle connection. The
/// future stays small on purpose — it is most of an idle connection's memory: it waits on
/// one waker (no `Notify` waiter, no timer), and the rare long states (a write that has to
/// wait, the close) are boxed.
#[allow(clippy::manual_async_fn)]
fn serve_connection(
    link: Link,
    mut socket: WebSocket,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        // Set once the server has asked to close (its close frame may still be queued).
        let mut server_closed: Option<u16> = None;
        // Idle and duration limits are watched by the server's reaper, not by a timer here.
        let (status, close_sent) = loop {
            // The frame that woke the task is handled inside the poll: only the small `step`
            // lives across the awaits below (anything else would take room in every idle
            // connection's future).
            let step = std::future::poll_fn(|cx| {
                let outbox = &link.outbox;
                outbox.waker.register(cx.waker());
                // Writing first: a client's messages must not starve what is queued for it.
                if outbox.pending.swap(false, Ordering::AcqRel) {
                    return Poll::Ready(Step::Write);
                }
                // Past MAX_IN_FLIGHT messages, reading waits (backpressure); the message that
                // finishes wakes the task.
                if outbox.in_flight.load(Ordering::Acquire) < MAX_IN_FLIGHT {
                    // The socket is the task's while it reads (tungstenite may answer a ping
                    // or a close); lent back once what tungstenite wrote is out, unless the
                    // socket is closing. Not while a frame waits: it may be the rest of one
                    // the socket took only part of, which must be written before anything.
                    {
                        let mut queue = outbox.queue();
                        if queue.first.is_some() {
                            return Poll::Ready(Step::Write);
                        }
                        queue.busy = true;
                    }
                    let frame = socket.poll_next_unpin(cx);
                    let flushed = matches!(socket.poll_flush_unpin(cx), Poll::Ready(Ok(())));
                    let open = !matches!(
                        frame,
                        Poll::Ready(None | Some(Err(_)) | Some(Ok(Message::Close(_))))
                    );
                    if flushed && open {
                        outbox.queue().busy = false;
                    }
                    if let Poll::Ready(frame) = frame {
                        return Poll::Ready(on_frame(&link, frame, &mut server_closed));
                    }
                }
                Poll::Pending
            })
            .await;
            match step {
                Step::Continue => {}
                Step::Close(status) => break (status, false),
                Step::Dispatch(message) => message.await,
                Step::Write => {
                    let Link { shared, outbox, .. } = &link;
                    // Boxed: only a connection that is writing holds the write's state. A
                    // client that stops reading blocks the write; it is dropped when its idle
                    // or duration limit passes, as it would be while reading.
                    let mut flush = Box::pin(flush_outbox(&mut socket, outbox));
                    // Most writes complete at once; only one that has to wait gets a timer.
                    let flushed = match futures_util::FutureExt::now_or_never(&mut flush) {
                        Some(done) => Ok(done),
                        None => {
                            let deadline = shared.started
                                + Duration::from_millis(outbox.opened)
                                + shared.max_connection;
                            let limit = deadline.min(Instant::now() + shared.idle_timeout);
                            Box::pin(tokio::time::timeout_at(limit, flush)).await
                        }
                    };
                    match flushed {
                        Ok(Ok(Some(code))) => break (server_closed.or(Some(code)), true),
                        Ok(Ok(None)) => {}
                        Ok(Err(())) => break (server_closed.or(Some(1006)), false),
                        Err(_) => break (server_closed.or(Some(CLOSE_GOING_AWAY)), false),
                    }
                }
            }
        };
        let closing = Closing {
            by_server: server_closed.is_some() || close_sent,
            close_sent,
            status,
        };
        Box::pin(close_connection(link, socket, closing)).await;
    }
}

/// What a connection's task does next.
enum Step {
    /// Wait again.
    Continue,
    /// Write out the outbox.
    Write,
    /// Run a message through the dispatcher before reading on (`ordered` servers).
    Dispatch(futures_util::future::BoxFuture<'static, ()>),
    /// The socket is done, with this close status.
    Close(Option<u16>),
}

/// Handles one frame from the client (or the end of the socket). `server_closed` is set
/// once the server has asked to close: what the client sends after that is ignored.
fn on_frame(
    link: &Link,
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    server_closed: &mut Option<u16>,
) -> Step {
    let Link { shared, outbox, id } = link;
    let closed = *server_closed;
    let mut close = |code: u16, reason: &'static str| {
        outbox.close(code, reason);
        *server_closed = Some(code);
        Step::Continue
    };
    match frame {
        None => Step::Close(closed.or(Some(1006))),
        Some(Err(err)) if is_capacity(&err) => close(CLOSE_TOO_BIG, "Message too big"),
        Some(Err(_)) => Step::Close(closed.or(Some(1006))),
        Some(Ok(Message::Text(_))) if closed.is_some() => Step::Continue,
        Some(Ok(Message::Text(text))) if text.len() > MAX_MESSAGE_BYTES => {
            close(CLOSE_TOO_BIG, "Message too big")
        }
        Some(Ok(Message::Text(text))) => {
            outbox
                .last_message
                .store(shared.uptime_ms(), Ordering::Relaxed);
            outbox
                .last_active
                .store(shared.dispatcher.clock().now_ms(), Ordering::Relaxed);
            if !shared.admit() {
                throttled(outbox, id);
                return Step::Continue;
            }
            // Boxed at once: the dispatcher's future is large.
            let message = Box::pin(handle_message(
                shared.clone(),
                id.clone(),
                outbox.connected_at,
                text,
            ));
            if shared.ordered {
                return Step::Dispatch(message);
            }
            // API Gateway invokes the function for each message concurrently: a client must
            // wait for a reply (e.g. to `auth`) before relying on it.
            let in_flight = InFlight::start(outbox);
            tokio::spawn(async move {
                message.await;
                drop(in_flight);
            });
            Step::Continue
        }
        Some(Ok(Message::Binary(_))) if closed.is_none() => {
            close(CLOSE_UNSUPPORTED, "Binary frames are not supported")
        }
        Some(Ok(Message::Close(frame))) => Step::Close(closed.or(frame.map(|f| u16::from(f.code)))),
        Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
            Step::Continue
        }
    }
}

/// How a connection's loop ended.
struct Closing {
    by_server: bool,
    close_sent: bool,
    status: Option<u16>,
}

/// What API Gateway answers when the stage throttles a message.
fn throttled(outbox: &Outbox, id: &str) {
    let reply = serde_json::json!({
        "message": "Too Many Requests",
        "connectionId": id,
        "requestId": format!("{id}-{}", now_ms()),
    });
    let _ = outbox.push(socket::text_frame(&reply.to_string()));
}

/// Unregisters the connection, writes out what is still queued (briefly), closes the socket
/// and runs `$disconnect`.
async fn close_connection(link: Link, mut socket: WebSocket, closing: Closing) {
    let Link { shared, outbox, id } = link;
    let connected_at = outbox.connected_at;
    shared.registry.peers().remove(&*id);
    // No more frames written from outside the task: the socket closes with it.
    {
        let mut queue = outbox.queue();
        queue.socket = None;
        queue.busy = true;
    }
    let mut status = closing.status;
    if closing.close_sent {
        // The server closed: wait briefly for the client's echo (its code wins, as before).
        let echo = async {
            while let Some(frame) = socket.next().await {
                if let Ok(Message::Close(_)) | Err(_) = frame {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, echo).await;
        status = status.or(Some(CLOSE_NORMAL));
    }
    tracing::info!(
        target: "venturekit_ws::local",
        connection_id = %id,
        code = status.map_or_else(|| "-".to_owned(), |c| c.to_string()),
        by = if closing.by_server { "server" } else { "client" },
        "closed"
    );
    if !closing.close_sent {
        let _ = tokio::time::timeout(CLOSE_GRACE, flush_outbox(&mut socket, &outbox)).await;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, socket.close(None)).await;
    let event = shared
        .events
        .disconnect(&id, connected_at, status, "closed");
    shared.handle(&event).await;
}

fn is_capacity(err: &tokio_tungstenite::tungstenite::Error) -> bool {
    matches!(err, tokio_tungstenite::tungstenite::Error::Capacity(_))
}
