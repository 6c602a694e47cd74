//! The inference core's hot loops, and nothing else: the dense layer `y = x·B + b` as a
//! register-tiled GEMM, the hidden activations and softmax.
//!
//! Transcendentals come from [`math`]: straight-line code of exactly rounded operations, the
//! same on every target (not the platform's libm, which natively is glibc's), so native and
//! wasm give bit-identical outputs, and loops over them vectorise.
//!
//! A crate of its own for one reason: cargo sets optimisation per crate, and the wasm build
//! wants these loops at `opt-level = 3` (LLVM's vectoriser turns the tiles into simd128) and
//! everything else at `"z"`. Measured in bench/wasm: the core at 3 throughout is ~25 KB gzip
//! larger; the kernels at "s" run batches 7x slower. So every loop entry point here is
//! non-generic and `#[inline(never)]`: it is compiled here, at this crate's level (the scalar
//! activations are `#[inline]`: a single call gains nothing from the vectoriser).
//! (Under fat LTO a plain non-`#[inline]` function may still be inlined into a caller and then
//! be optimised as the caller is, at "z", without the vectoriser.)

pub mod math;

/// Slope of leaky ReLU for x ≤ 0 (PyTorch's default `negative_slope`).
pub const LEAKY_RELU_SLOPE: f32 = 0.01;

/// Rows per register tile of the batch kernel.
const TILE_ROWS: usize = 4;
/// Output columns per register tile (two 128-bit vectors, or two 256-bit ones in the AVX build).
const TILE_COLS: usize = 8;
#[cfg(target_arch = "x86_64")]
const TILE_COLS_AVX: usize = 16;
/// Output columns per tile for a single row: eight 128-bit accumulators, or eight 256-bit
/// ones in the AVX build.
const SINGLE_ROW_TILE_COLS: usize = 32;
#[cfg(target_arch = "x86_64")]
const SINGLE_ROW_TILE_COLS_AVX: usize = 64;

/// A dense layer's parameters: `B` stored input-major (`wt[k * out_dim + j]`), bias `b`.
#[derive(Debug, Clone, Copy)]
pub struct DenseRef<'a> {
    /// Inputs per row.
    pub in_dim: usize,
    /// Outputs per row.
    pub out_dim: usize,
    /// `B`, `in_dim × out_dim`, row-major.
    pub wt: &'a [f32],
    /// `b`, `out_dim`.
    pub b: &'a [f32],
}

/// `y (rows × out) = x (rows × in) · B + b`.
///
/// On x86-64 machines with AVX (checked once, at run time) the same loops run compiled for
/// 256-bit vectors: twice the lanes of the SSE2 baseline that a portable native build targets.
/// Still separate multiplies and adds in the same order per output (AVX alone has no fused
/// multiply-add), so the outputs stay bit-identical to the baseline and to wasm's simd128.
#[inline(never)]
pub fn dense(layer: DenseRef<'_>, x: &[f32], rows: usize, y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX, the one feature the function is compiled for.
        return unsafe { dense_avx(layer, x, rows, y) };
    }
    dense_loops::<SINGLE_ROW_TILE_COLS, TILE_COLS>(layer, x, rows, y);
}

/// [`dense_loops`] compiled for AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn dense_avx(layer: DenseRef<'_>, x: &[f32], rows: usize, y: &mut [f32]) {
    dense_loops::<SINGLE_ROW_TILE_COLS_AVX, TILE_COLS_AVX>(layer, x, rows, y);
}

/// The tiles of [`dense`], inlined into each compiled variant (tile widths: `S` for a lone row,
/// `T` for the row tiles; narrower tiles take what is left).
#[inline(always)]
fn dense_loops<const S: usize, const T: usize>(layer: DenseRef<'_>, x: &[f32], rows: usize, y: &mut [f32]) {
    let (k, m) = (layer.in_dim, layer.out_dim);
    let mut r = 0;
    while r + TILE_ROWS <= rows {
        tile::<TILE_ROWS, S, T>(layer, &x[r * k..(r + TILE_ROWS) * k], &mut y[r * m..(r + TILE_ROWS) * m]);
        r += TILE_ROWS;
    }
    while r < rows {
        tile::<1, S, T>(layer, &x[r * k..(r + 1) * k], &mut y[r * m..(r + 1) * m]);
        r += 1;
    }
}

