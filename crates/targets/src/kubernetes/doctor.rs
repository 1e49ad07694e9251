//! The cluster half of `hoist doctor`: what a release will need from the API server,
//! checked before the first one, each check ok or failed with the fix.
//!
//! # Guarantees
//! - Read-only: every call is a `get`, a discovery read, or a
//!   `SelfSubjectAccessReview` (which asks, and changes nothing).
//! - The permissions checked are the rendered Roles' rules (the same rules
//!   [`super::render`] and [`super::render_controller`] write), asked as the identity
//!   of the kubeconfig in use: run it as the controller's ServiceAccount to prove the
//!   Role suffices, as yourself to prove you could.

use std::collections::BTreeSet;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::Client;
use kube::api::{Api, PostParams};
use serde::Serialize;

use super::render::{self, CONTROLLER, Object};
use super::spec::{AppSpec, ModelSource};

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked, e.g. `namespace hoist-production`.
    pub name: String,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// How to make a failed check pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every cluster check for these environments (and the controller's namespace, when
/// the in-cluster controller is enabled), through `client`. Stops after the first
/// check when the API server cannot be reached.
pub async fn checks(client: &Client, specs: &[AppSpec]) -> Vec<Check> {
    let mut out = Vec::new();
    match client.apiserver_version().await {
        Ok(v) => out.push(Check::pass(
            "api server",
            format!("reachable, Kubernetes {}", v.git_version),
        )),
        Err(e) => {
            out.push(Check::fail(
                "api server",
                format!("unreachable: {e}"),
                "check KUBECONFIG (or ~/.kube/config): its server address, certificate and credentials",
            ));
            return out;
        }
    }
    crds(client, specs, &mut out).await;
    let mut namespaces = BTreeSet::new();
    for s in specs {
        namespaces.insert(s.namespace.clone());
        if let Some(c) = &s.controller {
            namespaces.insert(c.namespace.clone());
        }
    }
    for ns in &namespaces {
        out.push(namespace(client, ns).await);
    }
    for s in specs {
        secrets(client, s, &mut out).await;
    }
    for s in specs {
        access(client, s, &mut out).await;
    }
    out
}

/// The CRDs the rendered objects need (HTTPRoute, ServiceMonitor), from discovery.
async fn crds(client: &Client, specs: &[AppSpec], out: &mut Vec<Check>) {
    let mut needed = BTreeSet::new();
    for s in specs {
        let Ok(m) = render::render(s) else { continue };
        for o in &m.objects {
            match o {
                Object::HttpRoute(_) => {
                    needed.insert(("gateway.networking.k8s.io/v1", "httproutes", "the Gateway API standard CRDs (standard-install.yaml of a Gateway API release)"));
                }
                Object::ServiceMonitor(_) => {
                    needed.insert(("monitoring.coreos.com/v1", "servicemonitors", "the Prometheus Operator's CRDs (e.g. kube-prometheus-stack), or drop the ServiceMonitor from the rendered kustomization.yaml"));
                }
                _ => {}
            }
        }
    }
    for (api_version, plural, install) in needed {
        let name = format!(
            "crd {plural}.{}",
            api_version.split('/').next().unwrap_or("")
        );
        match client.list_api_group_resources(api_version).await {
            Ok(list) if list.resources.iter().any(|r| r.name == plural) => {
                out.push(Check::pass(name, format!("{api_version} served")))
            }
            Ok(_) | Err(kube::Error::Api(_)) => out.push(Check::fail(
                name,
                format!("{api_version} {plural} is not served by this cluster"),
                format!("install {install}"),
            )),
            Err(e) => out.push(Check::fail(
                name,
                format!("discovery of {api_version} failed: {e}"),
                "check the API server's health",
            )),
        }
    }
}

