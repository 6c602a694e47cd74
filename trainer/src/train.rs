//! The training loop: seeded shuffling, batches gathered into a reused buffer, early stopping
//! on validation loss with the best epoch's weights restored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::Device;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use inference::config::{TaskType, TrainConfig};
use inference::record::EpochRecord;
use inference::spec::{Architecture, DEFAULT_BATCH_NORM_EPS};

use crate::engine::candle::Mlp;
use crate::engine::{self, BatchTargets, TrainSet, Trainable};
use crate::error::TrainingError;
use crate::metrics;
use crate::prep::{scaled_targets, Prepared, Split};

/// What training produced.
pub struct Trained {
    /// The network with the best epoch's weights.
    pub model: Box<dyn Trainable>,
    /// Per-epoch record.
    pub history: Vec<EpochRecord>,
    /// Epochs run.
    pub epochs_run: usize,
    /// 1-based epoch whose weights were kept.
    pub best_epoch: usize,
    /// Seconds in the training loop (batches and validation).
    pub train_seconds: f64,
    /// Training rows processed per second of the loop.
    pub samples_per_second: f64,
    /// The validation loss of the kept epoch's weights (`best_epoch`, which early stopping's
    /// `min_delta` may hold before the epoch of the lowest loss) with its standard error (the
    /// per-row losses' standard deviation over √rows: how far that loss would move on another
    /// sample of validation rows), when there is a validation split. A search ranks trials by
    /// this, the loss of the weights that would ship.
    pub kept_val_loss: Option<MeanLoss>,
}

/// Batch boundaries over `n` rows; a trailing batch of one row is merged into the previous
/// one (BatchNorm cannot normalise a single row).
pub fn batch_ranges(n: usize, batch: usize) -> Vec<(usize, usize)> {
    let mut r: Vec<(usize, usize)> = (0..n).step_by(batch).map(|s| (s, (s + batch).min(n))).collect();
    if r.len() > 1 && r.last().is_some_and(|&(s, e)| e - s == 1) {
        let (_, e) = r.pop().unwrap_or((0, 0));
        if let Some(last) = r.last_mut() {
            last.1 = e;
        }
    }
    r
}

/// Network shape for a prepared dataset.
pub fn architecture(p: &Prepared, cfg: &TrainConfig) -> Architecture {
    Architecture {
        input_dim: p.n_features(),
        hidden_dims: cfg.model_config.hidden_dims.clone(),
        output_dim: p.output_dim(),
        dropout_rate: cfg.model_config.dropout_rate,
        activation: cfg.model_config.activation,
        batch_norm_eps: DEFAULT_BATCH_NORM_EPS,
    }
}

/// A validation loss: the mean of per-row losses, and its standard error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanLoss {
    /// The mean of the per-row losses.
    pub mean: f64,
    /// Its standard error.
    pub se: f64,
}

impl MeanLoss {
    /// Mean and standard error (sample standard deviation over √n; 0 for one row).
    fn of(losses: impl Iterator<Item = f64>) -> Self {
        // Welford: one pass, stable for the large, nearly equal losses of a good model.
        let (mut n, mut mean, mut m2) = (0f64, 0f64, 0f64);
        for x in losses {
            n += 1.0;
            let d = x - mean;
            mean += d / n;
            m2 += d * (x - mean);
        }
        let se = if n > 1.0 { (m2 / (n - 1.0)).sqrt() / n.sqrt() } else { 0.0 };
        Self { mean, se }
    }
}

/// Cross-entropy of logits (`rows × k`) against class ids, per row, in f64.
fn cross_entropy(out: &[f32], k: usize, ids: &[u32]) -> MeanLoss {
    MeanLoss::of(out.chunks_exact(k).zip(ids).map(|(o, &t)| {
        let max = o.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = o.iter().map(|&v| f64::from(v - max).exp()).sum();
        f64::from(max) + sum.ln() - f64::from(o[t as usize])
    }))
}

/// Squared error, per row.
fn squared_error(pred: &[f64], want: &[f64]) -> MeanLoss {
    MeanLoss::of(pred.iter().zip(want).map(|(a, b)| (a - b) * (a - b)))
}

