//! A fused CPU training step for the MLP: forward, backward and optimizer update written out
//! over reused host buffers, with the GEMMs done by the `gemm` crate (the one candle's CPU
//! backend uses).
//!
//! Why: profiling the candle path at batch 32–256 shows the time going to per-op tensor
//! allocation and dispatch (dozens of small ops per layer, forward and backward, plus ~12 per
//! parameter in the optimizer), not to arithmetic. This path computes the same function —
//! a test checks its loss, gradients and running statistics against candle's autograd
//! (≤ 1e-5) — and draws dropout masks from the same seeded stream, so runs stay reproducible.

use std::collections::BTreeMap;

use gemm::{gemm, Parallelism};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use inference::spec::{Activation, Architecture};
use inference::Tensor;

use super::optim::{OptimizerSettings, StepCoefficients};
use super::{BatchTargets, HostBatch, ParamLayout, Snapshot, TrainSet, Trainable, BN_MOMENTUM};
use crate::error::TrainingError;

/// C (m×n, row-major) = [C +] op(A)·op(B). `a` holds A as m×k row-major, or k×m when `a_t`;
/// `b` holds B as k×n, or n×k when `b_t`.
#[allow(clippy::too_many_arguments)]
fn matmul(c: &mut [f32], a: &[f32], a_t: bool, b: &[f32], b_t: bool, m: usize, k: usize, n: usize, accumulate: bool) {
    assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n, "matmul: buffers too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let (a_rs, a_cs) = if a_t { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if b_t { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the assert above keeps every element gemm addresses (row stride × rows,
    // column stride × columns, as set up here) inside the three slices.
    unsafe {
        gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            // One thread: measured on 2 cores, gemm's rayon split made batch 256 slower (197k vs 301k rows/s).
            Parallelism::None,
        )
    }
}

/// One tensor with its gradient and optimizer state (in [`ParamLayout`] order).
struct Param {
    data: Vec<f32>,
    grad: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    trainable: bool,
}

/// Per-layer activations kept for the backward pass, and the layer's per-column scratch.
#[derive(Default)]
struct Cache {
    z: Vec<f32>,
    mask: Vec<f32>,
    xhat: Vec<f32>,
    y: Vec<f32>,
    inv_std: Vec<f32>,
    /// Batch mean and variance (forward), then dγ, dβ and the backward coefficients.
    cols: [Vec<f32>; 5],
}

/// The MLP as host buffers, trained by hand-written forward/backward passes.
pub struct FusedMlp {
    arch: Architecture,
    layout: ParamLayout,
    params: Vec<Param>,
    caches: Vec<Cache>,
    out: Vec<f32>,
    dout: Vec<f32>,
    dy: Vec<f32>,
    dz: Vec<f32>,
    /// Random bits of the dropout masks, drawn in bulk.
    bits: Vec<u32>,
    optimizer: OptimizerSettings,
    step: i32,
    /// Batch gathering and the running loss.
    batch: HostBatch,
}

