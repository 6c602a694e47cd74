//! Optimizers over candle `Var`s: Adam (L2 weight decay, as torch.optim.Adam), AdamW
//! (decoupled), and SGD with momentum 0.9 (candle-nn has no momentum SGD).

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use inference::config::OptimizerKind;

/// Adam's first-moment decay.
pub const BETA1: f64 = 0.9;
/// Adam's second-moment decay.
pub const BETA2: f64 = 0.999;
/// Adam's denominator epsilon.
pub const EPS: f64 = 1e-8;
/// SGD momentum.
pub const MOMENTUM: f64 = 0.9;

/// Optimizer state for a fixed parameter list.
pub struct Optimizer {
    kind: OptimizerKind,
    lr: f64,
    weight_decay: f64,
    params: Vec<Var>,
    first: Vec<Option<Tensor>>,
    second: Vec<Option<Tensor>>,
    step: i32,
}

impl Optimizer {
    /// New optimizer over `params`.
    pub fn new(kind: OptimizerKind, params: Vec<Var>, lr: f64, weight_decay: f64) -> Self {
        let n = params.len();
        Self { kind, lr, weight_decay, params, first: vec![None; n], second: vec![None; n], step: 0 }
    }

    /// Apply one update from `grads`.
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.step += 1;
        let (lr, wd) = (self.lr, self.weight_decay);
        for (i, p) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            let w = p.as_tensor();
            let coupled_decay = wd > 0.0 && self.kind != OptimizerKind::Adamw;
            let g = if coupled_decay { (g + w.affine(wd, 0.0)?)? } else { g.clone() };
            let updated = match self.kind {
                OptimizerKind::Sgd => {
                    let buf = match &self.first[i] {
                        Some(b) => (b.affine(MOMENTUM, 0.0)? + &g)?,
                        None => g,
                    };
                    let next = (w - buf.affine(lr, 0.0)?)?;
                    self.first[i] = Some(buf);
                    next
                }
                OptimizerKind::Adam | OptimizerKind::Adamw => {
                    let m = match &self.first[i] {
                        Some(m) => (m.affine(BETA1, 0.0)? + g.affine(1.0 - BETA1, 0.0)?)?,
                        None => g.affine(1.0 - BETA1, 0.0)?,
                    };
                    let g2 = g.sqr()?;
                    let v = match &self.second[i] {
                        Some(v) => (v.affine(BETA2, 0.0)? + g2.affine(1.0 - BETA2, 0.0)?)?,
                        None => g2.affine(1.0 - BETA2, 0.0)?,
                    };
                    let bc1 = 1.0 - BETA1.powi(self.step);
                    let bc2 = 1.0 - BETA2.powi(self.step);
                    let denom = v.affine(1.0 / bc2, 0.0)?.sqrt()?.affine(1.0, EPS)?;
                    let delta = m.affine(lr / bc1, 0.0)?.div(&denom)?;
                    let base = if self.kind == OptimizerKind::Adamw && wd > 0.0 {
                        w.affine(1.0 - lr * wd, 0.0)?
                    } else {
                        w.clone()
                    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Minimise (w − 3)² from w = 0; every optimizer must approach 3.
    fn converge(kind: OptimizerKind, lr: f64) -> f32 {
        let w = Var::new(&[0f32], &Device::Cpu).unwrap();
        let mut opt = Optimizer::new(kind, vec![w.clone()], lr, 0.0);
        for _ in 0..500 {
            let loss = w.as_tensor().affine(1.0, -3.0).unwrap().sqr().unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        w.as_tensor().to_vec1::<f32>().unwrap()[0]
    }

    #[test]
    fn all_optimizers_minimise_a_quadratic() {
        for (kind, lr) in [(OptimizerKind::Adam, 0.05), (OptimizerKind::Adamw, 0.05), (OptimizerKind::Sgd, 0.01)] {
            let w = converge(kind, lr);
            assert!((w - 3.0).abs() < 0.05, "{kind:?} ended at {w}");
        }
    }

    #[test]
    fn adam_first_step_matches_torch() {
        // torch.optim.Adam, lr 0.1, one step on loss = w² from w = 1: w = 1 - 0.1 = 0.9.
        let w = Var::new(&[1f32], &Device::Cpu).unwrap();
        let mut opt = Optimizer::new(OptimizerKind::Adam, vec![w.clone()], 0.1, 0.0);
        let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        assert!((w.as_tensor().to_vec1::<f32>().unwrap()[0] - 0.9).abs() < 1e-6);
    }
}