async fn namespace(client: &Client, ns: &str) -> Check {
    let name = format!("namespace {ns}");
    let fix = format!(
        "kubectl create namespace {ns} (or kubectl apply the output of `hoist render k8s`)"
    );
    match Api::<Namespace>::all(client.clone()).get_opt(ns).await {
        Ok(Some(_)) => Check::pass(name, "exists"),
        Ok(None) => Check::fail(name, "does not exist", fix),
        // Not allowed to read namespaces (a ServiceAccount): a namespace is where this
        // identity was granted anything; the access checks below say which.
        Err(kube::Error::Api(e)) if e.code == 403 => Check::pass(
            name,
            "not readable by this identity (cluster-scoped); the access checks below need it",
        ),
        Err(e) => Check::fail(name, format!("cannot read: {e}"), fix),
    }
}

/// One Secret a check wants: its namespace and name, the keys it must have, the keys
/// of which it needs at least one, and what it is for.
type Wanted<'a> = (&'a str, String, Vec<&'a str>, Vec<&'a str>, String);

/// Each Secret the rendered pods mount, with the keys they read.
async fn secrets(client: &Client, s: &AppSpec, out: &mut Vec<Check>) {
    // (namespace, secret, keys it must have, keys of which at least one, what it is for)
    let mut wanted: Vec<Wanted> = Vec::new();
    if let ModelSource::Registry {
        credentials_secret: Some(secret),
        ..
    } = &s.model_source
    {
        wanted.push((
            &s.namespace,
            secret.clone(),
            vec![],
            vec!["username", "password", "token"],
            "kubernetes.registry_secret (MLflow credentials)".into(),
        ));
    }
    if let Some(secret) = &s.admin_token_secret {
        wanted.push((
            &s.namespace,
            secret.clone(),
            vec!["token"],
            vec![],
            "kubernetes.admin_token_secret".into(),
        ));
    }
    if let Some(secret) = s
        .hoist_gateway
        .as_ref()
        .and_then(|g| g.feedback_token_secret.as_ref())
    {
        wanted.push((
            &s.namespace,
            secret.clone(),
            vec!["token"],
            vec![],
            "kubernetes.feedback_token_secret (hoist's gateway's feedback token)".into(),
        ));
    }
    if let Some(secret) = &s.pull_secret {
        wanted.push((
            &s.namespace,
            secret.clone(),
            vec![".dockerconfigjson"],
            vec![],
            "kubernetes.pull_secret (an image pull secret)".into(),
        ));
    }
    // The controller's own Secrets, in its namespace: each key of `secret_env`.
    if let Some(c) = &s.controller {
        for (var, secret, key) in &c.secret_env {
            wanted.push((
                &c.namespace,
                secret.clone(),
                vec![key.as_str()],
                vec![],
                format!("kubernetes.controller.secret_env.{var}"),
            ));
        }
    }
    for (namespace, secret, all, any, what) in wanted {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let name = format!("secret {namespace}/{secret}");
        let keys = match api.get_opt(&secret).await {
            Ok(Some(x)) => {
                let mut k: BTreeSet<String> = x.data.unwrap_or_default().into_keys().collect();
                k.extend(x.string_data.unwrap_or_default().into_keys());
                k
            }
            Ok(None) => {
                let example = all
                    .iter()
                    .chain(any.iter().take(1))
                    .map(|k| format!("--from-literal={k}=..."))
                    .collect::<Vec<_>>()
                    .join(" ");
                out.push(Check::fail(
                    name,
                    format!("does not exist ({what})"),
                    format!(
                        "kubectl -n {} create secret generic {secret} {example}",
                        namespace
                    ),
                ));
                continue;
            }
            Err(e) => {
                out.push(Check::fail(
                    name,
                    format!("cannot read: {e}"),
                    "run hoist doctor as a user who may get Secrets there (the controller's ServiceAccount may not, by design: the pods mount them)",
                ));
                continue;
            }
        };
        let missing: Vec<&str> = all.iter().copied().filter(|k| !keys.contains(*k)).collect();
        let none_of = !any.is_empty() && !any.iter().any(|k| keys.contains(*k));
        if missing.is_empty() && !none_of {
            out.push(Check::pass(
                name,
                format!("keys {}", keys.into_iter().collect::<Vec<_>>().join(", ")),
            ));
        } else {
            let need = if none_of {
                format!("one of {}", any.join(", "))
            } else {
                missing.join(", ")
            };
            out.push(Check::fail(
                name,
                format!("has no key {need} ({what})"),
                format!("add {need} to Secret {}/{secret}", namespace),
            ));
        }
    }
}

