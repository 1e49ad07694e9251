//! The rules names follow (model names, aliases, tag keys, stages), shared with the
//! MLflow registry so one name works in both.

use super::*;

/// The canonical spelling of a stage (MLflow matches stages case-insensitively);
/// `None` for the "None" stage.
pub(super) fn canonical_stage(s: &str) -> Result<Option<&'static str>> {
    match STAGES.iter().find(|c| c.eq_ignore_ascii_case(s)) {
        Some(&"None") => Ok(None),
        Some(c) => Ok(Some(c)),
        None => Err(Error::Invalid(format!(
            "unknown stage '{s}': use Staging, Production, Archived or None"
        ))),
    }
}

/// Model names appear in references (`name/3`, `name@alias`), so they cannot hold
/// `/` or `@`; control characters would garble tables and logs.
pub(crate) fn check_model_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 256
        || name != name.trim()
        || name.chars().any(|c| c == '/' || c == '@' || c.is_control());
    if bad {
        return Err(Error::Invalid(format!(
            "invalid model name '{name}': 1 to 256 characters, no '/', '@', control characters or surrounding spaces"
        )));
    }
    Ok(())
}

/// Aliases follow MLflow's rules, so the same names work in both registries:
/// letters, digits, `_` and `-`; `latest` and `v<number>` are reserved (they read as
/// version selectors).
pub(crate) fn check_alias(alias: &str) -> Result<()> {
    let lower = alias.to_ascii_lowercase();
    let version_like =
        lower.len() > 1 && lower.starts_with('v') && lower[1..].bytes().all(|b| b.is_ascii_digit());
    let bad = alias.is_empty()
        || alias.len() > 255
        || !alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        || lower == "latest"
        || version_like;
    if bad {
        return Err(Error::Invalid(format!(
            "invalid alias '{alias}': letters, digits, '_' and '-' only; 'latest' and 'v<number>' are reserved"
        )));
    }
    Ok(())
}

pub(crate) fn check_tag_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 250 || key.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "invalid tag key '{key}': 1 to 250 characters, no control characters"
        )));
    }
    Ok(())
}
