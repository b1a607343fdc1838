//! The management API on the local server: `POST`/`GET`/`DELETE /@connections/{id}`
//! (also under a stage prefix, as the AWS SDK sends it), plus `GET /_vk/connections`.

use super::{Outbound, Shared};
use crate::protocol::MAX_MESSAGE_BYTES;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

fn aws_error(status: StatusCode, kind: &'static str, message: &str) -> Response {
    let mut response = (status, Json(serde_json::json!({ "message": message }))).into_response();
    response
        .headers_mut()
        .insert("x-amzn-ErrorType", HeaderValue::from_static(kind));
    response
}

fn gone() -> Response {
    aws_error(StatusCode::GONE, "GoneException", "Gone")
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(super) async fn post_to_connection(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    post(&shared, &id, body)
}

pub(super) async fn post_staged(
    State(shared): State<Arc<Shared>>,
    Path((_stage, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    post(&shared, &id, body)
}

fn post(shared: &Shared, id: &str, body: Bytes) -> Response {
    if body.len() > MAX_MESSAGE_BYTES {
        return aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            "Message too long",
        );
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let peers = shared.registry.peers();
    match peers.get(id) {
        Some(peer) if peer.tx.send(Outbound::Text(text)).is_ok() => StatusCode::OK.into_response(),
        _ => gone(),
    }
}

pub(super) async fn get_connection(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    describe(&shared, &id)
}

pub(super) async fn get_staged(
    State(shared): State<Arc<Shared>>,
    Path((_stage, id)): Path<(String, String)>,
) -> Response {
    describe(&shared, &id)
}

fn describe(shared: &Shared, id: &str) -> Response {
    let peers = shared.registry.peers();
    let Some(peer) = peers.get(id) else {
        return gone();
    };
    let last = peer.last_active.load(std::sync::atomic::Ordering::Relaxed);
    Json(serde_json::json!({
        "ConnectedAt": iso(peer.connected_at),
        "Identity": { "SourceIp": peer.source_ip, "UserAgent": peer.user_agent },
        "LastActiveAt": iso(last),
    }))
    .into_response()
}

pub(super) async fn delete_connection(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    delete(&shared, &id).await
}

pub(super) async fn delete_staged(
    State(shared): State<Arc<Shared>>,
    Path((_stage, id)): Path<(String, String)>,
) -> Response {
    delete(&shared, &id).await
}

async fn delete(shared: &Shared, id: &str) -> Response {
    match shared.delivery.close(id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => gone(),
    }
}

pub(super) async fn list_connections(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.dispatcher.store();
    let (live, expired) = match (store.list().await, store.list_expired().await) {
        (Ok(live), Ok(expired)) => (live, expired),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "listing connections failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut all: Vec<_> = live.into_iter().chain(expired).collect();
    all.sort_by(|a, b| (a.connected_at, &a.connection_id).cmp(&(b.connected_at, &b.connection_id)));
    Json(all).into_response()
}
