//! What one test client received: unread frames, the close, and JSON subset matching.

use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How a connection ended, from [`TestClient::assert_closed`](super::TestClient::assert_closed).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Closed {
    /// The WebSocket close code (1000: a normal close, 1001: idle or too long, 1006:
    /// dropped without a close frame).
    pub code: u16,
    /// The close reason.
    pub reason: String,
    /// The last error frame the client received before the close (an `error` frame, or an
    /// `auth` reply with `success: false`): why the server closed it, when it said.
    pub error: Option<Value>,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "closed with {} {:?}", self.code, self.reason)?;
        if let Some(error) = &self.error {
            write!(f, " after {}", show(error))?;
        }
        Ok(())
    }
}

#[derive(Default)]
pub(super) struct Inbox {
    state: Mutex<State>,
    notify: tokio::sync::Notify,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) unread: VecDeque<Value>,
    pub(super) read: usize,
    pub(super) closed: Option<Closed>,
    last_error: Option<Value>,
}

impl State {
    /// Removes and returns the first unread frame for which `matches` holds.
    pub(super) fn take(&mut self, matches: impl Fn(&Value) -> bool) -> Option<Value> {
        let at = self.unread.iter().position(matches)?;
        self.read += 1;
        self.unread.remove(at)
    }

    /// The unread frames, for failure messages.
    pub(super) fn describe(&self) -> String {
        let mut text = if self.unread.is_empty() {
            format!("no unread frames ({} already read)", self.read)
        } else {
            let mut text = format!(
                "{} unread frame(s) ({} already read):",
                self.unread.len(),
                self.read
            );
            for frame in self.unread.iter().take(SHOWN) {
                text.push_str("\n    ");
                text.push_str(&show(frame));
            }
            if self.unread.len() > SHOWN {
                text.push_str(&format!("\n    … and {} more", self.unread.len() - SHOWN));
            }
            text
        };
        if let Some(closed) = &self.closed {
            text.push_str(&format!("\n  and the connection is {closed}"));
        }
        text
    }
}

const SHOWN: usize = 20;

/// A frame as compact JSON, clipped for failure messages.
pub(super) fn show(frame: &Value) -> String {
    let text = frame.to_string();
    if text.len() <= 300 {
        return text;
    }
    let mut end = 300;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

fn is_error_frame(frame: &Value) -> bool {
    frame["action"] == "error" || (frame["action"] == "auth" && frame["success"] == false)
}

impl Inbox {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a text frame (JSON, or a JSON string when it is not JSON).
    pub(super) fn push(&self, text: &str) {
        let frame = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
        {
            let mut state = self.lock();
            if is_error_frame(&frame) {
                state.last_error = Some(frame.clone());
            }
            state.unread.push_back(frame);
        }
        self.notify.notify_waiters();
    }

    /// Records the close (the first one counts).
    pub(super) fn close(&self, code: u16, reason: &str) {
        {
            let mut state = self.lock();
            if state.closed.is_none() {
                let error = state.last_error.clone();
                state.closed = Some(Closed {
                    code,
                    reason: reason.to_owned(),
                    error,
                });
            }
        }
        self.notify.notify_waiters();
    }

    pub(super) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Runs `check` until it returns `Some` or `wait` has passed. With no wait (the
    /// in-process kit, where every push caused by a message has happened when the send
    /// returns) it yields a few times to let spawned work run, then checks once.
    pub(super) async fn wait_for<T>(
        &self,
        wait: Option<Duration>,
        mut check: impl FnMut(&mut State) -> Option<T>,
    ) -> Option<T> {
        let Some(wait) = wait else {
            for _ in 0..YIELDS {
                tokio::task::yield_now().await;
            }
            return check(&mut self.lock());
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(found) = check(&mut state) {
                    return Some(found);
                }
                // Nothing more can arrive on a closed connection.
                if state.closed.is_some() {
                    return None;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return check(&mut self.lock());
            }
        }
    }
}

const YIELDS: usize = 8;

/// Whether `actual` contains `subset`: every field of a `subset` object is in `actual`
/// with a matching value (recursively); arrays match element by element, at equal length;
/// other values are equal.
///
/// ```
/// use serde_json::json;
/// use venturekit_ws::testing::json_contains;
/// let frame = json!({"action": "message", "from": "alice", "text": "hi", "at": 1});
/// assert!(json_contains(&frame, &json!({"action": "message", "text": "hi"})));
/// assert!(!json_contains(&frame, &json!({"action": "message", "text": "bye"})));
/// ```
pub fn json_contains(actual: &Value, subset: &Value) -> bool {
    match (actual, subset) {
        (Value::Object(actual), Value::Object(subset)) => subset
            .iter()
            .all(|(key, want)| actual.get(key).is_some_and(|got| json_contains(got, want))),
        (Value::Array(actual), Value::Array(subset)) => {
            actual.len() == subset.len()
                && actual.iter().zip(subset).all(|(a, s)| json_contains(a, s))
        }
        (actual, subset) => actual == subset,
    }
}
