//! From an [`AppSpec`] to typed Kubernetes objects, and from those to YAML that
//! `kubectl apply -f` and kustomize accept.
//!
//! Every object is a k8s-openapi type (or one of [`super::crds`]), never a string
//! template: a misspelt field does not compile. The renderer does no I/O and, once
//! [`AppSpec::validate`] passed, cannot fail; [`render`] runs that check first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler,
    Namespace, ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, SleepAction, TopologySpreadConstraint, Volume,
    VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use super::crds::{
    Endpoint, HttpBackendRef, HttpHeaderMatch, HttpPathMatch, HttpRoute, HttpRouteMatch,
    HttpRouteRule, HttpRouteSpec, NamespaceSelector, ParentReference, ServiceMonitor,
    ServiceMonitorSpec,
};
use super::spec::{AppSpec, ControllerSpec, ModelPin, ModelSource, SERVER_PORT, Variant};
use super::{Error, Result};

/// Label: the app (the model's DNS name); every object of an environment has it.
pub const LABEL_APP: &str = "app.kubernetes.io/name";
/// Label: `stable` or `candidate`.
pub const LABEL_VARIANT: &str = "hoist.dev/variant";
/// Label: the environment's name.
pub const LABEL_ENV: &str = "hoist.dev/env";
/// Annotation: the registered model's name.
pub const ANN_MODEL: &str = "hoist.dev/model";
/// Annotation: the model version.
pub const ANN_VERSION: &str = "hoist.dev/version";
/// Annotation: the model package's sha256 digest.
pub const ANN_DIGEST: &str = "hoist.dev/digest";
/// The first line of every file `hoist render k8s` writes; files starting with it
/// that are no longer rendered are removed from the output directory.
pub const HEADER: &str = "# Rendered by `hoist render k8s`; edit hoist.toml instead.";
/// Name of the controller's Deployment, ServiceAccount, Lease and Roles.
pub const CONTROLLER: &str = "hoist-controller";

/// Where the model lives in the pod (fetched into an emptyDir).
const MODEL_DIR: &str = "/models";
/// Where the admin token Secret is mounted; the whole directory, not a subPath, so a
/// rotated Secret reaches the file (the kubelet swaps the directory's symlink).
const ADMIN_DIR: &str = "/var/run/secrets/hoist/admin";
/// The uid of the distroless `nonroot` user; any non-zero uid works.
const UID: i64 = 65532;

/// One object of the rendered set.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    Role(Role),
    RoleBinding(RoleBinding),
    ConfigMap(ConfigMap),
    Lease(Lease),
    Deployment(Box<Deployment>),
    Service(Service),
    HorizontalPodAutoscaler(HorizontalPodAutoscaler),
    PodDisruptionBudget(PodDisruptionBudget),
    NetworkPolicy(NetworkPolicy),
    ServiceMonitor(ServiceMonitor),
    HttpRoute(HttpRoute),
}

