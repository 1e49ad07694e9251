//! hoist.toml's `[kubernetes]` table mapped into an [`AppSpec`]: the one place the
//! Kubernetes target reads the pipeline file, shared by `hoist render k8s` and the
//! daemon's cluster target so both produce the same objects.

use hoist_release::config::{Config, Environment};
use hoist_release::kubernetes::{Kubernetes, ModelSourceKind, SplitKind};

use super::{
    AppSpec, Autoscale, ControllerSpec, GatewayRef, HoistGateway, ModelPin, ModelSource, Resources,
};

/// The environment's gateway settings as `hoist gateway` flags (the force header is
/// rendered apart).
pub fn gateway_args(env: &Environment) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(h) = &env.sticky_header {
        a.extend(["--sticky-header".to_string(), h.clone()]);
    }
    if let Some(c) = &env.sticky_cookie {
        a.extend(["--sticky-cookie".to_string(), c.clone()]);
    }
    a.extend([
        "--response-timeout".to_string(),
        format!("{}s", env.response_timeout.0.as_secs().max(1)),
    ]);
    a
}

/// Where the pods get the model: baked into the image, or fetched from a registry
/// reachable from the cluster.
pub fn model_source(cfg: &Config) -> Result<ModelSource, String> {
    let k = &cfg.kubernetes;
    if let Some(path) = &k.model_path {
        return Ok(ModelSource::Baked { path: path.clone() });
    }
    if k.model_source == ModelSourceKind::Oci {
        return Ok(ModelSource::Oci);
    }
    let url = k.registry_url.clone().or_else(|| {
        cfg.registry
            .url
            .clone()
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
    });
    match url {
        Some(url) => Ok(ModelSource::Registry {
            url,
            credentials_secret: k.registry_secret.clone(),
        }),
        None => Err(
            "kubernetes.registry_url: the pods fetch the model from a registry \
             they can reach: set kubernetes.registry_url (an MLflow tracking URL reachable \
             from the cluster) or kubernetes.model_path (a model baked into the image)"
                .into(),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn app_spec(
    cfg: &Config,
    env: &Environment,
    image: &str,
    stable: &ModelPin,
    candidate: Option<&ModelPin>,
    weight: u32,
    source: &ModelSource,
    config_text: &str,
) -> AppSpec {
    let k: &Kubernetes = &cfg.kubernetes;
    let mut s = AppSpec::new(
        &k.app_name(&cfg.model.name),
        &env.name,
        &k.namespace_for(&env.name),
        image,
        stable.clone(),
        source.clone(),
    );
    s.candidate = candidate.cloned();
    s.candidate_weight = weight;
    s.replicas = env.replicas as i32;
    s.resources = Resources {
        cpu_request: k.resources.cpu_request.clone(),
        cpu_limit: k.resources.cpu_limit.clone(),
        memory_request: k.resources.memory_request.clone(),
        memory_limit: k.resources.memory_limit.clone(),
    };
    s.autoscale = k.autoscale.enabled.then_some(Autoscale {
        min: k.autoscale.min as i32,
        max: k.autoscale.max as i32,
        cpu_percent: k.autoscale.cpu_percent as i32,
        memory_percent: k.autoscale.memory_percent.map(|m| m as i32),
    });
    s.admin_token_secret = k.admin_token_secret.clone();
    s.pull_secret = k.pull_secret.clone();
    let split = k.split();
    s.hoist_gateway = (split == SplitKind::Hoist).then(|| HoistGateway {
        args: gateway_args(env),
        feedback_token_secret: k.feedback_token_secret.clone(),
    });
    s.gateway = k
        .gateway
        .as_ref()
        .filter(|_| split == SplitKind::GatewayApi)
        .map(|g| GatewayRef {
            name: g.name.clone(),
            namespace: g.namespace.clone(),
            section_name: g.section_name.clone(),
        });
    s.hostnames = k.hostnames.clone();
    s.ingress_namespaces = k.ingress_namespaces.clone();
    s.prometheus_namespace = k.prometheus_namespace.clone();
    s.runtime = cfg.server.runtime.clone();
    s.server_args = cfg.server_args(env);
    s.force_header = Some(env.force_header.clone());
    s.drain_seconds = k.drain.0.as_secs() as i64;
    s.service_type = k.service_type.as_str().to_string();
    s.startup_seconds = cfg.server.ready_timeout.0.as_secs().clamp(2, 3600) as i32;
    s.controller = k.controller.enabled.then(|| ControllerSpec {
        namespace: k.controller.namespace.clone(),
        image: k
            .controller
            .image
            .clone()
            .unwrap_or_else(|| image.to_string()),
        replicas: k.controller.replicas as i32,
        config_toml: config_text.to_string(),
        journal_claim: k.controller.journal_claim.clone(),
        // Checked when hoist.toml was loaded.
        secret_env: k.controller.secret_env_refs().unwrap_or_default(),
        webhook_port: cfg.registry.webhook_listen.map(|a| a.port()),
    });
    s
}

/// The in-cluster controller gets no environment of its own: every variable
/// hoist.toml names for it must come from a Secret (`kubernetes.controller.secret_env`).
/// The error names the first key that names one that does not, and the fix.
pub fn check_controller_env(cfg: &Config) -> Result<(), String> {
    if !cfg.kubernetes.controller.enabled {
        return Ok(());
    }
    if let Some(a) = cfg.registry.webhook_listen
        && a.ip().is_loopback()
    {
        return Err(format!(
            "registry.webhook_listen: {a} is reachable only inside the controller's pod: \
             listen on 0.0.0.0:{} so MLflow reaches it through the controller's Service",
            a.port()
        ));
    }
    let given = &cfg.kubernetes.controller.secret_env;
    let mut needed: Vec<(String, &str)> = Vec::new();
    if cfg.registry.webhook_listen.is_some() {
        needed.push((
            "registry.webhook_secret_env".into(),
            cfg.registry.webhook_secret_env.as_str(),
        ));
    }
    for (i, n) in cfg.notifications.iter().enumerate() {
        if let Some(var) = &n.secret_env {
            needed.push((format!("notifications[{i}].secret_env"), var.as_str()));
        }
    }
    for (key, var) in needed {
        if !given.contains_key(var) {
            return Err(format!(
                "{key}: the in-cluster controller reads {var} from a Secret: add \
                 `{var} = \"<Secret name>/<key>\"` to [kubernetes.controller.secret_env]"
            ));
        }
    }
    Ok(())
}
