//! The Kubernetes target: the same releases on a cluster.
//!
//! This module owns two things and nothing else: rendering an environment as typed
//! Kubernetes objects (what `hoist render k8s` writes for GitOps), and a kube-rs
//! client ([`Cluster`]) that applies those objects, watches rollouts, shifts traffic
//! and rolls back. It reads hoist.toml only in [`config`], which maps `[kubernetes]`
//! into an [`AppSpec`]; it knows nothing of the release state machine (the daemon
//! calls [`Cluster`]).
//!
//! # Layout
//! - [`spec`]: [`AppSpec`], the plain input, and its checks (image by digest, names).
//! - [`render`]: [`render()`](render::render) and
//!   [`render_controller`](render::render_controller) build [`Manifests`] of
//!   k8s-openapi objects; YAML out, one file per object plus `kustomization.yaml`.
//! - [`crds`]: the Gateway API `HTTPRoute` and the Prometheus Operator
//!   `ServiceMonitor`, as small typed structs.
//! - [`cluster`]: [`Cluster`]: server-side apply, rollout wait, weights, rollback,
//!   recovery from the `hoist.dev/*` annotations.
//!
//! # Traffic
//! With a Gateway configured, the split is the HTTPRoute's `backendRefs` weights
//! (exact, changed in one apply). Without one, the app Service selects both
//! variants and the split is the ratio of their replicas, which is only as precise
//! as whole pods allow: [`Split::effective`] says what was really set.

pub mod cluster;
pub mod config;
pub mod crds;
pub mod doctor;
pub mod render;
pub mod spec;

use std::path::PathBuf;
use std::time::Duration;

pub use cluster::{Cluster, Live, LiveVariant, Rollout, Split, SplitMode};
pub use render::{Manifests, Object, render, render_controller};
pub use spec::{
    AppSpec, Autoscale, ControllerSpec, GatewayRef, HoistGateway, ModelPin, ModelSource, Resources,
    Variant,
};

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why rendering or a cluster call failed. Every message says what to look at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input cannot be rendered (the message names the field).
    #[error("{0}")]
    Invalid(String),

    /// Writing the rendered files failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// No cluster configuration (kubeconfig or in-cluster service account).
    #[error("cannot connect to the cluster: {0}")]
    Connect(String),

    /// The API server refused or failed a call.
    #[error("{action}: {source}")]
    Api {
        /// What was being done, e.g. `apply Deployment hoist-prod/fraud-stable`.
        action: String,
        #[source]
        source: kube::Error,
    },

    /// A pod of the rollout cannot start; waiting longer would not help.
    #[error(
        "rollout of {deployment} failed: pod {pod}, container {container}: {reason}{}",
        if message.is_empty() { String::new() } else { format!(": {message}") }
    )]
    PodFailed {
        deployment: String,
        pod: String,
        container: String,
        /// `CrashLoopBackOff`, `ImagePullBackOff`, `ErrImagePull`, `OOMKilled`, ...
        reason: String,
        message: String,
    },

    /// The Deployment itself reports failure (e.g. `ProgressDeadlineExceeded`).
    #[error("rollout of {deployment} failed: {reason}: {message}")]
    RolloutFailed {
        deployment: String,
        reason: String,
        message: String,
    },

    /// The deadline passed with the rollout still in progress.
    #[error("rollout of {deployment} did not finish within {}s: {progress}", waited.as_secs())]
    RolloutTimeout {
        deployment: String,
        waited: Duration,
        /// e.g. `2 of 3 replicas updated, 1 available`.
        progress: String,
    },

    /// An object the call needs does not exist.
    #[error("{0}")]
    Missing(String),
}
