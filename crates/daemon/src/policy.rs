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
use hoist_release::kubernetes::TargetKind;

/// What passed, for the release's log.
pub type Passed = String;

/// Checks `env`'s policy for `version` (whose package digest is `digest`). `Ok(None)`:
/// the environment has no policy.
pub async fn check(
    cfg: Arc<Config>,
    base_dir: PathBuf,
    env: String,
    version: String,
    digest: String,
) -> Result<Option<Passed>, String> {
    let Some(rule) = cfg.policy_for(&env).cloned() else {
        return Ok(None);
    };
    let e = env.clone();
    tokio::task::spawn_blocking(move || check_blocking(&cfg, &base_dir, &rule, &version, &digest))
        .await
        .map_err(|err| format!("policy {e}: the check failed to run: {err}"))?
        .map(Some)
        .map_err(|reason| format!("policy {env}: refused: {reason}"))
}

fn check_blocking(
    cfg: &Config,
    base_dir: &Path,
    rule: &EnvPolicy,
    version: &str,
    digest: &str,
) -> Result<Passed, String> {
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
    if cfg.target == TargetKind::Kubernetes {
        let image = cfg.kubernetes.require_image()?;
        let (_, v) = verified(image, &keys, rule.require_provenance)?;
        passed.push(format!("image {image}: {what} verified ({})", v.digest));
    }
    if let Some(artifact) = cfg.model_artifact(version) {
        let (client, v) = verified(&artifact, &keys, rule.require_provenance)?;
        let mut pinned = Reference::parse(&artifact).map_err(|e| e.to_string())?;
        pinned.digest = Some(v.digest.clone());
        let a = hoist_oci::pull::fetch_model(&client, &pinned).map_err(|e| e.to_string())?;
        let scratch = std::env::temp_dir().join(format!(
            "hoist-policy-{}-{}",
            std::process::id(),
            v.digest.trim_start_matches("sha256:")
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
        passed.push(format!(
            "model artifact {}: {what} verified, package {found}",
            a.reference
        ));
    }
    if passed.is_empty() {
        return Err("nothing to verify (set model.artifact_repository)".into());
    }
    Ok(passed.join("; "))
}

/// Connects to `reference`'s registry and verifies it with `keys`.
fn verified(
    reference: &str,
    keys: &[PublicKey],
    provenance: bool,
) -> Result<(Client, hoist_oci::sign::Verified), String> {
    let r = Reference::parse(reference).map_err(|e| e.to_string())?;
    let env = |k: &str| std::env::var(k).ok();
    let credentials = hoist_oci::credentials_for(&r.registry, &env).map_err(|e| e.to_string())?;
    let options = ClientOptions {
        ca_file: env("HOIST_REGISTRY_CA_FILE").map(PathBuf::from),
        credentials,
        ..Default::default()
    };
    let client = Client::connect(&r, options).map_err(|e| e.to_string())?;
    let v =
        hoist_oci::sign::verify_any(&client, &r, keys, provenance).map_err(|e| e.to_string())?;
    Ok((client, v))
}
