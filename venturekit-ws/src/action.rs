//! Actions: what `#[ws_action]` generates, and how to write one by hand.
//!
//! The macro implements [`Action`] for a hidden type named after the function. Without the
//! macro, register a plain function with [`ActionDef::from_fn`], or implement [`Action`]
//! yourself and register it with [`ActionDef::of`]:
//!
//! ```
//! use venturekit_ws::{Action, ActionDef, ActionFuture, Ctx, IntoReply};
//! #[derive(serde::Deserialize)]
//! struct Echo { text: String }
//! struct EchoAction;
//! impl Action for EchoAction {
//!     const NAME: &'static str = "echo";
//!     const PUBLIC: bool = true;
//!     type Message = Echo;
//!     fn call(_ctx: Ctx, msg: Echo) -> ActionFuture {
//!         Box::pin(async move { Ok::<_, venturekit_ws::WsError>(msg.text).into_reply() })
//!     }
//! }
//! let defs = vec![ActionDef::of::<EchoAction>()];
//! assert_eq!(defs[0].name(), "echo");
//! ```

use crate::ctx::Ctx;
use crate::error::WsError;
use crate::state::StateKey;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

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
    /// Roles of which the caller needs any one (`#[ws_action("x", role = ["a", "b"])]`);
    /// empty: no role needed.
    const ROLES: &'static [&'static str] = &[];
    /// Scopes the caller needs, all of them (`#[ws_action("x", scope = "chat:write")]`).
    const SCOPES: &'static [&'static str] = &[];
    /// The message type, deserialized from the whole JSON object (including `action`).
    type Message: ActionMessage;
    /// Runs the handler.
    fn call(ctx: Ctx, message: Self::Message) -> ActionFuture;
    /// The app state the handler needs (its `State<T>` arguments), checked when the app
    /// starts.
    fn required_state() -> Vec<StateKey> {
        Vec::new()
    }
    /// The JSON Schemas of the message and the reply, for the contract export (the macro
    /// records them when the types derive `schemars::JsonSchema` and the `contract`
    /// feature is on).
    fn schemas(_generator: &mut crate::contract::SchemaGen) -> crate::contract::Schemas {
        crate::contract::Schemas::unknown()
    }
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

/// Turns a handler's return value into a reply (what the generated adapter calls; outside
/// generated code, use [`IntoReply::into_reply`]).
#[doc(hidden)]
pub fn reply<R: IntoReply>(output: R) -> Result<Option<String>, WsError> {
    output.into_reply()
}

type Invoke = Arc<dyn Fn(Ctx, &str, &[&str]) -> Result<ActionFuture, String> + Send + Sync>;

/// A type-erased action, ready for the dispatcher. Build one with [`ActionDef::of`] or
/// a list with `actions![...]`.
#[derive(Clone)]
pub struct ActionDef {
    name: &'static str,
    public: bool,
    roles: &'static [&'static str],
    scopes: &'static [&'static str],
    invoke: Invoke,
    required_state: fn() -> Vec<StateKey>,
    schemas: fn(&mut crate::contract::SchemaGen) -> crate::contract::Schemas,
}

