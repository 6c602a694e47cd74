//! Training engines behind one trait. `mod.rs` holds what they share: the [`Trainable`] trait,
//! the training split and batch types, the parameter layout (derived from the core's tensor
//! list), the optimizer coefficients, and the choice of engine for a device.
//!
//! - [`cpu`]: the fused CPU step (hand-written backward over `gemm`), the default on CPU;
//! - [`cuda`] (feature `cuda`): the same step as cuBLAS GEMMs plus kernels;
//! - [`candle`]: candle's autograd on either device, the reference the fused steps are tested against.

pub mod candle;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod optim;
pub mod team;

use std::collections::BTreeMap;

use candle_core::Device;
use rand_chacha::ChaCha8Rng;

use inference::bundle::{expected_tensors, is_running_statistic, HIDDEN_PARTS};
use inference::config::{EngineChoice, TrainOptions};
use inference::spec::Architecture;
use inference::Tensor;

use crate::error::TrainingError;

/// BatchNorm running-statistics momentum (PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;

/// Targets of one batch, or of a whole split.
#[derive(Clone, Copy)]
pub enum BatchTargets<'a> {
    /// Class ids (classification).
    Classes(&'a [u32]),
    /// Standardised values (regression).
    Values(&'a [f32]),
}

/// The training split as the engines read it: `rows × n` features, row-major, and targets.
pub struct TrainSet<'a> {
    /// Features.
    pub x: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Features per row.
    pub n: usize,
    /// One target per row.
    pub targets: BatchTargets<'a>,
}

/// A batch gathered on the host, for the CPU engines, and the running loss sum.
#[derive(Default)]
pub struct HostBatch {
    x: Vec<f32>,
    classes: Vec<u32>,
    values: Vec<f32>,
    loss_sum: f64,
}

impl HostBatch {
    /// Gather rows `idx` of `data` into the reused buffers.
    fn gather(&mut self, data: &TrainSet<'_>, idx: &[usize]) {
        let n = data.n;
        self.x.clear();
        for &i in idx {
            self.x.extend_from_slice(&data.x[i * n..(i + 1) * n]);
        }
        match data.targets {
            BatchTargets::Classes(c) => {
                self.classes.clear();
                self.classes.extend(idx.iter().map(|&i| c[i]));
            }
            BatchTargets::Values(v) => {
                self.values.clear();
                self.values.extend(idx.iter().map(|&i| v[i]));
            }
        }
    }

    /// Run `step` (returning the batch's mean loss) on rows `idx`, adding its summed loss.
    pub fn step(
        &mut self,
        data: &TrainSet<'_>,
        idx: &[usize],
        step: impl FnOnce(&[f32], &BatchTargets<'_>) -> Result<f64, TrainingError>,
    ) -> Result<(), TrainingError> {
        self.gather(data, idx);
        let y = match data.targets {
            BatchTargets::Classes(_) => BatchTargets::Classes(&self.classes),
            BatchTargets::Values(_) => BatchTargets::Values(&self.values),
        };
        let loss = step(&self.x, &y)?;
        self.loss_sum += loss * idx.len() as f64;
        Ok(())
    }

    /// The summed loss since the last call.
    pub fn take_loss_sum(&mut self) -> f64 {
        std::mem::take(&mut self.loss_sum)
    }

    /// Whether a batch loss since the last [`HostBatch::take_loss_sum`] was non-finite.
    pub fn diverged(&self) -> bool {
        !self.loss_sum.is_finite()
    }
}

/// Host copy of all network state (parameters and running statistics), in [`ParamLayout`] order.
pub type Snapshot = Vec<Vec<f32>>;

/// One tensor of the network: its bundle name and shape, and where it sits in the flat
/// buffer of its kind (trainable parameters or running statistics).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSlot {
    /// Bundle name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Number of values.
    pub len: usize,
    /// Updated by the optimizer (else a BatchNorm running statistic).
    pub trainable: bool,
    /// Offset in the flat buffer of its kind.
    pub offset: usize,
}

/// Where one hidden layer's tensors are (indices into [`ParamLayout::tensors`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HiddenSlots {
    /// Input width.
    pub in_dim: usize,
    /// Output width.
    pub width: usize,
    /// `linear.weight`, `linear.bias`, `bn.weight` (γ), `bn.bias` (β), `bn.running_mean`, `bn.running_var`.
    pub weight: usize,
    /// See `weight`.
    pub bias: usize,
    /// See `weight`.
    pub gamma: usize,
    /// See `weight`.
    pub beta: usize,
    /// See `weight`.
    pub running_mean: usize,
    /// See `weight`.
    pub running_var: usize,
}

