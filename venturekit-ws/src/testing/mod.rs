//! An in-process test kit for your actions (cargo feature `testing`).
//!
//! A [`TestKit`] is built from your real [`App`]: the same actions, state, hooks, roles,
//! topics and configuration. It replaces only what a test must control:
//! - the connection and topic stores become in-memory ones, read through a **manual
//!   clock** ([`TestKit::advance`] expires authentication windows, sessions, tokens and
//!   rate windows);
//! - the JWT key becomes the kit's own, so [`User`] tokens are minted for you;
//! - delivery is recorded per client, and [`Faults`] can fail it (410, throttling,
//!   timeouts) or fail the store.
//!
//! Messages go through the real dispatcher as real API Gateway events: the auth guard,
//! `ref`, decoding and error replies are the ones your users get. No sockets, no sleeps:
//! every push a message causes has happened when `send` returns, so a thousand messages
//! take milliseconds.
//!
//! The same test body runs end to end over real WebSockets against the local server with
//! [`TestKit::over_sockets`]; assertions then wait (up to [`TestKit::with_wait`], 5 s by
//! default) for frames to arrive.
//!
//! ```
//! use serde::Deserialize;
//! use serde_json::json;
//! use venturekit_ws::testing::{TestKit, User};
//! use venturekit_ws::{App, Config, Ctx, WsError, actions, ws_action};
//!
//! #[derive(Deserialize)]
//! struct Shout { text: String }
//!
//! #[ws_action("shout")]
//! async fn shout(ctx: Ctx, msg: Shout) -> Result<serde_json::Value, WsError> {
//!     let from = ctx.require_user()?.to_owned();
//!     ctx.broadcast(&json!({"action": "shouted", "from": from, "text": msg.text.to_uppercase()})).await?;
//!     Ok(json!({"action": "shout", "ok": true}))
//! }
//!
//! fn app() -> App {
//!     App::new(Config::default()).actions(actions![shout])
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let kit = TestKit::new(app()).unwrap();
//! let alice = kit.authed(User::new("alice").tenant("acme")).await;
//! let bob = kit.authed(User::new("bob").tenant("acme")).await;
//! let eve = kit.authed(User::new("eve").tenant("globex")).await;
//!
//! let reply = alice.request(&json!({"action": "shout", "text": "hi"})).await;
//! assert_eq!(reply["ok"], true);
//! kit.assert_delivered(json!({"action": "shouted", "text": "HI"}), &[&alice, &bob]).await;
//! eve.assert_no_push(std::time::Duration::from_millis(100)).await;
//!
//! // Before `auth`, the guard answers and the action never runs.
//! let stranger = kit.connect("stranger").await;
//! stranger.send(&json!({"action": "shout", "text": "hi"})).await;
//! stranger.assert_error("unauthorized").await;
//! # }
//! ```
//!
//! Every `assert_*` has a `try_*` twin returning [`KitError`] instead of panicking. A
//! failure says what did arrive:
//!
//! ```text
//! alice: no frame matching {"action":"shouted","text":"HI"}; 2 unread frame(s) (1 already read):
//!     {"action":"shouted","from":"bob","text":"HELLO"}
//!     {"action":"error","error":{"code":"forbidden","message":"needs role admin"}}
//! ```

mod client;
mod faults;
mod inbox;
mod sockets;

pub use client::TestClient;
pub use faults::{Faults, STORE_FAILED, THROTTLED, TIMED_OUT};
pub use inbox::{Closed, json_contains};

use crate::app::{App, Mode};
use crate::auth::{DevToken, mint_dev_token_at};
use crate::clock::Clock;
use crate::config::{Config, JwtKey};
use crate::delivery::{Delivery, DeliveryError};
use crate::dispatch::{Dispatcher, SweepReport};
use crate::event::EventBuilder;
use crate::messaging::Messenger;
use crate::protocol::MAX_MESSAGE_BYTES;
use crate::store::{Connection, ConnectionStore, MemoryStore};
use crate::topics::{MemoryTopics, TopicMember};
use inbox::{Inbox, show};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A failed kit assertion or operation; its text says what was expected and what arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KitError(pub String);

