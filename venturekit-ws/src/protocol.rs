//! The wire protocol: the exact JSON shapes of DESIGN.md section 4.
//!
//! Every frame the framework itself sends is built here, so the shapes live in one place.

use serde::Serialize;

/// API Gateway's maximum WebSocket message size (128 KB).
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// The `code` of an error reply (`{"action":"error",…}` or a failed `auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The connection is not authenticated, or its auth window / session expired.
    Unauthorized,
    /// The body is not a JSON object, `action` is missing or not a string, or the
    /// message does not deserialize into the action's type.
    BadRequest,
    /// No action with that name is registered.
    UnknownAction,
    /// A reply or delivery would exceed API Gateway's 128 KB.
    PayloadTooLarge,
    /// The connection sent too much too fast.
    RateLimited,
    /// A handler failed; details are logged, never sent.
    Internal,
    /// `auth`: bad signature, malformed token, wrong algorithm, issuer or audience.
    InvalidToken,
    /// `auth`: the token's `exp` has passed.
    TokenExpired,
    /// `auth`: the requested tenant is not one the token may join.
    ForbiddenTenant,
}

impl ErrorCode {
    /// The code as it appears on the wire, e.g. `"bad_request"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownAction => "unknown_action",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::ForbiddenTenant => "forbidden_tenant",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: ErrorCode,
    message: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorFrame<'a> {
    action: &'static str,
    request_action: Option<&'a str>,
    error: ErrorBody<'a>,
}

/// Longest `requestAction` echoed in an error frame, in characters.
pub const MAX_ECHOED_ACTION_CHARS: usize = 128;
/// Longest error `message`, in characters.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 1024;

/// The first `max` characters of `s` (all of it when shorter).
pub fn clip(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `{"action":"error","requestAction":A,"error":{"code":C,"message":M}}`.
///
/// Echoed values are cut ([`MAX_ECHOED_ACTION_CHARS`], [`MAX_ERROR_MESSAGE_CHARS`]) so that
/// every error frame fits in API Gateway's 128 KB whatever the client sent.
pub fn error_frame(request_action: Option<&str>, code: ErrorCode, message: &str) -> String {
    to_json(&ErrorFrame {
        action: "error",
        request_action: request_action.map(|a| clip(a, MAX_ECHOED_ACTION_CHARS)),
        error: ErrorBody {
            code,
            message: clip(message, MAX_ERROR_MESSAGE_CHARS),
        },
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthOk<'a> {
    action: &'static str,
    success: bool,
    user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_id: Option<&'a str>,
}

/// `{"action":"auth","success":true,"userId":…}` (+ `"tenantId"` when joined).
pub fn auth_success(user_id: &str, tenant_id: Option<&str>) -> String {
    to_json(&AuthOk {
        action: "auth",
        success: true,
        user_id,
        tenant_id,
    })
}

#[derive(Serialize)]
struct AuthErr<'a> {
    action: &'static str,
    success: bool,
    error: ErrorBody<'a>,
}

/// `{"action":"auth","success":false,"error":{"code":C,"message":M}}`.
pub fn auth_failure(code: ErrorCode, message: &str) -> String {
    to_json(&AuthErr {
        action: "auth",
        success: false,
        error: ErrorBody {
            code,
            message: clip(message, MAX_ERROR_MESSAGE_CHARS),
        },
    })
}

/// `{"action":"pong","timestamp":"2026-11-26T12:00:00.000Z"}`.
pub fn pong(now: chrono::DateTime<chrono::Utc>) -> String {
    let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    to_json(&serde_json::json!({ "action": "pong", "timestamp": ts }))
}

/// Serializes a reply value; `Value::Null` means "no reply".
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Serializing our own frame types (strings, bools, maps with string keys) cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| String::from("{}"))
}