/// The network's tensors in one order for every engine, derived from the core's
/// [`expected_tensors`], so no engine spells out names, shapes or offsets itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamLayout {
    /// Every tensor, in `expected_tensors` order.
    pub tensors: Vec<TensorSlot>,
    /// Each hidden layer.
    pub hidden: Vec<HiddenSlots>,
    /// `out.weight`.
    pub out_weight: usize,
    /// `out.bias`.
    pub out_bias: usize,
    /// Length of the flat trainable buffer.
    pub trainable_len: usize,
    /// Length of the flat running-statistics buffer.
    pub running_len: usize,
}

impl ParamLayout {
    /// The layout of `arch`.
    pub fn new(arch: &Architecture) -> Self {
        let (mut trainable_len, mut running_len) = (0, 0);
        let tensors: Vec<TensorSlot> = expected_tensors(arch)
            .into_iter()
            .map(|(name, shape)| {
                let len = shape.iter().product();
                let trainable = !is_running_statistic(&name);
                let at = if trainable { &mut trainable_len } else { &mut running_len };
                let offset = *at;
                *at += len;
                TensorSlot { name, shape, len, trainable, offset }
            })
            .collect();
        let parts = HIDDEN_PARTS.len();
        let mut in_dim = arch.input_dim;
        let hidden = arch
            .hidden_dims
            .iter()
            .enumerate()
            .map(|(i, &width)| {
                let base = i * parts;
                let slots = HiddenSlots {
                    in_dim,
                    width,
                    weight: base,
                    bias: base + 1,
                    gamma: base + 2,
                    beta: base + 3,
                    running_mean: base + 4,
                    running_var: base + 5,
                };
                in_dim = width;
                slots
            })
            .collect();
        let out_weight = arch.hidden_dims.len() * parts;
        Self { tensors, hidden, out_weight, out_bias: out_weight + 1, trainable_len, running_len }
    }

    /// Width of the last hidden layer (the output layer's input).
    pub fn last_width(&self, arch: &Architecture) -> usize {
        self.hidden.last().map_or(arch.input_dim, |h| h.width)
    }

    /// The values of `tensors` in layout order, each checked against its shape.
    pub fn take(&self, tensors: &BTreeMap<String, Tensor>) -> Result<Snapshot, TrainingError> {
        self.tensors
            .iter()
            .map(|slot| match tensors.get(&slot.name) {
                Some(t) if t.data.len() == slot.len && t.shape == slot.shape => Ok(t.data.clone()),
                Some(t) => Err(TrainingError::Unusable(format!(
                    "tensor {} has shape {:?} ({} values), the architecture needs {:?}",
                    slot.name,
                    t.shape,
                    t.data.len(),
                    slot.shape
                ))),
                None => Err(TrainingError::Unusable(format!("initial weights lack tensor {}", slot.name))),
            })
            .collect()
    }

    /// Split a snapshot into the flat trainable and running-statistics buffers.
    pub fn flatten(&self, snap: &Snapshot) -> (Vec<f32>, Vec<f32>) {
        let (mut params, mut running) = (vec![0f32; self.trainable_len], vec![0f32; self.running_len]);
        for (slot, data) in self.tensors.iter().zip(snap) {
            let dst = if slot.trainable { &mut params } else { &mut running };
            dst[slot.offset..slot.offset + slot.len].copy_from_slice(data);
        }
        (params, running)
    }

    /// Join flat buffers back into a snapshot.
    pub fn unflatten(&self, params: &[f32], running: &[f32]) -> Snapshot {
        self.tensors
            .iter()
            .map(|slot| {
                let src = if slot.trainable { params } else { running };
                src[slot.offset..slot.offset + slot.len].to_vec()
            })
            .collect()
    }

    /// A snapshot as bundle tensors.
    pub fn named(&self, snap: Snapshot) -> BTreeMap<String, Tensor> {
        self.tensors
            .iter()
            .zip(snap)
            .map(|(slot, data)| (slot.name.clone(), Tensor { shape: slot.shape.clone(), data }))
            .collect()
    }
}

