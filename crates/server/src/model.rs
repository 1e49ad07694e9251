//! A loaded model: its package, its runtime, and the executor that runs it.
//!
//! Loading reads the package, loads the runtime, and checks the model by running its
//! input example, all before the model may serve. Requests are validated here
//! (names, datatypes, shapes) so every protocol gives the same clear 400s.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::executor::{BatchConfig, ExecError, Executor};
use crate::metrics::{ModelInfo, ModelMetrics};
use crate::package::{Package, PackageError};
use crate::runtime::prepare::{ClassLabels, ZipMapOutput};
use crate::runtime::{self, IoSpec, LoadOptions, RuntimeError, RuntimeKind};
use crate::tensor::{DataType, Tensor, TensorData, TensorError};

/// How to load and run models; fixed for the life of the server.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    pub name: Option<String>,
    pub version: Option<String>,
    pub load: LoadOptions,
    pub workers: usize,
    pub queue: usize,
    pub batch: BatchConfig,
    /// Bin edges for a model without a label output whose answer is one number per
    /// row (a regressor): each value is counted in `hoist_predictions_total` under the
    /// index of its bin (values below the first edge: 0; from edge `i - 1` to below
    /// edge `i`: `i`), so prediction drift can be judged on it like classes. Empty:
    /// values are not counted. Ascending and finite (see [`parse_bins`]).
    pub prediction_bins: Vec<f64>,
}

/// Most bin edges: the bins must fit the classes `hoist_predictions_total` counts.
pub const MAX_PREDICTION_BIN_EDGES: usize = crate::metrics::PREDICTION_CLASSES - 1;

/// Parse comma-separated bin edges (`50,100,150`): finite, strictly ascending, at
/// most [`MAX_PREDICTION_BIN_EDGES`].
pub fn parse_bins(s: &str) -> Result<Vec<f64>, String> {
    let edges = s
        .split(',')
        .map(|v| {
            let v = v.trim();
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("`{v}` is not a finite number"))
        })
        .collect::<Result<Vec<f64>, String>>()?;
    if let Some(w) = edges.windows(2).find(|w| w[0] >= w[1]) {
        return Err(format!(
            "bin edges must be strictly ascending; {} is followed by {}",
            w[0], w[1]
        ));
    }
    if edges.len() > MAX_PREDICTION_BIN_EDGES {
        return Err(format!(
            "{} bin edges; at most {MAX_PREDICTION_BIN_EDGES} are counted",
            edges.len()
        ));
    }
    Ok(edges)
}

/// The bin of `value` among ascending `edges` (NaN: the `other` slot).
fn bin_of(edges: &[f64], value: f64) -> i64 {
    if value.is_nan() {
        return -1;
    }
    edges.partition_point(|e| *e <= value) as i64
}

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("the model loaded but failed on its own input example: {0}")]
    Check(String),
}

/// Why a request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The client sent something the model cannot take (400).
    #[error("{0}")]
    BadInput(String),
    /// The queue is full (503).
    #[error("server overloaded: too many requests queued; retry shortly")]
    Overloaded,
    /// The model failed on valid-looking input (500 is reserved for this).
    #[error("{0}")]
    Model(String),
}

impl From<TensorError> for InferError {
    fn from(e: TensorError) -> Self {
        InferError::BadInput(e.0)
    }
}

impl From<ExecError> for InferError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Overloaded => InferError::Overloaded,
            ExecError::Stopped => InferError::Model(e.to_string()),
            ExecError::Runtime(r) => InferError::Model(r.to_string()),
        }
    }
}

/// A model ready to serve.
pub struct Model {
    pub package: Package,
    pub runtime: RuntimeKind,
    /// Why `--runtime auto` chose this runtime (None when it was named).
    pub runtime_selection: Option<String>,
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
    /// Outputs that were `ZipMap`s (sequences of maps) and are served as their
    /// `[n, classes]` probability tensor, with their class labels.
    pub zipmaps: Vec<ZipMapOutput>,
    /// The predicted label: the first integer output of rank 1 (or, beside a `ZipMap`,
    /// the first string output of rank 1), whose classes are counted for drift analysis.
    label_output: Option<usize>,
    /// The class labels string predictions are counted by (their column index).
    string_classes: Option<ClassLabels>,
    /// Without a label output and with `prediction_bins`: the first floating-point
    /// output of one value per row, whose values are counted by bin instead.
    value_output: Option<usize>,
    /// `ModelOptions::prediction_bins`.
    bins: Arc<[f64]>,
    pub load_time: Duration,
    pub loaded_at: SystemTime,
    executor: Executor,
    metrics: Arc<ModelMetrics>,
}

