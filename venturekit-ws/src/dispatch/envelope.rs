//! Reading the route selection field (`action`) without deserializing the rest.

use serde::de::{self, IgnoredAny, MapAccess, Visitor};

/// Reads the route selection field (`action` by default) from a message without
/// deserializing the rest. Errors are client-facing.
pub(super) fn envelope(body: &str, field: &str) -> Result<String, String> {
    if body.trim().is_empty() {
        return Err(format!(
            "empty message: send a JSON object with an `{field}`"
        ));
    }
    let mut de = serde_json::Deserializer::from_str(body);
    let action =
        de::Deserializer::deserialize_any(&mut de, EnvelopeVisitor { field }).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                format!("message is not valid JSON: {e}")
            } else {
                e.to_string()
            }
        })?;
    de.end()
        .map_err(|e| format!("message is not valid JSON: {e}"))?;
    action
}

struct EnvelopeVisitor<'f> {
    field: &'f str,
}

impl<'de> Visitor<'de> for EnvelopeVisitor<'_> {
    type Value = Result<String, String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut action: Option<Result<String, String>> = None;
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
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(action.unwrap_or_else(|| Err(format!("missing `{}`", self.field))))
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

    #[test]
    fn envelope_reads_only_the_action() {
        assert_eq!(
            envelope(r#"{"action":"send","to":"x"}"#, "action"),
            Ok("send".into())
        );
        assert_eq!(
            envelope(r#"{"to":{"deep":[1,2]},"action":"a"}"#, "action"),
            Ok("a".into())
        );
        assert_eq!(
            envelope(r#"{"action":5}"#, "action"),
            Err("`action` must be a string".into())
        );
        assert_eq!(
            envelope(r#"{"x":1}"#, "action"),
            Err("missing `action`".into())
        );
        let error = |body| envelope(body, "action").unwrap_err();
        assert!(error("[1,2]").contains("JSON object"));
        assert!(error("\"hi\"").contains("JSON object"));
        assert!(error("{nope").contains("not valid JSON"));
        assert!(error("{} x").contains("not valid JSON"));
        assert!(error(r#"{"action":"a","action":"b"}"#).contains("duplicate"));
        assert!(error("").contains("empty"));
        // `$request.body.type`
        assert_eq!(envelope(r#"{"type":"send"}"#, "type"), Ok("send".into()));
        assert_eq!(
            envelope(r#"{"action":"send"}"#, "type"),
            Err("missing `type`".into())
        );
    }
}
