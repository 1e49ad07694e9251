//! hoist's gateway: the data plane in front of one environment.
//!
//! An HTTP/1.1 reverse proxy that splits traffic between a *stable* and a
//! *candidate* set of model servers, and counts what each variant answers so the
//! release engine can judge the candidate against the stable one.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use hoist_gateway::{Gateway, GatewayConfig, Routes, Upstream};
//! let gateway = Gateway::new(GatewayConfig { name: "production".into(), ..Default::default() });
//! gateway.set_routes(Routes {
//!     stable: Some(Upstream { version: "3".into(), model: None, addrs: vec!["127.0.0.1:9001".parse().unwrap()] }),
//!     candidate: Some(Upstream { version: "4".into(), model: None, addrs: vec!["127.0.0.1:9002".parse().unwrap()] }),
//!     candidate_weight: 10,
//!     ..Default::default()
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let before = gateway.metrics();
//! tokio::spawn(gateway.clone().serve(listener, std::future::pending()));
//! // ... later: the candidate's traffic since `before`
//! let window = gateway.metrics().since(&before);
//! println!("candidate error rate {}", window.candidate.error_rate());
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`split`]: variants, routes, and the pure choice of a variant per request.
//! - `gateway`: [`Gateway`]: accept, choose, forward, retry, count; `serve`.
//! - `fast`: the lean HTTP/1.1 path every connection starts on; it hands what it
//!   does not handle (chunked or upgrade requests, HTTP/1.0, large bodies) to hyper.
//! - `framing`: RFC 9112 message framing, hop-by-hop headers and target checks,
//!   one set of rules for both paths; `guard` applies them on hyper's path.
//! - `packed`: the target a server packing several models gets (`/invocations`
//!   becomes `/models/{name}/invocations`), per attempt on both paths.
//! - `pool`: keep-alive connections per backend address.
//! - `router`: [`Router`]: one environment's gateway for many models, each
//!   request dispatched to its model's [`Gateway`].
//! - `routes`: validating and applying [`Routes`].
//! - [`metrics`]: lock-free counters, [`Snapshot`]s, Prometheus text.
//! - `shadow`: mirroring stable's requests to the candidate and comparing answers.
//! - [`feedback`]: predictions remembered by request id, and `POST /feedback`.
//! - `inspect`: reading predictions out of answers (shadow and feedback only).

mod fast;
pub mod feedback;
mod framing;
#[doc(hidden)]
pub mod fuzz_split;
mod gateway;
mod guard;
mod inspect;
pub mod metrics;
mod packed;
mod pool;
mod router;
mod routes;
mod shadow;
pub mod split;

pub use gateway::{DEFAULT_FORCE_HEADER, Gateway, GatewayConfig};
pub use inspect::ValueSums;
pub use metrics::{
    ForcedStats, LATENCY_BUCKETS, LiveValues, RECENT_VALUES, ShadowStats, Snapshot, VariantStats,
};
pub use router::Router;
pub use split::{Routes, RoutesError, Upstream, Variant};

/// Entry points for fuzzing (`crates/gateway/fuzz`); not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses and checks a request head as the fast path does (and its target, and
    /// a chunked body after it). Returns the status a refused request gets, or 0
    /// when the head is accepted or incomplete. Never panics.
    pub fn parse_head(data: &[u8]) -> u16 {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        match crate::framing::parse_request(data, &mut headers) {
            crate::framing::Parsed::Head(h) => {
                if let Err(r) = crate::framing::check_target(h.target) {
                    return r.status();
                }
                if h.body == crate::framing::Body::Chunked {
                    let mut scan = crate::framing::ChunkScan::default();
                    if scan.feed(&data[h.len..]).is_err() {
                        return 400;
                    }
                }
                0
            }
            crate::framing::Parsed::Bad(s) => s,
            _ => 0,
        }
    }

    /// Feeds `data` through the guard in front of hyper in pieces whose sizes
    /// `cuts` gives; returns the bytes hyper would read. Never panics; what comes
    /// out is `data`'s checked requests, then possibly a refusal hyper answers.
    pub fn guard_stream(data: &[u8], cuts: &[u8]) -> Vec<u8> {
        crate::guard::fuzz_stream(data, cuts)
    }

    /// Routes a request target as a [`crate::Router`] with models `a` and `b` does
    /// on the fast path, after the same target checks: `Ok((model, target it gets))`
    /// or `Err(status)` (a refusal, or the router's own answer). Never panics.
    pub fn route(target: &str) -> Result<(String, String), u16> {
        crate::router::fuzz_route(target)
    }
}