impl Object {
    /// The object's `kind`.
    pub fn kind(&self) -> &'static str {
        use k8s_openapi::Resource as R;
        match self {
            Object::Namespace(_) => Namespace::KIND,
            Object::ServiceAccount(_) => ServiceAccount::KIND,
            Object::Role(_) => Role::KIND,
            Object::RoleBinding(_) => RoleBinding::KIND,
            Object::ConfigMap(_) => ConfigMap::KIND,
            Object::Lease(_) => Lease::KIND,
            Object::Deployment(_) => Deployment::KIND,
            Object::Service(_) => Service::KIND,
            Object::HorizontalPodAutoscaler(_) => HorizontalPodAutoscaler::KIND,
            Object::PodDisruptionBudget(_) => PodDisruptionBudget::KIND,
            Object::NetworkPolicy(_) => NetworkPolicy::KIND,
            Object::ServiceMonitor(_) => ServiceMonitor::KIND,
            Object::HttpRoute(_) => HttpRoute::KIND,
        }
    }

    /// The object's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::ServiceAccount(o) => &o.metadata,
            Object::Role(o) => &o.metadata,
            Object::RoleBinding(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Lease(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::HorizontalPodAutoscaler(o) => &o.metadata,
            Object::PodDisruptionBudget(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
            Object::ServiceMonitor(o) => &o.metadata,
            Object::HttpRoute(o) => &o.metadata,
        }
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    /// `metadata.namespace` (none for a Namespace).
    pub fn namespace(&self) -> Option<&str> {
        self.meta().namespace.as_deref()
    }

    /// Where kinds go in a directory listing: what others depend on comes first, so
    /// `kubectl apply -f DIR` (which goes by file name) creates a Namespace before
    /// what lives in it.
    fn rank(&self) -> u8 {
        match self {
            Object::Namespace(_) => 0,
            Object::ServiceAccount(_) => 10,
            Object::Role(_) => 11,
            Object::RoleBinding(_) => 12,
            Object::ConfigMap(_) => 20,
            Object::Lease(_) => 21,
            Object::Deployment(_) => 30,
            Object::Service(_) => 40,
            Object::HorizontalPodAutoscaler(_) => 50,
            Object::PodDisruptionBudget(_) => 51,
            Object::NetworkPolicy(_) => 60,
            Object::ServiceMonitor(_) => 70,
            Object::HttpRoute(_) => 80,
        }
    }

    /// The file this object is written to: `30-deployment-fraud-stable.yaml`.
    pub fn file_name(&self) -> String {
        let ns = match (self, self.namespace()) {
            // Controller objects in another namespace could share a name with an
            // environment's; the namespace keeps their files apart.
            (_, Some(ns)) => format!("{ns}-"),
            _ => String::new(),
        };
        format!(
            "{:02}-{}-{ns}{}.yaml",
            self.rank(),
            self.kind().to_ascii_lowercase(),
            self.name()
        )
    }

    /// One YAML document (no `---`).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("k8s-openapi objects serialize to YAML")
    }
}

/// A rendered set of objects, in apply order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifests {
    pub objects: Vec<Object>,
}

/// What [`Manifests::write_dir`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    /// Every file, `kustomization.yaml` last.
    pub files: Vec<PathBuf>,
    /// Files of an earlier render that are no longer rendered, removed.
    pub removed: Vec<PathBuf>,
}

impl Manifests {
    /// Every object as one multi-document YAML stream (`kubectl apply -f -`).
    pub fn to_yaml(&self) -> String {
        let mut s = String::from(HEADER);
        s.push('\n');
        for o in &self.objects {
            s.push_str("---\n");
            s.push_str(&o.to_yaml());
        }
        s
    }

    /// The files of [`Manifests::write_dir`] and their contents, in order, without
    /// touching the disk.
    pub fn files(&self) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = self
            .objects
            .iter()
            .map(|o| (o.file_name(), format!("{HEADER}\n{}", o.to_yaml())))
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let mut k = format!(
            "{HEADER}\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
        );
        for (name, _) in &files {
            k.push_str(&format!("- {name}\n"));
        }
        files.push(("kustomization.yaml".into(), k));
        files
    }

    /// Writes one file per object and a `kustomization.yaml` listing them into `dir`
    /// (created if missing). Files of an earlier render (they start with [`HEADER`])
    /// that are not part of this one are removed, so the directory is exactly this
    /// render; nothing else in it is touched.
    pub fn write_dir(&self, dir: &Path) -> Result<Written> {
        let io = |path: &Path, source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let files = self.files();
        let keep: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let path = entry.map_err(|e| io(dir, e))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if !name.ends_with(".yaml") || keep.contains(&name) {
                continue;
            }
            let ours = std::fs::read_to_string(&path)
                .map(|t| t.starts_with(HEADER))
                .unwrap_or(false);
            if ours {
                std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
                removed.push(path);
            }
        }
        let mut written = Vec::new();
        for (name, text) in files {
            let path = dir.join(name);
            // Write a sibling and rename it into place: a reader never sees half a file.
            let tmp = dir.join(format!(
                ".{}.tmp",
                path.file_name().unwrap().to_string_lossy()
            ));
            std::fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
            written.push(path);
        }
        Ok(Written {
            files: written,
            removed,
        })
    }
}

