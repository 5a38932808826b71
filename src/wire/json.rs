//! Strict JSON: objects whose repeated keys are reported instead of silently merged.
//!
//! Owns: JSON paths (`services.web.after[0]`), reading a document into a [`Value`] while noting
//! every key that appears twice in one object (by its path), and reading a request's top-level
//! object as raw, untouched JSON text per key (so an `id` can be echoed exactly as sent).
//! Must never: let the last of two equal keys win unnoticed (serde_json alone does), or grow a
//! path for every value read: paths are spelled out only for the keys that are reported.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use crate::wire::text::clip;

/// Appends a key to a JSON path, quoting keys that are not plain identifiers (and clipping
/// long ones: a path locates, it need not repeat a 60 000-character key).
pub fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = clip(key);
    match (path.is_empty(), plain) {
        (true, true) => key.into_owned(),
        (true, false) => format!("[{key:?}]"),
        (false, true) => format!("{path}.{key}"),
        (false, false) => format!("{path}[{key:?}]"),
    }
}

/// Where a value sits, as a chain of parents that is spelled out only when needed.
#[derive(Clone, Copy, Debug)]
enum At<'a> {
    Root(&'a str),
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl At<'_> {
    fn render(&self) -> String {
        match self {
            At::Root(p) => (*p).to_string(),
            At::Key(parent, key) => join(&parent.render(), key),
            At::Index(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }
}

/// Reads a value, noting the path of every repeated key in `dups`; the first of two equal keys
/// is kept.
struct Strict<'a> {
    at: At<'a>,
    dups: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let at = At::Index(&self.at, out.len());
            match seq.next_element_seed(Strict {
                at,
                dups: &mut *self.dups,
            })? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let at = At::Key(&self.at, &key);
            let v = map.next_value_seed(Strict {
                at,
                dups: &mut *self.dups,
            })?;
            if out.contains_key(&key) {
                self.dups.push(at.render());
            } else {
                out.insert(key, v);
            }
        }
        Ok(Value::Object(out))
    }
}

/// A JSON document and the paths of the keys it repeats (`services.a`), in the order met.
pub fn parse_strict(text: &str, root: &str) -> Result<(Value, Vec<String>), serde_json::Error> {
    let mut dups = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Strict {
        at: At::Root(root),
        dups: &mut dups,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok((v, dups))
}

/// One top-level object read as `key → raw JSON text`, in the order sent.
#[derive(Debug, Default)]
pub struct RawObject {
    /// Every key with its value's exact text; a repeated key appears once, with its first value.
    pub fields: Vec<(String, Box<RawValue>)>,
    /// Keys given more than once, as paths.
    pub dups: Vec<String>,
}

impl RawObject {
    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &**v)
    }
}

struct RawFields<'a>(&'a mut RawObject);

impl<'de> DeserializeSeed<'de> for RawFields<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RawFields<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // A 64 KiB line can hold thousands of keys: look repeats up in a set, not a scan.
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let v: Box<RawValue> = map.next_value()?;
            if seen.insert(key.clone()) {
                self.0.fields.push((key, v));
            } else {
                self.0.dups.push(join("", &key));
            }
        }
        Ok(())
    }
}

/// Reads a top-level JSON object as raw text per key. What was read before an error (an `id`
/// early in a line cut short) is kept in `into`, so the error reply can still echo it.
pub fn parse_raw_object(text: &str, into: &mut RawObject) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    RawFields(into).deserialize(&mut de)?;
    de.end()
}

/// Reads one raw value strictly, noting repeated keys inside it under `path`.
pub fn parse_raw_value(raw: &RawValue, path: &str) -> Result<(Value, Vec<String>), String> {
    parse_strict(raw.get(), path).map_err(|e| format!("{path}: {e}"))
}

/// serde_json's message without the " at line X column Y" it appends: reapd puts the position
/// first, in its own words.
pub fn without_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg.get(..i).unwrap_or_default().to_string(),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_reported_by_path_and_the_first_is_kept() {
        let (v, dups) = parse_strict(
            r#"{"services": {"a": {"cmd": ["x"], "cmd": ["y"]}, "a": {}, "b": [{"k": 1, "k": 2}]}}"#,
            "",
        )
        .expect("valid JSON");
        assert_eq!(dups, ["services.a.cmd", "services.a", "services.b[0].k"]);
        assert_eq!(v["services"]["a"]["cmd"][0], "x");
        assert_eq!(v["services"]["b"][0]["k"], 1);
        let (_, dups) = parse_strict(r#"{"a b": 1, "a b": 2}"#, "").expect("valid");
        assert_eq!(dups, ["[\"a b\"]"]);
    }

    #[test]
    fn syntax_errors_keep_their_position() {
        let e = parse_strict("{\n  \"a\": ,\n}", "").expect_err("invalid");
        assert_eq!((e.line(), e.column()), (2, 8));
        let e = parse_strict("{} x", "").expect_err("trailing");
        assert_eq!(e.column(), 4);
    }

    #[test]
    fn raw_objects_keep_the_exact_text_and_what_came_before_an_error() {
        let mut o = RawObject::default();
        parse_raw_object(
            r#"{"id": 123456789012345678901234567890, "x": {"b" : 1,"a":2}, "id": 1}"#,
            &mut o,
        )
        .expect("valid");
        assert_eq!(
            o.get("id").map(RawValue::get),
            Some("123456789012345678901234567890")
        );
        assert_eq!(o.get("x").map(RawValue::get), Some(r#"{"b" : 1,"a":2}"#));
        assert_eq!(o.dups, ["id"]);
        let mut o = RawObject::default();
        assert!(parse_raw_object(r#"{"id": [1, 2], "cmd": "pi"#, &mut o).is_err());
        assert_eq!(o.get("id").map(RawValue::get), Some("[1, 2]"));
    }
}
