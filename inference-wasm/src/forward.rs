//! The MLP forward pass: eval-mode BatchNorm folded into the next Linear at load, weights
//! stored input-major so each step is the register-tiled GEMM of [`kernels::dense`] (which
//! LLVM vectorises: SSE/AVX natively, simd128 on wasm32).

use crate::bundle::{hidden_tensor_name, Tensor};
use crate::name_map::NameMap;
use crate::spec::{Activation, Architecture};

/// One dense layer y = act(x·Wᵀ + b), with W stored transposed (`wt[k * out + j]`).
#[derive(Debug, Clone)]
struct Dense {
    in_dim: usize,
    out_dim: usize,
    wt: Vec<f32>,
    b: Vec<f32>,
    act: Option<Activation>,
}

/// One layer as the network computes it: `y = act(x·B + b)`, with `B` stored `in × out`
/// row-major (BatchNorm already folded in). The ONNX export writes these as `Gemm`s.
pub struct FoldedLayer<'a> {
    /// Inputs.
    pub in_dim: usize,
    /// Outputs.
    pub out_dim: usize,
    /// `B`, `in_dim × out_dim`, row-major.
    pub weights: &'a [f32],
    /// `b`, `out_dim`.
    pub bias: &'a [f32],
    /// The activation after the layer (none after the output layer).
    pub activation: Option<Activation>,
}

/// A folded, inference-only MLP.
#[derive(Debug, Clone)]
pub struct Network {
    layers: Vec<Dense>,
    max_width: usize,
}

/// Rows processed per pass through all layers, so intermediate activations stay in cache.
const BLOCK_ROWS: usize = 64;

impl Network {
    /// Build from verified tensors, folding each hidden BatchNorm into the following Linear.
    pub(crate) fn new(arch: &Architecture, tensors: &NameMap<Tensor>) -> Self {
        let get = |name: &str| &tensors[name].data;
        let mut layers = Vec::with_capacity(arch.hidden_dims.len() + 1);
        // Affine step (s, t) left by the previous BatchNorm: z = s ⊙ a + t.
        let mut pending: Option<(Vec<f64>, Vec<f64>)> = None;
        let mut fan_in = arch.input_dim;
        let mut dims: Vec<(String, String, usize, Option<Activation>)> = arch
            .hidden_dims
            .iter()
            .enumerate()
            .map(|(i, &h)| {
                (hidden_tensor_name(i, "linear.weight"), hidden_tensor_name(i, "linear.bias"), h, Some(arch.activation))
            })
            .collect();
        dims.push(("out.weight".into(), "out.bias".into(), arch.output_dim, None));
        for (li, (wname, bname, out_dim, act)) in dims.into_iter().enumerate() {
            let w = get(&wname);
            let b = get(&bname);
            let mut wt = vec![0f32; fan_in * out_dim];
            let mut bias = vec![0f32; out_dim];
            for j in 0..out_dim {
                let mut bj = f64::from(b[j]);
                for k in 0..fan_in {
                    let wjk = f64::from(w[j * fan_in + k]);
                    let (s, t) = pending.as_ref().map_or((1.0, 0.0), |(s, t)| (s[k], t[k]));
                    wt[k * out_dim + j] = (wjk * s) as f32;
                    bj += wjk * t;
                }
                bias[j] = bj as f32;
            }
            layers.push(Dense { in_dim: fan_in, out_dim, wt, b: bias, act });
            pending = (li < arch.hidden_dims.len()).then(|| {
                let bn = |part: &str| get(&hidden_tensor_name(li, part));
                let (g, beta, mean, var) =
                    (bn("bn.weight"), bn("bn.bias"), bn("bn.running_mean"), bn("bn.running_var"));
                (0..out_dim)
                    .map(|k| {
                        let s = f64::from(g[k]) / (f64::from(var[k]) + arch.batch_norm_eps).sqrt();
                        (s, f64::from(beta[k]) - f64::from(mean[k]) * s)
                    })
                    .unzip()
            });
            fan_in = out_dim;
        }
        let max_width = layers.iter().map(|l| l.out_dim.max(l.in_dim)).max().unwrap_or(0);
        Self { layers, max_width }
    }

    /// The layers, first to last.
    pub fn folded(&self) -> impl Iterator<Item = FoldedLayer<'_>> {
        self.layers.iter().map(|l| FoldedLayer {
            in_dim: l.in_dim,
            out_dim: l.out_dim,
            weights: &l.wt,
            bias: &l.b,
            activation: l.act,
        })
    }

    /// Number of inputs.
    pub fn input_dim(&self) -> usize {
        self.layers.first().map_or(0, |l| l.in_dim)
    }

    /// Number of outputs.
    pub fn output_dim(&self) -> usize {
        self.layers.last().map_or(0, |l| l.out_dim)
    }

    /// Scratch floats [`Network::forward`] needs for `rows` rows.
    pub fn scratch_len(&self, rows: usize) -> usize {
        2 * rows.min(BLOCK_ROWS) * self.max_width
    }

    /// Forward `rows` rows of `x` (row-major, `input_dim` wide) into `out` (`output_dim` wide).
    /// `scratch` must hold [`Network::scratch_len`] floats.
    pub fn forward(&self, x: &[f32], rows: usize, out: &mut [f32], scratch: &mut [f32]) {
        let (n_in, n_out) = (self.input_dim(), self.output_dim());
        let fits = |len: usize, width: usize| rows.checked_mul(width).is_some_and(|need| len >= need);
        assert!(fits(x.len(), n_in) && fits(out.len(), n_out), "forward: buffers too small");
        let block_cap = rows.min(BLOCK_ROWS);
        let (buf_a, buf_b) = scratch[..2 * block_cap * self.max_width].split_at_mut(block_cap * self.max_width);
        let mut r0 = 0;
        while r0 < rows {
            let r = (rows - r0).min(BLOCK_ROWS);
            let x_block = &x[r0 * n_in..(r0 + r) * n_in];
            let out_block = &mut out[r0 * n_out..(r0 + r) * n_out];
            // Ping-pong between the two scratch halves; `in_a` says where the last output is.
            let mut in_a = false;
            let last = self.layers.len() - 1;
            for (li, layer) in self.layers.iter().enumerate() {
                let (k, m) = (layer.in_dim * r, layer.out_dim * r);
                match (li == 0, li == last, in_a) {
                    (true, true, _) => layer.apply(x_block, r, out_block),
                    (true, false, _) => layer.apply(x_block, r, &mut buf_a[..m]),
                    (false, true, true) => layer.apply(&buf_a[..k], r, out_block),
                    (false, true, false) => layer.apply(&buf_b[..k], r, out_block),
                    (false, false, true) => layer.apply(&buf_a[..k], r, &mut buf_b[..m]),
                    (false, false, false) => layer.apply(&buf_b[..k], r, &mut buf_a[..m]),
                }
                in_a = if li == 0 { true } else { !in_a };
            }
            r0 += r;
        }
    }
}

impl Dense {
    /// y (rows × out) = act(x (rows × in) · Wᵀ + b).
    fn apply(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        let layer = kernels::DenseRef { in_dim: self.in_dim, out_dim: self.out_dim, wt: &self.wt, b: &self.b };
        kernels::dense(layer, x, rows, y);
        if let Some(act) = self.act {
            act.apply_slice(&mut y[..rows * self.out_dim]);
        }
    }
}

/// Numerically stable softmax in place.
pub use kernels::softmax;
