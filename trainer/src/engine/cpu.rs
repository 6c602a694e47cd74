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

use inference::config::OptimizerKind;
use inference::spec::{Activation, Architecture};
use inference::Tensor;

use super::optim::{OptimizerSettings, StepCoefficients};
use super::team::Team;
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

/// A hidden layer's activations over one share's rows, kept for the backward pass.
#[derive(Default)]
struct Cache {
    z: Vec<f32>,
    mask: Vec<f32>,
    /// act(z)·mask, then x̂ once normalised.
    xhat: Vec<f32>,
    y: Vec<f32>,
}

/// A hidden layer's per-column BatchNorm state over the whole batch.
#[derive(Default)]
struct LayerStats {
    mean: Vec<f32>,
    var: Vec<f32>,
    inv_std: Vec<f32>,
    /// Backward: dx̂ = a·dy − c1 − x̂·c2 per column.
    a: Vec<f32>,
    c1: Vec<f32>,
    c2: Vec<f32>,
}

/// Batches of at least this many rows are cut into two shares, stepped by the [`Team`]'s two
/// threads between the batch-wide reductions. Whether or not a second thread runs, the cut
/// is the same, so the sums, and with them the weights, do not depend on the thread count.
/// Smaller batches run as one share: there a phase is too short to split.
pub const MIN_SPLIT_ROWS: usize = 64;

/// Rows per eval-mode forward pass: a whole validation split at once held rows × width floats
/// per layer (30 MB for 40,000 rows at width 128, the biggest allocation of a run). 1024 rows
/// (0.7 MB at width 128) still make GEMMs large enough to run at full speed.
pub const EVAL_CHUNK_ROWS: usize = 1024;

/// One share of a batch's rows with its activations and its partial sums.
#[derive(Default)]
struct Share {
    /// First row and number of rows in the batch.
    start: usize,
    rows: usize,
    layers: Vec<Cache>,
    out: Vec<f32>,
    dout: Vec<f32>,
    dy: Vec<f32>,
    dz: Vec<f32>,
    /// Random bits of the dropout masks, drawn in bulk.
    bits: Vec<u32>,
    /// Partial column sums of the current phase.
    sums: [Vec<f32>; 2],
    /// Partial gradients of each Linear's weight and bias, by parameter index.
    grads: Vec<Vec<f32>>,
    loss: f64,
}

/// The MLP as host buffers, trained by hand-written forward/backward passes.
pub struct FusedMlp {
    arch: Architecture,
    layout: ParamLayout,
    params: Vec<Param>,
    stats: Vec<LayerStats>,
    shares: Vec<Share>,
    team: Team,
    optimizer: OptimizerSettings,
    step: i32,
    /// Batch gathering and the running loss.
    batch: HostBatch,
    /// The next step's dropout masks, drawn during this one's backward pass.
    ahead: MasksAhead,
}

/// Dropout masks drawn one step ahead. With one share (batches under [`MIN_SPLIT_ROWS`]) the
/// helper thread is idle through the backward pass, and drawing a layer's masks took longer
/// than its forward GEMM, so the caller waited on it; now the helper draws the next step's
/// masks while the caller runs the backward pass.
#[derive(Default)]
struct MasksAhead {
    /// Where in which stream, and for how many rows, `masks` were drawn; `None` when there
    /// are none. A step uses them only if its own start matches, so a reseeded or moved
    /// stream, or a batch of another size, draws afresh and the weights stay the same bits.
    key: Option<MaskKey>,
    /// One rows × width buffer per hidden layer.
    masks: Vec<Vec<f32>>,
    bits: Vec<u32>,
}

/// A dropout stream's position and the batch rows the masks cover.
#[derive(Clone, Copy, PartialEq, Eq)]
struct MaskKey {
    seed: [u8; 32],
    stream: u64,
    word_pos: u128,
    rows: usize,
}

impl MaskKey {
    fn at(rng: &ChaCha8Rng, rows: usize) -> Self {
        Self { seed: rng.get_seed(), stream: rng.get_stream(), word_pos: rng.get_word_pos(), rows }
    }
}

impl MasksAhead {
    /// Draw every layer's masks of a one-share step from `stream`.
    fn draw(&mut self, stream: &MaskStream<'_>) {
        self.masks.resize_with(stream.widths.len(), Vec::new);
        for (li, mask) in self.masks.iter_mut().enumerate() {
            mask.resize(stream.batch_rows * stream.widths[li], 0.0);
            stream.fill(li, 0, &mut self.bits, mask);
        }
    }
}