/// Validation loss and metric (accuracy or R²) in eval mode. The loss is computed here on the
/// host from the outputs, whatever the engine (no tensor-library kernels on the GPU path).
fn evaluate(m: &dyn Trainable, split: &Split, p: &Prepared) -> Result<(MeanLoss, f64), TrainingError> {
    let out = m.predict_raw(&split.x, split.rows)?;
    let k = p.output_dim();
    Ok(match p.task {
        TaskType::Classification => (
            cross_entropy(&out, k, &split.class_ids),
            metrics::accuracy(&split.class_ids, &metrics::argmax_rows(&out, k)),
        ),
        TaskType::Regression => {
            let (pred, want): (Vec<f64>, Vec<f64>) =
                (out.iter().map(|&v| f64::from(v)).collect(), scaled(&split.values, p));
            (squared_error(&pred, &want), metrics::regression(&want, &pred).r2)
        }
    })
}

fn scaled(values: &[f64], p: &Prepared) -> Vec<f64> {
    scaled_targets(values, p.preprocessing.target_scaler).into_iter().map(f64::from).collect()
}

/// Train on `p.train`, early-stopping on `p.val`. `on_epoch` sees each record and the epoch
/// total; `cancel` stops training between batches, as does `train_config.max_seconds`.
pub fn train(
    p: &Prepared,
    cfg: &TrainConfig,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochRecord, usize),
    cancel: &AtomicBool,
) -> Result<Trained, TrainingError> {
    let tc = &cfg.train_config;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let arch = architecture(p, cfg);
    let weights: usize =
        inference::bundle::expected_tensors(&arch).iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    if weights > inference::config::MAX_PARAMETERS {
        return Err(TrainingError::Unusable(format!(
            "the network would have {weights} parameters, over the limit of {}: use narrower hidden layers",
            inference::config::MAX_PARAMETERS
        )));
    }
    // Initial weights come from the seeded generator on the host, whatever the device.
    let init = Mlp::new(&arch, &mut rng, &Device::Cpu)?.export()?;
    let mut m = engine::build(&arch, tc, device, &init)?;
    let n = p.n_features();
    let mut order: Vec<usize> = (0..p.train.rows).collect();
    let batch = tc.batch_size.min(p.train.rows);
    let scaled_train = scaled_targets(&p.train.values, p.preprocessing.target_scaler);
    let data = TrainSet {
        x: &p.train.x,
        rows: p.train.rows,
        n,
        targets: match p.task {
            TaskType::Classification => BatchTargets::Classes(&p.train.class_ids),
            TaskType::Regression => BatchTargets::Values(&scaled_train),
        },
    };
    m.bind(&data)?;
    let mut history = Vec::new();
    let (mut best_loss, mut best_epoch, mut best_state, mut waited) = (f64::INFINITY, 0, None, 0);
    let mut kept: Option<MeanLoss> = None;
    let start = Instant::now();
    let deadline = tc.max_seconds.map(|s| (start + Duration::from_secs_f64(s), s));
    let mut samples = 0usize;
    for epoch in 1..=tc.epochs {
        order.shuffle(&mut rng);
        m.begin_epoch(&order)?;
        let mut seen = 0usize;
        for (s, e) in batch_ranges(order.len(), batch) {
            if cancel.load(Ordering::Relaxed) {
                return Err(TrainingError::Cancelled("stop requested".into()));
            }
            if let Some((at, seconds)) = deadline {
                if Instant::now() >= at {
                    return Err(TrainingError::TimedOut { seconds });
                }
            }
            m.train_batch(&data, &order, s..e, &mut rng)?;
            seen += e - s;
            if m.diverged() {
                break;
            }
        }
        // Read once per epoch: a GPU engine keeps the sum on the device.
        let train_loss = m.take_loss_sum()? / seen.max(1) as f64;
        if !train_loss.is_finite() {
            return Err(TrainingError::NonFiniteLoss { epoch, loss: train_loss });
        }
        samples += seen;
        let mut record = EpochRecord { epoch, train_loss, val_loss: None, val_accuracy: None, val_r2: None };
        // Without a validation split, the training loss drives early stopping.
        let mut val = None;
        let monitored = if p.val.rows > 0 {
            let (loss, metric) = evaluate(m.as_ref(), &p.val, p)?;
            val = Some(loss);
            record.val_loss = Some(loss.mean);
            match p.task {
                TaskType::Classification => record.val_accuracy = Some(metric),
                TaskType::Regression => record.val_r2 = Some(metric),
            }
            loss.mean
        } else {
            train_loss
        };
        if !monitored.is_finite() {
            return Err(TrainingError::NonFiniteLoss { epoch, loss: monitored });
        }
        on_epoch(&record, tc.epochs);
        history.push(record);
        if monitored < best_loss - tc.min_delta {
            best_loss = monitored;
            best_epoch = epoch;
            best_state = Some(m.snapshot()?);
            kept = val;
            waited = 0;
        } else {
            waited += 1;
            if tc.patience > 0 && waited >= tc.patience {
                break;
            }
        }
    }
    if let Some(state) = &best_state {
        m.restore(state)?;
    }
    let train_seconds = start.elapsed().as_secs_f64();
    Ok(Trained {
        model: m,
        epochs_run: history.len(),
        history,
        best_epoch,
        train_seconds,
        samples_per_second: samples as f64 / train_seconds.max(1e-9),
        kept_val_loss: kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    /// The host-side validation losses equal the training losses (candle's) on the same outputs.
    #[test]
    fn validation_losses_match_the_training_losses() {
        let (rows, k) = (7, 3);
        let out: Vec<f32> = (0..rows * k).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.7).collect();
        let ids: Vec<u32> = (0..rows as u32).map(|i| i % 3).collect();
        let dev = Device::Cpu;
        let logits = Tensor::from_slice(&out, (rows, k), &dev).unwrap();
        let want =
            crate::engine::candle::cross_entropy(&logits, &Tensor::from_slice(&ids, rows, &dev).unwrap()).unwrap();
        let want = f64::from(want.to_scalar::<f32>().unwrap());
        assert!((cross_entropy(&out, k, &ids).mean - want).abs() < 1e-6);

        let pred: Vec<f32> = out[..rows].to_vec();
        let targets: Vec<f32> = (0..rows).map(|i| i as f32 * 0.5).collect();
        let p = Tensor::from_slice(&pred, (rows, 1), &dev).unwrap();
        let want = crate::engine::candle::mse(&p, &Tensor::from_slice(&targets, rows, &dev).unwrap()).unwrap();
        let want = f64::from(want.to_scalar::<f32>().unwrap());
        let as64 = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
        assert!((squared_error(&as64(&pred), &as64(&targets)).mean - want).abs() < 1e-5);
    }

    /// With a `min_delta` larger than any later gain, early stopping keeps an early epoch: the
    /// reported validation loss is that epoch's (the shipped weights'), not the lowest seen.
    #[test]
    fn the_kept_validation_loss_is_the_kept_epochs() {
        let mut cfg = inference::config::TrainConfig::default();
        cfg.train_config.epochs = 6;
        cfg.train_config.patience = 0;
        cfg.train_config.min_delta = 0.5;
        let checked = cfg.clone().check().unwrap();
        let run = crate::pipeline::prepare(&checked, &crate::pipeline::RunOptions::default()).unwrap();
        let trained = train(&run.prepared, &cfg, &Device::Cpu, &mut |_, _| {}, &AtomicBool::new(false)).unwrap();
        let losses: Vec<f64> = trained.history.iter().map(|r| r.val_loss.unwrap()).collect();
        let kept = trained.kept_val_loss.unwrap();
        assert_eq!(kept.mean, losses[trained.best_epoch - 1]);
        assert!(kept.se > 0.0);
        let lowest = losses.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(lowest < kept.mean, "the data should keep improving after the kept epoch: {losses:?}");
    }

    #[test]
    fn the_standard_error_is_the_sample_deviation_over_root_n() {
        let l = MeanLoss::of([1.0, 2.0, 3.0, 4.0].into_iter());
        // Sample variance 5/3, over √4.
        assert!((l.mean - 2.5).abs() < 1e-12 && (l.se - (5.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-12);
        assert_eq!(MeanLoss::of([7.0].into_iter()), MeanLoss { mean: 7.0, se: 0.0 });
        // Large equal losses: no cancellation.
        assert_eq!(MeanLoss::of([1e9 + 0.5; 1000].into_iter()).se, 0.0);
    }

    #[test]
    fn trailing_single_row_batch_is_merged() {
        assert_eq!(batch_ranges(5, 2), vec![(0, 2), (2, 5)]);
        assert_eq!(batch_ranges(6, 2), vec![(0, 2), (2, 4), (4, 6)]);
        assert_eq!(batch_ranges(3, 8), vec![(0, 3)]);
        assert!(batch_ranges(70, 32).iter().all(|(s, e)| e - s >= 2));
    }
}
