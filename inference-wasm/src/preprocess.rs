//! Training-time preprocessing applied to a raw row: fill missing values, label-encode
//! categories, standardise. The trainer encodes its splits with this same code.

use std::collections::HashMap;

use crate::error::{truncate_echo, PredictError};
use crate::spec::{FeatureKind, Preprocessing};
use crate::value::{category_of, is_missing_token, number_as_category, parse_number, to_f32, ValueRef};

#[derive(Debug, Clone)]
enum Encoder {
    Numeric { fill: Option<f32> },
    Categorical { codes: HashMap<String, u32>, fill: Option<u32>, known: String },
}

/// Compiled preprocessing: lookups built once at load, applied per row without allocation.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    names: Vec<String>,
    /// Feature index by name, for records and columnar input; a name with surrounding
    /// whitespace also by its trim ([`Preprocessor::index_of`]).
    index: HashMap<String, usize>,
    encoders: Vec<Encoder>,
    mean: Vec<f32>,
    scale: Vec<f32>,
    numeric_only: bool,
}

/// How many categories an unknown-category message lists before eliding.
const KNOWN_PREVIEW: usize = 10;

impl Preprocessor {
    /// Compile fitted parameters (assumed consistent, as [`crate::Bundle`] checks).
    pub fn new(p: &Preprocessing) -> Self {
        let encoders = p
            .features
            .iter()
            .map(|f| match &f.kind {
                FeatureKind::Numeric { fill_value } => Encoder::Numeric { fill: *fill_value },
                FeatureKind::Categorical { categories, fill_value } => {
                    let codes: HashMap<String, u32> =
                        categories.iter().enumerate().map(|(i, c)| (c.clone(), i as u32)).collect();
                    let fill = fill_value.as_ref().and_then(|v| codes.get(v).copied());
                    let mut known =
                        categories.iter().take(KNOWN_PREVIEW).map(|c| format!("{c:?}")).collect::<Vec<_>>().join(", ");
                    if categories.len() > KNOWN_PREVIEW {
                        known.push_str(&format!(", … {} in all", categories.len()));
                    }
                    Encoder::Categorical { codes, fill, known }
                }
            })
            .collect::<Vec<_>>();
        let numeric_only = encoders.iter().all(|e| matches!(e, Encoder::Numeric { .. }));
        let names = &p.feature_names;
        let mut index: HashMap<String, usize> = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        // A name with surrounding whitespace (a JSON key "x\n", say) is also found by its trim,
        // as a CSV header is read, unless that trim is another name or shared by two.
        for (i, n) in names.iter().enumerate() {
            let t = n.trim();
            if t != n && !index.contains_key(t) && names.iter().filter(|m| m.trim() == t).count() == 1 {
                index.insert(t.to_owned(), i);
            }
        }
        Self {
            names: p.feature_names.clone(),
            index,
            encoders,
            mean: p.scaler.mean.clone(),
            scale: p.scaler.scale.clone(),
            numeric_only,
        }
    }

    /// Number of model inputs.
    pub fn num_features(&self) -> usize {
        self.encoders.len()
    }

    /// Feature names in input order.
    pub fn feature_names(&self) -> &[String] {
        &self.names
    }

