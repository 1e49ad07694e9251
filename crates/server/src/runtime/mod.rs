//! The inference runtimes: one small interface, two implementations.
//!
//! - [`onnxruntime`]: ONNX Runtime loaded at run time from `libonnxruntime.so`
//!   (the reference implementation MLflow's onnx flavor and MLServer use).
//! - [`tract`]: tract, pure Rust, the fallback when no ONNX Runtime library is found,
//!   with hoist's own ONNX-ML operators ([`tract_ops`]) where tract's are missing or wrong.
//!
//! Before either sees a model, [`prepare`] rewrites what no runtime serves as a tensor
//! (a `ZipMap` output) and reads the model's IR version and opsets for messages.
//!
//! A runtime is synchronous and thread-safe; callers run it off the async reactor
//! (see [`crate::executor`]). It never sees HTTP.

pub mod onnxruntime;
pub mod prepare;
pub mod tract;
pub mod tract_ops;

use std::path::{Path, PathBuf};

use crate::tensor::{DataType, Tensor};

/// Which runtime serves a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeChoice {
    /// ONNX Runtime when its library is found and it loads the model, else tract.
    Auto,
    /// ONNX Runtime only; fail if its library is not found.
    Onnxruntime,
    /// tract only (pure Rust, nothing to install).
    Tract,
}

/// The runtime actually in use, as named in metadata and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    OnnxRuntime,
    Tract,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::OnnxRuntime => "onnxruntime",
            RuntimeKind::Tract => "tract",
        }
    }

    /// The platform string of the Open Inference Protocol model metadata.
    pub fn platform(self) -> &'static str {
        match self {
            RuntimeKind::OnnxRuntime => "onnxruntime_onnx",
            RuntimeKind::Tract => "tract_onnx",
        }
    }
}

/// One model input or output as the model declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoSpec {
    pub name: String,
    pub datatype: DataType,
    /// Dimensions; `-1` for a variable one.
    pub shape: Vec<i64>,
}

impl IoSpec {
    /// Whether a concrete shape fits this declared shape.
    pub fn accepts(&self, shape: &[usize]) -> bool {
        self.shape.len() == shape.len()
            && self
                .shape
                .iter()
                .zip(shape)
                .all(|(&want, &got)| want < 0 || want as usize == got)
    }

    /// The declared shape for messages: `[-1, 30]`.
    pub fn shape_str(&self) -> String {
        format!("{:?}", self.shape)
    }
}

/// Errors loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found (looked for {looked}); install it with `hoist runtime install onnxruntime`, set ORT_DYLIB_PATH or pass --onnxruntime PATH, or use --runtime tract"
    )]
    OrtNotFound { looked: String },
    #[error("ONNX Runtime failed to load from {path}: {message}")]
    OrtLoad { path: PathBuf, message: String },
    #[error("{runtime} cannot load the model {path}: {message}")]
    Load {
        runtime: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("inference failed: {0}")]
    Run(String),
}

/// A loaded model, ready to run. Implementations are thread-safe.
pub trait Runtime: Send + Sync {
    fn kind(&self) -> RuntimeKind;
    fn inputs(&self) -> &[IoSpec];
    fn outputs(&self) -> &[IoSpec];
    /// Runs the model. `inputs` are in the order of [`Runtime::inputs`] with the
    /// declared datatypes and accepted shapes (the caller checks). Outputs come back
    /// in the order of [`Runtime::outputs`].
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError>;
    /// Why this runtime serves, when `--runtime auto` chose it.
    fn selection(&self) -> Option<&str> {
        None
    }
}

/// Options for loading a model into a runtime.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub choice: RuntimeChoice,
    /// An explicit `libonnxruntime.so`; else `ORT_DYLIB_PATH`, else the usual places.
    pub onnxruntime_lib: Option<PathBuf>,
    /// How many inferences may run at once (worker threads).
    pub parallelism: usize,
}

/// Loads `model` (an `.onnx` file) with the runtime `opts` selects (after [`prepare`]).
///
/// `auto` prefers ONNX Runtime; when its library is missing or it cannot load
/// this model, tract serves it, and when tract cannot either the error names
/// both causes. Why the runtime serving was chosen is logged and kept in
/// [`Runtime::selection`] (the server reports it with the runtime's name).
pub fn load(model: &Path, opts: &LoadOptions) -> Result<Box<dyn Runtime>, RuntimeError> {
    load_prepared(&prepare::prepare(model)?, opts)
}

