//! The dispatcher: `$connect`, `$disconnect`, and `$default` with the auth guard,
//! the built-in `auth` and `ping`, routing, typed decoding, and the error replies of
//! DESIGN.md section 4.3.

use crate::action::ActionDef;
use crate::auth::{AuthFailure, Identity, TokenVerifier, resolve_tenant};
use crate::clock::{now_ms, now_secs};
use crate::ctx::Ctx;
use crate::delivery::{Delivery, DeliveryError};
use crate::event::{RequestInfo, Route, WebSocketEvent, WebSocketResponse, response};
use crate::messaging::Connections;
use crate::protocol::{self, ErrorCode, MAX_MESSAGE_BYTES};
use crate::store::{Connection, ConnectionStore, StoreError};
use futures_util::FutureExt;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
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

/// What a sweep did (serialized as `{"expired":N,"closed":M}`, the scheduled invocation's
/// result on Lambda).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Expired records found.
    pub expired: usize,
    /// Connections closed (the rest were already gone).
    pub closed: usize,
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
}

impl Dispatcher {
    /// Builds a dispatcher. Duplicate or reserved names are errors.
    pub fn new(parts: DispatcherParts) -> Result<Self, crate::Error> {
        let mut actions = HashMap::with_capacity(parts.actions.len());
        for def in parts.actions {
            if def.name().is_empty() || crate::action::RESERVED_NAMES.contains(&def.name()) {
                return Err(crate::Error::ReservedAction(def.name().to_owned()));
            }
            if actions.insert(def.name(), def).is_some() {
                return Err(crate::Error::DuplicateAction(def.name().to_owned()));
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
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ConnectionStore> {
        &self.store
    }

    /// Messaging through `delivery`.
    pub fn connections(&self, delivery: Arc<dyn Delivery>) -> Connections {
        Connections::new(self.store.clone(), delivery).with_concurrency(self.fanout_concurrency)
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
                    0 => now_ms(),
                    at => at,
                };
                match self.connect(&request.connection_id, connected_at).await {
                    Ok(()) => response(200),
                    Err(e) => {
                        tracing::error!(connection_id = %request.connection_id, error = %e, "$connect: saving the record failed");
                        response(500)
                    }
                }
            }
            Route::Disconnect => {
                self.disconnect(&request.connection_id).await;
                response(200)
            }
            Route::Message => {
                let connections = self.connections(delivery);
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
            now_secs() + self.auth_timeout_secs,
        );
        self.store.save(&record).await
    }

    /// `$disconnect`: removes the record (best effort; stale rows are harmless).
    pub async fn disconnect(&self, connection_id: &str) {
        if let Err(e) = self.store.remove(connection_id).await {
            tracing::warn!(connection_id, error = %e, "$disconnect: removing the record failed");
        }
    }

    /// `$default`: one message from a client.
    pub async fn message(&self, connections: &Connections, request: RequestInfo, body: &str) {
        let id = request.connection_id.clone();
        if body.len() > MAX_MESSAGE_BYTES {
            let frame =
                protocol::error_frame(None, ErrorCode::PayloadTooLarge, "message exceeds 128 KB");
            return reply(connections, &id, &frame).await;
        }
        let parsed = envelope(body, &self.selection_field);
        match self.rate_check(&id).await {
            RateCheck::Allowed => {}
            RateCheck::Limited => {
                let requested = parsed.as_ref().ok().map(String::as_str);
                let frame = protocol::error_frame(
                    requested,
                    ErrorCode::RateLimited,
                    "too many messages; slow down",
                );
                return reply(connections, &id, &frame).await;
            }
            RateCheck::NoRecord => {
                // The record is gone (swept without a management endpoint, or a close that
                // failed) but the socket is open: no limit could apply, so it may not talk.
                let requested = parsed.as_ref().ok().map(String::as_str);
                let frame = match requested {
                    // `auth` keeps its own reply shape.
                    Some("auth") => protocol::auth_failure(ErrorCode::Unauthorized, NO_RECORD),
                    _ => protocol::error_frame(requested, ErrorCode::Unauthorized, NO_RECORD),
                };
                reply(connections, &id, &frame).await;
                return close(connections, &id).await;
            }
        }
        let action = match parsed {
            Ok(action) => action,
            Err(message) => {
                let frame = protocol::error_frame(None, ErrorCode::BadRequest, &message);
                return reply(connections, &id, &frame).await;
            }
        };
        match action.as_str() {
            "auth" => self.auth(connections, &id, body).await,
            "ping" => reply(connections, &id, &protocol::pong(chrono::Utc::now())).await,
            name => match self.actions.get(name) {
                Some(def) => self.run_action(connections, request, *def, body).await,
                None => {
                    let frame = protocol::error_frame(
                        Some(name),
                        ErrorCode::UnknownAction,
                        &format!("unknown action `{}`", protocol::clip(name, 64)),
                    );
                    reply(connections, &id, &frame).await
                }
            },
        }
    }

    /// Counts the message in the connection's rate window. Fails open on a store error: a
    /// counter that cannot be updated never blocks legitimate traffic.
    async fn rate_check(&self, id: &str) -> RateCheck {
        if self.limits.burst == 0 {
            return RateCheck::Allowed;
        }
        let window = now_ms() / self.limits.window_ms * self.limits.window_ms;
        match self.store.count_message(id, window).await {
            Ok(Some(count)) if count > self.limits.burst => RateCheck::Limited,
            Ok(Some(_)) => RateCheck::Allowed,
            Ok(None) => RateCheck::NoRecord,
            Err(e) => {
                tracing::warn!(connection_id = id, error = %e, "rate counter failed; message allowed");
                RateCheck::Allowed
            }
        }
    }

    async fn run_action(
        &self,
        connections: &Connections,
        request: RequestInfo,
        def: ActionDef,
        body: &str,
    ) {
        let id = request.connection_id.clone();
        let name = def.name();
        let error = |code, message: &str| protocol::error_frame(Some(name), code, message);
        let record = if def.is_public() {
            None
        } else {
            match self.guard(&id).await {
                Ok(record) => Some(record),
                Err(refusal) => {
                    reply(connections, &id, &error(refusal.code, refusal.message)).await;
                    if refusal.close {
                        close(connections, &id).await;
                    }
                    return;
                }
            }
        };
        let ctx = Ctx::new(request, name, record, connections.clone());
        let future = match def.invoke(ctx, body) {
            Ok(future) => future,
            Err(message) => {
                return reply(connections, &id, &error(ErrorCode::BadRequest, &message)).await;
            }
        };
        let outcome = match AssertUnwindSafe(future).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::error!(connection_id = %id, action = name, "handler panicked");
                Err(crate::WsError::new(
                    ErrorCode::Internal,
                    crate::error::INTERNAL_MESSAGE,
                ))
            }
        };
        match outcome {
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

    /// The auth guard: the caller's record must be live and authenticated. A connection
    /// with no live record (window or session over, or removed) is to be closed.
    async fn guard(&self, id: &str) -> Result<Connection, Refusal> {
        match self.store.get(id).await {
            Ok(Some(record)) if record.authenticated => Ok(record),
            Ok(Some(_)) => Err(Refusal {
                code: ErrorCode::Unauthorized,
                message: "authenticate first: send {\"action\":\"auth\",\"token\":\"<jwt>\"}",
                close: false,
            }),
            Ok(None) => Err(Refusal {
                code: ErrorCode::Unauthorized,
                message: NO_RECORD,
                close: true,
            }),
            // Our infrastructure failed, not the client: retryable, and the socket stays open.
            Err(e) => {
                tracing::error!(connection_id = id, error = %e, "guard: reading the record failed");
                Err(Refusal {
                    code: ErrorCode::Internal,
                    message: "could not verify the connection; try again",
                    close: false,
                })
            }
        }
    }

    async fn auth(&self, connections: &Connections, id: &str, body: &str) {
        let fail = |code, message: &str| protocol::auth_failure(code, message);
        let identity = match self.check_auth_message(body).await {
            Ok(identity) => identity,
            Err(failure) => return self.auth_failed(connections, id, failure).await,
        };
        let ttl = now_secs() + self.session_ttl_secs;
        match self.store.authenticate(id, &identity, ttl).await {
            Ok(record) => {
                let frame = protocol::auth_success(&identity.user_id, record.tenant_id.as_deref());
                reply(connections, id, &frame).await
            }
            Err(StoreError::NotFound) => {
                let frame = fail(
                    ErrorCode::Unauthorized,
                    "the authentication window has passed; reconnect",
                );
                reply(connections, id, &frame).await;
                close(connections, id).await
            }
            Err(StoreError::OtherUser) => {
                let failure = AuthFailure::new(
                    ErrorCode::InvalidToken,
                    "the connection is already authenticated as another user",
                );
                self.auth_failed(connections, id, failure).await
            }
            Err(StoreError::Backend(e)) => {
                tracing::error!(connection_id = id, error = %e, "auth: updating the record failed");
                reply(
                    connections,
                    id,
                    &fail(ErrorCode::Internal, crate::error::INTERNAL_MESSAGE),
                )
                .await
            }
        }
    }

    /// Validates an `auth` message: shape, token size, token, tenant rule.
    async fn check_auth_message(&self, body: &str) -> Result<Identity, AuthFailure> {
        let bad = |message: &str| AuthFailure::new(ErrorCode::BadRequest, message);
        let request =
            serde_json::from_str::<AuthRequest>(body).map_err(|_| bad("invalid auth message"))?;
        let token = match request.token {
            Some(serde_json::Value::String(t)) if !t.is_empty() => t,
            Some(serde_json::Value::String(_)) => return Err(bad("`token` must not be empty")),
            Some(_) => return Err(bad("`token` must be a string")),
            None => return Err(bad("missing `token`")),
        };
        let requested = match request.tenant_id {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(t)) if t.is_empty() => {
                return Err(bad("`tenantId` must not be empty"));
            }
            Some(serde_json::Value::String(t)) if t.len() > crate::auth::MAX_ID_BYTES => {
                return Err(bad("`tenantId` is longer than 1024 bytes"));
            }
            Some(serde_json::Value::String(t)) => Some(t),
            Some(_) => return Err(bad("`tenantId` must be a string")),
        };
        if token.len() > self.limits.max_token_bytes {
            return Err(AuthFailure::new(
                ErrorCode::InvalidToken,
                format!("token exceeds {} bytes", self.limits.max_token_bytes),
            ));
        }
        let verified = self.verifier.verify(&token).await?;
        let tenant = resolve_tenant(&verified, requested.as_deref(), self.trust_client_tenant)?;
        Ok(Identity {
            user_id: verified.sub,
            tenant_id: tenant,
            email: verified.email,
        })
    }

