//! Running the app's code so that a panic in it is the app's error, not an outage.
//!
//! Handlers, hooks, authorization rules and the `Deserialize` impls of message types are the
//! app's code. A panic in any of them is caught (with `panic = "unwind"`, see the README),
//! logged at error level with what panicked, and answered like an internal error; the
//! connection and the process go on.

use futures_util::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;

/// Runs the app's async code (`what` names it in the log); `None` when it panicked.
pub(crate) async fn caught<T>(what: &'static str, run: impl Future<Output = T>) -> Option<T> {
    let outcome = AssertUnwindSafe(run).catch_unwind().await;
    outcome.map_err(|_| panicked(what)).ok()
}

/// Runs the app's code that does not await (`what` names it in the log); `None` when it
/// panicked.
pub(crate) fn caught_now<T>(what: &'static str, run: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(AssertUnwindSafe(run))
        .map_err(|_| panicked(what))
        .ok()
}

fn panicked(what: &'static str) {
    tracing::error!(code = what, "the app's code panicked");
}
