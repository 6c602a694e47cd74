//! Choosing the candle device for `--device cpu|cuda|auto`.

use candle_core::Device;
use inference::config::DeviceChoice;

use crate::error::TrainingError;

/// The device and a human-readable name (`cpu`, `cuda:0`).
pub fn select(choice: DeviceChoice) -> Result<(Device, String), TrainingError> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::Cpu, "cpu".into())),
        DeviceChoice::Cuda => cuda(),
        DeviceChoice::Auto => Ok(cuda().unwrap_or((Device::Cpu, "cpu".into()))),
    }
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<(Device, String), TrainingError> {
    Device::new_cuda(0)
        .map(|d| (d, "cuda:0".to_owned()))
        .map_err(|e| TrainingError::Device(format!("no usable CUDA device: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<(Device, String), TrainingError> {
    Err(TrainingError::Device(
        "this trainer was built without CUDA support: rebuild with `cargo build --release -p trainer --features cuda` (see scripts/build-cuda.sh)".into(),
    ))
}
