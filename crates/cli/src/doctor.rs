//! `hoist doctor`: before the first release on a cluster, everything a release will
//! need, one line per check, ok or failed with the fix; exit 0 only if all pass.
//!
//! The cluster checks (API server and version, CRDs, namespaces, Secrets and their
//! keys, a SelfSubjectAccessReview per verb the controller uses) are
//! [`hoist_targets::kubernetes::doctor`]'s, through the usual kubeconfig; this module
//! adds what lies outside the cluster: the image's manifest, Prometheus answering each
//! analysis query, and the MLflow registry with the credentials hoist would send.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use hoist_release::config::Config;
use hoist_release::kubernetes::TargetKind;
use hoist_targets::kubernetes::config::{app_spec, model_source};
use hoist_targets::kubernetes::doctor::{self, Check};
use hoist_targets::kubernetes::{AppSpec, ModelPin};

use crate::{CliError, Context, stdout_err};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The pipeline file [default: ./hoist.toml]
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub(crate) fn run(ctx: &Context<'_>, a: DoctorArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let (cfg, source) = crate::release::load_one_model(a.config.as_ref(), "hoist doctor")?;
    let bad = |m: String| CliError::Config(format!("{source}: {m}"));
    if cfg.target != TargetKind::Kubernetes {
        return Err(CliError::Usage(format!(
            "{source}: hoist doctor checks a cluster target (target = \"kubernetes\"); this pipeline runs on this machine"
        )));
    }
    let image = cfg.kubernetes.require_image().map_err(bad)?.to_string();
    let msource = model_source(&cfg).map_err(bad)?;
    // The version does not change what is checked: a placeholder pin.
    let pin = ModelPin {
        name: cfg.model.name.clone(),
        version: "0".into(),
        digest: format!("sha256:{}", "0".repeat(64)),
        artifact: None,
    };
    let specs: Vec<AppSpec> = cfg
        .environments
        .iter()
        .map(|env| app_spec(&cfg, env, &image, &pin, None, 0, &msource, ""))
        .collect();

    // Outside any async runtime: the OCI client blocks.
    let mut checks = vec![image_check(&image)];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io {
            context: "starting the async runtime".into(),
            source: e,
        })?;
    rt.block_on(async {
        checks.extend(cluster(&specs).await);
        checks.extend(prometheus(&cfg, &specs).await);
        checks.push(mlflow(&cfg, ctx).await);
    });

    let failed = checks.iter().filter(|c| !c.ok).count();
    if ctx.json {
        let v = serde_json::json!({ "config": source, "ok": failed == 0, "checks": checks });
        ctx.print_json(out, &v)?;
    } else {
        for c in &checks {
            let line = match (&c.fix, c.ok) {
                (_, true) => format!("ok    {}: {}\n", c.name, c.detail),
                (Some(fix), false) => format!("FAIL  {}: {}\n      fix: {fix}\n", c.name, c.detail),
                (None, false) => format!("FAIL  {}: {}\n", c.name, c.detail),
            };
            out.write_all(line.as_bytes()).map_err(stdout_err)?;
        }
    }
    if failed > 0 {
        return Err(CliError::Checks(format!(
            "{failed} of {} checks failed",
            checks.len()
        )));
    }
    Ok(())
}

async fn cluster(specs: &[AppSpec]) -> Vec<Check> {
    match kube_client().await {
        Ok(c) => doctor::checks(&c, specs).await,
        Err(e) => vec![Check::fail(
            "api server",
            format!("no cluster configuration: {e}"),
            "set KUBECONFIG (or write ~/.kube/config) for the cluster hoist will drive",
        )],
    }
}

async fn kube_client() -> Result<doctor::KubeClient, String> {
    doctor::connect().await
}

fn image_check(image: &str) -> Check {
    let name = format!("image {image}");
    let reference = match hoist_oci::Reference::parse(image) {
        Ok(r) => r,
        Err(e) => {
            return Check::fail(
                name,
                e.to_string(),
                "write kubernetes.image as repository@sha256:<digest>",
            );
        }
    };
    let client = match hoist_oci::Client::connect(&reference, hoist_oci::ClientOptions::default()) {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                name,
                format!("registry unreachable: {e}"),
                "check the registry's address and that this machine reaches it",
            );
        }
    };
    match hoist_oci::sign::resolve(&client, &reference) {
        Ok(d) => Check::pass(name, format!("manifest pullable ({d})")),
        Err(e) => Check::fail(
            name,
            format!("manifest not pullable: {e}"),
            "push the image, or log in (docker login / REGISTRY_AUTH_FILE) with a pull credential; the pods use kubernetes.pull_secret",
        ),
    }
}

