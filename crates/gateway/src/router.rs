//! One environment's gateway for many models: [`Router`] sends each request to the
//! [`Gateway`] of the model it names.
//!
//! # Routing (every request, on the fast path and on hyper's path alike)
//! The target is checked first, exactly as a single gateway checks it
//! ([`crate::framing::check_target`]: framing, `..`, percent-escapes, `/admin`);
//! only then is the model read from the path (its name percent-decoded for the lookup
//! only; the target forwarded is the checked one, unchanged):
//!
//! | path | goes to |
//! | --- | --- |
//! | `GET /metrics` | the router: every model's series, labelled `model="…"` |
//! | `/v2/models/{m}`, `/v2/models/{m}/...` | model `m`, unchanged |
//! | `/v2/models/{m}/feedback` | model `m`'s `POST /feedback` |
//! | `/models/{m}/invocations` (also `ping`, `health`, `version`, `predict-image`, `feedback`) | model `m` as `/invocations` (...), query kept |
//! | anything else (`/invocations`, `/v2/health/ready`, `/feedback`, ...) | the only model while there is exactly one; with several, see below |
//!
//! With several models, a path that names none gets a 404 listing the models,
//! except `/v2/health/live` (200: the gateway is up) and `/v2/health/ready` (200
//! when every model has an upstream to route to, else 503 naming those that have
//! none); a model's own readiness is `GET /v2/models/{m}/ready`, answered by its
//! model server. A model the router does not have is a 404:
//! `{"error": "no model \"x\" here; models: a, b"}`.
//!
//! # Cost
//! The models live in one `ArcSwap`ed map: a request reads it once (no lock), finds
//! its model by name (one hash) and clones that `Gateway` (one `Arc`). `insert` and
//! `remove` build a new map and swap it in: requests under way finish on the
//! gateway they found; the other models never notice.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::gateway::{Front, Gateway, GatewayBody, json_error_body, refusal};
use crate::metrics;

/// The MLflow scoring server's paths that `/models/{m}/...` maps to `/...`.
const SCORING: &[&str] = &[
    "/invocations",
    "/ping",
    "/health",
    "/version",
    "/predict-image",
    "/feedback",
];

/// One environment's gateway serving many models: dispatches each request to the
/// model's [`Gateway`] (see the module docs for the rules). Cheap to clone.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    /// The environment's name (the `env` label of `/metrics`).
    name: String,
    models: ArcSwap<Models>,
    /// Serialises `insert` and `remove` (each builds the next map from the last).
    edit: Mutex<()>,
    /// The models' connection pools, shared by backend address.
    pools: Arc<crate::pool::Shared>,
}

/// The models at one moment; replaced whole on every change.
#[derive(Clone)]
struct Models {
    by_name: HashMap<String, Gateway>,
    /// Sorted names, and the same joined with ", " for error messages.
    names: Vec<String>,
    listing: String,
    /// Client connections' idle and header timeouts: the smallest among the
    /// models' gateways (a connection may address any of them); defaults without.
    idle_timeout: Duration,
    header_timeout: Duration,
}

impl Models {
    fn new(by_name: HashMap<String, Gateway>) -> Models {
        let mut names: Vec<String> = by_name.keys().cloned().collect();
        names.sort();
        let listing = names.join(", ");
        let defaults = crate::GatewayConfig::default();
        let configs = || by_name.values().map(|g| &g.inner.config);
        let idle_timeout = configs()
            .map(|c| c.idle_timeout)
            .min()
            .unwrap_or(defaults.idle_timeout);
        let header_timeout = configs()
            .map(|c| c.header_timeout)
            .min()
            .unwrap_or(defaults.header_timeout);
        Models {
            by_name,
            names,
            listing,
            idle_timeout,
            header_timeout,
        }
    }

    /// The only model, if there is exactly one.
    fn only(&self) -> Option<&Gateway> {
        match self.by_name.len() {
            1 => self.by_name.values().next(),
            _ => None,
        }
    }

    fn unknown(&self, name: &str) -> (u16, String) {
        (
            404,
            json_error_body(&format!(
                "no model \"{name}\" here; models: {}",
                self.listing
            )),
        )
    }
}

/// Where a request goes.
pub(crate) enum Routed<'m> {
    /// To this model's gateway, with the first `usize` bytes of the target cut off.
    Model(&'m Gateway, usize),
    /// Answered by the router: status and JSON body.
    Answer(u16, String),
}

/// The model a path names: `(name, bytes of the path up to the name's end)`.
fn named(path: &str) -> Option<(&str, usize)> {
    for prefix in ["/v2/models/", "/models/"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            let name = &rest[..rest.find('/').unwrap_or(rest.len())];
            if name.is_empty() {
                return None;
            }
            return Some((name, prefix.len() + name.len()));
        }
    }
    None
}

