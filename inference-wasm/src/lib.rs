//! The inference core: load a bundle from bytes and predict, exactly as training preprocessed,
//! through one request layer that every surface shares.
//!
//! No I/O and no heavy dependencies, so the same code runs in the trainer, the HTTP server and
//! (through the `wasm` module, compiled for wasm32 only) in browsers, Node and edge workers.
//! The default build is the prediction path only; feature `train` adds the training config,
//! the full metadata record and the bundle writer, feature `openapi` the schema derives.

pub mod activation;
pub mod bundle;
#[cfg(feature = "train")]
pub mod config;
pub mod error;
pub mod explain;
pub mod forward;
mod json;
pub mod model;
mod name_map;
pub mod preprocess;
#[cfg(feature = "train")]
pub mod record;
pub mod request;
pub mod spec;
pub mod value;
mod weights;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod wasm;

#[cfg(feature = "train")]
pub use bundle::Bundle;
pub use bundle::{LoadOptions, Tensor};
#[cfg(feature = "train")]
pub use config::{CheckedConfig, ConfigError, TrainConfig};
pub use error::{BundleError, PredictError, RequestError};
pub use model::{Model, Prediction};
pub use preprocess::Preprocessor;
#[cfg(feature = "train")]
pub use record::Metadata;
pub use spec::ModelSpec;
pub use value::{Value, ValueRef};
