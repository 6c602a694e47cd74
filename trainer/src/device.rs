//! Choosing the candle device for `--device cpu|cuda|auto`.

use candle_core::Device;
use inference::config::DeviceChoice;

use crate::error::DeviceError;

/// The device and a human-readable name (`cpu`, `cuda:0`).
pub fn select(choice: DeviceChoice) -> Result<(Device, String), DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::Cpu, "cpu".into())),
        DeviceChoice::Cuda => cuda(),
        DeviceChoice::Auto => Ok(cuda().unwrap_or((Device::Cpu, "cpu".into()))),
    }
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<(Device, String), DeviceError> {
    Device::new_cuda(0).map(|d| (d, "cuda:0".to_owned())).map_err(|e| DeviceError::CudaUnavailable(e.to_string()))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<(Device, String), DeviceError> {
    Err(DeviceError::CudaNotBuilt)
}
