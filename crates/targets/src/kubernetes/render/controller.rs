//! The in-cluster controller's manifests.

use super::*;

/// The in-cluster controller: `hoist up` as a Deployment in its own namespace, with
/// its ServiceAccount, the Lease its replicas compete for, its hoist.toml in a
/// ConfigMap, and a Service for the CLI (`kubectl port-forward`). Each environment's
/// [`render`] adds the Role it needs there.
/// Where the controller reads MLflow credentials (`registry_secret`) from.
const MLFLOW_CREDENTIALS_DIR: &str = "/var/run/secrets/hoist/mlflow";
/// Where `kubernetes.controller.secret_env`'s Secrets are mounted, one directory each.
const SECRET_ENV_DIR: &str = "/var/run/secrets/hoist/env";

/// A Secret as a read-only volume: every key (an absent Secret then mounts as an empty
/// directory, as MLflow credentials are optional), or only `keys`, each at its own
/// name (the Secret and keys must exist). Mounted whole (never by subPath), so the
/// kubelet's rotation reaches the files.
fn secret_volume(name: &str, secret: &str, keys: Option<&[&str]>) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(0o440),
            optional: keys.is_none().then_some(true),
            items: keys.map(|ks| {
                ks.iter()
                    .map(|k| KeyToPath {
                        key: (*k).into(),
                        path: (*k).into(),
                        mode: None,
                    })
                    .collect()
            }),
        }),
        ..Default::default()
    }
}

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
                verbs: vec!["get".into(), "update".into()],
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
    // Secrets reach the controller as files (`VAR_FILE`), never as values in its
    // environment: hoist reads such a file again when the kubelet rotates the Secret,
    // so credentials change without a restart.
    if let ModelSource::Registry {
        credentials_secret: Some(secret),
        ..
    } = &app.model_source
    {
        volumes.push(secret_volume("mlflow-credentials", secret, None));
        mounts.push(mount("mlflow-credentials", MLFLOW_CREDENTIALS_DIR, true));
        // username and password, or a token: whichever keys the Secret has (a file
        // that does not exist counts as unset).
        for (var, key) in [
            ("MLFLOW_TRACKING_USERNAME_FILE", "username"),
            ("MLFLOW_TRACKING_PASSWORD_FILE", "password"),
            ("MLFLOW_TRACKING_TOKEN_FILE", "token"),
        ] {
            env.push(value_env(var, &format!("{MLFLOW_CREDENTIALS_DIR}/{key}")));
        }
    }
    // `kubernetes.controller.secret_env`: one volume per Secret, holding only the
    // keys named.
    let mut by_secret: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (var, secret, key) in &c.secret_env {
        by_secret
            .entry(secret.as_str())
            .or_default()
            .push((var.as_str(), key.as_str()));
    }
    for (i, (secret, vars)) in by_secret.iter().enumerate() {
        let name = format!("secret-env-{i}");
        let dir = format!("{SECRET_ENV_DIR}/{secret}");
        let mut keys: Vec<&str> = vars.iter().map(|(_, k)| *k).collect();
        keys.sort_unstable();
        keys.dedup();
        volumes.push(secret_volume(&name, secret, Some(&keys)));
        mounts.push(mount(&name, &dir, true));
        for (var, key) in vars {
            env.push(value_env(&format!("{var}_FILE"), &format!("{dir}/{key}")));
        }
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
        ports: Some(
            std::iter::once(("api", 7070))
                .chain(c.webhook_port.map(|p| ("webhook", i32::from(p))))
                .map(|(name, port)| ContainerPort {
                    name: Some(name.into()),
                    container_port: port,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        ),
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
        resources: Some(fixed_resources(
            &[("cpu", "100m"), ("memory", "128Mi")],
            &[("memory", "512Mi")],
        )),
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
                    image_pull_secrets: pull_secrets(app),
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
            // The webhook port, when configured, is where MLflow's webhooks reach
            // the controller (`http://hoist-controller.<namespace>.svc:<port>/`).
            ports: Some(
                std::iter::once(("api", 7070))
                    .chain(c.webhook_port.map(|p| ("webhook", i32::from(p))))
                    .map(|(name, port)| ServicePort {
                        name: Some(name.into()),
                        port,
                        target_port: Some(IntOrString::String(name.into())),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
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