    /// Replies with the failure and counts it; past the cap the connection is closed. A
    /// failure of ours (`internal`, e.g. the JWKS endpoint is down) is not the client's and
    /// is not counted.
    async fn auth_failed(&self, connections: &Connections, id: &str, failure: AuthFailure) {
        if failure.code == ErrorCode::Internal {
            tracing::warn!(connection_id = id, reason = %failure.message, "auth could not be checked");
            let frame = protocol::auth_failure(failure.code, &failure.message);
            return reply(connections, id, &frame).await;
        }
        let failures = match self.store.count_auth_failure(id).await {
            Ok(Some(n)) => n,
            Ok(None) => {
                // No live record: nothing can count this connection's attempts.
                let frame = protocol::auth_failure(ErrorCode::Unauthorized, NO_RECORD);
                reply(connections, id, &frame).await;
                return close(connections, id).await;
            }
            Err(e) => {
                tracing::warn!(connection_id = id, error = %e, "auth failure counter failed");
                0
            }
        };
        tracing::info!(connection_id = id, code = %failure.code, failures, "auth refused");
        if failures >= self.limits.max_auth_failures {
            let message = format!("{}; too many failed attempts, closing", failure.message);
            reply(
                connections,
                id,
                &protocol::auth_failure(failure.code, &message),
            )
            .await;
            return close(connections, id).await;
        }
        reply(
            connections,
            id,
            &protocol::auth_failure(failure.code, &failure.message),
        )
        .await
    }

