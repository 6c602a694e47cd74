//! The machine's f32 GEMM ceiling, for bench/train/run.sh: the `gemm` crate (the one the
//! fused CPU step calls) on large square matrices, sustained over about a second per size,
//! with 1 thread and with `--threads` threads. Prints one JSON line per measurement.
//!
//! cargo run --release -p trainer --example gemm_ceiling -- [--threads 2] [--sizes 512,1024,2048]

use std::time::Instant;

use gemm::{gemm, Parallelism};

fn sustained(n: usize, threads: usize) -> f64 {
    let a: Vec<f32> = (0..n * n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 13.0).collect();
    let b: Vec<f32> = (0..n * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 11.0).collect();
    let mut c = vec![0f32; n * n];
    let par = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    let run = |c: &mut [f32]| {
        // SAFETY: three n×n row-major buffers, strides (n, 1) each.
        unsafe {
            gemm(
                n,
                n,
                n,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                n as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                par,
            )
        }
    };
    run(&mut c); // warm-up: page faults, thread pool
    let (mut reps, start) = (0u32, Instant::now());
    while start.elapsed().as_secs_f64() < 1.0 {
        run(&mut c);
        reps += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    assert!(c.iter().all(|v| v.is_finite()));
    2.0 * (n as f64).powi(3) * f64::from(reps) / secs / 1e9
}

fn main() {
    let mut threads = 2;
    let mut sizes = vec![512, 1024, 2048];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => threads = args.next().and_then(|v| v.parse().ok()).expect("--threads N"),
            "--sizes" => {
                sizes = args.next().expect("--sizes N,N").split(',').map(|v| v.parse().expect("a size")).collect()
            }
            other => panic!("unknown argument {other}"),
        }
    }
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().ok();
    for &n in &sizes {
        for t in [1, threads] {
            println!("{{\"n\": {n}, \"threads\": {t}, \"gflops\": {:.2}}}", sustained(n, t));
        }
    }
}