/// A model name as sent, percent-escapes decoded (`fraud%20detector` is the model
/// `fraud detector`, as clients such as tritonclient quote names). Only the lookup
/// uses it: the target forwarded is the one checked, unchanged. An escape that does
/// not decode to UTF-8 leaves the name as sent (and unknown).
fn decoded(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.contains('%') {
        return std::borrow::Cow::Borrowed(name);
    }
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_or(std::borrow::Cow::Borrowed(name), std::borrow::Cow::Owned)
}

impl Models {
    /// Routes a request by its path (without the query), per the module docs.
    fn route(&self, path: &str) -> Routed<'_> {
        if let Some((name, end)) = named(path) {
            let Some(gw) = self.by_name.get(decoded(name).as_ref()) else {
                let (status, body) = self.unknown(name);
                return Routed::Answer(status, body);
            };
            let rest = &path[end..];
            return if path.starts_with("/v2/") {
                // OIP paths go unchanged, except the model's feedback.
                Routed::Model(gw, if rest == "/feedback" { end } else { 0 })
            } else if SCORING.contains(&rest) {
                Routed::Model(gw, end)
            } else {
                Routed::Answer(
                    404,
                    json_error_body(&format!(
                        "not found: /models/{name}/ takes {}",
                        SCORING.join(", ")
                    )),
                )
            };
        }
        if let Some(gw) = self.only() {
            return Routed::Model(gw, 0);
        }
        match path {
            "/v2/health/live" => Routed::Answer(200, "{\"live\":true}".to_string()),
            "/v2/health/ready" => {
                let unready: Vec<&str> = self
                    .names
                    .iter()
                    .filter(|n| {
                        let table = self.by_name[n.as_str()].inner.table.load();
                        table.stable.is_none() && table.candidate.is_none()
                    })
                    .map(String::as_str)
                    .collect();
                if self.names.is_empty() {
                    Routed::Answer(503, json_error_body("no models here"))
                } else if unready.is_empty() {
                    Routed::Answer(200, "{\"ready\":true}".to_string())
                } else {
                    Routed::Answer(
                        503,
                        json_error_body(&format!(
                            "no model server deployed for: {}",
                            unready.join(", ")
                        )),
                    )
                }
            }
            _ if self.names.is_empty() => Routed::Answer(404, json_error_body("no models here")),
            _ => Routed::Answer(
                404,
                json_error_body(&format!(
                    "this gateway serves several models; name one: /v2/models/{{name}}/... or /models/{{name}}/invocations; models: {}",
                    self.listing
                )),
            ),
        }
    }
}

impl Router {
    /// A router with no models, for the environment `name`.
    pub fn new(name: impl Into<String>) -> Router {
        Router {
            inner: Arc::new(Inner {
                name: name.into(),
                models: ArcSwap::from_pointee(Models::new(HashMap::new())),
                edit: Mutex::new(()),
                pools: Default::default(),
            }),
        }
    }

