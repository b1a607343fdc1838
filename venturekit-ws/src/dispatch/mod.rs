//! The dispatcher: `$connect`, `$disconnect` and `$default`, routing, typed decoding and
//! the error replies.
//!
//! One concept per file: [`envelope`](self) reads the `action` without decoding the rest,
//! `guard.rs` holds the auth guard and the rate window, `auth.rs` the built-in `auth`
//! action, `sweep.rs` the sweeper of expired connections.

mod auth;
mod envelope;
mod guard;
mod sweep;
mod topics;

pub use guard::{Authorization, AuthorizeFn};
#[cfg(feature = "aws")]
pub(crate) use sweep::DEADLINE_MARGIN as sweep_deadline_margin;
pub use sweep::{SWEEP_PAGE, SweepOptions, SweepReport};

use envelope::envelope;
use guard::RateCheck;

use crate::action::ActionDef;
use crate::auth::TokenVerifier;
use crate::clock::Clock;
use crate::ctx::{AppContext, Ctx};
use crate::delivery::{Delivery, DeliveryError};
use crate::event::{RequestInfo, Route, WebSocketEvent, WebSocketResponse, response};
use crate::hooks::{ConnectRequest, DisconnectReason, HookCtx, Hooks, OnRemoved};
use crate::messaging::Messenger;
use crate::protocol::{self, ErrorCode, MAX_MESSAGE_BYTES, Ref};
use crate::state::States;
use crate::store::{Connection, ConnectionStore, StoreError};
use crate::topics::Topics;
use std::collections::HashMap;
use std::sync::Arc;

/// Runs API Gateway WebSocket events through the registered actions.
pub struct Dispatcher {
    actions: HashMap<&'static str, ActionDef>,
    verifier: TokenVerifier,
    store: Arc<dyn ConnectionStore>,
    auth_timeout_secs: i64,
    session_ttl_secs: i64,
    trust_client_tenant: bool,
    fanout_concurrency: usize,
    limits: Limits,
    selection_field: String,
    authorize: Option<Arc<AuthorizeFn>>,
    app: Arc<AppContext>,
    hooks: Hooks,
    topics: Option<Topics>,
    traffic_log: bool,
    clock: Clock,
    spill: Option<crate::fanout::Spill>,
}

/// Abuse limits applied before any routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages per window (0 = unlimited).
    pub burst: u32,
    /// Window length in milliseconds.
    pub window_ms: i64,
    /// Failed `auth` attempts before the connection is closed.
    pub max_auth_failures: u32,
    /// Longest accepted token.
    pub max_token_bytes: usize,
}

impl Limits {
    /// The limits of `config`.
    pub fn from_config(config: &crate::Config) -> Self {
        let rate = config.rate_limit_per_sec;
        Limits {
            burst: if rate == 0 {
                0
            } else {
                config.rate_limit_burst
            },
            window_ms: if rate == 0 {
                1000
            } else {
                (i64::from(config.rate_limit_burst) * 1000 / i64::from(rate)).max(1)
            },
            max_auth_failures: config.max_auth_failures,
            max_token_bytes: config.max_token_bytes,
        }
    }
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.actions.keys().collect();
        names.sort();
        f.debug_struct("Dispatcher")
            .field("actions", &names)
            .field("auth_timeout_secs", &self.auth_timeout_secs)
            .field("session_ttl_secs", &self.session_ttl_secs)
            .finish_non_exhaustive()
    }
}
/// Settings of a [`Dispatcher`].
pub struct DispatcherParts {
    /// The registered actions (already checked for duplicates).
    pub actions: Vec<ActionDef>,
    /// Token verification.
    pub verifier: TokenVerifier,
    /// Where connection records live.
    pub store: Arc<dyn ConnectionStore>,
    /// The unauthenticated window, seconds.
    pub auth_timeout_secs: i64,
    /// The authenticated record lifetime, seconds.
    pub session_ttl_secs: i64,
    /// Trust a client-requested tenant when the token has no tenant claim (insecure).
    pub trust_client_tenant: bool,
    /// Posts in flight per fan-out.
    pub fanout_concurrency: usize,
    /// Abuse limits.
    pub limits: Limits,
    /// The message field that selects the action (`$request.body.<field>`), usually `action`.
    pub selection_field: String,
    /// The claim holding the caller's roles (`VK_WS_ROLES_CLAIM`).
    pub roles_claim: String,
    /// The app-wide authorization check, if any.
    pub authorize: Option<Arc<AuthorizeFn>>,
    /// The app's state, handed to handlers.
    pub states: States,
    /// Lifecycle hooks.
    pub hooks: Hooks,
    /// Topics and presence, if the app uses them.
    pub topics: Option<Topics>,
    /// Where time is read (the system clock outside tests).
    pub clock: Clock,
}