impl std::fmt::Display for KitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KitError {}

/// Who a test client authenticates as: the claims of a token the kit mints with its key.
///
/// ```
/// use venturekit_ws::testing::User;
/// let admin = User::new("ada").tenant("acme").role("admin").scope("chat:write")
///     .claim("plan", serde_json::json!("pro")).email("ada@example.com");
/// # let _ = admin;
/// ```
#[derive(Debug, Clone)]
pub struct User {
    spec: DevToken,
    tenant_request: Option<String>,
}

impl User {
    /// A user with this `sub` and no tenant, roles or scopes; the token lives one hour.
    pub fn new(user_id: impl Into<String>) -> Self {
        User {
            spec: DevToken {
                sub: user_id.into(),
                ..DevToken::default()
            },
            tenant_request: None,
        }
    }

    /// Adds a tenant to the token's tenant claim (one tenant: a string; several: an array,
    /// and the client must pick one with [`User::joining`]).
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.spec.tenants.push(tenant.into());
        self
    }

    /// The `tenantId` the `auth` message asks for.
    pub fn joining(mut self, tenant: impl Into<String>) -> Self {
        self.tenant_request = Some(tenant.into());
        self
    }

    /// Adds a role (the roles claim).
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.spec.roles.push(role.into());
        self
    }

    /// Adds a scope (`scope`, space-separated).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.spec.scopes.push(scope.into());
        self
    }

    /// Adds a claim, verbatim (kept on the record when the app keeps it).
    pub fn claim(mut self, name: impl Into<String>, value: Value) -> Self {
        self.spec.claims.insert(name.into(), value);
        self
    }

    /// Sets `email`.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.spec.email = Some(email.into());
        self
    }

    /// Sets the token's lifetime (from the kit clock's now).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.spec.ttl_secs = ttl.as_secs().max(1);
        self
    }

    /// The user id (`sub`).
    pub fn id(&self) -> &str {
        &self.spec.sub
    }
}

/// The upgrade request of a connection, for apps with a connect hook.
///
/// ```
/// use venturekit_ws::testing::Connect;
/// let request = Connect::new().header("origin", "https://app.example").query("room", "lobby");
/// # let _ = request;
/// ```
#[derive(Debug, Clone, Default)]
pub struct Connect {
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
}

impl Connect {
    /// No headers, no query string.
    pub fn new() -> Self {
        Connect::default()
    }

    /// Adds a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a query string parameter.
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }
}

/// An app under test. See the [module docs](self).
pub struct TestKit {
    kit: Arc<Kit>,
}

impl std::fmt::Debug for TestKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKit")
            .field("over_sockets", &self.is_over_sockets())
            .field("clock", &self.kit.clock)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Kit {
    clock: Clock,
    store: Arc<MemoryStore>,
    faults: Faults,
    secret: Vec<u8>,
    config: Config,
    backend: Backend,
    clients: Mutex<Vec<Registered>>,
    sent: Mutex<Vec<Value>>,
    next_ref: AtomicU64,
    wait: Option<Duration>,
}

/// A client the kit knows of, for [`TestKit::assert_delivered`].
#[derive(Clone)]
struct Registered {
    label: String,
    connection_id: String,
    inbox: Arc<Inbox>,
}

enum Backend {
    InProcess(Box<InProcess>),
    Sockets(sockets::Server),
}

struct InProcess {
    dispatcher: Dispatcher,
    recorder: Arc<Recorder>,
    delivery: Arc<dyn Delivery>,
    events: EventBuilder,
}

