//! `inference.GRPCInferenceService` over the same [`AppState`](crate::http::AppState)
//! as the REST routes: the same model (swapped atomically on reload), the same
//! executor, the same input checks ([`Model::infer`]), the same metrics.
//!
//! Errors map as the REST side's statuses do: bad input → `INVALID_ARGUMENT` (400),
//! unknown model or version → `NOT_FOUND` (404), no model yet or a full queue →
//! `UNAVAILABLE` (503), the model failing on valid input → `INTERNAL` (500).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use tonic::{Code, Request, Response, Status};

use super::convert;
use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::{
    InferParameter, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelMetadataResponse, ModelReadyRequest, ModelReadyResponse, ServerLiveRequest,
    ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest,
    ServerReadyResponse, infer_parameter::ParameterChoice,
};
use crate::http::Shared;
use crate::metrics::Route;
use crate::model::{InferError, Model};
use crate::repository::LookupError;
use crate::runtime::IoSpec;

/// The service; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Service {
    pub(super) state: Shared,
}

/// The HTTP status the metrics count a gRPC answer under, so that error rates read
/// the same whichever protocol a client used.
fn http_status(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => 400,
        Code::NotFound => 404,
        Code::Unavailable | Code::ResourceExhausted => 503,
        Code::DeadlineExceeded => 504,
        Code::Cancelled => 499,
        _ => 500,
    }
}

impl Service {
    /// Runs `f`, counting it in the request metrics and turning a panic into
    /// `INTERNAL` for this one call (as the REST middleware does).
    /// `model`: the model the call names (counted under it when the server knows it).
    async fn tracked<T>(
        &self,
        route: Route,
        model: Option<&str>,
        f: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let metrics = match model {
            Some(name) => self.state.models.metrics_for(Some(name)),
            None => self.state.metrics.unrouted().clone(),
        };
        let start = Instant::now();
        metrics.request_started();
        let result = match AssertUnwindSafe(f).catch_unwind().await {
            Ok(r) => r,
            Err(_) => Err(Status::internal(
                "internal error while handling the request (see the server log)",
            )),
        };
        let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
        metrics.request_finished(route, http_status(code), start.elapsed());
        result.map(Response::new)
    }

    /// The served model `name` (and `version`, when not empty).
    fn lookup(&self, name: &str, version: &str) -> Result<Arc<Model>, Status> {
        let version = (!version.is_empty()).then_some(version);
        self.state.models.find(name, version).map_err(|e| match e {
            LookupError::NotFound(m) => Status::not_found(m),
            LookupError::Loading(m) => Status::unavailable(m),
        })
    }

    async fn infer(&self, mut req: ModelInferRequest) -> Result<ModelInferResponse, Status> {
        let model = self.lookup(&req.model_name, &req.model_version)?;
        let raw = !req.raw_input_contents.is_empty();
        let inputs = convert::request_tensors(&mut req).map_err(Status::invalid_argument)?;
        if let Some(bad) = req
            .outputs
            .iter()
            .find(|o| !model.outputs.iter().any(|s| s.name == o.name))
        {
            let names: Vec<&str> = model.outputs.iter().map(|s| s.name.as_str()).collect();
            return Err(Status::invalid_argument(format!(
                "unknown output '{}'; the model's outputs are {names:?}",
                bad.name
            )));
        }
        let outputs = model.infer(inputs).await.map_err(|e| match e {
            InferError::BadInput(m) => Status::invalid_argument(m),
            InferError::Overloaded => Status::unavailable(e.to_string()),
            InferError::Model(m) => Status::internal(m),
        })?;
        // Requested outputs in the order asked, or every output in model order.
        let selected: Vec<_> = if req.outputs.is_empty() {
            outputs.iter().collect()
        } else {
            req.outputs
                .iter()
                .filter_map(|w| outputs.iter().find(|o| o.name == w.name))
                .collect()
        };
        let mut resp = ModelInferResponse {
            model_name: model.package.name.clone(),
            model_version: model.package.version.clone(),
            id: std::mem::take(&mut req.id),
            ..Default::default()
        };
        for t in selected {
            let mut parameters = std::collections::HashMap::new();
            if let Some(l) = model.class_labels(&t.name) {
                parameters.insert(
                    "class_labels".to_string(),
                    InferParameter {
                        parameter_choice: Some(ParameterChoice::StringParam(
                            l.to_json().to_string(),
                        )),
                    },
                );
            }
            // Raw answers to raw requests (as Triton's clients expect), typed
            // contents to typed ones (as KServe's do).
            let contents = if raw {
                resp.raw_output_contents.push(convert::raw(&t.data));
                None
            } else {
                Some(convert::contents(&t.data))
            };
            resp.outputs.push(InferOutputTensor {
                name: t.name.clone(),
                datatype: t.data.datatype().as_str().to_string(),
                shape: t.shape.iter().map(|&d| d as i64).collect(),
                parameters,
                contents,
            });
        }
        Ok(resp)
    }
}

fn tensor_metadata(specs: &[IoSpec]) -> Vec<TensorMetadata> {
    specs
        .iter()
        .map(|s| TensorMetadata {
            name: s.name.clone(),
            datatype: s.datatype.as_str().to_string(),
            shape: s.shape.clone(),
        })
        .collect()
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        self.tracked(Route::Health, None, async {
            Ok(ServerLiveResponse { live: true })
        })
        .await
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = self.state.is_ready();
        self.tracked(Route::Health, None, async move {
            Ok(ServerReadyResponse { ready })
        })
        .await
    }

    /// An unknown model or version is not ready (`ready: false`), not an error:
    /// that is what Triton answers and what its clients' `is_model_ready` expects.
    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let r = request.into_inner();
        let ready = self.state.ready.load(std::sync::atomic::Ordering::Acquire)
            && self.lookup(&r.name, &r.version).is_ok();
        self.tracked(Route::Health, Some(&r.name), async move {
            Ok(ModelReadyResponse { ready })
        })
        .await
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        self.tracked(Route::Health, None, async {
            Ok(ServerMetadataResponse {
                name: "hoist-server".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                extensions: vec!["binary_tensor_data".into()],
            })
        })
        .await
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let name = r.name.clone();
        self.tracked(Route::V2Metadata, Some(&name), async move {
            let model = self.lookup(&r.name, &r.version)?;
            Ok(ModelMetadataResponse {
                name: model.package.name.clone(),
                versions: vec![model.package.version.clone()],
                platform: model.runtime.platform().into(),
                inputs: tensor_metadata(&model.inputs),
                outputs: tensor_metadata(&model.outputs),
            })
        })
        .await
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let req = request.into_inner();
        let name = req.model_name.clone();
        self.tracked(Route::GrpcInfer, Some(&name), self.infer(req))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_count_as_the_rest_statuses() {
        assert_eq!(http_status(Code::Ok), 200);
        assert_eq!(http_status(Code::InvalidArgument), 400);
        assert_eq!(http_status(Code::NotFound), 404);
        assert_eq!(http_status(Code::Unavailable), 503);
        assert_eq!(http_status(Code::Internal), 500);
    }
}
