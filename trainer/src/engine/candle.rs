//! The candle engine: the MLP [Linear → activation → Dropout → BatchNorm1d] × n → Linear as a
//! candle graph, trained by autograd and [`CandleOptimizer`], on any candle device. It is the
//! reference the fused engines are tested against, and where initial weights come from.
//!
//! Weights are initialised and dropout masks drawn from the project's seeded generator
//! (candle's CPU RNG cannot be seeded), so a run is reproducible.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var, D};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use inference::activation::LEAKY_RELU_SLOPE;
use inference::config::OptimizerKind;
use inference::spec::{Activation, Architecture};

use super::optim::{OptimizerSettings, StepCoefficients};
use super::{BatchTargets, HostBatch, ParamLayout, Snapshot, TrainSet, Trainable, BN_MOMENTUM};
use crate::error::TrainingError;

struct Hidden {
    w: Var,
    b: Var,
    gamma: Var,
    beta: Var,
    running_mean: Var,
    running_var: Var,
}

/// A trainable MLP.
pub struct Mlp {
    hidden: Vec<Hidden>,
    out_w: Var,
    out_b: Var,
    arch: Architecture,
    device: Device,
}

/// PyTorch's Linear init: U(−1/√fan_in, 1/√fan_in) for weight and bias.
fn uniform<S: Into<candle_core::Shape>>(
    rng: &mut ChaCha8Rng,
    shape: S,
    fan_in: usize,
    device: &Device,
) -> candle_core::Result<Var> {
    let shape = shape.into();
    let bound = 1.0 / (fan_in as f32).sqrt();
    let data: Vec<f32> = (0..shape.elem_count()).map(|_| rng.random_range(-bound..bound)).collect();
    Var::from_tensor(&Tensor::from_vec(data, shape, device)?)
}

fn filled(n: usize, v: f32, device: &Device) -> candle_core::Result<Var> {
    Var::from_tensor(&Tensor::full(v, n, device)?)
}

impl Mlp {
    /// A freshly initialised network for `arch`.
    pub fn new(arch: &Architecture, rng: &mut ChaCha8Rng, device: &Device) -> candle_core::Result<Self> {
        let mut hidden = Vec::with_capacity(arch.hidden_dims.len());
        let mut fan_in = arch.input_dim;
        for &h in &arch.hidden_dims {
            hidden.push(Hidden {
                w: uniform(rng, (h, fan_in), fan_in, device)?,
                b: uniform(rng, h, fan_in, device)?,
                gamma: filled(h, 1.0, device)?,
                beta: filled(h, 0.0, device)?,
                running_mean: filled(h, 0.0, device)?,
                running_var: filled(h, 1.0, device)?,
            });
            fan_in = h;
        }
        Ok(Self {
            out_w: uniform(rng, (arch.output_dim, fan_in), fan_in, device)?,
            out_b: uniform(rng, arch.output_dim, fan_in, device)?,
            hidden,
            arch: arch.clone(),
            device: device.clone(),
        })
    }

    /// A network holding a bundle's tensors (for reference outputs and fine-tuning).
    pub fn from_bundle(bundle: &inference::Bundle, device: &Device) -> candle_core::Result<Self> {
        Self::from_tensors(&bundle.metadata.architecture, &bundle.tensors, device)
    }