/// Every object of one environment: its Namespace, the model servers' identity,
/// the stable (and candidate) Deployment, Services, autoscaler, disruption budget,
/// network policy, ServiceMonitor, the HTTPRoute when a Gateway is configured, and
/// the controller's Role in this namespace when an in-cluster controller is.
pub fn render(spec: &AppSpec) -> Result<Manifests> {
    spec.validate()?;
    let mut objects = vec![Object::Namespace(namespace(&spec.namespace))];
    objects.extend(server_identity(spec));
    if let Some(c) = &spec.controller {
        objects.extend(controller_access(spec, c));
    }
    objects.push(Object::Deployment(Box::new(deployment(
        spec,
        Variant::Stable,
        &spec.stable,
        stable_replicas(spec),
    ))));
    if let Some(c) = &spec.candidate {
        objects.push(Object::Deployment(Box::new(deployment(
            spec,
            Variant::Candidate,
            c,
            Some(spec.replicas),
        ))));
    }
    objects.push(Object::Service(service(spec, Some(Variant::Stable))));
    objects.push(Object::Service(service(spec, Some(Variant::Candidate))));
    objects.push(Object::Service(service(spec, None)));
    if let Some(a) = &spec.autoscale {
        objects.push(Object::HorizontalPodAutoscaler(hpa(spec, a)));
    }
    objects.push(Object::PodDisruptionBudget(pdb(spec)));
    objects.push(Object::NetworkPolicy(network_policy(spec)));
    objects.push(Object::ServiceMonitor(service_monitor(spec)));
    if spec.gateway.is_some() {
        objects.push(Object::HttpRoute(http_route(spec, spec.candidate_weight)));
    }
    Ok(Manifests { objects })
}

/// The stable Deployment's replicas: none when an autoscaler owns the count (so an
/// apply never fights it), else the configured number.
pub fn stable_replicas(spec: &AppSpec) -> Option<i32> {
    match spec.autoscale {
        Some(_) => None,
        None => Some(spec.replicas),
    }
}

fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels([("app.kubernetes.io/part-of", "hoist")])),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn labels<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Labels every object of the environment carries.
fn common(spec: &AppSpec) -> BTreeMap<String, String> {
    labels([
        (LABEL_APP, spec.app.as_str()),
        ("app.kubernetes.io/part-of", "hoist"),
        ("app.kubernetes.io/managed-by", "hoist"),
        (LABEL_ENV, spec.env.as_str()),
    ])
}

/// The selector of one variant's pods (immutable once a Deployment exists).
pub fn selector(spec: &AppSpec, v: Variant) -> BTreeMap<String, String> {
    labels([(LABEL_APP, spec.app.as_str()), (LABEL_VARIANT, v.as_str())])
}

