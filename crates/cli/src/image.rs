//! `hoist image push` and `hoist model push`: images and model artifacts built
//! without a Docker daemon (crates/oci) and pushed to any OCI registry.
//!
//! # The runtime image
//! Layers, each reproducible (entries sorted, mtimes from `SOURCE_DATE_EPOCH`, else
//! the git commit's time, else 0; uid/gid 0):
//! 1. `/etc/passwd` and `/etc/group` (user `nonroot`, 65532), `/tmp` (1777), the CA
//!    certificates, and every shared library `ldd` names for the binaries and ONNX
//!    Runtime (with the dynamic loader), at the paths `ldd` prints;
//! 2. the pinned ONNX Runtime library under `/usr/local/lib` (`ORT_DYLIB_PATH`);
//! 3. `/usr/local/bin/hoist`, and `hoist-server` as a link to it (`hoist` is
//!    `hoist-server` when called by that name);
//! 4. with `--model`, the model package at `/model`, and `hoist-server` serving it
//!    on 0.0.0.0:8080 as the entrypoint.
//!
//! No shell; user 65532. Unchanged layers are not uploaded again.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;
use hoist_oci::{
    Client, ClientOptions, LayerBuilder, MODEL_LAYER_MEDIA, Manifest, Reference, artifact_manifest,
};
use hoist_registry::{ModelRef, Registry};

use crate::{CliError, Context, stdout_err};

/// Where the CA bundle is read from on the build machine, and put in the image.
const CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";
const ORT_IN_IMAGE: &str = "usr/local/lib";

