//! `hoist ci init github|azure`: the CI workflow that drives a release, the half of
//! the seeds' glue that runs in CI. It writes one file (a GitHub Actions workflow or
//! an Azure Pipelines file) whose steps are hoist commands: install hoist, pin the
//! model version, push the runtime and model images, sign and attest them with the
//! key from the CI's secrets, and `hoist deploy --wait --format markdown` into the
//! job summary, whose exit code decides the job. The files are templates in
//! `ci/`; this module fills them from hoist.toml and the flags.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use hoist_release::config::{Config, Trigger};
use serde::Serialize;

use crate::{CliError, Context, stdout_err};

#[derive(Debug, Subcommand)]
pub enum CiCmd {
    /// Write the CI file that builds, pushes, signs and attests the images and runs
    /// `hoist deploy --wait` (GitHub: .github/workflows/hoist.yml; Azure:
    /// azure-pipelines.yml)
    ///
    /// Runs on a push to the main branch and on a registry promotion (GitHub: a
    /// `repository_dispatch` of type `hoist-promotion` with `client_payload.model`,
    /// e.g. `fraud/3`; Azure: an incoming webhook `hoistpromotion`). The model name
    /// and alias come from hoist.toml's [model], the image repository from
    /// [kubernetes] image, unless flags say otherwise.
    Init(InitArgs),
}

/// The CI system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// GitHub Actions
    Github,
    /// Azure Pipelines
    Azure,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// github or azure
    #[arg(value_enum)]
    pub provider: Provider,
    /// Where to write [default: .github/workflows/hoist.yml, or azure-pipelines.yml]
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Overwrite the file if it exists
    #[arg(long)]
    pub force: bool,
    /// The pipeline file to read [default: ./hoist.toml if it exists]
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The model version to release on a push (NAME@ALIAS, NAME/VERSION, NAME)
    /// [default: hoist.toml's model and its trigger alias or stage]
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// The image repository (HOST[:PORT]/PATH) [default: [kubernetes] image without
    /// its digest, else the CI variable HOIST_IMAGE_REPOSITORY]
    #[arg(long, value_name = "REPOSITORY")]
    pub repository: Option<String>,
    /// The branch whose pushes release
    #[arg(long, default_value = "main", value_name = "BRANCH")]
    pub branch: String,
}

/// What `hoist ci init --json` prints.
#[derive(Debug, Serialize)]
struct Written {
    provider: Provider,
    path: String,
    model: String,
    repository: String,
    branch: String,
    /// The CI secrets the file reads.
    secrets: Vec<&'static str>,
    /// Anything the user should know (the daemon's own trigger, say).
    notes: Vec<String>,
}

/// The secrets both files read, by the same names.
const SECRETS: [&str; 7] = [
    "HOIST_API",
    "HOIST_ADMIN_TOKEN",
    "MLFLOW_TRACKING_URI",
    "REGISTRY_USERNAME",
    "REGISTRY_PASSWORD",
    "COSIGN_KEY",
    "COSIGN_PASSWORD",
];

const GITHUB: &str = include_str!("ci/github.yml");
const AZURE: &str = include_str!("ci/azure.yml");

pub(crate) fn run(ctx: &Context<'_>, cmd: CiCmd, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        CiCmd::Init(a) => init(ctx, a, out),
    }
}

/// `NAME@ALIAS`, `NAME/STAGE` or `NAME`: what a push releases, from hoist.toml.
fn model_of(cfg: &Config) -> String {
    match &cfg.model.trigger {
        Trigger::Alias(a) => format!("{}@{a}", cfg.model.name),
        Trigger::Stage(s) => format!("{}/{s}", cfg.model.name),
        Trigger::Manual => cfg.model.name.clone(),
    }
}

/// `host/path` of `host/path@sha256:…` or `host/path:tag`.
fn repository_of(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        // A colon after the last slash is a tag; before it, a port.
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

/// A value that goes into the YAML as a single-quoted scalar's content.
fn check_value(what: &str, v: &str) -> Result<(), CliError> {
    let bad = v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "'\"$`\\#{}".contains(c));
    if bad {
        return Err(CliError::Usage(format!(
            "{what} '{v}' cannot go into a CI file: no spaces, quotes, `$`, `#`, braces or \
             backslashes"
        )));
    }
    Ok(())
}

