//! The `[kubernetes]` table of `hoist.toml`: how the same pipeline runs on a cluster
//! (`target = "kubernetes"`) and what `hoist render k8s` writes.
//!
//! Every key has a default, so an absent table parses; only `image` has none, and it
//! is required the moment something is rendered or applied ([`Kubernetes::require_image`]).
//! Unknown keys are rejected like everywhere else in hoist.toml.
//!
//! ```toml
//! target = "kubernetes"
//!
//! [kubernetes]
//! namespace = "hoist-{env}"
//! image = "registry.example.com/hoist@sha256:…"
//! registry_url = "http://mlflow.mlflow.svc:5000"
//! registry_secret = "mlflow-credentials"
//! admin_token_secret = "hoist-admin-token"
//! hostnames = ["fraud.example.com"]
//! gateway = { name = "public", namespace = "gateway-system" }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Dur;

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
    /// The image with `hoist` and `hoist-server`, pinned by digest (`repo@sha256:…`).
    /// A tag such as `latest` is refused: it can name another image tomorrow.
    pub image: Option<String>,
    /// Base name of the objects (`{name}-stable`, `{name}-candidate`); default: the
    /// model's name, lower-cased, with `_` and `.` as `-`.
    pub name: Option<String>,
    /// The MLflow tracking URL the init container fetches the model from; default:
    /// `registry.url` when that is an http(s) URL. Ignored with `model_path`.
    pub registry_url: Option<String>,
    /// Secret with keys `username` and `password`, or `token`, for the registry.
    pub registry_secret: Option<String>,
    /// The model is baked into the image at this path: no init container, no fetch.
    pub model_path: Option<String>,
    /// Where the init container gets the model: `registry` (`hoist model fetch` from
    /// `registry_url`) or `oci` (`hoist model pull` of the version's artifact, by
    /// digest, from `model.artifact_repository`).
    pub model_source: ModelSourceKind,
    /// A `kubernetes.io/dockerconfigjson` Secret: the pods' `imagePullSecrets`, and
    /// the credentials `hoist model pull` uses for the model artifact.
    pub pull_secret: Option<String>,
    /// Secret with key `token`: hoist-server's admin token, mounted as a file
    /// (HOIST_ADMIN_TOKEN_FILE), so a rotated Secret needs no restart.
    pub admin_token_secret: Option<String>,
    /// With `split = "hoist"`: Secret with key `token`, the token `POST /feedback`
    /// needs at hoist's gateway, mounted as a file (re-read when it rotates).
    /// Without it, anyone who reaches the app Service may post labels.
    pub feedback_token_secret: Option<String>,
    /// The Gateway the HTTPRoute attaches to; absent: no HTTPRoute, the split is the
    /// ratio of stable and candidate replicas behind one Service.
    pub gateway: Option<GatewayParent>,
    /// How traffic is split between stable and candidate: `gateway-api` (the
    /// HTTPRoute's weights; the default with `gateway`), `replicas` (the ratio of
    /// pods behind one Service; the default without), or `hoist` (hoist's own
    /// gateway as a Deployment in front of both variants, driven through its admin
    /// API: exact weights, shadow steps and feedback labels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitKind>,
    /// With `split = "hoist"`: how the controller reaches the gateway's admin API;
    /// `{service}` (the gateway's Service) and `{namespace}` are replaced. The
    /// default works in-cluster; a controller outside points it at a port-forward.
    pub gateway_url: String,
    /// Host names of the HTTPRoute.
    pub hostnames: Vec<String>,
    /// Namespaces allowed to reach the model servers besides the gateway's and
    /// Prometheus's (an ingress controller's, say).
    pub ingress_namespaces: Vec<String>,
    /// Prometheus's HTTP API, for analysis on the cluster.
    pub prometheus_url: Option<String>,
    /// How the controller reaches a variant's Service (gates and smoke tests);
    /// `{service}` and `{namespace}` are replaced. The default works in-cluster; a
    /// controller outside the cluster points it at a port-forward or an ingress.
    pub service_url: String,
    /// The namespace Prometheus scrapes from (allowed by the NetworkPolicy).
    pub prometheus_namespace: String,
    /// The type of the app Service over both variants (the way in without a
    /// Gateway); the per-variant Services stay ClusterIP.
    pub service_type: ServiceType,
    /// How long one rollout (a Deployment's pods updated and available) may take.
    pub rollout_timeout: Dur,
    /// How long a pod's preStop waits, so endpoints drop it before it stops.
    pub drain: Dur,
    /// Server-side apply field manager: hoist owns the fields it writes under it.
    pub field_manager: String,
    pub resources: ResourcesConfig,
    pub autoscale: AutoscaleConfig,
    pub controller: ControllerConfig,
}