    /// The environment's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn edit<R>(&self, change: impl FnOnce(&mut HashMap<String, Gateway>) -> R) -> R {
        let _edit = self.inner.edit.lock().unwrap_or_else(|p| p.into_inner());
        let mut by_name = self.inner.models.load().by_name.clone();
        let out = change(&mut by_name);
        self.inner.models.store(Arc::new(Models::new(by_name)));
        out
    }

    /// Adds `model`, or replaces its gateway, while serving: its requests go to
    /// `gateway` from now on; requests under way finish where they were sent.
    ///
    /// The models' gateways share their connections to a backend address (a model
    /// server packing several models): the gateway takes its pools from the router.
    pub fn insert(&self, model: &str, gateway: Gateway) {
        gateway.share_pools(Some(self.inner.pools.clone()));
        let old = self.edit(|m| m.insert(model.to_string(), gateway.clone()));
        if let Some(old) = old.filter(|o| !Arc::ptr_eq(&o.inner, &gateway.inner)) {
            old.share_pools(None);
        }
    }

    /// Removes `model`: its requests get 404 from now on. The gateway returned has
    /// its own connection pools again.
    pub fn remove(&self, model: &str) -> Option<Gateway> {
        let old = self.edit(|m| m.remove(model));
        if let Some(old) = &old {
            old.share_pools(None);
        }
        old
    }

    /// The models, sorted.
    pub fn models(&self) -> Vec<String> {
        self.inner.models.load().names.clone()
    }

    /// A model's gateway.
    pub fn get(&self, model: &str) -> Option<Gateway> {
        self.inner.models.load().by_name.get(model).cloned()
    }

    /// Serves on `listener` until `shutdown` completes; then stops accepting, lets
    /// the requests in flight finish, and returns. One thread per core, as
    /// [`Gateway::serve`].
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.serve_with_threads(listener, threads, shutdown).await
    }

    /// [`Router::serve`] on `threads` threads of its own (see
    /// [`Gateway::serve_with_threads`]).
    pub async fn serve_with_threads(
        self,
        listener: TcpListener,
        threads: usize,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        crate::gateway::serve_front(Front::Many(self), listener, threads, shutdown).await
    }

    /// The `/metrics` text: every model's series, each labelled
    /// `env="<router's name>",model="<model>"`, families in the single gateway's order.
    pub fn prometheus(&self) -> String {
        let models = self.inner.models.load();
        let texts: Vec<String> = models
            .names
            .iter()
            .map(|name| {
                models.by_name[name.as_str()]
                    .prometheus_with(&metrics::model_labels(&self.inner.name, name))
            })
            .collect();
        metrics::merge(&texts)
    }

    /// (idle timeout, header timeout) of client connections.
    pub(crate) fn timeouts(&self) -> (Duration, Duration) {
        let m = self.inner.models.load();
        (m.idle_timeout, m.header_timeout)
    }

    /// The fast path's routing: the model's gateway and the target it gets, or
    /// the router's own answer.
    pub(crate) fn resolve<'t>(
        &self,
        target: &'t str,
        path: &str,
    ) -> Result<(Gateway, &'t str), (u16, String)> {
        let models = self.inner.models.load();
        match models.route(path) {
            Routed::Model(gw, cut) => Ok((gw.clone(), &target[cut..])),
            Routed::Answer(status, body) => Err((status, body)),
        }
    }

    /// One request on hyper's path.
    pub(crate) async fn handle(
        self,
        mut req: Request<Incoming>,
    ) -> Result<Response<GatewayBody>, Infallible> {
        // The same check as a single gateway's, before the path is read for a model.
        if let Err(refused) = crate::framing::check_path(req.uri().path()) {
            return Ok(refusal(refused));
        }
        if req.uri().path() == "/metrics" && req.method() == Method::GET {
            return Ok(answer(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.prometheus(),
            ));
        }
        let routed = {
            let models = self.inner.models.load();
            match models.route(req.uri().path()) {
                Routed::Model(gw, cut) => Ok((gw.clone(), cut)),
                Routed::Answer(status, body) => Err((status, body)),
            }
        };
        match routed {
            Ok((gw, cut)) => {
                if cut > 0 {
                    let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
                    match pq[cut..].parse::<Uri>() {
                        Ok(uri) => *req.uri_mut() = uri,
                        Err(_) => {
                            return Ok(crate::gateway::json_error(
                                StatusCode::BAD_REQUEST,
                                "invalid request target",
                            ));
                        }
                    }
                }
                gw.handle(req).await
            }
            Err((status, body)) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND);
                let body = if req.method() == Method::HEAD {
                    String::new()
                } else {
                    body
                };
                Ok(answer(status, "application/json", body))
            }
        }
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("name", &self.inner.name)
            .field("models", &self.models())
            .finish()
    }
}

/// A whole answer of the router's own.
fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response<GatewayBody> {
    let mut res = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

impl Front {
    /// `GET /metrics`.
    pub(crate) fn prometheus(&self) -> String {
        match self {
            Front::One(gw) => gw.prometheus(),
            Front::Many(router) => router.prometheus(),
        }
    }

    /// The gateway a request goes to and its target there (see [`Router::resolve`]).
    pub(crate) fn resolve<'t>(
        &self,
        target: &'t str,
        path: &str,
    ) -> Result<(Gateway, &'t str), (u16, String)> {
        match self {
            Front::One(gw) => Ok((gw.clone(), target)),
            Front::Many(router) => router.resolve(target, path),
        }
    }
}

