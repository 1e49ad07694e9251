//! The wire contract, defined once: what the gateway, the model server, the registry
//! and the daemon write and read of each other (header names, metric names and their
//! labels, registry tag keys, the prediction-class count). A change here is a change
//! users see: dashboards, alerts and scripts read these names.

/// Request headers the gateway reads, and answer headers it writes.
pub mod headers {
    /// The default header that forces a request to a variant (`stable`, `candidate`);
    /// `hoist.toml` may name another (`split.force_header`).
    pub const FORCE_VARIANT: &str = "x-hoist-variant";
    /// Answer header: the variant that served the request.
    pub const VARIANT: &str = "x-hoist-variant";
    /// Answer header: the model version that served the request.
    pub const VERSION: &str = "x-hoist-version";
    /// The request id the gateway passes on (and makes up when there is none).
    pub const REQUEST_ID: &str = "x-request-id";
    /// Release notifications (webhooks the daemon sends): the event's name, the
    /// delivery's id, its time (seconds since the epoch) and its HMAC signature.
    pub const EVENT: &str = "x-hoist-event";
    pub const DELIVERY: &str = "x-hoist-delivery";
    pub const TIMESTAMP: &str = "x-hoist-timestamp";
    pub const SIGNATURE: &str = "x-hoist-signature";
}

/// Metric names on `/metrics`, and the labels the daemon's analysis reads.
pub mod metrics {
    /// The gateway's requests, labels `env`, `variant`, `version`, `class`.
    pub const GATEWAY_REQUESTS: &str = "hoist_gateway_requests_total";
    /// Requests the force header sent to a variant (never part of analysis).
    pub const GATEWAY_FORCED_REQUESTS: &str = "hoist_gateway_forced_requests_total";
    /// The gateway's latency histogram, labels `env`, `variant`, `le`.
    pub const GATEWAY_REQUEST_DURATION: &str = "hoist_gateway_request_duration_seconds";
    /// Rows labelled through `POST /feedback`, labels `env`, `variant`, `version`, `result`.
    pub const GATEWAY_FEEDBACK_ROWS: &str = "hoist_gateway_feedback_rows_total";
    /// Percent of traffic routed to the candidate, label `env`.
    pub const GATEWAY_CANDIDATE_WEIGHT: &str = "hoist_gateway_candidate_weight";
    /// The model server's requests, labels `route`, `code`.
    pub const SERVER_REQUESTS: &str = "hoist_requests_total";
    /// The model server's latency histogram, labels `route`, `le`.
    pub const SERVER_REQUEST_DURATION: &str = "hoist_request_duration_seconds";
    pub const SERVER_INFERENCE_DURATION: &str = "hoist_inference_duration_seconds";
    pub const SERVER_BATCH_SIZE: &str = "hoist_batch_size";
    /// Predicted classes, label `class` (`0`..[`PREDICTION_CLASSES`](super::PREDICTION_CLASSES)
    /// and `other`).
    pub const SERVER_PREDICTIONS: &str = "hoist_predictions_total";

    /// Labels.
    pub const LABEL_ENV: &str = "env";
    pub const LABEL_VARIANT: &str = "variant";
    pub const LABEL_VERSION: &str = "version";
    pub const LABEL_CLASS: &str = "class";
    /// The pod label a ServiceMonitor relabels into `variant` on a cluster.
    pub const SERVICE_MONITOR_VARIANT_LABEL: &str = "hoist_dev_variant";
}

/// Tags hoist writes on model versions in the registry.
pub mod tags {
    /// The prefix of every hoist tag.
    pub const PREFIX: &str = "hoist.";
    /// The package digest (`sha256:…`), on MLflow.
    pub const DIGEST: &str = "hoist.digest";
    /// Why a release was rolled back.
    pub const ROLLBACK_REASON: &str = "hoist.rollback_reason";
    /// The version may change the model's inputs or outputs (`true`).
    pub const BREAKING_CHANGE: &str = "hoist.breaking_change";
    /// The self-contained model image `hoist image push --model` built for the
    /// version, by digest (`REPOSITORY@sha256:…`).
    pub const IMAGE: &str = "hoist.image";
    /// The model artifact `hoist model push` pushed, by digest (`REPOSITORY@sha256:…`).
    pub const ARTIFACT: &str = "hoist.artifact";

    /// `hoist.<env>`: how the version fared in that environment (`passed`, `live`,
    /// `rolled_back`…).
    pub fn env(env: &str) -> String {
        format!("{PREFIX}{env}")
    }
}

/// Predicted classes counted one by one (`0..PREDICTION_CLASSES`); any other label
/// counts as `other`. The server counts them, the daemon's drift analysis reads them.
pub const PREDICTION_CLASSES: usize = 64;

/// The variants of an environment, as labels and header values.
pub const STABLE: &str = "stable";
pub const CANDIDATE: &str = "candidate";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_keys_are_prefixed() {
        assert_eq!(tags::env("production"), "hoist.production");
        for k in [tags::DIGEST, tags::ROLLBACK_REASON, tags::BREAKING_CHANGE] {
            assert!(k.starts_with(tags::PREFIX), "{k}");
        }
    }
}
