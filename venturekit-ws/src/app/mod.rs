//! [`App`]: the builder — registration, configuration, the dispatcher and the local server.
//!
//! The command line (`serve`, `token`, `template`) is in `cli.rs`, template writing in
//! `template.rs` (cargo feature `deploy`).

mod cli;
#[cfg(feature = "deploy")]
mod template;

use crate::action::ActionDef;
use crate::auth::{JwksVerifier, TokenVerifier, Verifier};
use crate::config::{Config, DEV_SECRET, JwtKey};
use crate::deploy::{DeployConfig, EnvConfig};
use crate::dispatch::{Dispatcher, DispatcherParts};
use crate::error::Error;
use crate::hooks::{ConnectRequest, DisconnectReason, HookCtx, Hooks};
use crate::local::LocalServer;
use crate::store::{Connection, ConnectionStore, MemoryStore};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// A WebSocket application: actions plus configuration.
///
/// ```no_run
/// # use venturekit_ws::{App, actions, ws_action, Ctx, WsError};
/// #[ws_action("hello")]
/// async fn hello(ctx: Ctx) -> Result<String, WsError> {
///     Ok(format!("hello, {}", ctx.user_id().unwrap_or("stranger")))
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), venturekit_ws::Error> {
///     App::from_env()?.actions(actions![hello]).run().await
/// }
/// ```
pub struct App {
    config: Config,
    actions: Vec<ActionDef>,
    trust_client_tenant: bool,
    store: Option<Arc<dyn ConnectionStore>>,
    deploy: Option<DeployConfig>,
    name: Option<String>,
    authorize: Option<Arc<crate::dispatch::AuthorizeFn>>,
    states: crate::state::States,
    hooks: Hooks,
    app_tables: Vec<crate::deploy::AppTable>,
    topic_rules: Vec<crate::topics::TopicRule>,
    topic_store: Option<Arc<dyn crate::topics::TopicStore>>,
    clock: crate::clock::Clock,
    version: Option<String>,
    #[cfg_attr(not(feature = "contract"), allow(dead_code))]
    server_messages: Vec<(String, serde_json::Value)>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config)
            .field("actions", &self.actions)
            .field("trust_client_tenant", &self.trust_client_tenant)
            .finish_non_exhaustive()
    }
}

/// Where the dispatcher will run; decides the JWT key fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The local server: without a configured key, the public dev secret is used (with a warning).
    Local,
    /// AWS Lambda: a key must be configured.
    Lambda,
}
impl App {
    /// An app configured from the `VK_WS_*` environment variables.
    pub fn from_env() -> Result<Self, Error> {
        Ok(Self::new(Config::from_env()?))
    }

    /// An app with an explicit configuration.
    pub fn new(config: Config) -> Self {
        App {
            config,
            actions: Vec::new(),
            trust_client_tenant: false,
            store: None,
            deploy: None,
            name: None,
            authorize: None,
            states: crate::state::States::default(),
            hooks: Hooks::default(),
            app_tables: Vec::new(),
            topic_rules: Vec::new(),
            topic_store: None,
            clock: crate::clock::Clock::system(),
            version: None,
            server_messages: Vec::new(),
        }
    }

    /// The cargo package/binary name, used in hints and generated templates (default: the
    /// running executable's name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Registers the per-environment settings of `venturekit.toml` (usually embedded with
    /// `include_str!`, so Lambda and the local server use the same file). Invalid settings
    /// are an error naming the file, key and allowed range.
    ///
    /// The environment comes from `--env`, else `VK_WS_ENV`, else `dev` when defined.
    pub fn deploy_config(mut self, file: &str, text: &str) -> Result<Self, Error> {
        self.deploy =
            Some(DeployConfig::parse(file, text).map_err(|e| Error::Config(e.to_string()))?);
        Ok(self)
    }

    /// The selected environment's settings, if a `venturekit.toml` is registered.
    pub fn environment(&self) -> Result<Option<&EnvConfig>, Error> {
        let config_error = |e: crate::deploy::DeployError| Error::Config(e.to_string());
        match (&self.deploy, &self.config.env) {
            (Some(deploy), Some(name)) => deploy.env(name).map(Some).map_err(config_error),
            (Some(deploy), None) => Ok(deploy.envs.get("dev")),
            (None, Some(name)) => Err(Error::Config(format!(
                "VK_WS_ENV={name}, but the app registers no venturekit.toml (App::deploy_config)"
            ))),
            (None, None) => Ok(None),
        }
    }

    /// Registers actions (usually `actions![a, b, c]`). Duplicates are reported when the
    /// app starts.
    pub fn actions(mut self, defs: impl IntoIterator<Item = ActionDef>) -> Self {
        self.actions.extend(defs);
        self
    }

