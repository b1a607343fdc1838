//! The contract of an app, and its AsyncAPI document and JSON Schema files.

use super::builtin;
use super::{ReplySchema, SchemaGen, Schemas};
use crate::action::ActionDef;
use serde_json::{Map, Value, json};
use std::path::Path;

/// The schema of `ref`: a string of 1-64 characters from `[A-Za-z0-9._:-]`, or a
/// non-negative integer up to 2^53-1.
pub fn ref_schema() -> Value {
    json!({
        "description": "Correlates a message with its one terminal reply.",
        "oneOf": [
            {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9._:-]+$"},
            {"type": "integer", "minimum": 0, "maximum": crate::protocol::MAX_REF_INTEGER}
        ]
    })
}

/// One action a client can send: who may call it, its message and its terminal reply.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ActionContract {
    /// The `action` value.
    pub name: String,
    /// Runs without authentication.
    pub public: bool,
    /// Roles of which the caller needs one.
    pub roles: Vec<String>,
    /// Scopes the caller needs, all of them.
    pub scopes: Vec<String>,
    /// The whole message as sent (with `action` and the optional `ref`).
    pub message: Value,
    /// The terminal reply to a message that carried `ref` (errors are `error` frames).
    pub reply: Value,
    /// Whether the message and reply types were known (they derive `JsonSchema`).
    pub typed: bool,
    /// A framework action (`auth`, `ping`, `vk:join`, `vk:leave`).
    pub builtin: bool,
}

/// A frame the server pushes (not a reply): the app's own, the `error` frame, presence.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PushContract {
    /// Its `action` value.
    pub name: String,
    /// Its schema.
    pub schema: Value,
    /// Described by the framework.
    pub builtin: bool,
}

/// Everything a client can send and receive.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Contract {
    /// The app's name.
    pub title: String,
    /// The app's version.
    pub version: String,
    /// Every action, the framework's first, then the app's by name.
    pub actions: Vec<ActionContract>,
    /// Every pushed frame.
    pub pushes: Vec<PushContract>,
}

/// Adds `action` (a constant) and `ref` to a message schema. A schema that is not an
/// object schema (or unknown) becomes "any object with this action".
fn with_envelope(name: &str, schema: Option<Value>) -> Value {
    let mut schema = match schema {
        Some(Value::Object(object))
            if object.contains_key("properties")
                || object.get("type") == Some(&Value::String("object".into())) =>
        {
            object
        }
        Some(Value::Object(mut object))
            if object.contains_key("oneOf") || object.contains_key("anyOf") =>
        {
            for key in ["oneOf", "anyOf"] {
                if let Some(Value::Array(branches)) = object.get_mut(key) {
                    for branch in branches.iter_mut() {
                        *branch = with_envelope(name, Some(branch.take()));
                    }
                }
            }
            return Value::Object(object);
        }
        _ => {
            let mut object = Map::new();
            object.insert("type".into(), "object".into());
            object
        }
    };
    schema.insert("type".into(), "object".into());
    let properties = schema
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(properties) = properties {
        let mut with = Map::new();
        with.insert("action".into(), json!({"const": name}));
        with.insert("ref".into(), ref_schema());
        with.extend(std::mem::take(properties));
        *properties = with;
    }
    let required = schema
        .entry("required")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(required) = required {
        required.insert(0, "action".into());
    }
    Value::Object(schema)
}

/// The terminal reply to a message with `ref`, as the dispatcher shapes it.
fn reply_with_ref(name: &str, reply: &ReplySchema) -> Value {
    let envelope = |key: &str, value: Value| {
        json!({
            "type": "object",
            "properties": {"action": {"const": name}, "ref": ref_schema(), key: value},
            "required": ["action", "ref", key]
        })
    };
    match reply {
        ReplySchema::Unknown => {
            json!({"description": "not described (the reply type does not derive JsonSchema)"})
        }
        ReplySchema::Nothing => envelope("ok", json!({"const": true})),
        // Any JSON (`serde_json::Value`): mostly an object, with `ref` merged in; the
        // `{"action","ref","data"}` wrapper of other values fits the same shape.
        ReplySchema::Value(schema) if is_any(schema) => json!({
            "type": "object",
            "properties": {"ref": ref_schema()},
            "required": ["ref"],
            "additionalProperties": true
        }),
        ReplySchema::Value(schema) if schema.get("properties").is_some() => {
            let mut schema = schema.clone();
            if let Some(Value::Object(properties)) = schema.get_mut("properties") {
                properties.insert("ref".into(), ref_schema());
            }
            if let Value::Object(object) = &mut schema {
                let required = object
                    .entry("required")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(required) = required {
                    required.push("ref".into());
                }
            }
            schema
        }
        ReplySchema::Value(schema) => envelope("data", schema.clone()),
    }
}