fn init(ctx: &Context<'_>, a: InitArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let (cfg, _source) = crate::release::load_one_model(a.config.as_ref(), "hoist ci")?;
    let model = a.model.clone().unwrap_or_else(|| model_of(&cfg));
    hoist_registry::ModelRef::parse(&model)?;
    check_value("model", &model)?;
    check_value("branch", &a.branch)?;
    let repository = match a.repository.as_deref().or(cfg.kubernetes.image.as_deref()) {
        Some(r) => {
            let r = repository_of(r).to_string();
            check_value("repository", &r)?;
            Some(r)
        }
        None => None,
    };
    let path = a.out.clone().unwrap_or_else(|| match a.provider {
        Provider::Github => Path::new(".github").join("workflows").join("hoist.yml"),
        Provider::Azure => PathBuf::from("azure-pipelines.yml"),
    });
    if path.is_dir() {
        return Err(CliError::Usage(format!(
            "{} is a directory; --out names the file to write",
            path.display()
        )));
    }
    if path.exists() && !a.force {
        return Err(CliError::Usage(format!(
            "{} exists; --force overwrites it",
            path.display()
        )));
    }
    let repo_expr = match (&repository, a.provider) {
        (Some(r), _) => r.clone(),
        (None, Provider::Github) => "${{ vars.HOIST_IMAGE_REPOSITORY }}".into(),
        (None, Provider::Azure) => "$(HOIST_IMAGE_REPOSITORY)".into(),
    };
    let template = match a.provider {
        Provider::Github => GITHUB,
        Provider::Azure => AZURE,
    };
    let text = template
        .replace("@HOIST_VERSION@", env!("CARGO_PKG_VERSION"))
        .replace("@HOIST_SOURCE@", env!("CARGO_PKG_REPOSITORY"))
        .replace("@MODEL@", &model)
        .replace("@REPOSITORY@", &repo_expr)
        .replace("@BRANCH@", &a.branch);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| CliError::Io {
            context: format!("creating {}", dir.display()),
            source: e,
        })?;
    }
    std::fs::write(&path, text).map_err(|e| CliError::Io {
        context: format!("writing {}", path.display()),
        source: e,
    })?;

    let mut notes = Vec::new();
    if !matches!(cfg.model.trigger, Trigger::Manual) && a.model.is_none() {
        notes.push(format!(
            "hoist.toml's [model] trigger makes the daemon start a release itself when \
             {model} moves; with this workflow driving releases, set trigger = \"manual\""
        ));
    }
    if repository.is_none() {
        notes.push(
            "no image repository in hoist.toml ([kubernetes] image) or --repository: the \
             file reads the CI variable HOIST_IMAGE_REPOSITORY"
                .into(),
        );
    }
    let w = Written {
        provider: a.provider,
        path: path.display().to_string(),
        model,
        repository: repository.unwrap_or(repo_expr),
        branch: a.branch,
        secrets: SECRETS.to_vec(),
        notes,
    };
    if ctx.json {
        return ctx.print_json(out, &w);
    }
    let mut say = || -> std::io::Result<()> {
        writeln!(out, "wrote {}", w.path)?;
        writeln!(out, "  releases     {} on a push to {}", w.model, w.branch)?;
        let event = match w.provider {
            Provider::Github => {
                "a repository_dispatch of type hoist-promotion (client_payload.model)"
            }
            Provider::Azure => "the incoming webhook hoistpromotion (payload field model)",
        };
        writeln!(out, "  and on       {event}")?;
        writeln!(out, "  images to    {}", w.repository)?;
        writeln!(out, "  secrets      {}", w.secrets.join(", "))?;
        for n in &w.notes {
            writeln!(out, "note: {n}")?;
        }
        Ok(())
    };
    say().map_err(stdout_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_lose_their_tag_or_digest_not_their_port() {
        assert_eq!(
            repository_of("reg:5000/team/hoist@sha256:ab"),
            "reg:5000/team/hoist"
        );
        assert_eq!(
            repository_of("reg:5000/team/hoist:1.0"),
            "reg:5000/team/hoist"
        );
        assert_eq!(repository_of("reg:5000/team/hoist"), "reg:5000/team/hoist");
        assert_eq!(repository_of("team/hoist"), "team/hoist");
    }

    #[test]
    fn values_that_would_break_the_yaml_are_refused() {
        assert!(check_value("model", "fraud@champion").is_ok());
        assert!(check_value("model", "a'b").is_err());
        assert!(check_value("branch", "x ${{ y }}").is_err());
        assert!(check_value("branch", "").is_err());
    }
}
