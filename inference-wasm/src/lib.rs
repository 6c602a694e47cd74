//! The inference core: load a bundle from bytes and predict, exactly as training preprocessed.
//!
//! No I/O and no heavy dependencies, so the same code runs in the trainer, the HTTP server and
//! (through the `wasm` module, compiled for wasm32 only) in browsers, Node and edge workers.

pub mod bundle;
pub mod config;
pub mod error;
pub mod forward;
pub mod metadata;
pub mod model;
pub mod preprocess;
pub mod value;
mod weights;

#[cfg(target_arch = "wasm32")]
mod wasm;

pub use bundle::{Bundle, Tensor};
pub use config::TrainConfig;
pub use error::{BundleError, ConfigError, PredictError};
pub use metadata::{Metadata, ModelSpec};
pub use model::{Model, Prediction};
pub use preprocess::Preprocessor;
pub use value::{Value, ValueRef};