impl Default for Kubernetes {
    fn default() -> Kubernetes {
        Kubernetes {
            namespace: "hoist-{env}".into(),
            image: None,
            name: None,
            registry_url: None,
            registry_secret: None,
            model_path: None,
            model_source: ModelSourceKind::Registry,
            pull_secret: None,
            admin_token_secret: None,
            feedback_token_secret: None,
            gateway: None,
            split: None,
            gateway_url: "http://{service}.{namespace}.svc:9090".into(),
            hostnames: Vec::new(),
            ingress_namespaces: Vec::new(),
            prometheus_url: None,
            service_url: "http://{service}.{namespace}.svc:80".into(),
            prometheus_namespace: "monitoring".into(),
            service_type: ServiceType::ClusterIp,
            rollout_timeout: Dur(Duration::from_secs(600)),
            drain: Dur(Duration::from_secs(5)),
            field_manager: "hoist".into(),
            resources: ResourcesConfig::default(),
            autoscale: AutoscaleConfig::default(),
            controller: ControllerConfig::default(),
        }
    }
}

/// `kubernetes.service_type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    #[default]
    #[serde(rename = "ClusterIP")]
    ClusterIp,
    LoadBalancer,
    NodePort,
}

impl ServiceType {
    /// The Kubernetes spelling (`spec.type`).
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIp => "ClusterIP",
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::NodePort => "NodePort",
        }
    }
}

/// `kubernetes.split`: what divides an environment's traffic between its variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitKind {
    /// The Gateway API: the HTTPRoute's `backendRefs` weights (needs `gateway`).
    GatewayApi,
    /// Whole pods: the app Service selects both variants' pods.
    Replicas,
    /// hoist's gateway (`hoist gateway`) as a Deployment in front of both variants.
    Hoist,
}

/// `kubernetes.model_source`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelSourceKind {
    /// `hoist model fetch` from the MLflow registry (`registry_url`).
    #[default]
    Registry,
    /// `hoist model pull` of the OCI model artifact `hoist model push` pushed.
    Oci,
}

/// `[kubernetes.gateway]`: a Gateway API Gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayParent {
    pub name: String,
    /// Default: the environment's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// One listener of the Gateway, e.g. `https`.
    #[serde(default)]
    pub section_name: Option<String>,
}

/// `[kubernetes.resources]`: each model-server container's requests and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourcesConfig {
    pub cpu_request: String,
    /// No CPU limit by default: throttling a latency-bound server hurts more than
    /// it protects.
    pub cpu_limit: Option<String>,
    pub memory_request: String,
    pub memory_limit: String,
}

impl Default for ResourcesConfig {
    fn default() -> Self {
        ResourcesConfig {
            cpu_request: "500m".into(),
            cpu_limit: None,
            memory_request: "512Mi".into(),
            memory_limit: "1Gi".into(),
        }
    }
}

/// `[kubernetes.autoscale]`: the stable Deployment's HorizontalPodAutoscaler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoscaleConfig {
    /// Off: the environment's `replicas` is the fixed count.
    pub enabled: bool,
    pub min: u32,
    pub max: u32,
    /// Average CPU utilisation aimed at, in percent of the request.
    pub cpu_percent: u32,
    /// Also scale on memory: average memory use aimed at, in percent of
    /// `resources.memory_request` (the autoscaler takes the larger count the two
    /// metrics ask for). Unset: CPU only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_percent: Option<u32>,
}

impl Default for AutoscaleConfig {
    fn default() -> Self {
        AutoscaleConfig {
            enabled: true,
            min: 3,
            max: 10,
            cpu_percent: 70,
            memory_percent: None,
        }
    }
}