/// Each analysis query against `kubernetes.prometheus_url`, for every environment.
async fn prometheus(cfg: &Config, specs: &[AppSpec]) -> Vec<Check> {
    use hoist_daemon::prometheus::{PrometheusSource, Queries, SERVICE_MONITOR_VARIANT_LABEL};
    let Some(url) = &cfg.kubernetes.prometheus_url else {
        if !cfg.analysis.enabled {
            return vec![Check::pass(
                "prometheus",
                "not needed: [analysis] enabled = false",
            )];
        }
        return vec![Check::fail(
            "prometheus",
            "kubernetes.prometheus_url is not set: a canary's analysis has no live metrics and fails closed",
            "set kubernetes.prometheus_url to a Prometheus that scrapes the ServiceMonitor (or [analysis] enabled = false)",
        )];
    };
    let mut out = Vec::new();
    for (env, s) in cfg.environments.iter().zip(specs) {
        let selector = format!(
            "namespace=\"{}\",hoist_dev_env=\"{}\"",
            s.namespace, env.name
        );
        let src = match PrometheusSource::new(url, Queries::server(), &selector) {
            Ok(p) => p.with_variant_label(SERVICE_MONITOR_VARIANT_LABEL),
            Err(e) => {
                out.push(Check::fail(
                    "prometheus",
                    e.to_string(),
                    "fix kubernetes.prometheus_url",
                ));
                return out;
            }
        };
        let q = src.queries().clone();
        let window = cfg.analysis.interval.0.max(Duration::from_secs(60));
        let mut all = vec![
            ("requests", q.requests),
            ("errors", q.errors),
            ("latency", q.latency_buckets),
        ];
        if let Some(p) = q.predictions {
            all.push(("predictions", p));
        }
        for (what, template) in all {
            let query = src.render(&template, window);
            let name = format!("prometheus {}: {what} query", env.name);
            match src.query_instant(&query, None).await {
                Ok(r) => {
                    let n = r.samples().len();
                    out.push(Check::pass(name, format!("answered ({n} series now)")));
                }
                Err(e) => out.push(Check::fail(
                    name,
                    e.to_string(),
                    format!("make {url} reachable from here and answering PromQL"),
                )),
            }
        }
    }
    out
}

/// The MLflow registry, with the credentials hoist sends (MLFLOW_TRACKING_*).
async fn mlflow(cfg: &Config, ctx: &Context<'_>) -> Check {
    let Some(url) = cfg
        .registry
        .url
        .clone()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
    else {
        return Check::pass("mlflow", "no MLflow server configured (registry.url)");
    };
    let name = format!("mlflow {url}");
    let endpoint = format!(
        "{}/api/2.0/mlflow/registered-models/search?max_results=1",
        url.trim_end_matches('/')
    );
    let mut req = reqwest::Client::new()
        .get(&endpoint)
        .timeout(Duration::from_secs(10));
    // As the registry client reads them: `VAR`, or the file `VAR_FILE` names.
    let cred = |v: &str| {
        hoist_types::Secret::from_env(v, ctx.env)
            .ok()
            .flatten()
            .map(|s| s.get())
    };
    if let Some(t) = cred("MLFLOW_TRACKING_TOKEN") {
        req = req.bearer_auth(t);
    } else if let Some(u) = cred("MLFLOW_TRACKING_USERNAME") {
        req = req.basic_auth(u, cred("MLFLOW_TRACKING_PASSWORD"));
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Check::pass(name, "reachable, credentials accepted"),
        Ok(r) if r.status() == 401 || r.status() == 403 => Check::fail(
            name,
            format!("credentials refused ({})", r.status()),
            "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN), and kubernetes.registry_secret for the pods",
        ),
        Ok(r) => Check::fail(
            name,
            format!("answered {}", r.status()),
            "check registry.url points at an MLflow tracking server",
        ),
        Err(e) => Check::fail(
            name,
            format!("unreachable: {e}"),
            "check registry.url and that this machine reaches it",
        ),
    }
}
