//! `[[models]]`: several models delivered by one daemon. Each entry names its model,
//! its trigger and, optionally, its own environments (a subset of the top-level
//! ones, in their order), strategy, steps, analysis, gates and notifications.
//! [`Config::per_model`] projects the file onto one single-model [`Config`] per
//! model: what one engine runs on.

use super::*;

/// One `[[models]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The registered model.
    pub name: String,
    #[serde(default = "champion")]
    pub trigger: Trigger,
    #[serde(default)]
    pub mid_rollout: MidRollout,
    #[serde(default)]
    pub artifact_repository: Option<String>,
    /// The environments this model goes through, by name, in the top-level order
    /// (unset: all of them).
    #[serde(default)]
    pub environments: Option<Vec<String>>,
    /// Replaces the strategy of every environment of this model.
    #[serde(default)]
    pub strategy: Option<StrategyKind>,
    /// Replaces the steps of every canary environment of this model (blue-green
    /// ones switch at once; set `strategy = "canary"` too to step through all).
    #[serde(default)]
    pub steps: Option<Vec<Step>>,
    /// Applied over the top-level `[analysis]` (each environment's own override
    /// still applies on top).
    #[serde(default)]
    pub analysis: Option<AnalysisOverride>,
    /// Replaces the top-level gates.
    #[serde(default)]
    pub gates: Option<Vec<Gate>>,
    /// Replaces the top-level notifications.
    #[serde(default)]
    pub notifications: Option<Vec<Notification>>,
}

fn champion() -> Trigger {
    Trigger::Alias("champion".into())
}

impl Config {
    /// One single-model config per model: the file itself for a `[model]` file,
    /// else one per `[[models]]` entry, with that model's environments and
    /// overrides applied (and `models` empty).
    pub fn per_model(&self) -> Vec<Config> {
        if self.models.is_empty() {
            return vec![self.clone()];
        }
        self.models.iter().map(|m| self.project(m)).collect()
    }

    /// The names of the models this file delivers, in file order.
    pub fn model_names(&self) -> Vec<String> {
        if self.models.is_empty() {
            vec![self.model.name.clone()]
        } else {
            self.models.iter().map(|m| m.name.clone()).collect()
        }
    }

    /// The single-model config of `name`, if the file delivers it.
    pub fn for_model(&self, name: &str) -> Option<Config> {
        self.per_model().into_iter().find(|c| c.model.name == name)
    }

    fn project(&self, m: &ModelEntry) -> Config {
        let mut c = self.clone();
        c.models = Vec::new();
        c.model = ModelConfig {
            name: m.name.clone(),
            trigger: m.trigger.clone(),
            mid_rollout: m.mid_rollout,
            artifact_repository: m.artifact_repository.clone(),
        };
        if let Some(names) = &m.environments {
            c.environments.retain(|e| names.contains(&e.name));
        }
        for env in &mut c.environments {
            if let Some(s) = m.strategy {
                env.strategy = s;
                if s == StrategyKind::BlueGreen {
                    env.steps.clear();
                }
            }
            if let Some(steps) = &m.steps
                && env.strategy == StrategyKind::Canary
            {
                env.steps = steps.clone();
            }
        }
        if let Some(a) = &m.analysis {
            c.analysis = c.analysis.with(a);
        }
        if let Some(g) = &m.gates {
            c.gates = g.clone();
        }
        if let Some(n) = &m.notifications {
            c.notifications = n.clone();
        }
        c
    }