impl Dispatcher {
    /// Builds a dispatcher. Duplicate or reserved names are errors.
    pub fn new(parts: DispatcherParts) -> Result<Self, crate::Error> {
        let mut actions = HashMap::with_capacity(parts.actions.len());
        for def in parts.actions {
            if def.name().is_empty()
                || crate::action::RESERVED_NAMES.contains(&def.name())
                || def.name().starts_with(crate::action::RESERVED_PREFIX)
            {
                return Err(crate::Error::ReservedAction(def.name().to_owned()));
            }
            for key in def.required_state() {
                if !parts.states.contains(&key) {
                    return Err(crate::Error::MissingState {
                        action: def.name().to_owned(),
                        type_name: key.type_name().to_owned(),
                    });
                }
            }
            let name = def.name();
            if actions.insert(name, def).is_some() {
                return Err(crate::Error::DuplicateAction(name.to_owned()));
            }
        }
        Ok(Dispatcher {
            actions,
            verifier: parts.verifier,
            store: parts.store,
            auth_timeout_secs: parts.auth_timeout_secs,
            session_ttl_secs: parts.session_ttl_secs,
            trust_client_tenant: parts.trust_client_tenant,
            fanout_concurrency: parts.fanout_concurrency,
            limits: parts.limits,
            selection_field: parts.selection_field,
            authorize: parts.authorize,
            app: Arc::new(AppContext {
                states: parts.states,
                roles_claim: parts.roles_claim,
            }),
            hooks: parts.hooks,
            topics: parts.topics,
            traffic_log: false,
            clock: parts.clock,
            spill: None,
        })
    }

    /// Registers one of the framework's own `vk:` actions (reserved names are refused for
    /// user actions, not for these).
    pub(crate) fn with_builtin(mut self, def: ActionDef) -> Self {
        self.actions.insert(def.name(), def);
        self
    }

    /// Logs one info line per message (action, outcome, milliseconds) under the target
    /// `venturekit_ws::local`, and the frames at debug (tokens redacted): the local server's
    /// dev log. Off on Lambda, where CloudWatch would bill every line.
    pub fn log_traffic(mut self, on: bool) -> Self {
        self.traffic_log = on;
        self
    }

