//! ONNX export of the whole prediction pipeline (`trainer export --format onnx`), so Triton's
//! ONNX backend, KServe and onnxruntime users can serve our models.
//!
//! The graph (IR 8, opset 17 + `ai.onnx.ml` 3, symbolic batch dimension `N`):
//! - inputs: an all-numeric model takes one FLOAT `input` `[N, n_features]`; a model with
//!   categories takes one input per feature, named by `feature_names`, each `[N, 1]` (FLOAT for
//!   numeric features, STRING for categorical ones). NaN (or `""` for text) is missing.
//! - imputation: `Where(IsNaN(x), fill, x)`; categories: `ai.onnx.ml.LabelEncoder` (text →
//!   index; `""` and categories never seen in training map to the fill value, as unseen
//!   categories did in the validation and test splits). Text must be the category's canonical
//!   spelling (as listed in the metadata); the inference core also trims and canonicalises numbers.
//! - scaling `Sub`/`Div`, then the MLP as the core computes it (BatchNorm folded into the next
//!   `Gemm`, see [`inference::forward::FoldedLayer`]), activations (GELU from `Erf`: opset 17 has none);
//! - outputs: `probabilities` `[N, k]` (`Softmax`), `predicted_class` INT64 `[N]`,
//!   `predicted_label` STRING `[N]`; regression: `predicted_value` `[N, 1]` in target units.
//!
//! The protobuf messages are written by hand with `prost`'s derive (no `protoc`, no build
//! script): the dozen messages needed, wire-compatible with `onnx/onnx.proto`.

use inference::activation::LEAKY_RELU_SLOPE;
use inference::spec::{Activation, FeatureKind, MissingStrategy, TaskType};
use inference::Model;
use prost::Message;

/// The default-domain opset the graph uses.
pub const OPSET: i64 = 17;
/// The `ai.onnx.ml` opset.
pub const ML_OPSET: i64 = 3;
/// The IR version for these opsets.
pub const IR_VERSION: i64 = 8;

const FLOAT: i32 = 1;
const INT64: i32 = 7;
const STRING: i32 = 8;
const ML: &str = "ai.onnx.ml";

// Field numbers from onnx/onnx.proto (ONNX 1.23).
#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(string, tag = "3")]
    producer_version: String,
    #[prost(string, tag = "6")]
    doc_string: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
    #[prost(string, tag = "7")]
    domain: String,
}

#[derive(Clone, PartialEq, Message)]
struct AttributeProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(float, tag = "2")]
    f: f32,
    #[prost(int64, tag = "3")]
    i: i64,
    #[prost(float, repeated, tag = "7")]
    floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    ints: Vec<i64>,
    #[prost(bytes = "vec", repeated, tag = "9")]
    strings: Vec<Vec<u8>>,
    #[prost(int32, tag = "20")]
    r#type: i32,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(bytes = "vec", repeated, tag = "6")]
    string_data: Vec<Vec<u8>>,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(bytes = "vec", tag = "9")]
    raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TypeProtoTensor>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProtoTensor {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(int64, optional, tag = "1")]
    dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    dim_param: Option<String>,
}

/// An attribute value.
enum Attr<'a> {
    Float(f32),
    Int(i64),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<&'a str>),
}

