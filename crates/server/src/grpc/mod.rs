//! The Open Inference Protocol over gRPC: KServe v2's `inference.GRPCInferenceService`
//! (`ServerLive`, `ServerReady`, `ModelReady`, `ServerMetadata`, `ModelMetadata`,
//! `ModelInfer` with typed contents or `raw_input_contents`/`raw_output_contents`),
//! on its own port (`--grpc-port`), beside the REST routes and sharing their state.
//!
//! # Layout
//! - [`proto`]: the messages, server and client, generated from
//!   `crates/server/proto/grpc_predict_v2.proto` by `tools/grpc-codegen.sh` and
//!   committed (no proto compiler at build time).
//! - [`service`]: the RPCs, over [`crate::http::AppState`].
//! - [`convert`]: tensors to and from the messages, with the REST side's checks.

pub mod convert;
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto;
pub mod service;

use std::future::Future;

use tokio::net::TcpListener;

use crate::http::Shared;
use proto::grpc_inference_service_server::GrpcInferenceServiceServer;

/// Serves the gRPC service on `listener` until `shutdown` completes; calls in
/// flight then finish. Messages up to the server's body limit (`--max-body-bytes`)
/// are accepted; larger ones get `RESOURCE_EXHAUSTED`.
pub async fn serve(
    listener: TcpListener,
    state: Shared,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let max = state.max_body;
    let svc = GrpcInferenceServiceServer::new(service::Service { state })
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX);
    tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    /// The committed generated code was made from the proto as it is now: run
    /// `tools/grpc-codegen.sh` after changing the proto.
    #[test]
    fn generated_code_is_current() {
        let proto = include_bytes!("../../proto/grpc_predict_v2.proto");
        let generated = include_str!("proto.rs");
        let want = format!("// proto sha256: {:x}", sha2::Sha256::digest(proto));
        assert!(
            generated.lines().take(3).any(|l| l == want),
            "src/grpc/proto.rs is not generated from the current proto/grpc_predict_v2.proto \
             (want the line {want:?}): run tools/grpc-codegen.sh"
        );
    }
}
