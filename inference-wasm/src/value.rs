//! Raw feature values and the text conventions shared by training-time loading and prediction:
//! which cells count as missing, how numbers are parsed, and how a number reads as a category.

/// One raw (unprocessed) feature value, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// Absent, null, NaN or a missing-value token.
    Missing,
    /// A number as given.
    Number(f64),
    /// Text as given (a category, or a number written as text).
    Text(&'a str),
}

/// One raw feature value, owned (for callers that must build rows, e.g. JS or CSV input).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Absent, null, NaN or a missing-value token.
    Missing,
    /// A number as given.
    Number(f64),
    /// Text as given.
    Text(String),
}

impl Value {
    /// Borrow as a [`ValueRef`].
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Missing => ValueRef::Missing,
            Value::Number(x) => ValueRef::Number(*x),
            Value::Text(s) => ValueRef::Text(s),
        }
    }
}

/// Tokens (compared case-insensitively, after trimming) that mean "missing", as pandas reads them.
const MISSING_TOKENS: [&str; 9] = ["", "na", "n/a", "nan", "-nan", "null", "none", "#n/a", "<na>"];

/// Whether a text cell means "missing".
pub fn is_missing_token(cell: &str) -> bool {
    let t = cell.trim();
    t.len() <= 5 && MISSING_TOKENS.iter().any(|m| t.eq_ignore_ascii_case(m))
}

/// Parse a text cell as a number: surrounding spaces allowed, `1e3`, `+5`, `-0` and `inf` accepted
/// (callers reject non-finite values with their own context). Missing tokens are not numbers.
pub fn parse_number(cell: &str) -> Option<f64> {
    let t = cell.trim();
    if t.is_empty() {
        return None;
    }
    // Rust's parser also takes "nan"/"infinity"; NaN is a missing token, handled before this.
    t.parse::<f64>().ok().filter(|x| !x.is_nan())
}

/// The category a text cell stands for: trimmed, and numbers in their canonical spelling
/// (`"1.0"`, `" 1 "` and the JSON number `1` are all `"1"`), so CSV, JSON and prediction agree.
pub fn category_of(cell: &str) -> std::borrow::Cow<'_, str> {
    let t = cell.trim();
    match parse_number(t) {
        Some(x) if x.is_finite() => std::borrow::Cow::Owned(number_as_category(x)),
        _ => std::borrow::Cow::Borrowed(t),
    }
}

/// A feature value as f32, or `None` when it is not finite there (|x| beyond ~3.4e38 overflows).
pub fn to_f32(x: f64) -> Option<f32> {
    let y = x as f32;
    y.is_finite().then_some(y)
}

/// How a number reads as a category: integral values without a fraction (`3`, not `3.0`),
/// others in Rust's shortest round-trip form. Loading JSON and predicting both use this.
pub fn number_as_category(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 9.007_199_254_740_992e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// The number a JSON reader gets for `x` as the API prints it: the shortest decimal that
/// round-trips the f32, read as the nearest f64 (as `JSON.parse` does). The wasm bindings hand
/// JS these, so JS sees exactly what the HTTP API's JSON gives (`0.1`, not
/// `0.10000000149011612`). Non-finite: widened as is.
pub fn f32_as_json_f64(x: f32) -> f64 {
    if !x.is_finite() {
        return f64::from(x);
    }
    // zmij is serde_json's float printer: the same digits `Prediction` serialises to.
    zmij::Buffer::new().format_finite(x).parse().unwrap_or(f64::from(x))
}

impl<'a> ValueRef<'a> {
    /// Read a JSON value: null → missing, number, string, bool (as the text `true`/`false`,
    /// as the loader reads it); arrays and objects → `None`.
    pub fn from_json(v: &'a serde_json::Value) -> Option<ValueRef<'a>> {
        match v {
            serde_json::Value::Null => Some(ValueRef::Missing),
            serde_json::Value::Number(n) => n.as_f64().map(ValueRef::Number),
            serde_json::Value::String(s) => Some(ValueRef::Text(s)),
            serde_json::Value::Bool(b) => Some(ValueRef::Text(if *b { "true" } else { "false" })),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_reads_as_its_json_text_does() {
        let mut x = 0.1f32;
        for i in 0..20_000u32 {
            // A spread of magnitudes and mantissas, probabilities and beyond.
            x = f32::from_bits(x.to_bits().wrapping_mul(747_796_405).wrapping_add(i) & 0x7f7f_ffff);
            // The API's JSON text, read as JSON.parse reads it (correctly rounded, like `str::parse`;
            // serde_json's own reader may be 1 ulp off without its `float_roundtrip` feature).
            let via_json: f64 = serde_json::to_string(&x).unwrap().parse().unwrap();
            assert_eq!(f32_as_json_f64(x).to_bits(), via_json.to_bits(), "{x:e}");
            assert_eq!(f32_as_json_f64(x) as f32, x);
        }
        assert_eq!(f32_as_json_f64(0.1), 0.1);
        assert!(f32_as_json_f64(f32::NAN).is_nan());
        assert_eq!(f32_as_json_f64(f32::INFINITY), f64::INFINITY);
    }

    #[test]
    fn missing_tokens_match_pandas_defaults() {
        for t in ["", " ", "NA", "na", "NaN", "nan", "null", "NULL", "None", "N/A", "#N/A", "<NA>"] {
            assert!(is_missing_token(t), "{t:?} should be missing");
        }
        for t in ["0", "A", "nano", "none of them", "-"] {
            assert!(!is_missing_token(t), "{t:?} should not be missing");
        }
    }

    #[test]
    fn number_spellings() {
        assert_eq!(parse_number("1e3"), Some(1000.0));
        assert_eq!(parse_number(" 42 "), Some(42.0));
        assert_eq!(parse_number("-0"), Some(0.0));
        assert_eq!(parse_number("+5"), Some(5.0));
        assert_eq!(parse_number("inf"), Some(f64::INFINITY));
        assert_eq!(parse_number("NaN"), None);
        assert_eq!(parse_number("1,5"), None);
        assert_eq!(parse_number("abc"), None);
        assert_eq!(parse_number(""), None);
    }

    #[test]
    fn categories_are_trimmed_and_numbers_canonical() {
        assert_eq!(category_of(" red "), "red");
        assert_eq!(category_of("1.0"), "1");
        assert_eq!(category_of("007"), "7");
        assert_eq!(category_of("inf"), "inf");
        assert_eq!(to_f32(1e39), None);
        assert_eq!(to_f32(-2.5), Some(-2.5));
    }

    #[test]
    fn numbers_read_as_categories_canonically() {
        assert_eq!(number_as_category(3.0), "3");
        assert_eq!(number_as_category(-2.0), "-2");
        assert_eq!(number_as_category(2.5), "2.5");
        assert_eq!(number_as_category(0.1), "0.1");
    }
}