/// The in-process delivery: frames go to the registered client's inbox; a close marks it
/// closed and queues the `$disconnect` API Gateway would send.
#[derive(Default)]
struct Recorder {
    inboxes: Mutex<HashMap<String, Arc<Inbox>>>,
    closed: Mutex<Vec<String>>,
}

impl Recorder {
    fn inbox(&self, id: &str) -> Option<Arc<Inbox>> {
        self.inboxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .filter(|inbox| !inbox.is_closed())
            .cloned()
    }
}

#[async_trait::async_trait]
impl Delivery for Recorder {
    async fn post(&self, connection_id: &str, payload: &str) -> Result<(), DeliveryError> {
        if payload.len() > MAX_MESSAGE_BYTES {
            return Err(DeliveryError::PayloadTooLarge(payload.len()));
        }
        let inbox = self.inbox(connection_id).ok_or(DeliveryError::Gone)?;
        inbox.push(payload);
        Ok(())
    }

    async fn close(&self, connection_id: &str) -> Result<(), DeliveryError> {
        let inbox = self.inbox(connection_id).ok_or(DeliveryError::Gone)?;
        inbox.close(1000, "Goodbye");
        self.closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(connection_id.to_owned());
        Ok(())
    }
}

/// What the kit changes in the app: its clock, stores, key and faults.
struct Prepared {
    app: App,
    clock: Clock,
    store: Arc<MemoryStore>,
    faults: Faults,
    secret: Vec<u8>,
}

fn prepare(mut app: App) -> Prepared {
    let clock = Clock::manual(crate::clock::now_ms());
    let store = Arc::new(MemoryStore::with_clock(clock.clone()));
    let faults = Faults::default();
    let secret: [u8; 32] = rand::random();
    let config = app.config_mut();
    config.jwt_key = Some(JwtKey::Secret(secret.to_vec()));
    config.jwks_url = None;
    let app = app
        .clock(clock.clone())
        .store(Arc::new(faults::FaultStore {
            inner: store.clone(),
            faults: faults.clone(),
        }))
        .topic_store(Arc::new(MemoryTopics::new()));
    Prepared {
        app,
        clock,
        store,
        faults,
        secret: secret.to_vec(),
    }
}

/// How long assertions wait for frames over sockets, unless changed with
/// [`TestKit::with_wait`].
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

impl TestKit {
    /// The kit for `app`, in process: no sockets, no sleeps.
    pub fn new(app: App) -> Result<TestKit, crate::Error> {
        let Prepared {
            app,
            clock,
            store,
            faults,
            secret,
        } = prepare(app);
        let recorder = Arc::new(Recorder::default());
        let delivery: Arc<dyn Delivery> = Arc::new(faults::FaultDelivery {
            inner: recorder.clone(),
            faults: faults.clone(),
        });
        let dispatcher = app.dispatcher(Mode::Local)?;
        Ok(TestKit {
            kit: Arc::new(Kit {
                clock,
                store,
                faults,
                secret,
                config: app.config().clone(),
                backend: Backend::InProcess(Box::new(InProcess {
                    dispatcher,
                    recorder,
                    delivery,
                    events: EventBuilder::default(),
                })),
                clients: Mutex::new(Vec::new()),
                sent: Mutex::new(Vec::new()),
                next_ref: AtomicU64::new(1),
                wait: None,
            }),
        })
    }

    /// The kit for `app` over real WebSockets: the local server on an ephemeral loopback
    /// port, with the kit's clock, stores, key and faults. The same test body runs
    /// unchanged; assertions wait for frames to arrive. The background sweeper is off:
    /// call [`TestKit::sweep`].
    pub async fn over_sockets(app: App) -> Result<TestKit, crate::Error> {
        let Prepared {
            app,
            clock,
            store,
            faults,
            secret,
        } = prepare(app);
        let server = sockets::Server::start(&app, faults.clone()).await?;
        Ok(TestKit {
            kit: Arc::new(Kit {
                clock,
                store,
                faults,
                secret,
                config: app.config().clone(),
                backend: Backend::Sockets(server),
                clients: Mutex::new(Vec::new()),
                sent: Mutex::new(Vec::new()),
                next_ref: AtomicU64::new(1),
                wait: Some(DEFAULT_WAIT),
            }),
        })
    }

