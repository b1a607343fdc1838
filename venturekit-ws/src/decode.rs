//! Typed decoding of a message without its envelope fields.
//!
//! `action` (the route selection field) and `ref` belong to the framework, not to the
//! action's message type, so a type with `#[serde(deny_unknown_fields)]` accepts
//! `{"action":"x","ref":"1",…its fields}`. [`WithoutFields`] wraps a deserializer and hides
//! those keys of the top-level object from the type being decoded, without building an
//! intermediate `serde_json::Value`.

use serde::de::value::CowStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Deserializes `body` into `T`, skipping the top-level keys in `skip`. The error text names
/// the offending field (`invalid field `to`: …`).
pub(crate) fn decode_message<T: de::DeserializeOwned>(
    body: &str,
    skip: &[&str],
) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_str(body);
    let value: T = serde_path_to_error::deserialize(WithoutFields {
        inner: &mut de,
        skip,
    })
    .map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            format!("invalid message: {inner}")
        } else {
            format!("invalid field `{}`: {inner}", short_path(&path))
        }
    })?;
    de.end().map_err(|e| format!("invalid message: {e}"))?;
    Ok(value)
}

/// The longest field path an error names whole; longer ones (deep nesting, long keys chosen by
/// the client) keep their start and end, so that the reason after the path stays readable in
/// an error frame, whose message is cut at [`crate::protocol::MAX_ERROR_MESSAGE_CHARS`].
const MAX_PATH_CHARS: usize = 120;

fn short_path(path: &str) -> Cow<'_, str> {
    let chars = path.chars().count();
    if chars <= MAX_PATH_CHARS {
        return Cow::Borrowed(path);
    }
    let head = crate::protocol::clip(path, MAX_PATH_CHARS / 2);
    let tail_start = path
        .char_indices()
        .nth(chars - MAX_PATH_CHARS / 3)
        .map_or(path.len(), |(i, _)| i);
    Cow::Owned(format!("{head}…{}", &path[tail_start..]))
}

/// A deserializer whose top-level map hides the keys in `skip`.
pub(crate) struct WithoutFields<'s, D> {
    inner: D,
    skip: &'s [&'s str],
}

impl<'de, 's, D: Deserializer<'de>> Deserializer<'de> for WithoutFields<'s, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(Skipping {
            inner: visitor,
            skip: self.skip,
        })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(Skipping {
            inner: visitor,
            skip: self.skip,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(
            name,
            fields,
            Skipping {
                inner: visitor,
                skip: self.skip,
            },
        )
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_newtype_struct(
            name,
            Skipping {
                inner: visitor,
                skip: self.skip,
            },
        )
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_option(Skipping {
            inner: visitor,
            skip: self.skip,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_ignored_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct identifier
    }
}

/// The visitor that wraps the top-level map.
struct Skipping<'s, V> {
    inner: V,
    skip: &'s [&'s str],
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, 's, V: Visitor<'de>> Visitor<'de> for Skipping<'s, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(SkipMap {
            inner: map,
            skip: self.skip,
        })
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(WithoutFields {
            inner: d,
            skip: self.skip,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_newtype_struct(WithoutFields {
            inner: d,
            skip: self.skip,
        })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_seq(seq)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_enum(data)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        self.inner.visit_borrowed_str(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        self.inner.visit_borrowed_bytes(v)
    }

    forward_visit! {
        visit_bool(bool), visit_i8(i8), visit_i16(i16), visit_i32(i32), visit_i64(i64),
        visit_i128(i128), visit_u8(u8), visit_u16(u16), visit_u32(u32), visit_u64(u64),
        visit_u128(u128), visit_f32(f32), visit_f64(f64), visit_char(char), visit_str(&str),
        visit_string(String), visit_bytes(&[u8]), visit_byte_buf(Vec<u8>),
    }
}

/// The top-level map with the envelope keys left out.
struct SkipMap<'s, A> {
    inner: A,
    skip: &'s [&'s str],
}

impl<'de, 's, A: MapAccess<'de>> MapAccess<'de> for SkipMap<'s, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(Key(key)) = self.inner.next_key::<Key<'de>>()? else {
                return Ok(None);
            };
            if self.skip.contains(&key.as_ref()) {
                self.inner.next_value::<IgnoredAny>()?;
                continue;
            }
            return seed
                .deserialize(CowStrDeserializer::<A::Error>::new(key))
                .map(Some);
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::decode_message;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        to: String,
        n: u32,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Wrapper(Strict);

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(tag = "kind")]
    enum Tagged {
        A { x: u8 },
    }

    const SKIP: &[&str] = &["action", "ref"];

    #[test]
    fn envelope_fields_are_hidden_from_strict_types() {
        let body = r#"{"action":"send","ref":"1","to":"bob","n":2}"#;
        let m: Strict = decode_message(body, SKIP).unwrap();
        assert_eq!(
            m,
            Strict {
                to: "bob".into(),
                n: 2
            }
        );
        let w: Wrapper = decode_message(body, SKIP).unwrap();
        assert_eq!(w.0.n, 2);
        let t: Tagged = decode_message(r#"{"action":"a","kind":"A","x":3,"ref":7}"#, SKIP).unwrap();
        assert_eq!(t, Tagged::A { x: 3 });
        let v: serde_json::Value = decode_message(body, SKIP).unwrap();
        assert_eq!(v, serde_json::json!({"to":"bob","n":2}));
        let _: serde::de::IgnoredAny = decode_message(body, SKIP).unwrap();
        // Escaped keys are still recognised.
        let m: Strict = decode_message(r#"{"\u0061ction":"send","to":"b","n":1}"#, SKIP).unwrap();
        assert_eq!(m.n, 1);
    }

    #[test]
    fn other_unknown_fields_and_bad_types_are_still_errors() {
        let err =
            decode_message::<Strict>(r#"{"action":"s","to":"b","n":1,"x":0}"#, SKIP).unwrap_err();
        assert!(err.contains("unknown field `x`"), "{err}");
        let err = decode_message::<Strict>(r#"{"action":"s","to":5,"n":1}"#, SKIP).unwrap_err();
        assert!(err.starts_with("invalid field `to`"), "{err}");
        let err = decode_message::<Strict>(r#"{"action":"s","n":1}"#, SKIP).unwrap_err();
        assert!(err.contains("missing field `to`"), "{err}");
    }

    #[test]
    fn long_paths_are_shortened_and_the_reason_kept() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Data {
            data: serde_json::Value,
        }
        // Nested past serde_json's recursion limit.
        let body = format!(
            r#"{{"action":"a","data":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let err = decode_message::<Data>(&body, SKIP).unwrap_err();
        assert!(err.starts_with("invalid field `data[0][0]"), "{err}");
        assert!(err.contains("…"), "{err}");
        assert!(err.contains("recursion limit exceeded"), "{err}");
        assert!(err.chars().count() < 250, "{err}");
        // A long key chosen by the client, before a wrong type.
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Counts {
            counts: std::collections::HashMap<String, u32>,
        }
        let body = format!(
            r#"{{"action":"a","counts":{{"{}é":"x"}}}}"#,
            "k".repeat(5000)
        );
        let err = decode_message::<Counts>(&body, SKIP).unwrap_err();
        assert!(err.starts_with("invalid field `counts.kkk"), "{err}");
        assert!(
            err.contains("kké`: invalid type: string \"x\", expected u32"),
            "{err}"
        );
        assert!(err.chars().count() < 250, "{err}");
        // Short paths are whole.
        assert_eq!(super::short_path("a.b[3].c"), "a.b[3].c");
    }
}
