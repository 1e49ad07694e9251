//! A loaded model: its package, its runtime, and the executor that runs it.
//!
//! Loading reads the package, loads the runtime, and checks the model by running its
//! input example, all before the model may serve. Requests are validated here
//! (names, datatypes, shapes) so every protocol gives the same clear 400s.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::executor::{BatchConfig, ExecError, Executor};
use crate::metrics::{Metrics, ModelInfo};
use crate::package::{Package, PackageError};
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
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
    /// The predicted label: the first integer output of rank 1, whose classes are
    /// counted for drift analysis.
    label_output: Option<usize>,
    pub load_time: Duration,
    pub loaded_at: SystemTime,
    executor: Executor,
    metrics: Arc<Metrics>,
}

impl Model {
    /// Loads and checks the package at `path`. Blocking: call it off the reactor.
    pub fn load(
        path: &Path,
        opts: &ModelOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Model, LoadError> {
        let start = Instant::now();
        let package = Package::read(path, opts.name.as_deref(), opts.version.as_deref())?;
        let rt: Arc<dyn runtime::Runtime> =
            Arc::from(runtime::load(&package.onnx_path, &opts.load)?);
        let outputs = rt.outputs().to_vec();
        let label_output = outputs.iter().position(|o| {
            o.shape.len() == 1 && matches!(o.datatype, DataType::I64 | DataType::I32)
        });
        let model = Model {
            runtime: rt.kind(),
            inputs: rt.inputs().to_vec(),
            outputs,
            label_output,
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
        for (o, spec) in outputs.iter().zip(&self.outputs) {
            if o.data.datatype() != spec.datatype || !spec.accepts(&o.shape) {
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
            label_output: self.label_output.map(|i| self.outputs[i].name.clone()),
        }
    }

    /// Puts `inputs` in the model's order and checks names, datatypes and shapes.
    pub fn validate(&self, mut inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError> {
        let names = || {
            self.inputs
                .iter()
                .map(|s| format!("'{}'", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(unknown) = inputs
            .iter()
            .find(|t| !self.inputs.iter().any(|s| s.name == t.name))
        {
            return Err(InferError::BadInput(format!(
                "unknown input '{}'; the model takes {}",
                unknown.name,
                names()
            )));
        }
        let mut ordered = Vec::with_capacity(self.inputs.len());
        for spec in &self.inputs {
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

    /// Validates and runs one request.
    pub async fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError> {
        let inputs = self.validate(inputs)?;
        if inputs.iter().any(|t| t.shape.contains(&0)) {
            return Err(InferError::BadInput("inputs must not be empty".into()));
        }
        let outputs = self.executor.submit(inputs).await.map_err(|e| {
            if matches!(e, ExecError::Overloaded) {
                self.metrics.rejected();
            }
            InferError::from(e)
        })?;
        if let Some(t) = self.label_output.and_then(|i| outputs.get(i)) {
            match &t.data {
                TensorData::I64(v) => self.metrics.observe_predictions(v.iter().copied()),
                TensorData::I32(v) => self
                    .metrics
                    .observe_predictions(v.iter().map(|&x| i64::from(x))),
                _ => {}
            }
        }
        Ok(outputs)
    }
}
