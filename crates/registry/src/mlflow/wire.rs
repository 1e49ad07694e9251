//! MLflow's JSON answers, as hoist reads them.

use super::*;

// ---- wire types ----

#[derive(Deserialize)]
pub(super) struct ModelsPage {
    #[serde(default)]
    pub(super) registered_models: Vec<RmJson>,
    pub(super) next_page_token: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct VersionsPage {
    #[serde(default)]
    pub(super) model_versions: Vec<MvJson>,
    pub(super) next_page_token: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct LatestVersions {
    #[serde(default)]
    pub(super) model_versions: Vec<MvJson>,
}

#[derive(Deserialize)]
pub(super) struct RmJson {
    pub(super) name: String,
    #[serde(default)]
    pub(super) latest_versions: Vec<MvJson>,
    #[serde(default)]
    pub(super) aliases: Vec<AliasJson>,
}

#[derive(Deserialize)]
pub(super) struct AliasJson {
    pub(super) alias: String,
    pub(super) version: String,
}

#[derive(Deserialize)]
pub(super) struct TagJson {
    pub(super) key: String,
    #[serde(default)]
    pub(super) value: String,
}

#[derive(Deserialize)]
pub(super) struct MvJson {
    pub(super) name: String,
    pub(super) version: String,
    #[serde(default)]
    pub(super) creation_timestamp: Option<Value>,
    #[serde(default)]
    pub(super) current_stage: Option<String>,
    #[serde(default)]
    pub(super) source: Option<String>,
    #[serde(default)]
    pub(super) run_id: Option<String>,
    #[serde(default)]
    pub(super) status: Option<String>,
    #[serde(default)]
    pub(super) tags: Vec<TagJson>,
    #[serde(default)]
    pub(super) aliases: Vec<String>,
}

impl RmJson {
    pub(super) fn into_model(self) -> RegisteredModel {
        RegisteredModel {
            latest_version: self
                .latest_versions
                .iter()
                .map(|v| v.version.clone())
                .max_by_key(|v| version_key(v)),
            name: self.name,
            aliases: self
                .aliases
                .into_iter()
                .map(|a| (a.alias, a.version))
                .collect(),
        }
    }
}

impl MvJson {
    pub(super) fn into_version(self) -> ModelVersion {
        let tags: BTreeMap<String, String> =
            self.tags.into_iter().map(|t| (t.key, t.value)).collect();
        let created_at_ms = match &self.creation_timestamp {
            Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
            Some(Value::String(s)) => s.parse().unwrap_or(0),
            _ => 0,
        };
        ModelVersion {
            digest: tags.get(DIGEST_TAG).cloned(),
            status: match self.status.as_deref() {
                Some("PENDING_REGISTRATION") => VersionStatus::PendingRegistration,
                Some("FAILED_REGISTRATION") => VersionStatus::FailedRegistration,
                // MLflow 1.x file stores omit the status of registered versions.
                _ => VersionStatus::Ready,
            },
            stage: self.current_stage.filter(|s| !s.is_empty()),
            name: self.name,
            version: self.version,
            source: self.source.unwrap_or_default(),
            aliases: self.aliases,
            tags,
            run_id: self.run_id.filter(|r| !r.is_empty()),
            created_at_ms,
        }
    }
}