    /// `[[models]]` checks: unique names, environments that exist (in order), and
    /// every projection valid on its own.
    pub(super) fn validate_models(&self) -> Result<(), String> {
        if self.target == crate::kubernetes::TargetKind::Kubernetes && self.models.len() > 1 {
            return Err(
                "models: target = \"kubernetes\" delivers one model per daemon for now: run one daemon per model on a cluster, or use target = \"local\""
                    .into(),
            );
        }
        let mut names = BTreeSet::new();
        let known: Vec<&str> = self.environments.iter().map(|e| e.name.as_str()).collect();
        for (i, m) in self.models.iter().enumerate() {
            let key = format!("models[{i}]");
            if m.name.trim().is_empty() {
                return Err(format!("{key}.name: must not be empty"));
            }
            // Requests name the model in their path (/models/{name}/..., /v2/models/{name}/...).
            if m.name.contains('/')
                || m.name.chars().any(char::is_control)
                || m.name.trim() != m.name
                || m.name == "."
                || m.name == ".."
            {
                return Err(format!(
                    "{key}.name: `{}` cannot name a model in a request path \
                     (/models/{{name}}/invocations): no '/', control characters, surrounding \
                     spaces, `.` or `..`",
                    m.name.escape_debug()
                ));
            }
            if !names.insert(m.name.as_str()) {
                return Err(format!(
                    "{key}.name: `{}` is declared twice; each model appears once",
                    m.name
                ));
            }
            if let Some(envs) = &m.environments {
                if envs.is_empty() {
                    return Err(format!(
                        "{key}.environments: empty; name at least one of {}, or leave the key out for all",
                        known.join(", ")
                    ));
                }
                let mut last = None;
                for name in envs {
                    let Some(at) = known.iter().position(|k| k == name) else {
                        return Err(format!(
                            "{key}.environments: `{name}` is not an environment of this file (they are {}); \
                             a model goes through the top-level [[environments]], whose gateways serve every model",
                            known.join(", ")
                        ));
                    };
                    if last.is_some_and(|l| at <= l) {
                        return Err(format!(
                            "{key}.environments: `{name}` is out of order or repeated: list them in the order of [[environments]] ({})",
                            known.join(", ")
                        ));
                    }
                    last = Some(at);
                }
            }
            if m.steps.as_ref().is_some_and(|s| !s.is_empty())
                && m.strategy == Some(StrategyKind::BlueGreen)
            {
                return Err(format!(
                    "{key}.steps: a blue-green model switches at once; steps are for strategy = \"canary\""
                ));
            }
            self.project(m)
                .validate_one()
                .map_err(|e| format!("{key} (`{}`): {e}", m.name))?;
        }
        Ok(())
    }
}

/// Where `[model]` and `[[models]]` headers are, to refuse both together with lines.
pub(super) fn check_model_tables(text: &str) -> Result<(), String> {
    let header = |l: &str| {
        let t = l.trim_start();
        (t.starts_with("[model]") || t.starts_with("[model.")).then_some(())
    };
    let single = text.lines().position(|l| header(l).is_some());
    let many = text
        .lines()
        .position(|l| l.trim_start().starts_with("[[models]]"));
    // `model = { ... }` or `models = [...]` inline forms also count.
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(_) => return Ok(()),
    };
    if table.contains_key("model") && table.contains_key("models") {
        let at = |p: Option<usize>| p.map(|n| format!(" (line {})", n + 1)).unwrap_or_default();
        return Err(format!(
            "model: [model]{} and [[models]]{} cannot both be set: [model] is the one-model form; \
             move it into a [[models]] entry",
            at(single),
            at(many)
        ));
    }
    Ok(())
}

impl Config {
    /// `[server] pack`: only where hoist runs the servers, one replica each, and for
    /// model names a shared server's repository can hold (they become directory
    /// names there).
    pub(super) fn validate_pack(&self) -> Result<(), String> {
        if !self.server.pack {
            return Ok(());
        }
        if self.target == crate::kubernetes::TargetKind::Kubernetes {
            return Err(
                "server.pack: shares hoist-server processes on this machine; \
                 target = \"kubernetes\" runs a Deployment per version: remove server.pack"
                    .into(),
            );
        }
        if let Some(env) = self.environments.iter().find(|e| e.replicas > 1) {
            return Err(format!(
                "server.pack: environment {} has replicas = {}; a packed environment runs one \
                 shared server per variant: set replicas = 1 or remove server.pack",
                env.name, env.replicas
            ));
        }
        let name = &self.model.name;
        let fits = !name.is_empty()
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !fits {
            return Err(format!(
                "server.pack: model `{name}`: a packed model's name must be letters, digits, \
                 `.`, `-` or `_` (it names a directory in the shared server's repository)"
            ));
        }
        Ok(())
    }
}
