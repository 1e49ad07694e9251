//! What to render for one environment: a plain description with no dependency on
//! hoist.toml (the CLI maps `[kubernetes]` into it), checked once by
//! [`AppSpec::validate`] so the renderer itself cannot fail.

use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// One model version as it runs in a pod: what `hoist model fetch` pulls and what the
/// `hoist.dev/*` annotations record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPin {
    /// The registered model's name (`hoist.dev/model`).
    pub name: String,
    /// The registry's version (`hoist.dev/version`).
    pub version: String,
    /// `sha256:<64 hex>` of the package (`hoist.dev/digest`).
    pub digest: String,
    /// The version's OCI model artifact by digest (`REPOSITORY@sha256:…`,
    /// `hoist.dev/artifact`): what `hoist model pull` fetches with
    /// [`ModelSource::Oci`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
}

/// Which of the two Deployments of an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// What serves now.
    Stable,
    /// What is being brought in.
    Candidate,
}

impl Variant {
    /// The label value and name suffix: `stable` or `candidate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Stable => "stable",
            Variant::Candidate => "candidate",
        }
    }
}

/// CPU and memory for each model-server container, as Kubernetes quantities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_request: String,
    pub cpu_limit: Option<String>,
    pub memory_request: String,
    pub memory_limit: String,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpu_request: "500m".into(),
            cpu_limit: None,
            memory_request: "512Mi".into(),
            memory_limit: "1Gi".into(),
        }
    }
}

/// The HorizontalPodAutoscaler of the stable Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Autoscale {
    pub min: i32,
    pub max: i32,
    /// Average CPU utilisation (percent of the request) the autoscaler aims at.
    pub cpu_percent: i32,
    /// Average memory use (percent of the request) it aims at too; `None`: CPU only.
    pub memory_percent: Option<i32>,
}

impl Default for Autoscale {
    fn default() -> Self {
        Autoscale {
            min: 3,
            max: 10,
            cpu_percent: 70,
            memory_percent: None,
        }
    }
}

/// A Gateway API Gateway (and optionally one listener) the HTTPRoute attaches to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRef {
    pub name: String,
    pub namespace: Option<String>,
    pub section_name: Option<String>,
}

/// How the model reaches the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelSource {
    /// An init container runs `hoist model fetch NAME/VERSION` against this registry
    /// (an MLflow tracking URL) into a shared emptyDir.
    Registry {
        url: String,
        /// Secret with optional keys `username`, `password`, `token` (mapped to
        /// MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_TOKEN).
        credentials_secret: Option<String>,
    },
    /// The image already holds the model at this path: no init container.
    Baked { path: String },
    /// An init container runs `hoist model pull ARTIFACT@sha256:…` (each pin's
    /// `artifact`, by digest) into a shared emptyDir; credentials from the pull
    /// secret, when there is one.
    Oci,
}

/// hoist's own gateway (`hoist gateway`) as a Deployment in front of both variants:
/// the app Service selects its pods, and it forwards to the variants' Services.
/// Weights, shadow mirroring and feedback are set through its admin API, which
/// answers only the admin token ([`AppSpec::admin_token_secret`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HoistGateway {
    /// Further `hoist gateway` flags (sticky header or cookie, response timeout).
    pub args: Vec<String>,
    /// Secret with key `token`: the token `POST /feedback` needs, mounted as a file
    /// (`--feedback-token-file`); none: labels from anyone who reaches the gateway.
    #[serde(default)]
    pub feedback_token_secret: Option<String>,
}

/// The in-cluster controller (`hoist up` as a Deployment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerSpec {
    /// Its namespace (the Lease lives there too).
    pub namespace: String,
    /// The image holding `hoist`, by digest; the model server's image when unset.
    pub image: String,
    /// Two replicas stand by for each other; the Lease decides which one drives.
    pub replicas: i32,
    /// The hoist.toml it runs, stored in a ConfigMap.
    pub config_toml: String,
    /// A PersistentVolumeClaim for the journal; without it the journal is an emptyDir
    /// and a new pod recovers what is live from the objects' annotations.
    pub journal_claim: Option<String>,
    /// Variables whose values are Secret keys mounted as files: `(VAR, secret, key)`
    /// sets `VAR_FILE` (re-read by hoist when the Secret is rotated).
    #[serde(default)]
    pub secret_env: Vec<(String, String, String)>,
    /// The port MLflow's webhooks reach (`registry.webhook_listen`), exposed by the
    /// controller's container and Service when set.
    #[serde(default)]
    pub webhook_port: Option<u16>,
}