    /// A network holding `tensors`, named and shaped as the bundle defines them.
    pub fn from_tensors(
        arch: &Architecture,
        tensors: &BTreeMap<String, inference::Tensor>,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let m = Self::new(arch, &mut <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0), device)?;
        for (name, var) in m.named_vars() {
            let t = tensors.get(&name).ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {name}")))?;
            var.set(&Tensor::from_slice(&t.data, t.shape.as_slice(), device)?)?;
        }
        Ok(m)
    }

    /// The architecture.
    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    /// Parameters the optimizer updates (running statistics are not among them).
    pub fn parameters(&self) -> Vec<Var> {
        let mut p = Vec::with_capacity(self.hidden.len() * 4 + 2);
        for h in &self.hidden {
            p.extend([h.w.clone(), h.b.clone(), h.gamma.clone(), h.beta.clone()]);
        }
        p.extend([self.out_w.clone(), self.out_b.clone()]);
        p
    }

    fn activate(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.arch.activation {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu_erf(),
            Activation::Tanh => x.tanh(),
            Activation::LeakyRelu => candle_nn::ops::leaky_relu(x, f64::from(LEAKY_RELU_SLOPE)),
            Activation::Sigmoid => candle_nn::ops::sigmoid(x),
        }
    }

    /// Training-mode forward: dropout from `rng`, batch statistics, running statistics updated.
    /// The batch must have at least two rows.
    pub fn forward_train(&self, x: &Tensor, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
        let rows = x.dim(0)?;
        let p = self.arch.dropout_rate as f32;
        let mut h = x.clone();
        for layer in &self.hidden {
            h = self.activate(&h.matmul(&layer.w.t()?)?.broadcast_add(&layer.b)?)?;
            if p > 0.0 {
                let width = h.dim(1)?;
                let keep = 1.0 / (1.0 - p);
                let mask: Vec<f32> =
                    (0..rows * width).map(|_| if rng.random::<f32>() < p { 0.0 } else { keep }).collect();
                h = (h * Tensor::from_vec(mask, (rows, width), &self.device)?)?;
            }
            let mean = h.mean_keepdim(0)?;
            let centered = h.broadcast_sub(&mean)?;
            let var = centered.sqr()?.mean_keepdim(0)?;
            let inv_std = var.affine(1.0, self.arch.batch_norm_eps)?.sqrt()?.recip()?;
            h = centered.broadcast_mul(&inv_std)?.broadcast_mul(&layer.gamma)?.broadcast_add(&layer.beta)?;
            // Running statistics use the unbiased variance, as torch.nn.BatchNorm1d.
            let unbias = rows as f64 / (rows as f64 - 1.0);
            let m = BN_MOMENTUM;
            let rm =
                (layer.running_mean.as_tensor().affine(1.0 - m, 0.0)? + mean.detach().squeeze(0)?.affine(m, 0.0)?)?;
            let rv = (layer.running_var.as_tensor().affine(1.0 - m, 0.0)?
                + var.detach().squeeze(0)?.affine(m * unbias, 0.0)?)?;
            layer.running_mean.set(&rm)?;
            layer.running_var.set(&rv)?;
        }
        h.matmul(&self.out_w.t()?)?.broadcast_add(&self.out_b)
    }

    /// Eval-mode forward (no dropout, running statistics): raw outputs (logits or scaled values).
    pub fn forward_eval(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.hidden {
            h = self.activate(&h.matmul(&layer.w.t()?)?.broadcast_add(&layer.b)?)?;
            let inv_std = layer.running_var.as_tensor().affine(1.0, self.arch.batch_norm_eps)?.sqrt()?.recip()?;
            h = h
                .broadcast_sub(layer.running_mean.as_tensor())?
                .broadcast_mul(&inv_std)?
                .broadcast_mul(&layer.gamma)?
                .broadcast_add(&layer.beta)?;
        }
        h.matmul(&self.out_w.t()?)?.broadcast_add(&self.out_b)
    }

    /// Eval-mode outputs for a row-major matrix, computed in chunks; returns `rows × output_dim`.
    pub fn predict_raw(&self, x: &[f32], rows: usize) -> candle_core::Result<Vec<f32>> {
        const CHUNK: usize = 8192;
        let n = self.arch.input_dim;
        let mut out = Vec::with_capacity(rows * self.arch.output_dim);
        for start in (0..rows).step_by(CHUNK) {
            let r = CHUNK.min(rows - start);
            let t = Tensor::from_slice(&x[start * n..(start + r) * n], (r, n), &self.device)?;
            out.extend(self.forward_eval(&t)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// All state (parameters and running statistics) in [`ParamLayout`] order, with its bundle name.
    fn named_vars(&self) -> Vec<(String, &Var)> {
        let mut vars: Vec<&Var> = Vec::with_capacity(self.hidden.len() * 6 + 2);
        for h in &self.hidden {
            vars.extend([&h.w, &h.b, &h.gamma, &h.beta, &h.running_mean, &h.running_var]);
        }
        vars.extend([&self.out_w, &self.out_b]);
        ParamLayout::new(&self.arch).tensors.into_iter().map(|slot| slot.name).zip(vars).collect()
    }

    /// Trainable parameters with their bundle names.
    pub fn named_parameters(&self) -> Vec<(String, Var)> {
        self.named_vars()
            .into_iter()
            .filter(|(n, _)| !inference::bundle::is_running_statistic(n))
            .map(|(n, v)| (n, v.clone()))
            .collect()
    }

    /// All state as host tensors named for the bundle.
    pub fn export(&self) -> candle_core::Result<BTreeMap<String, inference::Tensor>> {
        self.named_vars()
            .into_iter()
            .map(|(name, var)| {
                let t = var.as_tensor();
                let data = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                Ok((name, inference::Tensor { shape: t.dims().to_vec(), data }))
            })
            .collect()
    }
}

/// The general path: candle tensors and autograd on any device (CPU or CUDA).
pub struct CandleNet {
    mlp: Mlp,
    opt: CandleOptimizer,
    device: Device,
    batch: HostBatch,
}

impl CandleNet {
    /// A network starting from `tensors` on `device`, with its optimizer.
    pub fn new(
        arch: &Architecture,
        tensors: &BTreeMap<String, inference::Tensor>,
        device: &Device,
        optimizer: OptimizerSettings,
    ) -> Result<Self, TrainingError> {
        let mlp = Mlp::from_tensors(arch, tensors, device)?;
        let opt = CandleOptimizer::new(optimizer, mlp.parameters());
        Ok(Self { mlp, opt, device: device.clone(), batch: HostBatch::default() })
    }
}

impl Trainable for CandleNet {
    fn architecture(&self) -> &Architecture {
        &self.mlp.arch
    }

    fn engine(&self) -> &'static str {
        "candle"
    }

    fn train_batch(
        &mut self,
        data: &TrainSet<'_>,
        order: &[usize],
        range: std::ops::Range<usize>,
        rng: &mut ChaCha8Rng,
    ) -> Result<(), TrainingError> {
        let idx = &order[range];
        let (mlp, opt, device) = (&self.mlp, &mut self.opt, &self.device);
        self.batch.step(data, idx, |x, y| {
            let rows = idx.len();
            let xt = Tensor::from_slice(x, (rows, mlp.arch.input_dim), device)?;
            let out = mlp.forward_train(&xt, rng)?;
            let loss = match y {
                BatchTargets::Classes(c) => cross_entropy(&out, &Tensor::from_slice(c, rows, device)?)?,
                BatchTargets::Values(v) => mse(&out, &Tensor::from_slice(v, rows, device)?)?,
            };
            let l = f64::from(loss.to_scalar::<f32>()?);
            if l.is_finite() {
                opt.step(&loss.backward()?)?;
            }
            Ok(l)
        })
    }

    fn take_loss_sum(&mut self) -> Result<f64, TrainingError> {
        Ok(self.batch.take_loss_sum())
    }

    fn diverged(&self) -> bool {
        self.batch.diverged()
    }

    fn predict_raw(&self, x: &[f32], rows: usize) -> Result<Vec<f32>, TrainingError> {
        Ok(self.mlp.predict_raw(x, rows)?)
    }

    fn snapshot(&self) -> Result<Snapshot, TrainingError> {
        self.mlp
            .named_vars()
            .into_iter()
            .map(|(_, var)| Ok(var.as_tensor().to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?))
            .collect()
    }

    fn restore(&mut self, s: &Snapshot) -> Result<(), TrainingError> {
        for ((_, var), data) in self.mlp.named_vars().iter().zip(s) {
            var.set(&Tensor::from_slice(data, var.as_tensor().dims(), &self.device)?)?;
        }
        Ok(())
    }

    fn export(&self) -> Result<BTreeMap<String, inference::Tensor>, TrainingError> {
        Ok(self.mlp.export()?)
    }
}

/// The optimizers over candle `Var`s (candle-nn has no momentum SGD and no coupled-decay
/// Adam), with the scalars of [`StepCoefficients`] so they update as the fused engines do.
pub struct CandleOptimizer {
    settings: OptimizerSettings,
    params: Vec<Var>,
    first: Vec<Option<Tensor>>,
    second: Vec<Option<Tensor>>,
    step: i32,
}

impl CandleOptimizer {
    /// A new optimizer over `params`.
    pub fn new(settings: OptimizerSettings, params: Vec<Var>) -> Self {
        let n = params.len();
        Self { settings, params, first: vec![None; n], second: vec![None; n], step: 0 }
    }

    /// Apply one update from `grads`.
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.step += 1;
        let c = StepCoefficients::at(&self.settings, self.step);
        let f = f64::from;
        for (i, p) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            let w = p.as_tensor();
            let g = if c.coupled_decay { (g + w.affine(f(c.weight_decay), 0.0)?)? } else { g.clone() };
            let updated = match self.settings.kind {
                OptimizerKind::Sgd => {
                    let buf = match &self.first[i] {
                        Some(b) => (b.affine(f(c.momentum_keep), 0.0)? + &g)?,
                        None => g,
                    };
                    let next = (w - buf.affine(f(c.lr), 0.0)?)?;
                    self.first[i] = Some(buf);
                    next
                }
                OptimizerKind::Adam | OptimizerKind::Adamw => {
                    let m = match &self.first[i] {
                        Some(m) => (m.affine(f(c.k1), 0.0)? + g.affine(f(c.one_minus_b1), 0.0)?)?,
                        None => g.affine(f(c.one_minus_b1), 0.0)?,
                    };
                    let g2 = g.sqr()?;
                    let v = match &self.second[i] {
                        Some(v) => (v.affine(f(c.k2), 0.0)? + g2.affine(f(c.one_minus_b2), 0.0)?)?,
                        None => g2.affine(f(c.one_minus_b2), 0.0)?,
                    };
                    let denom = v.affine(f(c.inv_bc2), 0.0)?.sqrt()?.affine(1.0, f(c.eps))?;
                    let delta = m.affine(f(c.step_size), 0.0)?.div(&denom)?;
                    let base = if c.decay != 1.0 { w.affine(f(c.decay), 0.0)? } else { w.clone() };
                    self.first[i] = Some(m);
                    self.second[i] = Some(v);
                    (base - delta)?
                }
            };
            p.set(&updated)?;
        }
        Ok(())
    }
}

