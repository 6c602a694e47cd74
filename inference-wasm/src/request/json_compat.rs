//! Python's `json.dumps` writes `NaN`, `Infinity` and `-Infinity` for float values (numpy's
//! missing values reach us that way from tritonclient, kserve and MLflow clients), which JSON
//! proper does not allow. This rewrites those tokens outside strings: `NaN` → the string
//! `"NaN"` (a missing-value token wherever a cell is read, as NaN means missing everywhere in the
//! core) and ±`Infinity` → the strings `"inf"`/`"-inf"` (which the value layer reads as
//! non-finite numbers and rejects by name). Strings, not `null`: an envelope field (`model_id`,
//! `explain.seed`) written as NaN is then a type error, not silently absent.

/// The body with Python's non-finite tokens rewritten, or `None` if it has none.
pub(crate) fn strict_json(body: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let (mut i, mut copied) = (0, 0);
    let mut in_string = false;
    while i < body.len() {
        let b = body[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        let token: Option<(usize, &[u8])> = match b {
            b'"' => {
                in_string = true;
                None
            }
            b'N' if body[i..].starts_with(b"NaN") => Some((3, b"\"NaN\"")),
            b'I' if body[i..].starts_with(b"Infinity") => Some((8, b"\"inf\"")),
            b'-' if body[i..].starts_with(b"-Infinity") => Some((9, b"\"-inf\"")),
            _ => None,
        };
        match token {
            Some((len, with)) => {
                let o = out.get_or_insert_with(|| Vec::with_capacity(body.len() + 16));
                o.extend_from_slice(&body[copied..i]);
                o.extend_from_slice(with);
                i += len;
                copied = i;
            }
            None => i += 1,
        }
    }
    out.map(|mut o| {
        o.extend_from_slice(&body[copied..]);
        o
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_python_tokens_outside_strings_only() {
        let body = br#"{"a": [NaN, 1.5, Infinity, -Infinity], "s": "NaN \" Infinity"}"#;
        let fixed = strict_json(body).unwrap();
        assert_eq!(String::from_utf8(fixed).unwrap(), r#"{"a": ["NaN", 1.5, "inf", "-inf"], "s": "NaN \" Infinity"}"#);
        assert_eq!(strict_json(br#"{"a": [1, null], "b": "NaN"}"#), None);
    }
}