/// What the training loop needs from a network, whichever engine computes it.
pub trait Trainable {
    /// The architecture.
    fn architecture(&self) -> &Architecture;
    /// Which engine computes the steps (`fused`, `cuda-fused` or `candle`), recorded in the metadata.
    fn engine(&self) -> &'static str;
    /// Called once before training with the whole training split (an engine may keep it on its device).
    fn bind(&mut self, _data: &TrainSet<'_>) -> Result<(), TrainingError> {
        Ok(())
    }
    /// Called at the start of each epoch with its row order (a GPU engine uploads it once).
    fn begin_epoch(&mut self, _order: &[usize]) -> Result<(), TrainingError> {
        Ok(())
    }
    /// Forward, backward and one optimizer update on rows `order[range]` of the bound split,
    /// `order` being the slice passed to [`Trainable::begin_epoch`]. The loss is accumulated
    /// where the engine computes (read by [`Trainable::take_loss_sum`]), so a GPU step needs
    /// no transfer at all.
    fn train_batch(
        &mut self,
        data: &TrainSet<'_>,
        order: &[usize],
        range: std::ops::Range<usize>,
        rng: &mut ChaCha8Rng,
    ) -> Result<(), TrainingError>;
    /// The summed per-row training loss since the last call (non-finite if any batch was).
    fn take_loss_sum(&mut self) -> Result<f64, TrainingError>;
    /// Whether a batch loss since the last [`Trainable::take_loss_sum`] is already known to be
    /// non-finite. Host engines know at once; the CUDA engine reads its loss once per epoch,
    /// so divergence there surfaces at the epoch's end.
    fn diverged(&self) -> bool {
        false
    }
    /// Eval-mode outputs, `rows × output_dim`.
    fn predict_raw(&self, x: &[f32], rows: usize) -> Result<Vec<f32>, TrainingError>;
    /// Copy of all state, in [`ParamLayout`] order.
    fn snapshot(&self) -> Result<Snapshot, TrainingError>;
    /// Restore a snapshot.
    fn restore(&mut self, s: &Snapshot) -> Result<(), TrainingError>;
    /// All state named for the bundle.
    fn export(&self) -> Result<BTreeMap<String, Tensor>, TrainingError>;
}

/// The engine to use: the config's choice, else `TRAINER_ENGINE` (`fused` or `candle`), else fused.
pub fn resolve(choice: EngineChoice) -> EngineChoice {
    match choice {
        EngineChoice::Auto => match std::env::var("TRAINER_ENGINE").as_deref() {
            Ok("candle") => EngineChoice::Candle,
            _ => EngineChoice::Fused,
        },
        c => c,
    }
}

/// A network for `arch` on `device`, starting from `tensors` (named as the bundle names them),
/// computed by the engine `tc.engine` resolves to.
pub fn build(
    arch: &Architecture,
    tc: &TrainOptions,
    device: &Device,
    tensors: &BTreeMap<String, Tensor>,
) -> Result<Box<dyn Trainable>, TrainingError> {
    let step = optim::OptimizerSettings::of(tc);
    if resolve(tc.engine) == EngineChoice::Candle || !(device.is_cpu() || device.is_cuda()) {
        return Ok(Box::new(candle::CandleNet::new(arch, tensors, device, step)?));
    }
    if device.is_cpu() {
        return Ok(Box::new(cpu::FusedMlp::new(arch, tensors, step)?));
    }
    cuda_engine(arch, device, tensors, step)
}

#[cfg(feature = "cuda")]
fn cuda_engine(
    arch: &Architecture,
    device: &Device,
    tensors: &BTreeMap<String, Tensor>,
    step: optim::OptimizerSettings,
) -> Result<Box<dyn Trainable>, TrainingError> {
    let stream = device.as_cuda_device()?.cuda_stream();
    Ok(Box::new(cuda::CudaMlp::new(stream, arch, tensors, step)?))
}

#[cfg(not(feature = "cuda"))]
fn cuda_engine(
    _arch: &Architecture,
    _device: &Device,
    _tensors: &BTreeMap<String, Tensor>,
    _step: optim::OptimizerSettings,
) -> Result<Box<dyn Trainable>, TrainingError> {
    Err(crate::error::DeviceError::CudaNotBuilt.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use inference::spec::Activation;

    #[test]
    fn layout_follows_the_bundle_and_round_trips() {
        let arch = Architecture {
            input_dim: 3,
            hidden_dims: vec![4, 2],
            output_dim: 2,
            dropout_rate: 0.0,
            activation: Activation::Relu,
            batch_norm_eps: 1e-5,
        };
        let l = ParamLayout::new(&arch);
        assert_eq!(l.tensors.len(), 2 * 6 + 2);
        assert_eq!(l.tensors[l.hidden[1].weight].name, "hidden.1.linear.weight");
        assert_eq!(l.tensors[l.hidden[1].weight].shape, vec![2, 4]);
        assert_eq!(l.tensors[l.out_weight].name, "out.weight");
        assert!(!l.tensors[l.hidden[0].running_var].trainable);
        assert_eq!(l.trainable_len, (4 * 3 + 4 * 3) + (2 * 4 + 2 * 3) + (2 * 2 + 2));
        assert_eq!(l.running_len, 2 * 4 + 2 * 2);
        let snap: Snapshot = l.tensors.iter().enumerate().map(|(i, s)| vec![i as f32; s.len]).collect();
        let (p, r) = l.flatten(&snap);
        assert_eq!(l.unflatten(&p, &r), snap);
        let named = l.named(snap.clone());
        assert_eq!(l.take(&named).unwrap(), snap);
    }
}