    /// Closes and removes every expired record: unauthenticated connections whose auth
    /// window passed, and sessions past their lifetime. Each gets an `unauthorized` frame first.
    pub async fn sweep(&self, connections: &Connections) -> Result<SweepReport, StoreError> {
        let expired = self.store.list_expired().await?;
        let mut report = SweepReport {
            expired: expired.len(),
            closed: 0,
        };
        for record in expired {
            let id = &record.connection_id;
            let message = if record.authenticated {
                "the session has expired; reconnect"
            } else {
                "the authentication window has passed; reconnect"
            };
            let frame = protocol::error_frame(None, ErrorCode::Unauthorized, message);
            match connections.delivery().post(id, &frame).await {
                Ok(()) => {
                    if connections.delivery().close(id).await.is_ok() {
                        report.closed += 1;
                    }
                }
                Err(DeliveryError::Gone) => {}
                Err(e) => {
                    tracing::warn!(connection_id = %id, error = %e, "sweep: posting failed");
                    if connections.delivery().close(id).await.is_ok() {
                        report.closed += 1;
                    }
                }
            }
            if let Err(e) = self.store.remove(id).await {
                tracing::warn!(connection_id = %id, error = %e, "sweep: removing failed");
            }
        }
        Ok(report)
    }
}

#[derive(Deserialize)]
struct AuthRequest {
    #[serde(default)]
    token: Option<serde_json::Value>,
    #[serde(default, rename = "tenantId")]
    tenant_id: Option<serde_json::Value>,
}

