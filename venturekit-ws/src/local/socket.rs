//! The local server's side of a WebSocket: the opening handshake, the TCP socket shared
//! between a connection's task and the fan-out, and server frames encoded once.
//!
//! A connection's task reads the client's frames (through tungstenite) and writes what
//! waits in its outbox. A fan-out writes each target's frame straight to the socket when
//! nothing waits there and the task is not using it (as a Node.js server does), instead of
//! waking 10,000 tasks to write one frame each; the outbox's lock keeps the two apart, so
//! frames are never interleaved or reordered.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A text frame from the server, encoded once (server frames are not masked, so the same
/// bytes go to every target of a fan-out).
pub(super) fn text_frame(payload: &str) -> Bytes {
    let len = payload.len();
    let mut frame = Vec::with_capacity(len + 10);
    // FIN, opcode 1 (text).
    frame.push(0x81);
    if len < 126 {
        frame.push(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        frame.push(126);
        frame.extend_from_slice(&short.to_be_bytes());
    } else {
        frame.push(127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    frame.extend_from_slice(payload.as_bytes());
    Bytes::from(frame)
}

/// The TCP socket of one connection, shared by its task (as tungstenite's stream) and its
/// outbox (for a frame written at once). Reads and writes go through tokio's readiness, as
/// a `TcpStream`'s own would.
pub(super) struct Socket(pub(super) Arc<TcpStream>);

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing is buffered here: every write is the socket's.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The socket closes when the connection's task and its outbox let go of it.
        Poll::Ready(Ok(()))
    }
}

/// Whether one of `name`'s comma-separated values is `token` (ASCII case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// What is wrong with a request that asks for a WebSocket (`Upgrade: websocket`) but
/// cannot be upgraded, or `Ok` with the `Sec-WebSocket-Accept` value of one that can.
/// `Ok(None)`: the request does not ask for a WebSocket at all.
pub(super) fn check_handshake(
    method: &Method,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, &'static str> {
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Ok(None);
    }
    if method != Method::GET {
        return Err("a WebSocket handshake must be a GET request");
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err("a WebSocket handshake needs `Connection: upgrade`");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err("only WebSocket version 13 is supported (`Sec-WebSocket-Version: 13`)");
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("a WebSocket handshake needs `Sec-WebSocket-Key`")?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    HeaderValue::from_str(&accept)
        .map(Some)
        .map_err(|_| "the handshake's key cannot be answered")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_length_in_the_form_its_size_needs() {
        let short = text_frame("hi");
        assert_eq!(&short[..], b"\x81\x02hi");
        let medium = "x".repeat(300);
        let frame = text_frame(&medium);
        assert_eq!(&frame[..4], &[0x81, 126, 0x01, 0x2c]);
        assert_eq!(frame.len(), 304);
        let long = "y".repeat(70_000);
        let frame = text_frame(&long);
        assert_eq!(frame[1], 127);
        assert_eq!(u64::from_be_bytes(frame[2..10].try_into().unwrap()), 70_000);
        assert_eq!(frame.len(), 70_010);
        // 125 is the largest length in the first byte; 126 takes the 16-bit form.
        assert_eq!(text_frame(&"z".repeat(125))[1], 125);
        assert_eq!(text_frame(&"z".repeat(126))[1], 126);
    }

    #[test]
    fn the_handshake_is_checked_and_answered() {
        let mut headers = HeaderMap::new();
        assert_eq!(check_handshake(&Method::GET, &headers), Ok(None));
        headers.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        assert!(check_handshake(&Method::GET, &headers).is_err(), "no key");
        // RFC 6455's example.
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert_eq!(
            check_handshake(&Method::GET, &headers),
            Ok(Some(HeaderValue::from_static(
                "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
            )))
        );
        assert!(check_handshake(&Method::POST, &headers).is_err());
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert!(check_handshake(&Method::GET, &headers).is_err());
    }
}