/// Whether `schema` accepts any value (`true`, or no constraining keyword).
fn is_any(schema: &Value) -> bool {
    match schema {
        Value::Bool(true) => true,
        Value::Object(object) => object
            .keys()
            .all(|k| matches!(k.as_str(), "title" | "description" | "$schema")),
        _ => false,
    }
}

fn builtin_action(name: &str, message: Value, reply: Value) -> ActionContract {
    ActionContract {
        name: name.into(),
        public: true,
        roles: Vec::new(),
        scopes: Vec::new(),
        message,
        reply,
        typed: true,
        builtin: true,
    }
}

impl Contract {
    /// The contract of `actions`, with the topic frames when `topics`, and the app's
    /// pushed frames.
    pub(crate) fn build(
        title: &str,
        version: &str,
        actions: &[ActionDef],
        topics: bool,
        pushes: Vec<(String, Value)>,
    ) -> Contract {
        let mut generator = SchemaGen::new();
        let mut list = vec![
            builtin_action("auth", builtin::auth_message(), builtin::auth_reply()),
            builtin_action("ping", builtin::ping_message(), builtin::pong_reply()),
        ];
        if topics {
            list.push(builtin_action(
                "vk:join",
                builtin::join_message(),
                builtin::topic_ack("vk:join"),
            ));
            // `vk:join`'s ack is protected like the action itself: the guard applies.
            list.push(builtin_action(
                "vk:leave",
                builtin::leave_message(),
                builtin::topic_ack("vk:leave"),
            ));
            for action in list.iter_mut().skip(2) {
                action.public = false;
            }
        }
        let mut mine: Vec<&ActionDef> = actions
            .iter()
            .filter(|a| !a.name().starts_with(crate::action::RESERVED_PREFIX))
            .collect();
        mine.sort_by_key(|a| a.name());
        for def in mine {
            let Schemas {
                message,
                takes_message,
                reply,
                ..
            } = def.schemas(&mut generator);
            let typed = (message.is_some() || !takes_message) && reply != ReplySchema::Unknown;
            list.push(ActionContract {
                name: def.name().into(),
                public: def.is_public(),
                roles: def.roles().iter().map(|r| (*r).to_owned()).collect(),
                scopes: def.scopes().iter().map(|s| (*s).to_owned()).collect(),
                message: with_envelope(def.name(), message),
                reply: reply_with_ref(def.name(), &reply),
                typed,
                builtin: false,
            });
        }
        let mut frames = vec![PushContract {
            name: "error".into(),
            schema: builtin::error_frame(),
            builtin: true,
        }];
        if topics {
            frames.extend(
                builtin::presence_frames()
                    .into_iter()
                    .map(|(name, schema)| PushContract {
                        name: name.into(),
                        schema,
                        builtin: true,
                    }),
            );
        }
        let mut pushes = pushes;
        pushes.sort_by(|a, b| a.0.cmp(&b.0));
        frames.extend(pushes.into_iter().map(|(name, schema)| PushContract {
            name,
            schema,
            builtin: false,
        }));
        Contract {
            title: title.into(),
            version: version.into(),
            actions: list,
            pushes: frames,
        }
    }

    /// An example message of each action, from its schema (required fields, placeholder
    /// values), for the dev console's action picker.
    pub fn examples(&self) -> Vec<(String, Value)> {
        self.actions
            .iter()
            .map(|a| (a.name.clone(), example(&a.message, 0)))
            .collect()
    }

    /// The action named `name`.
    pub fn action(&self, name: &str) -> Option<&ActionContract> {
        self.actions.iter().find(|a| a.name == name)
    }

