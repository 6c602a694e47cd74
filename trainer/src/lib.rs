//! The trainer: the training pipeline (data → prep → model → train → metrics → export), the
//! models directory, and the HTTP server. The CLI in `main.rs` is the only user of clap.
//! Prediction always goes through the `inference` crate.

pub mod crosscheck;
#[cfg(feature = "cuda")]
pub mod cuda_engine;
pub mod data;
pub mod device;
pub mod error;
pub mod export;
pub mod fused;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod pipeline;
pub mod plot;
pub mod predict;
pub mod prep;
pub mod registry;
pub mod server;
pub mod train;
