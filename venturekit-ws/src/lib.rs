//! # venturekit-ws
//!
//! Typed WebSocket APIs for AWS API Gateway + Lambda, with connection state in DynamoDB
//! and a local API Gateway emulator for development.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use venturekit_ws::{App, Ctx, WsError, actions, ws_action};
//!
//! #[derive(Deserialize)]
//! struct Greet { name: String }
//!
//! #[derive(Serialize)]
//! struct Greeting { action: &'static str, text: String }
//!
//! // Guarded by default: only authenticated connections get here.
//! #[ws_action("greet")]
//! async fn greet(ctx: Ctx, msg: Greet) -> Result<Greeting, WsError> {
//!     let me = ctx.require_user()?;
//!     Ok(Greeting { action: "greeting", text: format!("{me} greets {}", msg.name) })
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), venturekit_ws::Error> {
//!     App::from_env()?.actions(actions![greet]).run().await
//! }
//! ```
//!
//! The wire protocol, configuration and deployment are described in the README.
//! Module map: [`action`] (handlers, with or without the macro), [`ctx`] (one call, and its
//! caller-scoped sends), [`state`] (app state), [`hooks`] (connect, auth, disconnect),
//! [`topics`] (rooms and presence), [`event`] (API Gateway events), [`dispatch`] (routing,
//! the auth guard, roles and scopes, the sweeper), [`auth`] (JWT and the tenant rule),
//! [`claims`] (kept claims), [`store`] (connection records), [`delivery`] and [`messaging`]
//! (posting and fan-out), [`local`] (the emulator), [`protocol`] (frames, `ref`), [`aws`]
//! (DynamoDB and the management API; feature `aws`), [`lambda`], [`deploy`] (`venturekit.toml`, templates),
//! [`clock`] (time, injectable), [`contract`] (AsyncAPI, JSON Schemas and a TypeScript client;
//! feature `contract`), and `testing` (the test kit for your actions; feature `testing`).
//!
//! The protocol reference is `docs/PROTOCOL.md` in the repository; the README has a
//! walkthrough of a second app (state, roles, hooks, `ref`, scoped sending, topics).

pub mod action;
pub mod app;
pub mod auth;
#[cfg(feature = "aws")]
pub mod aws;
pub mod claims;
pub mod clock;
pub mod config;
pub mod contract;
pub mod ctx;
mod decode;
pub mod delivery;
pub mod deploy;
pub mod dispatch;
mod error;
pub mod event;
pub mod fanout;
pub mod hooks;
#[cfg(feature = "aws")]
pub mod lambda;
pub mod local;
pub mod messaging;
pub mod metrics;
pub mod protocol;
pub mod state;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topics;
mod unwind;

pub use action::{Action, ActionDef, ActionFuture, Handler, IntoReply};
pub use app::{App, Mode};
pub use auth::Identity;
pub use claims::Claims;
pub use config::Config;
pub use ctx::Ctx;
pub use delivery::{Delivery, DeliveryError};
pub use dispatch::{Authorization, Dispatcher};
pub use error::{Error, WsError};
pub use hooks::{ConnectRequest, DisconnectReason, HookCtx};
pub use messaging::{FanoutReport, MessagingError, Messenger, Scope, WorkError};
pub use protocol::ErrorCode;
pub use state::{FromCtx, State, States};
pub use store::{Connection, ConnectionStore, MemoryStore, StoreError};
pub use topics::{MemoryTopics, TopicRule, TopicStore};

/// The `schemars` crate the contract export uses (feature `contract`): derive
/// `schemars::JsonSchema` on message and reply types with your own `schemars = "1"`
/// dependency, or through this re-export with `#[schemars(crate = "venturekit_ws::schemars")]`.
#[cfg(feature = "contract")]
pub use schemars;

/// Marks an `async fn` as a WebSocket action.
///
/// # Grammar
///
/// ```text
/// #[ws_action("name")]            // guarded: only authenticated connections
/// #[ws_action("name", public)]    // no authentication needed
/// ```
///
/// The name is what clients put in `action`. It must be a non-empty string literal and
/// not one of `$connect`, `$disconnect`, `$default`, `auth`, `ping`.
///
/// The function must be a free `async fn` without generics, taking `()`, `(ctx: Ctx)` or
/// `(ctx: Ctx, msg: M)` where `M: Deserialize` is decoded from the **whole** JSON message
/// (`action` included, so unknown fields must be allowed). It returns `()` or
/// `Result<T, E>` with `T: Serialize` (posted back to the caller unless it serializes to
/// `null`) and `E: Into<WsError>`.
///
/// The function is left unchanged and stays callable. The macro adds a hidden type,
/// `__vk_action_<fn>`, implementing [`Action`]; register it by the function's name with
/// [`actions!`]. A module or type named like the function does not collide with it, and an
/// action that is never registered keeps rustc's `dead_code` warning.
///
/// # Example
///
/// ```
/// use serde::Deserialize;
/// use venturekit_ws::{Ctx, WsError, actions, ws_action};
///
/// #[derive(Deserialize)]
/// struct Join { room: String }
///
/// #[ws_action("join")]
/// async fn join(ctx: Ctx, msg: Join) -> Result<serde_json::Value, WsError> {
///     Ok(serde_json::json!({ "action": "joined", "room": msg.room, "user": ctx.user_id() }))
/// }
///
/// let list = actions![join];
/// assert_eq!(list[0].name(), "join");
/// ```
///
/// # Without the macro
///
/// The macro is sugar: a plain `async fn` is an action through [`ActionDef::from_fn`]
/// (the [`Handler`] trait), and policies are builder calls.
///
/// ```
/// use venturekit_ws::{ActionDef, Ctx, WsError};
/// # #[derive(serde::Deserialize)] struct Join { room: String }
/// async fn join(ctx: Ctx, msg: Join) -> Result<serde_json::Value, WsError> {
///     Ok(serde_json::json!({ "action": "joined", "room": msg.room, "user": ctx.user_id() }))
/// }
/// let list = vec![ActionDef::from_fn("join", join).with_roles(&["member"])];
/// # assert_eq!(list[0].name(), "join");
/// ```
///
/// Or implement [`Action`] for a type of your own (what the macro generates):
///
/// ```
/// use venturekit_ws::{Action, ActionDef, ActionFuture, Ctx, IntoReply, WsError};
/// # #[derive(serde::Deserialize)] struct Join { room: String }
/// # async fn join(ctx: Ctx, msg: Join) -> Result<serde_json::Value, WsError> { Ok(serde_json::Value::Null) }
/// struct JoinAction;
/// impl Action for JoinAction {
///     const NAME: &'static str = "join";
///     const PUBLIC: bool = false;
///     const ROLES: &'static [&'static str] = &["member"];
///     type Message = Join;
///     fn call(ctx: Ctx, msg: Join) -> ActionFuture {
///         Box::pin(async move { join(ctx, msg).await.into_reply() })
///     }
/// }
/// let list = vec![ActionDef::of::<JoinAction>()];
/// # assert_eq!(list[0].name(), "join");
/// ```
///
/// # Misuse is a compile error
///
/// ```compile_fail
/// use venturekit_ws::{Ctx, ws_action};
/// #[ws_action("send")]
/// fn send(ctx: Ctx) {} // error: `#[ws_action]` requires an `async fn`
/// ```
///
/// ```compile_fail
/// use venturekit_ws::{Ctx, ws_action};
/// #[ws_action("auth")] // error: the action name `auth` is reserved
/// async fn my_auth(ctx: Ctx) {}
/// ```
pub use venturekit_ws_macros::ws_action;

/// Builds the list of actions to register: `actions![send, ping, admin::kick]`, a
/// `Vec<ActionDef>` for [`App::actions`].
///
/// Two actions with the same name are a compile-time error, as is listing one twice:
///
/// ```compile_fail
/// use venturekit_ws::{Ctx, actions, ws_action};
/// #[ws_action("send")]
/// async fn send(_ctx: Ctx) {}
/// #[ws_action("send")]
/// async fn send_too(_ctx: Ctx) {}
/// let _ = actions![send, send_too]; // error: registered under the same action name
/// ```
pub use venturekit_ws_macros::actions;

/// The README's Rust blocks, compiled as doctests so the walkthroughs stay true (with the
/// `testing` feature, which its test kit section uses; the test command enables it).
#[cfg(all(doctest, feature = "testing"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

#[doc(hidden)]
pub mod __private {
    //! Used by the generated code. Not public API.
    pub use crate::action::{
        Action, ActionDef, ActionFuture, ActionMessage, CtxArg, IntoReply, reply, str_eq,
    };
    pub use crate::contract::{Probe, ProbeFallback, ProbeSchema, ReplySchema, SchemaGen, Schemas};
    pub use crate::ctx::Ctx;
    pub use crate::state::{FromCtx, StateKey};
    pub use serde::de::IgnoredAny;
    pub use std::boxed::Box;
    pub use std::vec::Vec;
}
