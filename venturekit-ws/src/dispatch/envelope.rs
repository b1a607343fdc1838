//! Reading the envelope — the route selection field (`action`) and `ref` — without
//! deserializing the rest.

use crate::protocol::{Ref, RefField};
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

/// The framework's fields of a message. Each is checked on its own, so an error about one
/// can still name (or carry) the other.
#[derive(Debug, PartialEq)]
pub(super) struct Envelope {
    /// The action name, or why there is none.
    pub(super) action: Result<String, String>,
    /// The `ref`, if any, or why it is ill-formed.
    pub(super) reference: Result<Option<Ref>, String>,
}

/// Reads the route selection field (`action` by default) and `ref` from a message without
/// deserializing the rest. An `Err` means the body is not a JSON object at all. Errors are
/// client-facing.
pub(super) fn envelope(body: &str, field: &str) -> Result<Envelope, String> {
    if body.trim().is_empty() {
        return Err(format!(
            "empty message: send a JSON object with an `{field}`"
        ));
    }
    let mut de = serde_json::Deserializer::from_str(body);
    let envelope =
        de::Deserializer::deserialize_any(&mut de, EnvelopeVisitor { field }).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                format!("message is not valid JSON: {e}")
            } else {
                e.to_string()
            }
        })?;
    de.end()
        .map_err(|e| format!("message is not valid JSON: {e}"))?;
    envelope
}

struct EnvelopeVisitor<'f> {
    field: &'f str,
}

impl<'de> Visitor<'de> for EnvelopeVisitor<'_> {
    type Value = Result<Envelope, String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut action: Option<Result<String, String>> = None;
        let mut reference: Option<Result<Option<Ref>, String>> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.field {
                if action.is_some() {
                    return Err(de::Error::custom(format!(
                        "duplicate `{}` field",
                        self.field
                    )));
                }
                let value: serde_json::Value = map.next_value()?;
                action = Some(match value {
                    serde_json::Value::String(s) => Ok(s),
                    _ => Err(format!("`{}` must be a string", self.field)),
                });
            } else if key == "ref" {
                if reference.is_some() {
                    return Err(de::Error::custom("duplicate `ref` field"));
                }
                let RefField(parsed) = map.next_value()?;
                reference = Some(parsed.map(Some));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Ok(Envelope {
            action: action.unwrap_or_else(|| Err(format!("missing `{}`", self.field))),
            reference: reference.unwrap_or(Ok(None)),
        }))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(not_object(self.field)))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(not_object(self.field)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(not_object(self.field)))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(not_object(self.field)))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(not_object(self.field)))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(not_object(self.field)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(not_object(self.field)))
    }
}

fn not_object(field: &str) -> String {
    format!("message must be a JSON object with an `{field}`")
}
#[cfg(test)]
mod tests {
    use super::envelope;

    fn action(body: &str, field: &str) -> Result<String, String> {
        envelope(body, field)?.action
    }

    #[test]
    fn envelope_reads_only_the_action() {
        assert_eq!(
            action(r#"{"action":"send","to":"x"}"#, "action"),
            Ok("send".into())
        );
        assert_eq!(
            action(r#"{"to":{"deep":[1,2]},"action":"a"}"#, "action"),
            Ok("a".into())
        );
        assert_eq!(
            action(r#"{"action":5}"#, "action"),
            Err("`action` must be a string".into())
        );
        assert_eq!(
            action(r#"{"x":1}"#, "action"),
            Err("missing `action`".into())
        );
        let error = |body| action(body, "action").unwrap_err();
        assert!(error("[1,2]").contains("JSON object"));
        assert!(error("\"hi\"").contains("JSON object"));
        assert!(error("{nope").contains("not valid JSON"));
        assert!(error("{} x").contains("not valid JSON"));
        assert!(error(r#"{"action":"a","action":"b"}"#).contains("duplicate"));
        assert!(error("").contains("empty"));
        // `$request.body.type`
        assert_eq!(action(r#"{"type":"send"}"#, "type"), Ok("send".into()));
        assert_eq!(
            action(r#"{"action":"send"}"#, "type"),
            Err("missing `type`".into())
        );
    }

    #[test]
    fn envelope_reads_and_checks_the_ref() {
        let reference = |body: &str| {
            envelope(body, "action")
                .unwrap()
                .reference
                .map(|r| r.map(|r| r.as_json()))
        };
        assert_eq!(reference(r#"{"action":"a"}"#), Ok(None));
        assert_eq!(
            reference(r#"{"action":"a","ref":"7"}"#),
            Ok(Some("\"7\"".into()))
        );
        assert_eq!(reference(r#"{"ref":8,"action":"a"}"#), Ok(Some("8".into())));
        assert_eq!(
            reference(r#"{"ref":"a.b:c-d_E9"}"#),
            Ok(Some("\"a.b:c-d_E9\"".into()))
        );
        assert_eq!(
            reference(r#"{"ref":9007199254740991}"#),
            Ok(Some("9007199254740991".into()))
        );
        for bad in [
            r#"{"ref":""}"#,
            r#"{"ref":"has space"}"#,
            r#"{"ref":"é"}"#,
            r#"{"ref":-1}"#,
            r#"{"ref":1.5}"#,
            r#"{"ref":9007199254740992}"#,
            r#"{"ref":null}"#,
            r#"{"ref":true}"#,
            r#"{"ref":["1"]}"#,
        ] {
            assert!(reference(bad).is_err(), "{bad}");
        }
        let long = format!(r#"{{"ref":"{}"}}"#, "x".repeat(65));
        assert!(reference(&long).is_err());
        let max = format!(r#"{{"ref":"{}"}}"#, "x".repeat(64));
        assert!(reference(&max).is_ok());
        assert!(envelope(r#"{"ref":"1","ref":"2"}"#, "action").is_err());
    }
}
