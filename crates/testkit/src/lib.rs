//! Test support shared by hoist's crates (a dev-dependency only).
//!
//! - Paths: [`repo_root`], [`example_model`] (a directory under `examples/models`).
//! - [`Scratch`]: a fresh temp directory removed on drop (kept when the test fails or
//!   `HOIST_KEEP_SCRATCH` is set).
//! - [`free_port`], [`answers_200`], [`tail`].
//! - [`wait_until`] / [`wait_for`] / [`poll`] (and async variants): wait for a condition
//!   with a deadline instead of sleeping; the panic names what was awaited.
//! - [`mlflow()`]: the one REAL MLflow tracking server of a test binary (MLflow 3.17.2
//!   from `.venv-mlflow`, made by `tools/mlflow-venv.sh`, or the python named by
//!   `HOIST_MLFLOW_PYTHON`) on 127.0.0.1 with a SQLite backend and webhooks to loopback
//!   allowed, started on first use and killed (its whole process group) when the test
//!   process exits; with a shared [`PyClient`]. [`MlflowServer::start`] starts one more,
//!   killed on drop.
//! - [`PyClient`]: a long-lived Python process driving the real `mlflow` client, one
//!   JSON command a line (`register`, `alias`, `stage`, `webhook`, `download`, `load`).
//! - [`kube_api::envtest::Envtest`]: the real Kubernetes control plane of
//!   `tools/envtest.sh` on 127.0.0.1 (API server with RBAC, controller manager,
//!   scheduler, etcd, kwok's fake node), with kubectl helpers and minted
//!   ServiceAccount tokens.
//!
//! - [`registry::Registry`]: a REAL OCI registry (Debian's `docker-registry`) on
//!   127.0.0.1, plain or TLS + htpasswd, with its access log; [`registry::skopeo`].
//!
//! Without the venv, tests using the MLflow ones FAIL (they do not skip): run
//! `bash tools/mlflow-venv.sh`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod kube_api;
pub mod mlflow;
pub mod registry;
pub mod scratch;
pub mod wait;

pub use mlflow::{MlflowServer, PyClient, SharedMlflow, mlflow, mlflow_python, unique_name};
pub use scratch::Scratch;
pub use wait::{poll, poll_async, wait_for, wait_until, wait_until_async};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `examples/models/NAME`, a model package of the repository.
pub fn example_model(name: &str) -> PathBuf {
    repo_root().join("examples/models").join(name)
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The last lines of a log file, for failure messages.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Whether `GET path` on `addr` answers 200 (plain HTTP/1.0, no client library).
pub fn answers_200(addr: &str, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).split_whitespace().nth(1) == Some("200")
}