    /// The registered actions, by name: (name, public, roles, scopes).
    pub fn action_list(
        &self,
    ) -> Vec<(
        &'static str,
        bool,
        &'static [&'static str],
        &'static [&'static str],
    )> {
        let mut list: Vec<_> = self
            .actions
            .values()
            .filter(|a| !a.name().starts_with(crate::action::RESERVED_PREFIX))
            .map(|a| (a.name(), a.is_public(), a.roles(), a.scopes()))
            .collect();
        list.sort_by_key(|a| a.0);
        list
    }

    /// The clock the dispatcher reads time from.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ConnectionStore> {
        &self.store
    }

    /// Messaging through `delivery`.
    pub fn messenger(&self, delivery: Arc<dyn Delivery>) -> Messenger {
        let on_removed = self.hooks.on_disconnect.clone().map(|hook| OnRemoved {
            hook,
            app: self.app.clone(),
        });
        Messenger::new(self.store.clone(), delivery)
            .with_concurrency(self.fanout_concurrency)
            .with_on_removed(on_removed)
            .with_topics(self.topics.clone())
            .with_clock(self.clock.clone())
            .with_spill(self.spill.clone())
    }

    /// Spills large fan-outs of this dispatcher's messengers to a queue (see
    /// [`crate::fanout`]).
    pub fn with_spill(mut self, spill: crate::fanout::Spill) -> Self {
        self.spill = Some(spill);
        self
    }

    /// Handles one API Gateway WebSocket event. Client mistakes are answered to the client
    /// and still return 200; only a store failure on `$connect` returns 500 (API Gateway
    /// then refuses the connection).
    pub async fn handle(
        &self,
        event: &WebSocketEvent,
        delivery: Arc<dyn Delivery>,
    ) -> WebSocketResponse {
        let Some(request) = RequestInfo::of(event) else {
            tracing::warn!("event without requestContext.connectionId ignored");
            return response(400);
        };
        match Route::of(event) {
            Route::Connect => {
                let connected_at = match event.request_context.connected_at {
                    0 => self.clock.now_ms(),
                    at => at,
                };
                if let Some(hook) = &self.hooks.on_connect {
                    let ctx = HookCtx::new(self.messenger(delivery), self.app.clone());
                    if let Err(refused) = hook(connect_request(event, &request), ctx).await {
                        if refused.code() == ErrorCode::Internal {
                            tracing::error!(connection_id = %request.connection_id, error = %refused, "$connect: the app's hook failed");
                            return response(500);
                        }
                        tracing::info!(connection_id = %request.connection_id, reason = %refused, "$connect refused by the app");
                        return response(403);
                    }
                }
                match self.connect(&request.connection_id, connected_at).await {
                    Ok(()) => response(200),
                    Err(e) => {
                        tracing::error!(connection_id = %request.connection_id, error = %e, "$connect: saving the record failed");
                        response(500)
                    }
                }
            }
            Route::Disconnect => {
                self.disconnect(&self.messenger(delivery), &request.connection_id)
                    .await;
                response(200)
            }
            Route::Message => {
                let connections = self.messenger(delivery);
                if event.is_base64_encoded {
                    let frame = protocol::error_frame(
                        None,
                        ErrorCode::BadRequest,
                        "binary messages are not supported",
                    );
                    reply(&connections, &request.connection_id, &frame).await;
                } else {
                    let body = event.body.as_deref().unwrap_or("");
                    self.message(&connections, request, body).await;
                }
                response(200)
            }
        }
    }

    /// `$connect`: saves an unauthenticated record that expires after the auth window.
    pub async fn connect(
        &self,
        connection_id: &str,
        connected_at_ms: i64,
    ) -> Result<(), StoreError> {
        let record = Connection::unauthenticated(
            connection_id,
            connected_at_ms,
            self.clock.now_secs() + self.auth_timeout_secs,
        );
        self.store.save(&record).await
    }

    /// `$disconnect`: removes the record (best effort; stale rows are harmless) and, when
    /// this call removed it, runs the disconnect hook with [`DisconnectReason::Client`].
    pub async fn disconnect(&self, messenger: &Messenger, connection_id: &str) {
        match self.store.remove(connection_id).await {
            Ok(Some(record)) => messenger.removed(record, DisconnectReason::Client).await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%connection_id, error = %e, "$disconnect: removing the record failed")
            }
        }
    }

    /// `$default`: one message from a client.
    pub async fn message(&self, connections: &Messenger, request: RequestInfo, body: &str) {
        use tracing::Instrument;
        // One span per message: the connection now, the action, `ref`, user and tenant as
        // they become known.
        let span = tracing::info_span!(
            "message",
            connection_id = %request.connection_id,
            action = tracing::field::Empty,
            r#ref = tracing::field::Empty,
            user = tracing::field::Empty,
            tenant = tracing::field::Empty,
        );
        self.message_logged(connections, request, body)
            .instrument(span)
            .await
    }

    async fn message_logged(&self, connections: &Messenger, request: RequestInfo, body: &str) {
        if !self.traffic_log {
            return self.message_inner(connections, request, body).await;
        }
        // The local server logs one line per message: action, outcome, time. The outcome is
        // read off the reply the framework sends (see `reply`).
        let started = std::time::Instant::now();
        let id = request.connection_id.clone();
        let traffic = std::sync::Arc::new(std::sync::Mutex::new(Traffic::default()));
        TRAFFIC
            .scope(
                traffic.clone(),
                self.message_inner(connections, request, body),
            )
            .await;
        let Traffic { action, outcome } = traffic.lock().map(|t| t.clone()).unwrap_or_default();
        let action = action.unwrap_or_else(|| "-".into());
        let outcome = outcome.unwrap_or_else(|| "ok".into());
        tracing::info!(
            target: "venturekit_ws::local",
            connection_id = %id,
            action = %action,
            outcome = %outcome,
            ms = format_args!("{:.2}", started.elapsed().as_secs_f64() * 1000.0),
            "message"
        );
        if action == "auth" {
            tracing::debug!(target: "venturekit_ws::local", connection_id = %id, "frame: (auth message, token redacted)");
        } else {
            tracing::debug!(target: "venturekit_ws::local", connection_id = %id, frame = %protocol::clip(body, 2048), "frame");
        }
    }

    async fn message_inner(&self, connections: &Messenger, request: RequestInfo, body: &str) {
        let id = request.connection_id.clone();
        if body.len() > MAX_MESSAGE_BYTES {
            let frame =
                protocol::error_frame(None, ErrorCode::PayloadTooLarge, "message exceeds 128 KB");
            return reply(connections, &id, &frame).await;
        }
        let parsed = envelope(body, &self.selection_field);
        // Metrics count under known actions only: a client must not mint dimensions.
        let known = match parsed.as_ref().map(|e| e.action.as_deref()) {
            Ok(Ok(name @ ("auth" | "ping" | "vk:join" | "vk:leave"))) => name,
            Ok(Ok(name)) if self.actions.contains_key(name) => name,
            Ok(Ok(_)) => "unknown",
            _ => "-",
        };
        crate::metrics::set_action(known);
        crate::metrics::count(crate::metrics::Count::Message, 1);
        let span = tracing::Span::current();
        span.record("action", known);
        if let Ok(Ok(Some(reference))) = parsed.as_ref().map(|e| e.reference.as_ref()) {
            // As JSON: `ref="r1"` for a string, `ref=7` for a number.
            span.record("ref", tracing::field::display(reference.as_json()));
        }
        if let Ok(Ok(action)) = parsed.as_ref().map(|e| e.action.as_ref()) {
            let _ = TRAFFIC.try_with(|t| {
                if let Ok(mut t) = t.lock() {
                    t.action = Some(protocol::clip(action, 64).to_owned());
                }
            });
        }
        // What the early refusals can name: the action and a well-formed `ref`.
        let (requested, reference) = match &parsed {
            Ok(env) => (
                env.action.as_deref().ok(),
                env.reference.as_ref().ok().and_then(Option::as_ref),
            ),
            Err(_) => (None, None),
        };
        let known = match self.rate_check(&id).await {
            RateCheck::Allowed(record) => record,
            RateCheck::Limited => {
                let frame = protocol::error_frame_ref(
                    requested,
                    reference,
                    ErrorCode::RateLimited,
                    "too many messages; slow down",
                );
                return reply(connections, &id, &frame).await;
            }
            RateCheck::NoRecord => {
                crate::metrics::count(crate::metrics::Count::WindowExpired, 1);
                // The record is gone (swept without a management endpoint, or a close that
                // failed) but the socket is open: no limit could apply, so it may not talk.
                let frame = match requested {
                    // `auth` keeps its own reply shape.
                    Some("auth") => {
                        protocol::auth_failure(ErrorCode::Unauthorized, NO_RECORD, reference)
                    }
                    _ => protocol::error_frame_ref(
                        requested,
                        reference,
                        ErrorCode::Unauthorized,
                        NO_RECORD,
                    ),
                };
                reply(connections, &id, &frame).await;
                return close(connections, &id).await;
            }
        };
        let envelope = match parsed {
            Ok(envelope) => envelope,
            Err(message) => {
                let frame = protocol::error_frame(None, ErrorCode::BadRequest, &message);
                return reply(connections, &id, &frame).await;
            }
        };
        // An ill-formed `ref` is answered without one: there is nothing valid to echo.
        let reference = match envelope.reference {
            Ok(reference) => reference,
            Err(message) => {
                let action = envelope.action.as_deref().ok();
                let frame = protocol::error_frame(action, ErrorCode::BadRequest, &message);
                return reply(connections, &id, &frame).await;
            }
        };
        let reference = reference.as_ref();
        let action = match envelope.action {
            Ok(action) => action,
            Err(message) => {
                let frame =
                    protocol::error_frame_ref(None, reference, ErrorCode::BadRequest, &message);
                return reply(connections, &id, &frame).await;
            }
        };
        match action.as_str() {
            "auth" => self.auth(connections, &id, body, reference).await,
            "ping" => {
                let frame = protocol::pong(self.clock.now_utc(), reference);
                reply(connections, &id, &frame).await
            }
            "vk:join" | "vk:leave" => {
                self.topic_action(connections, &id, &action, body, reference, known)
                    .await
            }
            name => match self.actions.get(name) {
                Some(def) => {
                    self.run_action(connections, request, def.clone(), body, reference, known)
                        .await
                }
                None => {
                    let frame = protocol::error_frame_ref(
                        Some(name),
                        reference,
                        ErrorCode::UnknownAction,
                        &format!("unknown action `{}`", protocol::clip(name, 64)),
                    );
                    reply(connections, &id, &frame).await
                }
            },
        }
    }

    async fn run_action(
        &self,
        connections: &Messenger,
        request: RequestInfo,
        def: ActionDef,
        body: &str,
        reference: Option<&Ref>,
        known: Option<Connection>,
    ) {
        let id = request.connection_id.clone();
        let name = def.name();
        let error =
            |code, message: &str| protocol::error_frame_ref(Some(name), reference, code, message);
        // What the app's code panicking before the handler is answered (the handler's own
        // panic goes the way of its errors).
        let internal = || error(ErrorCode::Internal, crate::error::INTERNAL_MESSAGE);
        let record = if def.is_public() {
            None
        } else {
            match self.guard(&id, known).await {
                Ok(record) => {
                    let span = tracing::Span::current();
                    if let Some(user) = &record.user_id {
                        span.record("user", user.as_str());
                    }
                    if let Some(tenant) = &record.tenant_id {
                        span.record("tenant", tenant.as_str());
                    }
                    match crate::unwind::caught_now("the authorization rule", || {
                        self.authorize(&def, &record)
                    }) {
                        Some(Ok(())) => {}
                        Some(Err(why)) => {
                            tracing::info!(connection_id = %id, action = name, reason = %why, "forbidden");
                            return reply(connections, &id, &error(ErrorCode::Forbidden, &why))
                                .await;
                        }
                        None => return reply(connections, &id, &internal()).await,
                    }
                    Some(record)
                }
                Err(refusal) => {
                    reply(connections, &id, &error(refusal.code, refusal.message)).await;
                    if refusal.close {
                        crate::metrics::count(crate::metrics::Count::WindowExpired, 1);
                        close(connections, &id).await;
                    }
                    return;
                }
            }
        };
        let ctx = Ctx::with_app(request, name, record, connections.clone(), self.app.clone());
        let envelope_fields = [self.selection_field.as_str(), "ref"];
        // Decoding runs the message type's `Deserialize`, which the app may have written.
        let invoked = crate::unwind::caught_now("decoding the message", || {
            def.invoke(ctx, body, &envelope_fields)
        });
        let future = match invoked {
            Some(Ok(future)) => future,
            Some(Err(message)) => {
                return reply(connections, &id, &error(ErrorCode::BadRequest, &message)).await;
            }
            None => return reply(connections, &id, &internal()).await,
        };
        let outcome = crate::unwind::caught("the handler", future)
            .await
            .unwrap_or_else(|| Err(crate::WsError::internal("the handler panicked")));
        match outcome.map(|text| protocol::with_ref(name, text, reference)) {
            Ok(None) => {}
            Ok(Some(text)) if text.len() > MAX_MESSAGE_BYTES => {
                tracing::warn!(connection_id = %id, action = name, bytes = text.len(), "reply exceeds 128 KB");
                let frame = error(
                    ErrorCode::PayloadTooLarge,
                    "the reply exceeds API Gateway's 128 KB limit",
                );
                reply(connections, &id, &frame).await
            }
            Ok(Some(text)) => reply(connections, &id, &text).await,
            Err(err) => {
                if err.code() == ErrorCode::Internal {
                    tracing::error!(connection_id = %id, action = name, error = %err, "handler failed");
                } else {
                    tracing::debug!(connection_id = %id, action = name, error = %err, "handler refused");
                }
                reply(connections, &id, &error(err.code(), err.message())).await
            }
        }
    }
}