    /// The pushed frame named `name`.
    pub fn push(&self, name: &str) -> Option<&PushContract> {
        self.pushes.iter().find(|p| p.name == name)
    }

    /// The AsyncAPI 3.0.0 document. Operations are the client's: one `send` operation per
    /// action, with its reply (or an `error` frame), and one `receive` operation per pushed
    /// frame. `ref` is the correlation id.
    pub fn asyncapi(&self) -> Value {
        let mut messages = Map::new();
        let mut channel_messages = Map::new();
        let mut operations = Map::new();
        let reference = |key: &str| json!({"$ref": format!("#/channels/socket/messages/{key}")});
        let mut add_message = |key: String, name: &str, title: String, payload: &Value| {
            let mut payload = payload.clone();
            if let Some(object) = payload.as_object_mut() {
                object.remove("title");
            }
            messages.insert(
                key.clone(),
                json!({
                    "name": name,
                    "title": title,
                    "contentType": "application/json",
                    "correlationId": {"$ref": "#/components/correlationIds/ref"},
                    "payload": payload
                }),
            );
            channel_messages.insert(
                key.clone(),
                json!({"$ref": format!("#/components/messages/{key}")}),
            );
        };
        for action in &self.actions {
            let key = key_of(&action.name);
            add_message(
                format!("{key}.message"),
                &action.name,
                format!("{} (client message)", action.name),
                &action.message,
            );
            add_message(
                format!("{key}.reply"),
                &action.name,
                format!("{} (reply)", action.name),
                &action.reply,
            );
        }
        for push in &self.pushes {
            let key = key_of(&push.name);
            add_message(
                format!("{key}.push"),
                &push.name,
                format!("{} (server frame)", push.name),
                &push.schema,
            );
        }
        for action in &self.actions {
            let key = key_of(&action.name);
            let mut operation = json!({
                "action": "send",
                "title": action.name,
                "summary": summary(action),
                "channel": {"$ref": "#/channels/socket"},
                "messages": [reference(&format!("{key}.message"))],
                "reply": {
                    "channel": {"$ref": "#/channels/socket"},
                    "messages": [reference(&format!("{key}.reply")), reference("error.push")]
                },
                "x-vk-auth": {
                    "authenticated": !action.public,
                    "roles": action.roles,
                    "scopes": action.scopes
                }
            });
            if !action.public {
                operation["security"] = json!([{"$ref": "#/components/securitySchemes/jwt"}]);
            }
            operations.insert(format!("send.{key}"), operation);
        }
        for push in &self.pushes {
            let key = key_of(&push.name);
            operations.insert(
                format!("receive.{key}"),
                json!({
                    "action": "receive",
                    "title": push.name,
                    "channel": {"$ref": "#/channels/socket"},
                    "messages": [reference(&format!("{key}.push"))]
                }),
            );
        }
        json!({
            "asyncapi": "3.0.0",
            "info": {
                "title": self.title,
                "version": self.version,
                "description": "WebSocket API served by venturekit-ws on AWS API Gateway. Operations are the client's: `send` operations are the actions a client sends, each with its one terminal reply when the message carries `ref` (or an `error` frame); `receive` operations are the frames the server pushes. Guarded actions need a connection authenticated in-band with `{\"action\":\"auth\",\"token\":\"<jwt>\"}` first; `x-vk-auth` lists the roles (any one) and scopes (all) an action needs."
            },
            "defaultContentType": "application/json",
            "channels": {
                "socket": {
                    "address": "/",
                    "title": "The WebSocket connection",
                    "description": "Every frame is a JSON object whose `action` field selects the handler.",
                    "messages": channel_messages
                }
            },
            "operations": operations,
            "components": {
                "messages": messages,
                "correlationIds": {
                    "ref": {
                        "description": "The `ref` a client puts on a message comes back on its one terminal reply.",
                        "location": "$message.payload#/ref"
                    }
                },
                "securitySchemes": {
                    "jwt": {
                        "type": "http",
                        "scheme": "bearer",
                        "bearerFormat": "JWT",
                        "description": "Sent in-band after connecting: {\"action\":\"auth\",\"token\":\"<jwt>\"}, never in the URL."
                    }
                }
            }
        })
    }

