//! hoist-server: loads ONNX model packages (one, or many by name) and serves them over
//! the Open Inference Protocol v2 (with its model repository extension) and the MLflow
//! scoring protocol, with health, metrics and admin reload.
//!
//! # Layout
//! - [`cli`]: the `hoist-server` command line, [`cli::main_with_args`] (also behind `hoist serve`).
//! - [`server`]: `run(listener, config, admin, shutdown)`, reload, auto-refresh, signals.
//! - [`grpc`]: the Open Inference Protocol over gRPC (`--grpc-port`), sharing the REST state.
//! - [`http`]: routes and protocols: [`http::v2`], [`http::mlflow`], [`http::image`], [`http::admin`].
//! - [`repository`]: the models served, by name; load, reload, unload, the index.
//! - [`model`]: a loaded model: package + runtime + executor; request validation.
//! - [`executor`]: worker threads, bounded queue, adaptive batching.
//! - [`runtime`]: the runtime interface; ONNX Runtime and tract.
//! - [`package`]: reading MLflow model directories and `.onnx` files; digests.
//! - [`tensor`]: datatypes and tensor buffers, JSON and binary encodings.
//! - [`metrics`]: Prometheus metrics.

pub mod cli;
pub mod executor;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod model;
pub mod package;
pub mod repository;
pub mod runtime;
pub mod server;
pub mod tensor;

pub use server::{Config, ServeError, run, run_with_grpc};

/// Entry points for the fuzz targets in `crates/server/fuzz`: the body parsers of
/// both protocols, from raw bytes to checked tensors, with no HTTP and no runtime.
/// Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use axum::http::{HeaderMap, HeaderValue};

    use crate::http::mlflow::{Signature, parse_body};
    use crate::model::validate_inputs;
    use crate::runtime::IoSpec;
    use crate::tensor::{DataType, Tensor};

    /// Checks what every parser promises of the tensors it returns: the shape holds
    /// exactly the elements sent.
    fn check(tensors: &[Tensor]) {
        for t in tensors {
            let n = crate::tensor::element_count(&t.shape).expect("a returned shape overflows");
            assert_eq!(n, t.data.len(), "shape {:?} vs data", t.shape);
        }
    }

    fn spec(name: &str, datatype: DataType, shape: &[i64]) -> IoSpec {
        IoSpec {
            name: name.into(),
            datatype,
            shape: shape.to_vec(),
        }
    }

    /// An Open Inference Protocol request: `header_len` is the
    /// `Inference-Header-Content-Length` header (if any), `body` the whole body.
    pub fn oip_request(header_len: Option<&[u8]>, body: &[u8]) {
        let mut headers = HeaderMap::new();
        if let Some(v) = header_len.and_then(|v| HeaderValue::from_bytes(v).ok()) {
            headers.insert(crate::http::v2::HEADER_LEN, v);
        }
        if let Ok((_, tensors)) = crate::http::v2::parse_request(&headers, body) {
            check(&tensors);
            let specs = [spec("input", DataType::F32, &[-1, 4])];
            if let Ok(t) = validate_inputs(&specs, tensors) {
                check(&t);
            }
        }
    }

    /// An MLflow `/invocations` body with the given content type (`text/csv` or
    /// JSON), parsed for a one-input model with a column signature and for a
    /// two-input model.
    pub fn mlflow_request(content_type: &str, body: &[u8]) {
        let one = [spec("input", DataType::F32, &[-1, 3])];
        let columns = ["a".to_string(), "b".to_string(), "c".to_string()];
        let two = [
            spec("x", DataType::I64, &[-1, 1]),
            spec("y", DataType::F64, &[-1]),
        ];
        let sigs = [
            Signature {
                inputs: &one,
                columns: Some(&columns),
            },
            Signature {
                inputs: &one,
                columns: None,
            },
            Signature {
                inputs: &two,
                columns: None,
            },
        ];
        for sig in sigs {
            if let Ok(tensors) = parse_body(&sig, content_type, body) {
                check(&tensors);
                if let Ok(t) = validate_inputs(sig.inputs, tensors) {
                    check(&t);
                }
            }
        }
    }
}