async fn close(connections: &Messenger, id: &str) {
    if let Err(e) = connections.close(id).await {
        tracing::warn!(connection_id = %id, error = %e, "closing an expired connection failed");
    }
}

/// What the local server's log line says about the message being handled.
#[derive(Debug, Clone, Default)]
struct Traffic {
    action: Option<String>,
    /// The error code of the framework's reply, if it was an error.
    outcome: Option<String>,
}

tokio::task_local! {
    static TRAFFIC: std::sync::Arc<std::sync::Mutex<Traffic>>;
}

/// The error code a framework reply carries, if it is an error (`None`: a success).
fn reply_outcome(frame: &str) -> Option<String> {
    let failed = frame.starts_with(r#"{"action":"error""#)
        || (frame.starts_with(r#"{"action":"auth""#) && frame.contains(r#""success":false"#));
    if !failed {
        return None;
    }
    let at = frame.find(r#""code":""#)? + r#""code":""#.len();
    let code = &frame[at..];
    Some(code[..code.find('"')?].to_owned())
}

async fn reply(connections: &Messenger, id: &str, frame: &str) {
    let _ = TRAFFIC.try_with(|traffic| {
        if let (Ok(mut traffic), Some(code)) = (traffic.lock(), reply_outcome(frame)) {
            traffic.outcome.get_or_insert(code);
        }
    });
    match connections.post_text(id, frame).await {
        Ok(()) | Err(DeliveryError::Gone) => {}
        Err(e) => tracing::warn!(connection_id = %id, error = %e, "posting a reply failed"),
    }
}

/// What the connect hook sees: the upgrade request's headers (names lowercased) and query
/// string (first value of each parameter).
fn connect_request(event: &WebSocketEvent, request: &RequestInfo) -> ConnectRequest {
    let headers = event
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((
                name.as_str().to_ascii_lowercase(),
                value.to_str().ok()?.to_owned(),
            ))
        })
        .collect();
    let query = event
        .query_string_parameters
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    ConnectRequest {
        connection_id: request.connection_id.clone(),
        headers,
        query,
    }
}

/// The refusal for a connection whose record is gone or expired.
const NO_RECORD: &str = "the connection's authentication window or session has expired; reconnect";
