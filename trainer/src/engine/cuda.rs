//! The fused CUDA training step: the fused CPU step's algorithm ([`super::cpu`]) on the GPU, as
//! cuBLAS GEMMs plus a few hand-written kernels (`trainer/kernels/train_step.cu`).
//!
//! Why not candle's autograd on CUDA: measured on an H100, a candle step of this MLP is ~430
//! small ops, each a kernel launch plus a device allocation and free, so a step took ~15 ms at
//! any batch size (14k samples/s at batch 256, slower than the CPU). Here a step is ~25 launches
//! over buffers allocated once, the training split stays on the device (a batch uploads only its
//! row indices), dropout masks are hashed on the device, and the loss is read once per epoch.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::cuda_backend::cudarc;
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use inference::config::OptimizerKind;
use inference::spec::{Activation, Architecture};
use inference::Tensor;

use super::optim::{OptimizerSettings, StepCoefficients, BETA1, BETA2};
use super::{BatchTargets, ParamLayout, Snapshot, TrainSet, Trainable, BN_MOMENTUM};
use crate::error::TrainingError;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/train_step.ptx"));
/// Threads per block for every kernel (a multiple of 32, as `block_sum` needs).
const BLOCK: u32 = 256;
/// Rows per eval-mode chunk, at most.
const EVAL_CHUNK: usize = 16384;
/// Floats per eval-mode activation buffer, at most (two are allocated: 256 MiB each).
const EVAL_BUFFER_FLOATS: usize = 1 << 26;

fn gpu_err(e: impl std::fmt::Display) -> TrainingError {
    TrainingError::Device(format!("CUDA: {e}"))
}

/// The device address of a buffer. cudarc's guard (which records cross-stream events) is
/// dropped at once: that is sound only because every buffer, kernel launch, copy and the
/// cuBLAS handle of the engine use its one stream, which orders them; the address stays valid
/// while the buffer is owned by the engine.
fn ptr<T>(s: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    s.device_ptr(stream).0
}

/// Launch a kernel of `$self.k` on the engine's stream with the given parameters, in order.
macro_rules! launch {
    ($self:ident, $f:expr, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        let mut b = $self.stream.launch_builder(&$f);
        $( b.arg(&$arg); )+
        // SAFETY: each call site passes the kernel's parameters in the order and with the types
        // its .cu signature declares, and buffers at least as large as the sizes it passes.
        unsafe { b.launch($cfg) }.map(drop).map_err(gpu_err)
    }};
}

fn activation_code(a: Activation) -> i32 {
    match a {
        Activation::Relu => 0,
        Activation::Gelu => 1,
        Activation::Tanh => 2,
        Activation::LeakyRelu => 3,
        Activation::Sigmoid => 4,
    }
}

struct Kernels {
    gather_rows: CudaFunction,
    hidden_forward_train: CudaFunction,
    hidden_forward_eval: CudaFunction,
    add_bias: CudaFunction,
    output_loss: CudaFunction,
    column_sums: CudaFunction,
    hidden_backward: CudaFunction,
    optimizer_step: CudaFunction,
}

/// Offsets of one hidden layer's tensors.
struct Layer {
    in_dim: usize,
    h: usize,
    w: usize,
    b: usize,
    gamma: usize,
    beta: usize,
    /// running_mean at `running`, running_var at `running + h` (in the running buffer).
    running: usize,
}

/// Per-layer activations kept for the backward pass, `rows × h` each (and `h` for inv_std).
struct LayerBuffers {
    z: CudaSlice<f32>,
    mask: CudaSlice<f32>,
    xhat: CudaSlice<f32>,
    out: CudaSlice<f32>,
    inv_std: CudaSlice<f32>,
}

/// Buffers sized for a batch of up to `rows` rows.
struct BatchBuffers {
    rows: usize,
    x: CudaSlice<f32>,
    y: CudaSlice<f32>,
    layers: Vec<LayerBuffers>,
    out: CudaSlice<f32>,
    dout: CudaSlice<f32>,
    dy: CudaSlice<f32>,
    dz: CudaSlice<f32>,
}

/// The MLP on one CUDA device, trained by the fused step.
pub struct CudaMlp {
    arch: Architecture,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    k: Kernels,
    layers: Vec<Layer>,
    out_w: usize,
    out_b: usize,
    layout: ParamLayout,
    params: CudaSlice<f32>,
    grads: CudaSlice<f32>,
    m: CudaSlice<f32>,
    v: CudaSlice<f32>,
    running: CudaSlice<f32>,
    batch: Option<BatchBuffers>,
    data_x: Option<CudaSlice<f32>>,
    data_y: Option<CudaSlice<f32>>,
    order: Option<CudaSlice<u32>>,
    /// Squared-error loss on values (else cross-entropy on class ids), set by `bind`.
    regression: bool,
    loss_sum: CudaSlice<f64>,
    optimizer: OptimizerSettings,
    step: i32,
}

