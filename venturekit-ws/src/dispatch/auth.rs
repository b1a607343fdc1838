//! The built-in `auth` action: token verification, the tenant rule, the conditional update
//! of the record, and the cap on failed attempts.

use super::{Dispatcher, NO_RECORD, close, reply};
use crate::auth::{AuthFailure, Identity, resolve_tenant};
use crate::hooks::HookCtx;
use crate::messaging::Messenger;
use crate::protocol::{self, ErrorCode, Ref};
use crate::store::StoreError;
use serde::Deserialize;

impl Dispatcher {
    pub(super) async fn auth(
        &self,
        connections: &Messenger,
        id: &str,
        body: &str,
        reference: Option<&Ref>,
    ) {
        let fail = |code, message: &str| protocol::auth_failure(code, message, reference);
        let identity = match self.check_auth_message(body).await {
            Ok(identity) => identity,
            Err(failure) => return self.auth_failed(connections, id, failure, reference).await,
        };
        let ttl = self.clock.now_secs() + self.session_ttl_secs;
        match self.store.authenticate(id, &identity, ttl).await {
            Ok(record) => {
                // The rest of this message's span (and the app's `on_auth` hook) knows who.
                let span = tracing::Span::current();
                span.record("user", identity.user_id.as_str());
                if let Some(tenant) = &record.tenant_id {
                    span.record("tenant", tenant.as_str());
                }
                let frame = protocol::auth_success(
                    &identity.user_id,
                    record.tenant_id.as_deref(),
                    reference,
                );
                reply(connections, id, &frame).await;
                if self.traffic_log {
                    tracing::info!(
                        target: "venturekit_ws::local",
                        connection_id = %id,
                        user = %identity.user_id,
                        tenant = %record.tenant_id.as_deref().unwrap_or("-"),
                        "authenticated"
                    );
                }
                if let Some(hook) = &self.hooks.on_auth {
                    hook(record, HookCtx::new(connections.clone(), self.app.clone())).await;
                }
            }
            Err(StoreError::NotFound) => {
                crate::metrics::count(crate::metrics::Count::WindowExpired, 1);
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
                self.auth_failed(connections, id, failure, reference).await
            }
            Err(StoreError::Backend(e)) => {
                tracing::error!(connection_id = %id, error = %e, "auth: updating the record failed");
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
        let verified = self
            .verifier
            .verify_at(&token, self.clock.now_secs())
            .await?;
        let tenant = resolve_tenant(&verified, requested.as_deref(), self.trust_client_tenant)?;
        Ok(Identity {
            user_id: verified.sub,
            tenant_id: tenant,
            email: verified.email,
            claims: verified.claims,
        })
    }

    /// Replies with the failure and counts it; past the cap the connection is closed. A
    /// failure of ours (`internal`, e.g. the JWKS endpoint is down) is not the client's and
    /// is not counted.
    async fn auth_failed(
        &self,
        connections: &Messenger,
        id: &str,
        failure: AuthFailure,
        reference: Option<&Ref>,
    ) {
        let fail = |code, message: &str| protocol::auth_failure(code, message, reference);
        crate::metrics::auth_failure(failure.code.as_str());
        if failure.code == ErrorCode::Internal {
            tracing::warn!(connection_id = %id, reason = %failure.message, "auth could not be checked");
            let frame = fail(failure.code, &failure.message);
            return reply(connections, id, &frame).await;
        }
        let failures = match self.store.count_auth_failure(id).await {
            Ok(Some(n)) => n,
            Ok(None) => {
                // No live record: nothing can count this connection's attempts.
                let frame = fail(ErrorCode::Unauthorized, NO_RECORD);
                reply(connections, id, &frame).await;
                return close(connections, id).await;
            }
            Err(e) => {
                tracing::warn!(connection_id = %id, error = %e, "auth failure counter failed");
                0
            }
        };
        tracing::info!(connection_id = %id, code = %failure.code, failures, "auth refused");
        if failures >= self.limits.max_auth_failures {
            let message = format!("{}; too many failed attempts, closing", failure.message);
            reply(connections, id, &fail(failure.code, &message)).await;
            return close(connections, id).await;
        }
        reply(connections, id, &fail(failure.code, &failure.message)).await
    }
}

#[derive(Deserialize)]
struct AuthRequest {
    #[serde(default)]
    token: Option<serde_json::Value>,
    #[serde(default, rename = "tenantId")]
    tenant_id: Option<serde_json::Value>,
}