/// Mean cross-entropy of logits against class ids.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::loss::cross_entropy(logits, targets)
}

/// Mean squared error of a `rows × 1` output against `rows` targets.
pub fn mse(out: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::loss::mse(&out.squeeze(D::Minus1)?, targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn arch() -> Architecture {
        Architecture {
            input_dim: 3,
            hidden_dims: vec![8, 4],
            output_dim: 2,
            dropout_rate: 0.5,
            activation: Activation::Relu,
            batch_norm_eps: inference::spec::DEFAULT_BATCH_NORM_EPS,
        }
    }

    #[test]
    fn shapes_and_names_match_the_bundle_definition() {
        for output_dim in [1, 2] {
            let a = Architecture { output_dim, ..arch() };
            let m = Mlp::new(&a, &mut ChaCha8Rng::seed_from_u64(0), &Device::Cpu).unwrap();
            let t = m.export().unwrap();
            let expected = inference::bundle::expected_tensors(&a);
            assert_eq!(t.len(), expected.len());
            for (name, shape) in expected {
                assert_eq!(t[&name].shape, shape, "{name}");
            }
        }
    }

    #[test]
    fn same_seed_same_init_and_batchnorm_updates_running_stats() {
        let a = Mlp::new(&arch(), &mut ChaCha8Rng::seed_from_u64(1), &Device::Cpu).unwrap();
        let b = Mlp::new(&arch(), &mut ChaCha8Rng::seed_from_u64(1), &Device::Cpu).unwrap();
        assert_eq!(a.export().unwrap(), b.export().unwrap());
        let x = Tensor::new(&[[1f32, 2., 3.], [0., -1., 4.], [2., 2., 2.], [5., 0., 1.]], &Device::Cpu).unwrap();
        a.forward_train(&x, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
        let rm = &a.export().unwrap()["hidden.0.bn.running_mean"].data;
        assert!(rm.iter().any(|v| *v != 0.0));
        let out = a.forward_eval(&x).unwrap();
        assert_eq!(out.dims(), &[4, 2]);
    }
}