/// R rows at a time. Each column tile keeps its accumulators in registers across the whole
/// k loop; a lone row takes wider tiles, so more independent add chains hide the latency.
#[inline(always)]
fn tile<const R: usize, const S: usize, const T: usize>(layer: DenseRef<'_>, x: &[f32], y: &mut [f32]) {
    let k = layer.in_dim;
    let xs: [&[f32]; R] = std::array::from_fn(|r| &x[r * k..(r + 1) * k]);
    let mut j = 0;
    if R == 1 {
        j = column_tiles::<R, S>(layer, &xs, y, j);
        if S > SINGLE_ROW_TILE_COLS {
            j = column_tiles::<R, SINGLE_ROW_TILE_COLS>(layer, &xs, y, j);
        }
    }
    j = column_tiles::<R, T>(layer, &xs, y, j);
    if T > TILE_COLS {
        j = column_tiles::<R, TILE_COLS>(layer, &xs, y, j);
    }
    let (m, wt) = (layer.out_dim, &layer.wt[..k * layer.out_dim]);
    for j in j..m {
        for r in 0..R {
            let mut s = layer.b[j];
            for kk in 0..k {
                s += xs[r][kk] * wt[kk * m + j];
            }
            y[r * m + j] = s;
        }
    }
}

/// Outputs `j0..` in tiles of C columns while whole tiles fit; returns the first column left.
#[inline(always)]
fn column_tiles<const R: usize, const C: usize>(
    layer: DenseRef<'_>,
    xs: &[&[f32]; R],
    y: &mut [f32],
    mut j0: usize,
) -> usize {
    let (k, m) = (layer.in_dim, layer.out_dim);
    let wt = &layer.wt[..k * m];
    while j0 + C <= m {
        let bias: &[f32; C] = layer.b[j0..j0 + C].try_into().expect("tile width");
        let mut acc = [*bias; R];
        for kk in 0..k {
            let w: &[f32; C] = wt[kk * m + j0..kk * m + j0 + C].try_into().expect("tile width");
            for r in 0..R {
                let a = xs[r][kk];
                for c in 0..C {
                    acc[r][c] += a * w[c];
                }
            }
        }
        for r in 0..R {
            y[r * m + j0..r * m + j0 + C].copy_from_slice(&acc[r]);
        }
        j0 += C;
    }
    j0
}

/// ReLU. Compare-and-select rather than `f32::max`: V8 lowers wasm's f32.max to a branchy
/// NaN-aware sequence that mispredicts on real data (measured 480k vs 700k rows/s per batch).
#[inline]
pub fn relu(z: f32) -> f32 {
    if z > 0.0 {
        z
    } else {
        0.0
    }
}

/// Leaky ReLU with [`LEAKY_RELU_SLOPE`].
#[inline]
pub fn leaky_relu(z: f32) -> f32 {
    if z > 0.0 {
        z
    } else {
        LEAKY_RELU_SLOPE * z
    }
}

/// The logistic sigmoid.
#[inline]
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + math::exp(-z))
}

/// GELU, the exact erf form (PyTorch's default).
#[inline]
pub fn gelu(z: f32) -> f32 {
    0.5 * z * (1.0 + math::erf(z * std::f32::consts::FRAC_1_SQRT_2))
}

/// [`relu`] in place (one loop per activation, so each vectorises).
#[inline(never)]
pub fn relu_in_place(y: &mut [f32]) {
    y.iter_mut().for_each(|v| *v = relu(*v));
}

/// [`leaky_relu`] in place.
#[inline(never)]
pub fn leaky_relu_in_place(y: &mut [f32]) {
    y.iter_mut().for_each(|v| *v = leaky_relu(*v));
}

/// tanh.
#[inline]
pub fn tanh(z: f32) -> f32 {
    math::tanh(z)
}

/// tanh in place.
#[inline(never)]
pub fn tanh_in_place(y: &mut [f32]) {
    y.iter_mut().for_each(|v| *v = tanh(*v));
}

