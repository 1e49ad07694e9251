//! `hoist render k8s`: the pipeline's environments as Kubernetes manifests, for teams
//! that apply manifests themselves (GitOps) or want to read what hoist would apply.
//!
//! hoist.toml's `[kubernetes]` table is mapped into one
//! [`AppSpec`](hoist_targets::kubernetes::AppSpec) per environment, every
//! environment is rendered in memory, and only then is anything written: a bad
//! config writes nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use hoist_registry::ModelRef;
use hoist_release::config::{Config, Environment};
use hoist_targets::kubernetes::render::HEADER;
use hoist_targets::kubernetes::{AppSpec, Manifests, ModelPin, render, render_controller};

use hoist_targets::kubernetes::config::{app_spec, model_source};

use crate::{CliError, Context, stdout_err};

#[derive(Debug, Subcommand)]
pub enum RenderCmd {
    /// Kubernetes manifests of every environment (or --env): Deployments, Services,
    /// HPA, PDB, NetworkPolicy, RBAC, ServiceMonitor, HTTPRoute, and the in-cluster
    /// controller when [kubernetes.controller] is enabled
    ///
    /// Without --out, one YAML stream on stdout (kubectl apply -f -). With --out DIR,
    /// one file per object and a kustomization.yaml (kubectl apply -k DIR); with
    /// several environments, one directory each and a kustomization.yaml over them.
    /// Files of an earlier render that are no longer rendered are removed; other
    /// files in DIR are left alone. The stable version is --version and --digest, else
    /// --model resolved in the registry, else the pipeline's trigger alias.
    K8s(K8sArgs),
}

#[derive(Debug, Args)]
pub struct K8sArgs {
    /// The pipeline file [default: ./hoist.toml if it exists, else the built-in pipeline]
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Only this environment (without the shared controller) [default: every
    /// environment, and the controller when enabled]
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// Write files into this directory instead of YAML on stdout
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The stable version, resolved in the registry: NAME/VERSION, NAME@ALIAS, NAME
    #[arg(long, value_name = "REF", conflicts_with_all = ["version", "digest"])]
    pub model: Option<String>,
    /// The stable version's number, without asking the registry (needs --digest)
    #[arg(long, requires = "digest")]
    pub version: Option<String>,
    /// The stable version's sha256 digest (sha256:…), with --version
    #[arg(long, requires = "version")]
    pub digest: Option<String>,
    /// A candidate version to render beside stable, resolved in the registry
    #[arg(long, value_name = "REF")]
    pub candidate: Option<String>,
    /// The candidate's share of traffic in percent (with --candidate)
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub weight: u32,
}

pub(crate) fn run(ctx: &Context<'_>, cmd: RenderCmd, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        RenderCmd::K8s(a) => k8s(ctx, a, out),
    }
}

