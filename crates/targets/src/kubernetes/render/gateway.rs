//! hoist's own gateway on the cluster (`split = "hoist"`): its Deployment, its
//! Service (traffic and admin ports) and the NetworkPolicy that lets only the
//! controller reach the admin port.
//!
//! The gateway forwards to the variants' Services (`{app}-stable`, `{app}-candidate`)
//! by their cluster DNS names; the app Service selects the gateway's pods instead of
//! the model servers'. It starts with all traffic on stable; the controller sets
//! weights, shadow mirroring and feedback through the admin API.

use super::*;
use crate::kubernetes::spec::{GATEWAY_ADMIN_PORT, HoistGateway};

/// `hoist.dev/variant` of the gateway's pods and Service.
pub const GATEWAY_VARIANT: &str = "gateway";

/// The gateway pods' selector.
pub fn gateway_selector(spec: &AppSpec) -> BTreeMap<String, String> {
    labels([
        (LABEL_APP, spec.app.as_str()),
        (LABEL_VARIANT, GATEWAY_VARIANT),
    ])
}

/// `hoist gateway`'s command line in the pod.
pub fn gateway_args(spec: &AppSpec, g: &HoistGateway) -> Vec<String> {
    let upstream = |v: Variant| format!("http://{}.{}.svc:80", spec.name(v), spec.namespace);
    let mut args: Vec<String> = [
        "gateway",
        "--listen",
        &format!("0.0.0.0:{SERVER_PORT}"),
        "--admin-listen",
        &format!("0.0.0.0:{GATEWAY_ADMIN_PORT}"),
        "--name",
        &spec.env,
        "--stable",
        &upstream(Variant::Stable),
        "--candidate",
        &upstream(Variant::Candidate),
        "--admin-token-file",
        &format!("{ADMIN_DIR}/token"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(h) = &spec.force_header {
        args.extend(["--force-header".to_string(), h.clone()]);
    }
    if g.feedback_token_secret.is_some() {
        args.extend([
            "--feedback-token-file".to_string(),
            format!("{FEEDBACK_DIR}/token"),
        ]);
    }
    args.extend(g.args.iter().cloned());
    args
}

/// The gateway's Deployment: one replica (the controller drives one admin API),
/// the admin token (and the feedback token, if any) mounted as directories so a
/// rotated Secret reaches them.
pub fn gateway_deployment(spec: &AppSpec, g: &HoistGateway) -> Deployment {
    let sel = gateway_selector(spec);
    let mut pod_labels = common(spec);
    pod_labels.extend(sel.clone());
    let mut volumes = vec![empty_dir("tmp")];
    let mut mounts = vec![mount("tmp", "/tmp", false)];
    if let Some(s) = &spec.admin_token_secret {
        volumes.push(admin_volume(s));
        mounts.push(mount("admin-token", ADMIN_DIR, true));
    }
    if let Some(s) = &g.feedback_token_secret {
        volumes.push(secret_volume("feedback-token", s));
        mounts.push(mount("feedback-token", FEEDBACK_DIR, true));
    }
    let port = |name: &str, p: i32| ContainerPort {
        name: Some(name.into()),
        container_port: p,
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let probe = Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::String("admin".into()),
            ..Default::default()
        }),
        period_seconds: Some(5),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Default::default()
    };
    let container = Container {
        name: "hoist-gateway".into(),
        image: Some(spec.image.clone()),
        command: Some(vec!["hoist".into()]),
        args: Some(gateway_args(spec, g)),
        ports: Some(vec![
            port("http", SERVER_PORT),
            port("admin", GATEWAY_ADMIN_PORT),
        ]),
        resources: Some(fixed_resources(
            &[("cpu", "100m"), ("memory", "64Mi")],
            &[("memory", "256Mi")],
        )),
        readiness_probe: Some(probe.clone()),
        liveness_probe: Some(probe),
        lifecycle: Some(drain_lifecycle(spec.drain_seconds)),
        security_context: Some(restricted()),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    Deployment {
        metadata: meta(
            spec,
            spec.gateway_name(),
            labels([(LABEL_VARIANT, GATEWAY_VARIANT)]),
        ),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            revision_history_limit: Some(3),
            selector: LabelSelector {
                match_labels: Some(sel),
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
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    // The gateway never calls the API: the servers' identity, no token.
                    service_account_name: Some(format!("{}-server", spec.app)),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security()),
                    termination_grace_period_seconds: Some(spec.drain_seconds + 30),
                    image_pull_secrets: pull_secrets(spec),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The gateway's Service: `http` (its traffic and `/metrics`, scraped by the
/// ServiceMonitor) and `admin` (the controller's way to its admin API).
pub fn gateway_service(spec: &AppSpec) -> Service {
    let port = |name: &str, port: i32| ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    Service {
        metadata: meta(
            spec,
            spec.gateway_name(),
            labels([
                (LABEL_VARIANT, GATEWAY_VARIANT),
                ("hoist.dev/monitor", "true"),
            ]),
        ),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(gateway_selector(spec)),
            ports: Some(vec![port("http", 80), port("admin", GATEWAY_ADMIN_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Only the controller's namespace may reach the admin port (with no in-cluster
/// controller, nobody: a controller outside uses `kubectl port-forward`). Traffic
/// on the gateway's `http` port is allowed by the app's policy.
pub fn gateway_admin_policy(spec: &AppSpec) -> NetworkPolicy {
    let from: Vec<NetworkPolicyPeer> = spec
        .controller
        .iter()
        .map(|c| super::workload::from_namespace(&c.namespace))
        .collect();
    let ingress = if from.is_empty() {
        Vec::new()
    } else {
        vec![NetworkPolicyIngressRule {
            from: Some(from),
            ports: Some(vec![NetworkPolicyPort {
                port: Some(IntOrString::Int(GATEWAY_ADMIN_PORT)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        }]
    };
    NetworkPolicy {
        metadata: meta(
            spec,
            format!("{}-admin", spec.gateway_name()),
            BTreeMap::new(),
        ),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(gateway_selector(spec)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            ..Default::default()
        }),
    }
}
