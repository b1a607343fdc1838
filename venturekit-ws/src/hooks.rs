//! Lifecycle hooks: on connect (may refuse), on a successful `auth`, and on disconnect.
//!
//! The disconnect hook runs **exactly once per connection**: whoever deletes the record —
//! `$disconnect`, a delivery answered 410, the sweeper, or the server closing the
//! connection — gets the record as it was and runs the hook with the matching
//! [`DisconnectReason`]. Deletes that find no record (someone else got there first) run
//! nothing.
//!
//! A hook that panics is caught like a panicking handler (with `panic = "unwind"`): a
//! panicking connect hook answers `$connect` with 500 and nothing is saved; a panicking auth
//! or disconnect hook is logged at error level and the rest goes on.
//!
//! ```
//! use venturekit_ws::{App, Config, DisconnectReason};
//! use venturekit_ws::messaging::Scope;
//!
//! let app = App::new(Config::default())
//!     .on_connect(|request, _ctx| async move {
//!         // Refused connections get HTTP 403 (locally) / status 403 from `$connect`.
//!         match request.query.get("client").map(String::as_str) {
//!             Some("banned-bot") => Err(venturekit_ws::WsError::forbidden("not welcome")),
//!             _ => Ok(()),
//!         }
//!     })
//!     .on_disconnect(|record, reason, ctx| async move {
//!         let (Some(user), true) = (record.user_id.clone(), record.authenticated) else {
//!             return;
//!         };
//!         let notice = serde_json::json!({"action": "left", "userId": user, "reason": reason});
//!         let scope = Scope::of_tenant(record.tenant_id.as_deref());
//!         let _ = ctx.all_tenants().broadcast_in(&scope, &notice).await;
//!     });
//! # let _ = app;
//! ```

use crate::ctx::AppContext;
use crate::error::WsError;
use crate::messaging::Messenger;
use crate::store::Connection;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Why a connection's record was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[cfg_attr(feature = "contract", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client went away (`$disconnect`).
    Client,
    /// A delivery to it was answered 410 Gone: the socket had vanished.
    Gone,
    /// The sweeper removed it: its auth window or session expired.
    Expired,
    /// The server closed it (`close`, a refused auth, a kick).
    Closed,
}

impl DisconnectReason {
    /// The reason as it appears on the wire: `client`, `gone`, `expired` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Client => "client",
            DisconnectReason::Gone => "gone",
            DisconnectReason::Expired => "expired",
            DisconnectReason::Closed => "closed",
        }
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the connect hook sees of the WebSocket upgrade request.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConnectRequest {
    /// The new connection's id.
    pub connection_id: String,
    /// Request headers, names lowercased.
    pub headers: HashMap<String, String>,
    /// Query string parameters (the first value of each).
    pub query: HashMap<String, String>,
}

/// The context of a hook: messaging and the app's state.
#[derive(Clone)]
pub struct HookCtx {
    messenger: Messenger,
    app: Arc<AppContext>,
}

impl std::fmt::Debug for HookCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookCtx").finish_non_exhaustive()
    }
}

impl HookCtx {
    pub(crate) fn new(messenger: Messenger, app: Arc<AppContext>) -> Self {
        HookCtx { messenger, app }
    }

    /// Messaging across tenants (a hook has no caller to scope by; use
    /// [`crate::messaging::Scope::of_tenant`] with the record's tenant).
    pub fn all_tenants(&self) -> &Messenger {
        &self.messenger
    }

    /// The app's state of type `T`.
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.app.states.get::<T>()
    }
}

/// A boxed hook future.
pub type HookFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// The connect hook: `Err` refuses the connection (403).
pub type ConnectHook =
    dyn Fn(ConnectRequest, HookCtx) -> HookFuture<Result<(), WsError>> + Send + Sync;
/// The hook after a successful `auth`, with the authenticated record.
pub type AuthHook = dyn Fn(Connection, HookCtx) -> HookFuture<()> + Send + Sync;
/// The disconnect hook, with the record as it was and the reason.
pub type DisconnectHook =
    dyn Fn(Connection, DisconnectReason, HookCtx) -> HookFuture<()> + Send + Sync;

/// The hooks of an app.
#[derive(Clone, Default)]
pub struct Hooks {
    pub(crate) on_connect: Option<Arc<ConnectHook>>,
    pub(crate) on_auth: Option<Arc<AuthHook>>,
    pub(crate) on_disconnect: Option<Arc<DisconnectHook>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("on_connect", &self.on_connect.is_some())
            .field("on_auth", &self.on_auth.is_some())
            .field("on_disconnect", &self.on_disconnect.is_some())
            .finish()
    }
}

/// Runs the disconnect hook for a removed record, if the app has one.
#[derive(Clone)]
pub(crate) struct OnRemoved {
    pub(crate) hook: Arc<DisconnectHook>,
    pub(crate) app: Arc<AppContext>,
}
