//! Kept claims: what a connection keeps from its token at `auth`.
//!
//! The auth guard reads only the connection record, never the token again, so everything a
//! policy or a handler needs from the token is copied onto the record at `auth`: the roles
//! claim (`VK_WS_ROLES_CLAIM`, default `roles`), the scope claims (`scope`, `scp`) and every
//! claim named in `VK_WS_KEEP_CLAIMS`, verbatim. They are stored in the record's `claims`
//! attribute (a DynamoDB map) and limited to [`MAX_KEPT_CLAIMS_BYTES`] in total.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most bytes the kept claims may take, serialized as JSON. A token whose kept claims are
/// larger fails `auth` with `invalid_token`.
pub const MAX_KEPT_CLAIMS_BYTES: usize = 2048;

/// Claims kept from a connection's token (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Claims(Map<String, Value>);

impl Claims {
    /// Claims from a JSON object.
    pub fn new(map: Map<String, Value>) -> Self {
        Claims(map)
    }

    /// Whether no claim was kept.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One claim, verbatim.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// All kept claims.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// A claim read as a list of strings: a string is a list of one, an array contributes
    /// its string items; anything else is empty.
    pub fn strings(&self, name: &str) -> Vec<&str> {
        match self.0.get(name) {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the claim `name` (a string, or an array of strings) holds any of `wanted`,
    /// without allocating.
    pub fn holds_any(&self, name: &str, wanted: &[&str]) -> bool {
        match self.0.get(name) {
            Some(Value::String(s)) => wanted.contains(&s.as_str()),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .any(|s| wanted.contains(&s)),
            _ => false,
        }
    }

    /// The OAuth scopes: `scope` (space-separated string) and `scp` (array, or string).
    pub fn scopes(&self) -> Vec<&str> {
        let mut scopes: Vec<&str> = match self.0.get("scope") {
            Some(Value::String(s)) => s.split_whitespace().collect(),
            _ => Vec::new(),
        };
        match self.0.get("scp") {
            Some(Value::String(s)) => scopes.extend(s.split_whitespace()),
            Some(Value::Array(items)) => scopes.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
        scopes
    }

    /// The size of the claims serialized as JSON.
    pub fn json_len(&self) -> usize {
        serde_json::to_string(&self.0)
            .map(|s| s.len())
            .unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::Claims;
    use serde_json::json;

    #[test]
    fn roles_and_scopes_in_every_shape() {
        let c = |v: serde_json::Value| Claims::new(v.as_object().cloned().unwrap_or_default());
        assert_eq!(c(json!({"roles": "admin"})).strings("roles"), ["admin"]);
        assert_eq!(
            c(json!({"roles": ["a", 1, "b"]})).strings("roles"),
            ["a", "b"]
        );
        assert!(c(json!({"roles": 5})).strings("roles").is_empty());
        assert_eq!(
            c(json!({"scope": "chat:read  chat:write", "scp": ["x"]})).scopes(),
            ["chat:read", "chat:write", "x"]
        );
        assert_eq!(c(json!({"scp": "a b"})).scopes(), ["a", "b"]);
        assert_eq!(c(json!({"a": 1})).json_len(), 7);
    }
}