/// `[kubernetes.controller]`: `hoist up` itself as a Deployment in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    /// Render the controller (and its Role in each environment's namespace).
    pub enabled: bool,
    pub namespace: String,
    /// Default: `kubernetes.image`.
    pub image: Option<String>,
    /// Replicas; a Lease lets one of them drive at a time.
    pub replicas: u32,
    /// A PersistentVolumeClaim for the journal; without one, a new controller pod
    /// recovers what is live from the objects' `hoist.dev/*` annotations.
    pub journal_claim: Option<String>,
    /// Variables of the controller whose values are in Secrets: `VAR = "secret/key"`
    /// mounts that key as a file and sets `VAR_FILE` to it, which hoist reads again
    /// whenever the kubelet rotates the Secret (no restart). Every variable hoist.toml
    /// names for the controller (`registry.webhook_secret_env` with a webhook,
    /// `notifications[].secret_env`) must be here for `hoist render k8s`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
}

impl ControllerConfig {
    /// [`ControllerConfig::secret_env`] as (variable, Secret, key), checked.
    pub fn secret_env_refs(&self) -> Result<Vec<(String, String, String)>, String> {
        let mut out = Vec::new();
        for (var, r) in &self.secret_env {
            let at = format!("kubernetes.controller.secret_env.{var}");
            if var.is_empty()
                || var.starts_with(|c: char| c.is_ascii_digit())
                || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(format!(
                    "{at}: `{var}` is not an environment variable name (letters, digits, `_`)"
                ));
            }
            if var.ends_with("_FILE") {
                return Err(format!(
                    "{at}: name the variable hoist.toml names (without `_FILE`): its `_FILE` is set for it"
                ));
            }
            let (secret, key) = r.split_once('/').unwrap_or((r.as_str(), ""));
            if !is_dns_name(secret)
                || key.is_empty()
                || key.len() > 253
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(format!(
                    "{at}: `{r}` must be \"<Secret name>/<key>\" (e.g. \"mlflow-webhook/secret\")"
                ));
            }
            out.push((var.clone(), secret.to_string(), key.to_string()));
        }
        Ok(out)
    }
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            enabled: false,
            namespace: "hoist-system".into(),
            image: None,
            replicas: 2,
            journal_claim: None,
            secret_env: BTreeMap::new(),
        }
    }
}

