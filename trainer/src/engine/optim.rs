//! Optimizer constants and the per-step coefficients every engine applies: Adam (L2 weight
//! decay added to the gradient, as torch.optim.Adam), AdamW (decoupled decay) and SGD with
//! momentum 0.9. The fused CPU step, the CUDA kernel and the candle optimizer all take their
//! scalars from [`StepCoefficients::at`].

use inference::config::{OptimizerKind, TrainOptions};

/// Adam's first-moment decay.
pub const BETA1: f64 = 0.9;
/// Adam's second-moment decay.
pub const BETA2: f64 = 0.999;
/// Adam's denominator epsilon.
pub const EPS: f64 = 1e-8;
/// SGD momentum.
pub const MOMENTUM: f64 = 0.9;

/// Which optimizer, at what rate and decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerSettings {
    /// Optimizer.
    pub kind: OptimizerKind,
    /// Learning rate.
    pub lr: f64,
    /// Weight decay (L2 for Adam/SGD, decoupled for AdamW).
    pub weight_decay: f64,
}

impl OptimizerSettings {
    /// The settings of a training config.
    pub fn of(tc: &TrainOptions) -> Self {
        Self { kind: tc.optimizer, lr: tc.learning_rate, weight_decay: tc.weight_decay }
    }
}

/// The scalars of update number `step` (1-based), in f32 as the engines compute.
///
/// Adam/AdamW: `m = k1·m + (1−β1)·g`, `v = k2·v + (1−β2)·g²`,
/// `w = decay·w − step_size·m / (√(v·inv_bc2) + ε)`; SGD: `buf = keep·buf + g`, `w −= lr·buf`.
/// With `coupled_decay`, `g += weight_decay·w` first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCoefficients {
    /// Learning rate.
    pub lr: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// Whether the decay is added to the gradient (Adam, SGD) rather than applied to the weight.
    pub coupled_decay: bool,
    /// Multiplier of the weight (AdamW's decoupled decay; 1 otherwise).
    pub decay: f32,
    /// β1 (0 on the first step: the moment starts at the gradient's share).
    pub k1: f32,
    /// β2 (0 on the first step).
    pub k2: f32,
    /// 1 − β1.
    pub one_minus_b1: f32,
    /// 1 − β2.
    pub one_minus_b2: f32,
    /// lr / (1 − β1^step).
    pub step_size: f32,
    /// 1 / (1 − β2^step).
    pub inv_bc2: f32,
    /// ε.
    pub eps: f32,
    /// SGD momentum kept from the last step (0 on the first).
    pub momentum_keep: f32,
}

impl StepCoefficients {
    /// The coefficients of update `step` (1-based).
    pub fn at(s: &OptimizerSettings, step: i32) -> Self {
        let (lr, wd) = (s.lr as f32, s.weight_decay as f32);
        let (b1, b2) = (BETA1 as f32, BETA2 as f32);
        let first = step == 1;
        let adamw = s.kind == OptimizerKind::Adamw;
        Self {
            lr,
            weight_decay: wd,
            coupled_decay: wd > 0.0 && !adamw,
            decay: if adamw && wd > 0.0 { 1.0 - lr * wd } else { 1.0 },
            k1: if first { 0.0 } else { b1 },
            k2: if first { 0.0 } else { b2 },
            one_minus_b1: 1.0 - b1,
            one_minus_b2: 1.0 - b2,
            step_size: lr / (1.0 - b1.powi(step)),
            inv_bc2: 1.0 / (1.0 - b2.powi(step)),
            eps: EPS as f32,
            momentum_keep: if first { 0.0 } else { MOMENTUM as f32 },
        }
    }

    /// One update of `w` (with moments `m`, `v`; `v` unused by SGD) from gradient `g`,
    /// in place; `g` receives the coupled decay.
    #[inline(always)] // into the AVX build of `cpu::update_params`
    pub fn apply(&self, kind: OptimizerKind, w: &mut [f32], g: &mut [f32], m: &mut [f32], v: &mut [f32]) {
        if self.coupled_decay {
            g.iter_mut().zip(w.iter()).for_each(|(g, w)| *g += w * self.weight_decay);
        }
        // One branch-free loop per optimizer so LLVM vectorises it (this loop was a quarter of
        // all instructions when the optimizer was chosen per element).
        match kind {
            OptimizerKind::Sgd => {
                for ((w, g), buf) in w.iter_mut().zip(g.iter()).zip(m.iter_mut()) {
                    *buf = *buf * self.momentum_keep + g;
                    *w -= *buf * self.lr;
                }
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                for (((w, g), m), v) in w.iter_mut().zip(g.iter()).zip(m.iter_mut()).zip(v.iter_mut()) {
                    *m = *m * self.k1 + g * self.one_minus_b1;
                    *v = *v * self.k2 + g * g * self.one_minus_b2;
                    let denom = (*v * self.inv_bc2).sqrt() + self.eps;
                    *w = *w * self.decay - *m * self.step_size / denom;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(kind: OptimizerKind, lr: f64) -> OptimizerSettings {
        OptimizerSettings { kind, lr, weight_decay: 0.0 }
    }

    /// Minimise (w − 3)² from w = 0; every optimizer must approach 3.
    #[test]
    fn all_optimizers_minimise_a_quadratic() {
        for (kind, lr) in [(OptimizerKind::Adam, 0.05), (OptimizerKind::Adamw, 0.05), (OptimizerKind::Sgd, 0.01)] {
            let s = settings(kind, lr);
            let (mut w, mut m, mut v) = ([0f32], [0f32], [0f32]);
            for step in 1..=500 {
                let mut g = [2.0 * (w[0] - 3.0)];
                StepCoefficients::at(&s, step).apply(kind, &mut w, &mut g, &mut m, &mut v);
            }
            assert!((w[0] - 3.0).abs() < 0.05, "{kind:?} ended at {}", w[0]);
        }
    }

    #[test]
    fn adam_first_step_matches_torch() {
        // torch.optim.Adam, lr 0.1, one step on loss = w² from w = 1: w = 1 - 0.1 = 0.9.
        let s = settings(OptimizerKind::Adam, 0.1);
        let (mut w, mut g, mut m, mut v) = ([1f32], [2f32], [0f32], [0f32]);
        StepCoefficients::at(&s, 1).apply(OptimizerKind::Adam, &mut w, &mut g, &mut m, &mut v);
        assert!((w[0] - 0.9).abs() < 1e-6);
    }
}