/// Where a step's dropout masks come from: its stream from the step's start, layer after
/// layer, each `batch_rows × width` in row order (the candle path's order). The one place
/// that fixes which bits a mask gets, whichever thread or step draws it.
struct MaskStream<'a> {
    start: &'a ChaCha8Rng,
    widths: &'a [usize],
    batch_rows: usize,
    p: f32,
}

impl MaskStream<'_> {
    /// Hidden layer `li`'s inverted-dropout multipliers (0 with probability `p`, else
    /// 1/(1−p)) for the rows from `first_row` on, as many as `mask` holds. Drawn as the candle
    /// path draws them (`rng.random::<f32>() < p` per element, in order) but in bulk: a block
    /// fill yields the same u32 stream as one `next_u32` per element.
    fn fill(&self, li: usize, first_row: usize, bits: &mut Vec<u32>, mask: &mut [f32]) {
        let (p, keep) = (self.p, 1.0 / (1.0 - self.p));
        if p <= 0.0 {
            mask.fill(1.0);
            return;
        }
        let before: usize = self.widths[..li].iter().sum();
        let mut rng = self.start.clone();
        rng.set_word_pos(self.start.get_word_pos() + (self.batch_rows * before + first_row * self.widths[li]) as u128);
        bits.resize(mask.len(), 0);
        rng.fill(&mut bits[..]);
        // rand's f32 from a u32: the top 24 bits times 2⁻²⁴.
        const SCALE: f32 = 1.0 / (1u32 << 24) as f32;
        for (m, b) in mask.iter_mut().zip(bits.iter()) {
            *m = if (b >> 8) as f32 * SCALE < p { 0.0 } else { keep };
        }
    }
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
        per_activation!(@arms $act, $a, $body, Relu, LeakyRelu, Tanh, Sigmoid, Gelu)
    };
    (@arms $act:expr, $a:ident, $body:block, $($variant:ident),+) => {
        match $act {
            $(Activation::$variant => {
                let $a = Activation::$variant;
                $body
            })+
        }
    };
}

/// Defines `fn $name(args)` that runs the `#[inline(always)]` `$imp(args)` compiled for AVX
/// where the CPU has it (checked once, then cached), so its element loops take 8 lanes where the
/// SSE2 baseline of a portable build takes 4. AVX alone has no fused multiply-add, and the loops
/// reduce nothing across lanes, so the results are the same bits either way. (The GEMMs
/// dispatch on their own, inside `gemm`.)
macro_rules! avx_dispatch {
    ($(#[$doc:meta])* fn $name:ident = $imp:ident($($arg:ident: $ty:ty),* $(,)?);) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx($($arg: $ty),*) {
                $imp($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx") {
                // SAFETY: the CPU has AVX, the one feature `avx` is compiled for.
                return unsafe { avx($($arg),*) };
            }
            $imp($($arg),*)
        }
    };
}

avx_dispatch! {
    /// `z += b; d = act(z)·mask`, row by row (`d` is kept in xhat until normalised).
    fn bias_activation = bias_activation_loops(act: Activation, z: &mut [f32], bias: &[f32], mask: &[f32], d: &mut [f32]);
}

#[inline(always)]
fn bias_activation_loops(act: Activation, z: &mut [f32], bias: &[f32], mask: &[f32], d: &mut [f32]) {
    let h = bias.len();
    per_activation!(act, a => {
        for ((zr, mr), dr) in z.chunks_exact_mut(h).zip(mask.chunks_exact(h)).zip(d.chunks_exact_mut(h)) {
            for (((z, b), m), d) in zr.iter_mut().zip(bias).zip(mr).zip(dr.iter_mut()) {
                *z += b;
                *d = a.apply(*z) * m;
            }
        }
    });
}

avx_dispatch! {
    /// dz of a hidden layer from dy, through its BatchNorm (coefficients `st`), dropout and activation.
    fn activation_grad = activation_grad_loops(
        act: Activation, st: &LayerStats, dz: &mut [f32], dy: &[f32], xhat: &[f32], z: &[f32], mask: &[f32],
    );
}

#[inline(always)]
fn activation_grad_loops(
    act: Activation,
    st: &LayerStats,
    dz: &mut [f32],
    dy: &[f32],
    xhat: &[f32],
    z: &[f32],
    mask: &[f32],
) {
    let h = st.a.len();
    per_activation!(act, a => {
        for (((dzrow, dyrow), xrow), (zrow, mrow)) in dz
            .chunks_exact_mut(h)
            .zip(dy.chunks_exact(h))
            .zip(xhat.chunks_exact(h))
            .zip(z.chunks_exact(h).zip(mask.chunks_exact(h)))
        {
            for ((((dz, dy), x), (z, m)), ((ca, c1), c2)) in dzrow
                .iter_mut()
                .zip(dyrow)
                .zip(xrow)
                .zip(zrow.iter().zip(mrow))
                .zip(st.a.iter().zip(&st.c1).zip(&st.c2))
            {
                *dz = (ca * dy - c1 - x * c2) * m * a.derivative(*z);
            }
        }
    });
}

