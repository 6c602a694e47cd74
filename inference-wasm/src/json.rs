//! The members of a JSON object, each value kept as its raw text: the one reader the bundle
//! metadata ([`crate::spec::ModelSpec`]) and every request envelope (api/ml, KServe V1, Open
//! Inference Protocol, MLflow, `explain`) are read with.
//!
//! Hand-written over one serde visitor rather than a serde derive per type: each derive brings
//! its own field matcher, map visitor and (unused) sequence visitor into the wasm. Measured with
//! scripts/build-wasm.sh: the derived `ModelSpec` reader alone cost 12.6 KB gzip; see
//! ARCHITECTURE.md for the totals.

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::truncate_echo;

/// Why a JSON text could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Not JSON at all (syntax, truncation, trailing characters).
    Malformed(String),
    /// JSON, but not of the shape wanted.
    Invalid(String),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(m) | Self::Invalid(m) => f.write_str(m),
        }
    }
}

impl From<serde_json::Error> for JsonError {
    fn from(e: serde_json::Error) -> Self {
        match e.classify() {
            serde_json::error::Category::Data => Self::Invalid(truncate_echo(&e.to_string())),
            _ => Self::Malformed(e.to_string()),
        }
    }
}

/// A JSON object's members in text order; `null` members read as absent.
pub(crate) struct Members<'a> {
    items: Vec<(String, &'a RawValue)>,
}

struct MembersVisitor;

/// Members checked for repeats by scanning, before a set takes over.
const LINEAR_CHECK: usize = 32;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Vec<(String, &'de RawValue)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let duplicate = |k: &str| serde::de::Error::custom(format_args!("duplicate field `{}`", truncate_echo(k)));
        let mut items: Vec<(String, &'de RawValue)> = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
            // A scan while the object is small (every envelope and spec object)...
            if items.len() < LINEAR_CHECK && items.iter().any(|(seen, _)| *seen == k) {
                return Err(duplicate(&k));
            }
            items.push((k, v));
        }
        // ...and one pass with a set for a large one, so a hostile body of a million keys
        // costs linear time, not a quadratic scan.
        if items.len() > LINEAR_CHECK {
            let mut seen = HashSet::with_capacity(items.len());
            if let Some((k, _)) = items.iter().find(|(k, _)| !seen.insert(k.as_str())) {
                return Err(duplicate(k));
            }
        }
        Ok(items)
    }
}

impl<'a> Members<'a> {
    /// Read `json` as an object (a repeated member is invalid).
    pub(crate) fn parse(json: &'a str) -> Result<Self, JsonError> {
        let mut de = serde_json::Deserializer::from_str(json);
        let items = de.deserialize_map(MembersVisitor).and_then(|items| de.end().map(|()| items))?;
        Ok(Self { items })
    }

    /// The value of member `key`, unless absent or `null`.
    pub(crate) fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.items.iter().find(|(k, v)| k == key && v.get() != "null").map(|(_, v)| *v)
    }

    /// The value of member `key`, which must be there.
    pub(crate) fn required(&self, key: &str, what: &str) -> Result<&'a RawValue, JsonError> {
        self.get(key).ok_or_else(|| JsonError::Invalid(format!("{what}: missing field `{key}`")))
    }

    /// Refuse members other than `known` (`what` names the object in the message).
    pub(crate) fn only(&self, known: &[&str], what: &str) -> Result<(), JsonError> {
        match self.items.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((k, _)) => Err(JsonError::Invalid(format!(
                "{what}: unknown field `{}`, expected one of {}",
                truncate_echo(k),
                known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            ))),
            None => Ok(()),
        }
    }
}

/// Read a member's value as `T` (a string, number, bool or array of them); `key` names it.
pub(crate) fn value<'de, T: serde::Deserialize<'de>>(raw: &'de RawValue, key: &str) -> Result<T, JsonError> {
    serde_json::from_str(raw.get()).map_err(|e| invalid_value(key, &e))
}

/// Not generic, so each `value::<T>` stays a bare call into serde_json (~1 KB less wasm each).
#[inline(never)]
fn invalid_value(key: &str, e: &serde_json::Error) -> JsonError {
    JsonError::Invalid(format!("`{key}`: {}", truncate_echo(&e.to_string())))
}

/// The member `key` of `m` read as `T`, if present.
pub(crate) fn optional<'de, T: serde::Deserialize<'de>>(m: &Members<'de>, key: &str) -> Result<Option<T>, JsonError> {
    m.get(key).map(|raw| value(raw, key)).transpose()
}

/// One of `names` (a unit enum's JSON names), as its index.
pub(crate) fn variant(raw: &RawValue, key: &str, names: &[&str]) -> Result<usize, JsonError> {
    let s: String = value(raw, key)?;
    names.iter().position(|n| *n == s).ok_or_else(|| {
        JsonError::Invalid(format!(
            "`{key}`: unknown variant `{}`, expected one of {}",
            truncate_echo(&s),
            names.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_raw_values_and_refuse_what_is_not_an_object() {
        let m = Members::parse(r#" {"a": [1, 2], "b": null, "c": {"d": "x"}, "e": "relu"} "#).unwrap();
        assert_eq!(m.get("a").unwrap().get(), "[1, 2]");
        assert!(m.get("b").is_none() && m.get("zz").is_none());
        assert_eq!(m.get("c").unwrap().get(), r#"{"d": "x"}"#);
        assert!(m.only(&["a", "b", "c", "e"], "top").is_ok());
        let e = m.only(&["a", "b", "e"], "top").unwrap_err().to_string();
        assert!(e.contains("unknown field `c`"), "{e}");
        let e = m.required("b", "top").unwrap_err().to_string();
        assert_eq!(e, "top: missing field `b`");
        assert_eq!(variant(m.get("e").unwrap(), "e", &["gelu", "relu"]), Ok(1));
        let e = variant(m.get("e").unwrap(), "e", &["gelu"]).unwrap_err().to_string();
        assert!(e.contains("unknown variant `relu`, expected one of `gelu`"), "{e}");

        assert!(matches!(Members::parse("[1]"), Err(JsonError::Invalid(_))));
        assert!(matches!(Members::parse("{\"a\": 1"), Err(JsonError::Malformed(_))));
        assert!(matches!(Members::parse("{} x"), Err(JsonError::Malformed(_))));
        let e = Members::parse(r#"{"a": 1, "a": 2}"#).err().unwrap().to_string();
        assert!(e.contains("duplicate field `a`"), "{e}");
        let e = value::<u64>(m.get("a").unwrap(), "a").unwrap_err().to_string();
        assert!(e.contains("`a`: invalid type"), "{e}");
    }

    #[test]
    fn a_repeat_anywhere_in_a_large_object_is_refused() {
        let keys: Vec<String> = (0..5000).map(|i| format!("\"k{i}\": {i}")).collect();
        let json = format!("{{{}}}", keys.join(","));
        let m = Members::parse(&json).unwrap();
        assert_eq!((m.get("k0").map(RawValue::get), m.get("k4999").map(RawValue::get)), (Some("0"), Some("4999")));
        for (at, repeat) in [(10, "k3"), (40, "k39"), (4000, "k3999"), (4999, "k0")] {
            let mut with_repeat = keys.clone();
            with_repeat.insert(at, format!("\"{repeat}\": 0"));
            let e = Members::parse(&format!("{{{}}}", with_repeat.join(","))).err().unwrap().to_string();
            assert!(e.contains(&format!("duplicate field `{repeat}`")), "{at}: {e}");
        }
    }
}