    /// The JSON Schema files (name → schema): `<action>.message.json`,
    /// `<action>.reply.json`, and `<frame>.push.json` for pushed frames (`:` becomes `_`).
    pub fn schema_files(&self) -> Vec<(String, Value)> {
        let standalone = |title: String, schema: &Value| {
            let mut schema = schema.clone();
            if let Some(object) = schema.as_object_mut() {
                let mut with = Map::new();
                with.insert(
                    "$schema".into(),
                    "http://json-schema.org/draft-07/schema#".into(),
                );
                with.insert("title".into(), Value::String(title));
                object.remove("title");
                with.extend(std::mem::take(object));
                *object = with;
            }
            schema
        };
        let mut files = Vec::new();
        for action in &self.actions {
            let key = key_of(&action.name);
            files.push((
                format!("{key}.message.json"),
                standalone(format!("{} (client message)", action.name), &action.message),
            ));
            files.push((
                format!("{key}.reply.json"),
                standalone(format!("{} (reply)", action.name), &action.reply),
            ));
        }
        for push in &self.pushes {
            files.push((
                format!("{}.push.json", key_of(&push.name)),
                standalone(format!("{} (server frame)", push.name), &push.schema),
            ));
        }
        files
    }

    /// Writes `asyncapi.json`, `schemas/` and `client.ts` into `dir` (created if needed);
    /// returns the files written, relative to `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        let schemas = dir.join("schemas");
        std::fs::create_dir_all(&schemas)?;
        // Stale schemas of removed actions would linger: the folder is ours.
        for entry in std::fs::read_dir(&schemas)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                std::fs::remove_file(path)?;
            }
        }
        let mut written = Vec::new();
        std::fs::write(dir.join("asyncapi.json"), pretty(&self.asyncapi()))?;
        written.push("asyncapi.json".to_owned());
        for (name, schema) in self.schema_files() {
            std::fs::write(schemas.join(&name), pretty(&schema))?;
            written.push(format!("schemas/{name}"));
        }
        std::fs::write(dir.join("client.ts"), self.typescript())?;
        written.push("client.ts".to_owned());
        Ok(written)
    }
}

/// A value fitting `schema`: constants, the first of an enum or union, placeholders by type,
/// and only the required fields of objects.
fn example(schema: &Value, depth: usize) -> Value {
    let Value::Object(object) = schema else {
        return Value::Null;
    };
    if depth > 8 {
        return Value::Null;
    }
    if let Some(value) = object.get("const") {
        return value.clone();
    }
    if let Some(first) = object.get("enum").and_then(|e| e.get(0)) {
        return first.clone();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(first) = object.get(key).and_then(|b| b.get(0)) {
            return example(first, depth + 1);
        }
    }
    let kind = match object.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types.first().and_then(Value::as_str).unwrap_or(""),
        _ if object.contains_key("properties") => "object",
        _ => "",
    };
    match kind {
        "object" => {
            let required: Vec<&str> = object
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut out = Map::new();
            if let Some(Value::Object(properties)) = object.get("properties") {
                for (name, property) in properties {
                    if required.contains(&name.as_str()) {
                        out.insert(name.clone(), example(property, depth + 1));
                    }
                }
            }
            Value::Object(out)
        }
        "string" => Value::String("text".into()),
        "integer" | "number" => json!(0),
        "boolean" => Value::Bool(false),
        "array" => json!([]),
        "null" => Value::Null,
        // Any JSON.
        _ => Value::String("any JSON".into()),
    }
}

/// A message or operation key: AsyncAPI keys allow `[A-Za-z0-9._-]`.
pub(super) fn key_of(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn summary(action: &ActionContract) -> String {
    let mut who = if action.public {
        "Any connection".to_owned()
    } else {
        "Authenticated connections".to_owned()
    };
    if !action.roles.is_empty() {
        who.push_str(&format!(" holding a role of: {}", action.roles.join(", ")));
    }
    if !action.scopes.is_empty() {
        who.push_str(&format!(
            "{} the scopes {}",
            if action.roles.is_empty() {
                " with"
            } else {
                ", with"
            },
            action.scopes.join(" ")
        ));
    }
    who.push('.');
    who
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}