fn k8s(ctx: &Context<'_>, a: K8sArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let (cfg, source) = crate::release::load_one_model(a.config.as_ref(), "hoist render k8s")?;
    let k = &cfg.kubernetes;
    let bad = |m: String| CliError::Config(format!("{source}: {m}"));
    let image = k.require_image().map_err(bad)?.to_string();
    if a.weight > 0 && a.candidate.is_none() {
        return Err(CliError::Usage(
            "--weight needs --candidate (the version that takes that share)".into(),
        ));
    }
    let envs: Vec<&Environment> = match &a.env {
        Some(e) => vec![cfg.environment(e).ok_or_else(|| {
            CliError::Usage(format!(
                "no environment `{e}` in {source} (it has: {})",
                cfg.environments
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?],
        None => cfg.environments.iter().collect(),
    };
    let model_source = model_source(&cfg).map_err(bad)?;
    hoist_targets::kubernetes::config::check_controller_env(&cfg).map_err(bad)?;
    let (stable, candidate) = pins(ctx, &cfg, &a)?;
    let config_text = match &a.config {
        Some(p) => std::fs::read_to_string(p).unwrap_or_default(),
        None => std::fs::read_to_string("hoist.toml").unwrap_or_default(),
    };

    // Render everything before writing anything.
    let mut sets: Vec<(String, Manifests)> = Vec::new();
    let mut first: Option<AppSpec> = None;
    for env in &envs {
        let spec = app_spec(
            &cfg,
            env,
            &image,
            &stable,
            candidate.as_ref(),
            a.weight,
            &model_source,
            &config_text,
        );
        let m = render(&spec).map_err(|e| bad(format!("kubernetes ({}): {e}", env.name)))?;
        first.get_or_insert(spec);
        sets.push((env.name.clone(), m));
    }
    // The controller is shared by every environment: rendered with all of them.
    if a.env.is_none()
        && let Some(spec) = &first
        && let Some(c) = &spec.controller
    {
        let m =
            render_controller(c, spec).map_err(|e| bad(format!("kubernetes.controller: {e}")))?;
        sets.push(("controller".into(), m));
    }

    let Some(dir) = &a.out else {
        let mut all = Manifests::default();
        for (_, m) in &sets {
            all.objects.extend(m.objects.iter().cloned());
        }
        if ctx.json {
            let v = serde_json::json!({
                "config": source,
                "objects": objects_json(&all, None),
                "yaml": all.to_yaml(),
            });
            return ctx.print_json(out, &v);
        }
        return out.write_all(all.to_yaml().as_bytes()).map_err(stdout_err);
    };

    let single = sets.len() == 1;
    let mut files = Vec::new();
    let mut removed = Vec::new();
    let mut objects = Vec::new();
    for (name, m) in &sets {
        let sub = if single { dir.clone() } else { dir.join(name) };
        let w = m.write_dir(&sub).map_err(|e| io_err(&sub, e))?;
        objects.extend(objects_json(m, Some(&sub)));
        files.extend(w.files);
        removed.extend(w.removed);
    }
    if !single {
        let path = dir.join("kustomization.yaml");
        let mut k = format!(
            "{HEADER}\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
        );
        for (name, _) in &sets {
            k.push_str(&format!("- {name}\n"));
        }
        std::fs::write(&path, k).map_err(|e| CliError::Io {
            context: format!("writing {}", path.display()),
            source: e,
        })?;
        files.push(path);
    }
    if ctx.json {
        let v = serde_json::json!({
            "config": source,
            "dir": dir,
            "files": files,
            "removed": removed,
            "objects": objects,
        });
        return ctx.print_json(out, &v);
    }
    let count: usize = sets.iter().map(|(_, m)| m.objects.len()).sum();
    writeln!(
        out,
        "rendered {count} objects of {} into {} ({} files); apply with: kubectl apply -k {}",
        sets.iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        dir.display(),
        files.len(),
        dir.display()
    )
    .map_err(stdout_err)?;
    for r in &removed {
        writeln!(out, "removed {} (no longer rendered)", r.display()).map_err(stdout_err)?;
    }
    Ok(())
}

fn io_err(dir: &Path, e: hoist_targets::kubernetes::Error) -> CliError {
    match e {
        hoist_targets::kubernetes::Error::Io { path, source } => CliError::Io {
            context: format!("writing {}", path.display()),
            source,
        },
        other => CliError::Usage(format!("{}: {other}", dir.display())),
    }
}

fn objects_json(m: &Manifests, dir: Option<&Path>) -> Vec<serde_json::Value> {
    m.objects
        .iter()
        .map(|o| {
            let mut v = serde_json::json!({
                "kind": o.kind(),
                "namespace": o.namespace(),
                "name": o.name(),
            });
            if let Some(d) = dir {
                v["file"] = d.join(o.file_name()).display().to_string().into();
            }
            v
        })
        .collect()
}

/// The stable and candidate versions: from the flags alone, or resolved in the
/// registry (which must record each version's digest).
fn pins(
    ctx: &Context<'_>,
    cfg: &Config,
    a: &K8sArgs,
) -> Result<(ModelPin, Option<ModelPin>), CliError> {
    let resolve = |reference: &str| -> Result<ModelPin, CliError> {
        let (reg, _) = crate::release::open_for_daemon(ctx, cfg)?;
        let v = reg.resolve(&ModelRef::parse(reference)?)?;
        let digest = v.digest.clone().ok_or_else(|| {
            CliError::Usage(format!(
                "{} version {} has no recorded digest; register it with hoist (hoist model register) \
                 or pass --version and --digest",
                v.name, v.version
            ))
        })?;
        let artifact = v.tags.get(hoist_types::wire::tags::ARTIFACT).cloned();
        Ok(ModelPin {
            name: v.name,
            version: v.version,
            digest,
            artifact,
        })
    };
    let stable = match (&a.version, &a.digest, &a.model) {
        (Some(version), Some(digest), _) => ModelPin {
            name: cfg.model.name.clone(),
            version: version.clone(),
            digest: digest.clone(),
            // With model_source = "oci", rendering says the artifact is missing:
            // render with --model, whose version records it (hoist.artifact).
            artifact: None,
        },
        (_, _, Some(r)) => resolve(r)?,
        _ => {
            let r = match &cfg.model.trigger {
                hoist_release::config::Trigger::Alias(alias) => {
                    format!("{}@{alias}", cfg.model.name)
                }
                _ => cfg.model.name.clone(),
            };
            resolve(&r)?
        }
    };
    let candidate = a.candidate.as_deref().map(resolve).transpose()?;
    Ok((stable, candidate))
}
