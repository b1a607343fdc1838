//! A small YAML writer for CloudFormation templates built as JSON values (keys keep their
//! order). Strings are always double-quoted, so no value is ever reinterpreted (`"on"`,
//! `"1.0"`, `"*"`); intrinsic functions use their long form (`Fn::Sub:`), no tags.

use serde_json::Value;
use std::fmt::Write;

pub(crate) fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/' | '$'))
        && !k.starts_with(['-', ':', '$'])
        && !k.ends_with(':');
    if plain {
        k.to_owned()
    } else {
        scalar(&Value::String(k.to_owned()))
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        // A JSON string literal is a valid YAML double-quoted scalar.
        Value::String(s) => serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        _ => String::new(),
    }
}

fn is_nested(value: &Value) -> bool {
    matches!(value, Value::Array(a) if !a.is_empty())
        || matches!(value, Value::Object(o) if !o.is_empty())
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (k, v) in map {
        let pad = " ".repeat(indent);
        if is_nested(v) {
            let _ = writeln!(out, "{pad}{}:", key(k));
            write_value(out, v, indent + 2);
        } else {
            let _ = writeln!(out, "{pad}{}: {}", key(k), scalar(v));
        }
    }
}

fn write_value(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) => write_map(out, map, indent),
        Value::Array(items) => {
            let pad = " ".repeat(indent);
            for item in items {
                match item {
                    Value::Object(map) if !map.is_empty() => {
                        // First key on the dash line, the rest aligned under it.
                        let mut inner = String::new();
                        write_map(&mut inner, map, indent + 2);
                        let trimmed = inner.trim_start();
                        let _ = write!(out, "{pad}- {trimmed}");
                    }
                    Value::Array(a) if !a.is_empty() => {
                        let _ = writeln!(out, "{pad}-");
                        write_value(out, item, indent + 2);
                    }
                    other => {
                        let _ = writeln!(out, "{pad}- {}", scalar(other));
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{}{}", " ".repeat(indent), scalar(other));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_nested_maps_lists_and_quoted_strings() {
        let v = json!({
            "A": "on",
            "B": {"C": [1, "x", {"D": true, "E": {"F": "y"}}, []], "G": {}},
            "Fn::Sub": "${X}",
            "needs quote": "a: b"
        });
        let expected = "A: \"on\"\nB:\n  C:\n    - 1\n    - \"x\"\n    - D: true\n      E:\n        F: \"y\"\n    - []\n  G: {}\nFn::Sub: \"${X}\"\n\"needs quote\": \"a: b\"\n";
        assert_eq!(to_yaml(&v), expected);
    }
}
