//! Actions: what `#[ws_action]` generates, and how to write one by hand.
//!
//! The macro implements [`Action`] for a hidden type named like the function. Without the
//! macro, implement [`Action`] yourself and register it with [`ActionDef::of`]:
//!
//! ```
//! use venturekit_ws::{Action, ActionDef, ActionFuture, Ctx, reply};
//! #[derive(serde::Deserialize)]
//! struct Echo { text: String }
//! struct EchoAction;
//! impl Action for EchoAction {
//!     const NAME: &'static str = "echo";
//!     const PUBLIC: bool = true;
//!     type Message = Echo;
//!     fn call(_ctx: Ctx, msg: Echo) -> ActionFuture {
//!         Box::pin(async move { reply(Ok::<_, venturekit_ws::WsError>(msg.text)) })
//!     }
//! }
//! let defs = vec![ActionDef::of::<EchoAction>()];
//! assert_eq!(defs[0].name(), "echo");
//! ```

use crate::ctx::Ctx;
use crate::error::WsError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;

/// The future an action returns: the serialized reply (`None` for no reply) or an error.
pub type ActionFuture = Pin<Box<dyn Future<Output = Result<Option<String>, WsError>> + Send>>;

/// A registered WebSocket action.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a WebSocket action",
    label = "not an action",
    note = "annotate an `async fn` with `#[ws_action(\"name\")]`, or implement `venturekit_ws::Action`"
)]
pub trait Action: Send + Sync + 'static {
    /// The `action` value that selects this handler.
    const NAME: &'static str;
    /// `true` when the action runs without authentication.
    const PUBLIC: bool;
    /// The message type, deserialized from the whole JSON object (including `action`).
    type Message: ActionMessage;
    /// Runs the handler.
    fn call(ctx: Ctx, message: Self::Message) -> ActionFuture;
}

/// A message type an action can receive: anything `Deserialize`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the message of a `#[ws_action]` handler",
    label = "the message type must implement `serde::Deserialize`",
    note = "add `#[derive(serde::Deserialize)]` to the message type"
)]
pub trait ActionMessage: DeserializeOwned + Send + 'static {}
impl<T: DeserializeOwned + Send + 'static> ActionMessage for T {}

/// What a handler may return: `()` (no reply) or `Result<T, E>` with `T: Serialize`
/// (posted back as JSON unless it serializes to `null`) and `E: Into<WsError>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from a `#[ws_action]` handler",
    label = "unsupported return type",
    note = "return `()`, or `Result<T, E>` where `T: serde::Serialize` and `E: Into<venturekit_ws::WsError>`"
)]
pub trait IntoReply {
    /// Serializes the reply.
    fn into_reply(self) -> Result<Option<String>, WsError>;
}

impl IntoReply for () {
    fn into_reply(self) -> Result<Option<String>, WsError> {
        Ok(None)
    }
}

impl<T: Serialize, E: Into<WsError>> IntoReply for Result<T, E> {
    fn into_reply(self) -> Result<Option<String>, WsError> {
        let value = self.map_err(Into::into)?;
        let text = serde_json::to_string(&value).map_err(WsError::internal)?;
        Ok(if text == "null" { None } else { Some(text) })
    }
}

/// Turns a handler's return value into a reply (what the generated adapter calls).
pub fn reply<R: IntoReply>(output: R) -> Result<Option<String>, WsError> {
    output.into_reply()
}

type Invoke = fn(Ctx, &str) -> Result<ActionFuture, String>;

/// A type-erased action, ready for the dispatcher. Build one with [`ActionDef::of`] or
/// a list with `actions![...]`.
#[derive(Clone, Copy)]
pub struct ActionDef {
    name: &'static str,
    public: bool,
    invoke: Invoke,
}

impl std::fmt::Debug for ActionDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionDef")
            .field("name", &self.name)
            .field("public", &self.public)
            .finish()
    }
}

impl ActionDef {
    /// The definition of action `A`.
    pub fn of<A: Action>() -> Self {
        ActionDef {
            name: A::NAME,
            public: A::PUBLIC,
            invoke: invoke::<A>,
        }
    }

    /// The action name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the action skips the auth guard.
    pub fn is_public(&self) -> bool {
        self.public
    }

    /// Deserializes `body` into the action's message and starts the handler.
    /// On a decoding error nothing runs and the error names the offending field.
    pub(crate) fn invoke(&self, ctx: Ctx, body: &str) -> Result<ActionFuture, String> {
        (self.invoke)(ctx, body)
    }
}

fn invoke<A: Action>(ctx: Ctx, body: &str) -> Result<ActionFuture, String> {
    let message: A::Message = decode(body)?;
    Ok(A::call(ctx, message))
}

/// Deserializes a message, producing an error text that names the offending field.
pub(crate) fn decode<T: DeserializeOwned>(body: &str) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_str(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            format!("invalid message: {inner}")
        } else {
            format!("invalid field `{path}`: {inner}")
        }
    })?;
    de.end().map_err(|e| format!("invalid message: {e}"))?;
    Ok(value)
}

/// Compares two strings in a `const` context (used by `actions![...]` to reject duplicate
/// names at compile time).
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Names the framework reserves: route keys and built-in actions.
pub const RESERVED_NAMES: &[&str] = &["$connect", "$disconnect", "$default", "auth", "ping"];

/// The prefix of the framework's own actions (`vk:join`, …); user action names may not
/// start with it.
pub const RESERVED_PREFIX: &str = "vk:";

/// `vk:panic-probe`: a built-in action that panics, registered only when
/// `VK_WS_PANIC_PROBE=1`. It lets you check a deployed artifact's panic strategy: built with
/// `panic = "unwind"` the caller gets `internal` and the process serves on; built with
/// "abort" the process dies. Never enable it in production.
pub(crate) struct PanicProbe;

impl Action for PanicProbe {
    const NAME: &'static str = "vk:panic-probe";
    const PUBLIC: bool = true;
    type Message = serde::de::IgnoredAny;
    fn call(_ctx: Ctx, _message: Self::Message) -> ActionFuture {
        Box::pin(async {
            #[allow(clippy::panic)]
            {
                panic!("vk:panic-probe: a deliberate panic (VK_WS_PANIC_PROBE=1)")
            }
        })
    }
}

/// The first argument of a `#[ws_action]` handler: [`Ctx`].
#[diagnostic::on_unimplemented(
    message = "the first argument of a `#[ws_action]` handler must be `venturekit_ws::Ctx`, not `{Self}`",
    label = "expected `Ctx`",
    note = "handlers look like `async fn name(ctx: Ctx, msg: MyMessage) -> ...`"
)]
pub trait CtxArg: Sized {
    /// Produces the argument from the context.
    fn from_ctx(ctx: Ctx) -> Self;
}

impl CtxArg for Ctx {
    fn from_ctx(ctx: Ctx) -> Self {
        ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Send {
        to: String,
        data: serde_json::Value,
    }

    #[test]
    fn decode_names_the_field() {
        let err = decode::<Send>(r#"{"action":"send","to":5,"data":1}"#).unwrap_err();
        assert!(err.starts_with("invalid field `to`:"), "{err}");
        let err = decode::<Send>(r#"{"action":"send","data":1}"#).unwrap_err();
        assert!(err.contains("missing field `to`"), "{err}");
        let ok = decode::<Send>(r#"{"action":"send","to":"bob","data":[1]}"#).unwrap();
        assert_eq!(ok.to, "bob");
    }

    #[test]
    fn const_str_eq() {
        assert!(str_eq("send", "send"));
        assert!(!str_eq("send", "sent"));
        assert!(!str_eq("send", "sends"));
    }
}