/// Sum over rows of a rows × cols matrix.
fn column_sums(x: &[f32], cols: usize, out: &mut [f32]) {
    out.fill(0.0);
    for row in x.chunks_exact(cols) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// Expands `$body` once per activation with `$a` bound to it as a constant, so the element
/// loops inside call `apply`/`derivative` without a branch and vectorise. Why: with the match
/// per element, the profile of a batch-256 run showed these loops scalar and taking more
/// time than the GEMMs.
macro_rules! per_activation {
    ($act:expr, $a:ident => $body:block) => {
        match $act {
            Activation::Relu => {
                let $a = Activation::Relu;
                $body
            }
            Activation::LeakyRelu => {
                let $a = Activation::LeakyRelu;
                $body
            }
            Activation::Tanh => {
                let $a = Activation::Tanh;
                $body
            }
            Activation::Sigmoid => {
                let $a = Activation::Sigmoid;
                $body
            }
            Activation::Gelu => {
                let $a = Activation::Gelu;
                $body
            }
        }
    };
}

/// Inverted-dropout multipliers (0 with probability `p`, else `keep`) from `rng`, drawn as the
/// candle path draws them (`rng.random::<f32>() < p` per element, in order) but in bulk: a
/// block fill yields the same u32 stream as one `next_u32` per element.
fn dropout_mask(rng: &mut ChaCha8Rng, p: f32, keep: f32, bits: &mut Vec<u32>, mask: &mut [f32]) {
    if p <= 0.0 {
        mask.fill(1.0);
        return;
    }
    bits.resize(mask.len(), 0);
    rng.fill(&mut bits[..]);
    // rand's f32 from a u32: the top 24 bits times 2⁻²⁴.
    const SCALE: f32 = 1.0 / (1u32 << 24) as f32;
    for (m, b) in mask.iter_mut().zip(bits.iter()) {
        *m = if (b >> 8) as f32 * SCALE < p { 0.0 } else { keep };
    }
}

impl FusedMlp {
    /// Take over `tensors` (named and shaped as the bundle defines) as the starting weights.
    pub fn new(
        arch: &Architecture,
        tensors: &BTreeMap<String, Tensor>,
        optimizer: OptimizerSettings,
    ) -> Result<Self, TrainingError> {
        let layout = ParamLayout::new(arch);
        let params = layout
            .take(tensors)?
            .into_iter()
            .zip(&layout.tensors)
            .map(|(data, slot)| {
                let n = data.len();
                Param { data, grad: vec![0.0; n], m: vec![0.0; n], v: vec![0.0; n], trainable: slot.trainable }
            })
            .collect();
        Ok(Self {
            caches: arch.hidden_dims.iter().map(|_| Cache::default()).collect(),
            arch: arch.clone(),
            layout,
            params,
            out: Vec::new(),
            dout: Vec::new(),
            dy: Vec::new(),
            dz: Vec::new(),
            bits: Vec::new(),
            optimizer,
            step: 0,
            batch: HostBatch::default(),
        })
    }

    fn p(&self, index: usize) -> &[f32] {
        &self.params[index].data
    }

    /// The architecture.
    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    /// Training-mode forward (dropout from `rng`, batch statistics, running statistics
    /// updated), loss, and gradients into each parameter's `grad`. Returns the mean loss.
    pub fn forward_backward(&mut self, x: &[f32], rows: usize, y: &BatchTargets<'_>, rng: &mut ChaCha8Rng) -> f64 {
        let act = self.arch.activation;
        let p = self.arch.dropout_rate as f32;
        let keep = 1.0 / (1.0 - p);
        let eps = self.arch.batch_norm_eps as f32;
        let n_hidden = self.arch.hidden_dims.len();
        let bf = rows as f32;
        let mut fan_in = self.arch.input_dim;
        for li in 0..n_hidden {
            let slots = self.layout.hidden[li];
            let h = slots.width;
            let mut c = std::mem::take(&mut self.caches[li]);
            for buf in [&mut c.z, &mut c.mask, &mut c.xhat, &mut c.y] {
                buf.resize(rows * h, 0.0);
            }
            c.inv_std.resize(h, 0.0);
            for col in &mut c.cols {
                col.resize(h, 0.0);
            }
            {
                let input: &[f32] = if li == 0 { x } else { &self.caches[li - 1].y };
                matmul(&mut c.z, input, false, self.p(slots.weight), true, rows, fan_in, h, false);
            }
            // Dropout masks in the same order and from the same stream as the candle path.
            dropout_mask(rng, p, keep, &mut self.bits, &mut c.mask);
            // z += b; d = act(z)·mask, kept in xhat until normalised.
            let bias = self.p(slots.bias);
            per_activation!(act, a => {
                for ((zr, mr), dr) in c.z.chunks_exact_mut(h).zip(c.mask.chunks_exact(h)).zip(c.xhat.chunks_exact_mut(h)) {
                    for (((z, b), m), d) in zr.iter_mut().zip(bias).zip(mr).zip(dr.iter_mut()) {
                        *z += b;
                        *d = a.apply(*z) * m;
                    }
                }
            });
            let [mean, var, ..] = &mut c.cols;
            column_sums(&c.xhat, h, mean);
            mean.iter_mut().for_each(|m| *m /= bf);
            var.fill(0.0);
            for row in c.xhat.chunks_exact(h) {
                for ((v, d), m) in var.iter_mut().zip(row).zip(mean.iter()) {
                    *v += (d - m) * (d - m);
                }
            }
            var.iter_mut().for_each(|v| *v /= bf);
            for (s, v) in c.inv_std.iter_mut().zip(var.iter()) {
                *s = 1.0 / (v + eps).sqrt();
            }
            let (gamma, beta) = (self.p(slots.gamma), self.p(slots.beta));
            for (xrow, yrow) in c.xhat.chunks_exact_mut(h).zip(c.y.chunks_exact_mut(h)) {
                for ((((x, y), m), s), (g, b)) in
                    xrow.iter_mut().zip(yrow.iter_mut()).zip(mean.iter()).zip(&c.inv_std).zip(gamma.iter().zip(beta))
                {
                    *x = (*x - m) * s;
                    *y = *x * g + b;
                }
            }
            let mom = BN_MOMENTUM as f32;
            let unbias = bf / (bf - 1.0);
            for (r, m) in self.params[slots.running_mean].data.iter_mut().zip(mean.iter()) {
                *r = *r * (1.0 - mom) + m * mom;
            }
            for (r, v) in self.params[slots.running_var].data.iter_mut().zip(var.iter()) {
                *r = *r * (1.0 - mom) + v * (mom * unbias);
            }
            self.caches[li] = c;
            fan_in = h;
        }

        // Output layer, loss and its gradient.
        let k = self.arch.output_dim;
        let (o, ob) = (self.layout.out_weight, self.layout.out_bias);
        let last: &[f32] = if n_hidden == 0 { x } else { &self.caches[n_hidden - 1].y };
        self.out.resize(rows * k, 0.0);
        self.dout.resize(rows * k, 0.0);
        matmul(&mut self.out, last, false, &self.params[o].data, true, rows, fan_in, k, false);
        for row in self.out.chunks_exact_mut(k) {
            row.iter_mut().zip(&self.params[ob].data).for_each(|(z, b)| *z += b);
        }
        let mut loss = 0f64;
        match y {
            BatchTargets::Classes(ids) => {
                for ((row, drow), &t) in self.out.chunks_exact(k).zip(self.dout.chunks_exact_mut(k)).zip(ids.iter()) {
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
                    let lse = max + sum.ln();
                    loss += f64::from(lse - row[t as usize]);
                    for (j, (d, v)) in drow.iter_mut().zip(row).enumerate() {
                        *d = ((v - lse).exp() - f32::from(u8::from(j == t as usize))) / bf;
                    }
                }
            }
            BatchTargets::Values(vals) => {
                for ((o, d), t) in self.out.iter().zip(self.dout.iter_mut()).zip(vals.iter()) {
                    let diff = o - t;
                    loss += f64::from(diff * diff);
                    *d = 2.0 * diff / bf;
                }
            }
        }

        // Backward: output layer.
        let (wo_grad, rest) = self.params[o..].split_at_mut(1);
        matmul(&mut wo_grad[0].grad, &self.dout, true, last, false, k, rows, fan_in, false);
        column_sums(&self.dout, k, &mut rest[0].grad);
        self.dy.resize(rows * fan_in, 0.0);
        matmul(&mut self.dy, &self.dout, false, &self.params[o].data, false, rows, k, fan_in, false);

        // Hidden layers, last to first.
        for li in (0..n_hidden).rev() {
            let slots = self.layout.hidden[li];
            let (h, in_dim) = (slots.width, slots.in_dim);
            let mut c = std::mem::take(&mut self.caches[li]);
            let gamma = &self.params[slots.gamma].data;
            // BatchNorm: dγ = Σ dy·x̂ and dβ = Σ dy, then dx through the batch statistics:
            // dd = inv_std/B·(B·dy·γ − Σdy·γ − x̂·Σdy·γ·x̂) = a·dy − c1 − x̂·c2 per column, with
            // a = inv_std·γ, c1 = a·dβ/B and c2 = a·dγ/B.
            let [dgamma, dbeta, ca, c1, c2] = &mut c.cols;
            dgamma.fill(0.0);
            dbeta.fill(0.0);
            for (dyrow, xrow) in self.dy.chunks_exact(h).zip(c.xhat.chunks_exact(h)) {
                for (((dg, db), d), x) in dgamma.iter_mut().zip(dbeta.iter_mut()).zip(dyrow).zip(xrow) {
                    *dg += d * x;
                    *db += d;
                }
            }
            for j in 0..h {
                ca[j] = c.inv_std[j] * gamma[j];
                c1[j] = ca[j] * dbeta[j] / bf;
                c2[j] = ca[j] * dgamma[j] / bf;
            }
            self.dz.resize(rows * h, 0.0);
            per_activation!(act, a => {
                for (((dzrow, dyrow), xrow), (zrow, mrow)) in self
                    .dz
                    .chunks_exact_mut(h)
                    .zip(self.dy.chunks_exact(h))
                    .zip(c.xhat.chunks_exact(h))
                    .zip(c.z.chunks_exact(h).zip(c.mask.chunks_exact(h)))
                {
                    for ((((dz, dy), x), (z, m)), ((ca, c1), c2)) in dzrow
                        .iter_mut()
                        .zip(dyrow)
                        .zip(xrow)
                        .zip(zrow.iter().zip(mrow))
                        .zip(ca.iter().zip(c1.iter()).zip(c2.iter()))
                    {
                        *dz = (ca * dy - c1 - x * c2) * m * a.derivative(*z);
                    }
                }
            });
            self.params[slots.gamma].grad.copy_from_slice(dgamma);
            self.params[slots.beta].grad.copy_from_slice(dbeta);
            self.caches[li] = c;
            let input: &[f32] = if li == 0 { x } else { &self.caches[li - 1].y };
            matmul(&mut self.params[slots.weight].grad, &self.dz, true, input, false, h, rows, in_dim, false);
            column_sums(&self.dz, h, &mut self.params[slots.bias].grad);
            if li > 0 {
                self.dy.resize(rows * in_dim, 0.0);
                matmul(&mut self.dy, &self.dz, false, &self.params[slots.weight].data, false, rows, h, in_dim, false);
            }
        }
        loss / rows as f64
    }

    /// One optimizer update from the gradients (see [`StepCoefficients`]).
    pub fn apply_gradients(&mut self) {
        self.step += 1;
        let c = StepCoefficients::at(&self.optimizer, self.step);
        let kind = self.optimizer.kind;
        for p in self.params.iter_mut().filter(|p| p.trainable) {
            c.apply(kind, &mut p.data, &mut p.grad, &mut p.m, &mut p.v);
        }
    }

    /// Eval-mode outputs (no dropout, running statistics), `rows × output_dim`.
    pub fn predict_raw(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let act = self.arch.activation;
        let mut cur = x.to_vec();
        let mut fan_in = self.arch.input_dim;
        for slots in &self.layout.hidden {
            let h = slots.width;
            let mut z = vec![0f32; rows * h];
            matmul(&mut z, &cur, false, self.p(slots.weight), true, rows, fan_in, h, false);
            let (b, g, beta, rm, rv) = (
                self.p(slots.bias),
                self.p(slots.gamma),
                self.p(slots.beta),
                self.p(slots.running_mean),
                self.p(slots.running_var),
            );
            let inv: Vec<f32> = rv.iter().map(|v| 1.0 / (v + self.arch.batch_norm_eps as f32).sqrt()).collect();
            for row in z.chunks_exact_mut(h) {
                for j in 0..h {
                    let a = act.apply(row[j] + b[j]);
                    row[j] = (a - rm[j]) * inv[j] * g[j] + beta[j];
                }
            }
            cur = z;
            fan_in = h;
        }
        let k = self.arch.output_dim;
        let mut out = vec![0f32; rows * k];
        matmul(&mut out, &cur, false, self.p(self.layout.out_weight), true, rows, fan_in, k, false);
        for row in out.chunks_exact_mut(k) {
            row.iter_mut().zip(self.p(self.layout.out_bias)).for_each(|(z, b)| *z += b);
        }
        out
    }

    #[cfg(test)]
    fn grads(&self) -> BTreeMap<String, Vec<f32>> {
        self.layout
            .tensors
            .iter()
            .zip(&self.params)
            .filter(|(_, p)| p.trainable)
            .map(|(slot, p)| (slot.name.clone(), p.grad.clone()))
            .collect()
    }
}

impl Trainable for FusedMlp {
    fn architecture(&self) -> &Architecture {
        &self.arch
    }

    fn engine(&self) -> &'static str {
        "fused"
    }

    fn train_batch(
        &mut self,
        data: &TrainSet<'_>,
        order: &[usize],
        range: std::ops::Range<usize>,
        rng: &mut ChaCha8Rng,
    ) -> Result<(), TrainingError> {
        let idx = &order[range];
        let mut batch = std::mem::take(&mut self.batch);
        let r = batch.step(data, idx, |x, y| {
            let l = self.forward_backward(x, idx.len(), y, rng);
            if l.is_finite() {
                self.apply_gradients();
            }
            Ok(l)
        });
        self.batch = batch;
        r
    }

    fn take_loss_sum(&mut self) -> Result<f64, TrainingError> {
        Ok(self.batch.take_loss_sum())
    }

    fn diverged(&self) -> bool {
        self.batch.diverged()
    }

    fn predict_raw(&self, x: &[f32], rows: usize) -> Result<Vec<f32>, TrainingError> {
        Ok(FusedMlp::predict_raw(self, x, rows))
    }

    fn snapshot(&self) -> Result<Snapshot, TrainingError> {
        Ok(self.params.iter().map(|p| p.data.clone()).collect())
    }

    fn restore(&mut self, s: &Snapshot) -> Result<(), TrainingError> {
        for (p, d) in self.params.iter_mut().zip(s) {
            p.data.copy_from_slice(d);
        }
        Ok(())
    }

    fn export(&self) -> Result<BTreeMap<String, Tensor>, TrainingError> {
        Ok(self.layout.named(self.params.iter().map(|p| p.data.clone()).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::candle::{cross_entropy, mse, CandleOptimizer, Mlp};
    use candle_core::{Device, Tensor as CTensor};
    use inference::config::OptimizerKind;
    use inference::spec::DEFAULT_BATCH_NORM_EPS;
    use rand::SeedableRng;

    fn arch(activation: Activation, output_dim: usize) -> Architecture {
        Architecture {
            input_dim: 5,
            hidden_dims: vec![12, 7],
            output_dim,
            dropout_rate: 0.3,
            activation,
            batch_norm_eps: DEFAULT_BATCH_NORM_EPS,
        }
    }

    fn adam(lr: f64, weight_decay: f64, kind: OptimizerKind) -> OptimizerSettings {
        OptimizerSettings { kind, lr, weight_decay }
    }

    fn batch(rows: usize, cols: usize) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        (0..rows * cols).map(|_| rng.random_range(-2.0f32..2.0)).collect()
    }

    /// Loss, gradients and running statistics equal candle's autograd for every activation and both losses.
    #[test]
    fn gradients_match_candle_autograd() {
        let rows = 9;
        let x = batch(rows, 5);
        let classes: Vec<u32> = (0..rows as u32).map(|i| i % 3).collect();
        let values: Vec<f32> = (0..rows).map(|i| i as f32 * 0.3 - 1.0).collect();
        for act in [Activation::Relu, Activation::Gelu, Activation::Tanh, Activation::LeakyRelu, Activation::Sigmoid] {
            for regression in [false, true] {
                let a = arch(act, if regression { 1 } else { 3 });
                let m = Mlp::new(&a, &mut ChaCha8Rng::seed_from_u64(1), &Device::Cpu).unwrap();
                let mut f = FusedMlp::new(&a, &m.export().unwrap(), adam(1e-3, 0.0, OptimizerKind::Adam)).unwrap();

                let xt = CTensor::from_slice(&x, (rows, 5), &Device::Cpu).unwrap();
                let out = m.forward_train(&xt, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
                let loss = if regression {
                    mse(&out, &CTensor::from_slice(&values, rows, &Device::Cpu).unwrap()).unwrap()
                } else {
                    cross_entropy(&out, &CTensor::from_slice(&classes, rows, &Device::Cpu).unwrap()).unwrap()
                };
                let grads = loss.backward().unwrap();
                let targets = if regression { BatchTargets::Values(&values) } else { BatchTargets::Classes(&classes) };
                let fused_loss = f.forward_backward(&x, rows, &targets, &mut ChaCha8Rng::seed_from_u64(2));
                let candle_loss = f64::from(loss.to_scalar::<f32>().unwrap());
                assert!((fused_loss - candle_loss).abs() < 1e-5, "{act:?}: loss {fused_loss} vs {candle_loss}");

                let fg = f.grads();
                for (name, var) in m.named_parameters() {
                    let Some(g) = grads.get(var.as_tensor()) else { continue };
                    let g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
                    let diff = g.iter().zip(&fg[&name]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                    assert!(diff <= 1e-5, "{act:?} regression={regression} {name}: max |Δgrad| {diff}");
                }
                let (ce, fe) = (m.export().unwrap(), Trainable::export(&f).unwrap());
                for name in ["hidden.0.bn.running_mean", "hidden.1.bn.running_var"] {
                    let diff =
                        ce[name].data.iter().zip(&fe[name].data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                    assert!(diff <= 1e-5, "{act:?} {name}: {diff}");
                }
            }
        }
    }

    /// One optimizer step moves the weights as candle's path does, for each optimizer.
    #[test]
    fn optimizer_steps_match_the_candle_optimizers() {
        let rows = 8;
        let x = batch(rows, 5);
        let classes: Vec<u32> = (0..rows as u32).map(|i| i % 3).collect();
        for kind in [OptimizerKind::Adam, OptimizerKind::Adamw, OptimizerKind::Sgd] {
            let a = arch(Activation::Relu, 3);
            let m = Mlp::new(&a, &mut ChaCha8Rng::seed_from_u64(1), &Device::Cpu).unwrap();
            let mut opt = CandleOptimizer::new(adam(0.01, 0.05, kind), m.parameters());
            let mut f = FusedMlp::new(&a, &m.export().unwrap(), adam(0.01, 0.05, kind)).unwrap();
            let xt = CTensor::from_slice(&x, (rows, 5), &Device::Cpu).unwrap();
            let yt = CTensor::from_slice(&classes, rows, &Device::Cpu).unwrap();
            for step in 0..3u64 {
                let out = m.forward_train(&xt, &mut ChaCha8Rng::seed_from_u64(step)).unwrap();
                opt.step(&cross_entropy(&out, &yt).unwrap().backward().unwrap()).unwrap();
                f.forward_backward(&x, rows, &BatchTargets::Classes(&classes), &mut ChaCha8Rng::seed_from_u64(step));
                f.apply_gradients();
            }
            // Adam divides by √v, so float noise in near-zero gradients (a Linear bias ahead of
            // BatchNorm) shows up amplified in the weights: compare at 1e-4 after three steps.
            let (ce, fe) = (m.export().unwrap(), Trainable::export(&f).unwrap());
            for (name, t) in &ce {
                let diff = t.data.iter().zip(&fe[name].data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(diff <= 1e-4, "{kind:?} {name}: {diff}");
            }
            let xe = FusedMlp::predict_raw(&f, &x, rows);
            let ye: Vec<f32> = m.forward_eval(&xt).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let diff = xe.iter().zip(&ye).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff <= 1e-5, "{kind:?} eval outputs: {diff}");
        }
    }
}
