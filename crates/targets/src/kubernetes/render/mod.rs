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
    EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, Lifecycle,
    LifecycleHandler, LocalObjectReference, Namespace, ObjectFieldSelector,
    PersistentVolumeClaimVolumeSource, PodAffinityTerm, PodAntiAffinity, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec,
    SleepAction, TopologySpreadConstraint, Volume, VolumeMount, WeightedPodAffinityTerm,
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

mod controller;
pub mod gateway;
mod meta;
mod pod;
mod route;
mod workload;
pub use controller::render_controller;
use meta::{common, labels, meta, namespace};
pub use meta::{pin_annotations, selector, selector_string};
use pod::{
    REGISTRY_AUTH_DIR, admin_volume, controller_access, drain_lifecycle, empty_dir,
    fixed_resources, http_probe, mount, pod_security, pull_secret_volume, pull_secrets,
    registry_env, resources, restricted, secret_volume, server_identity, value_env,
};
pub use route::{http_route, route_weight};
pub use workload::{deployment, server_args, service};
use workload::{hpa, network_policy, pdb, service_monitor};

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
/// Annotation: the model artifact by digest (with `model_source = "oci"`).
pub const ANN_ARTIFACT: &str = "hoist.dev/artifact";
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
/// Where hoist's gateway finds the feedback token Secret (the same way).
const FEEDBACK_DIR: &str = "/var/run/secrets/hoist/feedback";
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
/// network policy, ServiceMonitor, the HTTPRoute when a Gateway is configured (or
/// hoist's gateway's Deployment, Service and admin policy with `split = "hoist"`), and
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
    if let Some(g) = &spec.hoist_gateway {
        objects.push(Object::Deployment(Box::new(gateway::gateway_deployment(
            spec, g,
        ))));
    }
    objects.push(Object::Service(service(spec, Some(Variant::Stable))));
    objects.push(Object::Service(service(spec, Some(Variant::Candidate))));
    objects.push(Object::Service(service(spec, None)));
    if spec.hoist_gateway.is_some() {
        objects.push(Object::Service(gateway::gateway_service(spec)));
    }
    if let Some(a) = &spec.autoscale {
        objects.push(Object::HorizontalPodAutoscaler(hpa(spec, a)));
    }
    objects.push(Object::PodDisruptionBudget(pdb(spec)));
    objects.push(Object::NetworkPolicy(network_policy(spec)));
    if spec.hoist_gateway.is_some() {
        objects.push(Object::NetworkPolicy(gateway::gateway_admin_policy(spec)));
    }
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
