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
//!     stable: Some(Upstream { version: "3".into(), addrs: vec!["127.0.0.1:9001".parse().unwrap()] }),
//!     candidate: Some(Upstream { version: "4".into(), addrs: vec!["127.0.0.1:9002".parse().unwrap()] }),
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
//! - `pool`: keep-alive connections per backend address.
//! - `routes`: validating and applying [`Routes`].
//! - [`metrics`]: lock-free counters, [`Snapshot`]s, Prometheus text.
//! - `shadow`: mirroring stable's requests to the candidate and comparing answers.
//! - [`feedback`]: predictions remembered by request id, and `POST /feedback`.
//! - `inspect`: reading predictions out of answers (shadow and feedback only).

mod fast;
pub mod feedback;
#[doc(hidden)]
pub mod fuzz_split;
mod gateway;
mod inspect;
pub mod metrics;
mod pool;
mod routes;
mod shadow;
pub mod split;

pub use gateway::{DEFAULT_FORCE_HEADER, Gateway, GatewayConfig};
pub use metrics::{ForcedStats, LATENCY_BUCKETS, ShadowStats, Snapshot, VariantStats};
pub use split::{Routes, RoutesError, Upstream, Variant};
