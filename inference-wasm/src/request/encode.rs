//! Answers and error bodies as JSON bytes, in one number format: every float is an f32
//! printed as the shortest decimal that reads back as the same f32, with serde_json's own
//! printer (`zmij`), on every surface.
//!
//! Written by hand rather than through serde's serializer: the answers are a handful of flat
//! objects, and keeping serde_json's `Serializer` (with `#[serde(flatten)]`) out of the wasm
//! saves ~12 KB gzip there (measured with twiggy); a test checks the bytes equal serde_json's.

use super::Protocol;
use crate::model::Prediction;

/// A JSON object being written: `{"key": value, …}`.
pub(crate) struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    /// Open an object.
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// Start member `key`; the caller writes its value into the returned buffer.
    pub(crate) fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        string(self.out, key);
        self.out.push(b':');
        self.out
    }

    /// A string member.
    pub(crate) fn str(&mut self, key: &str, v: &str) -> &mut Self {
        string(self.key(key), v);
        self
    }

    /// An f32 member.
    pub(crate) fn f32(&mut self, key: &str, v: f32) -> &mut Self {
        float(self.key(key), v);
        self
    }

    /// An unsigned integer member.
    pub(crate) fn uint(&mut self, key: &str, v: usize) -> &mut Self {
        uint(self.key(key), v);
        self
    }

    /// An array-of-f32 member.
    pub(crate) fn floats(&mut self, key: &str, v: &[f32]) -> &mut Self {
        floats(self.key(key), v);
        self
    }

    /// Close the object.
    pub(crate) fn end(self) {
        self.out.push(b'}');
    }
}

/// A JSON string literal.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// An f32: the shortest round-trip decimal, as serde_json prints it; non-finite as `null`.
pub(crate) fn float(out: &mut Vec<u8>, x: f32) {
    if x.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(x).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// An unsigned integer.
pub(crate) fn uint(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(v.to_string().as_bytes());
}

/// A JSON array, each item written by `each`.
pub(crate) fn array<T>(out: &mut Vec<u8>, items: impl IntoIterator<Item = T>, mut each: impl FnMut(&mut Vec<u8>, T)) {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, item);
    }
    out.push(b']');
}

/// An array of f32.
pub(crate) fn floats(out: &mut Vec<u8>, v: &[f32]) {
    array(out, v, |out, &x| float(out, x));
}

/// The members of one prediction.
fn prediction_members(o: &mut Obj<'_>, p: &Prediction) {
    match p {
        Prediction::Class { predicted_class, predicted_label, confidence, probabilities } => {
            o.uint("predicted_class", *predicted_class)
                .str("predicted_label", predicted_label)
                .f32("confidence", *confidence)
                .floats("probabilities", probabilities);
        }
        Prediction::Value { predicted_value } => {
            o.f32("predicted_value", *predicted_value);
        }
    }
}

/// Something that writes itself as a JSON value (explanations).
pub(crate) trait WriteJson {
    /// Append the JSON value.
    fn write_json(&self, out: &mut Vec<u8>);
}

/// One prediction object, with `model_id` first when given and `explanation` last.
pub(crate) fn prediction_into(out: &mut Vec<u8>, model_id: Option<&str>, p: &Prediction, e: Option<&dyn WriteJson>) {
    let mut o = Obj::new(out);
    if let Some(id) = model_id {
        o.str("model_id", id);
    }
    prediction_members(&mut o, p);
    if let Some(e) = e {
        e.write_json(o.key("explanation"));
    }
    o.end();
}

/// `{model_id?, predictions: [...]}`, each prediction with its explanation when given.
pub(crate) fn batch(model_id: Option<&str>, preds: &[Prediction], explanations: Option<&[&dyn WriteJson]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + preds.len() * 96);
    let mut o = Obj::new(&mut out);
    if let Some(id) = model_id {
        o.str("model_id", id);
    }
    array(o.key("predictions"), preds.iter().enumerate(), |arr, (i, p)| {
        prediction_into(arr, None, p, explanations.and_then(|e| e.get(i).copied()))
    });
    o.end();
    out
}

/// `{predictions: [...], explanations: [...]}` (KServe V1's `:explain`).
pub(crate) fn predictions_and_explanations(preds: &[Prediction], explanations: &[&dyn WriteJson]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + preds.len() * 512);
    let mut o = Obj::new(&mut out);
    array(o.key("predictions"), preds, |arr, p| prediction_into(arr, None, p, None));
    array(o.key("explanations"), explanations, |arr, e| e.write_json(arr));
    o.end();
    out
}

/// One prediction alone (the CLI's `--json` line).
pub fn prediction(p: &Prediction) -> String {
    let mut out = Vec::with_capacity(128);
    prediction_into(&mut out, None, p, None);
    String::from_utf8(out).unwrap_or_default()
}

/// The protocol's error body: `{"error": kind, "message", "row"?, "column"?}` for `/api/ml`,
/// `{"error": message}` for KServe V1 and the Open Inference Protocol, and MLflow's
/// `{"error_code", "message"}`.
pub(crate) fn error(
    protocol: Protocol,
    status: u16,
    kind: &str,
    message: &str,
    row: Option<usize>,
    column: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + message.len());
    let mut o = Obj::new(&mut out);
    match protocol {
        Protocol::ApiMl => {
            o.str("error", kind).str("message", message);
            if let Some(r) = row {
                o.uint("row", r);
            }
            if let Some(c) = column {
                o.str("column", c);
            }
        }
        Protocol::KServeV1 | Protocol::OipV2 => {
            o.str("error", message);
        }
        Protocol::Mlflow => {
            let code = match status {
                404 => "RESOURCE_DOES_NOT_EXIST",
                500.. => "INTERNAL_ERROR",
                _ => "BAD_REQUEST",
            };
            o.str("error_code", code).str("message", message);
        }
    }
    o.end();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_floats_are_written_as_serde_json_writes_them() {
        for s in ["plain", "quote \" and \\ back", "ctl \u{1}\u{1f}\n\r\t\u{8}\u{c}", "é ✓ 😀", ""] {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(s).unwrap());
        }
        let mut x = 0.37f32;
        for i in 0..20_000u32 {
            x = f32::from_bits(x.to_bits().wrapping_mul(747_796_405).wrapping_add(i) & 0x7f7f_ffff);
            for v in [x, -x, 1.0, 0.0, 1e-7, 123456.0, 3.4e38] {
                let mut out = Vec::new();
                float(&mut out, v);
                assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&v).unwrap(), "{v:e}");
            }
        }
        let mut out = Vec::new();
        float(&mut out, f32::NAN);
        assert_eq!(out, b"null");
    }

    #[test]
    fn predictions_have_the_documented_fields() {
        let p = Prediction::Class {
            predicted_class: 1,
            predicted_label: "B".into(),
            confidence: 0.75,
            probabilities: vec![0.25, 0.75],
        };
        let v: serde_json::Value = serde_json::from_slice(&batch(Some("m"), std::slice::from_ref(&p), None)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model_id": "m", "predictions": [
                {"predicted_class": 1, "predicted_label": "B", "confidence": 0.75, "probabilities": [0.25, 0.75]}]})
        );
        assert_eq!(prediction(&p), serde_json::to_string(&p).unwrap());
        let e: serde_json::Value =
            serde_json::from_slice(&error(Protocol::ApiMl, 400, "k", "m", Some(2), Some("c"))).unwrap();
        assert_eq!(e, serde_json::json!({"error": "k", "message": "m", "row": 2, "column": "c"}));
    }
}