/// `crate::fuzzing::route`: a router of models `a` and `b`, made once.
pub(crate) fn fuzz_route(target: &str) -> Result<(String, String), u16> {
    static ROUTER: std::sync::OnceLock<Router> = std::sync::OnceLock::new();
    let router = ROUTER.get_or_init(|| {
        let router = Router::new("fuzz");
        for name in ["a", "b"] {
            let config = crate::GatewayConfig {
                name: name.to_string(),
                ..Default::default()
            };
            router.insert(name, Gateway::new(config));
        }
        router
    });
    let target = crate::framing::check_target(target).map_err(|r| r.status())?;
    let path = target.split('?').next().unwrap_or(target);
    let (gw, forwarded) = router.resolve(target, path).map_err(|(status, _)| status)?;
    Ok((gw.inner.config.name.clone(), forwarded.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GatewayConfig;

    fn models(names: &[&str]) -> Models {
        Models::new(
            names
                .iter()
                .map(|n| (n.to_string(), Gateway::new(GatewayConfig::default())))
                .collect(),
        )
    }

    fn cut(m: &Models, path: &str) -> Result<usize, (u16, String)> {
        match m.route(path) {
            Routed::Model(_, cut) => Ok(cut),
            Routed::Answer(s, b) => Err((s, b)),
        }
    }

    #[test]
    fn paths_name_models() {
        let m = models(&["a", "b"]);
        assert_eq!(cut(&m, "/v2/models/a/infer"), Ok(0));
        assert_eq!(cut(&m, "/v2/models/b"), Ok(0));
        assert_eq!(cut(&m, "/v2/models/b/versions/3/ready"), Ok(0));
        assert_eq!(cut(&m, "/v2/models/a/feedback"), Ok("/v2/models/a".len()));
        assert_eq!(cut(&m, "/models/b/invocations"), Ok("/models/b".len()));
        assert_eq!(cut(&m, "/models/b/feedback"), Ok("/models/b".len()));
        let (status, body) = cut(&m, "/v2/models/x/infer").unwrap_err();
        assert_eq!(status, 404);
        assert_eq!(body, r#"{"error":"no model \"x\" here; models: a, b"}"#);
        // Names are matched percent-decoded (as a model server decodes them).
        assert_eq!(cut(&m, "/v2/models/%61/infer"), Ok(0));
        let spaced = models(&["fraud detector", "b"]);
        assert_eq!(cut(&spaced, "/v2/models/fraud%20detector/infer"), Ok(0));
        assert_eq!(
            cut(&spaced, "/models/fraud%20detector/invocations"),
            Ok("/models/fraud%20detector".len())
        );
        let (status, body) = cut(&spaced, "/v2/models/fraud%ZZdetector/infer").unwrap_err();
        assert_eq!(status, 404);
        assert!(body.contains("fraud%ZZdetector"), "{body}");
        assert_eq!(cut(&spaced, "/v2/models/%ff%fe/infer").unwrap_err().0, 404);
        assert_eq!(cut(&m, "/models/a/admin").unwrap_err().0, 404);
        assert_eq!(cut(&m, "/models/a").unwrap_err().0, 404);
        let (status, body) = cut(&m, "/invocations").unwrap_err();
        assert_eq!(status, 404);
        assert!(body.contains("models: a, b"), "{body}");
        assert_eq!(cut(&m, "/v2/health/live").unwrap_err().0, 200);
        // Neither has routes yet.
        let (status, body) = cut(&m, "/v2/health/ready").unwrap_err();
        assert_eq!(status, 503);
        assert!(body.contains("a, b"), "{body}");
    }

    #[test]
    fn forwarded_targets_pass_the_same_checks() {
        // What a model's gateway receives is the checked target or a suffix of it
        // that passes the checks on its own.
        for target in [
            "/models/a/invocations?x=/../admin",
            "/models/a/feedback",
            "/v2/models/b/feedback?q",
            "/v2/models/b/infer",
            "http://h/models/b/ping",
            "/models/a/%2e%2e/admin",
            "/models/a/admin",
            "/models/a//invocations",
            "/v2/models/a%2fb/infer",
            "/v2/models//infer",
        ] {
            match crate::fuzzing::route(target) {
                Ok((model, forwarded)) => {
                    assert!(target.ends_with(&forwarded), "{target} -> {forwarded}");
                    assert!(
                        crate::framing::check_target(&forwarded).is_ok(),
                        "{forwarded}"
                    );
                    assert!(target.contains(&format!("/models/{model}")), "{target}");
                }
                Err(status) => assert!((400..500).contains(&status), "{target}: {status}"),
            }
        }
        assert_eq!(
            crate::fuzzing::route("/models/a/invocations?x=1"),
            Ok(("a".to_string(), "/invocations?x=1".to_string()))
        );
        assert_eq!(crate::fuzzing::route("/models/a/%2e%2e/admin"), Err(400));
    }

    #[test]
    fn one_model_takes_the_paths_that_name_none() {
        let m = models(&["a"]);
        assert_eq!(cut(&m, "/invocations"), Ok(0));
        assert_eq!(cut(&m, "/v2/health/ready"), Ok(0));
        assert_eq!(cut(&m, "/v2/models/a/infer"), Ok(0));
        assert_eq!(cut(&m, "/v2/models/b/infer").unwrap_err().0, 404);
        let none = models(&[]);
        assert_eq!(cut(&none, "/invocations").unwrap_err().0, 404);
    }
}
