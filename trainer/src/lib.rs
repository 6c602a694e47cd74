//! The trainer: the training pipeline (data → prep → engine → train → metrics → export), the
//! model store and task queue, the workers, and the HTTP server. The CLI in `main.rs` is the
//! only user of clap; prediction always goes through the `inference` crate.

pub mod backend;
pub mod crosscheck;
pub mod data;
pub mod device;
pub mod engine;
pub mod error;
pub mod export;
pub mod importance;
pub mod metrics;
pub mod onnx;
pub mod pipeline;
pub mod plot;
pub mod predict;
pub mod prep;
pub mod queue;
pub mod redis_pool;
pub mod server;
pub mod store;
pub mod train;
pub mod tune;
pub mod worker;
