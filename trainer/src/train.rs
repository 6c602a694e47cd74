//! The training loop: seeded shuffling, batches gathered into a reused buffer, early stopping
//! on validation loss with the best epoch's weights restored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use inference::config::{TaskType, TrainConfig};
use inference::metadata::{Architecture, EpochRecord};

use crate::error::TrainingError;
use crate::fused::FusedMlp;
use crate::metrics;
use crate::model::{self, BatchTargets, CandleNet, Mlp, Trainable, BN_EPS};
use crate::optim::Optimizer;
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
}

/// Targets of a split as a tensor: u32 class ids or standardised f32 values.
fn targets(split: &Split, idx: &[usize], p: &Prepared, device: &Device) -> candle_core::Result<Tensor> {
    match p.task {
        TaskType::Classification => {
            let y: Vec<u32> = idx.iter().map(|&i| split.class_ids[i]).collect();
            Tensor::from_vec(y, idx.len(), device)
        }
        TaskType::Regression => {
            let v: Vec<f64> = idx.iter().map(|&i| split.values[i]).collect();
            Tensor::from_vec(scaled_targets(&v, p.preprocessing.target_scaler), idx.len(), device)
        }
    }
}

fn loss_of(task: TaskType, out: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    match task {
        TaskType::Classification => model::cross_entropy(out, y),
        TaskType::Regression => model::mse(out, y),
    }
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
        batch_norm_eps: BN_EPS,
    }
}

/// Validation loss and metric (accuracy or R²) in eval mode.
fn evaluate(m: &dyn Trainable, split: &Split, p: &Prepared, device: &Device) -> Result<(f64, f64), TrainingError> {
    let out = m.predict_raw(&split.x, split.rows)?;
    let k = p.output_dim();
    let outputs = Tensor::from_slice(&out, (split.rows, k), device)?;
    let all: Vec<usize> = (0..split.rows).collect();
    let y = targets(split, &all, p, device)?;
    let loss = f64::from(loss_of(p.task, &outputs, &y)?.to_scalar::<f32>()?);
    let metric = match p.task {
        TaskType::Classification => metrics::accuracy(&split.class_ids, &metrics::argmax_rows(&out, k)),
        TaskType::Regression => {
            let pred: Vec<f64> = out.iter().map(|&v| f64::from(v)).collect();
            metrics::regression(&scaled(&split.values, p), &pred).r2
        }
    };
    Ok((loss, metric))
}

fn scaled(values: &[f64], p: &Prepared) -> Vec<f64> {
    scaled_targets(values, p.preprocessing.target_scaler).into_iter().map(f64::from).collect()
}

/// Train on `p.train`, early-stopping on `p.val`. `on_epoch` sees each record and the epoch
/// total; `cancel` stops training between batches.
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
    let init = Mlp::new(&arch, &mut rng, device)?;
    // The fused step on CPU (same function, tested against candle's autograd); candle elsewhere.
    let use_fused = device.is_cpu() && std::env::var("TRAINER_ENGINE").map_or(true, |e| e != "candle");
    let mut m: Box<dyn Trainable> = if use_fused {
        Box::new(FusedMlp::new(&arch, &init.export()?, tc.optimizer, tc.learning_rate, tc.weight_decay))
    } else {
        let opt = Optimizer::new(tc.optimizer, init.parameters(), tc.learning_rate, tc.weight_decay);
        Box::new(CandleNet::new(init, opt))
    };
    let n = p.n_features();
    let mut order: Vec<usize> = (0..p.train.rows).collect();
    let batch = tc.batch_size.min(p.train.rows);
    let mut xbuf: Vec<f32> = Vec::with_capacity(batch * n * 2);
    let mut ybuf_c: Vec<u32> = Vec::with_capacity(batch * 2);
    let mut ybuf_v: Vec<f32> = Vec::with_capacity(batch * 2);
    let scaled_train = scaled_targets(&p.train.values, p.preprocessing.target_scaler);
    let mut history = Vec::new();
    let (mut best_loss, mut best_epoch, mut best_state, mut waited) = (f64::INFINITY, 0, None, 0);
    let start = Instant::now();
    let mut samples = 0usize;
    for epoch in 1..=tc.epochs {
        order.shuffle(&mut rng);
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for (s, e) in batch_ranges(order.len(), batch) {
            if cancel.load(Ordering::Relaxed) {
                return Err(TrainingError::Cancelled("stop requested".into()));
            }
            // Gather the batch into reused buffers (no per-epoch copy of the dataset).
            let idx = &order[s..e];
            xbuf.clear();
            for &i in idx {
                xbuf.extend_from_slice(&p.train.x[i * n..(i + 1) * n]);
            }
            let y = match p.task {
                TaskType::Classification => {
                    ybuf_c.clear();
                    ybuf_c.extend(idx.iter().map(|&i| p.train.class_ids[i]));
                    BatchTargets::Classes(&ybuf_c)
                }
                TaskType::Regression => {
                    ybuf_v.clear();
                    ybuf_v.extend(idx.iter().map(|&i| scaled_train[i]));
                    BatchTargets::Values(&ybuf_v)
                }
            };
            let l = m.train_batch(&xbuf, idx.len(), &y, &mut rng)?;
            if !l.is_finite() {
                return Err(TrainingError::NonFiniteLoss { epoch, loss: l });
            }
            loss_sum += l * idx.len() as f64;
            seen += idx.len();
        }
        samples += seen;
        let train_loss = loss_sum / seen.max(1) as f64;
        let mut record = EpochRecord { epoch, train_loss, val_loss: None, val_accuracy: None, val_r2: None };
        // Without a validation split, the training loss drives early stopping.
        let monitored = if p.val.rows > 0 {
            let (loss, metric) = evaluate(m.as_ref(), &p.val, p, device)?;
            record.val_loss = Some(loss);
            match p.task {
                TaskType::Classification => record.val_accuracy = Some(metric),
                TaskType::Regression => record.val_r2 = Some(metric),
            }
            loss
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_single_row_batch_is_merged() {
        assert_eq!(batch_ranges(5, 2), vec![(0, 2), (2, 5)]);
        assert_eq!(batch_ranges(6, 2), vec![(0, 2), (2, 4), (4, 6)]);
        assert_eq!(batch_ranges(3, 8), vec![(0, 3)]);
        assert!(batch_ranges(70, 32).iter().all(|(s, e)| e - s >= 2));
    }
}
