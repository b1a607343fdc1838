//! [`Ctx`]: what a handler knows about the call, and how it reaches other connections.
//!
//! Sending is **caller-scoped** by default: [`Ctx::broadcast`], [`Ctx::send_to_user`] and
//! [`Ctx::send_to_connection`] reach only authenticated connections in the caller's tenant
//! scope (its tenant, or the tenant-less connections). Reaching other tenants takes a call
//! whose name says so: [`Ctx::all_tenants`].

use crate::claims::Claims;
use crate::error::WsError;
use crate::event::RequestInfo;
use crate::messaging::{FanoutReport, MessagingError, Messenger, Scope};
use crate::state::States;
use crate::store::Connection;
use serde::Serialize;
use std::sync::Arc;

/// What every context of an app shares: its state and the roles claim name.
#[derive(Debug, Default)]
pub(crate) struct AppContext {
    pub(crate) states: States,
    pub(crate) roles_claim: String,
}

/// The context of one message: the caller's connection and record, the app's state, and
/// messaging.
///
/// For guarded actions the record is the one the auth guard read, so `user_id()` is
/// always `Some`. Public actions skip the read: their `connection()` is `None`, and the
/// scoped sends read the caller's identity on demand.
#[derive(Clone)]
pub struct Ctx {
    inner: Arc<Inner>,
}

struct Inner {
    request: RequestInfo,
    action: String,
    connection: Option<Connection>,
    messenger: Messenger,
    app: Arc<AppContext>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("connection_id", &self.inner.request.connection_id)
            .field("action", &self.inner.action)
            .field("user_id", &self.user_id())
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// A context without app state; the dispatcher builds the real ones (public for tests
    /// and custom runtimes).
    pub fn new(
        request: RequestInfo,
        action: impl Into<String>,
        connection: Option<Connection>,
        messenger: Messenger,
    ) -> Self {
        let app = AppContext {
            roles_claim: "roles".into(),
            ..AppContext::default()
        };
        Self::with_app(request, action, connection, messenger, Arc::new(app))
    }

    pub(crate) fn with_app(
        request: RequestInfo,
        action: impl Into<String>,
        connection: Option<Connection>,
        messenger: Messenger,
        app: Arc<AppContext>,
    ) -> Self {
        Ctx {
            inner: Arc::new(Inner {
                request,
                action: action.into(),
                connection,
                messenger,
                app,
            }),
        }
    }

    /// The caller's connection id.
    pub fn connection_id(&self) -> &str {
        &self.inner.request.connection_id
    }

    /// The action being handled.
    pub fn action(&self) -> &str {
        &self.inner.action
    }

    /// The request context (stage, domain, api id, request id).
    pub fn request(&self) -> &RequestInfo {
        &self.inner.request
    }

    /// The caller's record as the auth guard read it (`None` in public actions).
    pub fn connection(&self) -> Option<&Connection> {
        self.inner.connection.as_ref()
    }

    /// The authenticated user (`sub`).
    pub fn user_id(&self) -> Option<&str> {
        self.connection()
            .filter(|c| c.authenticated)
            .and_then(|c| c.user_id.as_deref())
    }

    /// The authenticated user, or an `unauthorized` error (handy in public actions).
    pub fn require_user(&self) -> Result<&str, WsError> {
        self.user_id()
            .ok_or_else(|| WsError::unauthorized("this action needs an authenticated connection"))
    }

    /// The tenant the caller joined.
    pub fn tenant_id(&self) -> Option<&str> {
        self.connection().and_then(|c| c.tenant_id.as_deref())
    }

    /// The caller's `email` claim.
    pub fn email(&self) -> Option<&str> {
        self.connection().and_then(|c| c.email.as_deref())
    }

    /// The claims kept from the caller's token: roles, scopes and `VK_WS_KEEP_CLAIMS`.
    pub fn claims(&self) -> Option<&Claims> {
        self.connection().map(|c| &c.claims)
    }

