//! `hoist key generate`, `hoist sign`, `hoist attest`, `hoist verify`: cosign-
//! compatible keys, signatures and SLSA provenance for images in a registry.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use hoist_oci::{PrivateKey, PublicKey, Reference, sign};
use serde_json::json;

use crate::image::{RegistryFlags, connect};
use crate::{CliError, Context, stdout_err};

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Write a key pair in cosign's formats: P.key (ECDSA P-256, encrypted with
    /// COSIGN_PASSWORD, as `cosign generate-key-pair` writes it) and P.pub
    Generate {
        /// The files' prefix [default: cosign, so cosign.key and cosign.pub]
        #[arg(long, value_name = "P", default_value = "cosign")]
        out_prefix: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The image: HOST[:PORT]/REPO:TAG or …@sha256:DIGEST (a tag is resolved to its
    /// digest; the digest is what is signed)
    pub reference: String,
    /// The private key (cosign.key; its password from COSIGN_PASSWORD)
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

#[derive(Debug, Args)]
pub struct AttestArgs {
    /// The image: HOST[:PORT]/REPO:TAG or …@sha256:DIGEST
    pub reference: String,
    /// The private key (cosign.key; its password from COSIGN_PASSWORD)
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The model version the image serves (NAME/VERSION): its name, version, digest
    /// and registry go into the provenance
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image: HOST[:PORT]/REPO:TAG or …@sha256:DIGEST
    pub reference: String,
    /// The public key (cosign.pub)
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Also require a SLSA provenance attestation signed by the key
    #[arg(long)]
    pub attestation: bool,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

fn password(ctx: &Context<'_>) -> Result<Vec<u8>, CliError> {
    (ctx.env)("COSIGN_PASSWORD")
        .map(String::into_bytes)
        .ok_or_else(|| {
            CliError::Usage(
                "set COSIGN_PASSWORD (the key's password; empty for none), as cosign reads it"
                    .into(),
            )
        })
}

fn read(path: &PathBuf) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Io {
        context: format!("reading {}", path.display()),
        source,
    })
}

fn private_key(ctx: &Context<'_>, path: &PathBuf) -> Result<PrivateKey, CliError> {
    Ok(PrivateKey::from_cosign_pem(&read(path)?, &password(ctx)?)?)
}

pub(crate) fn key(ctx: &Context<'_>, cmd: KeyCmd, out: &mut dyn Write) -> Result<(), CliError> {
    let KeyCmd::Generate { out_prefix } = cmd;
    let pass = password(ctx)?;
    let k = PrivateKey::generate();
    let key_path = PathBuf::from(format!("{}.key", out_prefix.display()));
    let pub_path = PathBuf::from(format!("{}.pub", out_prefix.display()));
    for p in [&key_path, &pub_path] {
        if p.exists() {
            return Err(CliError::Usage(format!(
                "{} exists: remove it or pass another --out-prefix",
                p.display()
            )));
        }
    }
    let write = |p: &PathBuf, text: String, mode: u32| -> Result<(), CliError> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(p)
            .and_then(|mut f| f.write_all(text.as_bytes()).map(|_| f))
            .map_err(|source| CliError::Io {
                context: format!("writing {}", p.display()),
                source,
            })?;
        f.flush().map_err(stdout_err)
    };
    write(&key_path, k.to_cosign_pem(&pass)?, 0o600)?;
    write(&pub_path, k.public().to_pem(), 0o644)?;
    if ctx.json {
        return ctx.print_json(
            out,
            &json!({"private_key": key_path, "public_key": pub_path}),
        );
    }
    writeln!(
        out,
        "private key written to {}\npublic key written to {}",
        key_path.display(),
        pub_path.display()
    )
    .map_err(stdout_err)
}

pub(crate) fn sign_cmd(
    ctx: &Context<'_>,
    a: SignArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let k = private_key(ctx, &a.key)?;
    let r = Reference::parse(&a.reference)?;
    let client = connect(ctx, &r, &a.registry)?;
    let (digest, tag) = sign::sign(&client, &r, &k)?;
    let reference = format!("{}@{digest}", r.name());
    if ctx.json {
        return ctx.print_json(
            out,
            &json!({"reference": reference, "digest": digest, "signature": format!("{}:{tag}", r.name())}),
        );
    }
    writeln!(out, "signed {reference} ({}:{tag})", r.name()).map_err(stdout_err)
}

pub(crate) fn attest_cmd(
    ctx: &Context<'_>,
    a: AttestArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let k = private_key(ctx, &a.key)?;
    let r = Reference::parse(&a.reference)?;
    let client = connect(ctx, &r, &a.registry)?;
    let digest = sign::resolve(&client, &r)?;
    let mut params = json!({"image": format!("{}@{digest}", r.name())});
    let mut deps = vec![];
    if let Some(m) = &a.model {
        let opened = ctx.open_registry()?;
        let reg = opened.as_dyn();
        let v = reg.resolve(&hoist_registry::ModelRef::parse(m)?)?;
        let d = v.digest.clone().unwrap_or_default();
        params["model"] =
            json!({"name": v.name, "version": v.version, "digest": d, "registry": reg.id()});
        deps.push(json!({
            "uri": format!("models:/{}/{}", v.name, v.version),
            "digest": {"sha256": d.trim_start_matches("sha256:")},
        }));
    }
    let revision = crate::image::git_revision();
    if let Some(rev) = &revision {
        deps.push(json!({"uri": format!("git+{}", env!("CARGO_PKG_REPOSITORY")), "digest": {"gitCommit": rev}}));
    }
    let predicate = json!({
        "buildDefinition": {
            "buildType": "https://github.com/hoist-ml/hoist/image-push/v1",
            "externalParameters": params,
            "internalParameters": {"hoist_version": env!("CARGO_PKG_VERSION")},
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": "https://github.com/hoist-ml/hoist", "version": {"hoist": env!("CARGO_PKG_VERSION")}},
            "metadata": {"finishedOn": hoist_types::time::rfc3339_now()},
        },
    });
    let (digest, tag) = sign::attest(&client, &r, &k, sign::SLSA_PROVENANCE_V1, predicate)?;
    let reference = format!("{}@{digest}", r.name());
    if ctx.json {
        return ctx.print_json(
            out,
            &json!({"reference": reference, "digest": digest, "attestation": format!("{}:{tag}", r.name())}),
        );
    }
    writeln!(out, "attested {reference} ({}:{tag})", r.name()).map_err(stdout_err)
}

pub(crate) fn verify_cmd(
    ctx: &Context<'_>,
    a: VerifyArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let key = PublicKey::from_pem(&read(&a.key)?)?;
    let r = Reference::parse(&a.reference)?;
    let client = connect(ctx, &r, &a.registry)?;
    let v = sign::verify(&client, &r, &key, a.attestation)?;
    let reference = format!("{}@{}", r.name(), v.digest);
    if ctx.json {
        return ctx.print_json(
            out,
            &json!({"reference": reference, "digest": v.digest, "verified": true,
                    "signatures": v.signatures, "attestations": v.attestations}),
        );
    }
    let att = if a.attestation {
        format!(", {} provenance attestation(s)", v.attestations.len())
    } else {
        String::new()
    };
    writeln!(
        out,
        "verified {reference}: {} signature(s){att}",
        v.signatures
    )
    .map_err(stdout_err)
}
