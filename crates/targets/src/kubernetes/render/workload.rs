//! The model servers' objects: Deployment, Service, autoscaler, disruption budget,
//! NetworkPolicy and ServiceMonitor.

use super::*;

/// The hoist-server command line of one pod: the same flags `hoist up` gives the
/// processes it supervises.
pub fn server_args(spec: &AppSpec, pin: &ModelPin) -> Vec<String> {
    let model = match &spec.model_source {
        ModelSource::Registry { .. } | ModelSource::Oci => format!("{MODEL_DIR}/model"),
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
    if let (ModelSource::Oci, Some(artifact)) = (&spec.model_source, &pin.artifact) {
        volumes.push(empty_dir("model"));
        server_mounts.push(mount("model", MODEL_DIR, true));
        let mut mounts = vec![
            mount("model", MODEL_DIR, false),
            mount("tmp", "/tmp", false),
        ];
        let mut env = Vec::new();
        if let Some(secret) = &spec.pull_secret {
            // The same dockerconfigjson the kubelet pulls images with.
            volumes.push(pull_secret_volume(secret));
            mounts.push(mount("registry-auth", REGISTRY_AUTH_DIR, true));
            env.push(value_env(
                "REGISTRY_AUTH_FILE",
                &format!("{REGISTRY_AUTH_DIR}/.dockerconfigjson"),
            ));
        }
        init.push(Container {
            name: "pull-model".into(),
            image: Some(spec.image.clone()),
            command: Some(vec!["hoist".into()]),
            args: Some(
                [
                    "model",
                    "pull",
                    artifact,
                    "--out",
                    &format!("{MODEL_DIR}/model"),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ),
            env: Some(env).filter(|e| !e.is_empty()),
            resources: Some(resources(spec)),
            security_context: Some(restricted()),
            volume_mounts: Some(mounts),
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
        lifecycle: Some(drain_lifecycle(spec.drain_seconds)),
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
                    image_pull_secrets: pull_secrets(spec),
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
    let type_ = match v {
        Some(_) => "ClusterIP".to_string(),
        None => spec.service_type.clone(),
    };
    let (name, sel, extra) = match v {
        Some(v) => (
            spec.name(v),
            selector(spec, v),
            // Only the variant Services are scraped: the app's would count each pod twice.
            labels([(LABEL_VARIANT, v.as_str()), ("hoist.dev/monitor", "true")]),
        ),
        // With hoist's gateway, the way in is the gateway's pods; else both variants'.
        None if spec.hoist_gateway.is_some() => (
            spec.app.clone(),
            super::gateway::gateway_selector(spec),
            BTreeMap::new(),
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
            type_: Some(type_),
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

pub(super) fn hpa(spec: &AppSpec, a: &super::super::spec::Autoscale) -> HorizontalPodAutoscaler {
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
            metrics: Some(
                std::iter::once(("cpu", a.cpu_percent))
                    .chain(a.memory_percent.map(|m| ("memory", m)))
                    .map(|(name, percent)| MetricSpec {
                        type_: "Resource".into(),
                        resource: Some(ResourceMetricSource {
                            name: name.into(),
                            target: MetricTarget {
                                type_: "Utilization".into(),
                                average_utilization: Some(percent),
                                ..Default::default()
                            },
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn pdb(spec: &AppSpec) -> PodDisruptionBudget {
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

pub(super) fn from_namespace(ns: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(labels([("kubernetes.io/metadata.name", ns)])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Only the gateway or ingress namespaces, Prometheus, the controller (which
/// smoke-tests and warms up candidates) and hoist's gateway's pods (with `split =
/// "hoist"`) may reach the model servers.
pub(super) fn network_policy(spec: &AppSpec) -> NetworkPolicy {
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
                from: Some(
                    from.iter()
                        .map(|ns| from_namespace(ns))
                        // hoist's gateway, in this namespace, forwards to the servers.
                        .chain(spec.hoist_gateway.as_ref().map(|_| NetworkPolicyPeer {
                            pod_selector: Some(LabelSelector {
                                match_labels: Some(super::gateway::gateway_selector(spec)),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }))
                        .collect(),
                ),
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

pub(super) fn service_monitor(spec: &AppSpec) -> ServiceMonitor {
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