    /// The caller's roles (from the roles claim, `VK_WS_ROLES_CLAIM`).
    pub fn roles(&self) -> Vec<&str> {
        self.claims()
            .map(|c| c.strings(&self.inner.app.roles_claim))
            .unwrap_or_default()
    }

    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles().contains(&role)
    }

    /// The caller's tenant scope: its tenant, or the tenant-less connections.
    pub fn scope(&self) -> Scope {
        Scope::of_tenant(self.tenant_id())
    }

    /// The app's state of type `T` (prefer a `State<T>` argument: it is checked when the
    /// app starts).
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.inner.app.states.get::<T>()
    }

    /// Messaging **across tenants**: every connection of a user or of any tenant, or
    /// everyone. Prefer the caller-scoped [`Ctx::broadcast`], [`Ctx::send_to_user`] and
    /// [`Ctx::send_to_connection`].
    pub fn all_tenants(&self) -> &Messenger {
        &self.inner.messenger
    }

    /// Pushes an extra frame to the caller (besides the handler's return value). Pushed
    /// frames never carry `ref`.
    pub async fn push<T: Serialize + ?Sized>(&self, message: &T) -> Result<(), MessagingError> {
        self.inner
            .messenger
            .post_to_connection(self.connection_id(), message)
            .await
    }

    /// Joins the caller to topic `name` of its tenant scope, with presence metadata (a
    /// JSON object of at most 1 KB). Presence members are told.
    pub async fn join_topic(
        &self,
        name: &str,
        meta: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), WsError> {
        self.caller().await?;
        self.inner
            .messenger
            .join_topic(self.connection_id(), name, meta)
            .await
    }

    /// Removes the caller from topic `name`; returns whether it was a member.
    pub async fn leave_topic(&self, name: &str) -> Result<bool, WsError> {
        let caller = self.caller().await?;
        Ok(self
            .inner
            .messenger
            .leave_topic(caller.tenant_id.as_deref(), self.connection_id(), name)
            .await?)
    }

    /// Publishes `message` to every member of topic `name` in the caller's tenant scope.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        name: &str,
        message: &T,
    ) -> Result<FanoutReport, WsError> {
        let caller = self.caller().await?;
        Ok(self
            .inner
            .messenger
            .publish_in(caller.tenant_id.as_deref(), name, message)
            .await?)
    }

    /// Publishes `message` to topic `name` only if the caller is a member of it (one read of
    /// the members decides and delivers): `None`, and nothing sent, otherwise.
    pub async fn publish_as_member<T: Serialize + ?Sized>(
        &self,
        name: &str,
        message: &T,
    ) -> Result<Option<FanoutReport>, WsError> {
        let caller = self.caller().await?;
        Ok(self
            .inner
            .messenger
            .publish_as_member(
                caller.tenant_id.as_deref(),
                name,
                self.connection_id(),
                message,
            )
            .await?)
    }

    /// The members of topic `name` in the caller's tenant scope.
    pub async fn topic_members(
        &self,
        name: &str,
    ) -> Result<Vec<crate::topics::TopicMember>, WsError> {
        let caller = self.caller().await?;
        Ok(self
            .inner
            .messenger
            .topic_members(caller.tenant_id.as_deref(), name)
            .await?)
    }

    /// Whether the caller is a member of topic `name`.
    pub async fn in_topic(&self, name: &str) -> Result<bool, WsError> {
        let members = self.topic_members(name).await?;
        Ok(members
            .iter()
            .any(|m| m.connection_id == self.connection_id()))
    }

    /// The caller's authenticated record: the guard's in guarded actions, read on demand in
    /// public ones. An unauthenticated caller has no scope: `unauthorized`.
    pub async fn caller(&self) -> Result<Connection, WsError> {
        if let Some(record) = self.connection().filter(|c| c.authenticated) {
            return Ok(record.clone());
        }
        match self.inner.messenger.get(self.connection_id()).await {
            Ok(Some(record)) if record.authenticated => Ok(record),
            Ok(_) => Err(WsError::unauthorized(
                "this needs an authenticated connection: send {\"action\":\"auth\",\"token\":\"<jwt>\"} first",
            )),
            Err(e) => Err(WsError::internal(e)),
        }
    }

    /// Sends to every authenticated connection in the caller's tenant scope (the caller
    /// included).
    pub async fn broadcast<T: Serialize + ?Sized>(
        &self,
        message: &T,
    ) -> Result<FanoutReport, WsError> {
        let scope = Scope::of_tenant(self.caller().await?.tenant_id.as_deref());
        Ok(self.inner.messenger.broadcast_in(&scope, message).await?)
    }

    /// Sends to every connection of `user_id` in the caller's tenant scope.
    pub async fn send_to_user<T: Serialize + ?Sized>(
        &self,
        user_id: &str,
        message: &T,
    ) -> Result<FanoutReport, WsError> {
        let scope = Scope::of_tenant(self.caller().await?.tenant_id.as_deref());
        Ok(self
            .inner
            .messenger
            .send_to_user_in(user_id, &scope, message)
            .await?)
    }

    /// Sends to one connection, if it is authenticated and in the caller's tenant scope.
    /// Returns whether it was delivered (`false`: out of scope, unauthenticated or gone).
    pub async fn send_to_connection<T: Serialize + ?Sized>(
        &self,
        connection_id: &str,
        message: &T,
    ) -> Result<bool, WsError> {
        let scope = Scope::of_tenant(self.caller().await?.tenant_id.as_deref());
        let target = self
            .inner
            .messenger
            .get(connection_id)
            .await
            .map_err(WsError::internal)?;
        match target {
            Some(t) if t.authenticated && scope.contains(&t) => {
                match self
                    .inner
                    .messenger
                    .post_to_connection(connection_id, message)
                    .await
                {
                    Ok(()) => Ok(true),
                    Err(MessagingError::Delivery(crate::DeliveryError::Gone)) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
            _ => Ok(false),
        }
    }
}