avx_dispatch! {
    /// One optimizer update of every trainable parameter.
    fn update_params = update_params_loops(c: &StepCoefficients, kind: OptimizerKind, params: &mut [Param]);
}

#[inline(always)]
fn update_params_loops(c: &StepCoefficients, kind: OptimizerKind, params: &mut [Param]) {
    for p in params.iter_mut().filter(|p| p.trainable) {
        c.apply(kind, &mut p.data, &mut p.grad, &mut p.m, &mut p.v);
    }
}

/// What every share's phase reads: the weights and the batch-wide statistics so far.
struct Step<'a> {
    arch: &'a Architecture,
    layout: &'a ParamLayout,
    params: &'a [Param],
    stats: &'a [LayerStats],
    /// The whole batch's inputs and its row count.
    x: &'a [f32],
    batch_rows: usize,
    /// The dropout stream at the start of the step (shares seek into it).
    rng: &'a ChaCha8Rng,
    team: &'a Team,
    /// One share and a second thread: the helper draws each layer's dropout masks while the
    /// caller runs its GEMM (batch 32: 410k -> 431k samples/s), unless it drew them during
    /// the step before ([`MasksAhead`]: 459k-479k -> 484k-506k samples/s).
    nested: bool,
    /// The share's masks are in place already ([`MasksAhead`]).
    masks_ready: bool,
}

