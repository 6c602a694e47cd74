//! Explanations in requests and answers: the `explain` option of `/api/ml/predict` (and KServe
//! V1's `:explain`), and each explanation's JSON.
//!
//! ```text
//! "explain": true | {"class": 2 | "all" | "B", "method": "auto"|"exact"|"permutation", "permutations": 2, "seed": 0}
//! → "explanation": {"method", "background", "background_rows", "permutations"?, "class", "label",
//!                   "base_value", "output", "values": {feature: φ}, "standard_errors"?: {feature: se}}
//!   ("classes": [{class, label, base_value, output, values, …}] for "all"; no class for regression)
//! ```

use super::encode::{array, float, Obj, WriteJson};
use crate::error::{truncate_echo, RequestError};
use crate::explain::{Background, Explanation, Method, Options, OutputValues, Target, MAX_PERMUTATIONS};
use crate::json::{optional, value, Members};
use crate::model::Model;

/// How a request asked for explanations (the class may name a label, resolved per model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ask {
    class: Option<Result<usize, String>>,
    method: Method,
    permutations: Option<usize>,
    seed: u64,
}

impl Ask {
    /// Explain with the defaults.
    pub(crate) fn default_options() -> Self {
        Self { class: None, method: Method::Auto, permutations: None, seed: 0 }
    }

    /// Parse the `explain` value: `None` for `false` or `null`.
    pub(crate) fn parse(json: &str) -> Result<Option<Self>, RequestError> {
        let bad = |m: String| RequestError::Invalid(format!("`explain`: {m}"));
        match json.trim() {
            "false" | "null" => return Ok(None),
            "true" => return Ok(Some(Self::default_options())),
            _ => {}
        }
        let raw = Members::parse(json).map_err(|e| bad(e.to_string()))?;
        raw.only(&["class", "method", "permutations", "seed"], "`explain`")?;
        let method: Option<String> = optional(&raw, "method")?;
        let method = match method.as_deref() {
            None | Some("auto") => Method::Auto,
            Some("exact") => Method::Exact,
            Some("permutation") => Method::Permutation,
            Some(m) => return Err(bad(format!("unknown method {:?} (auto, exact, permutation)", truncate_echo(m)))),
        };
        let permutations: Option<usize> = optional(&raw, "permutations")?;
        if let Some(p) = permutations.filter(|&p| p == 0 || p > MAX_PERMUTATIONS) {
            return Err(bad(format!("permutations must be in 1..={MAX_PERMUTATIONS}, got {p}")));
        }
        // A class index, or a label (or "all").
        let class = match raw.get("class") {
            Some(c) if c.get().starts_with('"') => Some(Err(value::<String>(c, "class")?)),
            Some(c) => Some(Ok(value::<usize>(c, "class")?)),
            None => None,
        };
        let seed: Option<u64> = optional(&raw, "seed")?;
        Ok(Some(Self { class, method, permutations, seed: seed.unwrap_or(0) }))
    }

    /// The explainer options for `model`.
    pub(crate) fn options(&self, model: &Model, max_exact_features: usize) -> Result<Options, RequestError> {
        let bad = |m: String| RequestError::Invalid(format!("`explain.class`: {m}"));
        let k = model.output_width();
        let target = match &self.class {
            None => Target::Predicted,
            Some(Ok(i)) if *i < k => Target::Class(*i),
            Some(Ok(i)) => return Err(bad(format!("class {i} does not exist (the model has {k})"))),
            Some(Err(s)) if s == "all" => Target::All,
            Some(Err(label)) => match model.classes().and_then(|c| c.iter().position(|l| l == label)) {
                Some(i) => Target::Class(i),
                None => return Err(bad(format!("no class is labelled {:?}", truncate_echo(label)))),
            },
        };
        crate::explain::check_method(self.method, model.num_features(), max_exact_features)
            .map_err(|m| RequestError::Invalid(format!("`explain.method`: {m}")))?;
        let permutations = self.permutations.unwrap_or(crate::explain::DEFAULT_PERMUTATIONS);
        Ok(Options { target, method: self.method, permutations, seed: self.seed })
    }
}

/// An explanation with the model's names, as JSON.
pub(crate) struct Json<'a> {
    pub(crate) explanation: &'a Explanation,
    pub(crate) model: &'a Model,
}

impl Json<'_> {
    fn named(&self, out: &mut Vec<u8>, values: &[f64]) {
        let mut o = Obj::new(out);
        for (name, v) in self.model.feature_names().iter().zip(values) {
            float(o.key(name), *v as f32);
        }
        o.end();
    }

    fn output(&self, o: &mut Obj<'_>, v: &OutputValues) {
        if let Some(c) = v.class {
            o.uint("class", c);
            if let Some(label) = self.model.classes().and_then(|l| l.get(c)) {
                o.str("label", label);
            }
        }
        o.f32("base_value", v.base_value as f32).f32("output", v.output as f32);
        self.named(o.key("values"), &v.values);
        if self.explanation.method == Method::Permutation {
            self.named(o.key("standard_errors"), &v.standard_errors);
        }
    }
}

impl WriteJson for Json<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let e = self.explanation;
        let mut o = Obj::new(out);
        o.str("method", e.method.as_str());
        match e.background {
            Background::Stored(rows) => {
                o.str("background", "stored").uint("background_rows", rows);
            }
            Background::FillRow => {
                o.str("background", "fill_row").uint("background_rows", 1);
            }
        }
        if e.method == Method::Permutation {
            o.uint("permutations", e.permutations);
        }
        match e.outputs.as_slice() {
            [one] => self.output(&mut o, one),
            many => {
                array(o.key("classes"), many, |arr, v| {
                    let mut c = Obj::new(arr);
                    self.output(&mut c, v);
                    c.end();
                });
            }
        }
        o.end();
    }
}

/// One explanation's JSON (the CLI's and the JS API's).
pub fn explanation_json(model: &Model, e: &Explanation) -> String {
    let mut out = Vec::with_capacity(256);
    Json { explanation: e, model }.write_json(&mut out);
    String::from_utf8(out).unwrap_or_default()
}
