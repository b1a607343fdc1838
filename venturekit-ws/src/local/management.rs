//! The management API on the local server: `POST`/`GET`/`DELETE /@connections/{id}`
//! (also under a stage prefix, as the AWS SDK sends it), plus `GET /_vk/connections`.

use super::Shared;
use crate::delivery::DeliveryError;
use crate::protocol::MAX_MESSAGE_BYTES;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
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
    let frame = super::socket::text_frame(&String::from_utf8_lossy(&body));
    let sent = match shared.registry.outbox(id) {
        Some(outbox) => outbox.push(frame),
        None => Err(DeliveryError::Gone),
    };
    match sent {
        Ok(()) => StatusCode::OK.into_response(),
        Err(DeliveryError::Failed(why)) => aws_error(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            &why,
        ),
        Err(_) => gone(),
    }
}

/// Serves the management API and `/_vk/*` to loopback peers, and to others only with the
/// configured bearer token (`VK_WS_LOCAL_API_TOKEN`). Anyone who reaches them can read
/// every record, push frames and disconnect anyone.
pub(super) async fn admin_only(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if admin_allowed(peer.ip(), request.headers(), shared.api_token.as_deref()) {
        next.run(request).await
    } else {
        aws_error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            "the local management API is served to loopback peers only; set VK_WS_LOCAL_API_TOKEN and send `Authorization: Bearer <token>` to use it from elsewhere",
        )
    }
}

/// Whether a peer may use the management API: loopback, or the right bearer token.
pub(super) fn admin_allowed(peer: IpAddr, headers: &HeaderMap, token: Option<&str>) -> bool {
    let loopback = match peer {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    if loopback {
        return true;
    }
    let Some(expected) = token.filter(|t| !t.is_empty()) else {
        return false;
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(presented.as_bytes(), expected.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    // The service's wire names (the SDKs' `ConnectedAt`/`Identity` are model names).
    Json(serde_json::json!({
        "connectedAt": iso(peer.connected_at),
        "identity": {
            "sourceIp": peer.source_ip.to_string(),
            "userAgent": peer.user_agent.as_deref().unwrap_or(""),
        },
        "lastActiveAt": iso(last),
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

/// `GET /_vk/metrics`: the server's counts (the metrics Lambda writes as EMF), and a summary.
pub(super) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let set = shared.metrics.lock().map(|m| m.clone()).unwrap_or_default();
    let mut body = set.to_json();
    body["summary"] = serde_json::Value::String(set.summary());
    Json(body).into_response()
}

/// `GET /_vk/actions`: the dev console's action picker.
pub(super) async fn list_actions(State(shared): State<Arc<Shared>>) -> Response {
    if !shared.catalog.is_null() {
        return Json(shared.catalog.clone()).into_response();
    }
    let mut list = vec![serde_json::json!({
        "action": "ping", "public": true, "roles": [], "example": {"action": "ping"}
    })];
    for (name, public, roles, _) in shared.dispatcher.action_list() {
        list.push(serde_json::json!({
            "action": name, "public": public, "roles": roles, "example": {"action": name}
        }));
    }
    Json(list).into_response()
}

/// What `POST /_vk/token` takes.
#[derive(serde::Deserialize)]
pub(super) struct TokenRequest {
    sub: String,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// `POST /_vk/token` `{"sub","tenant"?,"roles"?}`: a one-hour dev token, only while the
/// server uses the public development secret (never with a real key), to loopback peers.
pub(super) async fn mint_token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Some(config) = &shared.dev_tokens else {
        return aws_error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            "dev tokens are minted only with the public development secret; this server has a real key (mint with `cargo run -- token`)",
        );
    };
    let request: TokenRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                &format!("expected {{\"sub\":…,\"tenant\"?:…,\"roles\"?:[…]}}: {e}"),
            );
        }
    };
    if request.sub.is_empty() || request.sub.len() > crate::auth::MAX_ID_BYTES {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            "`sub` must be 1 to 1024 bytes",
        );
    }
    let spec = crate::auth::DevToken {
        sub: request.sub,
        tenants: request
            .tenant
            .filter(|t| !t.is_empty())
            .into_iter()
            .collect(),
        roles: request.roles,
        ..Default::default()
    };
    let now = shared.dispatcher.clock().now_secs();
    match crate::auth::mint_dev_token_at(crate::config::DEV_SECRET.as_bytes(), &spec, config, now) {
        Ok(token) => Json(serde_json::json!({ "token": token })).into_response(),
        Err(e) => aws_error(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            &e.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::admin_allowed;
    use axum::http::{HeaderMap, HeaderValue, header};
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn loopback_only_unless_a_bearer_token_is_configured() {
        let none = HeaderMap::new();
        let mut bearer = HeaderMap::new();
        bearer.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        let mut wrong = HeaderMap::new();
        wrong.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        for local in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            assert!(admin_allowed(ip(local), &none, None), "{local}");
        }
        for remote in ["10.0.0.5", "192.168.1.2", "fe80::1", "::ffff:10.0.0.5"] {
            assert!(!admin_allowed(ip(remote), &none, None), "{remote}");
            assert!(
                !admin_allowed(ip(remote), &bearer, None),
                "{remote}: no token configured"
            );
            assert!(
                !admin_allowed(ip(remote), &none, Some("s3cret")),
                "{remote}"
            );
            assert!(
                !admin_allowed(ip(remote), &wrong, Some("s3cret")),
                "{remote}"
            );
            assert!(
                !admin_allowed(ip(remote), &bearer, Some("")),
                "{remote}: empty token"
            );
            assert!(
                admin_allowed(ip(remote), &bearer, Some("s3cret")),
                "{remote}"
            );
        }
    }
}