impl CudaMlp {
    /// Take over `tensors` (named and shaped as the bundle defines) as the starting weights, on `stream`'s device.
    pub fn new(
        stream: Arc<CudaStream>,
        arch: &Architecture,
        tensors: &BTreeMap<String, Tensor>,
        optimizer: OptimizerSettings,
    ) -> Result<Self, TrainingError> {
        let module = stream.context().load_module(cudarc::nvrtc::Ptx::from_src(PTX)).map_err(gpu_err)?;
        let f = |name: &str| module.load_function(name).map_err(gpu_err);
        let k = Kernels {
            gather_rows: f("gather_rows")?,
            hidden_forward_train: f("hidden_forward_train")?,
            hidden_forward_eval: f("hidden_forward_eval")?,
            add_bias: f("add_bias")?,
            output_loss: f("output_loss")?,
            column_sums: f("column_sums")?,
            hidden_backward: f("hidden_backward")?,
            optimizer_step: f("optimizer_step")?,
        };
        let layout = ParamLayout::new(arch);
        let (flat, running) = layout.flatten(&layout.take(tensors)?);
        let offset = |i: usize| layout.tensors[i].offset;
        let layers = layout
            .hidden
            .iter()
            .map(|h| Layer {
                in_dim: h.in_dim,
                h: h.width,
                w: offset(h.weight),
                b: offset(h.bias),
                gamma: offset(h.gamma),
                beta: offset(h.beta),
                running: offset(h.running_mean),
            })
            .collect();
        let (out_w, out_b) = (offset(layout.out_weight), offset(layout.out_bias));
        let n = flat.len();
        Ok(Self {
            blas: CudaBlas::new(stream.clone()).map_err(gpu_err)?,
            params: stream.clone_htod(&flat).map_err(gpu_err)?,
            grads: stream.alloc_zeros(n).map_err(gpu_err)?,
            m: stream.alloc_zeros(n).map_err(gpu_err)?,
            v: stream.alloc_zeros(n).map_err(gpu_err)?,
            running: stream.clone_htod(&running).map_err(gpu_err)?,
            loss_sum: stream.alloc_zeros(1).map_err(gpu_err)?,
            arch: arch.clone(),
            k,
            layers,
            out_w,
            out_b,
            layout,
            batch: None,
            data_x: None,
            data_y: None,
            order: None,
            regression: false,
            optimizer,
            step: 0,
            stream,
        })
    }

    /// Row-major C (m×n) = op(A)·op(B) with cuBLAS (column-major), as `fused::matmul` without
    /// accumulation: A is m×k (k×m when `a_t`), B is k×n (n×k when `b_t`).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        c: u64,
        a: u64,
        a_t: bool,
        b: u64,
        b_t: bool,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<(), TrainingError> {
        // Row-major C is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands.
        let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
        let (alpha, beta) = (1.0f32, 0.0f32);
        let dim = |v: usize| {
            i32::try_from(v).map_err(|_| TrainingError::Unusable(format!("dimension {v} too large for cuBLAS")))
        };
        // SAFETY: the pointers name buffers of this engine sized for these shapes (see callers),
        // and the handle is bound to the engine's stream.
        unsafe {
            cudarc::cublas::result::sgemm(
                *self.blas.handle(),
                op(b_t),
                op(a_t),
                dim(n)?,
                dim(m)?,
                dim(k)?,
                &alpha,
                b as *const f32,
                dim(if b_t { k } else { n })?,
                a as *const f32,
                dim(if a_t { m } else { k })?,
                &beta,
                c as *mut f32,
                dim(n)?,
            )
        }
        .map_err(gpu_err)
    }

    fn grid(total: usize) -> LaunchConfig {
        let blocks = total.div_ceil(BLOCK as usize).clamp(1, 65_535) as u32;
        LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
    }

