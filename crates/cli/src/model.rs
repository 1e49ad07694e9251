//! `hoist model …`: register model packages and inspect, promote and fetch versions.
//!
//! Each command opens the registry, does one thing, and prints the result (a table,
//! or JSON with `--json`). Every command but `register` and `stage` works through the
//! [`Registry`] interface, so against the embedded registry and MLflow alike;
//! `register` calls each registry's own registration (MLflow: files uploaded through
//! the tracking server's artifact proxy), and `stage` is the embedded registry's only.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use hoist_registry::ModelRef;
use hoist_registry::embedded::{EmbeddedRegistry, FailPoint};

use crate::output::{Table, format_ms};
use crate::{CliError, Context, Opened, stdout_err};

#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// Push a version's package alone as an OCI artifact (artifactType
    /// application/vnd.hoist.model.v1), tagged <name>-v<version>
    ///
    /// The package is one gzipped tar layer (media type
    /// application/vnd.hoist.model.layer.v1.tar+gzip) of the files under model/,
    /// verified against the version's digest first; the artifact's reference is
    /// recorded on the version as the tag hoist.artifact. Credentials as for
    /// `hoist image push`.
    Push(crate::image::ModelPushArgs),
    /// Pull a model artifact pushed by `hoist model push` into a directory
    ///
    /// REFERENCE is HOST[:PORT]/PATH:TAG or …@sha256:DIGEST (a tag is resolved once;
    /// everything after is fetched by that digest). The manifest and layer are
    /// checked against their digests, the files' package digest against the
    /// artifact's (exit code 4 on any mismatch), and with --key the artifact must
    /// carry a cosign signature by that key (exit code 4 when not). Only directories
    /// and regular files under model/ are accepted: an absolute path, `..`, a link or
    /// a device refuses the artifact. The files land in a temporary directory beside
    /// DIR and are renamed into place when all checks pass; DIR must not exist or
    /// must be empty. This is what a pod's init container runs with
    /// kubernetes.model_source = "oci". Credentials as for `hoist image push`.
    Pull(crate::image::ModelPullArgs),
    /// Register a model package as the next version of a model
    ///
    /// PATH is an MLflow model directory (MLmodel, model.onnx, …) or a bare .onnx
    /// file. In the embedded registry its files are copied into the artifact store
    /// under their sha256 digest, then the version is recorded. Registering files identical to the
    /// latest version's registers nothing and prints that version (tags and alias are
    /// still applied), so a script can run this safely twice.
    ///
    /// With an MLflow tracking server (--registry http://HOST:PORT or
    /// MLFLOW_TRACKING_URI), the files are uploaded as MLflow's own client does: to a
    /// run in the experiment MLFLOW_EXPERIMENT_NAME (default `hoist`, created if
    /// missing), through the server's artifact proxy (`mlflow server` serves artifacts
    /// by default; not with --no-serve-artifacts), then the version is created with
    /// that run's files as its source and the tag hoist.digest, so models:/NAME/VERSION
    /// works in MLflow's clients and `hoist model fetch` verifies the files. "Identical
    /// to the latest version" means the latest version's hoist.digest tag matches.
    Register {
        /// The model directory or .onnx file
        path: PathBuf,
        /// The model's name (no '/' or '@')
        #[arg(long)]
        name: String,
        /// A tag for the new version, as KEY=VALUE (repeatable)
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// Point this alias (e.g. champion) at the new version
        #[arg(long)]
        alias: Option<String>,
    },
    /// List registered models with their latest version and aliases
    List,
    /// List the versions of a model, newest first
    Versions {
        /// The model's name
        name: String,
    },
    /// Show one version: NAME (latest), NAME/VERSION, NAME@ALIAS or NAME/STAGE
    Show {
        /// Which version, e.g. fraud@champion or fraud/3
        reference: String,
    },
    /// Point an alias at a version (moving it if it points elsewhere)
    ///
    /// Moving an alias is how a version is promoted: a release watching the registry
    /// starts when, say, `champion` moves.
    Alias {
        /// The model's name
        name: String,
        /// The version the alias will point at
        version: String,
        /// The alias, e.g. champion (letters, digits, '_' and '-')
        alias: String,
    },
    /// Remove an alias from a model
    Unalias {
        /// The model's name
        name: String,
        /// The alias to remove
        alias: String,
    },
    /// Set or delete tags on a version
    ///
    /// hoist itself records results as tags (e.g. hoist.staging=passed); this shows
    /// how to set your own or clear one. Deleting a tag that is not set is not an error.
    Tag {
        /// The model's name
        name: String,
        /// The version to tag
        version: String,
        /// Tags to set, as KEY=VALUE
        #[arg(value_name = "KEY=VALUE", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// A tag key to delete (repeatable)
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Move a version to an MLflow-style stage: Staging, Production, Archived or None
    ///
    /// Stages are MLflow's older way to promote (deprecated there since 2.9 in favour
    /// of aliases, still widely used); NAME/STAGE then selects the newest version in it.
    /// Embedded registry only: with MLflow, promote with an alias.
    Stage {
        /// The model's name
        name: String,
        /// The version to move
        version: String,
        /// Staging, Production, Archived, or None to leave every stage
        stage: String,
    },
    /// Copy a version's files, verified against their digest, into a directory
    ///
    /// The stored files are checked against the version's sha256 digest before and
    /// after copying; a mismatch is an error (exit code 4), never a silent repair.
    /// DIR must not exist or must be empty. An MLflow version is downloaded into the cache under
    /// --home first, and its digest recorded in the version tag hoist.digest.
    ///
    /// With --digest, the version must also be exactly that package: a version whose
    /// digest is another (the files were re-registered, an alias moved) is refused
    /// with exit code 4 and nothing is written to DIR. Kubernetes init containers
    /// rendered by hoist pass the digest hoist resolved.
    Fetch {
        /// Which version: NAME, NAME/VERSION, NAME@ALIAS or NAME/STAGE
        reference: String,
        /// Where to put the files
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// The digest the version must have, sha256:<64 hex digits>
        #[arg(long, value_name = "sha256:…", value_parser = parse_digest)]
        digest: Option<String>,
    },
}