    /// Sets how long assertions wait for frames over sockets (in process nothing waits).
    /// Call before connecting clients.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        if let Some(kit) = Arc::get_mut(&mut self.kit)
            && kit.wait.is_some()
        {
            kit.wait = Some(wait);
        }
        self
    }

    /// Whether this kit talks to the local server over sockets.
    pub fn is_over_sockets(&self) -> bool {
        matches!(self.kit.backend, Backend::Sockets(_))
    }

    /// The `ws://` address of the local server, over sockets.
    pub fn url(&self) -> Option<&str> {
        match &self.kit.backend {
            Backend::Sockets(server) => Some(server.url.as_str()),
            Backend::InProcess(_) => None,
        }
    }

    /// Opens a connection named `label` (the name failure messages use). Panics if the
    /// app's connect hook refuses it; see [`TestKit::connect_with`].
    pub async fn connect(&self, label: &str) -> TestClient {
        self.connect_with(label, Connect::new())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Opens a connection with headers and a query string; `Err` says with which status
    /// the connection was refused.
    pub async fn connect_with(
        &self,
        label: &str,
        request: Connect,
    ) -> Result<TestClient, KitError> {
        TestClient::open(self.kit.clone(), label, request).await
    }

    /// Connects a client named after the user and authenticates it ([`TestClient::auth`]).
    pub async fn authed(&self, user: User) -> TestClient {
        let client = self.connect(user.id()).await;
        client.auth(user).await;
        client
    }

    /// A token for `user`, signed with the kit's key, issued at the kit clock's now.
    pub fn token(&self, user: &User) -> String {
        self.kit.token(user)
    }

    /// The kit's clock (manual: it moves only when told).
    pub fn clock(&self) -> &Clock {
        &self.kit.clock
    }

    /// Moves the clock forward: authentication windows, sessions, token lifetimes and
    /// rate windows pass. Expired connections are refused from then on; run
    /// [`TestKit::sweep`] to close them as the scheduled sweeper would.
    pub fn advance(&self, by: Duration) {
        self.kit.clock.advance(by);
    }

    /// Runs the sweeper once: closes and removes every expired connection (each gets an
    /// `unauthorized` frame, then the close), running the disconnect hook.
    pub async fn sweep(&self) -> SweepReport {
        let report = match &self.kit.backend {
            Backend::InProcess(p) => {
                let messenger = p.dispatcher.messenger(p.delivery.clone());
                let report = p.dispatcher.sweep(&messenger).await;
                self.kit.settle().await;
                report
            }
            Backend::Sockets(server) => server.dispatcher.sweep(&server.messenger).await,
        };
        report.unwrap_or_else(|e| panic!("the sweep failed: {e}"))
    }

    /// Every frame the kit's clients sent, in order (JSON frames only): for checking them
    /// against a contract, say.
    pub fn sent_frames(&self) -> Vec<Value> {
        self.kit
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The failures to inject.
    pub fn faults(&self) -> &Faults {
        &self.kit.faults
    }

    /// The in-memory connection store (without injected faults).
    pub fn store(&self) -> Arc<dyn ConnectionStore> {
        self.kit.store.clone()
    }

    /// Messaging as out-of-band code (a job, a queue consumer) would do it: across tenants,
    /// through the kit's delivery.
    pub fn messenger(&self) -> Messenger {
        self.kit.messenger()
    }

    /// The live record of `client`'s connection; panics (listing the live records) if
    /// there is none.
    ///
    /// ```
    /// # use venturekit_ws::{App, Config, TopicRule, testing::{TestKit, User}};
    /// # use serde_json::json;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mut config = Config::default();
    /// config.keep_claims = vec!["plan".into()];
    /// let kit = TestKit::new(App::new(config)).unwrap();
    /// let ada = kit.authed(User::new("ada").tenant("acme").claim("plan", json!("pro"))).await;
    /// let record = kit.connection(&ada).await;
    /// assert_eq!(record.tenant_id.as_deref(), Some("acme"));
    /// assert_eq!(record.claims.get("plan"), Some(&json!("pro")));
    ///
    /// ada.disconnect().await;
    /// let failure = kit.try_connection(&ada).await.unwrap_err();
    /// assert_eq!(failure.0, format!(
    ///     "ada: no live connection record (connection id {}); no live records",
    ///     ada.connection_id()
    /// ));
    /// # }
    /// ```
    pub async fn connection(&self, client: &TestClient) -> Connection {
        self.try_connection(client)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`TestKit::connection`], returning the failure.
    pub async fn try_connection(&self, client: &TestClient) -> Result<Connection, KitError> {
        let id = client.connection_id();
        if let Some(record) = self.kit.eventually(|| self.live(id), Option::is_some).await {
            return Ok(record);
        }
        Err(KitError(format!(
            "{}: no live connection record (connection id {id}); {}",
            client.label(),
            self.describe_records().await
        )))
    }

    /// Asserts that `client`'s connection has no live record (removed or expired).
    ///
    /// ```
    /// # use venturekit_ws::{App, Config, TopicRule, testing::{TestKit, User}};
    /// # use serde_json::json;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use std::time::Duration;
    /// let kit = TestKit::new(App::new(Config::default())).unwrap();
    /// let bob = kit.authed(User::new("bob").tenant("acme")).await;
    /// let failure = kit.try_no_connection(&bob).await.unwrap_err();
    /// assert_eq!(failure.0, "bob: expected no live connection record, found authenticated as bob in tenant acme");
    ///
    /// kit.advance(Duration::from_secs(2 * 3600 + 1)); // past the session
    /// kit.assert_no_connection(&bob).await;
    /// # }
    /// ```
    pub async fn assert_no_connection(&self, client: &TestClient) {
        self.try_no_connection(client)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`TestKit::assert_no_connection`], returning the failure.
    pub async fn try_no_connection(&self, client: &TestClient) -> Result<(), KitError> {
        let id = client.connection_id();
        match self.kit.eventually(|| self.live(id), Option::is_none).await {
            None => Ok(()),
            Some(record) => Err(KitError(format!(
                "{}: expected no live connection record, found {}",
                client.label(),
                describe_record(&record)
            ))),
        }
    }

    async fn live(&self, id: &str) -> Option<Connection> {
        self.kit.store.get(id).await.ok().flatten()
    }

    async fn describe_records(&self) -> String {
        let records = self.kit.store.list().await.unwrap_or_default();
        if records.is_empty() {
            return "no live records".into();
        }
        let mut text = format!("{} live record(s):", records.len());
        for record in &records {
            text.push_str("\n    ");
            text.push_str(&self.kit.label_of(&record.connection_id));
            text.push_str(": ");
            text.push_str(&describe_record(record));
        }
        text
    }

    /// The live members of topic `topic` in `tenant`'s scope (`None`: the tenant-less one).
    pub async fn members(&self, tenant: Option<&str>, topic: &str) -> Vec<TopicMember> {
        self.kit
            .messenger()
            .topic_members(tenant, topic)
            .await
            .unwrap_or_else(|e| panic!("reading the members of `{topic}` failed: {e}"))
    }

    /// Asserts that exactly `clients` are members of topic `topic` in `tenant`'s scope.
    ///
    /// ```
    /// # use venturekit_ws::{App, Config, TopicRule, testing::{TestKit, User}};
    /// # use serde_json::json;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let kit = TestKit::new(App::new(Config::default()).topic(TopicRule::new("room:*"))).unwrap();
    /// let alice = kit.authed(User::new("alice").tenant("acme")).await;
    /// let bob = kit.authed(User::new("bob").tenant("acme")).await;
    /// alice.request(&json!({"action": "vk:join", "topic": "room:1"})).await;
    /// kit.assert_members(Some("acme"), "room:1", &[&alice]).await;
    /// assert_eq!(kit.members(Some("acme"), "room:1").await[0].user_id, "alice");
    ///
    /// let failure = kit.try_members(Some("acme"), "room:1", &[&alice, &bob]).await.unwrap_err();
    /// assert_eq!(failure.0, "topic `room:1` (tenant acme): expected members [alice, bob], found [alice]");
    /// # }
    /// ```
    pub async fn assert_members(&self, tenant: Option<&str>, topic: &str, clients: &[&TestClient]) {
        self.try_members(tenant, topic, clients)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`TestKit::assert_members`], returning the failure.
    pub async fn try_members(
        &self,
        tenant: Option<&str>,
        topic: &str,
        clients: &[&TestClient],
    ) -> Result<(), KitError> {
        let mut want: Vec<String> = clients.iter().map(|c| c.label().to_owned()).collect();
        want.sort();
        let got = self
            .kit
            .eventually(
                || async {
                    let members = self.members(tenant, topic).await;
                    let mut labels: Vec<String> = members
                        .iter()
                        .map(|m| self.kit.label_of(&m.connection_id))
                        .collect();
                    labels.sort();
                    labels
                },
                |labels| *labels == want,
            )
            .await;
        if got == want {
            return Ok(());
        }
        Err(KitError(format!(
            "topic `{topic}` ({}): expected members [{}], found [{}]",
            tenant.map_or_else(|| "no tenant".to_owned(), |t| format!("tenant {t}")),
            want.join(", "),
            got.join(", ")
        )))
    }

    /// Asserts that exactly `clients`, among all of this kit's clients, received a frame
    /// matching `subset` (see [`json_contains`]); the matching frames are consumed. Use it for a
    /// broadcast or a topic publish.
    ///
    /// ```
    /// # use venturekit_ws::{App, Config, TopicRule, testing::{TestKit, User}};
    /// # use serde_json::json;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let kit = TestKit::new(App::new(Config::default())).unwrap();
    /// let alice = kit.authed(User::new("alice").tenant("acme")).await;
    /// let bob = kit.authed(User::new("bob").tenant("acme")).await;
    /// let gus = kit.authed(User::new("gus").tenant("globex")).await;
    /// kit.messenger().broadcast_in(&venturekit_ws::Scope::of_tenant(Some("acme")), &json!({"action": "news"})).await.unwrap();
    /// kit.assert_delivered(json!({"action": "news"}), &[&alice, &bob]).await;
    ///
    /// kit.messenger().broadcast_in(&venturekit_ws::Scope::All, &json!({"action": "news"})).await.unwrap();
    /// let failure = kit.try_delivered(json!({"action": "news"}), &[&alice]).await.unwrap_err();
    /// assert_eq!(failure.0, "{\"action\":\"news\"} was not delivered as expected:\n  received by clients not listed: bob, gus");
    /// # }
    /// ```
    pub async fn assert_delivered(&self, subset: Value, clients: &[&TestClient]) {
        self.try_delivered(subset, clients)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`TestKit::assert_delivered`], returning the failure.
    pub async fn try_delivered(
        &self,
        subset: Value,
        clients: &[&TestClient],
    ) -> Result<(), KitError> {
        let everyone = self.kit.clients();
        let expected: Vec<&str> = clients.iter().map(|c| c.connection_id()).collect();
        let mut missing = Vec::new();
        for client in &everyone {
            if !expected.contains(&client.connection_id.as_str()) {
                continue;
            }
            let found = client
                .inbox
                .wait_for(self.kit.wait, |state| {
                    state.take(|f| json_contains(f, &subset))
                })
                .await;
            if found.is_none() {
                missing.push(client);
            }
        }
        // Whoever else got it got it by now (the expected ones have all arrived), or, over
        // sockets, within a short grace period.
        if self.kit.wait.is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut unexpected = Vec::new();
        for client in &everyone {
            if expected.contains(&client.connection_id.as_str()) {
                continue;
            }
            if client
                .inbox
                .lock()
                .take(|f| json_contains(f, &subset))
                .is_some()
            {
                unexpected.push(client.label.clone());
            }
        }
        if missing.is_empty() && unexpected.is_empty() {
            return Ok(());
        }
        let mut text = format!("{} was not delivered as expected:", show(&subset));
        for client in missing {
            text.push_str(&format!(
                "\n  {} did not receive it; {}",
                client.label,
                client.inbox.lock().describe()
            ));
        }
        if !unexpected.is_empty() {
            text.push_str(&format!(
                "\n  received by clients not listed: {}",
                unexpected.join(", ")
            ));
        }
        Err(KitError(text))
    }
}

fn describe_record(record: &Connection) -> String {
    let mut text = if record.authenticated {
        format!(
            "authenticated as {}",
            record.user_id.as_deref().unwrap_or("?")
        )
    } else {
        "unauthenticated".to_owned()
    };
    if let Some(tenant) = &record.tenant_id {
        text.push_str(&format!(" in tenant {tenant}"));
    }
    if !record.claims.is_empty() {
        text.push_str(&format!(
            ", claims {}",
            Value::Object(record.claims.as_map().clone())
        ));
    }
    text
}

impl Kit {
    fn token(&self, user: &User) -> String {
        mint_dev_token_at(
            &self.secret,
            &user.spec,
            &self.config,
            self.clock.now_secs(),
        )
        .unwrap_or_else(|e| panic!("minting a token for {}: {e}", user.id()))
    }

    fn messenger(&self) -> Messenger {
        match &self.backend {
            Backend::InProcess(p) => p.dispatcher.messenger(p.delivery.clone()),
            Backend::Sockets(server) => server.messenger.clone(),
        }
    }

    fn clients(&self) -> Vec<Registered> {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn register(&self, label: &str, connection_id: &str, inbox: Arc<Inbox>) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Registered {
                label: label.to_owned(),
                connection_id: connection_id.to_owned(),
                inbox,
            });
    }

    /// The label of the client holding `connection_id` (the id itself if none).
    fn label_of(&self, connection_id: &str) -> String {
        self.clients()
            .into_iter()
            .find(|c| c.connection_id == connection_id)
            .map_or_else(|| connection_id.to_owned(), |c| c.label)
    }

    fn next_ref(&self) -> String {
        format!("kit-{}", self.next_ref.fetch_add(1, Ordering::Relaxed))
    }

    /// In process: delivers the `$disconnect` events API Gateway sends after the server
    /// closed connections (which may close others, through hooks).
    async fn settle(&self) {
        let Backend::InProcess(p) = &self.backend else {
            return;
        };
        loop {
            let closed: Vec<String> =
                std::mem::take(&mut *p.recorder.closed.lock().unwrap_or_else(|e| e.into_inner()));
            if closed.is_empty() {
                return;
            }
            for id in closed {
                let event = p.events.disconnect(&id, 0, Some(1000), "Goodbye");
                p.dispatcher.handle(&event, p.delivery.clone()).await;
            }
        }
    }

    /// Evaluates `read` until `done` holds (over sockets, for up to the wait; in process
    /// once) and returns the last value read.
    async fn eventually<T, F, Fut>(&self, read: F, done: impl Fn(&T) -> bool) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let deadline = self.wait.map(|w| tokio::time::Instant::now() + w);
        loop {
            let value = read().await;
            match deadline {
                Some(deadline) if !done(&value) && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                _ => return value,
            }
        }
    }
}