impl Model {
    /// Loads and checks the package at `path`. Blocking: call it off the reactor.
    pub fn load(
        path: &Path,
        opts: &ModelOptions,
        metrics: Arc<ModelMetrics>,
    ) -> Result<Model, LoadError> {
        let start = Instant::now();
        let package = Package::read(path, opts.name.as_deref(), opts.version.as_deref())?;
        let prepared = runtime::prepare::prepare(&package.onnx_path)?;
        let rt: Arc<dyn runtime::Runtime> =
            Arc::from(runtime::load_prepared(&prepared, &opts.load)?);
        let zipmaps = prepared.zipmaps;
        let outputs = rt.outputs().to_vec();
        // A string label beside a ZipMap with string classes is counted by class index.
        let string_classes = zipmaps
            .iter()
            .find(|z| matches!(z.labels, ClassLabels::Str(_)))
            .map(|z| z.labels.clone());
        let label_output = outputs.iter().position(|o| {
            o.shape.len() == 1
                && (matches!(o.datatype, DataType::I64 | DataType::I32)
                    || (o.datatype == DataType::Bytes && string_classes.is_some()))
        });
        let value_output = if label_output.is_none() && !opts.prediction_bins.is_empty() {
            outputs.iter().position(|o| {
                matches!(o.datatype, DataType::F32 | DataType::F64)
                    && (o.shape.len() == 1 || (o.shape.len() == 2 && o.shape[1] == 1))
            })
        } else {
            None
        };
        let model = Model {
            runtime: rt.kind(),
            runtime_selection: rt.selection().map(str::to_string),
            inputs: rt.inputs().to_vec(),
            outputs,
            zipmaps,
            label_output,
            string_classes,
            value_output,
            bins: opts.prediction_bins.clone().into(),
            executor: Executor::new(rt, opts.workers, opts.queue, opts.batch, metrics.clone()),
            package,
            load_time: Duration::ZERO,
            loaded_at: SystemTime::now(),
            metrics,
        };
        model.check()?;
        Ok(Model {
            load_time: start.elapsed(),
            ..model
        })
    }

    /// Runs the package's input example, if it has one, and checks the outputs are
    /// what the model declares.
    fn check(&self) -> Result<(), LoadError> {
        let Some(example) = &self.package.input_example else {
            return Ok(());
        };
        let inputs = crate::http::mlflow::example_inputs(self, example)
            .map_err(|e| LoadError::Check(format!("input example: {e}")))?;
        let inputs = self
            .validate(inputs)
            .map_err(|e| LoadError::Check(e.to_string()))?;
        let outputs = self
            .executor
            .submit_blocking(inputs)
            .map_err(|e| LoadError::Check(e.to_string()))?;
        // Type and rank must be what the model declares; fixed dimensions need not be:
        // converters declare some wrongly (onnxmltools' LightGBM classifier declares its
        // label `[1]` and answers one per row), and ONNX Runtime and MLflow serve those.
        for (o, spec) in outputs.iter().zip(&self.outputs) {
            if o.data.datatype() != spec.datatype || o.shape.len() != spec.shape.len() {
                return Err(LoadError::Check(format!(
                    "output '{}' came back as {} {:?}, the model declares {} {}",
                    o.name,
                    o.data.datatype(),
                    o.shape,
                    spec.datatype,
                    spec.shape_str()
                )));
            }
        }
        Ok(())
    }