pub(crate) fn run(ctx: &Context<'_>, cmd: ModelCmd, out: &mut dyn Write) -> Result<(), CliError> {
    // Refuse what MLflow cannot do through hoist before opening anything.
    if ctx.registry != "embedded"
        && let ModelCmd::Stage { .. } = &cmd
    {
        return Err(CliError::Unsupported(format!(
            "hoist does not move MLflow versions between stages (--registry {}): \
             stages are deprecated in MLflow; promote with an alias \
             (hoist model alias NAME VERSION ALIAS) or use MLflow's client \
             (transition_model_version_stage)",
            ctx.registry
        )));
    }
    // Pulling an artifact needs no model registry.
    if let ModelCmd::Pull(a) = cmd {
        return crate::image::model_pull(ctx, a, out);
    }
    let opened = ctx.open_registry()?;
    let reg = opened.as_dyn();
    let where_ = match &opened {
        Opened::Embedded(r) => r.home().display().to_string(),
        Opened::Mlflow(r) => r.tracking_uri().to_string(),
    };
    match cmd {
        ModelCmd::Push(a) => crate::image::model_push(ctx, reg, a, out),
        ModelCmd::Pull(a) => crate::image::model_pull(ctx, a, out),
        ModelCmd::Register {
            path,
            name,
            tags,
            alias,
        } => {
            let tags: BTreeMap<String, String> = tags.into_iter().collect();
            let r = match &opened {
                Opened::Embedded(reg) => {
                    reg.register_detailed(&path, &name, &tags, alias.as_deref())?
                }
                Opened::Mlflow(reg) => reg.register(&path, &name, &tags, alias.as_deref())?,
            };
            if ctx.json {
                return ctx.print_json(out, &r);
            }
            let v = &r.version;
            let digest = v.digest.as_deref().unwrap_or("-");
            let line = if r.created {
                format!("registered {} version {} ({digest})", v.name, v.version)
            } else {
                format!(
                    "{} version {} already has these files ({digest}); nothing new registered",
                    v.name, v.version
                )
            };
            writeln!(out, "{line}").map_err(stdout_err)
        }
        ModelCmd::List => {
            let models = reg.list_models()?;
            if ctx.json {
                return ctx.print_json(out, &models);
            }
            if models.is_empty() {
                return writeln!(out, "no models in {where_}").map_err(stdout_err);
            }
            let mut t = Table::new(["NAME", "LATEST", "ALIASES"]);
            for m in &models {
                let aliases: Vec<String> =
                    m.aliases.iter().map(|(a, v)| format!("{a}={v}")).collect();
                t.row([
                    m.name.clone(),
                    m.latest_version.clone().unwrap_or_else(|| "-".into()),
                    dash(aliases.join(", ")),
                ]);
            }
            t.write(out).map_err(stdout_err)
        }
        ModelCmd::Versions { name } => {
            let versions = reg.list_versions(&name)?;
            if ctx.json {
                return ctx.print_json(out, &versions);
            }
            let mut t = Table::new(["VERSION", "DIGEST", "ALIASES", "STAGE", "TAGS", "CREATED"]);
            for v in &versions {
                let tags: Vec<String> = v.tags.iter().map(|(k, x)| format!("{k}={x}")).collect();
                t.row([
                    v.version.clone(),
                    short_digest(v.digest.as_deref()),
                    dash(v.aliases.join(", ")),
                    v.stage.clone().unwrap_or_else(|| "-".into()),
                    dash(tags.join(", ")),
                    format_ms(v.created_at_ms),
                ]);
            }
            t.write(out).map_err(stdout_err)
        }
        ModelCmd::Show { reference } => {
            let v = reg.resolve(&ModelRef::parse(&reference)?)?;
            if ctx.json {
                return ctx.print_json(out, &v);
            }
            let mut t = Table::plain();
            t.row(["name".into(), v.name.clone()]);
            t.row(["version".into(), v.version.clone()]);
            t.row([
                "digest".into(),
                v.digest.clone().unwrap_or_else(|| "-".into()),
            ]);
            t.row(["aliases".into(), dash(v.aliases.join(", "))]);
            t.row([
                "stage".into(),
                v.stage.clone().unwrap_or_else(|| "-".into()),
            ]);
            for (k, x) in &v.tags {
                t.row([format!("tag {k}"), x.clone()]);
            }
            t.row(["source".into(), v.source.clone()]);
            t.row(["created".into(), format_ms(v.created_at_ms)]);
            t.write(out).map_err(stdout_err)
        }
        ModelCmd::Alias {
            name,
            version,
            alias,
        } => {
            reg.set_alias(&name, &alias, &version)?;
            let v = reg.get_version(&name, &version)?;
            if ctx.json {
                return ctx.print_json(out, &v);
            }
            writeln!(out, "{name}@{alias} -> version {version}").map_err(stdout_err)
        }
        ModelCmd::Unalias { name, alias } => {
            reg.delete_alias(&name, &alias)?;
            if ctx.json {
                let v = serde_json::json!({ "name": name, "alias": alias, "deleted": true });
                return ctx.print_json(out, &v);
            }
            writeln!(out, "removed {name}@{alias}").map_err(stdout_err)
        }
        ModelCmd::Tag {
            name,
            version,
            tags,
            delete,
        } => {
            if tags.is_empty() && delete.is_empty() {
                return Err(CliError::Usage(
                    "nothing to do: give KEY=VALUE tags to set or --delete KEY".into(),
                ));
            }
            for (k, x) in &tags {
                reg.set_tag(&name, &version, k, x)?;
            }
            for k in &delete {
                reg.delete_tag(&name, &version, k)?;
            }
            let v = reg.get_version(&name, &version)?;
            if ctx.json {
                return ctx.print_json(out, &v);
            }
            let tags: Vec<String> = v.tags.iter().map(|(k, x)| format!("{k}={x}")).collect();
            writeln!(out, "{name}/{version} tags: {}", dash(tags.join(", "))).map_err(stdout_err)
        }
        ModelCmd::Stage {
            name,
            version,
            stage,
        } => {
            let Opened::Embedded(emb) = &opened else {
                unreachable!("refused above")
            };
            emb.set_stage(&name, &version, Some(&stage))?;
            let v = reg.get_version(&name, &version)?;
            if ctx.json {
                return ctx.print_json(out, &v);
            }
            let stage = v.stage.as_deref().unwrap_or("None");
            writeln!(out, "{name}/{version} -> stage {stage}").map_err(stdout_err)
        }
        ModelCmd::Fetch {
            reference,
            to,
            digest,
        } => {
            let v = reg.resolve(&ModelRef::parse(&reference)?)?;
            let pinned = |found: &str| match &digest {
                Some(want) if found != want => Err(CliError::PinMismatch(format!(
                    "digest mismatch: --digest pins {want}, but {reference} is {} version {} \
                     with digest {found}; refusing it, nothing was written to {}",
                    v.name,
                    v.version,
                    to.display()
                ))),
                _ => Ok(()),
            };
            // Refuse before downloading when the registry already says; the fetched
            // files' own digest (verified by the registry) is checked in any case.
            if let Some(recorded) = &v.digest {
                pinned(recorded)?;
            }
            let fetched = reg.fetch(&v)?;
            pinned(&fetched.digest)?;
            copy_out(&fetched.dir, &to, &fetched.digest)?;
            if ctx.json {
                let v = serde_json::json!({
                    "version": fetched.version,
                    "digest": fetched.digest,
                    "dir": to,
                });
                return ctx.print_json(out, &v);
            }
            writeln!(
                out,
                "fetched {} version {} ({}) to {}",
                v.name,
                v.version,
                fetched.digest,
                to.display()
            )
            .map_err(stdout_err)
        }
    }
}