/// Everything one environment's manifests are made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSpec {
    /// Base name of every object (a DNS label: the model name, lower-cased).
    pub app: String,
    /// The environment's name (`hoist.dev/env`).
    pub env: String,
    pub namespace: String,
    /// `repository@sha256:…`; tags are refused.
    pub image: String,
    /// What serves now.
    pub stable: ModelPin,
    /// What is being brought in, if anything (no candidate Deployment otherwise).
    pub candidate: Option<ModelPin>,
    /// Percent of traffic to the candidate (0 without one).
    pub candidate_weight: u32,
    /// Replicas of each variant when no autoscaler is rendered, and of the candidate.
    pub replicas: i32,
    pub resources: Resources,
    /// `None`: no HorizontalPodAutoscaler, `replicas` fixed.
    pub autoscale: Option<Autoscale>,
    pub model_source: ModelSource,
    /// Secret holding the admin token (key `token`), mounted as a file.
    pub admin_token_secret: Option<String>,
    /// A `kubernetes.io/dockerconfigjson` Secret: every pod's `imagePullSecrets`, and
    /// the registry credentials of `hoist model pull` with [`ModelSource::Oci`].
    pub pull_secret: Option<String>,
    /// `None`: no HTTPRoute; traffic splits by replica ratio through the app Service
    /// (or through hoist's gateway, [`AppSpec::hoist_gateway`]).
    pub gateway: Option<GatewayRef>,
    /// hoist's gateway splits the traffic (`split = "hoist"`); excludes `gateway`.
    #[serde(default)]
    pub hoist_gateway: Option<HoistGateway>,
    pub hostnames: Vec<String>,
    /// Namespaces allowed to reach the model servers (the gateway's, an ingress
    /// controller's); Prometheus's is added.
    pub ingress_namespaces: Vec<String>,
    /// The namespace Prometheus scrapes from.
    pub prometheus_namespace: String,
    /// hoist-server `--runtime`.
    pub runtime: String,
    /// Further hoist-server flags.
    pub server_args: Vec<String>,
    /// The request header that forces a variant (`x-hoist-variant: candidate`).
    pub force_header: Option<String>,
    /// Seconds the preStop hook waits so endpoints drop the pod before SIGTERM.
    pub drain_seconds: i64,
    /// `spec.type` of the app Service (`ClusterIP`, `LoadBalancer`, `NodePort`); the
    /// per-variant Services are always ClusterIP.
    pub service_type: String,
    /// Seconds a starting server may take to load its model.
    pub startup_seconds: i32,
    pub controller: Option<ControllerSpec>,
}

/// The container port of hoist-server (and of hoist's gateway's traffic).
pub const SERVER_PORT: i32 = 8080;
/// The container port of hoist's gateway's admin API.
pub const GATEWAY_ADMIN_PORT: i32 = 9090;

impl AppSpec {
    /// A spec with the defaults; tests and the CLI fill in the rest.
    pub fn new(
        app: &str,
        env: &str,
        namespace: &str,
        image: &str,
        stable: ModelPin,
        model_source: ModelSource,
    ) -> AppSpec {
        AppSpec {
            app: app.into(),
            env: env.into(),
            namespace: namespace.into(),
            image: image.into(),
            stable,
            candidate: None,
            candidate_weight: 0,
            replicas: 3,
            resources: Resources::default(),
            autoscale: Some(Autoscale::default()),
            model_source,
            admin_token_secret: None,
            pull_secret: None,
            gateway: None,
            hoist_gateway: None,
            hostnames: Vec::new(),
            ingress_namespaces: Vec::new(),
            prometheus_namespace: "monitoring".into(),
            runtime: "auto".into(),
            server_args: Vec::new(),
            force_header: Some("x-hoist-variant".into()),
            drain_seconds: 5,
            service_type: "ClusterIP".into(),
            startup_seconds: 60,
            controller: None,
        }
    }

