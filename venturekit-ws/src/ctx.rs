//! [`Ctx`]: what a handler knows about the call and how it reaches other connections.

use crate::error::WsError;
use crate::event::RequestInfo;
use crate::messaging::{Connections, MessagingError, Scope};
use crate::store::Connection;
use serde::Serialize;
use std::sync::Arc;

/// The context of one message: the caller's connection and record, and messaging.
///
/// For guarded actions the record is the one the auth guard read, so `user_id()` is
/// always `Some`. Public actions skip the read: their `connection()` is `None`.
#[derive(Clone)]
pub struct Ctx {
    inner: Arc<Inner>,
}

struct Inner {
    request: RequestInfo,
    action: String,
    connection: Option<Connection>,
    connections: Connections,
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
    /// A context; the dispatcher builds these (public for tests and custom runtimes).
    pub fn new(
        request: RequestInfo,
        action: impl Into<String>,
        connection: Option<Connection>,
        connections: Connections,
    ) -> Self {
        Ctx {
            inner: Arc::new(Inner {
                request,
                action: action.into(),
                connection,
                connections,
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

    /// The caller's tenant scope: its tenant, or the tenant-less connections.
    pub fn scope(&self) -> Scope {
        Scope::of_tenant(self.tenant_id())
    }

    /// The store and delivery, for sending to other connections.
    pub fn connections(&self) -> &Connections {
        &self.inner.connections
    }

    /// Posts an extra message to the caller (besides the handler's return value).
    pub async fn reply<T: Serialize + ?Sized>(&self, message: &T) -> Result<(), MessagingError> {
        self.connections()
            .post_to_connection(self.connection_id(), message)
            .await
    }
}