/// The rendered controller Roles' rules: this environment's, and the controller
/// namespace's (Leases) when the in-cluster controller is enabled.
pub fn controller_rules(s: &AppSpec) -> Vec<(String, PolicyRule)> {
    let mut with = s.clone();
    if with.controller.is_none() {
        // The daemon outside the cluster makes the same calls in the namespace.
        with.controller = Some(super::spec::ControllerSpec {
            namespace: "hoist-system".into(),
            image: s.image.clone(),
            replicas: 1,
            config_toml: String::new(),
            journal_claim: None,
            secret_env: Vec::new(),
            webhook_port: None,
        });
    }
    let mut out = Vec::new();
    let mut take = |objects: Vec<Object>| {
        for o in objects {
            if let Object::Role(r) = o
                && r.metadata.name.as_deref() == Some(CONTROLLER)
            {
                let ns = r.metadata.namespace.clone().unwrap_or_default();
                for rule in r.rules.unwrap_or_default() {
                    out.push((ns.clone(), rule));
                }
            }
        }
    };
    if let Ok(m) = render::render(&with) {
        take(m.objects);
    }
    if let Some(Ok(m)) = s
        .controller
        .as_ref()
        .map(|c| render::render_controller(c, s))
    {
        take(m.objects);
    }
    out
}

/// A SelfSubjectAccessReview for every verb of every rule.
async fn access(client: &Client, s: &AppSpec, out: &mut Vec<Check>) {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    for (ns, rule) in controller_rules(s) {
        let group = rule
            .api_groups
            .as_ref()
            .and_then(|g| g.first())
            .cloned()
            .unwrap_or_default();
        for resource in rule.resources.iter().flatten() {
            let (res, sub) = match resource.split_once('/') {
                Some((r, sub)) => (r.to_string(), Some(sub.to_string())),
                None => (resource.clone(), None),
            };
            for verb in &rule.verbs {
                let names: Vec<Option<String>> = match &rule.resource_names {
                    Some(n) if !n.is_empty() => n.iter().cloned().map(Some).collect(),
                    _ => vec![None],
                };
                for rname in names {
                    let what = format!(
                        "{verb} {}{resource}{}",
                        if group.is_empty() {
                            String::new()
                        } else {
                            format!("{group}/")
                        },
                        rname
                            .as_deref()
                            .map(|n| format!("/{n}"))
                            .unwrap_or_default()
                    );
                    let name = format!("access {ns}: {what}");
                    let review = SelfSubjectAccessReview {
                        spec: SelfSubjectAccessReviewSpec {
                            resource_attributes: Some(ResourceAttributes {
                                namespace: Some(ns.clone()),
                                verb: Some(verb.clone()),
                                group: Some(group.clone()),
                                resource: Some(res.clone()),
                                subresource: sub.clone(),
                                name: rname.clone(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    match api.create(&PostParams::default(), &review).await {
                        Ok(r) if r.status.as_ref().is_some_and(|st| st.allowed) => {
                            out.push(Check::pass(name, "allowed"))
                        }
                        Ok(r) => out.push(Check::fail(
                            name,
                            format!(
                                "denied{}",
                                r.status
                                    .and_then(|st| st.reason)
                                    .filter(|x| !x.is_empty())
                                    .map(|x| format!(": {x}"))
                                    .unwrap_or_default()
                            ),
                            format!(
                                "kubectl apply the Role and RoleBinding `{CONTROLLER}` that `hoist render k8s` writes for namespace {ns}"
                            ),
                        )),
                        Err(e) => out.push(Check::fail(
                            name,
                            format!("cannot ask: {e}"),
                            "check the API server's health",
                        )),
                    }
                }
            }
        }
    }
}

pub use kube::Client as KubeClient;

/// A client from the usual places (KUBECONFIG, ~/.kube/config, or the pod's
/// ServiceAccount in a cluster).
pub async fn connect() -> Result<Client, String> {
    Client::try_default().await.map_err(|e| e.to_string())
}