#[derive(Debug, Args)]
pub struct RegistryFlags {
    /// Allow plain HTTP and do not check TLS certificates (loopback registries use
    /// plain HTTP when they do not speak TLS, without this flag)
    #[arg(long)]
    pub insecure: bool,
    /// Also trust the CA certificates in this PEM file [default: $HOIST_REGISTRY_CA_FILE]
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImageCmd {
    /// Build hoist's runtime image (or a model image, with --model) and push it
    ///
    /// Credentials: HOIST_REGISTRY_USERNAME and HOIST_REGISTRY_PASSWORD, else
    /// REGISTRY_AUTH_FILE (podman/skopeo login), else ~/.docker/config.json. Blobs
    /// the registry already has are not uploaded; the manifest goes last, so a
    /// failed push leaves no tag. Prints REPOSITORY@sha256:….
    Push(PushArgs),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Where to push, HOST[:PORT]/PATH (e.g. 127.0.0.1:5000/team/hoist)
    pub repository: String,
    /// A tag (repeatable) [default: hoist's version and git-<short sha>; with
    /// --model: <name>-v<version>]
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Add this model version (NAME@ALIAS, NAME/VERSION) at /model and serve it; the
    /// image's reference is recorded on the version as the tag hoist.image
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Where hoist's binary is [default: the directory of the running hoist]
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// The ONNX Runtime library [default: $ORT_DYLIB_PATH, else the pinned one under
    /// ~/.hoist/lib]
    #[arg(long, value_name = "FILE")]
    pub onnxruntime: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

#[derive(Debug, Args)]
pub struct ModelPushArgs {
    /// The version: NAME/VERSION or NAME@ALIAS
    pub reference: String,
    /// Where to push, HOST[:PORT]/PATH
    pub repository: String,
    /// A tag (repeatable) [default: <name>-v<version>]
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

#[derive(Debug, Args)]
pub struct ModelPullArgs {
    /// The artifact: HOST[:PORT]/PATH:TAG or HOST[:PORT]/PATH@sha256:DIGEST
    pub reference: String,
    /// Where to put the model's files (must not exist, or be empty)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Require a cosign signature of the artifact by this public key (cosign.pub)
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

pub(crate) fn run(ctx: &Context<'_>, cmd: ImageCmd, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        ImageCmd::Push(a) => push(ctx, a, out),
    }
}

/// The git revision and commit time of the work tree the command runs in, if any.
fn git(args: &[&str]) -> Option<String> {
    let o = Command::new("git").args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The full git SHA of the work tree the command runs in, if any.
pub(crate) fn git_revision() -> Option<String> {
    git(&["rev-parse", "HEAD"])
}

/// `SOURCE_DATE_EPOCH`, else the git commit's time, else 0.
fn source_date_epoch(ctx: &Context<'_>) -> Result<u64, CliError> {
    if let Some(s) = (ctx.env)("SOURCE_DATE_EPOCH").filter(|s| !s.is_empty()) {
        return s.trim().parse().map_err(|_| {
            CliError::Usage(format!(
                "SOURCE_DATE_EPOCH '{s}' is not a number of seconds"
            ))
        });
    }
    Ok(git(&["log", "-1", "--format=%ct"])
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

fn check_tags(tags: &[String]) -> Result<(), CliError> {
    for t in tags {
        if !hoist_oci::valid_tag(t) {
            return Err(CliError::Usage(format!(
                "invalid tag '{t}': letters, digits, '_', '.' and '-', at most 128, not starting with '.' or '-'"
            )));
        }
    }
    Ok(())
}

fn parse_repository(s: &str) -> Result<Reference, CliError> {
    let r = Reference::parse(s)?;
    if r.tag.is_some() || r.digest.is_some() {
        return Err(CliError::Usage(format!(
            "'{s}' names a tag or digest: give the repository alone and tags with --tag"
        )));
    }
    Ok(r)
}

pub(crate) fn connect(
    ctx: &Context<'_>,
    r: &Reference,
    flags: &RegistryFlags,
) -> Result<Client, CliError> {
    let credentials = hoist_oci::credentials_for(&r.registry, ctx.env)?;
    let ca_file = flags
        .ca_file
        .clone()
        .or_else(|| (ctx.env)("HOIST_REGISTRY_CA_FILE").map(PathBuf::from));
    let opts = ClientOptions {
        insecure: flags.insecure,
        ca_file,
        credentials,
        progress: !ctx.json && std::io::stderr().is_terminal(),
        ..Default::default()
    };
    Ok(Client::connect(r, opts)?)
}

/// The shared libraries `ldd` says `file` loads (absolute paths, the loader too).
fn shared_libraries(file: &Path) -> Result<Vec<String>, CliError> {
    let o = Command::new("ldd")
        .arg(file)
        .output()
        .map_err(|e| CliError::Io {
            context: "running ldd (it lists the shared libraries the image needs)".into(),
            source: e,
        })?;
    let text = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() && !text.contains("statically linked") {
        return Err(CliError::Usage(format!(
            "ldd cannot read {}: {}",
            file.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    let mut libs = vec![];
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            return Err(CliError::Usage(format!(
                "{} needs a library this machine lacks: {line}",
                file.display()
            )));
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(p.to_string());
        }
    }
    Ok(libs)
}

/// The ONNX Runtime library the image carries.
fn onnxruntime(ctx: &Context<'_>, flag: Option<PathBuf>) -> Result<PathBuf, CliError> {
    if let Some(p) = flag.or_else(|| (ctx.env)("ORT_DYLIB_PATH").map(PathBuf::from)) {
        return Ok(p);
    }
    let home = ctx.home()?;
    let mut dirs = vec![home.join("lib")];
    if let Some(h) = (ctx.env)("HOME") {
        dirs.push(PathBuf::from(h).join(".hoist/lib"));
    }
    // The first directory holding one wins; in it, the highest version.
    let found = dirs.iter().find_map(|d| {
        let mut libs: Vec<PathBuf> = std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so."))
            })
            .collect();
        libs.sort();
        libs.pop()
    });
    found.ok_or_else(|| {
        CliError::Usage(format!(
            "no ONNX Runtime library: give --onnxruntime FILE or ORT_DYLIB_PATH, or run \
             tools/fetch-onnxruntime.sh (it puts the pinned one under {}/lib)",
            home.display()
        ))
    })
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> CliError {
    move |source| CliError::Io { context, source }
}

/// The layers of the runtime image (1–3 in the module docs), and the ORT path in it.
fn runtime_layers(
    ctx: &Context<'_>,
    a: &PushArgs,
    mtime: u64,
) -> Result<(Vec<LayerBuilder>, String), CliError> {
    let bin_dir = match &a.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .map_err(io_err("finding the running hoist".into()))?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let hoist = bin_dir.join("hoist");
    if !hoist.is_file() {
        return Err(CliError::Usage(format!(
            "no hoist binary in {}",
            bin_dir.display()
        )));
    }
    let ort = onnxruntime(ctx, a.onnxruntime.clone())?;
    if !ort.is_file() {
        return Err(CliError::Usage(format!(
            "no ONNX Runtime library at {}",
            ort.display()
        )));
    }
    let mut base = LayerBuilder::new(mtime);
    base.bytes(
        "etc/passwd",
        b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n".to_vec(),
        false,
    )?;
    base.bytes(
        "etc/group",
        b"root:x:0:\nnonroot:x:65532:\n".to_vec(),
        false,
    )?;
    base.dir_mode("tmp", 0o1777)?;
    let ca = Path::new("/").join(CA_BUNDLE);
    if ca.is_file() {
        base.file(CA_BUNDLE, &ca)?;
    }
    let mut libs = shared_libraries(&hoist)?;
    libs.extend(shared_libraries(&ort)?);
    libs.sort();
    libs.dedup();
    for lib in &libs {
        base.file(lib, Path::new(lib))?;
    }
    let ort_name = ort
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "libonnxruntime.so".into());
    let ort_path = format!("{ORT_IN_IMAGE}/{ort_name}");
    let mut ort_layer = LayerBuilder::new(mtime);
    ort_layer.file(&ort_path, &ort)?;
    let mut bin = LayerBuilder::new(mtime);
    bin.file("usr/local/bin/hoist", &hoist)?;
    bin.symlink("usr/local/bin/hoist-server", "hoist")?;
    Ok((vec![base, ort_layer, bin], format!("/{ort_path}")))
}

/// A model version's package, fetched and verified, with its name, version and digest.
struct Model {
    name: String,
    version: String,
    digest: String,
    dir: PathBuf,
}

fn fetch_model(reg: &dyn Registry, reference: &str) -> Result<Model, CliError> {
    let r = ModelRef::parse(reference)?;
    let v = reg.resolve(&r)?;
    let f = reg.fetch(&v)?;
    Ok(Model {
        name: v.name.clone(),
        version: v.version.clone(),
        digest: f.digest.clone(),
        dir: f.dir.clone(),
    })
}

/// `<name>-v<version>`, the tag of a model's image or artifact.
fn model_tag(m: &Model) -> Result<String, CliError> {
    let t = format!("{}-v{}", m.name, m.version);
    check_tags(std::slice::from_ref(&t)).map_err(|_| {
        CliError::Usage(format!(
            "model '{}' gives no valid tag ({t}): pass --tag",
            m.name
        ))
    })?;
    Ok(t)
}

fn labels(ctx: &Context<'_>, created: u64) -> BTreeMap<String, String> {
    let _ = ctx;
    let mut l = BTreeMap::from([
        (
            "org.opencontainers.image.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        (
            "org.opencontainers.image.source".to_string(),
            env!("CARGO_PKG_REPOSITORY").to_string(),
        ),
        (
            "org.opencontainers.image.title".to_string(),
            "hoist".to_string(),
        ),
        (
            "org.opencontainers.image.created".to_string(),
            hoist_oci::rfc3339(created),
        ),
    ]);
    if let Some(rev) = git(&["rev-parse", "HEAD"]) {
        l.insert("org.opencontainers.image.revision".into(), rev);
    }
    l
}

fn push(ctx: &Context<'_>, a: PushArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let repo = parse_repository(&a.repository)?;
    check_tags(&a.tags)?;
    let created = source_date_epoch(ctx)?;
    let (mut builders, ort) = runtime_layers(ctx, &a, created)?;
    let mut labels = labels(ctx, created);
    let mut tags = a.tags.clone();
    let mut spec = hoist_oci::ImageSpec {
        created,
        user: "65532".into(),
        working_dir: "/".into(),
        env: vec![
            "PATH=/usr/local/bin:/usr/bin:/bin".into(),
            format!("SSL_CERT_FILE=/{CA_BUNDLE}"),
            format!("ORT_DYLIB_PATH={ort}"),
            "HOME=/tmp".into(),
            "HOIST_HOME=/tmp/hoist".into(),
        ],
        cmd: vec!["/usr/local/bin/hoist".into(), "--help".into()],
        ..Default::default()
    };
    let mut model = None;
    let opened;
    if let Some(m) = &a.model {
        opened = ctx.open_registry()?;
        let m = fetch_model(opened.as_dyn(), m)?;
        let mut layer = LayerBuilder::new(created);
        layer.tree("model", &m.dir)?;
        builders.push(layer);
        tags.insert(0, model_tag(&m)?);
        labels.insert("dev.hoist.model.name".into(), m.name.clone());
        labels.insert("dev.hoist.model.version".into(), m.version.clone());
        labels.insert("dev.hoist.model.digest".into(), m.digest.clone());
        spec.entrypoint = [
            "/usr/local/bin/hoist-server",
            "--model",
            "/model",
            "--name",
            &m.name,
            "--model-version",
            &m.version,
            "--host",
            "0.0.0.0",
            "--port",
            "8080",
        ]
        .map(String::from)
        .to_vec();
        spec.cmd = vec![];
        spec.exposed_ports = vec!["8080/tcp".into()];
        model = Some((m, opened));
    } else if tags.is_empty() {
        tags.push(env!("CARGO_PKG_VERSION").to_string());
        if let Some(short) = git(&["rev-parse", "--short", "HEAD"]) {
            tags.push(format!("git-{short}"));
        }
    }
    spec.labels = labels;
    let layers = builders
        .iter()
        .map(LayerBuilder::build)
        .collect::<Result<Vec<_>, _>>()?;
    let image = spec.build(layers);
    let client = connect(ctx, &repo, &a.registry)?;
    let report = client.push(&image, &tags)?;
    let reference = format!("{}@{}", repo.name(), report.digest);
    if let Some((m, opened)) = &model {
        opened.as_dyn().set_tag(
            &m.name,
            &m.version,
            hoist_types::wire::tags::IMAGE,
            &reference,
        )?;
    }
    print_pushed(ctx, out, &reference, &image, &tags, &report)
}

fn print_pushed(
    ctx: &Context<'_>,
    out: &mut dyn Write,
    reference: &str,
    image: &Manifest,
    tags: &[String],
    report: &hoist_oci::PushReport,
) -> Result<(), CliError> {
    if ctx.json {
        return ctx.print_json(
            out,
            &serde_json::json!({
                "reference": reference,
                "digest": report.digest,
                "tags": tags,
                "size": image.size(),
                "blobs_uploaded": report.uploaded,
                "blobs_skipped": report.skipped,
            }),
        );
    }
    eprintln!(
        "pushed {} blob(s) ({:.1} MB), {} already there; tags: {}",
        report.uploaded,
        report.bytes_uploaded as f64 / 1e6,
        report.skipped,
        tags.join(", ")
    );
    writeln!(out, "{reference}").map_err(stdout_err)
}

/// `hoist model push NAME/VERSION REPOSITORY`: the package alone, as an OCI artifact.
pub(crate) fn model_push(
    ctx: &Context<'_>,
    reg: &dyn Registry,
    a: ModelPushArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let repo = parse_repository(&a.repository)?;
    check_tags(&a.tags)?;
    let created = source_date_epoch(ctx)?;
    let m = fetch_model(reg, &a.reference)?;
    let mut tags = vec![model_tag(&m)?];
    tags.extend(a.tags.iter().cloned());
    let mut layer = LayerBuilder::new(created).media_type(MODEL_LAYER_MEDIA);
    layer.tree("model", &m.dir)?;
    let annotations = BTreeMap::from([
        (
            "org.opencontainers.image.created".to_string(),
            hoist_oci::rfc3339(created),
        ),
        ("org.opencontainers.image.title".to_string(), m.name.clone()),
        (
            "org.opencontainers.image.version".to_string(),
            m.version.clone(),
        ),
        ("dev.hoist.model.name".to_string(), m.name.clone()),
        ("dev.hoist.model.version".to_string(), m.version.clone()),
        ("dev.hoist.model.digest".to_string(), m.digest.clone()),
    ]);
    let image = artifact_manifest(layer.build()?, &annotations);
    let client = connect(ctx, &repo, &a.registry)?;
    let report = client.push(&image, &tags)?;
    let reference = format!("{}@{}", repo.name(), report.digest);
    reg.set_tag(
        &m.name,
        &m.version,
        hoist_types::wire::tags::ARTIFACT,
        &reference,
    )?;
    print_pushed(ctx, out, &reference, &image, &tags, &report)
}

/// `hoist model pull REFERENCE --out DIR [--key cosign.pub]`: a model artifact,
/// verified, unpacked atomically.
pub(crate) fn model_pull(
    ctx: &Context<'_>,
    a: ModelPullArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let key = match &a.key {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| CliError::Io {
                context: format!("reading {}", p.display()),
                source,
            })?;
            Some(hoist_oci::PublicKey::from_pem(&text)?)
        }
        None => None,
    };
    let mut r = Reference::parse(&a.reference)?;
    let client = connect(ctx, &r, &a.registry)?;
    let mut signed = false;
    if let Some(k) = &key {
        // Verified by digest; the pull below fetches exactly that digest.
        let v = hoist_oci::sign::verify(&client, &r, k, false)?;
        r.digest = Some(v.digest);
        signed = true;
    }
    let artifact = hoist_oci::pull::fetch_model(&client, &r)?;
    let model_digest = hoist_oci::pull::unpack_model(&artifact, &a.out)?;
    let ann = |k: &str| artifact.annotations.get(k).cloned().unwrap_or_default();
    if ctx.json {
        return ctx.print_json(
            out,
            &serde_json::json!({
                "reference": artifact.reference,
                "digest": artifact.digest,
                "model": ann("dev.hoist.model.name"),
                "version": ann("dev.hoist.model.version"),
                "model_digest": model_digest,
                "signed": signed,
                "out": a.out,
            }),
        );
    }
    writeln!(
        out,
        "pulled {} ({} v{}, {model_digest}{}) into {}",
        artifact.reference,
        ann("dev.hoist.model.name"),
        ann("dev.hoist.model.version"),
        if signed { ", signature verified" } else { "" },
        a.out.display()
    )
    .map_err(stdout_err)
}