impl Step<'_> {
    /// Run `phase` on every share, the second on the team's helper.
    fn run(&self, shares: &mut [Share], phase: impl Fn(&Step<'_>, &mut Share) + Sync) {
        match shares {
            [one] => phase(self, one),
            [a, b] => self.team.join(|| phase(self, a), || phase(self, b)),
            _ => unreachable!("a batch is cut into one or two shares"),
        }
    }

    fn w(&self, index: usize) -> &[f32] {
        &self.params[index].data
    }

    /// This share's input to hidden layer `li` (the output layer's when `li` is past the last).
    fn input<'s>(&'s self, share: &'s Share, li: usize) -> &'s [f32] {
        if li == 0 {
            let d = self.arch.input_dim;
            &self.x[share.start * d..(share.start + share.rows) * d]
        } else {
            &share.layers[li - 1].y
        }
    }

    /// Normalise hidden layer `li`'s x̂ and make y = γ·x̂ + β (its statistics are complete).
    fn normalize(&self, share: &mut Share, li: usize) {
        let slots = self.layout.hidden[li];
        let (st, c) = (&self.stats[li], &mut share.layers[li]);
        let (gamma, beta) = (self.w(slots.gamma), self.w(slots.beta));
        for (xrow, yrow) in c.xhat.chunks_exact_mut(slots.width).zip(c.y.chunks_exact_mut(slots.width)) {
            for ((((x, y), m), s), (g, b)) in
                xrow.iter_mut().zip(yrow.iter_mut()).zip(&st.mean).zip(&st.inv_std).zip(gamma.iter().zip(beta))
            {
                *x = (*x - m) * s;
                *y = *x * g + b;
            }
        }
    }

    /// Hidden layer `li` up to act(z)·mask and its column sums (after normalising the layer
    /// before, whose statistics are now complete).
    fn forward_linear(&self, share: &mut Share, li: usize) {
        if li > 0 {
            self.normalize(share, li - 1);
        }
        let slots = self.layout.hidden[li];
        let (h, rows) = (slots.width, share.rows);
        let mut c = std::mem::take(&mut share.layers[li]);
        for buf in [&mut c.z, &mut c.mask, &mut c.xhat, &mut c.y] {
            buf.resize(rows * h, 0.0);
        }
        let mut bits = std::mem::take(&mut share.bits);
        let (z, mask, input) = (&mut c.z, &mut c.mask, self.input(share, li));
        let mut gemm = || matmul(z, input, false, self.w(slots.weight), true, rows, slots.in_dim, h, false);
        // This share's masks at their place in the candle path's stream (layer after layer,
        // each rows × width in row order).
        let mut masks = || {
            let stream = MaskStream {
                start: self.rng,
                widths: &self.arch.hidden_dims,
                batch_rows: self.batch_rows,
                p: self.arch.dropout_rate as f32,
            };
            stream.fill(li, share.start, &mut bits, mask);
        };
        if self.masks_ready {
            gemm();
        } else if self.nested {
            self.team.join(gemm, masks);
        } else {
            gemm();
            masks();
        }
        share.bits = bits;
        // z += b; d = act(z)·mask, kept in xhat until normalised.
        let bias = self.w(slots.bias);
        bias_activation(self.arch.activation, &mut c.z, &bias[..h], &c.mask, &mut c.xhat);
        share.sums[0].resize(h, 0.0);
        column_sums(&c.xhat, h, &mut share.sums[0]);
        share.layers[li] = c;
    }

    /// Partial Σ (d − mean)² of hidden layer `li`.
    fn variance_sums(&self, share: &mut Share, li: usize) {
        let h = self.layout.hidden[li].width;
        let (mean, sums) = (&self.stats[li].mean, &mut share.sums[0]);
        sums.fill(0.0);
        for row in share.layers[li].xhat.chunks_exact(h) {
            for ((v, d), m) in sums.iter_mut().zip(row).zip(mean) {
                *v += (d - m) * (d - m);
            }
        }
    }

    /// The output layer: this share's loss, dout, the output Linear's partial gradients and
    /// dy into the last hidden layer.
    fn output(&self, share: &mut Share, y: &BatchTargets<'_>) {
        let n_hidden = self.layout.hidden.len();
        if n_hidden > 0 {
            self.normalize(share, n_hidden - 1);
        }
        let (k, rows, bf) = (self.arch.output_dim, share.rows, self.batch_rows as f32);
        let fan_in = self.layout.hidden.last().map_or(self.arch.input_dim, |s| s.width);
        let (o, ob) = (self.layout.out_weight, self.layout.out_bias);
        let (mut out, mut dout) = (std::mem::take(&mut share.out), std::mem::take(&mut share.dout));
        out.resize(rows * k, 0.0);
        dout.resize(rows * k, 0.0);
        matmul(&mut out, self.input(share, n_hidden), false, self.w(o), true, rows, fan_in, k, false);
        for row in out.chunks_exact_mut(k) {
            row.iter_mut().zip(self.w(ob)).for_each(|(z, b)| *z += b);
        }
        let mut loss = 0f64;
        let range = share.start..share.start + rows;
        match y {
            BatchTargets::Classes(ids) => {
                for ((row, drow), &t) in out.chunks_exact(k).zip(dout.chunks_exact_mut(k)).zip(&ids[range]) {
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
                for ((o, d), t) in out.iter().zip(dout.iter_mut()).zip(&vals[range]) {
                    let diff = o - t;
                    loss += f64::from(diff * diff);
                    *d = 2.0 * diff / bf;
                }
            }
        }
        share.loss = loss;
        let mut grads = std::mem::take(&mut share.grads);
        grads[o].resize(k * fan_in, 0.0);
        grads[ob].resize(k, 0.0);
        matmul(&mut grads[o], &dout, true, self.input(share, n_hidden), false, k, rows, fan_in, false);
        column_sums(&dout, k, &mut grads[ob]);
        share.dy.resize(rows * fan_in, 0.0);
        matmul(&mut share.dy, &dout, false, self.w(o), false, rows, k, fan_in, false);
        (share.out, share.dout, share.grads) = (out, dout, grads);
    }

    /// Partial dγ = Σ dy·x̂ and dβ = Σ dy of hidden layer `li`.
    fn batch_norm_sums(&self, share: &mut Share, li: usize) {
        let h = self.layout.hidden[li].width;
        let [dgamma, dbeta] = &mut share.sums;
        dgamma.resize(h, 0.0);
        dbeta.resize(h, 0.0);
        dgamma.fill(0.0);
        dbeta.fill(0.0);
        for (dyrow, xrow) in share.dy.chunks_exact(h).zip(share.layers[li].xhat.chunks_exact(h)) {
            for (((dg, db), d), x) in dgamma.iter_mut().zip(dbeta.iter_mut()).zip(dyrow).zip(xrow) {
                *dg += d * x;
                *db += d;
            }
        }
    }

    /// dz of hidden layer `li`, its Linear's partial gradients and dy into the layer before.
    fn backward_linear(&self, share: &mut Share, li: usize) {
        let slots = self.layout.hidden[li];
        let (h, in_dim, rows) = (slots.width, slots.in_dim, share.rows);
        let (st, c) = (&self.stats[li], &share.layers[li]);
        share.dz.resize(rows * h, 0.0);
        activation_grad(self.arch.activation, st, &mut share.dz, &share.dy, &c.xhat, &c.z, &c.mask);
        let mut grads = std::mem::take(&mut share.grads);
        grads[slots.weight].resize(h * in_dim, 0.0);
        grads[slots.bias].resize(h, 0.0);
        matmul(&mut grads[slots.weight], &share.dz, true, self.input(share, li), false, h, rows, in_dim, false);
        column_sums(&share.dz, h, &mut grads[slots.bias]);
        share.grads = grads;
        if li > 0 {
            share.dy.resize(rows * in_dim, 0.0);
            matmul(&mut share.dy, &share.dz, false, self.w(slots.weight), false, rows, h, in_dim, false);
        }
    }
}

/// Σ over shares of `part(share)` into `out`.
fn sum_shares(shares: &[Share], out: &mut [f32], part: impl Fn(&Share) -> &[f32]) {
    out.copy_from_slice(&part(&shares[0])[..out.len()]);
    for s in &shares[1..] {
        out.iter_mut().zip(part(s)).for_each(|(o, v)| *o += v);
    }
}

/// Σ over shares of each one's partial gradient of parameter `index` into `grad`. One share's
/// buffer is swapped in whole: copying the weight gradients was most of a batch-32 step's
/// memmove.
fn take_grads(shares: &mut [Share], grad: &mut Vec<f32>, index: usize) {
    match shares {
        [one] => std::mem::swap(grad, &mut one.grads[index]),
        _ => sum_shares(shares, grad, |s| &s.grads[index]),
    }
}

/// Threads for the fused step: two when the rayon budget (`RAYON_NUM_THREADS`, which the CLI
/// sets to 1 unless told otherwise) allows them.
fn default_threads() -> usize {
    rayon::current_num_threads().min(2)
}

impl FusedMlp {
    /// Take over `tensors` (named and shaped as the bundle defines) as the starting weights.
    pub fn new(
        arch: &Architecture,
        tensors: &BTreeMap<String, Tensor>,
        optimizer: OptimizerSettings,
    ) -> Result<Self, TrainingError> {
        Self::with_threads(arch, tensors, optimizer, default_threads())
    }

    /// As [`FusedMlp::new`], stepping with `threads` threads (1 or 2).
    pub fn with_threads(
        arch: &Architecture,
        tensors: &BTreeMap<String, Tensor>,
        optimizer: OptimizerSettings,
        threads: usize,
    ) -> Result<Self, TrainingError> {
        let layout = ParamLayout::new(arch);
        let params: Vec<Param> = layout
            .take(tensors)?
            .into_iter()
            .zip(&layout.tensors)
            .map(|(data, slot)| {
                let n = data.len();
                Param { data, grad: vec![0.0; n], m: vec![0.0; n], v: vec![0.0; n], trainable: slot.trainable }
            })
            .collect();
        let share = || Share {
            layers: arch.hidden_dims.iter().map(|_| Cache::default()).collect(),
            grads: vec![Vec::new(); params.len()],
            ..Share::default()
        };
        let stats = layout
            .hidden
            .iter()
            .map(|s| {
                let col = vec![0f32; s.width];
                LayerStats {
                    mean: col.clone(),
                    var: col.clone(),
                    inv_std: col.clone(),
                    a: col.clone(),
                    c1: col.clone(),
                    c2: col,
                }
            })
            .collect();
        Ok(Self {
            shares: vec![share(), share()],
            team: Team::new(threads),
            stats,
            arch: arch.clone(),
            layout,
            params,
            optimizer,
            step: 0,
            batch: HostBatch::default(),
            ahead: MasksAhead::default(),
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
    ///
    /// Batches of [`MIN_SPLIT_ROWS`] or more are cut into two shares; the phases between the
    /// batch-wide reductions (BatchNorm's mean, variance, dγ and dβ; the weight gradients)
    /// are methods of [`Step`], run on both shares at once.
    pub fn forward_backward(&mut self, x: &[f32], rows: usize, y: &BatchTargets<'_>, rng: &mut ChaCha8Rng) -> f64 {
        // BatchNorm's batch statistics need two rows (the loop merges a trailing single row).
        debug_assert!(rows >= 2, "a training batch of {rows} rows");
        let eps = self.arch.batch_norm_eps as f32;
        let n_hidden = self.layout.hidden.len();
        let bf = rows as f32;
        let n_shares = if rows >= MIN_SPLIT_ROWS { 2 } else { 1 };
        let half = rows.div_ceil(n_shares);
        for (i, s) in self.shares.iter_mut().enumerate() {
            s.start = (i * half).min(rows);
            s.rows = half.min(rows - s.start);
        }
        let start_rng = rng.clone();
        let nested = n_shares == 1 && self.team.threads() > 1;
        let p = self.arch.dropout_rate as f32;
        let draw_ahead = nested && p > 0.0;
        let masks_ready = draw_ahead && self.ahead.key == Some(MaskKey::at(rng, rows));
        if masks_ready {
            for (c, m) in self.shares[0].layers.iter_mut().zip(&mut self.ahead.masks) {
                std::mem::swap(&mut c.mask, m);
            }
        }
        self.ahead.key = None;
        let shares = &mut self.shares[..n_shares];
        macro_rules! step {
            () => {
                Step {
                    arch: &self.arch,
                    layout: &self.layout,
                    params: &self.params,
                    stats: &self.stats,
                    x,
                    batch_rows: rows,
                    rng: &start_rng,
                    team: &self.team,
                    nested,
                    masks_ready,
                }
            };
        }
        for li in 0..n_hidden {
            step!().run(shares, |s, sh| s.forward_linear(sh, li));
            let st = &mut self.stats[li];
            sum_shares(shares, &mut st.mean, |s| &s.sums[0]);
            st.mean.iter_mut().for_each(|m| *m /= bf);
            step!().run(shares, |s, sh| s.variance_sums(sh, li));
            let st = &mut self.stats[li];
            sum_shares(shares, &mut st.var, |s| &s.sums[0]);
            st.var.iter_mut().for_each(|v| *v /= bf);
            for (s, v) in st.inv_std.iter_mut().zip(&st.var) {
                *s = 1.0 / (v + eps).sqrt();
            }
            let slots = self.layout.hidden[li];
            let (mom, unbias) = (BN_MOMENTUM as f32, bf / (bf - 1.0));
            for (r, m) in self.params[slots.running_mean].data.iter_mut().zip(&st.mean) {
                *r = *r * (1.0 - mom) + m * mom;
            }
            for (r, v) in self.params[slots.running_var].data.iter_mut().zip(&st.var) {
                *r = *r * (1.0 - mom) + v * (mom * unbias);
            }
        }
        // The stream moves past every mask of the step, as the candle path's does.
        if self.arch.dropout_rate > 0.0 {
            let drawn: usize = self.arch.hidden_dims.iter().map(|h| rows * h).sum();
            rng.set_word_pos(start_rng.get_word_pos() + drawn as u128);
        }

        let mut backward = || {
            step!().run(shares, |s, sh| s.output(sh, y));
            let loss: f64 = shares.iter().map(|s| s.loss).sum();
            for index in [self.layout.out_weight, self.layout.out_bias] {
                take_grads(shares, &mut self.params[index].grad, index);
            }

            for li in (0..n_hidden).rev() {
                let slots = self.layout.hidden[li];
                step!().run(shares, |s, sh| s.batch_norm_sums(sh, li));
                sum_shares(shares, &mut self.params[slots.gamma].grad, |s| &s.sums[0]);
                sum_shares(shares, &mut self.params[slots.beta].grad, |s| &s.sums[1]);
                // dx̂ = inv_std/B·(B·dy·γ − Σdy·γ − x̂·Σdy·γ·x̂) = a·dy − c1 − x̂·c2 per column, with
                // a = inv_std·γ, c1 = a·dβ/B and c2 = a·dγ/B.
                let st = &mut self.stats[li];
                let (gamma, dgamma, dbeta) =
                    (&self.params[slots.gamma].data, &self.params[slots.gamma].grad, &self.params[slots.beta].grad);
                for j in 0..slots.width {
                    st.a[j] = st.inv_std[j] * gamma[j];
                    st.c1[j] = st.a[j] * dbeta[j] / bf;
                    st.c2[j] = st.a[j] * dgamma[j] / bf;
                }
                step!().run(shares, |s, sh| s.backward_linear(sh, li));
                for index in [slots.weight, slots.bias] {
                    take_grads(shares, &mut self.params[index].grad, index);
                }
            }
            loss
        };
        let loss = if draw_ahead {
            let (mut ahead, next) = (std::mem::take(&mut self.ahead), rng.clone());
            let stream = MaskStream { start: &next, widths: &self.arch.hidden_dims, batch_rows: rows, p };
            let mut loss = 0.0;
            self.team.join(|| loss = backward(), || ahead.draw(&stream));
            ahead.key = Some(MaskKey::at(&next, rows));
            self.ahead = ahead;
            loss
        } else {
            backward()
        };
        loss / rows as f64
    }

    /// One optimizer update from the gradients (see [`StepCoefficients`]).
    pub fn apply_gradients(&mut self) {
        self.step += 1;
        let c = StepCoefficients::at(&self.optimizer, self.step);
        let kind = self.optimizer.kind;
        // On the caller's thread: split between the two threads, the parameters' cache lines
        // moved between cores every step (batch 32 fell from 410k to 249k samples/s).
        update_params(&c, kind, &mut self.params);
    }

    /// Eval-mode outputs (no dropout, running statistics), `rows × output_dim`, in chunks of
    /// [`EVAL_CHUNK_ROWS`] so evaluating a split costs no more memory than its outputs.
    pub fn predict_raw(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let n = self.arch.input_dim;
        let mut out = Vec::with_capacity(rows * self.arch.output_dim);
        for chunk in x[..rows * n].chunks(EVAL_CHUNK_ROWS * n.max(1)) {
            out.extend(self.predict_chunk(chunk, chunk.len() / n.max(1)));
        }
        out
    }

    fn predict_chunk(&self, x: &[f32], rows: usize) -> Vec<f32> {
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
            // One loop per activation, as in training (`per_activation!`), so it vectorises.
            per_activation!(act, a => {
                for row in z.chunks_exact_mut(h) {
                    for ((((y, b), rm), inv), (g, beta)) in
                        row.iter_mut().zip(b).zip(rm).zip(&inv).zip(g.iter().zip(beta))
                    {
                        *y = (a.apply(*y + b) - rm) * inv * g + beta;
                    }
                }
            });
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
        // 9 rows run as one share (on two threads: masks beside the GEMM); 131 as two unequal
        // shares; each on one thread and on two.
        for (rows, threads) in [(9, 1), (9, 2), (131, 1), (131, 2)] {
            gradients_match_candle_autograd_at(rows, threads);
        }
    }

    fn gradients_match_candle_autograd_at(rows: usize, threads: usize) {
        let x = batch(rows, 5);
        let classes: Vec<u32> = (0..rows as u32).map(|i| i % 3).collect();
        // Targets of one scale at every row count, so 1e-5 stays a tight bound.
        let values: Vec<f32> = (0..rows).map(|i| (i % 9) as f32 * 0.3 - 1.0).collect();
        for act in [Activation::Relu, Activation::Gelu, Activation::Tanh, Activation::LeakyRelu, Activation::Sigmoid] {
            for regression in [false, true] {
                let a = arch(act, if regression { 1 } else { 3 });
                let m = Mlp::new(&a, &mut ChaCha8Rng::seed_from_u64(1), &Device::Cpu).unwrap();
                let mut f =
                    FusedMlp::with_threads(&a, &m.export().unwrap(), adam(1e-3, 0.0, OptimizerKind::Adam), threads)
                        .unwrap();

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
                assert!(
                    (fused_loss - candle_loss).abs() < 1e-5,
                    "{act:?} rows={rows}: loss {fused_loss} vs {candle_loss}"
                );

                let fg = f.grads();
                for (name, var) in m.named_parameters() {
                    let Some(g) = grads.get(var.as_tensor()) else { continue };
                    let g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
                    let diff = g.iter().zip(&fg[&name]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                    assert!(diff <= 1e-5, "{act:?} regression={regression} rows={rows} {name}: max |Δgrad| {diff}");
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

    /// The AVX builds of the element loops give the baseline build's bits: training must not
    /// depend on the machine beyond what `gemm` itself chooses.
    #[test]
    fn the_dispatched_loops_give_the_baseline_loops_bits() {
        #[cfg(target_arch = "x86_64")]
        if !std::arch::is_x86_feature_detected!("avx") {
            eprintln!("no AVX on this CPU: both runs take the baseline build");
        }
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        // 13 columns × 7 rows: full vectors of either width and a scalar tail in every row.
        let (h, rows) = (13, 7);
        let wave = |n: usize, seed: usize| -> Vec<f32> {
            (0..n).map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 - 1001.0) / 157.0).collect()
        };
        let (z0, bias, mask, dy, xhat) =
            (wave(rows * h, 1), wave(h, 2), wave(rows * h, 3), wave(rows * h, 4), wave(rows * h, 5));
        let st = LayerStats { a: wave(h, 6), c1: wave(h, 7), c2: wave(h, 8), ..LayerStats::default() };
        for act in Activation::ALL {
            let (mut z_fast, mut d_fast) = (z0.clone(), vec![0f32; rows * h]);
            let (mut z_base, mut d_base) = (z0.clone(), vec![0f32; rows * h]);
            bias_activation(act, &mut z_fast, &bias, &mask, &mut d_fast);
            bias_activation_loops(act, &mut z_base, &bias, &mask, &mut d_base);
            assert_eq!((bits(&z_fast), bits(&d_fast)), (bits(&z_base), bits(&d_base)), "{act:?} forward");
            let (mut fast, mut base) = (vec![0f32; rows * h], vec![0f32; rows * h]);
            activation_grad(act, &st, &mut fast, &dy, &xhat, &z0, &mask);
            activation_grad_loops(act, &st, &mut base, &dy, &xhat, &z0, &mask);
            assert_eq!(bits(&fast), bits(&base), "{act:?} backward");
        }
        for kind in [OptimizerKind::Sgd, OptimizerKind::Adam, OptimizerKind::Adamw] {
            let settings = OptimizerSettings { kind, lr: 0.01, weight_decay: 1e-3 };
            let param = || Param {
                data: wave(37, 9),
                grad: wave(37, 10),
                m: wave(37, 11),
                v: wave(37, 12).iter().map(|v| v.abs()).collect(),
                trainable: true,
            };
            let (mut fast, mut base) = (vec![param()], vec![param()]);
            for step in 1..=3 {
                let c = StepCoefficients::at(&settings, step);
                update_params(&c, kind, &mut fast);
                update_params_loops(&c, kind, &mut base);
            }
            assert_eq!(bits(&fast[0].data), bits(&base[0].data), "{kind:?}");
            assert_eq!(bits(&fast[0].v), bits(&base[0].v), "{kind:?}");
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

    /// The shares make the same sums on one thread as on two: the same weights, bit for bit.
    #[test]
    fn the_step_does_not_depend_on_the_thread_count() {
        // One share (40 rows) and two (200 rows).
        for rows in [40, 200] {
            the_step_does_not_depend_on_the_thread_count_at(rows);
        }
    }

    fn the_step_does_not_depend_on_the_thread_count_at(rows: usize) {
        let x = batch(rows, 5);
        let classes: Vec<u32> = (0..rows as u32).map(|i| i % 3).collect();
        let a = arch(Activation::Gelu, 3);
        let init = Mlp::new(&a, &mut ChaCha8Rng::seed_from_u64(1), &Device::Cpu).unwrap().export().unwrap();
        let train = |threads: usize| {
            let mut f = FusedMlp::with_threads(&a, &init, adam(1e-2, 0.0, OptimizerKind::Adam), threads).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            for _ in 0..3 {
                f.forward_backward(&x, rows, &BatchTargets::Classes(&classes), &mut rng);
                f.apply_gradients();
            }
            (Trainable::export(&f).unwrap(), rng.get_word_pos())
        };
        assert_eq!(train(1), train(2), "rows {rows}");
    }

    /// Masks drawn a step ahead are used only by the step they were drawn for: a batch of
    /// another size, or a reseeded stream, gives the weights one thread gives.
    #[test]
    fn masks_drawn_ahead_change_no_weight() {
        let x = batch(40, 5);
        let classes: Vec<u32> = (0..40).map(|i| i % 3).collect();
        let a = arch(Activation::Relu, 3);
        let init = Mlp::new(&a, &mut ChaCha8Rng::seed_from_u64(1), &Device::Cpu).unwrap().export().unwrap();
        let train = |threads: usize| {
            let mut f = FusedMlp::with_threads(&a, &init, adam(1e-2, 0.0, OptimizerKind::Adam), threads).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            for (step, rows) in [40, 40, 33, 40, 40, 40].into_iter().enumerate() {
                if step == 4 {
                    rng = ChaCha8Rng::seed_from_u64(4);
                }
                let targets = BatchTargets::Classes(&classes[..rows]);
                f.forward_backward(&x[..rows * 5], rows, &targets, &mut rng);
                f.apply_gradients();
            }
            (Trainable::export(&f).unwrap(), rng.get_word_pos())
        };
        assert_eq!(train(1), train(2));
    }

    /// Evaluation in chunks gives every row what it gets alone, across the chunk boundary.
    #[test]
    fn chunked_evaluation_matches_rows_alone() {
        let rows = EVAL_CHUNK_ROWS + 3;
        let x = batch(rows, 5);
        let a = arch(Activation::Tanh, 3);
        let init = Mlp::new(&a, &mut ChaCha8Rng::seed_from_u64(1), &Device::Cpu).unwrap().export().unwrap();
        let f = FusedMlp::new(&a, &init, adam(1e-3, 0.0, OptimizerKind::Adam)).unwrap();
        let all = FusedMlp::predict_raw(&f, &x, rows);
        assert_eq!(all.len(), rows * 3);
        for r in [0, EVAL_CHUNK_ROWS - 1, EVAL_CHUNK_ROWS, rows - 1] {
            let one = FusedMlp::predict_raw(&f, &x[r * 5..(r + 1) * 5], 1);
            for (a, b) in all[r * 3..(r + 1) * 3].iter().zip(&one) {
                assert!((a - b).abs() < 1e-6, "row {r}: {a} vs {b}");
            }
        }
    }
}
