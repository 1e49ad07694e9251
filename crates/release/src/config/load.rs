//! Reading and validating a `hoist.toml`, and its errors.

use super::*;

/// A config that cannot be used, with the key (and line, where known) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// Parse and validate the text of a `hoist.toml`; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        check_model_tables(text).map_err(|message| ConfigError::Invalid {
            path: path.to_string(),
            message,
        })?;
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_string(),
            message: locate(text, &message),
        })?;
        Ok(cfg)
    }

    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Checks that span keys; the message starts with the key path.
    fn validate(&self) -> Result<(), String> {
        if self.models.is_empty() {
            self.validate_one()
        } else {
            self.validate_models()
        }
    }

    /// The checks of a one-model config (a `[model]` file, or one model's projection).
    pub(super) fn validate_one(&self) -> Result<(), String> {
        self.kubernetes.validate()?;
        self.validate_pack()?;
        if self.target == crate::kubernetes::TargetKind::Kubernetes {
            self.kubernetes.require_image()?;
            // hoist's own gateway on the cluster compares and remembers answers.
            let hoist_split = self.kubernetes.split() == crate::kubernetes::SplitKind::Hoist;
            for (i, env) in self
                .environments
                .iter()
                .enumerate()
                .filter(|_| !hoist_split)
            {
                if let Some(j) = env.steps.iter().position(|s| s.shadow.0 > 0) {
                    return Err(format!(
                        "environments[{i}].steps[{j}].shadow: shadow steps need hoist's gateway, \
                         which compares the answers: on a cluster set kubernetes.split = \"hoist\", or use canary weights"
                    ));
                }
                if self.analysis.with(&env.analysis).feedback {
                    return Err(format!(
                        "environments[{i}].analysis.feedback: feedback labels are taken by hoist's \
                         gateway (POST /feedback): on a cluster set kubernetes.split = \"hoist\""
                    ));
                }
            }
        }
        if self.model.name.trim().is_empty() {
            return Err("model.name: must not be empty".into());
        }
        self.validate_policy()?;
        if self.kubernetes.model_source == crate::kubernetes::ModelSourceKind::Oci
            && self.model.artifact_repository.is_none()
        {
            return Err(
                "kubernetes.model_source: `oci` pulls each version's artifact from model.artifact_repository: set it to where `hoist model push` pushes this model"
                    .into(),
            );
        }
        if self.environments.is_empty() {
            return Err("environments: at least one environment is needed".into());
        }
        let mut names = BTreeSet::new();
        let mut listens = BTreeSet::new();
        for (i, env) in self.environments.iter().enumerate() {
            let key = format!("environments[{i}]");
            if env.name.is_empty()
                || !env
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "{key}.name: `{}` must be letters, digits, `-` or `_`",
                    env.name
                ));
            }
            if !names.insert(env.name.clone()) {
                return Err(format!("{key}.name: `{}` is declared twice", env.name));
            }
            if env.listen == NO_LISTEN && self.target != crate::kubernetes::TargetKind::Kubernetes {
                return Err(format!(
                    "{key}.listen: missing: the address clients send predictions to \
                     (e.g. \"127.0.0.1:8080\"); only a cluster target (target = \"kubernetes\") \
                     can leave it out"
                ));
            }
            if env.listen.port() != 0 && !listens.insert(env.listen) {
                return Err(format!(
                    "{key}.listen: {} is already the address of another environment",
                    env.listen
                ));
            }
            if env.listen == self.api.listen && env.listen.port() != 0 {
                return Err(format!(
                    "{key}.listen: {} is the API's address (api.listen)",
                    env.listen
                ));
            }
            if env.replicas == 0 || env.replicas > 64 {
                return Err(format!(
                    "{key}.replicas: must be from 1 to 64, not {}",
                    env.replicas
                ));
            }
            match env.strategy {
                StrategyKind::Canary => {
                    let mut last = 0;
                    for (j, s) in env.steps.iter().enumerate() {
                        if s.weight.0 == 0 && s.shadow.0 == 0 {
                            return Err(format!(
                                "{key}.steps[{j}]: a step needs a weight above 0 or a shadow share above 0"
                            ));
                        }
                        if s.weight.0 == 0 && last > 0 {
                            return Err(format!(
                                "{key}.steps[{j}].weight: a shadow-only step (weight 0) must come before the steps with live traffic ({last}% before it)"
                            ));
                        }
                        if s.weight.0 > 0 && s.weight.0 <= last {
                            return Err(format!(
                                "{key}.steps[{j}].weight: weights must rise step by step above 0 ({} after {last})",
                                s.weight.0
                            ));
                        }
                        if s.shadow.0 > 0 && s.weight.0 == 100 {
                            return Err(format!(
                                "{key}.steps[{j}].shadow: at weight 100 stable answers nothing to mirror"
                            ));
                        }
                        last = s.weight.0;
                    }
                }
                StrategyKind::BlueGreen => {
                    if !env.steps.is_empty() {
                        return Err(format!(
                            "{key}.steps: a blue-green environment switches at once; steps are for strategy = \"canary\""
                        ));
                    }
                }
            }
            let a = self.analysis.with(&env.analysis);
            if !(0.0..=1.0).contains(&a.max_error_rate) {
                return Err(format!(
                    "{key}.analysis.max_error_rate: must be a share from 0 to 1, not {}",
                    a.max_error_rate
                ));
            }
            for (name, v) in [
                ("max_p99_ms", Some(a.max_p99_ms)),
                ("max_p95_ms", a.max_p95_ms),
                ("max_p50_ms", a.max_p50_ms),
            ] {
                if let Some(v) = v
                    && !(v > 0.0 && v.is_finite())
                {
                    return Err(format!("{key}.analysis.{name}: must be above 0, not {v}"));
                }
            }
            if !(0.5..1.0).contains(&a.confidence) {
                return Err(format!(
                    "{key}.analysis.confidence: must be from 0.5 to below 1, not {}",
                    a.confidence
                ));
            }
            if !(a.alpha > 0.0 && a.alpha < 0.5) {
                return Err(format!(
                    "{key}.analysis.alpha: must be above 0 and below 0.5, not {}",
                    a.alpha
                ));
            }
            for (name, v) in [
                ("max_relative_diff", a.max_relative_diff),
                ("max_relative_bias", a.max_relative_bias),
            ] {
                if !(v >= 0.0 && v.is_finite()) {
                    return Err(format!("{key}.analysis.{name}: must be 0 or more, not {v}"));
                }
            }
            if a.tolerance.is_nan() || a.tolerance < 0.0 {
                return Err(format!("{key}.analysis.tolerance: must be 0 or more"));
            }
            if env.response_timeout.0 < Duration::from_millis(10) {
                return Err(format!("{key}.response_timeout: must be at least 10ms"));
            }
            if a.interval.0 < Duration::from_millis(10) {
                return Err(format!("{key}.analysis.interval: must be at least 10ms"));
            }
            for (name, v) in [
                ("error_tolerance", Some(a.error_tolerance)),
                ("min_agreement", Some(a.min_agreement)),
                ("max_probability_diff", Some(a.max_probability_diff)),
                ("min_accuracy", a.min_accuracy),
                ("max_accuracy_drop", a.max_accuracy_drop),
            ] {
                if let Some(v) = v
                    && !(0.0..=1.0).contains(&v)
                {
                    return Err(format!(
                        "{key}.analysis.{name}: must be a share from 0 to 1, not {v}"
                    ));
                }
            }
            if let Some(e) = a.drift_bins.iter().find(|e| !e.is_finite()) {
                return Err(format!(
                    "{key}.analysis.drift_bins: {e} is not a finite number"
                ));
            }
            if let Some(w) = a.drift_bins.windows(2).find(|w| w[0] >= w[1]) {
                return Err(format!(
                    "{key}.analysis.drift_bins: edges must be strictly ascending; {} is followed by {}",
                    w[0], w[1]
                ));
            }
            if a.drift_bins.len() > MAX_DRIFT_BIN_EDGES {
                return Err(format!(
                    "{key}.analysis.drift_bins: {} edges; at most {MAX_DRIFT_BIN_EDGES}",
                    a.drift_bins.len()
                ));
            }
            if a.feedback && a.min_labels == 0 {
                return Err(format!(
                    "{key}.analysis.min_labels: must be at least 1 when feedback is on"
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.analysis.max_error_rate) {
            return Err(format!(
                "analysis.max_error_rate: must be a share from 0 to 1, not {}",
                self.analysis.max_error_rate
            ));
        }
        if !matches!(
            self.server.runtime.as_str(),
            "auto" | "onnxruntime" | "tract"
        ) {
            return Err(format!(
                "server.runtime: `{}` is not one of auto, onnxruntime, tract",
                self.server.runtime
            ));
        }
        if self
            .server
            .python
            .as_deref()
            .is_some_and(|p| p.trim().is_empty())
        {
            return Err(
                "server.python: must name a Python (with mlflow installed), or be left out to let hoist make one from each model's requirements.txt"
                    .into(),
            );
        }
        if let Some(bad) = self.server.mlflow_args.iter().find(|a| {
            matches!(
                a.as_str(),
                "-m" | "--model-uri" | "-p" | "--port" | "-h" | "--host" | "--env-manager"
            )
        }) {
            return Err(format!(
                "server.mlflow_args: `{bad}` is set by hoist (the model, address and --env-manager local)"
            ));
        }
        Ok(())
    }

    /// The hoist-server flags of `env`'s model servers beyond the model, its name,
    /// version, address and `--runtime` (the same on one machine and in a pod):
    /// `server.args`, and `--prediction-bins` when the environment's analysis has
    /// `drift_bins`.
    pub fn server_args(&self, env: &Environment) -> Vec<String> {
        let mut args = self.server.args.clone();
        let bins = &self.analysis.with(&env.analysis).drift_bins;
        if !bins.is_empty() {
            let edges: Vec<String> = bins.iter().map(|e| e.to_string()).collect();
            args.extend(["--prediction-bins".to_string(), edges.join(",")]);
        }
        args
    }

    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }
}

/// Add the line of an `environments[i]` key to a validation message, where the file
/// lets us find it (the i-th `[[environments]]` header).
pub(super) fn locate(text: &str, message: &str) -> String {
    if let Some(rest) = message.strip_prefix("models[") {
        let line = rest
            .split(']')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|i| {
                text.lines()
                    .enumerate()
                    .filter(|(_, l)| l.trim_start().starts_with("[[models]]"))
                    .nth(i)
            })
            .map(|(n, _)| n + 1);
        return match line {
            Some(n) => format!("{message} (model declared at line {n})"),
            None => message.to_string(),
        };
    }
    let Some(rest) = message.strip_prefix("environments[") else {
        return message.to_string();
    };
    let Some(i) = rest.split(']').next().and_then(|n| n.parse::<usize>().ok()) else {
        return message.to_string();
    };
    let line = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[environments]]"))
        .nth(i)
        .map(|(n, _)| n + 1);
    match line {
        Some(n) => format!("{message} (environment declared at line {n})"),
        None => message.to_string(),
    }
}