    /// The index of the feature named `name`, or else named by its trim: surrounding whitespace
    /// does not count, as in a CSV header.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).or_else(|| self.index.get(name.trim())).copied()
    }

    /// Whether feature `index` is categorical.
    pub fn is_categorical(&self, index: usize) -> bool {
        matches!(self.encoders[index], Encoder::Categorical { .. })
    }

    /// Whether every feature is numeric (the fast `predict_batch` path needs this).
    pub fn is_numeric_only(&self) -> bool {
        self.numeric_only
    }

    /// Encode one feature value (fill + label-encode), before scaling.
    pub fn encode_value(&self, index: usize, v: ValueRef<'_>) -> Result<f32, PredictError> {
        let column = || self.names[index].clone();
        match (&self.encoders[index], v) {
            (Encoder::Numeric { fill }, ValueRef::Missing) => {
                fill.ok_or_else(|| PredictError::MissingValue { column: column() })
            }
            (Encoder::Numeric { fill }, ValueRef::Number(x)) => {
                if x.is_nan() {
                    fill.ok_or_else(|| PredictError::MissingValue { column: column() })
                } else {
                    to_f32(x).ok_or_else(|| PredictError::NonFinite { column: column(), value: x })
                }
            }
            (Encoder::Numeric { .. }, ValueRef::Text(s)) => {
                if is_missing_token(s) {
                    return self.encode_value(index, ValueRef::Missing);
                }
                match parse_number(s) {
                    Some(x) => self.encode_value(index, ValueRef::Number(x)),
                    None => Err(PredictError::NotANumber { column: column(), value: truncate_echo(s) }),
                }
            }
            (Encoder::Categorical { fill, .. }, ValueRef::Missing) => {
                fill.map(|c| c as f32).ok_or_else(|| PredictError::MissingValue { column: column() })
            }
            (Encoder::Categorical { .. }, ValueRef::Number(x)) => {
                if x.is_nan() {
                    self.encode_value(index, ValueRef::Missing)
                } else {
                    self.encode_category(index, &number_as_category(x))
                }
            }
            (Encoder::Categorical { .. }, ValueRef::Text(s)) => {
                if is_missing_token(s) {
                    self.encode_value(index, ValueRef::Missing)
                } else {
                    self.encode_category(index, &category_of(s))
                }
            }
        }
    }

    fn encode_category(&self, index: usize, s: &str) -> Result<f32, PredictError> {
        let Encoder::Categorical { codes, known, .. } = &self.encoders[index] else {
            unreachable!("encode_category is only called for categorical features")
        };
        codes.get(s).map(|&c| c as f32).ok_or_else(|| PredictError::UnknownCategory {
            column: self.names[index].clone(),
            value: truncate_echo(s),
            known: known.clone(),
        })
    }

    /// Encode and standardise one value of feature `index`: what the network sees.
    #[inline]
    pub fn transform_value(&self, index: usize, v: ValueRef<'_>) -> Result<f32, PredictError> {
        Ok(self.scale_value(index, self.encode_value(index, v)?))
    }

    /// The raw value a preprocessed value of feature `index` stands for: the unscaled number,
    /// or the category whose code it is (the background set is stored preprocessed; exports
    /// and displays show it raw).
    pub fn raw_value(&self, index: usize, x: f32) -> crate::Value {
        let encoded = x * self.scale[index] + self.mean[index];
        match &self.encoders[index] {
            Encoder::Numeric { .. } => crate::Value::Number(f64::from(encoded)),
            Encoder::Categorical { codes, .. } => {
                let code = encoded.round().max(0.0) as u32;
                codes
                    .iter()
                    .find(|(_, &c)| c == code)
                    .map_or(crate::Value::Missing, |(name, _)| crate::Value::Text(name.clone()))
            }
        }
    }

    /// Standardise an encoded value of feature `index`.
    #[inline]
    pub fn scale_value(&self, index: usize, encoded: f32) -> f32 {
        (encoded - self.mean[index]) / self.scale[index]
    }

    /// Encode and scale a positional row into `out` (length = number of features).
    pub fn transform_row<'v>(
        &self,
        row: impl ExactSizeIterator<Item = ValueRef<'v>>,
        out: &mut [f32],
    ) -> Result<(), PredictError> {
        if row.len() != self.num_features() {
            return Err(PredictError::WrongFeatureCount { expected: self.num_features(), got: row.len() });
        }
        for (i, (v, o)) in row.zip(out.iter_mut()).enumerate() {
            *o = self.transform_value(i, v)?;
        }
        Ok(())
    }

    /// Encode and scale a row given by column name; absent names are missing, extra names ignored.
    pub fn transform_record<'v>(
        &self,
        lookup: impl Fn(&str) -> Option<ValueRef<'v>>,
        out: &mut [f32],
    ) -> Result<(), PredictError> {
        for (i, o) in out.iter_mut().enumerate().take(self.num_features()) {
            let v = lookup(&self.names[i]).unwrap_or(ValueRef::Missing);
            *o = self.transform_value(i, v)?;
        }
        Ok(())
    }

    /// Numeric-only fast path: NaN → fill, then scale, in place on a row-major block.
    pub fn transform_numeric_in_place(&self, block: &mut [f32]) -> Result<(), PredictError> {
        let n = self.num_features();
        for row in block.chunks_exact_mut(n) {
            for (i, x) in row.iter_mut().enumerate() {
                // Finite values (the common case) skip the general per-value dispatch.
                let enc = if x.is_finite() { *x } else { self.encode_value(i, ValueRef::Number(f64::from(*x)))? };
                *x = self.scale_value(i, enc);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{FeatureSpec, MissingStrategy, Scaler};

    fn prep(strategy_fill: bool) -> Preprocessor {
        Preprocessor::new(&Preprocessing {
            feature_names: vec!["x".into(), "color".into()],
            features: vec![
                FeatureSpec {
                    name: "x".into(),
                    kind: FeatureKind::Numeric { fill_value: strategy_fill.then_some(2.0) },
                },
                FeatureSpec {
                    name: "color".into(),
                    kind: FeatureKind::Categorical {
                        categories: vec!["blue".into(), "green".into(), "red".into()],
                        fill_value: strategy_fill.then(|| "green".into()),
                    },
                },
            ],
            missing_strategy: if strategy_fill { MissingStrategy::Mean } else { MissingStrategy::Drop },
            scaler: Scaler { mean: vec![1.0, 1.0], scale: vec![2.0, 0.5] },
            target_scaler: None,
            dropped_columns: vec![],
        })
    }

    #[test]
    fn fills_encodes_and_scales() {
        let p = prep(true);
        let mut out = [0f32; 2];
        p.transform_row([ValueRef::Number(5.0), ValueRef::Text("red")].into_iter(), &mut out).unwrap();
        assert_eq!(out, [2.0, 2.0]);
        p.transform_row([ValueRef::Missing, ValueRef::Text("NA")].into_iter(), &mut out).unwrap();
        assert_eq!(out, [0.5, 0.0]);
        p.transform_row([ValueRef::Text(" 3 "), ValueRef::Missing].into_iter(), &mut out).unwrap();
        assert_eq!(out, [1.0, 0.0]);
        p.transform_row([ValueRef::Number(f64::NAN), ValueRef::Text("blue")].into_iter(), &mut out).unwrap();
        assert_eq!(out, [0.5, -2.0]);
    }

    #[test]
    fn errors_name_column_and_value() {
        let p = prep(true);
        let mut out = [0f32; 2];
        let e = p.transform_row([ValueRef::Number(1.0), ValueRef::Text("purple")].into_iter(), &mut out).unwrap_err();
        assert!(
            matches!(&e, PredictError::UnknownCategory { column, value, .. } if column == "color" && value == "purple")
        );
        assert!(e.to_string().contains("\"blue\""), "{e}");
        let e = p.transform_row([ValueRef::Text("abc"), ValueRef::Missing].into_iter(), &mut out).unwrap_err();
        assert_eq!(e, PredictError::NotANumber { column: "x".into(), value: "abc".into() });
        let e =
            p.transform_row([ValueRef::Number(f64::INFINITY), ValueRef::Missing].into_iter(), &mut out).unwrap_err();
        assert!(matches!(e, PredictError::NonFinite { .. }));
        // Finite in f64 but beyond f32.
        let e = p.transform_row([ValueRef::Number(1e39), ValueRef::Missing].into_iter(), &mut out).unwrap_err();
        assert!(matches!(e, PredictError::NonFinite { .. }));
        // Category text is trimmed.
        p.transform_row([ValueRef::Number(1.0), ValueRef::Text(" red ")].into_iter(), &mut out).unwrap();
        let e = p.transform_row([ValueRef::Number(1.0)].into_iter(), &mut out).unwrap_err();
        assert_eq!(e, PredictError::WrongFeatureCount { expected: 2, got: 1 });
    }

    #[test]
    fn drop_strategy_requires_values() {
        let p = prep(false);
        let mut out = [0f32; 2];
        let e = p.transform_row([ValueRef::Missing, ValueRef::Text("red")].into_iter(), &mut out).unwrap_err();
        assert_eq!(e, PredictError::MissingValue { column: "x".into() });
    }

    #[test]
    fn records_match_by_name() {
        let p = prep(true);
        let mut out = [0f32; 2];
        let lookup = |name: &str| match name {
            "color" => Some(ValueRef::Text("blue")),
            _ => None,
        };
        p.transform_record(lookup, &mut out).unwrap();
        assert_eq!(out, [0.5, -2.0]);
    }

    #[test]
    fn names_with_surrounding_whitespace_are_found_by_their_trim_unless_that_is_ambiguous() {
        let numeric = |names: &[&str]| {
            Preprocessor::new(&Preprocessing {
                feature_names: names.iter().map(|n| n.to_string()).collect(),
                features: names
                    .iter()
                    .map(|n| FeatureSpec { name: n.to_string(), kind: FeatureKind::Numeric { fill_value: None } })
                    .collect(),
                missing_strategy: MissingStrategy::Mean,
                scaler: Scaler { mean: vec![0.0; names.len()], scale: vec![1.0; names.len()] },
                target_scaler: None,
                dropped_columns: vec![],
            })
        };
        let p = numeric(&["aé\n", " b", "c"]);
        assert_eq!(
            [p.index_of("aé\n"), p.index_of("aé"), p.index_of(" aé "), p.index_of("b")],
            [Some(0), Some(0), Some(0), Some(1)]
        );
        assert_eq!((p.index_of(" c\t"), p.index_of("d")), (Some(2), None));
        // "x" is a name of its own, and "y " and " y" share a trim: neither is guessed.
        let p = numeric(&["x ", "x", "y ", " y"]);
        assert_eq!(
            [p.index_of("x"), p.index_of("x "), p.index_of("y"), p.index_of(" y")],
            [Some(1), Some(0), None, Some(3)]
        );
    }

    #[test]
    fn numbers_match_numeric_looking_categories() {
        let mut pp = prep(true);
        if let Encoder::Categorical { codes, .. } = &mut pp.encoders[1] {
            codes.insert("3".into(), 1);
        }
        let mut out = [0f32; 2];
        pp.transform_row([ValueRef::Number(1.0), ValueRef::Number(3.0)].into_iter(), &mut out).unwrap();
        assert_eq!(out, [0.0, 0.0]);
    }
}
