//! `[policy.<environment>]` enforced: the registry I/O that decides whether an
//! environment may run a version, done before any of its servers start.
//!
//! What is verified (with `hoist_oci::sign::verify_any`, by any of the policy's keys):
//! - the model artifact `<model.artifact_repository>:<name>-v<version>`, the tag
//!   resolved now (so another artifact pushed under it is what gets checked): a
//!   signature for its digest (and a SLSA provenance attestation with
//!   `require_provenance`); then the artifact is fetched by that digest, unpacked into
//!   a scratch directory, and its files' package digest must equal both the
//!   artifact's `dev.hoist.model.digest` and the digest of the version this release
//!   fetched from the model registry;
//! - on `target = "kubernetes"`, also `kubernetes.image`.
//!
//! # Guarantees
//! Fail closed: an unreadable key, an unreachable registry, a missing tag, a missing
//! or wrong signature, and a digest that differs each refuse, with the reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hoist_oci::{Client, ClientOptions, PublicKey, Reference};
use hoist_release::config::{Config, EnvPolicy};
use hoist_release::kubernetes::{ModelSourceKind, TargetKind};

/// What the check found: what passed (for the release's log; `None`: no policy),
/// and the model artifact by digest (for pods that pull it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    pub passed: Option<String>,
    pub artifact: Option<String>,
}

/// Whether `env`'s candidate needs [`check`] before it starts: it has a policy, or
/// its pods pull the model artifact (whose tag is resolved to a digest here).
pub fn needed(cfg: &Config, env: &str) -> bool {
    cfg.policy_for(env).is_some()
        || (cfg.target == TargetKind::Kubernetes
            && cfg.kubernetes.model_source == ModelSourceKind::Oci)
}

/// Checks `env`'s policy for `version` (whose package digest is `digest`), and
/// resolves its model artifact.
pub async fn check(
    cfg: Arc<Config>,
    base_dir: PathBuf,
    env: String,
    version: String,
    digest: String,
) -> Result<Checked, String> {
    let rule = cfg.policy_for(&env).cloned();
    let enforced = rule.is_some();
    let e = env.clone();
    tokio::task::spawn_blocking(move || {
        check_blocking(&cfg, &base_dir, rule.as_ref(), &version, &digest)
    })
    .await
    .map_err(|err| format!("policy {e}: the check failed to run: {err}"))?
    .map_err(|reason| {
        if enforced {
            format!("refused by [policy.{env}]: {reason}")
        } else {
            format!("model artifact: {reason}")
        }
    })
}

fn check_blocking(
    cfg: &Config,
    base_dir: &Path,
    rule: Option<&EnvPolicy>,
    version: &str,
    digest: &str,
) -> Result<Checked, String> {
    let Some(rule) = rule else {
        // No policy: the artifact's tag resolved and its package checked, no more.
        let artifact = match cfg.model_artifact(version) {
            Some(a) => {
                let (client, r) = connect(&a)?;
                let d = hoist_oci::sign::resolve(&client, &r).map_err(|e| e.to_string())?;
                Some(pulled(&client, &a, &d, digest)?)
            }
            None => None,
        };
        return Ok(Checked {
            passed: None,
            artifact,
        });
    };
    let keys = rule
        .keys
        .iter()
        .map(|k| {
            let path = base_dir.join(k);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read the key {}: {e}", path.display()))?;
            PublicKey::from_pem(&text).map_err(|e| format!("the key {}: {e}", path.display()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let what = if rule.require_provenance {
        "signature and provenance"
    } else {
        "signature"
    };
    let mut passed = Vec::new();
    let mut artifact_ref = None;
    if cfg.target == TargetKind::Kubernetes {
        let image = cfg.kubernetes.require_image()?;
        let (_, v) = verified(image, &keys, rule.require_provenance)?;
        passed.push(format!("image {image}: {what} verified ({})", v.digest));
    }
    if let Some(artifact) = cfg.model_artifact(version) {
        let (client, v) = verified(&artifact, &keys, rule.require_provenance)?;
        let a = pulled(&client, &artifact, &v.digest, digest)?;
        passed.push(format!(
            "model artifact {a}: {what} verified, package {digest}"
        ));
        artifact_ref = Some(a);
    }
    if passed.is_empty() {
        return Err("nothing to verify (set model.artifact_repository)".into());
    }
    Ok(Checked {
        passed: Some(passed.join("; ")),
        artifact: artifact_ref,
    })
}

/// Fetches the artifact `reference` at `manifest_digest`, unpacks it into a scratch
/// directory and checks its files are the package `digest`: the artifact by digest.
fn pulled(
    client: &Client,
    reference: &str,
    manifest_digest: &str,
    digest: &str,
) -> Result<String, String> {
    let mut pinned = Reference::parse(reference).map_err(|e| e.to_string())?;
    pinned.digest = Some(manifest_digest.to_string());
    let a = hoist_oci::pull::fetch_model(client, &pinned).map_err(|e| e.to_string())?;
    let scratch = std::env::temp_dir().join(format!(
        "hoist-policy-{}-{}",
        std::process::id(),
        manifest_digest.trim_start_matches("sha256:")
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    let unpacked = hoist_oci::pull::unpack_model(&a, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let found = unpacked.map_err(|e| e.to_string())?;
    if found != digest {
        return Err(format!(
            "{} holds the model package {found}, not {digest} (the version in the model registry)",
            a.reference
        ));
    }
    Ok(a.reference)
}

/// Connects to `reference`'s registry and verifies it with `keys`.
fn verified(
    reference: &str,
    keys: &[PublicKey],
    provenance: bool,
) -> Result<(Client, hoist_oci::sign::Verified), String> {
    let (client, r) = connect(reference)?;
    let v =
        hoist_oci::sign::verify_any(&client, &r, keys, provenance).map_err(|e| e.to_string())?;
    Ok((client, v))
}

/// A client of `reference`'s registry: credentials and CA file from the environment
/// (`HOIST_REGISTRY_*`, `REGISTRY_AUTH_FILE`, `~/.docker/config.json`).
fn connect(reference: &str) -> Result<(Client, Reference), String> {
    let r = Reference::parse(reference).map_err(|e| e.to_string())?;
    let env = |k: &str| std::env::var(k).ok();
    let credentials = hoist_oci::credentials_for(&r.registry, &env).map_err(|e| e.to_string())?;
    let options = ClientOptions {
        ca_file: env("HOIST_REGISTRY_CA_FILE").map(PathBuf::from),
        credentials,
        ..Default::default()
    };
    let client = Client::connect(&r, options).map_err(|e| e.to_string())?;
    Ok((client, r))
}