/// [`sigmoid`] in place.
#[inline(never)]
pub fn sigmoid_in_place(y: &mut [f32]) {
    y.iter_mut().for_each(|v| *v = sigmoid(*v));
}

/// [`gelu`] in place.
#[inline(never)]
pub fn gelu_in_place(y: &mut [f32]) {
    y.iter_mut().for_each(|v| *v = gelu(*v));
}

/// Numerically stable softmax in place.
#[inline(never)]
pub fn softmax(v: &mut [f32]) {
    // Below e^-80 (≈ 2e-35) a class's probability is 0 to any reader; skipping exp there
    // avoids its slow subnormal path, which cost a third of batch throughput on confident models.
    const NEGLIGIBLE: f32 = -80.0;
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in v.iter_mut() {
        let d = *x - max;
        *x = if d < NEGLIGIBLE { 0.0 } else { math::exp(d) };
        sum += *x;
    }
    v.iter_mut().for_each(|x| *x /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_normalised() {
        let mut v = [1000.0, 1001.0, 999.0];
        softmax(&mut v);
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(v[1] > v[0] && v[0] > v[2]);
        assert!(v.iter().all(|x| x.is_finite()));
        let mut w = [0.0, 200.0];
        softmax(&mut w);
        assert_eq!(w, [0.0, 1.0]);
    }

    #[test]
    fn the_dispatched_build_gives_the_baseline_build_s_bits() {
        // `dense` takes the AVX build where the CPU has it; `dense_loops` here is compiled for
        // this test's baseline target. Predictions must not depend on the machine.
        #[cfg(target_arch = "x86_64")]
        if !std::arch::is_x86_feature_detected!("avx") {
            eprintln!("no AVX on this CPU: both runs take the baseline build");
        }
        // Widths that reach every tile of both builds: 64, 32, 16 and 8 columns and the rest.
        for (k, m, rows) in [
            (32, 128, 1),
            (128, 64, 9),
            (64, 32, 4),
            (64, 32, 1),
            (7, 33, 5),
            (9, 100, 7),
            (3, 45, 9),
            (4, 24, 4),
            (5, 120, 1),
            (3, 5, 2),
        ] {
            let wt: Vec<f32> = (0..k * m).map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 311.0).collect();
            let b: Vec<f32> = (0..m).map(|j| (j as f32 - 3.3) / 7.0).collect();
            let x: Vec<f32> = (0..rows * k).map(|i| ((i * 104_729 % 997) as f32 - 498.0) / 173.0).collect();
            let layer = DenseRef { in_dim: k, out_dim: m, wt: &wt, b: &b };
            let (mut fast, mut base) = (vec![0f32; rows * m], vec![0f32; rows * m]);
            dense(layer, &x, rows, &mut fast);
            dense_loops::<SINGLE_ROW_TILE_COLS, TILE_COLS>(layer, &x, rows, &mut base);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&base), "k{k} m{m} rows {rows}");
        }
    }

    #[test]
    fn every_tile_shape_matches_the_naive_product() {
        // Widths that exercise the 32- and 8-column tiles and the leftover columns, and row
        // counts that exercise the 4-row tile and the single-row tail.
        for (k, m, rows) in [(3, 45, 9), (16, 8, 4), (5, 1, 3), (7, 33, 1)] {
            let wt: Vec<f32> = (0..k * m).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
            let b: Vec<f32> = (0..m).map(|j| j as f32 / 3.0).collect();
            let x: Vec<f32> = (0..rows * k).map(|i| ((i * 13 % 17) as f32 - 8.0) / 5.0).collect();
            let mut y = vec![0f32; rows * m];
            dense(DenseRef { in_dim: k, out_dim: m, wt: &wt, b: &b }, &x, rows, &mut y);
            for r in 0..rows {
                for j in 0..m {
                    let want: f32 = b[j] + (0..k).map(|kk| x[r * k + kk] * wt[kk * m + j]).sum::<f32>();
                    assert!((y[r * m + j] - want).abs() < 1e-4, "k{k} m{m} row {r} col {j}");
                }
            }
        }
    }
}
