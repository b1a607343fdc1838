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
//! Module map: [`event`] (API Gateway events), [`dispatch`] (routing and the auth guard),
//! [`auth`] (JWT and the tenant rule), [`store`] (connection records), [`delivery`] and
//! [`messaging`] (posting and fan-out), [`local`] (the emulator), [`protocol`] (frames).

pub mod action;
pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod ctx;
pub mod delivery;
pub mod dispatch;
mod error;
pub mod event;
pub mod local;
pub mod messaging;
pub mod protocol;
pub mod store;

pub use action::{Action, ActionDef, ActionFuture, IntoReply, reply};
pub use app::{App, Mode};
pub use auth::Identity;
pub use config::Config;
pub use ctx::Ctx;
pub use delivery::{Delivery, DeliveryError};
pub use dispatch::Dispatcher;
pub use error::{Error, WsError};
pub use messaging::{Connections, FanoutReport, MessagingError, Scope};
pub use protocol::ErrorCode;
pub use store::{Connection, ConnectionStore, MemoryStore, StoreError};

/// Marks an `async fn` as a WebSocket action. See the crate docs of `venturekit-ws-macros`.
pub use venturekit_ws_macros::ws_action;

/// Builds the list of actions to register, rejecting duplicate names at compile time.
pub use venturekit_ws_macros::actions;

#[doc(hidden)]
pub mod __private {
    //! Used by the generated code. Not public API.
    pub use crate::action::{
        Action, ActionDef, ActionFuture, ActionMessage, CtxArg, IntoReply, reply, str_eq,
    };
    pub use crate::ctx::Ctx;
    pub use serde::de::IgnoredAny;
    pub use std::boxed::Box;
    pub use std::vec::Vec;
}