/// The `app.kubernetes.io/name=APP,hoist.dev/variant=V` form of [`selector`].
pub fn selector_string(spec: &AppSpec, v: Variant) -> String {
    selector(spec, v)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn meta(spec: &AppSpec, name: String, extra: BTreeMap<String, String>) -> ObjectMeta {
    let mut l = common(spec);
    l.extend(extra);
    ObjectMeta {
        name: Some(name),
        namespace: Some(spec.namespace.clone()),
        labels: Some(l),
        ..Default::default()
    }
}

/// The `hoist.dev/*` annotations that say which model a Deployment runs; they are
/// how a controller that lost its journal finds out what is live.
pub fn pin_annotations(pin: &ModelPin) -> BTreeMap<String, String> {
    labels([
        (ANN_MODEL, pin.name.as_str()),
        (ANN_VERSION, pin.version.as_str()),
        (ANN_DIGEST, pin.digest.as_str()),
    ])
}

fn server_identity(spec: &AppSpec) -> Vec<Object> {
    let name = format!("{}-server", spec.app);
    let sa = ServiceAccount {
        metadata: meta(spec, name.clone(), BTreeMap::new()),
        // hoist-server never calls the API: no token in its pods.
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    let mut secrets: Vec<String> = spec.admin_token_secret.iter().cloned().collect();
    if let ModelSource::Registry {
        credentials_secret: Some(s),
        ..
    } = &spec.model_source
    {
        secrets.push(s.clone());
    }
    // The most the pod's identity may do: read its own two Secrets. The pod mounts no
    // token, so this is a ceiling for anyone who grants it one, not a need.
    let rules = (!secrets.is_empty()).then(|| {
        vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            resource_names: Some(secrets),
            verbs: vec!["get".into()],
            ..Default::default()
        }]
    });
    let role = Role {
        metadata: meta(spec, name.clone(), BTreeMap::new()),
        rules: Some(rules.unwrap_or_default()),
    };
    let binding = RoleBinding {
        metadata: meta(spec, name.clone(), BTreeMap::new()),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name,
            namespace: Some(spec.namespace.clone()),
            ..Default::default()
        }]),
    };
    vec![
        Object::ServiceAccount(sa),
        Object::Role(role),
        Object::RoleBinding(binding),
    ]
}

/// What the in-cluster controller may do in this environment's namespace: exactly
/// what [`super::Cluster`] calls, nothing more.
fn controller_access(spec: &AppSpec, c: &ControllerSpec) -> Vec<Object> {
    let rule = |group: &str, resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let role = Role {
        metadata: meta(spec, CONTROLLER.into(), BTreeMap::new()),
        rules: Some(vec![
            rule(
                "apps",
                &["deployments"],
                &["get", "list", "watch", "create", "patch"],
            ),
            rule("apps", &["deployments/scale"], &["get", "patch"]),
            rule("", &["services"], &["get", "create", "patch"]),
            rule("", &["pods"], &["get", "list", "watch"]),
            rule(
                "gateway.networking.k8s.io",
                &["httproutes"],
                &["get", "create", "patch"],
            ),
        ]),
    };
    let binding = RoleBinding {
        metadata: meta(spec, CONTROLLER.into(), BTreeMap::new()),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: CONTROLLER.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: CONTROLLER.into(),
            namespace: Some(c.namespace.clone()),
            ..Default::default()
        }]),
    };
    vec![Object::Role(role), Object::RoleBinding(binding)]
}

fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(UID),
        run_as_group: Some(UID),
        fs_group: Some(UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn resources(spec: &AppSpec) -> ResourceRequirements {
    let r = &spec.resources;
    let mut requests = BTreeMap::new();
    requests.insert("cpu".to_string(), Quantity(r.cpu_request.clone()));
    requests.insert("memory".to_string(), Quantity(r.memory_request.clone()));
    let mut limits = BTreeMap::new();
    if let Some(c) = &r.cpu_limit {
        limits.insert("cpu".to_string(), Quantity(c.clone()));
    }
    limits.insert("memory".to_string(), Quantity(r.memory_limit.clone()));
    ResourceRequirements {
        requests: Some(requests),
        limits: Some(limits),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

fn secret_env(var: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: var.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                // username+password or a token: whichever keys the Secret has.
                optional: Some(true),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn value_env(var: &str, value: &str) -> EnvVar {
    EnvVar {
        name: var.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// MLflow's credential variables from the registry Secret, the way `hoist model
/// fetch` and `hoist up` read them.
fn registry_env(secret: Option<&str>) -> Vec<EnvVar> {
    match secret {
        Some(s) => vec![
            secret_env("MLFLOW_TRACKING_USERNAME", s, "username"),
            secret_env("MLFLOW_TRACKING_PASSWORD", s, "password"),
            secret_env("MLFLOW_TRACKING_TOKEN", s, "token"),
        ],
        None => Vec::new(),
    }
}

fn admin_volume(secret: &str) -> Volume {
    Volume {
        name: "admin-token".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The hoist-server command line of one pod: the same flags `hoist up` gives the
/// processes it supervises.
pub fn server_args(spec: &AppSpec, pin: &ModelPin) -> Vec<String> {
    let model = match &spec.model_source {
        ModelSource::Registry { .. } => format!("{MODEL_DIR}/model"),
        ModelSource::Baked { path } => path.clone(),
    };
    let mut args: Vec<String> = [
        "--model",
        &model,
        "--name",
        &pin.name,
        "--model-version",
        &pin.version,
        "--host",
        "0.0.0.0",
        "--port",
        &SERVER_PORT.to_string(),
        "--runtime",
        &spec.runtime,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(spec.server_args.iter().cloned());
    args
}

/// One variant's Deployment running `pin`. `replicas: None` leaves the count to the
/// autoscaler.
pub fn deployment(spec: &AppSpec, v: Variant, pin: &ModelPin, replicas: Option<i32>) -> Deployment {
    let name = spec.name(v);
    let sel = selector(spec, v);
    let mut m = meta(spec, name, labels([(LABEL_VARIANT, v.as_str())]));
    m.annotations = Some(pin_annotations(pin));
    let mut pod_labels = common(spec);
    pod_labels.extend(sel.clone());

    let mut volumes = vec![empty_dir("tmp")];
    let mut server_mounts = vec![mount("tmp", "/tmp", false)];
    let mut init = Vec::new();
    if let ModelSource::Registry {
        url,
        credentials_secret,
    } = &spec.model_source
    {
        volumes.push(empty_dir("model"));
        server_mounts.push(mount("model", MODEL_DIR, true));
        init.push(Container {
            name: "fetch-model".into(),
            image: Some(spec.image.clone()),
            command: Some(vec!["hoist".into()]),
            args: Some(
                [
                    "model",
                    "fetch",
                    &format!("{}/{}", pin.name, pin.version),
                    "--to",
                    &format!("{MODEL_DIR}/model"),
                    "--digest",
                    &pin.digest,
                    "--registry",
                    url,
                    "--home",
                    "/tmp/hoist",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ),
            env: Some(registry_env(credentials_secret.as_deref())).filter(|e| !e.is_empty()),
            resources: Some(resources(spec)),
            security_context: Some(restricted()),
            volume_mounts: Some(vec![
                mount("model", MODEL_DIR, false),
                mount("tmp", "/tmp", false),
            ]),
            ..Default::default()
        });
    }
    let mut env = Vec::new();
    if let Some(s) = &spec.admin_token_secret {
        volumes.push(admin_volume(s));
        server_mounts.push(mount("admin-token", ADMIN_DIR, true));
        env.push(value_env(
            "HOIST_ADMIN_TOKEN_FILE",
            &format!("{ADMIN_DIR}/token"),
        ));
    }
    let server = Container {
        name: "hoist-server".into(),
        image: Some(spec.image.clone()),
        command: Some(vec!["hoist-server".into()]),
        args: Some(server_args(spec, pin)),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: SERVER_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        env: Some(env).filter(|e| !e.is_empty()),
        resources: Some(resources(spec)),
        // Ready means the model is loaded and answered its input example.
        startup_probe: Some(http_probe(
            "/v2/health/ready",
            2,
            (spec.startup_seconds / 2).max(1),
        )),
        readiness_probe: Some(http_probe("/v2/health/ready", 5, 2)),
        liveness_probe: Some(http_probe("/v2/health/live", 10, 3)),
        // Endpoints drop the pod while it still serves; then SIGTERM drains it.
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: spec.drain_seconds,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        security_context: Some(restricted()),
        volume_mounts: Some(server_mounts),
        ..Default::default()
    };
    let spread = |key: &str| TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(LabelSelector {
            match_labels: Some(sel.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    Deployment {
        metadata: m,
        spec: Some(DeploymentSpec {
            replicas,
            revision_history_limit: Some(3),
            progress_deadline_seconds: Some(600),
            selector: LabelSelector {
                match_labels: Some(sel.clone()),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pin_annotations(pin)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(format!("{}-server", spec.app)),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security()),
                    termination_grace_period_seconds: Some(spec.drain_seconds + 30),
                    topology_spread_constraints: Some(vec![
                        spread("topology.kubernetes.io/zone"),
                        spread("kubernetes.io/hostname"),
                    ]),
                    affinity: Some(Affinity {
                        pod_anti_affinity: Some(PodAntiAffinity {
                            preferred_during_scheduling_ignored_during_execution: Some(vec![
                                WeightedPodAffinityTerm {
                                    weight: 100,
                                    pod_affinity_term: PodAffinityTerm {
                                        topology_key: "kubernetes.io/hostname".into(),
                                        label_selector: Some(LabelSelector {
                                            match_labels: Some(sel),
                                            ..Default::default()
                                        }),
                                        ..Default::default()
                                    },
                                },
                            ]),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    init_containers: Some(init).filter(|i| !i.is_empty()),
                    containers: vec![server],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Service of one variant, or with `None` the app's Service selecting both
/// (the replica-ratio split, and the way in without a Gateway).
pub fn service(spec: &AppSpec, v: Option<Variant>) -> Service {
    let (name, sel, extra) = match v {
        Some(v) => (
            spec.name(v),
            selector(spec, v),
            // Only the variant Services are scraped: the app's would count each pod twice.
            labels([(LABEL_VARIANT, v.as_str()), ("hoist.dev/monitor", "true")]),
        ),
        None => (
            spec.app.clone(),
            labels([(LABEL_APP, spec.app.as_str())]),
            BTreeMap::new(),
        ),
    };
    Service {
        metadata: meta(spec, name, extra),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(sel),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn hpa(spec: &AppSpec, a: &super::spec::Autoscale) -> HorizontalPodAutoscaler {
    HorizontalPodAutoscaler {
        metadata: meta(spec, spec.name(Variant::Stable), BTreeMap::new()),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: spec.name(Variant::Stable),
            },
            min_replicas: Some(a.min),
            max_replicas: a.max,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(a.cpu_percent),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pdb(spec: &AppSpec) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(spec, spec.app.clone(), BTreeMap::new()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(labels([(LABEL_APP, spec.app.as_str())])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn from_namespace(ns: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(labels([("kubernetes.io/metadata.name", ns)])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Only the gateway or ingress namespaces, Prometheus, and the controller (which
/// smoke-tests and warms up candidates) may reach the model servers.
fn network_policy(spec: &AppSpec) -> NetworkPolicy {
    let mut from: Vec<String> = spec.ingress_namespaces.clone();
    if let Some(g) = &spec.gateway {
        from.push(
            g.namespace
                .clone()
                .unwrap_or_else(|| spec.namespace.clone()),
        );
    }
    from.push(spec.prometheus_namespace.clone());
    if let Some(c) = &spec.controller {
        from.push(c.namespace.clone());
    }
    from.sort();
    from.dedup();
    NetworkPolicy {
        metadata: meta(spec, spec.app.clone(), BTreeMap::new()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(labels([(LABEL_APP, spec.app.as_str())])),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(from.iter().map(|ns| from_namespace(ns)).collect()),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(SERVER_PORT)),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
            }]),
            ..Default::default()
        }),
    }
}

fn service_monitor(spec: &AppSpec) -> ServiceMonitor {
    ServiceMonitor::new(
        meta(spec, spec.app.clone(), BTreeMap::new()),
        ServiceMonitorSpec {
            selector: LabelSelector {
                match_labels: Some(labels([
                    (LABEL_APP, spec.app.as_str()),
                    ("hoist.dev/monitor", "true"),
                ])),
                ..Default::default()
            },
            namespace_selector: Some(NamespaceSelector {
                match_names: vec![spec.namespace.clone()],
            }),
            endpoints: vec![Endpoint {
                port: "http".into(),
                path: "/metrics".into(),
                interval: "15s".into(),
            }],
            pod_target_labels: vec![LABEL_VARIANT.into(), LABEL_ENV.into()],
        },
    )
}

/// The HTTPRoute with `candidate_weight` percent to the candidate Service. A request
/// with the force header (`x-hoist-variant: stable|candidate`) goes to that variant
/// whatever the weights.
pub fn http_route(spec: &AppSpec, candidate_weight: u32) -> HttpRoute {
    let w = candidate_weight.min(100) as i32;
    let backend = |v: Variant, weight: i32| HttpBackendRef {
        name: spec.name(v),
        port: Some(80),
        weight: Some(weight),
    };
    let mut rules = Vec::new();
    if let Some(h) = &spec.force_header {
        for v in [Variant::Candidate, Variant::Stable] {
            rules.push(HttpRouteRule {
                matches: vec![HttpRouteMatch {
                    path: None,
                    headers: vec![HttpHeaderMatch {
                        kind: "Exact".into(),
                        name: h.clone(),
                        value: v.as_str().into(),
                    }],
                }],
                backend_refs: vec![backend(v, 1)],
            });
        }
    }
    rules.push(HttpRouteRule {
        matches: vec![HttpRouteMatch {
            path: Some(HttpPathMatch {
                kind: "PathPrefix".into(),
                value: "/".into(),
            }),
            headers: Vec::new(),
        }],
        backend_refs: vec![
            backend(Variant::Stable, 100 - w),
            backend(Variant::Candidate, w),
        ],
    });
    let parent_refs = spec
        .gateway
        .iter()
        .map(|g| ParentReference {
            name: g.name.clone(),
            namespace: g.namespace.clone(),
            section_name: g.section_name.clone(),
        })
        .collect();
    HttpRoute::new(
        meta(spec, spec.app.clone(), BTreeMap::new()),
        HttpRouteSpec {
            parent_refs,
            hostnames: spec.hostnames.clone(),
            rules,
        },
    )
}

/// The candidate's share of an HTTPRoute's weighted rule, in percent (`None` when
/// the route has no such rule).
pub fn route_weight(route: &HttpRoute, spec: &AppSpec) -> Option<u32> {
    let rule = route
        .spec
        .rules
        .iter()
        .find(|r| r.backend_refs.len() == 2)?;
    let weight = |v: Variant| {
        rule.backend_refs
            .iter()
            .find(|b| b.name == spec.name(v))
            .map(|b| b.weight.unwrap_or(1).max(0) as u64)
    };
    let (s, c) = (weight(Variant::Stable)?, weight(Variant::Candidate)?);
    if s + c == 0 {
        return None;
    }
    Some(((c * 100 + (s + c) / 2) / (s + c)) as u32)
}

/// The in-cluster controller: `hoist up` as a Deployment in its own namespace, with
/// its ServiceAccount, the Lease its replicas compete for, its hoist.toml in a
/// ConfigMap, and a Service for the CLI (`kubectl port-forward`). Each environment's
/// [`render`] adds the Role it needs there.
pub fn render_controller(c: &ControllerSpec, app: &AppSpec) -> Result<Manifests> {
    app.validate()?;
    let ns = c.namespace.clone();
    let lbl = labels([
        (LABEL_APP, CONTROLLER),
        ("app.kubernetes.io/part-of", "hoist"),
        ("app.kubernetes.io/managed-by", "hoist"),
    ]);
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.clone()),
        labels: Some(lbl.clone()),
        ..Default::default()
    };
    let sa = ServiceAccount {
        metadata: meta(CONTROLLER),
        ..Default::default()
    };
    // Leader election: create the Lease, then read and renew only this one.
    let role = Role {
        metadata: meta(CONTROLLER),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec!["coordination.k8s.io".into()]),
                resources: Some(vec!["leases".into()]),
                verbs: vec!["create".into()],
                ..Default::default()
            },
            PolicyRule {
                api_groups: Some(vec!["coordination.k8s.io".into()]),
                resources: Some(vec!["leases".into()]),
                resource_names: Some(vec![CONTROLLER.into()]),
                verbs: vec!["get".into(), "update".into(), "patch".into()],
                ..Default::default()
            },
        ]),
    };
    let binding = RoleBinding {
        metadata: meta(CONTROLLER),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: CONTROLLER.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: CONTROLLER.into(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };
    let lease = Lease {
        metadata: meta(CONTROLLER),
        spec: Some(LeaseSpec {
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let config = ConfigMap {
        metadata: meta(&format!("{CONTROLLER}-config")),
        data: Some(labels([("hoist.toml", c.config_toml.as_str())])),
        ..Default::default()
    };
    let mut env = vec![
        EnvVar {
            name: "HOIST_POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        value_env("HOIST_LEASE", &format!("{ns}/{CONTROLLER}")),
    ];
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: format!("{CONTROLLER}-config"),
                ..Default::default()
            }),
            ..Default::default()
        },
        empty_dir("tmp"),
        match &c.journal_claim {
            Some(claim) => Volume {
                name: "home".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None => empty_dir("home"),
        },
    ];
    let mut mounts = vec![
        mount("config", "/etc/hoist", true),
        mount("tmp", "/tmp", false),
        mount("home", "/var/lib/hoist", false),
    ];
    if let ModelSource::Registry {
        credentials_secret, ..
    } = &app.model_source
    {
        env.extend(registry_env(credentials_secret.as_deref()));
    }
    if let Some(s) = &app.admin_token_secret {
        volumes.push(admin_volume(s));
        mounts.push(mount("admin-token", ADMIN_DIR, true));
        env.push(value_env(
            "HOIST_ADMIN_TOKEN_FILE",
            &format!("{ADMIN_DIR}/token"),
        ));
    }
    let container = Container {
        name: "hoist".into(),
        image: Some(c.image.clone()),
        command: Some(vec!["hoist".into()]),
        args: Some(
            [
                "up",
                "--config",
                "/etc/hoist/hoist.toml",
                "--home",
                "/var/lib/hoist",
                "--listen",
                "0.0.0.0:7070",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ),
        ports: Some(vec![ContainerPort {
            name: Some("api".into()),
            container_port: 7070,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        env: Some(env),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::String("api".into()),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(
                [("cpu", "100m"), ("memory", "128Mi")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.into())))
                    .collect(),
            ),
            limits: Some(
                [("memory", "512Mi")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.into())))
                    .collect(),
            ),
            ..Default::default()
        }),
        security_context: Some(restricted()),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let deployment = Deployment {
        metadata: meta(CONTROLLER),
        spec: Some(DeploymentSpec {
            replicas: Some(c.replicas),
            selector: LabelSelector {
                match_labels: Some(labels([(LABEL_APP, CONTROLLER)])),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(lbl.clone()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(CONTROLLER.into()),
                    security_context: Some(pod_security()),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let service = Service {
        metadata: meta(CONTROLLER),
        spec: Some(ServiceSpec {
            selector: Some(labels([(LABEL_APP, CONTROLLER)])),
            ports: Some(vec![ServicePort {
                name: Some("api".into()),
                port: 7070,
                target_port: Some(IntOrString::String("api".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut objects = Vec::new();
    if ns != app.namespace {
        objects.push(Object::Namespace(namespace(&ns)));
    }
    objects.extend([
        Object::ServiceAccount(sa),
        Object::Role(role),
        Object::RoleBinding(binding),
        Object::ConfigMap(config),
        Object::Lease(lease),
        Object::Deployment(Box::new(deployment)),
        Object::Service(service),
    ]);
    Ok(Manifests { objects })
}