impl Kubernetes {
    /// Checks of this table alone; the message starts with the key path.
    pub fn validate(&self) -> Result<(), String> {
        if self.namespace.trim().is_empty() {
            return Err("kubernetes.namespace: must not be empty".into());
        }
        let ns = self.namespace.replace("{env}", "env");
        if !is_dns_label(&ns) {
            return Err(format!(
                "kubernetes.namespace: `{}` must be a DNS label (lower-case letters, digits, `-`; `{{env}}` is the environment's name)",
                self.namespace
            ));
        }
        if let Some(image) = &self.image {
            check_image(image).map_err(|e| format!("kubernetes.image: {e}"))?;
        }
        if let Some(image) = &self.controller.image {
            check_image(image).map_err(|e| format!("kubernetes.controller.image: {e}"))?;
        }
        self.controller.secret_env_refs()?;
        if let Some(name) = &self.name
            && (!is_dns_label(name) || name.len() > 53)
        {
            return Err(format!(
                "kubernetes.name: `{name}` must be a DNS label of at most 53 characters"
            ));
        }
        for (key, url) in [
            ("registry_url", &self.registry_url),
            ("prometheus_url", &self.prometheus_url),
        ] {
            if let Some(u) = url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                return Err(format!("kubernetes.{key}: `{u}` is not an http(s) URL"));
            }
        }
        if let Some(p) = &self.model_path
            && !p.starts_with('/')
        {
            return Err(format!(
                "kubernetes.model_path: `{p}` must be an absolute path inside the image"
            ));
        }
        if self.model_source == ModelSourceKind::Oci && self.model_path.is_some() {
            return Err(
                "kubernetes.model_source: `oci` pulls the model into the pod; model_path says it is baked into the image: set one of them"
                    .into(),
            );
        }
        for (key, secret) in [
            ("registry_secret", &self.registry_secret),
            ("admin_token_secret", &self.admin_token_secret),
            ("feedback_token_secret", &self.feedback_token_secret),
            ("pull_secret", &self.pull_secret),
        ] {
            if let Some(s) = secret
                && !is_dns_name(s)
            {
                return Err(format!("kubernetes.{key}: `{s}` is not a Secret name"));
            }
        }
        match (self.split, &self.gateway) {
            (Some(SplitKind::GatewayApi), None) => {
                return Err(
                    "kubernetes.split: `gateway-api` needs kubernetes.gateway (the Gateway the HTTPRoute attaches to)"
                        .into(),
                );
            }
            (Some(SplitKind::Hoist), Some(_)) => {
                return Err(
                    "kubernetes.split: `hoist` puts hoist's gateway behind the app Service; \
                     kubernetes.gateway would render an HTTPRoute that bypasses it: remove \
                     kubernetes.gateway and route your Gateway or ingress to the app Service"
                        .into(),
                );
            }
            _ => {}
        }
        if self.feedback_token_secret.is_some() && self.split != Some(SplitKind::Hoist) {
            return Err(
                "kubernetes.feedback_token_secret: only hoist's gateway takes feedback labels on a \
                 cluster: set split = \"hoist\", or remove the key"
                    .into(),
            );
        }
        if self.split == Some(SplitKind::Hoist) && self.admin_token_secret.is_none() {
            return Err(
                "kubernetes.admin_token_secret: split = \"hoist\" needs it: the gateway's admin API \
                 (weights, shadow, counters) only answers the token in that Secret (key `token`)"
                    .into(),
            );
        }
        if !(self.gateway_url.starts_with("http://") || self.gateway_url.starts_with("https://")) {
            return Err(format!(
                "kubernetes.gateway_url: `{}` is not an http(s) URL",
                self.gateway_url
            ));
        }
        if let Some(g) = &self.gateway {
            if g.name.trim().is_empty() {
                return Err("kubernetes.gateway.name: must not be empty".into());
            }
            if let Some(ns) = &g.namespace
                && !is_dns_label(ns)
            {
                return Err(format!(
                    "kubernetes.gateway.namespace: `{ns}` is not a DNS label"
                ));
            }
        }
        for ns in self
            .ingress_namespaces
            .iter()
            .chain([&self.prometheus_namespace, &self.controller.namespace])
        {
            if !is_dns_label(ns) {
                return Err(format!("kubernetes: namespace `{ns}` is not a DNS label"));
            }
        }
        for q in [
            &self.resources.cpu_request,
            &self.resources.memory_request,
            &self.resources.memory_limit,
        ]
        .into_iter()
        .chain(self.resources.cpu_limit.as_ref())
        {
            if !is_quantity(q) {
                return Err(format!(
                    "kubernetes.resources: `{q}` is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 1Gi)"
                ));
            }
        }
        let a = &self.autoscale;
        if a.enabled && !(a.min >= 1 && a.min <= a.max && (1..=100).contains(&a.cpu_percent)) {
            return Err(format!(
                "kubernetes.autoscale: min {} and max {} at {}% CPU: need 1 <= min <= max and a percentage from 1 to 100",
                a.min, a.max, a.cpu_percent
            ));
        }
        if let Some(m) = a.memory_percent
            && !(1..=100).contains(&m)
        {
            return Err(format!(
                "kubernetes.autoscale.memory_percent: {m}: need a percentage of resources.memory_request from 1 to 100"
            ));
        }
        if !(1..=10).contains(&self.controller.replicas) {
            return Err(format!(
                "kubernetes.controller.replicas: must be 1 to 10, not {}",
                self.controller.replicas
            ));
        }
        if self.rollout_timeout.0 < Duration::from_secs(1) {
            return Err("kubernetes.rollout_timeout: must be at least 1s".into());
        }
        if self.field_manager.is_empty() || self.field_manager.len() > 128 {
            return Err("kubernetes.field_manager: must be 1 to 128 characters".into());
        }
        Ok(())
    }

    /// The image, required to render or apply anything.
    pub fn require_image(&self) -> Result<&str, String> {
        self.image.as_deref().ok_or_else(|| {
            "kubernetes.image: required to run on Kubernetes; set it to the hoist image \
             by digest (repository@sha256:…)"
                .to_string()
        })
    }

    /// The split in use: `split`, else the Gateway API with a `gateway`, else
    /// the replica ratio.
    pub fn split(&self) -> SplitKind {
        match (self.split, &self.gateway) {
            (Some(s), _) => s,
            (None, Some(_)) => SplitKind::GatewayApi,
            (None, None) => SplitKind::Replicas,
        }
    }

    /// Where the controller reaches the admin API of hoist's gateway (`service`
    /// in `namespace`), by `gateway_url`.
    pub fn gateway_url_for(&self, service: &str, namespace: &str) -> String {
        self.gateway_url
            .replace("{service}", service)
            .replace("{namespace}", namespace)
    }

    /// The URL of the Service `service` in `namespace`, by `service_url`.
    pub fn service_url_for(&self, service: &str, namespace: &str) -> String {
        self.service_url
            .replace("{service}", service)
            .replace("{namespace}", namespace)
    }

    /// The namespace of environment `env`.
    pub fn namespace_for(&self, env: &str) -> String {
        self.namespace
            .replace("{env}", &env.to_ascii_lowercase().replace('_', "-"))
    }

    /// The objects' base name for model `model`.
    pub fn app_name(&self, model: &str) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let s: String = model
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        s.trim_matches('-')
            .chars()
            .take(53)
            .collect::<String>()
            .trim_end_matches('-')
            .to_string()
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain (Secret names): labels joined by dots.
fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A Kubernetes quantity: a decimal number and an optional suffix.
fn is_quantity(q: &str) -> bool {
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    !num.is_empty()
        && num.parse::<f64>().is_ok()
        && ["", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"].contains(&suffix)
}

/// `repo@sha256:<64 hex>`; a tag alone is refused with the reason.
fn check_image(image: &str) -> Result<(), String> {
    let Some((repo, digest)) = image.rsplit_once('@') else {
        return Err(format!(
            "`{image}` is not pinned by digest: write repository@sha256:<digest>; \
             a tag such as `latest` can name a different image tomorrow"
        ));
    };
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    if repo.is_empty()
        || hex.len() != 64
        || !hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        return Err(format!(
            "`{image}` is not repository@sha256: and 64 lower-case hex digits"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const DIGEST: &str = "sha256:0f4e3d2c1b0a99887766554433221100ffeeddccbbaa99887766554433221100";

    fn parse(toml: &str) -> Result<Config, String> {
        Config::parse(toml, "hoist.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn an_absent_table_is_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.target, TargetKind::Local);
        assert_eq!(c.kubernetes, Kubernetes::default());
        assert_eq!(c.kubernetes.namespace_for("production"), "hoist-production");
        assert_eq!(c.kubernetes.field_manager, "hoist");
        assert_eq!(c.kubernetes.rollout_timeout.0, Duration::from_secs(600));
        assert_eq!(
            (c.kubernetes.autoscale.min, c.kubernetes.autoscale.max),
            (3, 10)
        );
        assert!(
            c.kubernetes
                .require_image()
                .unwrap_err()
                .contains("by digest")
        );
    }

    #[test]
    fn a_full_table_parses() {
        let c = parse(&format!(
            r#"
target = "kubernetes"
[kubernetes]
namespace = "ml-{{env}}"
image = "registry.example.com/hoist@{DIGEST}"
name = "fraud"
registry_url = "http://mlflow.mlflow.svc:5000"
registry_secret = "mlflow-credentials"
admin_token_secret = "hoist-admin-token"
hostnames = ["fraud.example.com"]
ingress_namespaces = ["ingress-nginx"]
prometheus_url = "http://prometheus.monitoring.svc:9090"
rollout_timeout = "5m"
drain = "10s"
field_manager = "hoist-prod"
gateway = {{ name = "public", namespace = "gateway-system", section_name = "https" }}
[kubernetes.resources]
cpu_request = "1"
cpu_limit = "2"
memory_request = "1Gi"
memory_limit = "2Gi"
[kubernetes.autoscale]
min = 2
max = 6
cpu_percent = 60
memory_percent = 80
[kubernetes.controller]
enabled = true
replicas = 2
journal_claim = "hoist-journal"
"#
        ))
        .unwrap();
        let k = &c.kubernetes;
        assert_eq!(c.target, TargetKind::Kubernetes);
        assert_eq!(k.namespace_for("staging"), "ml-staging");
        assert_eq!(
            k.gateway.as_ref().unwrap().section_name.as_deref(),
            Some("https")
        );
        assert_eq!(k.rollout_timeout.0, Duration::from_secs(300));
        assert_eq!(k.resources.cpu_limit.as_deref(), Some("2"));
        assert_eq!(k.autoscale.cpu_percent, 60);
        assert_eq!(k.autoscale.memory_percent, Some(80));
        assert!(k.controller.enabled);
        assert_eq!(
            k.require_image().unwrap(),
            format!("registry.example.com/hoist@{DIGEST}")
        );
    }

    #[test]
    fn an_image_by_tag_is_refused() {
        for image in [
            "registry.example.com/hoist:latest",
            "registry.example.com/hoist",
            "registry.example.com/hoist@sha256:abc",
        ] {
            let e = parse(&format!("[kubernetes]\nimage = \"{image}\"\n")).unwrap_err();
            assert!(e.contains("kubernetes.image:"), "{e}");
            assert!(e.contains(image), "{e}");
        }
        let e = parse("[kubernetes]\nimage = \"hoist:latest\"\n").unwrap_err();
        assert!(
            e.contains("not pinned by digest") && e.contains("latest"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            (
                "[kubernetes]\nnamespace = \"Hoist_Prod\"",
                "kubernetes.namespace",
            ),
            (
                "[kubernetes]\nregistry_url = \"mlflow:5000\"",
                "kubernetes.registry_url",
            ),
            (
                "[kubernetes]\nmodel_path = \"models/x\"",
                "kubernetes.model_path",
            ),
            (
                "[kubernetes.resources]\nmemory_limit = \"1 GB\"",
                "kubernetes.resources",
            ),
            (
                "[kubernetes.autoscale]\nmin = 5\nmax = 2",
                "kubernetes.autoscale",
            ),
            (
                "[kubernetes.controller]\nreplicas = 0",
                "kubernetes.controller.replicas",
            ),
            (
                "[kubernetes]\nrollout_timeout = \"0s\"",
                "kubernetes.rollout_timeout",
            ),
            (
                "[kubernetes]\nadmin_token_secret = \"Admin Token\"",
                "kubernetes.admin_token_secret",
            ),
            (
                "[kubernetes]\ngateway = { name = \"\" }",
                "kubernetes.gateway.name",
            ),
        ] {
            let e = parse(toml).unwrap_err();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }

    #[test]
    fn model_source_and_pull_secret_parse_and_are_checked() {
        let c = parse(
            "[model]\nartifact_repository = \"r.example.com/team/models\"\n\
             [kubernetes]\nmodel_source = \"oci\"\npull_secret = \"registry-credentials\"\n",
        )
        .unwrap();
        assert_eq!(c.kubernetes.model_source, ModelSourceKind::Oci);
        assert_eq!(
            c.kubernetes.pull_secret.as_deref(),
            Some("registry-credentials")
        );
        assert_eq!(
            parse("").unwrap().kubernetes.model_source,
            ModelSourceKind::Registry
        );
        for (toml, want) in [
            (
                "[kubernetes]\nmodel_source = \"oci\"\n",
                "kubernetes.model_source: `oci` pulls each version's artifact from model.artifact_repository",
            ),
            (
                "[model]\nartifact_repository = \"r.example.com/m\"\n[kubernetes]\nmodel_source = \"oci\"\nmodel_path = \"/m\"\n",
                "kubernetes.model_source: `oci` pulls the model into the pod; model_path",
            ),
            (
                "[kubernetes]\nmodel_source = \"s3\"\n",
                "unknown variant `s3`",
            ),
            (
                "[kubernetes]\npull_secret = \"Registry Creds\"\n",
                "kubernetes.pull_secret: `Registry Creds` is not a Secret name",
            ),
        ] {
            let e = parse(toml).unwrap_err();
            assert!(e.contains(want), "{toml}: {e}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse("[kubernetes]\nreplica = 3\n").unwrap_err();
        assert!(e.contains("replica"), "{e}");
        let e = parse("[kubernetes.autoscale]\nmaximum = 3\n").unwrap_err();
        assert!(e.contains("maximum"), "{e}");
    }

    #[test]
    fn app_name_is_a_dns_label_from_the_model_name() {
        let k = Kubernetes::default();
        assert_eq!(k.app_name("Fraud_Model.v2"), "fraud-model-v2");
        assert_eq!(k.app_name("default"), "default");
    }

    #[test]
    fn the_kubernetes_target_needs_an_image_and_refuses_what_needs_hoists_gateway() {
        let e = parse("target = \"kubernetes\"").unwrap_err();
        assert!(e.contains("kubernetes.image: required"), "{e}");
        let base = format!("target = \"kubernetes\"\n[kubernetes]\nimage = \"r/hoist@{DIGEST}\"\n");
        let c = parse(&base).unwrap();
        assert_eq!(c.target, TargetKind::Kubernetes);
        assert_eq!(
            c.kubernetes.service_url_for("fraud-candidate", "ml-prod"),
            "http://fraud-candidate.ml-prod.svc:80"
        );
        let shadow = format!(
            "{base}[[environments]]\nname = \"production\"\nlisten = \"127.0.0.1:0\"\nsteps = [{{ shadow = 50, pause = \"1m\" }}]\n"
        );
        let e = parse(&shadow).unwrap_err();
        assert!(
            e.contains("steps[0].shadow: shadow steps need hoist's gateway"),
            "{e}"
        );
        assert!(e.contains("kubernetes.split = \"hoist\""), "{e}");
        let feedback = format!("{base}[analysis]\nfeedback = true\n");
        let e = parse(&feedback).unwrap_err();
        assert!(e.contains("analysis.feedback"), "{e}");
        // The same pipeline runs locally.
        assert!(parse(&shadow.replace("target = \"kubernetes\"", "target = \"local\"")).is_ok());
        // And on the cluster behind hoist's own gateway.
        let hoist = |t: &str| {
            t.replace(
                "[kubernetes]\n",
                "[kubernetes]\nsplit = \"hoist\"\nadmin_token_secret = \"hoist-admin\"\n",
            )
        };
        let c = parse(&hoist(&shadow)).unwrap();
        assert_eq!(c.kubernetes.split(), SplitKind::Hoist);
        assert_eq!(
            c.kubernetes.gateway_url_for("fraud-gateway", "ml-prod"),
            "http://fraud-gateway.ml-prod.svc:9090"
        );
        assert!(parse(&hoist(&feedback)).is_ok());
    }

    #[test]
    fn the_split_defaults_by_gateway_and_its_choices_are_checked() {
        let c = parse("").unwrap();
        assert_eq!(c.kubernetes.split(), SplitKind::Replicas);
        let c = parse("[kubernetes]\ngateway = { name = \"public\" }\n").unwrap();
        assert_eq!(c.kubernetes.split(), SplitKind::GatewayApi);
        let c =
            parse("[kubernetes]\nsplit = \"replicas\"\ngateway = { name = \"public\" }\n").unwrap();
        assert_eq!(c.kubernetes.split(), SplitKind::Replicas);
        for (toml, want) in [
            (
                "[kubernetes]\nsplit = \"gateway-api\"\n",
                "kubernetes.split: `gateway-api` needs kubernetes.gateway",
            ),
            (
                "[kubernetes]\nsplit = \"hoist\"\n",
                "kubernetes.admin_token_secret: split = \"hoist\" needs it",
            ),
            (
                "[kubernetes]\nsplit = \"hoist\"\nadmin_token_secret = \"t\"\ngateway = { name = \"public\" }\n",
                "kubernetes.split: `hoist` puts hoist's gateway behind the app Service",
            ),
            (
                "[kubernetes]\nfeedback_token_secret = \"labels\"\n",
                "kubernetes.feedback_token_secret: only hoist's gateway takes feedback labels",
            ),
            (
                "[kubernetes]\nsplit = \"hoist\"\nadmin_token_secret = \"t\"\nfeedback_token_secret = \"Labels!\"\n",
                "kubernetes.feedback_token_secret: `Labels!` is not a Secret name",
            ),
            (
                "[kubernetes]\nsplit = \"istio\"\n",
                "unknown variant `istio`",
            ),
            (
                "[kubernetes]\ngateway_url = \"gw:9090\"\n",
                "kubernetes.gateway_url: `gw:9090` is not an http(s) URL",
            ),
        ] {
            let e = parse(toml).unwrap_err();
            assert!(e.contains(want), "{toml}: {e}");
        }
    }
}
