//! The wire protocol: the exact JSON shapes of every frame the framework sends.
//!
//! Every frame the framework itself sends is built here, so the shapes live in one place.

use serde::Serialize;

/// A client's `ref`: a string of 1–64 characters from `[A-Za-z0-9._:-]`, or a non-negative
/// integer up to 2^53−1. Echoed with the same JSON type on the one terminal reply to that
/// message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    /// A string `ref` (its characters never need escaping in JSON).
    Text(Box<str>),
    /// An integer `ref`.
    Number(u64),
}

/// Largest integer `ref` (2^53 − 1, exact in every JSON implementation).
pub const MAX_REF_INTEGER: u64 = (1 << 53) - 1;

const REF_RULE: &str = "`ref` must be a string of 1-64 characters from [A-Za-z0-9._:-] or a non-negative integer up to 2^53-1";

impl Ref {
    /// Checks a string `ref`; the error is client-facing.
    pub fn text(s: &str) -> Result<Ref, String> {
        let valid = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if valid {
            Ok(Ref::Text(s.into()))
        } else {
            Err(REF_RULE.to_owned())
        }
    }

    /// Checks an integer `ref`.
    pub fn number(n: u64) -> Result<Ref, String> {
        if n <= MAX_REF_INTEGER {
            Ok(Ref::Number(n))
        } else {
            Err(REF_RULE.to_owned())
        }
    }

    /// The `ref` as JSON text (`"7"` or `8`).
    pub fn as_json(&self) -> String {
        match self {
            // The allowed characters never need escaping.
            Ref::Text(s) => format!("\"{s}\""),
            Ref::Number(n) => n.to_string(),
        }
    }
}

impl Serialize for Ref {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Ref::Text(s) => serializer.serialize_str(s),
            Ref::Number(n) => serializer.serialize_u64(*n),
        }
    }
}

/// Reads a `ref` straight from the message (no intermediate `Value`): `Ok(Err(why))` for
/// an ill-formed one.
pub(crate) struct RefField(pub(crate) Result<Ref, String>);