/// Opens the embedded registry under the context's home.
pub(crate) fn open_embedded(ctx: &Context<'_>) -> Result<EmbeddedRegistry, CliError> {
    // A test hook: interrupt `register` at a named point (see FailPoint).
    let fail = match (ctx.env)("HOIST_TEST_FAIL_AT").filter(|s| !s.is_empty()) {
        Some(s) => Some(FailPoint::parse(&s)?),
        None => None,
    };
    Ok(EmbeddedRegistry::open(ctx.home()?)?.with_fail_point(fail))
}

/// Copies a verified package out of the store into `to`, via a temporary sibling
/// renamed into place, and checks the copy too: `to` ends up holding exactly the
/// version's files, or is left as it was.
fn copy_out(from: &Path, to: &Path, digest: &str) -> Result<(), CliError> {
    if to.exists() {
        let empty = to.is_dir()
            && std::fs::read_dir(to)
                .map_err(io_err(to, "reading"))?
                .next()
                .is_none();
        if !empty {
            return Err(CliError::Usage(format!(
                "{} already exists and is not an empty directory; choose a new --to",
                to.display()
            )));
        }
    }
    let name = to
        .file_name()
        .ok_or_else(|| CliError::Usage(format!("--to {} has no directory name", to.display())))?;
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io_err(&parent, "creating"))?;
    let tmp = parent.join(format!(
        ".{}.hoist-fetch-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let _ = std::fs::remove_dir_all(&tmp);
        hoist_registry::cas::copy_tree(from, &tmp, false)?;
        hoist_registry::cas::verify_dir(&tmp, digest)?;
        // The copy is as closed as the stored package: nothing it names is elsewhere.
        hoist_registry::check_package(&tmp)?;
        if to.exists() {
            std::fs::remove_dir(to).map_err(io_err(to, "replacing"))?;
        }
        std::fs::rename(&tmp, to).map_err(io_err(to, "creating"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn io_err<'a>(p: &'a Path, what: &'a str) -> impl FnOnce(std::io::Error) -> CliError + 'a {
    move |source| CliError::Io {
        context: format!("{what} {}", p.display()),
        source,
    }
}

/// `--digest sha256:<64 hex digits>`, lower-cased.
fn parse_digest(s: &str) -> Result<String, String> {
    let d = s.trim().to_ascii_lowercase();
    match d.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(d),
        _ => Err(format!(
            "'{s}' is not a digest: write sha256: and 64 hex digits (hoist model show prints it)"
        )),
    }
}

/// `--tag KEY=VALUE`.
fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

/// `sha256:` and the first 12 hex digits: enough to tell versions apart in a table.
fn short_digest(d: Option<&str>) -> String {
    match d {
        Some(d) => d.chars().take("sha256:".len() + 12).collect(),
        None => "-".into(),
    }
}

fn dash(s: String) -> String {
    if s.is_empty() { "-".into() } else { s }
}
