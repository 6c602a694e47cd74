//! Where trials' points come from: seeded uniform sampling, then, after a warm-up, the `tpe`
//! crate's Tree-structured Parzen Estimator (one univariate optimiser per dimension, as
//! Optuna's default TPE), told every finished trial's validation loss.

use rand_tpe::{RngExt as _, SeedableRng};
use serde::{Deserialize, Serialize};

use super::space::{Dim, Named};

/// Which sampler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// Uniform throughout.
    Random,
    /// Uniform for the warm-up trials, then TPE.
    #[default]
    Tpe,
}

enum Optimizer {
    Real(tpe::TpeOptimizer),
    Category(tpe::TpeOptimizer),
}

/// A seeded sampler over a fixed list of dimensions.
pub struct Sampler {
    dims: Vec<Named>,
    optimizers: Vec<Optimizer>,
    kind: SamplerKind,
    warmup: usize,
    told: usize,
    rng: rand_tpe::rngs::StdRng,
}

impl Sampler {
    /// A sampler over `dims`: `warmup` uniform points before TPE takes over.
    pub fn new(dims: Vec<Named>, kind: SamplerKind, warmup: usize, seed: u64) -> Self {
        let optimizers = dims
            .iter()
            .map(|d| match d.dim {
                // Degenerate ranges (low = high) are widened by a hair for the estimator.
                Dim::Real { low, high } => Optimizer::Real(tpe::TpeOptimizer::new(
                    tpe::parzen_estimator(),
                    tpe::range(low, if high > low { high } else { low + 1e-9 })
                        .unwrap_or_else(|_| tpe::range(0.0, 1.0).unwrap_or_else(|_| unreachable!("a valid range"))),
                )),
                Dim::Category { n } => Optimizer::Category(tpe::TpeOptimizer::new(
                    tpe::histogram_estimator(),
                    tpe::categorical_range(n.max(1)).unwrap_or_else(|_| unreachable!("n ≥ 1")),
                )),
            })
            .collect();
        Self { dims, optimizers, kind, warmup, told: 0, rng: rand_tpe::rngs::StdRng::seed_from_u64(seed) }
    }

    fn uniform(&mut self, d: Dim) -> f64 {
        match d {
            Dim::Real { low, high } if high > low => self.rng.random_range(low..high),
            Dim::Real { low, .. } => low,
            Dim::Category { n } => self.rng.random_range(0..n.max(1)) as f64,
        }
    }

    /// The next point (one value per dimension).
    pub fn ask(&mut self) -> Vec<f64> {
        let model = self.kind == SamplerKind::Tpe && self.told >= self.warmup.max(1);
        (0..self.dims.len())
            .map(|i| {
                let d = self.dims[i].dim;
                if !model {
                    return self.uniform(d);
                }
                let asked = match &mut self.optimizers[i] {
                    Optimizer::Real(o) | Optimizer::Category(o) => o.ask(&mut self.rng),
                };
                asked.unwrap_or_else(|_| self.uniform(d))
            })
            .collect()
    }

    /// Record a finished point: `used` from [`super::space::SearchSpace::apply`] (NaN where
    /// a value went unused), `loss` its validation loss (infinite for a failed trial).
    pub fn tell(&mut self, used: &[f64], loss: f64) {
        let loss = if loss.is_nan() { f64::INFINITY } else { loss };
        for (o, &x) in self.optimizers.iter_mut().zip(used) {
            let o = match o {
                Optimizer::Real(o) | Optimizer::Category(o) => o,
            };
            // Out-of-range points (a widened degenerate range) are simply not told.
            let _ = o.tell(x, loss);
        }
        self.told += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims() -> Vec<Named> {
        vec![
            Named { name: "x", dim: Dim::Real { low: -5.0, high: 5.0 } },
            Named { name: "c", dim: Dim::Category { n: 4 } },
        ]
    }

    /// (x − 1.5)² + [c ≠ 2]: its minimum is 0 at x = 1.5, c = 2.
    fn f(p: &[f64]) -> f64 {
        (p[0] - 1.5).powi(2) + f64::from(u8::from(p[1] as usize != 2))
    }

    /// The sphere (x − 1.5)² + (y + 2)² on [−5, 5)².
    fn sphere(p: &[f64]) -> f64 {
        (p[0] - 1.5).powi(2) + (p[1] + 2.0).powi(2)
    }

    /// Mean over 20 seeds of the best value found in `trials` trials.
    fn mean_best(kind: SamplerKind, dims: &[Named], g: fn(&[f64]) -> f64, trials: usize) -> f64 {
        let total: f64 = (0..20u64)
            .map(|seed| {
                let mut s = Sampler::new(dims.to_vec(), kind, 10, seed);
                (0..trials).fold(f64::INFINITY, |b, _| {
                    let p = s.ask();
                    let v = g(&p);
                    s.tell(&p, v);
                    b.min(v)
                })
            })
            .sum();
        total / 20.0
    }

    #[test]
    fn tpe_beats_random_search_on_known_functions() {
        let real = |name| Named { name, dim: Dim::Real { low: -5.0, high: 5.0 } };
        let plane = [real("x"), real("y")];
        let (tpe, random) =
            (mean_best(SamplerKind::Tpe, &plane, sphere, 60), mean_best(SamplerKind::Random, &plane, sphere, 60));
        assert!(tpe < 0.2 && tpe * 4.0 < random, "sphere: TPE {tpe} vs random {random}");
        let (tpe, random) =
            (mean_best(SamplerKind::Tpe, &dims(), f, 100), mean_best(SamplerKind::Random, &dims(), f, 100));
        assert!(tpe < 0.05 && tpe * 4.0 < random, "mixed: TPE {tpe} vs random {random}");
    }

    #[test]
    fn the_same_seed_gives_the_same_points() {
        let run = |seed| {
            let mut s = Sampler::new(dims(), SamplerKind::Tpe, 3, seed);
            (0..12)
                .map(|_| {
                    let p = s.ask();
                    s.tell(&p, f(&p));
                    p
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let p = Sampler::new(dims(), SamplerKind::Random, 0, 1).ask();
        assert!((-5.0..5.0).contains(&p[0]) && [0.0, 1.0, 2.0, 3.0].contains(&p[1]));
    }
}