impl std::fmt::Debug for ActionDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionDef")
            .field("name", &self.name)
            .field("public", &self.public)
            .field("roles", &self.roles)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl ActionDef {
    /// The definition of action `A`.
    pub fn of<A: Action>() -> Self {
        ActionDef {
            name: A::NAME,
            public: A::PUBLIC,
            roles: A::ROLES,
            scopes: A::SCOPES,
            invoke: Arc::new(invoke::<A>),
            required_state: A::required_state,
            schemas: A::schemas,
        }
    }

    /// The app state the handler needs.
    pub fn required_state(&self) -> Vec<StateKey> {
        (self.required_state)()
    }

    /// Roles of which the caller needs any one (empty: none).
    pub fn roles(&self) -> &'static [&'static str] {
        self.roles
    }

    /// Scopes the caller needs, all of them (empty: none).
    pub fn scopes(&self) -> &'static [&'static str] {
        self.scopes
    }

    /// An action served by a plain `async fn` (or closure), without the macro: the way
    /// axum's `Handler` works. `handler` takes `(ctx: Ctx)` or `(ctx: Ctx, msg: M)` with
    /// `M: Deserialize`, and returns what a `#[ws_action]` handler may return. The action is
    /// guarded; see [`ActionDef::public`], [`ActionDef::roles`] and [`ActionDef::scopes`].
    ///
    /// ```
    /// use venturekit_ws::{ActionDef, App, Config, Ctx, WsError};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Echo { text: String }
    ///
    /// async fn echo(_ctx: Ctx, msg: Echo) -> Result<String, WsError> {
    ///     Ok(msg.text)
    /// }
    ///
    /// async fn whoami(ctx: Ctx) -> Result<String, WsError> {
    ///     Ok(ctx.require_user()?.to_owned())
    /// }
    ///
    /// let app = App::new(Config::default())
    ///     .action(ActionDef::from_fn("echo", echo).public())
    ///     .action(ActionDef::from_fn("whoami", whoami).with_roles(&["admin"]));
    /// # let _ = app;
    /// ```
    pub fn from_fn<Args, H: Handler<Args>>(name: &'static str, handler: H) -> Self {
        ActionDef {
            name,
            public: false,
            roles: &[],
            scopes: &[],
            invoke: Arc::new(move |ctx, body, envelope| {
                let message: H::Message = crate::decode::decode_message(body, envelope)?;
                Ok(handler.call(ctx, message))
            }),
            required_state: Vec::new,
            schemas: |_| crate::contract::Schemas::unknown(),
        }
    }

    /// Records the message type `M` and reply type `R` of an action registered without
    /// the macro, for the contract export (`R = ()` for no reply).
    ///
    /// ```
    /// use venturekit_ws::{ActionDef, Ctx, WsError};
    /// #[derive(serde::Deserialize, schemars::JsonSchema)]
    /// struct Echo { text: String }
    /// async fn echo(_ctx: Ctx, msg: Echo) -> Result<String, WsError> { Ok(msg.text) }
    /// let def = ActionDef::from_fn("echo", echo).with_schemas::<Echo, String>();
    /// # let _ = def;
    /// ```
    #[cfg(feature = "contract")]
    pub fn with_schemas<M: schemars::JsonSchema, R: schemars::JsonSchema>(mut self) -> Self {
        self.schemas = crate::contract::schemas_of::<M, R>;
        self
    }

    /// The schemas of the message and reply (see [`crate::contract`]).
    pub fn schemas(&self, generator: &mut crate::contract::SchemaGen) -> crate::contract::Schemas {
        (self.schemas)(generator)
    }

    /// The same action, without the auth guard.
    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }

    /// The same action, requiring any one of `roles`.
    pub fn with_roles(mut self, roles: &'static [&'static str]) -> Self {
        self.roles = roles;
        self
    }

    /// The same action, requiring all of `scopes`.
    pub fn with_scopes(mut self, scopes: &'static [&'static str]) -> Self {
        self.scopes = scopes;
        self
    }

    /// The action name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the action skips the auth guard.
    pub fn is_public(&self) -> bool {
        self.public
    }

    /// Deserializes `body` (without its `envelope` fields, `action` and `ref`) into the
    /// action's message and starts the handler. On a decoding error nothing runs and the
    /// error names the offending field.
    pub(crate) fn invoke(
        &self,
        ctx: Ctx,
        body: &str,
        envelope: &[&str],
    ) -> Result<ActionFuture, String> {
        (self.invoke)(ctx, body, envelope)
    }
}

fn invoke<A: Action>(ctx: Ctx, body: &str, envelope: &[&str]) -> Result<ActionFuture, String> {
    let message: A::Message = crate::decode::decode_message(body, envelope)?;
    Ok(A::call(ctx, message))
}

/// A plain function usable as an action (see [`ActionDef::from_fn`]). Implemented for
/// `async fn(Ctx) -> R` and `async fn(Ctx, M) -> R` (and closures of those shapes), where
/// `M: Deserialize` and `R` is what a handler may return (`()` or `Result<T, E>`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot serve a WebSocket action",
    label = "not an action handler",
    note = "handlers look like `async fn name(ctx: Ctx, msg: MyMessage) -> Result<T, WsError>` (the message is optional)"
)]
pub trait Handler<Args>: Send + Sync + 'static {
    /// The message type.
    type Message: ActionMessage;
    /// Starts the handler.
    fn call(&self, ctx: Ctx, message: Self::Message) -> ActionFuture;
}

impl<F, Fut, R> Handler<(Ctx,)> for F
where
    F: Fn(Ctx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoReply,
{
    type Message = serde::de::IgnoredAny;
    fn call(&self, ctx: Ctx, _message: Self::Message) -> ActionFuture {
        let future = self(ctx);
        Box::pin(async move { future.await.into_reply() })
    }
}

impl<F, Fut, R, M> Handler<(Ctx, M)> for F
where
    F: Fn(Ctx, M) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoReply,
    M: ActionMessage,
{
    type Message = M;
    fn call(&self, ctx: Ctx, message: M) -> ActionFuture {
        let future = self(ctx, message);
        Box::pin(async move { future.await.into_reply() })
    }
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

    #[test]
    fn const_str_eq() {
        assert!(str_eq("send", "send"));
        assert!(!str_eq("send", "sent"));
        assert!(!str_eq("send", "sends"));
    }
}