impl<'de> serde::Deserialize<'de> for RefField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RefField;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a ref")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RefField, E> {
                Ok(RefField(Ref::text(v)))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RefField, E> {
                Ok(RefField(Ref::number(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<RefField, E> {
                Ok(RefField(Err(REF_RULE.to_owned())))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<RefField, E> {
                Ok(RefField(Err(REF_RULE.to_owned())))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<RefField, E> {
                Ok(RefField(Err(REF_RULE.to_owned())))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<RefField, E> {
                Ok(RefField(Err(REF_RULE.to_owned())))
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<RefField, E> {
                Ok(RefField(Err(REF_RULE.to_owned())))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RefField, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(RefField(Err(REF_RULE.to_owned())))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RefField, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(RefField(Err(REF_RULE.to_owned())))
            }
        }
        d.deserialize_any(V)
    }
}

/// API Gateway's maximum WebSocket message size (128 KB).
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// The `code` of an error reply (`{"action":"error",…}` or a failed `auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
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
    /// The caller is authenticated but not allowed (a role, scope or app-wide rule).
    Forbidden,
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
            ErrorCode::Forbidden => "forbidden",
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
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a Ref>,
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
    error_frame_ref(request_action, None, code, message)
}

/// [`error_frame`] answering a message that carried `ref`.
pub fn error_frame_ref(
    request_action: Option<&str>,
    reference: Option<&Ref>,
    code: ErrorCode,
    message: &str,
) -> String {
    to_json(&ErrorFrame {
        action: "error",
        request_action: request_action.map(|a| clip(a, MAX_ECHOED_ACTION_CHARS)),
        reference,
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
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a Ref>,
    success: bool,
    user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_id: Option<&'a str>,
}

/// `{"action":"auth","success":true,"userId":…}` (+ `"tenantId"` when joined).
pub fn auth_success(user_id: &str, tenant_id: Option<&str>, reference: Option<&Ref>) -> String {
    to_json(&AuthOk {
        action: "auth",
        reference,
        success: true,
        user_id,
        tenant_id,
    })
}

#[derive(Serialize)]
struct AuthErr<'a> {
    action: &'static str,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a Ref>,
    success: bool,
    error: ErrorBody<'a>,
}

/// `{"action":"auth","success":false,"error":{"code":C,"message":M}}`.
pub fn auth_failure(code: ErrorCode, message: &str, reference: Option<&Ref>) -> String {
    to_json(&AuthErr {
        action: "auth",
        reference,
        success: false,
        error: ErrorBody {
            code,
            message: clip(message, MAX_ERROR_MESSAGE_CHARS),
        },
    })
}

#[derive(Serialize)]
struct Pong<'a> {
    action: &'static str,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a Ref>,
    timestamp: String,
}

/// `{"action":"pong","timestamp":"2026-11-26T12:00:00.000Z"}` (+ `"ref"` after `action`).
pub fn pong(now: chrono::DateTime<chrono::Utc>, reference: Option<&Ref>) -> String {
    to_json(&Pong {
        action: "pong",
        reference,
        timestamp: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// The one terminal reply to an action's message that carried `ref`:
/// - no reply (a `()` handler, or `null`): `{"action":A,"ref":R,"ok":true}`;
/// - an object: the object with `"ref"` merged in (right after `action` when that comes
///   first);
/// - anything else: `{"action":A,"ref":R,"data":<value>}`.
///
/// Without `ref` the reply is returned unchanged.
pub fn with_ref(action: &str, reply: Option<String>, reference: Option<&Ref>) -> Option<String> {
    let Some(reference) = reference else {
        return reply;
    };
    let extra = 96 + action.len();
    let mut out = String::with_capacity(reply.as_ref().map_or(0, String::len) + extra);
    let push_ref = |out: &mut String| {
        out.push_str("\"ref\":");
        match reference {
            // The allowed characters never need escaping.
            Ref::Text(s) => {
                out.push('"');
                out.push_str(s);
                out.push('"');
            }
            Ref::Number(n) => {
                use std::fmt::Write;
                let _ = write!(out, "{n}");
            }
        }
    };
    let head = |out: &mut String| {
        out.push_str("{\"action\":");
        out.push_str(&to_json(action));
        out.push(',');
        push_ref(out);
    };
    match reply {
        None => {
            head(&mut out);
            out.push_str(",\"ok\":true}");
        }
        Some(text) if text == "{}" => {
            out.push('{');
            push_ref(&mut out);
            out.push('}');
        }
        Some(text) if text.starts_with('{') => match end_of_leading_action(&text) {
            Some(end) => {
                out.push_str(&text[..end]);
                out.push(',');
                push_ref(&mut out);
                out.push_str(&text[end..]);
            }
            None => {
                out.push('{');
                push_ref(&mut out);
                out.push(',');
                out.push_str(&text[1..]);
            }
        },
        Some(text) => {
            head(&mut out);
            out.push_str(",\"data\":");
            out.push_str(&text);
            out.push('}');
        }
    }
    Some(out)
}

/// In compact JSON that starts with `{"action":"…"`, the index just past that string value.
fn end_of_leading_action(text: &str) -> Option<usize> {
    const PREFIX: &str = r#"{"action":""#;
    let rest = text.strip_prefix(PREFIX)?.as_bytes();
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            b'\\' => i += 2,
            b'"' => return Some(PREFIX.len() + i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Serializes a reply value; `Value::Null` means "no reply".
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Serializing our own frame types (strings, bools, maps with string keys) cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| String::from("{}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(v: serde_json::Value) -> Ref {
        match v {
            serde_json::Value::String(s) => Ref::text(&s).unwrap(),
            other => Ref::number(other.as_u64().unwrap()).unwrap(),
        }
    }

    #[test]
    fn replies_carry_the_ref_with_its_json_type() {
        let s = r(json!("7"));
        let n = r(json!(8));
        let merged = |reply: Option<&str>, r: &Ref| {
            serde_json::from_str::<serde_json::Value>(
                &with_ref("send", reply.map(String::from), Some(r)).unwrap(),
            )
            .unwrap()
        };
        assert_eq!(
            with_ref(
                "send",
                Some(r#"{"action":"send","delivered":2}"#.into()),
                Some(&s)
            ),
            Some(r#"{"action":"send","ref":"7","delivered":2}"#.into())
        );
        assert_eq!(merged(None, &n), json!({"action":"send","ref":8,"ok":true}));
        assert_eq!(
            merged(Some(r#""x""#), &s),
            json!({"action":"send","ref":"7","data":"x"})
        );
        assert_eq!(
            merged(Some("[1]"), &n),
            json!({"action":"send","ref":8,"data":[1]})
        );
        assert_eq!(merged(Some("{}"), &n), json!({"ref":8}));
        assert_eq!(merged(Some(r#"{"n":1}"#), &n), json!({"ref":8,"n":1}));
        assert_eq!(
            merged(Some(r#"{"action":"a\"b","n":1}"#), &n),
            json!({"action":"a\"b","ref":8,"n":1})
        );
        assert_eq!(with_ref("send", None, None), None);
        assert_eq!(
            pong(chrono::DateTime::UNIX_EPOCH, Some(&n)),
            r#"{"action":"pong","ref":8,"timestamp":"1970-01-01T00:00:00.000Z"}"#
        );
        assert_eq!(
            error_frame_ref(Some("send"), Some(&s), ErrorCode::BadRequest, "m"),
            r#"{"action":"error","requestAction":"send","ref":"7","error":{"code":"bad_request","message":"m"}}"#
        );
        assert_eq!(
            auth_success("alice", None, Some(&s)),
            r#"{"action":"auth","ref":"7","success":true,"userId":"alice"}"#
        );
    }
}
