//! With the `cuda` feature: compile the fused CUDA step's kernels (kernels/train_step.cu) to PTX
//! with nvcc, for `CUDA_COMPUTE_CAP` (default 90), as candle-kernels does for its own.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // The page's files are embedded (server/web.rs): rebuild when they change or web/pkg appears.
    println!("cargo:rerun-if-changed=../web");
    println!("cargo:rerun-if-changed=../web/pkg");
    println!("cargo:rerun-if-changed=kernels/train_step.cu");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=CUDA_ROOT");
    println!("cargo:rerun-if-env-changed=CUDA_PATH");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("train_step.ptx");
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let nvcc = ["CUDA_ROOT", "CUDA_PATH"]
        .iter()
        .filter_map(std::env::var_os)
        .map(|root| std::path::PathBuf::from(root).join("bin").join("nvcc"))
        .find(|p| p.exists())
        .unwrap_or_else(|| "nvcc".into());
    let status = std::process::Command::new(&nvcc)
        .args(["--ptx", "-O3", &format!("-arch=compute_{cap}"), "-o"])
        .arg(&out)
        .arg("kernels/train_step.cu")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{} failed ({s}) compiling kernels/train_step.cu", nvcc.display()),
        Err(e) => {
            panic!("cannot run {} ({e}): the cuda feature needs the CUDA toolkit (see README, CUDA)", nvcc.display())
        }
    }
}
