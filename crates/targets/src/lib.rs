//! hoist-targets: where hoist runs model servers.
//!
//! The local target runs each replica as a supervised `hoist-server` process (or,
//! for an MLflow model without an onnx flavor, MLflow's own scoring server) on
//! 127.0.0.1: started and waited on until ready, restarted on the same port when it
//! dies, stopped gracefully, and never left behind as an orphan.
//!
//! # Layout
//! - [`program`]: which program serves ([`ServerProgram::locate`]: `hoist-server` or
//!   `hoist serve`).
//! - [`local`]: [`ServerSpec`], [`Supervised`] (one replica and its supervisor task),
//!   [`start_replicas`].
//! - `child`: one child process: spawn, output capture, address, readiness.
//! - `probe`: the readiness probe, a bare HTTP/1.1 GET.
//! - [`pyenv`]: Python environments for MLflow's scoring server (models without an
//!   onnx flavor), made once per set of requirements.
//! - [`error`] holds [`Error`], the one error type, and [`Result`].
//! - [`kubernetes`]: the cluster target: typed manifests (`hoist render k8s`) and a
//!   kube-rs client ([`kubernetes::Cluster`]); it has its own error type.
//!
//! # Example
//! ```no_run
//! # async fn f() -> Result<(), hoist_targets::Error> {
//! use hoist_targets::{ServerProgram, ServerSpec, Supervised};
//! let spec = ServerSpec::new(ServerProgram::locate()?, "models/lr", "lr", "3");
//! let replica = Supervised::start(spec).await?;
//! println!("serving on http://{}", replica.addr());
//! replica.stop(std::time::Duration::from_secs(30)).await;
//! # Ok(()) }
//! ```

mod child;
pub mod error;
pub mod kubernetes;
pub mod local;
mod probe;
pub mod program;
pub mod pyenv;

pub use error::{Error, Result};
pub use local::{ServerSpec, Status, Supervised, start_replicas};
pub use program::{ServerKind, ServerProgram};
