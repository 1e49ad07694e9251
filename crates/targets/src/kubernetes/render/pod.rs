//! The pieces of a pod: its identity and access (ServiceAccounts, Roles), security
//! contexts, resources, probes, volumes and environment.

use super::*;

pub(super) fn server_identity(spec: &AppSpec) -> Vec<Object> {
    let name = format!("{}-server", spec.app);
    let sa = ServiceAccount {
        metadata: meta(spec, name.clone(), BTreeMap::new()),
        // hoist-server never calls the API: no token in its pods.
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    let mut secrets: Vec<String> = spec.admin_token_secret.iter().cloned().collect();
    // hoist's gateway runs as this identity too.
    if let Some(s) = spec
        .hoist_gateway
        .as_ref()
        .and_then(|g| g.feedback_token_secret.as_ref())
    {
        secrets.push(s.clone());
    }
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
/// what [`super::super::Cluster`] calls, nothing more (server-side applies are
/// `patch`, and `create` when they create; `crates/cli/tests/cluster.rs` checks each
/// permission against the API server's audit log of a whole canary).
pub(super) fn controller_access(spec: &AppSpec, c: &ControllerSpec) -> Vec<Object> {
    let rule = |group: &str, resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let role = Role {
        metadata: meta(spec, CONTROLLER.into(), BTreeMap::new()),
        rules: Some(vec![
            rule("apps", &["deployments"], &["get", "create", "patch"]),
            rule("apps", &["deployments/scale"], &["patch"]),
            rule("", &["services"], &["create", "patch"]),
            rule("", &["pods"], &["list"]),
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

pub(super) fn restricted() -> SecurityContext {
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

pub(super) fn pod_security() -> PodSecurityContext {
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

/// Fixed requests and limits of hoist's own small containers (controller, gateway).
pub(super) fn fixed_resources(
    requests: &[(&str, &str)],
    limits: &[(&str, &str)],
) -> ResourceRequirements {
    let map = |q: &[(&str, &str)]| {
        q.iter()
            .map(|(k, v)| (k.to_string(), Quantity((*v).into())))
            .collect()
    };
    ResourceRequirements {
        requests: Some(map(requests)),
        limits: Some(map(limits)),
        ..Default::default()
    }
}

/// The preStop sleep: Endpoints drop the pod while it still serves, then SIGTERM
/// drains it.
pub(super) fn drain_lifecycle(seconds: i64) -> Lifecycle {
    Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(SleepAction { seconds }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn resources(spec: &AppSpec) -> ResourceRequirements {
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

pub(super) fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
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

pub(super) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

pub(super) fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

pub(super) fn secret_env(var: &str, secret: &str, key: &str) -> EnvVar {
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

pub(super) fn value_env(var: &str, value: &str) -> EnvVar {
    EnvVar {
        name: var.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// MLflow's credential variables from the registry Secret, the way `hoist model
/// fetch` and `hoist up` read them.
pub(super) fn registry_env(secret: Option<&str>) -> Vec<EnvVar> {
    match secret {
        Some(s) => vec![
            secret_env("MLFLOW_TRACKING_USERNAME", s, "username"),
            secret_env("MLFLOW_TRACKING_PASSWORD", s, "password"),
            secret_env("MLFLOW_TRACKING_TOKEN", s, "token"),
        ],
        None => Vec::new(),
    }
}

pub(super) fn admin_volume(secret: &str) -> Volume {
    secret_volume("admin-token", secret)
}

/// A Secret as a read-only directory of files (owner and group may read).
pub(super) fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where the pull secret is mounted for `hoist model pull` (`REGISTRY_AUTH_FILE`).
pub(super) const REGISTRY_AUTH_DIR: &str = "/var/run/secrets/hoist/registry";

/// The pod's `imagePullSecrets`: the pull secret, if any.
pub(super) fn pull_secrets(spec: &AppSpec) -> Option<Vec<LocalObjectReference>> {
    spec.pull_secret
        .as_ref()
        .map(|s| vec![LocalObjectReference { name: s.clone() }])
}

/// The pull secret (a `kubernetes.io/dockerconfigjson`) as a read-only volume.
pub(super) fn pull_secret_volume(secret: &str) -> Volume {
    Volume {
        name: "registry-auth".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(0o440),
            items: Some(vec![KeyToPath {
                key: ".dockerconfigjson".into(),
                path: ".dockerconfigjson".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
