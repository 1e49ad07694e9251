//! hoist-server: loads one ONNX model package and serves it over the Open Inference
//! Protocol v2 and the MLflow scoring protocol, with health, metrics and admin reload.
//!
//! # Layout
//! - [`cli`]: the `hoist-server` command line, [`cli::main_with_args`] (also behind `hoist serve`).
//! - [`server`]: `run(listener, config, admin, shutdown)`, reload, auto-refresh, signals.
//! - [`http`]: routes and protocols: [`http::v2`], [`http::mlflow`], [`http::image`], [`http::admin`].
//! - [`model`]: a loaded model: package + runtime + executor; request validation.
//! - [`executor`]: worker threads, bounded queue, adaptive batching.
//! - [`runtime`]: the runtime interface; ONNX Runtime and tract.
//! - [`package`]: reading MLflow model directories and `.onnx` files; digests.
//! - [`tensor`]: datatypes and tensor buffers, JSON and binary encodings.
//! - [`metrics`]: Prometheus metrics.

pub mod cli;
pub mod executor;
pub mod http;
pub mod metrics;
pub mod model;
pub mod package;
pub mod runtime;
pub mod server;
pub mod tensor;
pub mod util;

pub use server::{Config, ServeError, run};
