//! What hoist's parts agree on, with no I/O of its own beyond reading a package to
//! digest or check it:
//!
//! - [`digest`]: the digest that identifies a model package (`sha256:<hex>`), and
//!   [`package`]: the check of the files a package names; [`onnx`]: building test
//!   packages.
//! - [`wire`]: the wire contract, defined once: header names, metric names and labels,
//!   registry tag keys, the prediction-class count.
//! - [`api`]: the daemon API's requests and answers, as the daemon sends them and the
//!   CLI reads them.
//! - [`secret`]: secrets from `VAR` or the file `VAR_FILE` names, re-read when the
//!   file is rotated.
//! - [`error`]: [`ErrorCode`], every failure the API answers with, its HTTP status and
//!   the CLI's exit code for it.

pub mod api;
pub mod digest;
pub mod error;
pub mod onnx;
pub mod package;
pub mod secret;
pub mod signature;
pub mod time;
pub mod wire;

pub use digest::{collect_files, digest_path, hash_file, hex};
pub use error::ErrorCode;
pub use package::{PackageError, PackageFiles, check_package};
pub use secret::{Secret, SecretError};
