//! The `[kubernetes]` table of `hoist.toml`: how the same pipeline runs on a cluster
//! (`target = "kubernetes"`) and what `hoist render k8s` writes.

use serde::{Deserialize, Serialize};

/// Where the model servers of every environment run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// Supervised `hoist-server` processes on this machine, behind hoist's gateway.
    #[default]
    Local,
    /// Deployments on a Kubernetes cluster, driven through its API.
    Kubernetes,
}

/// The `[kubernetes]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Kubernetes {
    /// Namespace of every object; `{env}` is replaced by the environment's name.
    pub namespace: String,
    /// The hoist-server image, pinned by digest (`repo@sha256:…`).
    pub image: Option<String>,
}

impl Default for Kubernetes {
    fn default() -> Kubernetes {
        Kubernetes {
            namespace: "hoist-{env}".into(),
            image: None,
        }
    }
}

impl Kubernetes {
    /// Checks of this table alone; the message starts with the key path.
    pub fn validate(&self) -> Result<(), String> {
        if self.namespace.trim().is_empty() {
            return Err("kubernetes.namespace: must not be empty".into());
        }
        Ok(())
    }
}