    /// Registers one action.
    pub fn action(mut self, def: ActionDef) -> Self {
        self.actions.push(def);
        self
    }

    /// **Insecure.** Lets a token without a tenant claim join whatever tenant the client
    /// asks for. Only for apps where tenants are not a security boundary.
    pub fn trust_client_tenant(mut self, trust: bool) -> Self {
        self.trust_client_tenant = trust;
        self
    }

    /// Gives the app a state value (a database client, an HTTP client, configuration):
    /// handlers receive it as a `State<T>` argument, hooks through their context. One value
    /// per type; a handler that needs a type the app was not given is an error when the app
    /// starts ([`Error::MissingState`]).
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.states.insert(value);
        self
    }

    /// Runs `hook` on every new connection, before its record is saved. It sees the
    /// upgrade request's headers and query string; `Err` refuses the connection (HTTP 403
    /// from the local server, status 403 from `$connect` on Lambda). An `internal` error
    /// ([`crate::WsError::internal`]) or a panic in the hook is the app failing rather than
    /// refusing: status 500, logged at error level. See [`crate::hooks`].
    pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(ConnectRequest, HookCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), crate::WsError>> + Send + 'static,
    {
        let hook = Arc::new(hook);
        self.hooks.on_connect = Some(Arc::new(move |request, ctx| {
            let hook = hook.clone();
            Box::pin(async move {
                crate::unwind::caught("on_connect", async move { hook(request, ctx).await })
                    .await
                    .unwrap_or_else(|| {
                        Err(crate::WsError::internal("the on_connect hook panicked"))
                    })
            })
        }));
        self
    }

    /// Runs `hook` after every successful `auth` (after the reply), with the authenticated
    /// record. A panic in the hook is caught and logged; the connection stays authenticated.
    pub fn on_auth<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Connection, HookCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook = Arc::new(hook);
        self.hooks.on_auth = Some(Arc::new(move |record, ctx| {
            let hook = hook.clone();
            Box::pin(async move {
                crate::unwind::caught("on_auth", async move { hook(record, ctx).await }).await;
            })
        }));
        self
    }

    /// Runs `hook` once for every connection whose record is removed, with the record as
    /// it was and why: `$disconnect` ([`DisconnectReason::Client`]), a 410 during a
    /// delivery (`Gone`), the sweeper (`Expired`), or the server closing it (`Closed`).
    ///
    /// The hook may send. Connections its sends find gone (or that it closes) have their
    /// own hook runs queued until this one returns, then run in turn: a broadcast that
    /// meets thousands of stale rows runs thousands of hooks one after another, never
    /// one inside another. A panic in the hook is caught and logged; the hook runs queued
    /// behind it still run.
    pub fn on_disconnect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Connection, DisconnectReason, HookCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook = Arc::new(hook);
        self.hooks.on_disconnect = Some(Arc::new(move |record, reason, ctx| {
            let hook = hook.clone();
            Box::pin(async move {
                crate::unwind::caught(
                    "on_disconnect",
                    async move { hook(record, reason, ctx).await },
                )
                .await;
            })
        }));
        self
    }

    /// Lets clients join topics matching `rule` (`vk:join`); deny by default. See
    /// [`crate::topics`].
    ///
    /// ```
    /// use venturekit_ws::{App, Config, TopicRule};
    /// let app = App::new(Config::default()).topic(
    ///     TopicRule::new("room:*")
    ///         .presence()
    ///         .authorize(|connection, _topic| connection.tenant_id.is_some()),
    /// );
    /// # let _ = app;
    /// ```
    pub fn topic(mut self, rule: crate::topics::TopicRule) -> Self {
        self.topic_rules.push(rule);
        self
    }

    /// Keeps topic memberships in `store` instead of the default for the mode (memory
    /// locally; `VK_WS_TOPICS_TABLE` on Lambda).
    pub fn topic_store(mut self, store: Arc<dyn crate::topics::TopicStore>) -> Self {
        self.topic_store = Some(store);
        self
    }

    fn topics(&self, mode: Mode) -> Result<Option<crate::topics::Topics>, Error> {
        let store: Arc<dyn crate::topics::TopicStore> = match (&self.topic_store, mode) {
            (Some(store), _) => store.clone(),
            (None, Mode::Local) => Arc::new(crate::topics::MemoryTopics::new()),
            (None, Mode::Lambda) if self.topic_rules.is_empty() => return Ok(None),
            (None, Mode::Lambda) => {
                return Err(Error::Config(
                    "the app declares topics (App::topic): set VK_WS_TOPICS_TABLE to their DynamoDB table".into(),
                ));
            }
        };
        Ok(Some(crate::topics::Topics::new(
            store,
            self.topic_rules.clone(),
            self.config.max_topics,
        )))
    }

    /// Declares a DynamoDB table the app owns (its state's store, say): the generated SAM
    /// template creates it, passes its name in its environment variable, and grants the
    /// function exactly the listed actions on it.
    pub fn app_table(mut self, table: crate::deploy::AppTable) -> Self {
        self.app_tables.push(table);
        self
    }

    /// Adds an app-wide authorization rule, checked for every guarded action after its
    /// declared roles and scopes. `Err(message)` refuses the call with `forbidden` (the
    /// message goes to the client); user code does not run.
    ///
    /// ```
    /// # use venturekit_ws::{App, Config};
    /// let app = App::new(Config::default()).authorize(|call| {
    ///     if call.action == "export" && call.connection.tenant_id.as_deref() == Some("trial") {
    ///         return Err("exports are not part of the trial".into());
    ///     }
    ///     Ok(())
    /// });
    /// # let _ = app;
    /// ```
    pub fn authorize(
        mut self,
        check: impl Fn(&crate::dispatch::Authorization<'_>) -> Result<(), String>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.authorize = Some(Arc::new(check));
        self
    }

    /// Uses `store` instead of the default for the mode.
    pub fn store(mut self, store: Arc<dyn ConnectionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The app's version, for the contract (`.version(env!("CARGO_PKG_VERSION"))`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Declares a frame the server pushes (not a reply), for the contract: its `action`
    /// value and its type.
    ///
    /// ```
    /// # use venturekit_ws::{App, Config};
    /// #[derive(serde::Serialize, schemars::JsonSchema)]
    /// struct Message { action: &'static str, from: String, text: String }
    /// let app = App::new(Config::default()).server_message::<Message>("message");
    /// assert!(app.contract().push("message").is_some());
    /// ```
    #[cfg(feature = "contract")]
    pub fn server_message<T: schemars::JsonSchema>(self, action: &str) -> Self {
        use crate::contract::ProbeSchema;
        let mut generator = crate::contract::SchemaGen::new();
        let schema = crate::contract::Probe::<T>::new()
            .reply_schema(&mut generator)
            .unwrap_or_default();
        self.server_message_schema(action, schema)
    }

    /// Declares a frame the server pushes with a hand-written JSON Schema (draft-07).
    #[cfg(feature = "contract")]
    pub fn server_message_schema(mut self, action: &str, schema: serde_json::Value) -> Self {
        self.server_messages.push((action.to_owned(), schema));
        self
    }

    /// The contract: every action's message and reply, and the pushed frames (see
    /// [`crate::contract`]).
    #[cfg(feature = "contract")]
    pub fn contract(&self) -> crate::contract::Contract {
        crate::contract::Contract::build(
            &self.binary_name(),
            self.version.as_deref().unwrap_or("0.0.0"),
            &self.actions,
            !self.topic_rules.is_empty(),
            self.server_messages.clone(),
        )
    }

    /// Reads time from `clock` instead of the system clock: the authentication window,
    /// sessions, token `exp`/`nbf`, rate windows, topic memberships and the sweeper all
    /// follow it. For tests; the `testing` feature's kit sets a manual clock.
    pub fn clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Mutable configuration (e.g. to shorten timeouts in tests).
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    fn token_verifier(&self, mode: Mode) -> Result<TokenVerifier, Error> {
        if let Some(url) = &self.config.jwks_url {
            return Ok(TokenVerifier::Jwks(JwksVerifier::new(url, &self.config)?));
        }
        let key = self.jwt_key(mode)?;
        Ok(TokenVerifier::Key(Verifier::new(&key, &self.config)?))
    }

    fn jwt_key(&self, mode: Mode) -> Result<JwtKey, Error> {
        match (&self.config.jwt_key, mode) {
            (Some(key), _) => Ok(key.clone()),
            (None, Mode::Local) => {
                tracing::warn!(
                    "VK_WS_JWT_SECRET is not set: using the public development secret. Never deploy like this."
                );
                Ok(JwtKey::Secret(DEV_SECRET.as_bytes().to_vec()))
            }
            (None, Mode::Lambda) => Err(Error::Config(
                "no JWT configuration: set VK_WS_JWT_SECRET (HS256), VK_WS_JWT_PUBLIC_KEY (PEM) or VK_WS_JWKS_URL (Cognito, Auth0, any OIDC provider)"
                    .into(),
            )),
        }
    }

    /// Builds the dispatcher, checking the registered actions.
    pub fn dispatcher(&self, mode: Mode) -> Result<Dispatcher, Error> {
        // Warned here, once per dispatcher (Lambda mode also checks the key earlier).
        if let Some(JwtKey::Secret(secret)) = &self.config.jwt_key
            && secret.len() < 32
        {
            tracing::warn!(
                bytes = secret.len(),
                "VK_WS_JWT_SECRET is shorter than 32 bytes: HS256 secrets should be at least 32 random bytes (e.g. `openssl rand -base64 48`)"
            );
        }
        let verifier = self.token_verifier(mode)?;
        let selection_field = match self.environment()? {
            Some(env) => env.websocket.selection_field().to_owned(),
            None => "action".to_owned(),
        };
        let store = match (&self.store, mode) {
            (Some(store), _) => store.clone(),
            (None, Mode::Local) => Arc::new(MemoryStore::with_clock(self.clock.clone())),
            (None, Mode::Lambda) => {
                return Err(Error::Lambda(
                    "no connection store: Lambda mode needs the DynamoDB store (an in-memory store would lose connections between invocations)".into(),
                ));
            }
        };
        let dispatcher = Dispatcher::new(DispatcherParts {
            actions: self.actions.clone(),
            verifier,
            store,
            auth_timeout_secs: self.config.auth_timeout.as_secs() as i64,
            session_ttl_secs: self.config.session_ttl.as_secs() as i64,
            trust_client_tenant: self.trust_client_tenant,
            fanout_concurrency: self.config.fanout_concurrency,
            limits: crate::dispatch::Limits::from_config(&self.config),
            selection_field,
            roles_claim: self.config.roles_claim.clone(),
            authorize: self.authorize.clone(),
            states: self.states.clone(),
            hooks: self.hooks.clone(),
            topics: self.topics(mode)?,
            clock: self.clock.clone(),
        })?;
        Ok(if self.config.panic_probe {
            tracing::warn!(
                "VK_WS_PANIC_PROBE=1: the action `vk:panic-probe` panics on purpose; never enable this in production"
            );
            dispatcher.with_builtin(ActionDef::of::<crate::action::PanicProbe>())
        } else {
            dispatcher
        })
    }

    /// Binds the local server on `addr` without serving yet (use port 0 in tests).
    pub async fn local_server(&self, addr: SocketAddr) -> Result<LocalServer, Error> {
        if self.config.jwt_key.is_none()
            && !addr.ip().is_loopback()
            && !self.config.allow_dev_secret
        {
            return Err(Error::Config(format!(
                "refusing to listen on {addr} with the public dev secret: anyone could mint tokens. Set VK_WS_JWT_SECRET, VK_WS_JWT_PUBLIC_KEY or VK_WS_JWKS_URL, or VK_WS_ALLOW_DEV_SECRET=1 if you really mean it"
            )));
        }
        let dispatcher = self.dispatcher(Mode::Local)?.log_traffic(true);
        let mut config = self.config.clone();
        if let Some(env) = self.environment()? {
            if !env.websocket.enabled {
                return Err(Error::Config(format!(
                    "websocket.enabled = false for env `{}`: nothing to serve",
                    env.name
                )));
            }
            // An explicit setting (VK_WS_IDLE_TIMEOUT_SEC, or set in code) wins over the file.
            config.idle_timeout =
                config
                    .idle_timeout
                    .or(Some(std::time::Duration::from_secs(u64::from(
                        env.websocket.idle_timeout_sec,
                    ))));
            config.stage_throttle = Some((
                env.websocket.throttle_rate_limit,
                env.websocket.throttle_burst_limit,
            ));
        }
        Ok(LocalServer::bind(dispatcher, &config, addr)
            .await?
            .with_catalog(self.console_catalog()))
    }

    /// The dev console's action picker: each action, who may call it, and an example
    /// message (from its schema with the `contract` feature, else just its name).
    fn console_catalog(&self) -> serde_json::Value {
        #[cfg(feature = "contract")]
        let examples: std::collections::HashMap<String, serde_json::Value> =
            self.contract().examples().into_iter().collect();
        #[cfg(not(feature = "contract"))]
        let examples: std::collections::HashMap<String, serde_json::Value> =
            std::collections::HashMap::new();
        let entry = |name: &str, public: bool, roles: &[&str]| {
            let example = examples
                .get(name)
                .cloned()
                .unwrap_or_else(|| serde_json::json!({ "action": name }));
            serde_json::json!({"action": name, "public": public, "roles": roles, "example": example})
        };
        let mut list = vec![entry("ping", true, &[])];
        if !self.topic_rules.is_empty() {
            list.push(entry("vk:join", false, &[]));
            list.push(entry("vk:leave", false, &[]));
        }
        let mut actions: Vec<&ActionDef> = self
            .actions
            .iter()
            .filter(|a| !a.name().starts_with(crate::action::RESERVED_PREFIX))
            .collect();
        actions.sort_by_key(|a| a.name());
        for def in actions {
            list.push(entry(def.name(), def.is_public(), def.roles()));
        }
        serde_json::Value::Array(list)
    }

    fn binary_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        std::env::args()
            .next()
            .and_then(|p| {
                std::path::Path::new(&p)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "app".into())
    }
}