    fn per_column(cols: usize) -> LaunchConfig {
        LaunchConfig { grid_dim: (cols as u32, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
    }

    fn ensure_batch(&mut self, rows: usize) -> Result<(), TrainingError> {
        if self.batch.as_ref().is_some_and(|b| b.rows >= rows) {
            return Ok(());
        }
        let s = &self.stream;
        let zeros = |n: usize| s.alloc_zeros::<f32>(n.max(1)).map_err(gpu_err);
        let widest = self.layers.iter().map(|l| l.in_dim.max(l.h)).max().unwrap_or(self.arch.input_dim);
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            layers.push(LayerBuffers {
                z: zeros(rows * l.h)?,
                mask: zeros(rows * l.h)?,
                xhat: zeros(rows * l.h)?,
                out: zeros(rows * l.h)?,
                inv_std: zeros(l.h)?,
            });
        }
        let k = self.arch.output_dim;
        self.batch = Some(BatchBuffers {
            rows,
            x: zeros(rows * self.arch.input_dim)?,
            y: zeros(rows)?,
            layers,
            out: zeros(rows * k)?,
            dout: zeros(rows * k)?,
            dy: zeros(rows * widest)?,
            dz: zeros(rows * widest)?,
        });
        Ok(())
    }

    /// One optimizer update over all trainable parameters (one launch).
    fn apply_gradients(&mut self) -> Result<(), TrainingError> {
        self.step += 1;
        let c = StepCoefficients::at(&self.optimizer, self.step);
        let kind: i32 = match self.optimizer.kind {
            OptimizerKind::Sgd => 0,
            OptimizerKind::Adam => 1,
            OptimizerKind::Adamw => 2,
        };
        let s = &self.stream;
        let (w, g, m, v) = (ptr(&self.params, s), ptr(&self.grads, s), ptr(&self.m, s), ptr(&self.v, s));
        let n = self.params.len() as i64;
        // The kernel derives coupled decay from kind and wd, and (1 − β) from β, as StepCoefficients does.
        let (b1, b2) = (BETA1 as f32, BETA2 as f32);
        launch!(
            self,
            self.k.optimizer_step,
            Self::grid(self.params.len()),
            w,
            g,
            m,
            v,
            n,
            kind,
            c.lr,
            c.weight_decay,
            b1,
            b2,
            c.eps,
            c.k1,
            c.k2,
            c.step_size,
            c.inv_bc2,
            c.decay,
            c.momentum_keep
        )
    }
}

impl Trainable for CudaMlp {
    fn architecture(&self) -> &Architecture {
        &self.arch
    }

    fn engine(&self) -> &'static str {
        "cuda-fused"
    }

    /// Keep the training split on the device: features and targets (class ids as f32, exact
    /// below 2²⁴).
    fn bind(&mut self, data: &TrainSet<'_>) -> Result<(), TrainingError> {
        if u32::try_from(data.rows).is_err() {
            return Err(TrainingError::Unusable(format!(
                "{} training rows: the CUDA engine indexes rows with u32",
                data.rows
            )));
        }
        let y: Vec<f32> = match data.targets {
            BatchTargets::Classes(c) => c.iter().map(|&v| v as f32).collect(),
            BatchTargets::Values(v) => v.to_vec(),
        };
        self.regression = matches!(data.targets, BatchTargets::Values(_));
        self.data_x = Some(self.stream.clone_htod(&data.x[..data.rows * data.n]).map_err(gpu_err)?);
        self.data_y = Some(self.stream.clone_htod(&y[..data.rows]).map_err(gpu_err)?);
        Ok(())
    }

    /// Upload the epoch's row order (one transfer per epoch; batches then read windows of it).
    fn begin_epoch(&mut self, order: &[usize]) -> Result<(), TrainingError> {
        let host: Vec<u32> = order.iter().map(|&i| i as u32).collect();
        match &mut self.order {
            Some(d) if d.len() == host.len() => self.stream.memcpy_htod(&host, d).map_err(gpu_err),
            _ => {
                self.order = Some(self.stream.clone_htod(&host).map_err(gpu_err)?);
                Ok(())
            }
        }
    }

