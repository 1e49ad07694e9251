//! OCI images and artifacts without a Docker daemon.
//!
//! # Layout
//! - this file: [`Error`] (every failure, each with its exit code) and [`Blob`].
//! - `reference`: `HOST[:PORT]/PATH[:TAG][@DIGEST]` parsed ([`Reference`]).
//! - `layer`: reproducible gzipped tar layers ([`LayerBuilder`]): sorted entries,
//!   fixed mtimes, uid/gid 0, a gzip header with no time or name.
//! - `image`: the OCI image config and manifest ([`ImageSpec`], [`Manifest`]) and
//!   model artifacts ([`artifact_manifest`]).
//! - `auth`: credentials (environment, `REGISTRY_AUTH_FILE`, `~/.docker/config.json`)
//!   and the `WWW-Authenticate` challenge (basic, bearer token flow).
//! - `keys`: cosign's key formats ([`PrivateKey`], [`PublicKey`]).
//! - `sign`: cosign-compatible signatures (`.sig`) and attestations (`.att`, SLSA v1
//!   provenance in DSSE), and their verification.
//! - `pull`: model artifacts fetched back ([`pull::fetch_model`]) and unpacked
//!   safely and atomically ([`pull::unpack_model`]).
//! - `client`: the distribution API ([`Client`]): blob HEAD, monolithic and chunked
//!   uploads, manifests put last.
//!
//! This crate knows nothing about environments or releases: it turns files into
//! content-addressed blobs and moves them to and from a registry.

mod auth;
mod client;
mod image;
mod keys;
mod layer;
pub mod pull;
mod reference;
pub mod sign;

use sha2::{Digest as _, Sha256};

pub use auth::{Credentials, credentials_for};
pub use client::{Client, ClientOptions, PushReport};
pub use image::{
    ARTIFACT_CONFIG_EMPTY, ImageSpec, MEDIA_CONFIG, MEDIA_EMPTY, MEDIA_LAYER_GZIP, MEDIA_MANIFEST,
    MODEL_ARTIFACT_TYPE, MODEL_LAYER_MEDIA, Manifest, artifact_manifest, rfc3339,
};
pub use keys::{PrivateKey, PublicKey};
pub use layer::LayerBuilder;
pub use reference::{Reference, valid_tag};

/// What can go wrong talking to a registry or building an image. Each variant says
/// what a user must know to act on it and has its own exit code ([`Error::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference '{0}': use HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST]")]
    InvalidReference(String),
    #[error("{0}")]
    Invalid(String),
    /// No connection at all (refused, DNS, TLS handshake, timeout).
    #[error("registry {registry} is unreachable: {reason}")]
    Unreachable { registry: String, reason: String },
    /// HTTP 401: no credentials, or the registry refused them.
    #[error(
        "registry {registry} refused the credentials (401){detail}: set HOIST_REGISTRY_USERNAME/HOIST_REGISTRY_PASSWORD, or log in (REGISTRY_AUTH_FILE, ~/.docker/config.json)"
    )]
    Unauthorized { registry: String, detail: String },
    /// HTTP 403: authenticated, but not allowed to do this.
    #[error("registry {registry} denied access to {repository} (403){detail}")]
    Forbidden {
        registry: String,
        repository: String,
        detail: String,
    },
    /// HTTP 404 other than an unknown manifest: no such repository, blob or API.
    #[error("not found on the registry: {what}{detail}")]
    NotFound { what: String, detail: String },
    /// The tag or digest names no manifest in the repository.
    #[error("manifest unknown: {reference} is not in the registry")]
    ManifestUnknown { reference: String },
    /// Any other answer hoist has no better name for.
    #[error("registry answered {status} to {what}: {message}")]
    Remote {
        status: u16,
        what: String,
        message: String,
    },
    /// The registry sent content that is not what its digest says.
    #[error("digest mismatch for {what}: expected {expected}, got {found}")]
    DigestMismatch {
        what: String,
        expected: String,
        found: String,
    },
    /// A signature or attestation is missing, or does not verify.
    #[error("{reference} is not verified: {reason}")]
    Unverified { reference: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The CLI's exit code: 2 bad input, 4 integrity, 8 unreachable, 9 401,
    /// 10 403, 11 404, 12 manifest unknown, 1 anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::InvalidReference(_) | Error::Invalid(_) => 2,
            Error::DigestMismatch { .. } | Error::Unverified { .. } => 4,
            Error::Unreachable { .. } => 8,
            Error::Unauthorized { .. } => 9,
            Error::Forbidden { .. } => 10,
            Error::NotFound { .. } => 11,
            Error::ManifestUnknown { .. } => 12,
            Error::Remote { .. } | Error::Io { .. } => 1,
        }
    }

    /// A stable name for `--json` errors.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidReference(_) => "invalid_reference",
            Error::Invalid(_) => "invalid_input",
            Error::Unreachable { .. } => "registry_unreachable",
            Error::Unauthorized { .. } => "registry_unauthorized",
            Error::Forbidden { .. } => "registry_forbidden",
            Error::NotFound { .. } => "registry_not_found",
            Error::ManifestUnknown { .. } => "manifest_unknown",
            Error::Remote { .. } => "registry_error",
            Error::DigestMismatch { .. } => "digest_mismatch",
            Error::Unverified { .. } => "not_verified",
            Error::Io { .. } => "io_error",
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Content with its media type and digest: a layer, a config, a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        let digest = sha256_digest(&bytes);
        Blob {
            media_type: media_type.to_string(),
            bytes,
            digest,
        }
    }

    /// The descriptor a manifest uses to point at this blob.
    pub fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        })
    }
}

/// `sha256:<64 hex digits>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
