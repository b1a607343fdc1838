//! The framework's own frames, described by hand: `auth`, `ping`/`pong`, `error` with every
//! code, and the topic frames (`vk:join`, `vk:leave`, presence).

use super::document::ref_schema;
use crate::protocol::ErrorCode;
use serde_json::{Value, json};

/// Every wire error code.
pub(super) const ERROR_CODES: [ErrorCode; 10] = [
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::BadRequest,
    ErrorCode::UnknownAction,
    ErrorCode::PayloadTooLarge,
    ErrorCode::RateLimited,
    ErrorCode::Internal,
    ErrorCode::InvalidToken,
    ErrorCode::TokenExpired,
    ErrorCode::ForbiddenTenant,
];

fn codes() -> Value {
    Value::Array(
        ERROR_CODES
            .iter()
            .map(|c| Value::String(c.as_str().into()))
            .collect(),
    )
}

fn error_body() -> Value {
    json!({
        "type": "object",
        "properties": {
            "code": {"type": "string", "enum": codes()},
            "message": {"type": "string", "maxLength": 1024}
        },
        "required": ["code", "message"]
    })
}

/// `{"action":"error","requestAction":A,"ref"?,"error":{"code","message"}}`.
pub(super) fn error_frame() -> Value {
    json!({
        "title": "error",
        "description": "A refused or failed message. Carries `ref` when the message had a well-formed one.",
        "type": "object",
        "properties": {
            "action": {"const": "error"},
            "requestAction": {"type": ["string", "null"]},
            "ref": ref_schema(),
            "error": error_body()
        },
        "required": ["action", "error"]
    })
}

/// The `auth` message.
pub(super) fn auth_message() -> Value {
    json!({
        "title": "auth",
        "description": "Authenticates the connection with a JWT (`sub` is the user id).",
        "type": "object",
        "properties": {
            "action": {"const": "auth"},
            "ref": ref_schema(),
            "token": {"type": "string", "minLength": 1},
            "tenantId": {"type": "string", "minLength": 1}
        },
        "required": ["action", "token"]
    })
}

/// The `auth` reply: a success or a failure.
pub(super) fn auth_reply() -> Value {
    json!({
        "title": "auth reply",
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "action": {"const": "auth"},
                    "ref": ref_schema(),
                    "success": {"const": true},
                    "userId": {"type": "string"},
                    "tenantId": {"type": "string"}
                },
                "required": ["action", "success", "userId"]
            },
            {
                "type": "object",
                "properties": {
                    "action": {"const": "auth"},
                    "ref": ref_schema(),
                    "success": {"const": false},
                    "error": error_body()
                },
                "required": ["action", "success", "error"]
            }
        ]
    })
}

pub(super) fn ping_message() -> Value {
    json!({
        "title": "ping",
        "description": "Keeps the connection alive (API Gateway closes idle connections after 10 minutes); allowed before `auth`.",
        "type": "object",
        "properties": {"action": {"const": "ping"}, "ref": ref_schema()},
        "required": ["action"]
    })
}

pub(super) fn pong_reply() -> Value {
    json!({
        "title": "pong",
        "type": "object",
        "properties": {
            "action": {"const": "pong"},
            "ref": ref_schema(),
            "timestamp": {"type": "string", "format": "date-time"}
        },
        "required": ["action", "timestamp"]
    })
}

fn topic_name() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9._:/-]+$"})
}

pub(super) fn join_message() -> Value {
    json!({
        "title": "vk:join",
        "description": "Joins a topic of the caller's tenant (only topics the app opens to clients), with presence metadata.",
        "type": "object",
        "properties": {
            "action": {"const": "vk:join"},
            "ref": ref_schema(),
            "topic": topic_name(),
            "meta": {"type": "object"}
        },
        "required": ["action", "topic"]
    })
}

pub(super) fn leave_message() -> Value {
    json!({
        "title": "vk:leave",
        "description": "Leaves a topic.",
        "type": "object",
        "properties": {"action": {"const": "vk:leave"}, "ref": ref_schema(), "topic": topic_name()},
        "required": ["action", "topic"]
    })
}

pub(super) fn topic_ack(action: &str) -> Value {
    json!({
        "title": format!("{action} reply"),
        "type": "object",
        "properties": {
            "action": {"const": action},
            "ref": ref_schema(),
            "topic": {"type": "string"},
            "ok": {"const": true}
        },
        "required": ["action", "topic", "ok"]
    })
}

fn presences() -> Value {
    json!({
        "type": "object",
        "description": "By user id: that user's connections in the topic, each with its metadata.",
        "additionalProperties": {
            "type": "object",
            "properties": {
                "metas": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "connectionId": {"type": "string"},
                            "joinedAt": {"type": "integer"}
                        },
                        "required": ["connectionId", "joinedAt"],
                        "additionalProperties": true
                    }
                }
            },
            "required": ["metas"]
        }
    })
}

/// The presence frames the server pushes.
pub(super) fn presence_frames() -> Vec<(&'static str, Value)> {
    vec![
        (
            "vk:presence_state",
            json!({
                "title": "vk:presence_state",
                "description": "Who is in the topic, sent to a connection that joins a presence topic.",
                "type": "object",
                "properties": {
                    "action": {"const": "vk:presence_state"},
                    "topic": {"type": "string"},
                    "presences": presences()
                },
                "required": ["action", "topic", "presences"]
            }),
        ),
        (
            "vk:presence_diff",
            json!({
                "title": "vk:presence_diff",
                "description": "Who joined and who left, sent to every member of a presence topic.",
                "type": "object",
                "properties": {
                    "action": {"const": "vk:presence_diff"},
                    "topic": {"type": "string"},
                    "joins": presences(),
                    "leaves": presences()
                },
                "required": ["action", "topic", "joins", "leaves"]
            }),
        ),
        (
            "vk:presence_count",
            json!({
                "title": "vk:presence_count",
                "description": "The member count, instead of state and diffs, in topics above the presence limit.",
                "type": "object",
                "properties": {
                    "action": {"const": "vk:presence_count"},
                    "topic": {"type": "string"},
                    "count": {"type": "integer", "minimum": 0}
                },
                "required": ["action", "topic", "count"]
            }),
        ),
    ]
}