    /// Forward, backward and optimizer update on the bound rows `order[range]` (at least two).
    fn train_batch(
        &mut self,
        _data: &TrainSet<'_>,
        _order: &[usize],
        range: std::ops::Range<usize>,
        rng: &mut ChaCha8Rng,
    ) -> Result<(), TrainingError> {
        let rows = range.len();
        self.ensure_batch(rows)?;
        let s = self.stream.clone();
        let (Some(data_x), Some(data_y), Some(order), Some(b)) = (&self.data_x, &self.data_y, &self.order, &self.batch)
        else {
            return Err(TrainingError::Unusable("CUDA engine: train_batch before bind and begin_epoch".into()));
        };
        if range.end > order.len() {
            return Err(TrainingError::Unusable("CUDA engine: batch outside the epoch's order".into()));
        }
        let n = self.arch.input_dim;
        let (rows_i, n_i) = (rows as i32, n as i32);
        let pidx = ptr(order, &s) + (range.start * std::mem::size_of::<u32>()) as u64;
        let (px, py, xb, yb) = (ptr(data_x, &s), ptr(data_y, &s), ptr(&b.x, &s), ptr(&b.y, &s));
        launch!(self, self.k.gather_rows, Self::grid(rows * n), px, py, pidx, rows_i, n_i, xb, yb)?;

        let params = ptr(&self.params, &s);
        let grads = ptr(&self.grads, &s);
        let running = ptr(&self.running, &s);
        let f4 = std::mem::size_of::<f32>() as u64;
        let at = |base: u64, off: usize| base + off as u64 * f4;
        let act = activation_code(self.arch.activation);
        let p = self.arch.dropout_rate as f32;
        // Drawn only with dropout, so with none the generator (and so the shuffles) match the CPU engine's.
        let step_key: u64 = if p > 0.0 { rng.random() } else { 0 };
        let (mom, eps) = (BN_MOMENTUM as f32, self.arch.batch_norm_eps as f32);

        // Forward.
        let mut input = xb;
        for (li, (l, lb)) in self.layers.iter().zip(&b.layers).enumerate() {
            let (z, mask, xhat, out, inv) =
                (ptr(&lb.z, &s), ptr(&lb.mask, &s), ptr(&lb.xhat, &s), ptr(&lb.out, &s), ptr(&lb.inv_std, &s));
            self.gemm(z, input, false, at(params, l.w), true, rows, l.in_dim, l.h)?;
            let key = step_key ^ (li as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
            let (bias, gamma, beta) = (at(params, l.b), at(params, l.gamma), at(params, l.beta));
            let (rmean, rvar) = (at(running, l.running), at(running, l.running + l.h));
            let h_i = l.h as i32;
            launch!(
                self,
                self.k.hidden_forward_train,
                Self::per_column(l.h),
                z,
                bias,
                gamma,
                beta,
                rmean,
                rvar,
                mask,
                xhat,
                out,
                inv,
                rows_i,
                h_i,
                act,
                p,
                key,
                mom,
                eps
            )?;
            input = out;
        }
        let kk = self.arch.output_dim;
        let fan_in = self.layers.last().map_or(n, |l| l.h);
        let (out, dout) = (ptr(&b.out, &s), ptr(&b.dout, &s));
        self.gemm(out, input, false, at(params, self.out_w), true, rows, fan_in, kk)?;
        let (ob, loss_sum) = (at(params, self.out_b), ptr(&self.loss_sum, &s));
        let (k_i, regression) = (kk as i32, i32::from(self.regression));
        // One block: the loss is summed in a fixed order (reproducible train_loss).
        let one_block = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
        launch!(self, self.k.output_loss, one_block, out, ob, yb, dout, loss_sum, rows_i, k_i, regression)?;

        // Backward: output layer.
        let (dy, dz) = (ptr(&b.dy, &s), ptr(&b.dz, &s));
        self.gemm(at(grads, self.out_w), dout, true, input, false, kk, rows, fan_in)?;
        let gob = at(grads, self.out_b);
        launch!(self, self.k.column_sums, Self::per_column(kk), dout, rows_i, k_i, gob)?;
        if !self.layers.is_empty() {
            self.gemm(dy, dout, false, at(params, self.out_w), false, rows, kk, fan_in)?;
        }
        // Hidden layers, last to first.
        for li in (0..self.layers.len()).rev() {
            let (l, lb) = (&self.layers[li], &b.layers[li]);
            let (z, mask, xhat, inv) = (ptr(&lb.z, &s), ptr(&lb.mask, &s), ptr(&lb.xhat, &s), ptr(&lb.inv_std, &s));
            let (gamma, dgamma, dbeta, dbias) =
                (at(params, l.gamma), at(grads, l.gamma), at(grads, l.beta), at(grads, l.b));
            let h_i = l.h as i32;
            launch!(
                self,
                self.k.hidden_backward,
                Self::per_column(l.h),
                dy,
                xhat,
                z,
                mask,
                gamma,
                inv,
                dgamma,
                dbeta,
                dbias,
                dz,
                rows_i,
                h_i,
                act
            )?;
            let input = if li == 0 { xb } else { ptr(&b.layers[li - 1].out, &s) };
            self.gemm(at(grads, l.w), dz, true, input, false, l.h, rows, l.in_dim)?;
            if li > 0 {
                self.gemm(dy, dz, false, at(params, l.w), false, rows, l.h, l.in_dim)?;
            }
        }
        self.apply_gradients()
    }

    /// The summed per-row training loss since the last call (one device→host read).
    fn take_loss_sum(&mut self) -> Result<f64, TrainingError> {
        let v = self.stream.clone_dtoh(&self.loss_sum).map_err(gpu_err)?;
        self.stream.memset_zeros(&mut self.loss_sum).map_err(gpu_err)?;
        Ok(v[0])
    }

    /// Eval-mode outputs (no dropout, running statistics), `rows × output_dim`.
    fn predict_raw(&self, x: &[f32], rows: usize) -> Result<Vec<f32>, TrainingError> {
        let s = &self.stream;
        let n = self.arch.input_dim;
        let k = self.arch.output_dim;
        let widest = self.layers.iter().map(|l| l.h).max().unwrap_or(0).max(k);
        let chunk = EVAL_CHUNK.min(EVAL_BUFFER_FLOATS / widest.max(n).max(1)).min(rows).max(1);
        let mut xin = s.alloc_zeros::<f32>(chunk * n.max(1)).map_err(gpu_err)?;
        let (a, b) = (
            s.alloc_zeros::<f32>(chunk * widest).map_err(gpu_err)?,
            s.alloc_zeros::<f32>(chunk * widest).map_err(gpu_err)?,
        );
        let (params, running) = (ptr(&self.params, s), ptr(&self.running, s));
        let f4 = std::mem::size_of::<f32>() as u64;
        let at = |base: u64, off: usize| base + off as u64 * f4;
        let (act, eps) = (activation_code(self.arch.activation), self.arch.batch_norm_eps as f32);
        let mut out = Vec::with_capacity(rows * k);
        for start in (0..rows).step_by(chunk) {
            let r = chunk.min(rows - start);
            s.memcpy_htod(&x[start * n..(start + r) * n], &mut xin).map_err(gpu_err)?;
            let (mut input, mut bufs) = (ptr(&xin, s), [ptr(&a, s), ptr(&b, s)]);
            let r_i = r as i32;
            for l in &self.layers {
                let z = bufs[0];
                self.gemm(z, input, false, at(params, l.w), true, r, l.in_dim, l.h)?;
                let (bias, gamma, beta) = (at(params, l.b), at(params, l.gamma), at(params, l.beta));
                let (rmean, rvar) = (at(running, l.running), at(running, l.running + l.h));
                let h_i = l.h as i32;
                launch!(
                    self,
                    self.k.hidden_forward_eval,
                    Self::grid(r * l.h),
                    z,
                    bias,
                    gamma,
                    beta,
                    rmean,
                    rvar,
                    r_i,
                    h_i,
                    act,
                    eps
                )?;
                input = z;
                bufs.swap(0, 1);
            }
            let o = bufs[0];
            let fan_in = self.layers.last().map_or(n, |l| l.h);
            self.gemm(o, input, false, at(params, self.out_w), true, r, fan_in, k)?;
            let (ob, k_i) = (at(params, self.out_b), k as i32);
            launch!(self, self.k.add_bias, Self::grid(r * k), o, ob, r_i, k_i)?;
            let src = if bufs[0] == ptr(&a, s) { &a } else { &b };
            let host = s.clone_dtoh(&src.slice(0..r * k)).map_err(gpu_err)?;
            out.extend_from_slice(&host);
        }
        Ok(out)
    }

    /// Host copy of all state, in layout order.
    fn snapshot(&self) -> Result<Snapshot, TrainingError> {
        let flat = self.stream.clone_dtoh(&self.params).map_err(gpu_err)?;
        let running = self.stream.clone_dtoh(&self.running).map_err(gpu_err)?;
        Ok(self.layout.unflatten(&flat, &running))
    }

    /// Restore a snapshot taken by [`CudaMlp::snapshot`].
    fn restore(&mut self, snap: &Snapshot) -> Result<(), TrainingError> {
        let (flat, running) = self.layout.flatten(snap);
        self.stream.memcpy_htod(&flat, &mut self.params).map_err(gpu_err)?;
        self.stream.memcpy_htod(&running, &mut self.running).map_err(gpu_err)
    }

    /// All state named for the bundle.
    fn export(&self) -> Result<BTreeMap<String, Tensor>, TrainingError> {
        Ok(self.layout.named(self.snapshot()?))
    }
}