struct Refusal {
    code: ErrorCode,
    message: &'static str,
    close: bool,
}

/// What the rate window says about a message.
enum RateCheck {
    Allowed,
    Limited,
    /// The connection has no live record.
    NoRecord,
}

/// The refusal for a connection whose record is gone or expired.
const NO_RECORD: &str = "the connection's authentication window or session has expired; reconnect";

async fn close(connections: &Connections, id: &str) {
    if let Err(e) = connections.close(id).await {
        tracing::warn!(connection_id = id, error = %e, "closing an expired connection failed");
    }
}

async fn reply(connections: &Connections, id: &str, frame: &str) {
    match connections.post_text(id, frame).await {
        Ok(()) | Err(DeliveryError::Gone) => {}
        Err(e) => tracing::warn!(connection_id = id, error = %e, "posting a reply failed"),
    }
}

/// Reads the route selection field (`action` by default) from a message without
/// deserializing the rest. Errors are client-facing.
fn envelope(body: &str, field: &str) -> Result<String, String> {
    if body.trim().is_empty() {
        return Err(format!(
            "empty message: send a JSON object with an `{field}`"
        ));
    }
    let mut de = serde_json::Deserializer::from_str(body);
    let action =
        de::Deserializer::deserialize_any(&mut de, EnvelopeVisitor { field }).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                format!("message is not valid JSON: {e}")
            } else {
                e.to_string()
            }
        })?;
    de.end()
        .map_err(|e| format!("message is not valid JSON: {e}"))?;
    action
}

struct EnvelopeVisitor<'f> {
    field: &'f str,
}

impl<'de> Visitor<'de> for EnvelopeVisitor<'_> {
    type Value = Result<String, String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut action: Option<Result<String, String>> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.field {
                if action.is_some() {
                    return Err(de::Error::custom(format!(
                        "duplicate `{}` field",
                        self.field
                    )));
                }
                let value: serde_json::Value = map.next_value()?;
                action = Some(match value {
                    serde_json::Value::String(s) => Ok(s),
                    _ => Err(format!("`{}` must be a string", self.field)),
                });
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(action.unwrap_or_else(|| Err(format!("missing `{}`", self.field))))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(not_object(self.field)))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(not_object(self.field)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(not_object(self.field)))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(not_object(self.field)))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(not_object(self.field)))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(not_object(self.field)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(not_object(self.field)))
    }
}

fn not_object(field: &str) -> String {
    format!("message must be a JSON object with an `{field}`")
}

#[cfg(test)]
mod tests {
    use super::envelope;

    #[test]
    fn envelope_reads_only_the_action() {
        assert_eq!(
            envelope(r#"{"action":"send","to":"x"}"#, "action"),
            Ok("send".into())
        );
        assert_eq!(
            envelope(r#"{"to":{"deep":[1,2]},"action":"a"}"#, "action"),
            Ok("a".into())
        );
        assert_eq!(
            envelope(r#"{"action":5}"#, "action"),
            Err("`action` must be a string".into())
        );
        assert_eq!(
            envelope(r#"{"x":1}"#, "action"),
            Err("missing `action`".into())
        );
        let error = |body| envelope(body, "action").unwrap_err();
        assert!(error("[1,2]").contains("JSON object"));
        assert!(error("\"hi\"").contains("JSON object"));
        assert!(error("{nope").contains("not valid JSON"));
        assert!(error("{} x").contains("not valid JSON"));
        assert!(error(r#"{"action":"a","action":"b"}"#).contains("duplicate"));
        assert!(error("").contains("empty"));
        // `$request.body.type`
        assert_eq!(envelope(r#"{"type":"send"}"#, "type"), Ok("send".into()));
        assert_eq!(
            envelope(r#"{"action":"send"}"#, "type"),
            Err("missing `type`".into())
        );
    }
}
