//! `[policy.<environment>]`: what must be signed before an environment runs anything.
//!
//! ```toml
//! [model]
//! name = "fraud"
//! artifact_repository = "registry.example.com/team/model-artifacts"
//!
//! [policy.production]
//! require_signature = true       # a cosign signature by one of `keys`
//! require_provenance = true      # and a SLSA v1 provenance attestation by it
//! keys = ["keys/cosign.pub"]     # relative to hoist.toml's directory
//! ```
//!
//! What is verified: the model artifact (`<artifact_repository>:<name>-v<version>`,
//! the tag `hoist model push` writes, resolved at deploy time) on every target, and
//! on `target = "kubernetes"` also `kubernetes.image`. The daemon checks an
//! environment's policy before any server of it starts and fails closed: an
//! unreachable registry, a missing key file or a missing signature refuses the
//! release. The checks themselves are I/O and live in the daemon; this module only
//! says what is required and refuses a policy that could never be met.

use std::collections::BTreeMap;

use super::*;

/// One environment's requirements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvPolicy {
    /// A cosign signature by one of `keys` for each verified artifact's digest.
    pub require_signature: bool,
    /// A SLSA v1 provenance attestation (`.att`) by one of `keys` for each verified
    /// artifact (implies `require_signature`).
    pub require_provenance: bool,
    /// Public keys (`cosign.pub`, PEM), paths relative to hoist.toml's directory; a
    /// signature by any one of them is accepted.
    pub keys: Vec<String>,
}

impl EnvPolicy {
    /// Whether anything must be verified at all.
    pub fn enforced(&self) -> bool {
        self.require_signature || self.require_provenance
    }
}

/// `[policy]`: environment name → its requirements.
pub type Policy = BTreeMap<String, EnvPolicy>;

impl Config {
    /// The requirements of environment `env`, if it has any.
    pub fn policy_for(&self, env: &str) -> Option<&EnvPolicy> {
        self.policy.get(env).filter(|p| p.enforced())
    }

    /// `<artifact_repository>:<name>-v<version>`: where `hoist model push` put a
    /// version (the tag is resolved, and its digest verified, at deploy time).
    pub fn model_artifact(&self, version: &str) -> Option<String> {
        self.model
            .artifact_repository
            .as_ref()
            .map(|repo| format!("{repo}:{}-v{version}", self.model.name))
    }

    pub(super) fn validate_policy(&self) -> Result<(), String> {
        if let Some(repo) = &self.model.artifact_repository {
            check_repository(repo)
                .map_err(|e| format!("model.artifact_repository: `{repo}` {e}"))?;
        }
        for (env, p) in &self.policy {
            let key = format!("policy.{env}");
            if self.environment(env).is_none() {
                let names: Vec<_> = self.environments.iter().map(|e| e.name.as_str()).collect();
                return Err(format!(
                    "{key}: no environment `{env}` (this pipeline has: {})",
                    names.join(", ")
                ));
            }
            if !p.enforced() {
                if !p.keys.is_empty() {
                    return Err(format!(
                        "{key}.keys: keys without require_signature or require_provenance check nothing; \
                         set require_signature = true"
                    ));
                }
                continue;
            }
            if p.keys.is_empty() {
                return Err(format!(
                    "{key}.keys: at least one public key (cosign.pub) is needed to verify signatures"
                ));
            }
            if let Some(k) = p.keys.iter().find(|k| k.trim().is_empty()) {
                return Err(format!("{key}.keys: `{k}` is not a file name"));
            }
            if self.model.artifact_repository.is_none()
                && self.target == crate::kubernetes::TargetKind::Local
            {
                return Err(format!(
                    "{key}: on the local target the policy verifies the model artifact: set \
                     model.artifact_repository to where `hoist model push` pushes this model"
                ));
            }
        }
        Ok(())
    }
}

/// `HOST[:PORT]/PATH` with no tag or digest (lower-case path components).
fn check_repository(repo: &str) -> Result<(), String> {
    let Some((host, path)) = repo.split_once('/') else {
        return Err("is not HOST[:PORT]/PATH (e.g. registry.example.com/team/models)".into());
    };
    if host.is_empty() || !(host.contains('.') || host.contains(':') || host == "localhost") {
        return Err("does not start with a registry host (HOST[:PORT]/PATH)".into());
    }
    if path.contains('@') || path.contains(':') {
        return Err(
            "names a tag or digest: give the repository alone (the tag is <name>-v<version>)"
                .into(),
        );
    }
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
    if path.is_empty() || !path.chars().all(ok) || path.split('/').any(str::is_empty) {
        return Err(
            "has an invalid path: lower-case letters, digits, `.`, `_`, `-` and `/`".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<Config, String> {
        Config::parse(toml, "hoist.toml").map_err(|e| e.to_string())
    }

    const REPO: &str =
        "[model]\nname = \"fraud\"\nartifact_repository = \"127.0.0.1:5055/team/models\"\n";

    #[test]
    fn a_policy_per_environment_parses() {
        let c = parse(&format!(
            "{REPO}[policy.production]\nrequire_signature = true\nrequire_provenance = true\nkeys = [\"keys/cosign.pub\", \"ci.pub\"]\n"
        ))
        .unwrap();
        let p = c.policy_for("production").unwrap();
        assert!(p.require_signature && p.require_provenance);
        assert_eq!(p.keys, ["keys/cosign.pub", "ci.pub"]);
        assert!(c.policy_for("staging").is_none());
        assert_eq!(
            c.model_artifact("3").unwrap(),
            "127.0.0.1:5055/team/models:fraud-v3"
        );
        assert!(parse("").unwrap().policy.is_empty());
    }

    #[test]
    fn a_policy_that_cannot_be_met_is_refused_at_load() {
        for (toml, want) in [
            (
                format!("{REPO}[policy.prod]\nrequire_signature = true\nkeys = [\"k.pub\"]\n"),
                "policy.prod: no environment `prod` (this pipeline has: staging, production)",
            ),
            (
                format!("{REPO}[policy.production]\nrequire_signature = true\n"),
                "policy.production.keys: at least one public key",
            ),
            (
                format!("{REPO}[policy.production]\nkeys = [\"k.pub\"]\n"),
                "policy.production.keys: keys without require_signature",
            ),
            (
                format!("{REPO}[policy.production]\nrequire_signatures = true\n"),
                "unknown field `require_signatures`",
            ),
            (
                "[policy.production]\nrequire_signature = true\nkeys = [\"k.pub\"]\n".to_string(),
                "set model.artifact_repository",
            ),
            (
                "[model]\nartifact_repository = \"team/models\"\n".to_string(),
                "model.artifact_repository: `team/models` does not start with a registry host",
            ),
            (
                "[model]\nartifact_repository = \"r.example.com/team/models:v1\"\n".to_string(),
                "names a tag or digest",
            ),
        ] {
            let e = parse(&toml).unwrap_err();
            assert!(e.contains(want), "{toml}\n=> {e}");
        }
    }
}