/// Loads a prepared model with the runtime `opts` selects. With `auto`, a model ONNX
/// Runtime cannot load is tried on tract, and the log says why tract serves it.
pub fn load_prepared(
    model: &prepare::Prepared,
    opts: &LoadOptions,
) -> Result<Box<dyn Runtime>, RuntimeError> {
    let bytes = model.bytes();
    let ort = |lib: &Path| -> Result<Box<dyn Runtime>, RuntimeError> {
        onnxruntime::OrtRuntime::load_from(&model.path, bytes.as_deref(), lib, opts.parallelism)
            .map(|r| Box::new(r) as Box<dyn Runtime>)
            .map_err(|e| explain_versions(e, model))
    };
    let tract = || -> Result<Box<dyn Runtime>, RuntimeError> {
        tract::TractRuntime::load_from(&model.path, model.rewritten.as_ref())
            .map(|r| Box::new(r) as Box<dyn Runtime>)
    };
    match opts.choice {
        RuntimeChoice::Tract => tract(),
        RuntimeChoice::Onnxruntime => {
            let lib = onnxruntime::find_library(opts.onnxruntime_lib.as_deref())?;
            ort(&lib).map_err(|e| match e {
                RuntimeError::Load { message, .. } if is_version_error(&message) => {
                    match tract() {
                        Ok(_) => RuntimeError::Load {
                            runtime: "onnxruntime",
                            path: model.path.clone(),
                            message: format!(
                                "{message}; tract loads it: serve it with --runtime tract (or auto), or install a newer ONNX Runtime"
                            ),
                        },
                        Err(_) => RuntimeError::Load {
                            runtime: "onnxruntime",
                            path: model.path.clone(),
                            message,
                        },
                    }
                }
                other => other,
            })
        }
        RuntimeChoice::Auto => {
            let ort_failure = match onnxruntime::find_library(opts.onnxruntime_lib.as_deref()) {
                Ok(lib) => match ort(&lib) {
                    Ok(rt) => {
                        let why = format!("ONNX Runtime library found at {}", lib.display());
                        tracing::info!(runtime = "onnxruntime", reason = %why, "runtime selected");
                        return Ok(Box::new(Selected::new(rt, why)));
                    }
                    Err(e) => e,
                },
                Err(e) => e,
            };
            let why = match &ort_failure {
                RuntimeError::OrtNotFound { .. } => "no ONNX Runtime library found".to_string(),
                other => format!("ONNX Runtime could not serve the model ({other})"),
            };
            match tract() {
                Ok(rt) => {
                    tracing::info!(runtime = "tract", reason = %why, "runtime selected");
                    Ok(Box::new(Selected::new(rt, why)))
                }
                Err(tract_failure) => Err(match ort_failure {
                    // Without ORT, tract's error is the one to act on, and installing
                    // ONNX Runtime is the way out: say how.
                    RuntimeError::OrtNotFound { .. } => match tract_failure {
                        RuntimeError::Load {
                            runtime,
                            path,
                            message,
                        } => RuntimeError::Load {
                            runtime,
                            path,
                            message: format!("{message}; {NO_ORT_HINT}"),
                        },
                        other => other,
                    },
                    ort_failure => RuntimeError::Load {
                        runtime: "onnxruntime or tract",
                        path: model.path.clone(),
                        message: format!("{ort_failure}; and then {tract_failure}"),
                    },
                }),
            }
        }
    }
}

/// What a model tract cannot load needs, when no ONNX Runtime library is present.
const NO_ORT_HINT: &str = "no ONNX Runtime library was found to try instead: install it with `hoist runtime install onnxruntime`";

/// A runtime `auto` picked, with the reason.
struct Selected {
    inner: Box<dyn Runtime>,
    why: String,
}

impl Selected {
    fn new(inner: Box<dyn Runtime>, why: String) -> Self {
        Selected { inner, why }
    }
}

impl Runtime for Selected {
    fn kind(&self) -> RuntimeKind {
        self.inner.kind()
    }
    fn inputs(&self) -> &[IoSpec] {
        self.inner.inputs()
    }
    fn outputs(&self) -> &[IoSpec] {
        self.inner.outputs()
    }
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        self.inner.run(inputs)
    }
    fn selection(&self) -> Option<&str> {
        Some(&self.why)
    }
}

/// Whether a runtime's load error is about the model's IR or opset version.
fn is_version_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("ir version") || m.contains("opset")
}

/// An ONNX Runtime load error about versions, with the model's own versions and the
/// ONNX Runtime library's named.
fn explain_versions(e: RuntimeError, model: &prepare::Prepared) -> RuntimeError {
    match e {
        RuntimeError::Load {
            runtime,
            path,
            message,
        } if is_version_error(&message) => RuntimeError::Load {
            runtime,
            path,
            message: format!(
                "ONNX Runtime {} cannot take this model's versions ({}): {message}",
                onnxruntime::library_version(),
                model.versions()
            ),
        },
        other => other,
    }
}
