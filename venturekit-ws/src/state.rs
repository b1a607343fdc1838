//! Application state: values the app is given once (a database client, an HTTP client,
//! configuration) and handlers receive, typed.
//!
//! ```
//! use std::sync::Mutex;
//! use venturekit_ws::{App, Config, Ctx, State, WsError, actions, ws_action};
//!
//! struct Counter {
//!     n: Mutex<u64>,
//! }
//!
//! #[ws_action("count")]
//! async fn count(_ctx: Ctx, counter: State<Counter>) -> Result<u64, WsError> {
//!     let mut n = counter.n.lock().map_err(|_| WsError::internal("poisoned"))?;
//!     *n += 1;
//!     Ok(*n)
//! }
//!
//! let app = App::new(Config::default())
//!     .state(Counter { n: Mutex::new(0) })
//!     .actions(actions![count]);
//! # let _ = app;
//! ```
//!
//! A handler that asks for state the app was not given is an error when the app starts
//! ([`crate::Error::MissingState`]), never when a message arrives.

use crate::ctx::Ctx;
use crate::error::WsError;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

/// The state values of an app, by type.
#[derive(Clone, Default)]
pub struct States {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for States {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("States")
            .field("count", &self.values.len())
            .finish()
    }
}

impl States {
    /// Adds (or replaces) the value of type `T`.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.values.insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// The value of type `T`, if the app was given one.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.values
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|v| v.downcast::<T>().ok())
    }

    /// Whether a value of the type `key` names is present.
    pub fn contains(&self, key: &StateKey) -> bool {
        self.values.contains_key(&key.id)
    }
}

/// Names one state type a handler needs (checked when the app starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateKey {
    id: TypeId,
    name: &'static str,
}

impl StateKey {
    /// The key of type `T`.
    pub fn of<T: 'static>() -> Self {
        StateKey {
            id: TypeId::of::<T>(),
            name: std::any::type_name::<T>(),
        }
    }

    /// The type's name, for messages.
    pub fn type_name(&self) -> &'static str {
        self.name
    }
}

/// A handler argument holding the app's state of type `T` (given with
/// [`App::state`](crate::App::state)). Dereferences to `T`.
#[derive(Debug)]
pub struct State<T>(pub Arc<T>);

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        State(self.0.clone())
    }
}

impl<T> Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A handler argument produced from the call's context (like axum's extractors). The
/// macro recognises such arguments by their type name (`State<T>`); the message, if any,
/// comes last.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be extracted from a `#[ws_action]` call",
    label = "not an extractor",
    note = "extractor arguments are `State<T>`; the message argument comes last"
)]
pub trait FromCtx: Sized {
    /// The state type this argument needs, checked when the app starts.
    fn required() -> Option<StateKey>;
    /// Produces the argument.
    fn from_ctx(ctx: &Ctx) -> Result<Self, WsError>;
}

impl<T: Send + Sync + 'static> FromCtx for State<T> {
    fn required() -> Option<StateKey> {
        Some(StateKey::of::<T>())
    }

    fn from_ctx(ctx: &Ctx) -> Result<Self, WsError> {
        // Checked when the app started; absent only for a context built by hand.
        ctx.state::<T>().map(State).ok_or_else(|| {
            WsError::internal(format!(
                "state `{}` was not given to the app",
                std::any::type_name::<T>()
            ))
        })
    }
}