fn attr(name: &str, v: Attr<'_>) -> AttributeProto {
    // Attribute types (onnx.proto AttributeType): FLOAT 1, INT 2, FLOATS 6, INTS 7, STRINGS 8.
    let mut a = AttributeProto { name: name.into(), ..Default::default() };
    match v {
        Attr::Float(f) => (a.r#type, a.f) = (1, f),
        Attr::Int(i) => (a.r#type, a.i) = (2, i),
        Attr::Floats(f) => (a.r#type, a.floats) = (6, f),
        Attr::Ints(i) => (a.r#type, a.ints) = (7, i),
        Attr::Strings(s) => (a.r#type, a.strings) = (8, s.into_iter().map(|s| s.as_bytes().to_vec()).collect()),
    }
    a
}

fn value_info(name: &str, elem_type: i32, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Some(v) => Dimension { dim_value: Some(*v), dim_param: None },
            None => Dimension { dim_value: None, dim_param: Some("N".into()) },
        })
        .collect();
    let tensor_type = TypeProtoTensor { elem_type, shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto { name: name.into(), r#type: Some(TypeProto { tensor_type: Some(tensor_type) }) }
}

/// Nodes and initializers being assembled, with fresh value names.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    next: usize,
}

impl Graph {
    fn fresh(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("{hint}_{}", self.next)
    }

    fn node(&mut self, op: &str, domain: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) {
        let name = self.fresh(op);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: outputs.iter().map(|s| (*s).to_owned()).collect(),
            name,
            op_type: op.into(),
            attribute: attrs,
            domain: domain.into(),
        });
    }

    /// `op(inputs…)` into a fresh value; returns its name.
    fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(&op.to_ascii_lowercase());
        self.node(op, "", inputs, &[&out], attrs);
        out
    }

    fn floats(&mut self, hint: &str, dims: &[i64], v: &[f32]) -> String {
        let name = self.fresh(hint);
        let raw_data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.inits.push(TensorProto {
            dims: dims.to_vec(),
            data_type: FLOAT,
            name: name.clone(),
            raw_data,
            ..Default::default()
        });
        name
    }
}

/// The ONNX model of `model`'s whole prediction pipeline, serialised.
pub fn export(model: &Model) -> Vec<u8> {
    let spec = model.spec();
    let p = &spec.preprocessing;
    let n = model.num_features() as i64;
    let mut g = Graph::default();
    let mut inputs = Vec::new();
    let numeric_only = model.preprocessor().is_numeric_only();
    let fill_of = |f: &FeatureKind| -> f32 {
        match f {
            FeatureKind::Numeric { fill_value } => fill_value.unwrap_or(f32::NAN),
            FeatureKind::Categorical { categories, fill_value } => {
                fill_value.as_ref().and_then(|v| categories.iter().position(|c| c == v)).map_or(f32::NAN, |i| i as f32)
            }
        }
    };
    let x = if numeric_only {
        inputs.push(value_info("input", FLOAT, &[None, Some(n)]));
        let fill: Vec<f32> = p.features.iter().map(|f| fill_of(&f.kind)).collect();
        let fill = g.floats("fill", &[n], &fill);
        let nan = g.op("IsNaN", &["input"], vec![]);
        g.op("Where", &[&nan, &fill, "input"], vec![])
    } else {
        let mut columns = Vec::new();
        for f in &p.features {
            let fill = fill_of(&f.kind);
            let col = match &f.kind {
                FeatureKind::Numeric { .. } => {
                    inputs.push(value_info(&f.name, FLOAT, &[None, Some(1)]));
                    let fill = g.floats("fill", &[1], &[fill]);
                    let nan = g.op("IsNaN", &[&f.name], vec![]);
                    g.op("Where", &[&nan, &fill, &f.name], vec![])
                }
                FeatureKind::Categorical { categories, fill_value } => {
                    inputs.push(value_info(&f.name, STRING, &[None, Some(1)]));
                    // Missing ("") and unseen text take the fill's code (NaN without one).
                    let default = fill_value.as_ref().and_then(|v| categories.iter().position(|c| c == v));
                    let mut keys: Vec<&str> = categories.iter().map(String::as_str).collect();
                    let mut values: Vec<f32> = (0..categories.len()).map(|i| i as f32).collect();
                    if !categories.iter().any(|c| c.is_empty()) {
                        keys.push("");
                        values.push(fill);
                    }
                    let code = g.fresh("code");
                    let attrs = vec![
                        attr("keys_strings", Attr::Strings(keys)),
                        attr("values_floats", Attr::Floats(values)),
                        attr("default_float", Attr::Float(default.map_or(f32::NAN, |d| d as f32))),
                    ];
                    g.node("LabelEncoder", ML, &[&f.name], &[&code], attrs);
                    code
                }
            };
            columns.push(col);
        }
        let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
        g.op("Concat", &cols, vec![attr("axis", Attr::Int(1))])
    };
    let mean = g.floats("mean", &[n], &p.scaler.mean);
    let scale = g.floats("scale", &[n], &p.scaler.scale);
    let centred = g.op("Sub", &[&x, &mean], vec![]);
    let mut h = g.op("Div", &[&centred, &scale], vec![]);
    for layer in model.network().folded() {
        let w = g.floats("weight", &[layer.in_dim as i64, layer.out_dim as i64], layer.weights);
        let b = g.floats("bias", &[layer.out_dim as i64], layer.bias);
        h = g.op("Gemm", &[&h, &w, &b], vec![]);
        h = match layer.activation {
            None => h,
            Some(Activation::Relu) => g.op("Relu", &[&h], vec![]),
            Some(Activation::Tanh) => g.op("Tanh", &[&h], vec![]),
            Some(Activation::Sigmoid) => g.op("Sigmoid", &[&h], vec![]),
            Some(Activation::LeakyRelu) => g.op("LeakyRelu", &[&h], vec![attr("alpha", Attr::Float(LEAKY_RELU_SLOPE))]),
            Some(Activation::Gelu) => {
                // 0.5·x·(1 + erf(x/√2)), as the core computes it.
                let inv_sqrt2 = g.floats("inv_sqrt2", &[], &[std::f32::consts::FRAC_1_SQRT_2]);
                let (one, half) = (g.floats("one", &[], &[1.0]), g.floats("half", &[], &[0.5]));
                let scaled = g.op("Mul", &[&h, &inv_sqrt2], vec![]);
                let erf = g.op("Erf", &[&scaled], vec![]);
                let plus = g.op("Add", &[&erf, &one], vec![]);
                let prod = g.op("Mul", &[&h, &plus], vec![]);
                g.op("Mul", &[&prod, &half], vec![])
            }
        };
    }
    let k = model.output_width() as i64;
    let outputs = match spec.task_type {
        TaskType::Classification => {
            g.node("Softmax", "", &[&h], &["probabilities"], vec![attr("axis", Attr::Int(1))]);
            let attrs = vec![attr("axis", Attr::Int(1)), attr("keepdims", Attr::Int(0))];
            g.node("ArgMax", "", &["probabilities"], &["predicted_class"], attrs);
            let classes = model.classes().unwrap_or_default();
            let attrs = vec![
                attr("keys_int64s", Attr::Ints((0..classes.len() as i64).collect())),
                attr("values_strings", Attr::Strings(classes.iter().map(String::as_str).collect())),
            ];
            g.node("LabelEncoder", ML, &["predicted_class"], &["predicted_label"], attrs);
            vec![
                value_info("probabilities", FLOAT, &[None, Some(k)]),
                value_info("predicted_class", INT64, &[None]),
                value_info("predicted_label", STRING, &[None]),
            ]
        }
        TaskType::Regression => {
            let t = p.target_scaler.unwrap_or(inference::spec::TargetScaler { mean: 0.0, scale: 1.0 });
            let (ts, tm) =
                (g.floats("target_scale", &[1], &[t.scale as f32]), g.floats("target_mean", &[1], &[t.mean as f32]));
            let scaled = g.op("Mul", &[&h, &ts], vec![]);
            g.node("Add", "", &[&scaled, &tm], &["predicted_value"], vec![]);
            vec![value_info("predicted_value", FLOAT, &[None, Some(1)])]
        }
    };
    let mut doc =
        format!("{} of {} ({}), exported by trainer", spec.task_type.as_str(), spec.model_id, spec.weights_sha256);
    if p.missing_strategy == MissingStrategy::Drop {
        doc.push_str("; trained without fill values (missing_strategy drop): missing inputs give NaN outputs");
    }
    let meta = |key: &str, value: String| StringStringEntryProto { key: key.into(), value };
    let names = serde_json::to_string(&p.feature_names).unwrap_or_default();
    let graph =
        GraphProto { node: g.nodes, name: "pipeline".into(), initializer: g.inits, input: inputs, output: outputs };
    ModelProto {
        ir_version: IR_VERSION,
        producer_name: "trainer".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: doc,
        graph: Some(graph),
        opset_import: vec![
            OperatorSetIdProto { domain: String::new(), version: OPSET },
            OperatorSetIdProto { domain: ML.into(), version: ML_OPSET },
        ],
        metadata_props: vec![meta("model_id", spec.model_id.clone()), meta("feature_names", names)],
    }
    .encode_to_vec()
}