    /// Every check the renderer relies on; the message names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: String| Err(Error::Invalid(format!("{field}: {why}")));
        if !["ClusterIP", "LoadBalancer", "NodePort"].contains(&self.service_type.as_str()) {
            return bad(
                "service_type",
                format!(
                    "`{}` is not ClusterIP, LoadBalancer or NodePort",
                    self.service_type
                ),
            );
        }
        // `-candidate` is the longest suffix; Services are DNS-1035 labels (63).
        if !is_dns_label(&self.app) || self.app.len() > 63 - "-candidate".len() {
            return bad(
                "app",
                format!(
                    "`{}` must be a DNS label of at most 53 characters (lower-case letters, digits, `-`)",
                    self.app
                ),
            );
        }
        if !self.app.starts_with(|c: char| c.is_ascii_lowercase()) {
            return bad("app", format!("`{}` must start with a letter", self.app));
        }
        if !is_dns_label(&self.namespace) {
            return bad(
                "namespace",
                format!("`{}` is not a DNS label", self.namespace),
            );
        }
        check_image(&self.image).or_else(|e| bad("image", e))?;
        for (field, pin) in std::iter::once(("stable", &self.stable))
            .chain(self.candidate.iter().map(|c| ("candidate", c)))
        {
            check_digest(&pin.digest).or_else(|e| bad(&format!("{field}.digest"), e))?;
            if self.model_source == ModelSource::Oci {
                let Some(a) = &pin.artifact else {
                    return bad(
                        &format!("{field}.artifact"),
                        format!(
                            "model_source = \"oci\" needs version {}'s model artifact by digest \
                             (`hoist model push` records it as the tag hoist.artifact)",
                            pin.version
                        ),
                    );
                };
                check_image(a).or_else(|e| bad(&format!("{field}.artifact"), e))?;
            }
            if pin.name.is_empty() || pin.version.is_empty() {
                return bad(field, "model name and version must not be empty".into());
            }
        }
        if self.candidate_weight > 100 {
            return bad(
                "candidate_weight",
                format!("must be 0 to 100, not {}", self.candidate_weight),
            );
        }
        if self.candidate.is_none() && self.candidate_weight != 0 {
            return bad(
                "candidate_weight",
                "a weight needs a candidate version".into(),
            );
        }
        if !(1..=1000).contains(&self.replicas) {
            return bad(
                "replicas",
                format!("must be 1 to 1000, not {}", self.replicas),
            );
        }
        if let Some(a) = &self.autoscale
            && !(a.min >= 1
                && a.min <= a.max
                && (1..=100).contains(&a.cpu_percent)
                && a.memory_percent.is_none_or(|m| (1..=100).contains(&m)))
        {
            return bad(
                "autoscale",
                format!(
                    "min {} .. max {} at {}% CPU, {:?}% memory: need 1 <= min <= max and 1..=100%",
                    a.min, a.max, a.cpu_percent, a.memory_percent
                ),
            );
        }
        if let ModelSource::Registry { url, .. } = &self.model_source
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return bad(
                "registry_url",
                format!("`{url}` is not an http(s) URL of an MLflow tracking server"),
            );
        }
        if self.hoist_gateway.is_some() {
            if self.gateway.is_some() {
                return bad(
                    "hoist_gateway",
                    "hoist's gateway and a Gateway API route are two splits: choose one".into(),
                );
            }
            if self.admin_token_secret.is_none() {
                return bad(
                    "hoist_gateway",
                    "its admin API needs the admin token: set admin_token_secret".into(),
                );
            }
        }
        if let Some(c) = &self.controller {
            if !is_dns_label(&c.namespace) {
                return bad(
                    "controller.namespace",
                    format!("`{}` is not a DNS label", c.namespace),
                );
            }
            check_image(&c.image).or_else(|e| bad("controller.image", e))?;
        }
        Ok(())
    }

    /// `{app}-stable` or `{app}-candidate`: the Deployment and its Service.
    pub fn name(&self, v: Variant) -> String {
        format!("{}-{}", self.app, v.as_str())
    }

    /// `{app}-gateway`: hoist's gateway's Deployment and Service.
    pub fn gateway_name(&self) -> String {
        format!("{}-gateway", self.app)
    }
}

/// A DNS-1123 label: 1-63 lower-case letters, digits and `-`, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `sha256:` and 64 lower-case hex digits.
pub fn check_digest(d: &str) -> std::result::Result<(), String> {
    match d.strip_prefix("sha256:") {
        Some(h)
            if h.len() == 64
                && h.chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "`{d}` is not a sha256 digest (sha256: and 64 lower-case hex digits)"
        )),
    }
}

/// An image reference pinned by digest (`repo@sha256:…`, optionally `repo:tag@sha256:…`).
/// A bare tag (`:latest`, `:1.2`) names whatever was pushed last, so it is refused.
pub fn check_image(image: &str) -> std::result::Result<(), String> {
    let Some((repo, digest)) = image.rsplit_once('@') else {
        return Err(format!(
            "`{image}` is not pinned by digest: write repository@sha256:<digest> \
             (find it with `docker buildx imagetools inspect {image}`); tags such as \
             `latest` can point at a different image tomorrow"
        ));
    };
    if repo.is_empty() || repo.chars().any(|c| c.is_whitespace()) {
        return Err(format!("`{image}` has no repository before the @"));
    }
    check_digest(digest).map_err(|e| format!("`{image}`: {e}"))
}
