//! One test client: sends messages and asserts on what it received.

use super::inbox::{Closed, Inbox, State, json_contains, show};
use super::sockets::Socket;
use super::{Backend, Connect, Kit, KitError, User};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A connection opened by a [`TestKit`](super::TestKit): in process, or a real WebSocket.
///
/// Sends are awaited until the server has handled the message (in process: until every
/// reply and push it caused has been recorded). Assertions consume the frames they match;
/// frames nobody asserted on stay unread, and failure messages list them.
pub struct TestClient {
    kit: Arc<Kit>,
    label: String,
    id: String,
    inbox: Arc<Inbox>,
    conn: Conn,
}

enum Conn {
    InProcess { connected_at: i64 },
    Socket(Socket),
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient")
            .field("label", &self.label)
            .field("connection_id", &self.id)
            .finish_non_exhaustive()
    }
}

fn fail<T>(result: Result<T, KitError>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

impl TestClient {
    pub(super) async fn open(
        kit: Arc<Kit>,
        label: &str,
        request: Connect,
    ) -> Result<TestClient, KitError> {
        let inbox = Arc::new(Inbox::default());
        let (id, conn) = match &kit.backend {
            Backend::InProcess(p) => {
                let id = crate::local::new_connection_id();
                p.recorder
                    .inboxes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.clone(), inbox.clone());
                let mut headers = aws_lambda_events::http::HeaderMap::new();
                for (name, value) in &request.headers {
                    let name = aws_lambda_events::http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|e| KitError(format!("{label}: bad header {name:?}: {e}")))?;
                    let value = aws_lambda_events::http::HeaderValue::from_str(value)
                        .map_err(|e| KitError(format!("{label}: bad header value: {e}")))?;
                    headers.append(name, value);
                }
                let query = request.query.iter().cloned().collect();
                let connected_at = kit.clock.now_ms();
                let event = p.events.connect_with(&id, connected_at, headers, query);
                let response = p.dispatcher.handle(&event, p.delivery.clone()).await;
                kit.settle().await;
                if response.status_code != 200 {
                    p.recorder
                        .inboxes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                    return Err(KitError(format!(
                        "{label}: the connection was refused with HTTP {}",
                        response.status_code
                    )));
                }
                (id, Conn::InProcess { connected_at })
            }
            Backend::Sockets(server) => {
                let (id, socket) =
                    Socket::open(&server.url, label, &request, inbox.clone()).await?;
                (id, Conn::Socket(socket))
            }
        };
        kit.register(label, &id, inbox.clone());
        Ok(TestClient {
            kit,
            label: label.to_owned(),
            id,
            inbox,
            conn,
        })
    }

    /// The name given at connect (the user id for [`TestKit::authed`](super::TestKit::authed)).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The connection id, as API Gateway would assign it.
    pub fn connection_id(&self) -> &str {
        &self.id
    }

    /// Sends one text frame as is (malformed JSON included).
    pub async fn send_text(&self, text: &str) {
        if let Some(closed) = self.inbox.lock().closed.clone() {
            panic!("{}: cannot send, the connection is {closed}", self.label);
        }
        if let Ok(frame) = serde_json::from_str::<Value>(text) {
            self.kit
                .sent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(frame);
        }
        match (&self.conn, &self.kit.backend) {
            (Conn::InProcess { connected_at }, Backend::InProcess(p)) => {
                let event = p.events.message(&self.id, *connected_at, text);
                p.dispatcher.handle(&event, p.delivery.clone()).await;
                self.kit.settle().await;
            }
            (Conn::Socket(socket), _) => {
                if let Err(e) = socket.send(text).await {
                    panic!("{}: sending failed: {e}", self.label);
                }
            }
            (Conn::InProcess { .. }, Backend::Sockets(_)) => {
                unreachable!("an in-process client belongs to an in-process kit")
            }
        }
    }

    /// Sends a message (a `json!` value or any `Serialize` type) without `ref`.
    pub async fn send<M: Serialize + ?Sized>(&self, message: &M) {
        let text = serde_json::to_string(message)
            .unwrap_or_else(|e| panic!("{}: the message does not serialize: {e}", self.label));
        self.send_text(&text).await;
    }

    /// Sends a message with a fresh `ref` and returns the `ref`, for
    /// [`TestClient::assert_reply`]. The message must serialize to a JSON object.
    pub async fn push<M: Serialize + ?Sized>(&self, message: &M) -> String {
        let mut value = serde_json::to_value(message)
            .unwrap_or_else(|e| panic!("{}: the message does not serialize: {e}", self.label));
        let Some(object) = value.as_object_mut() else {
            panic!(
                "{}: a message with `ref` must be a JSON object, not {value}",
                self.label
            );
        };
        let reference = self.kit.next_ref();
        object.insert("ref".into(), Value::String(reference.clone()));
        self.send(&value).await;
        reference
    }

    /// Sends a message with a fresh `ref` and returns the reply carrying that `ref` (the
    /// action's reply, or an `error` frame).
    ///
    /// ```
    /// # use venturekit_ws::{App, Config, testing::{TestKit, User}};
    /// # use serde_json::json;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let kit = TestKit::new(App::new(Config::default())).unwrap();
    /// let alice = kit.authed(User::new("alice")).await;
    /// let reply = alice.request(&json!({"action": "ping"})).await;
    /// assert_eq!(reply["action"], "pong");
    /// let reply = alice.request(&json!({"action": "nope"})).await;
    /// assert_eq!(reply["error"]["code"], "unknown_action");
    /// # }
    /// ```
    pub async fn request<M: Serialize + ?Sized>(&self, message: &M) -> Value {
        let reference = self.push(message).await;
        fail(
            self.try_reply(&reference, &Value::Object(Default::default()))
                .await,
        )
    }

    /// Authenticates as `user` with a token minted by the kit, and returns the `auth`
    /// reply; panics if authentication fails.
    pub async fn auth(&self, user: User) -> Value {
        let token = self.kit.token(&user);
        let reply = self
            .auth_request(&token, user.tenant_request.as_deref())
            .await;
        if reply["success"] != true {
            panic!(
                "{}: authenticating as {} failed: {}",
                self.label,
                user.id(),
                show(&reply)
            );
        }
        reply
    }

    /// Sends `{"action":"auth","token":token}` and returns the reply, success or not.
    ///
    /// ```
    /// # use venturekit_ws::{App, Config, testing::TestKit};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let kit = TestKit::new(App::new(Config::default())).unwrap();
    /// let mallory = kit.connect("mallory").await;
    /// let reply = mallory.auth_token("not-a-jwt").await;
    /// assert_eq!(reply["success"], false);
    /// assert_eq!(reply["error"]["code"], "invalid_token");
    /// # }
    /// ```
    pub async fn auth_token(&self, token: &str) -> Value {
        self.auth_request(token, None).await
    }

    async fn auth_request(&self, token: &str, tenant: Option<&str>) -> Value {
        let mut message = serde_json::json!({"action": "auth", "token": token});
        if let Some(tenant) = tenant {
            message["tenantId"] = Value::String(tenant.to_owned());
        }
        self.request(&message).await
    }

    /// The reply carrying `reference` (from [`TestClient::push`]), which must match
    /// `subset` (see [`json_contains`]).
    ///
    /// ```
    /// # use venturekit_ws::{App, Config, testing::{TestKit, User}};
    /// # use serde_json::json;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let kit = TestKit::new(App::new(Config::default())).unwrap();
    /// let alice = kit.authed(User::new("alice")).await;
    /// let reference = alice.push(&json!({"action": "ping"})).await;
    /// alice.assert_reply(&reference, json!({"action": "pong"})).await;
    ///
    /// let reference = alice.push(&json!({"action": "ping"})).await;
    /// let failure = alice.try_reply(&reference, &json!({"action": "hello"})).await.unwrap_err();
    /// assert!(failure.0.starts_with(&format!(
    ///     "alice: the reply to ref {reference} does not match {{\"action\":\"hello\"}}: it is {{\"action\":\"pong\",\"ref\":\"{reference}\","
    /// )));
    /// # }
    /// ```
    pub async fn assert_reply(&self, reference: &str, subset: Value) -> Value {
        fail(self.try_reply(reference, &subset).await)
    }

    /// [`TestClient::assert_reply`], returning the failure.
    pub async fn try_reply(&self, reference: &str, subset: &Value) -> Result<Value, KitError> {
        let found = self
            .wait(|state| state.take(|f| f["ref"] == reference))
            .await;
        match found {
            Some(frame) if json_contains(&frame, subset) => Ok(frame),
            Some(frame) => Err(KitError(format!(
                "{}: the reply to ref {reference} does not match {}: it is {}",
                self.label,
                show(subset),
                show(&frame)
            ))),
            None => Err(self.missing(&format!("no reply to ref {reference}"))),
        }
    }

    /// The one frame this client received, which must match `subset`: for a message sent
    /// without `ref`, its reply. Fails if nothing or more than one frame arrived.
    ///
    /// ```
    /// # use venturekit_ws::{App, Config, testing::{TestKit, User}};
    /// # use serde_json::json;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let kit = TestKit::new(App::new(Config::default())).unwrap();
    /// let alice = kit.authed(User::new("alice")).await;
    /// alice.send(&json!({"action": "ping"})).await;
    /// alice.assert_single(json!({"action": "pong"})).await;
    ///
    /// alice.send(&json!({"action": "ping"})).await;
    /// alice.send(&json!({"action": "ping"})).await;
    /// let failure = alice.try_single(&json!({"action": "pong"})).await.unwrap_err();
    /// assert!(failure.0.starts_with(
    ///     "alice: expected a single frame matching {\"action\":\"pong\"}; 2 unread frame(s) (2 already read):\n    {\"action\":\"pong\",\"timestamp\":"
    /// ));
    /// # }
    /// ```
    pub async fn assert_single(&self, subset: Value) -> Value {
        fail(self.try_single(&subset).await)
    }

    /// [`TestClient::assert_single`], returning the failure.
    pub async fn try_single(&self, subset: &Value) -> Result<Value, KitError> {
        let first = self
            .wait(|state| (!state.unread.is_empty()).then_some(()))
            .await;
        let mut state = self.inbox.lock();
        if first.is_none() || state.unread.len() != 1 || !json_contains(&state.unread[0], subset) {
            let what = format!("expected a single frame matching {}", show(subset));
            return Err(KitError(format!(
                "{}: {what}; {}",
                self.label,
                state.describe()
            )));
        }
        Ok(state.take(|_| true).unwrap_or_default())
    }

    /// The first unread frame matching `subset` (see [`json_contains`]), consumed.
    ///
    /// ```
    /// # use venturekit_ws::{App, Config, testing::TestKit};
    /// # use serde_json::json;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let kit = TestKit::new(App::new(Config::default())).unwrap();
    /// let alice = kit.connect("alice").await;
    /// alice.send(&json!({"action": "ping"})).await;
    /// let pong = alice.assert_push(json!({"action": "pong"})).await;
    /// assert!(pong["timestamp"].is_string());
    ///
    /// alice.send(&json!({"action": "ping"})).await;
    /// let failure = alice.try_push(&json!({"action": "message"})).await.unwrap_err();
    /// assert!(failure.0.starts_with("alice: no frame matching {\"action\":\"message\"}; 1 unread frame(s)"));
    /// # }
    /// ```
    pub async fn assert_push(&self, subset: Value) -> Value {
        fail(self.try_push(&subset).await)
    }

    /// [`TestClient::assert_push`], returning the failure.
    pub async fn try_push(&self, subset: &Value) -> Result<Value, KitError> {
        self.wait(|state| state.take(|f| json_contains(f, subset)))
            .await
            .ok_or_else(|| self.missing(&format!("no frame matching {}", show(subset))))
    }

    /// The first unread error with this wire code (`unauthorized`, `forbidden`,
    /// `bad_request`, …): an `error` frame, or an `auth` reply with `success: false`.
    ///
    /// ```
    /// # use venturekit_ws::{App, Config, testing::{TestKit, User}};
    /// # use serde_json::json;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let kit = TestKit::new(App::new(Config::default())).unwrap();
    /// let alice = kit.authed(User::new("alice")).await;
    /// alice.send(&json!({"action": "no-such-thing"})).await;
    /// let error = alice.assert_error("unknown_action").await;
    /// assert_eq!(error["requestAction"], "no-such-thing");
    ///
    /// alice.send(&json!({"action": "ping"})).await;
    /// let failure = alice.try_error("forbidden").await.unwrap_err();
    /// assert!(failure.0.starts_with(
    ///     "alice: no `forbidden` error; 1 unread frame(s) (2 already read):\n    {\"action\":\"pong\""
    /// ));
    /// # }
    /// ```
    pub async fn assert_error(&self, code: &str) -> Value {
        fail(self.try_error(code).await)
    }

    /// [`TestClient::assert_error`], returning the failure.
    pub async fn try_error(&self, code: &str) -> Result<Value, KitError> {
        let is_error = |f: &Value| {
            (f["action"] == "error" || (f["action"] == "auth" && f["success"] == false))
                && f["error"]["code"] == code
        };
        self.wait(|state| state.take(is_error))
            .await
            .ok_or_else(|| self.missing(&format!("no `{code}` error")))
    }

    /// Asserts that nothing is unread: in process, right away (every push a message
    /// causes has happened when its send returns); over sockets, after waiting `within`.
    ///
    /// ```
    /// # use venturekit_ws::{App, Config, testing::{TestKit, User}};
    /// # use serde_json::json;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let kit = TestKit::new(App::new(Config::default())).unwrap();
    /// # use std::time::Duration;
    /// let alice = kit.authed(User::new("alice")).await;
    /// alice.assert_no_push(Duration::from_millis(100)).await;
    ///
    /// alice.send(&json!({"action": "ping"})).await;
    /// let failure = alice.try_no_push(Duration::from_millis(100)).await.unwrap_err();
    /// assert!(failure.0.starts_with(
    ///     "alice: expected nothing within 100ms; 1 unread frame(s) (1 already read):\n    {\"action\":\"pong\""
    /// ));
    /// # }
    /// ```
    pub async fn assert_no_push(&self, within: Duration) {
        fail(self.try_no_push(within).await)
    }

    /// [`TestClient::assert_no_push`], returning the failure.
    pub async fn try_no_push(&self, within: Duration) -> Result<(), KitError> {
        if self.kit.wait.is_some() {
            tokio::time::sleep(within).await;
        } else {
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
        }
        let state = self.inbox.lock();
        if state.unread.is_empty() {
            return Ok(());
        }
        Err(KitError(format!(
            "{}: expected nothing within {within:?}; {}",
            self.label,
            state.describe()
        )))
    }

    /// Asserts that the server closed the connection, and says how: the close code and
    /// reason, and the last error frame before it.
    ///
    /// ```
    /// # use venturekit_ws::{App, Config, testing::TestKit};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let kit = TestKit::new(App::new(Config::default())).unwrap();
    /// let late = kit.connect("late").await;
    /// kit.advance(Duration::from_secs(31)); // past the 30 s authentication window
    /// kit.sweep().await;
    /// let closed = late.assert_closed().await;
    /// assert_eq!(closed.code, 1000);
    /// assert_eq!(closed.error.unwrap()["error"]["code"], "unauthorized");
    ///
    /// let open = kit.connect("open").await;
    /// let failure = open.try_closed().await.unwrap_err();
    /// assert_eq!(failure.0, "open: expected the connection to be closed, it is open; no unread frames (0 already read)");
    /// # }
    /// ```
    pub async fn assert_closed(&self) -> Closed {
        fail(self.try_closed().await)
    }

    /// [`TestClient::assert_closed`], returning the failure.
    pub async fn try_closed(&self) -> Result<Closed, KitError> {
        self.wait(|state| state.closed.clone())
            .await
            .ok_or_else(|| self.missing("expected the connection to be closed, it is open"))
    }

    /// Closes the connection from the client side (API Gateway then sends `$disconnect`).
    pub async fn disconnect(&self) {
        match (&self.conn, &self.kit.backend) {
            (Conn::InProcess { connected_at }, Backend::InProcess(p)) => {
                if self.inbox.is_closed() {
                    return;
                }
                self.inbox.close(1000, "closed by the client");
                let event = p.events.disconnect(
                    &self.id,
                    *connected_at,
                    Some(1000),
                    "closed by the client",
                );
                p.dispatcher.handle(&event, p.delivery.clone()).await;
                self.kit.settle().await;
            }
            (Conn::Socket(socket), _) => socket.close().await,
            (Conn::InProcess { .. }, Backend::Sockets(_)) => {
                unreachable!("an in-process client belongs to an in-process kit")
            }
        }
    }

    /// The unread frames, oldest first (not consumed).
    pub fn frames(&self) -> Vec<Value> {
        self.inbox.lock().unread.iter().cloned().collect()
    }

    /// Discards the unread frames.
    pub fn clear(&self) {
        let mut state = self.inbox.lock();
        let n = state.unread.len();
        state.unread.clear();
        state.read += n;
    }

    async fn wait<T>(&self, check: impl FnMut(&mut State) -> Option<T>) -> Option<T> {
        self.inbox.wait_for(self.kit.wait, check).await
    }

    fn missing(&self, what: &str) -> KitError {
        KitError(format!(
            "{}: {what}; {}",
            self.label,
            self.inbox.lock().describe()
        ))
    }
}