    /// What `/metrics` says about this model.
    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            name: self.package.name.clone(),
            version: self.package.version.clone(),
            digest: self.package.digest.clone(),
            runtime: self.runtime.as_str().to_string(),
            label_output: self
                .label_output
                .or(self.value_output)
                .map(|i| self.outputs[i].name.clone()),
        }
    }

    /// The class labels of output `name` if it was a `ZipMap`.
    pub fn class_labels(&self, name: &str) -> Option<&ClassLabels> {
        self.zipmaps
            .iter()
            .find(|z| z.output == name)
            .map(|z| &z.labels)
    }

    /// Puts `inputs` in the model's order and checks names, datatypes and shapes.
    pub fn validate(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError> {
        validate_inputs(&self.inputs, inputs)
    }

    /// Validates and runs one request.
    pub async fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError> {
        let inputs = self.validate(inputs)?;
        if inputs.iter().any(|t| t.shape.contains(&0)) {
            return Err(InferError::BadInput("inputs must not be empty".into()));
        }
        let outputs = self.executor.submit(inputs).await.map_err(|e| match e {
            ExecError::Overloaded => {
                self.metrics.rejected();
                InferError::Overloaded
            }
            // The signature could not check every dimension the client chose: the
            // runtime's complaint is about the input, and the client must hear it.
            ExecError::Runtime(RuntimeError::Run(msg)) if !fully_checked(&self.inputs) => {
                InferError::BadInput(format!(
                    "the model cannot run on this input (its declared shapes are {}): {msg}",
                    self.inputs
                        .iter()
                        .map(|s| format!("'{}' {}", s.name, s.shape_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
            // Input that fits the declared signature and still fails is the model's
            // fault (a batch size baked into the graph, say): 500, which the release
            // analysis counts against the model.
            other => InferError::from(other),
        })?;
        if let Some(t) = self.label_output.and_then(|i| outputs.get(i)) {
            match &t.data {
                TensorData::I64(v) => self.metrics.observe_predictions(v.iter().copied()),
                TensorData::I32(v) => self
                    .metrics
                    .observe_predictions(v.iter().map(|&x| i64::from(x))),
                // Unknown strings go to the `other` slot (-1), like NaN values.
                TensorData::Bytes(v) => {
                    if let Some(classes) = &self.string_classes {
                        self.metrics.observe_predictions(
                            v.iter()
                                .map(|s| classes.index_of_str(s).map_or(-1, |i| i as i64)),
                        )
                    }
                }
                _ => {}
            }
        } else if let Some(t) = self.value_output.and_then(|i| outputs.get(i)) {
            let bins = &self.bins;
            match &t.data {
                TensorData::F32(v) => self
                    .metrics
                    .observe_predictions(v.iter().map(|&x| bin_of(bins, f64::from(x)))),
                TensorData::F64(v) => self
                    .metrics
                    .observe_predictions(v.iter().map(|&x| bin_of(bins, x))),
                _ => {}
            }
        }
        Ok(outputs)
    }
}

/// Puts `inputs` in the order of `specs` and checks names, datatypes and shapes: a
/// shape that does not fit (batch size or feature count) names what was expected and
/// what was sent.
pub fn validate_inputs(
    specs: &[IoSpec],
    mut inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>, InferError> {
    let names = || {
        specs
            .iter()
            .map(|s| format!("'{}'", s.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(unknown) = inputs
        .iter()
        .find(|t| !specs.iter().any(|s| s.name == t.name))
    {
        return Err(InferError::BadInput(format!(
            "unknown input '{}'; the model takes {}",
            unknown.name,
            names()
        )));
    }
    let mut ordered = Vec::with_capacity(specs.len());
    for spec in specs {
        let pos = inputs
            .iter()
            .position(|t| t.name == spec.name)
            .ok_or_else(|| {
                InferError::BadInput(format!(
                    "missing input '{}' ({} {}); the model takes {}",
                    spec.name,
                    spec.datatype,
                    spec.shape_str(),
                    names()
                ))
            })?;
        let t = inputs.swap_remove(pos);
        if t.data.datatype() != spec.datatype {
            return Err(InferError::BadInput(format!(
                "input '{}' has datatype {}, the model expects {} with shape {}",
                spec.name,
                t.data.datatype(),
                spec.datatype,
                spec.shape_str()
            )));
        }
        if !spec.accepts(&t.shape) {
            return Err(InferError::BadInput(format!(
                "input '{}' has shape {:?}, the model expects shape {} (-1 is any size)",
                spec.name,
                t.shape,
                spec.shape_str()
            )));
        }
        ordered.push(t);
    }
    if let Some(dup) = inputs.first() {
        return Err(InferError::BadInput(format!(
            "input '{}' was sent twice",
            dup.name
        )));
    }
    Ok(ordered)
}

/// Whether [`validate_inputs`] checks every dimension of every input but the batch
/// one: true when the declared shapes fix all dimensions after the first. When they
/// do not, a runtime failure may be the client's doing (a feature count the graph
/// cannot take), and is answered 400 with the runtime's message.
pub fn fully_checked(specs: &[IoSpec]) -> bool {
    specs
        .iter()
        .all(|s| s.shape.iter().skip(1).all(|&d| d >= 0))
}

#[cfg(test)]
mod input_checks {
    use super::*;

    fn spec(shape: &[i64]) -> IoSpec {
        IoSpec {
            name: "input".into(),
            datatype: DataType::F32,
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn only_a_free_batch_dimension_counts_as_fully_checked() {
        assert!(fully_checked(&[spec(&[-1, 30])]));
        assert!(fully_checked(&[spec(&[2, 30])]));
        assert!(!fully_checked(&[spec(&[-1, -1])]));
        assert!(!fully_checked(&[spec(&[-1, 3]), spec(&[-1, 3, -1])]));
    }

    #[test]
    fn batch_and_feature_mismatches_name_expected_and_got() {
        let specs = [spec(&[-1, 30])];
        let t = Tensor::new("input", vec![2, 29], TensorData::F32(vec![0.0; 58])).unwrap();
        let err = validate_inputs(&specs, vec![t]).unwrap_err().to_string();
        assert!(err.contains("[2, 29]") && err.contains("[-1, 30]"), "{err}");
        let specs = [spec(&[2, 30])];
        let t = Tensor::new("input", vec![1, 30], TensorData::F32(vec![0.0; 30])).unwrap();
        let err = validate_inputs(&specs, vec![t]).unwrap_err().to_string();
        assert!(err.contains("[1, 30]") && err.contains("[2, 30]"), "{err}");
    }
}
