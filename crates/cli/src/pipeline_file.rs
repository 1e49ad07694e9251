//! Reading hoist.toml for a command: the file given, else ./hoist.toml, else the
//! built-in pipeline; and, for the commands that work on one model, that model.

use std::path::PathBuf;

use hoist_release::config::Config;

use crate::CliError;

pub(crate) fn load_config(path: Option<&PathBuf>) -> Result<(Config, String), CliError> {
    let path = match path {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from("hoist.toml")).filter(|p| p.exists()),
    };
    match path {
        Some(p) => Config::load(&p)
            .map(|c| (c, p.display().to_string()))
            .map_err(|e| CliError::Config(e.to_string())),
        None => Ok((Config::default(), "built-in defaults".into())),
    }
}

/// [`load_config`] for commands that work on one model (`render`, `doctor`, `ci`): a
/// file with one `[[models]]` entry is that model's config; with several, an error
/// naming them.
pub(crate) fn load_one_model(
    path: Option<&PathBuf>,
    command: &str,
) -> Result<(Config, String), CliError> {
    let (cfg, source) = load_config(path)?;
    match cfg.models.len() {
        0 => Ok((cfg, source)),
        1 => Ok((cfg.per_model().remove(0), source)),
        _ => Err(CliError::Usage(format!(
            "{command} works on one model, and {source} lists {} in [[models]] ({}): \
             write a hoist.toml with the one model for it (its [[models]] entry alone)",
            cfg.models.len(),
            cfg.model_names().join(", ")
        ))),
    }
}
