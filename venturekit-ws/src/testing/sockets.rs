//! The kit over real WebSockets: the local server on a loopback port, and clients that
//! record what arrives.

use super::faults::{FaultDelivery, Faults};
use super::inbox::Inbox;
use super::{Connect, KitError};
use crate::app::App;
use crate::dispatch::Dispatcher;
use crate::messaging::Messenger;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The local server the kit started.
pub(super) struct Server {
    pub(super) url: String,
    pub(super) dispatcher: Arc<Dispatcher>,
    pub(super) messenger: Messenger,
    task: tokio::task::JoinHandle<Result<(), crate::Error>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub(super) async fn start(app: &App, faults: Faults) -> Result<Server, crate::Error> {
        let server = app
            .local_server(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await?
            .manual_sweep()
            .wrap_delivery(|inner| Arc::new(FaultDelivery { inner, faults }));
        let url = format!("ws://{}/", server.local_addr());
        let dispatcher = server.dispatcher();
        let messenger = server.messenger();
        let task = tokio::spawn(server.serve());
        Ok(Server {
            url,
            dispatcher,
            messenger,
            task,
        })
    }
}

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>, Message>;

/// One client socket; a reader task files frames into its inbox.
pub(super) struct Socket {
    sink: tokio::sync::Mutex<Sink>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Percent-encodes a query string component (RFC 3986 unreserved characters kept).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Socket {
    /// Connects; returns the connection id the server assigned (from the local server's
    /// `x-vk-connection-id` upgrade header).
    pub(super) async fn open(
        url: &str,
        label: &str,
        request: &Connect,
        inbox: Arc<Inbox>,
    ) -> Result<(String, Socket), KitError> {
        let mut url = url.to_owned();
        for (i, (name, value)) in request.query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&encode(name));
            url.push('=');
            url.push_str(&encode(value));
        }
        let fail = |what: String| KitError(format!("{label}: {what}"));
        let mut upgrade = url
            .as_str()
            .into_client_request()
            .map_err(|e| fail(format!("bad address {url}: {e}")))?;
        for (name, value) in &request.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| fail(format!("bad header name {name:?}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| fail(format!("bad header value {value:?}: {e}")))?;
            upgrade.headers_mut().append(name, value);
        }
        let (ws, response) = match tokio_tungstenite::connect_async(upgrade).await {
            Ok(connected) => connected,
            Err(tungstenite::Error::Http(response)) => {
                return Err(fail(format!(
                    "the connection was refused with HTTP {}",
                    response.status().as_u16()
                )));
            }
            Err(e) => return Err(fail(format!("connecting to {url} failed: {e}"))),
        };
        let id = response
            .headers()
            .get(crate::local::CONNECTION_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                fail("the server did not say the connection id (not the local server?)".into())
            })?
            .to_owned();
        let (sink, mut stream) = ws.split();
        let reader = tokio::spawn(async move {
            while let Some(message) = stream.next().await {
                match message {
                    Ok(Message::Text(text)) => inbox.push(text.as_str()),
                    Ok(Message::Close(frame)) => {
                        let (code, reason) = frame.map_or((1005, String::new()), |f| {
                            (u16::from(f.code), f.reason.to_string())
                        });
                        inbox.close(code, &reason);
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            inbox.close(1006, "the connection dropped without a close frame");
        });
        Ok((
            id,
            Socket {
                sink: tokio::sync::Mutex::new(sink),
                reader,
            },
        ))
    }

    pub(super) async fn send(&self, text: &str) -> Result<(), String> {
        self.sink
            .lock()
            .await
            .send(Message::text(text))
            .await
            .map_err(|e| e.to_string())
    }

    /// Closes normally and waits (briefly) for the server's close.
    pub(super) async fn close(&self) {
        let _ = self
            .sink
            .lock()
            .await
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "closed by the client".into(),
            })))
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while !self.reader.is_finished() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }
}
