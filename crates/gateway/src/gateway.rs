//! The gateway: accepts HTTP/1.1, picks a variant, forwards, counts.
//!
//! # Expected flow of one request
//! 1. `GET /metrics` is answered here; everything else is proxied.
//! 2. The routes are read once (an `ArcSwap` load): the request finishes on what it
//!    read, whatever `set_routes` does meanwhile.
//! 3. [`split::SplitRules::decide`] and the split counter choose the variant; a variant without
//!    upstream falls back to the other; no upstream at all is a 503.
//! 4. Hop-by-hop headers go, `x-request-id` is added when missing, and the request is
//!    sent to the next replica of the variant (round-robin).
//! 5. When nothing could be sent (connection refused), the request goes to another
//!    replica of the variant, then to the other variant; only then a 502.
//! 6. The response streams back with `x-hoist-variant` and `x-hoist-version`; when
//!    its body is done, the request is counted and the connection returns to its pool.
//!
//! Most requests never reach [`Gateway::handle`]: `crate::fast` follows the same
//! steps on its own lean HTTP/1.1 path and hands hyper only the connections it does
//! not handle. Those reach hyper through `crate::guard`, which checks every request
//! head with the fast path's rules (`crate::framing`) before hyper parses it; a path
//! under `/admin` gets a 404 here as there.
//!
//! # Caveats
//! - A request already written to a backend that then fails is not retried (its body
//!   was streamed, not kept): the client gets a 502, or a cut-short body. (On the
//!   fast path, a pooled connection that gives nothing at all back, closed by the
//!   backend while idle, is replaced by a new one and the request is sent again.)
//! - A model server that does not start answering within
//!   [`GatewayConfig::response_timeout`] gets its connection closed and the client a
//!   504 (counted as an upstream error); once the answer has started, its body is
//!   not timed.
//! - A client connection with no request under way is closed after
//!   [`GatewayConfig::idle_timeout`]; a request head that has begun must arrive
//!   within [`GatewayConfig::header_timeout`] (else 408 and the connection closes),
//!   so slow or silent clients cannot hold connections forever.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::guard::{reusable, strip_hop_by_hop};
use crate::metrics::{self, Class, Counters, Snapshot};
use crate::pool::{Conn, Pool, SendError};
use crate::split::{self, Decision, Routes, SplitRules, Variant};

/// The header that forces a variant unless configured otherwise.
pub const DEFAULT_FORCE_HEADER: &str = hoist_types::wire::headers::FORCE_VARIANT;

static X_HOIST_VARIANT: HeaderName = HeaderName::from_static(hoist_types::wire::headers::VARIANT);
static X_HOIST_VERSION: HeaderName = HeaderName::from_static(hoist_types::wire::headers::VERSION);
static X_REQUEST_ID: HeaderName = HeaderName::from_static(hoist_types::wire::headers::REQUEST_ID);

/// How one environment's gateway behaves.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The environment's name: a label on every metric, and part of error messages.
    pub name: String,
    /// A request header whose value pins a client to a variant at a given weight
    /// (e.g. `x-user-id`).
    pub sticky_header: Option<String>,
    /// A cookie used the same way when the sticky header is absent.
    pub sticky_cookie: Option<String>,
    /// A request header whose value `stable` or `candidate` forces that variant, if it
    /// is deployed. Default `x-hoist-variant`.
    pub force_header: String,
    /// Longest wait for a model server's response head once the request is sent;
    /// then the client gets 504 and the backend connection is closed. Default 60 s.
    pub response_timeout: Duration,
    /// A client connection with no request under way is closed after this.
    /// Default 120 s.
    pub idle_timeout: Duration,
    /// Longest time a request head may take to arrive once its first bytes came;
    /// then 408 and the connection closes. Default 30 s.
    pub header_timeout: Duration,
    /// When set, `POST /feedback` needs `Authorization: Bearer <this token>` (401
    /// otherwise), so only the application that knows the true labels can sway an
    /// accuracy verdict. `None`: labels are taken from anyone who can reach the gateway.
    /// A token read from a file is read again when the file is rotated.
    pub feedback_token: Option<hoist_types::Secret>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            name: "default".to_string(),
            sticky_header: None,
            sticky_cookie: None,
            force_header: DEFAULT_FORCE_HEADER.to_string(),
            response_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
            header_timeout: Duration::from_secs(30),
            feedback_token: None,
        }
    }
}

/// The data plane in front of one environment. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("name", &self.inner.config.name)
            .field("routes", &self.inner.table.load().routes)
            .finish()
    }
}

pub(crate) struct Inner {
    /// As given to [`Gateway::new`].
    pub(crate) config: GatewayConfig,
    /// The force header, sticky header and cookie, and the sticky hash's salt.
    pub(crate) split: SplitRules,
    /// What requests route to now; replaced whole by `set_routes`.
    pub(crate) table: ArcSwap<Table>,
    /// The exact split's request number (only requests the counter decides).
    split_counter: AtomicU64,
    /// Makes `x-request-id` values for requests that come without one.
    pub(crate) request_ids: RequestIds,
    /// Connection pools and metric series; touched by `set_routes` and metric reads,
    /// never by the request path.
    control: Mutex<Control>,
    /// The candidate's answers to mirrored requests.
    pub(crate) shadow: crate::shadow::ShadowCounters,
    /// Predictions remembered for `POST /feedback`.
    pub(crate) feedback: Mutex<crate::feedback::Store>,
}

#[derive(Default)]
pub(crate) struct Control {
    /// One pool per backend address in the current routes.
    pub(crate) pools: HashMap<SocketAddr, Arc<Pool>>,
    /// Where the pools come from while the gateway is a [`crate::Router`]'s model
    /// (shared with the router's other models); `None`: its own.
    pub(crate) shared: Option<Arc<crate::pool::Shared>>,
    /// Counters of every (variant, version) that was ever routed to: the split's
    /// traffic, what releases are judged on.
    pub(crate) series: Vec<(Variant, String, Arc<Counters>)>,
    /// The same for requests the force header sent (never judged).
    pub(crate) forced: Vec<(Variant, String, Arc<Counters>)>,
}

impl Control {
    /// Lets every pool go (retired, or released to the shared pools).
    pub(crate) fn release_pools(&mut self) {
        for (addr, pool) in self.pools.drain() {
            match &self.shared {
                Some(s) => s.release(addr),
                None => pool.retire(),
            }
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        if self.shared.is_some() {
            self.release_pools();
        }
    }
}

/// The routes, resolved for the request path.
pub(crate) struct Table {
    /// As given to `set_routes` (returned by `routes()`).
    pub(crate) routes: Routes,
    pub(crate) stable: Option<Backend>,
    pub(crate) candidate: Option<Backend>,
    /// The same upstreams (same pools) for forced requests, counted apart.
    pub(crate) forced_stable: Option<Backend>,
    pub(crate) forced_candidate: Option<Backend>,
    /// `routes.candidate_weight`, at most 100.
    pub(crate) weight: u32,
    /// `routes.shadow_percent`, at most 100; 0 without a candidate.
    pub(crate) shadow: u32,
    /// `routes.feedback`.
    pub(crate) feedback: bool,
    /// `routes.values`, while a candidate takes traffic.
    pub(crate) values: bool,
}

impl Table {
    /// Whether answers' bodies are read (mirroring or recording predictions).
    pub(crate) fn inspects(&self) -> bool {
        self.shadow > 0 || self.feedback || self.values
    }

    /// Whether a request stable answered goes to the candidate as well.
    pub(crate) fn mirrors(&self, gw: &Gateway) -> bool {
        self.shadow > 0 && {
            let n = gw.inner.shadow.picks.fetch_add(1, Relaxed);
            split::counter_picks_candidate(n, self.shadow)
        }
    }
}

impl Table {
    /// The split's backend of a variant.
    pub(crate) fn get(&self, v: Variant) -> Option<&Backend> {
        match v {
            Variant::Stable => self.stable.as_ref(),
            Variant::Candidate => self.candidate.as_ref(),
        }
    }

    /// A variant's backend for requests forced (`forced`) or split.
    pub(crate) fn backend(&self, v: Variant, forced: bool) -> Option<&Backend> {
        match (v, forced) {
            (Variant::Stable, true) => self.forced_stable.as_ref(),
            (Variant::Candidate, true) => self.forced_candidate.as_ref(),
            (v, false) => self.get(v),
        }
    }
}

/// One variant's upstream, ready to send to.
pub(crate) struct Backend {
    pub(crate) variant: Variant,
    /// `x-hoist-version` value.
    pub(crate) version: HeaderValue,
    /// One pool per replica address.
    pub(crate) pools: Vec<Arc<Pool>>,
    /// Round-robin position.
    pub(crate) next: AtomicUsize,
    /// Where this (variant, version)'s requests are counted.
    pub(crate) counters: Arc<Counters>,
    /// Serves forced requests: `counters` is a forced series.
    pub(crate) forced: bool,
    /// `/models/{name}` when these servers serve several models
    /// ([`crate::Upstream::model`]): put in front of a target that names no model
    /// (`crate::packed`). `None` for a server of one model.
    pub(crate) model_path: Option<Bytes>,
}

/// Which replica a request goes to: the round-robin pick first; when nothing was sent
/// (the connection was refused), one more replica of the same variant, then the other
/// variant once. Shared by the fast path and the hyper path.
pub(crate) struct Attempt<'a> {
    pub(crate) backend: &'a Backend,
    index: usize,
    tries: u32,
    switched: bool,
}

impl<'a> Attempt<'a> {
    pub(crate) fn new(first: &'a Backend) -> Attempt<'a> {
        Attempt {
            backend: first,
            index: first.next.fetch_add(1, Relaxed),
            tries: 0,
            switched: false,
        }
    }

    /// The replica (index into `backend.pools`) to try now.
    pub(crate) fn slot(&self) -> usize {
        self.index % self.backend.pools.len()
    }

    /// After a request that was not sent: move to the next place to try, or `false`
    /// when there is none left.
    pub(crate) fn next_after_not_sent(&mut self, table: &'a Table) -> bool {
        self.tries += 1;
        if self.tries < 2 && self.backend.pools.len() > 1 {
            self.index += 1;
            return true;
        }
        match table.backend(self.backend.variant.other(), self.backend.forced) {
            Some(other) if !self.switched => {
                self.switched = true;
                self.backend = other;
                self.tries = 0;
                self.index = other.next.fetch_add(1, Relaxed);
                true
            }
            _ => false,
        }
    }
}

pub(crate) type GatewayBody = Either<Tracked, Full<Bytes>>;

impl Gateway {
    /// A gateway with no routes (every proxied request gets a 503 until
    /// [`Gateway::set_routes`]).
    pub fn new(config: GatewayConfig) -> Gateway {
        let force_header =
            HeaderName::from_bytes(config.force_header.as_bytes()).unwrap_or_else(|_| {
                tracing::warn!(
                    header = %config.force_header,
                    "invalid force header name; using {DEFAULT_FORCE_HEADER}"
                );
                HeaderName::from_static(DEFAULT_FORCE_HEADER)
            });
        let sticky_header = config.sticky_header.as_deref().and_then(|h| {
            HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| tracing::warn!(header = h, "invalid sticky header name; ignored"))
                .ok()
        });
        let split = SplitRules::new(
            force_header.as_str(),
            sticky_header.as_ref().map(HeaderName::as_str),
            config.sticky_cookie.as_deref(),
        );
        Gateway {
            inner: Arc::new(Inner {
                split,
                table: ArcSwap::from_pointee(Table {
                    routes: Routes::default(),
                    stable: None,
                    candidate: None,
                    forced_stable: None,
                    forced_candidate: None,
                    weight: 0,
                    shadow: 0,
                    feedback: false,
                    values: false,
                }),
                split_counter: AtomicU64::new(0),
                request_ids: RequestIds::new(),
                control: Mutex::new(Control::default()),
                shadow: Default::default(),
                feedback: Default::default(),
                config,
            }),
        }
    }

    /// The routes in force.
    pub fn routes(&self) -> Routes {
        self.inner.table.load().routes.clone()
    }

    /// The counters of both variants, cumulative since the gateway started. Forced
    /// requests are only in [`Snapshot::forced`].
    pub fn metrics(&self) -> Snapshot {
        let control = self.control();
        let mut snap = metrics::snapshot(&control.series);
        snap.forced = metrics::forced_snapshot(&control.forced);
        snap.shadow = self.inner.shadow.snapshot();
        snap
    }

    /// The `/metrics` text (Prometheus format 0.0.4).
    pub fn prometheus(&self) -> String {
        self.prometheus_with(&metrics::env_labels(&self.inner.config.name))
    }

    /// The `/metrics` text with `labels` (`env="…"` and maybe more) on every series.
    pub(crate) fn prometheus_with(&self, labels: &str) -> String {
        let weight = self.inner.table.load().weight;
        let control = self.control();
        let mut text = metrics::render(labels, &control.series, weight);
        metrics::render_forced(&mut text, labels, &control.forced);
        drop(control);
        metrics::render_shadow(&mut text, labels, &self.inner.shadow.snapshot());
        text
    }

    /// Serves on `listener` until `shutdown` completes; then stops accepting, lets
    /// the requests in flight finish, and returns. Uses one thread per core (see
    /// [`Gateway::serve_with_threads`]).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.serve_with_threads(listener, threads, shutdown).await
    }

    /// [`Gateway::serve`] on `threads` threads of its own.
    ///
    /// # Design
    /// Like nginx's workers: each thread runs a single-threaded Tokio runtime that
    /// accepts from the shared listener and keeps every connection it accepted, the
    /// backend connections it opened, and their tasks to itself. A request never
    /// crosses threads, so there are no cross-thread wake-ups and no thread parking
    /// per request (they cost more than the proxying itself on a busy machine). The
    /// caller's runtime only waits for `shutdown`, so a busy control plane cannot
    /// slow the data plane, and the other way round.
    pub async fn serve_with_threads(
        self,
        listener: TcpListener,
        threads: usize,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        serve_front(Front::One(self), listener, threads, shutdown).await
    }

    pub(crate) fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.inner.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) async fn handle(
        self,
        req: Request<Incoming>,
    ) -> Result<Response<GatewayBody>, Infallible> {
        let start = Instant::now();
        // `crate::guard` has checked the head already; this is the same check on
        // what hyper made of the target.
        if let Err(refused) = crate::framing::check_path(req.uri().path()) {
            return Ok(refusal(refused));
        }
        if req.uri().path() == "/metrics" && req.method() == Method::GET {
            let mut res = Response::new(Either::Right(Full::new(Bytes::from(self.prometheus()))));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return Ok(res);
        }

        if req.uri().path() == "/feedback" && req.method() == Method::POST {
            return Ok(self.feedback_hyper(req).await);
        }

        let table = self.inner.table.load_full();
        let Some(first) = self.choose(&table, req.headers()) else {
            return Ok(json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "no model is deployed in environment {}",
                    self.inner.config.name
                ),
            ));
        };

        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.version = Version::HTTP_11;
        if parts.uri.scheme().is_some() {
            // Absolute form (a client that treats us as a forward proxy): origin form.
            if let Some(pq) = parts.uri.path_and_query() {
                parts.uri = pq.as_str().parse().unwrap_or_default();
            }
        }
        let request_id = match parts.headers.get(&X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = self.inner.request_ids.next();
                parts.headers.insert(X_REQUEST_ID.clone(), id.clone());
                id
            }
        };
        // Set per attempt when the target names no model and a backend is packed.
        let bare = crate::packed::Bare::of(&parts.uri, &table);
        let mut req = Request::from_parts(parts, body);

        let mut attempt = Attempt::new(first);
        let timeout = self.inner.config.response_timeout;
        let mut status = StatusCode::BAD_GATEWAY;
        let failure = loop {
            let backend = attempt.backend;
            let slot = attempt.slot();
            let pool = &backend.pools[slot];
            if let Some(bare) = &bare {
                *req.uri_mut() = bare.uri_for(backend);
            }
            let Ok(sent) = tokio::time::timeout(timeout, pool.send(req)).await else {
                status = StatusCode::GATEWAY_TIMEOUT;
                break format!("{}: no answer within {timeout:?}", pool.addr);
            };
            match sent {
                Ok((resp, conn)) => {
                    let served = Served {
                        variant: backend.variant,
                        forced: backend.forced,
                        pool: slot,
                    };
                    return Ok(respond(resp, conn, table, served, start, request_id));
                }
                Err(SendError::NotSent(back, why)) => {
                    tracing::debug!(
                        env = %self.inner.config.name,
                        variant = %backend.variant,
                        "not sent, trying elsewhere: {why}"
                    );
                    req = *back;
                    if !attempt.next_after_not_sent(&table) {
                        break why;
                    }
                }
                Err(SendError::Failed(e)) => break format!("{}: {e}", pool.addr),
            }
        };
        tracing::warn!(
            env = %self.inner.config.name,
            variant = %attempt.backend.variant,
            "upstream failed: {failure}"
        );
        attempt
            .backend
            .counters
            .record(Class::Upstream, start.elapsed());
        let mut res = json_error(
            status,
            &format!(
                "no model server of environment {} answered: {failure}",
                self.inner.config.name
            ),
        );
        res.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
        Ok(res)
    }

    /// `POST /feedback` on the hyper path (chunked or HTTP/1.0 clients).
    async fn feedback_hyper(&self, req: Request<Incoming>) -> Response<GatewayBody> {
        use http_body_util::BodyExt;
        let id = req
            .headers()
            .get(&X_REQUEST_ID)
            .map(|v| v.as_bytes().to_vec());
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        let limited = http_body_util::Limited::new(req.into_body(), 1024 * 1024);
        let (status, body) = match limited.collect().await {
            Ok(b) => self.feedback(id.as_deref(), authorization.as_deref(), &b.to_bytes()),
            Err(e) => (
                413,
                serde_json::json!({ "error": format!("feedback body not read: {e}") }).to_string(),
            ),
        };
        let mut res = Response::new(Either::Right(Full::new(Bytes::from(body))));
        *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }

    /// The backend for a request, by the order in the module docs of [`split`].
    fn choose<'t>(&self, table: &'t Table, headers: &HeaderMap) -> Option<&'t Backend> {
        let decision = self
            .inner
            .split
            .decide_map(headers, |v| table.get(v).is_some());
        self.pick(table, decision)
    }

    /// The backend for a [`Decision`] (a variant without upstream falls back to the
    /// other; `None` when there is no upstream at all). A forced request gets the
    /// variant's forced backend: same servers, counted apart.
    pub(crate) fn pick<'t>(&self, table: &'t Table, decision: Decision) -> Option<&'t Backend> {
        let variant = match decision {
            Decision::Forced(v) => {
                return table
                    .backend(v, true)
                    .or_else(|| table.backend(v.other(), true));
            }
            Decision::Sticky(bucket) => {
                if bucket < table.weight {
                    Variant::Candidate
                } else {
                    Variant::Stable
                }
            }
            Decision::Counter => {
                if table.weight == 0 || table.candidate.is_none() {
                    Variant::Stable
                } else if table.weight >= 100 || table.stable.is_none() {
                    Variant::Candidate
                } else {
                    let n = self.inner.split_counter.fetch_add(1, Relaxed);
                    if split::counter_picks_candidate(n, table.weight) {
                        Variant::Candidate
                    } else {
                        Variant::Stable
                    }
                }
            }
        };
        table.get(variant).or_else(|| table.get(variant.other()))
    }
}

/// What a listener serves: one model's gateway, or a router over many.
#[derive(Clone)]
pub(crate) enum Front {
    One(Gateway),
    Many(crate::Router),
}

impl Front {
    /// (idle timeout, header timeout) of client connections.
    pub(crate) fn timeouts(&self) -> (Duration, Duration) {
        match self {
            Front::One(gw) => (gw.inner.config.idle_timeout, gw.inner.config.header_timeout),
            Front::Many(router) => router.timeouts(),
        }
    }

    /// One request on hyper's path.
    async fn handle(self, req: Request<Incoming>) -> Result<Response<GatewayBody>, Infallible> {
        match self {
            Front::One(gw) => gw.handle(req).await,
            Front::Many(router) => router.handle(req).await,
        }
    }

    /// Serves one client connection with hyper until it closes or `closing` changes
    /// (then lets the request in flight finish). The fast path hands over the
    /// connections it does not handle itself.
    pub(crate) async fn serve_hyper<I>(self, io: I, mut closing: tokio::sync::watch::Receiver<()>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let header_timeout = self.timeouts().1;
        let front = self;
        let service = service_fn(move |req| front.clone().handle(req));
        let conn = http1::Builder::new()
            .keep_alive(true)
            // Also bounds an idle keep-alive connection's wait for its next request.
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = closing.changed() => {}
        }
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}

/// Serves `front` on `listener` with `threads` threads (see
/// [`Gateway::serve_with_threads`]) until `shutdown` completes.
pub(crate) async fn serve_front(
    front: Front,
    listener: TcpListener,
    threads: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.into_std()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Closed (recv gives None) once every worker thread has finished.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    for worker in 0..threads.max(1) {
        let listener = listener.try_clone()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (gateway, stop, done) = (front.clone(), stop_rx.clone(), done_tx.clone());
        std::thread::Builder::new()
            .name(format!("hoist-gateway-{worker}"))
            .spawn(move || {
                crate::pool::set_worker(worker);
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => accept_loop(gateway, listener, stop).await,
                        Err(e) => tracing::error!("gateway worker {worker}: {e}"),
                    }
                });
                drop(done);
            })?;
    }
    drop((listener, stop_rx, done_tx));
    shutdown.await;
    let _ = stop_tx.send(true);
    let _ = done_rx.recv().await;
    Ok(())
}

/// One worker: accepts until `stop`, then waits for its connections to finish.
async fn accept_loop(
    front: Front,
    listener: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (conns_tx, conns_rx) = tokio::sync::watch::channel(());
    loop {
        let stream = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("gateway accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let front = front.clone();
        let closing = conns_rx.clone();
        tokio::spawn(crate::fast::serve(front, stream, closing));
    }
    drop(listener);
    drop(conns_rx);
    let _ = conns_tx.send(());
    conns_tx.closed().await;
}

/// The client's response: the backend's, with our headers, counted when done.
fn respond(
    resp: Response<Incoming>,
    conn: Conn,
    table: Arc<Table>,
    served: Served,
    start: Instant,
    request_id: HeaderValue,
) -> Response<GatewayBody> {
    let (mut parts, body) = resp.into_parts();
    let reuse = reusable(&parts);
    if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        // hyper's client read the body by its transfer coding; a Content-Length next
        // to it is meaningless and must not reach the client (RFC 9112 section 6.3).
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    strip_hop_by_hop(&mut parts.headers);
    let backend = served.backend(&table);
    parts.headers.insert(
        X_HOIST_VARIANT.clone(),
        HeaderValue::from_static(backend.variant.as_str()),
    );
    parts
        .headers
        .insert(X_HOIST_VERSION.clone(), backend.version.clone());
    if !parts.headers.contains_key(&X_REQUEST_ID) {
        parts.headers.insert(X_REQUEST_ID.clone(), request_id);
    }
    let mut tracked = Tracked {
        inner: body,
        conn: Some(conn),
        reuse,
        table,
        served,
        status: parts.status,
        start,
        done: false,
    };
    if tracked.inner.is_end_stream() {
        // No body (204, HEAD, Content-Length: 0): hyper may never poll it.
        tracked.finish(false);
    }
    Response::from_parts(parts, Either::Left(tracked))
}

/// Which backend of a [`Table`] answered, and on which of its pools.
#[derive(Clone, Copy)]
struct Served {
    variant: Variant,
    /// Sent by the force header (counted apart).
    forced: bool,
    pool: usize,
}

impl Served {
    fn backend(self, table: &Table) -> &Backend {
        table
            .backend(self.variant, self.forced)
            .expect("a request is only sent to a variant of its table")
    }
}

/// A backend's response body on its way to the client. It counts the request as soon
/// as the backend's body has ended (before its last bytes reach the client, so a
/// client that saw the answer sees it counted), and gives the connection back to its
/// pool when the body was read to the end. Dropped early (the client went away), it
/// counts the request by its status and closes the connection.
pub(crate) struct Tracked {
    inner: Incoming,
    conn: Option<Conn>,
    /// The response's framing lets the connection take another request ([`reusable`]).
    reuse: bool,
    /// The routes the request was sent by (kept, not re-read: they say where the
    /// connection goes back to and where the request is counted).
    table: Arc<Table>,
    served: Served,
    status: StatusCode,
    start: Instant,
    /// Counted already.
    done: bool,
}

impl Tracked {
    /// Counts the request once; returns the connection if the exchange completed.
    fn finish(&mut self, failed: bool) {
        if self.done {
            return;
        }
        self.done = true;
        let class = if failed {
            Class::Upstream
        } else {
            Class::of_status(self.status)
        };
        let backend = self.served.backend(&self.table);
        backend
            .counters
            .record_status(self.status.as_u16(), class, self.start.elapsed());
        if let Some(conn) = self.conn.take()
            && !failed
            && self.reuse
            && self.inner.is_end_stream()
        {
            backend.pools[self.served.pool].put_back(conn);
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.finish(false),
            Poll::Ready(Some(Err(_))) => this.finish(true),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.finish(false),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// The answer to a request whose target [`crate::framing::check_path`] refused:
/// 404 for an operator-only path, else 400 and the connection closes.
pub(crate) fn refusal(refused: crate::framing::Refused) -> Response<GatewayBody> {
    use crate::framing::Refused;
    match refused {
        Refused::Private => json_error(
            StatusCode::NOT_FOUND,
            "not found: operator endpoints of model servers are not served by the gateway",
        ),
        Refused::Bad => {
            let mut res = json_error(StatusCode::BAD_REQUEST, "invalid request target");
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            res
        }
    }
}

/// `{"error": message}` with `status`.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response<GatewayBody> {
    let body = json_error_body(message);
    let mut res = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The body of a JSON error: `{"error": message}`.
pub(crate) fn json_error_body(message: &str) -> String {
    let mut body = String::with_capacity(message.len() + 16);
    body.push_str("{\"error\":\"");
    for c in message.chars() {
        match c {
            '"' => body.push_str("\\\""),
            '\\' => body.push_str("\\\\"),
            c if (c as u32) < 0x20 => body.push_str(&format!("\\u{:04x}", c as u32)),
            c => body.push(c),
        }
    }
    body.push_str("\"}");
    body
}

/// `x-request-id` values: a per-process random prefix and a counter.
pub(crate) struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> RequestIds {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(d.as_nanos());
        }
        RequestIds {
            prefix: h.finish() as u32,
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> HeaderValue {
        let mut buf = [0u8; 8 + 1 + 16];
        let len = self.next_into(&mut buf);
        HeaderValue::from_bytes(&buf[..len]).expect("hex digits are a valid header value")
    }

    /// Writes the next id into `buf`; returns its length.
    pub(crate) fn next_into(&self, buf: &mut [u8; 25]) -> usize {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.next.fetch_add(1, Relaxed);
        // "pppppppp-" then n in hex without leading zeros.
        for (i, b) in buf[..8].iter_mut().enumerate() {
            *b = HEX[((self.prefix >> (28 - 4 * i)) & 0xf) as usize];
        }
        buf[8] = b'-';
        let digits = (16 - (n.leading_zeros() / 4) as usize).max(1);
        for i in 0..digits {
            buf[9 + i] = HEX[((n >> (4 * (digits - 1 - i))) & 0xf) as usize];
        }
        9 + digits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_hex() {
        let ids = RequestIds::new();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        let a = a.to_str().unwrap();
        assert_eq!(a.len(), 10);
        assert!(a.ends_with("-1"), "{a}");
        ids.next.store(0xabc_def0, Relaxed);
        assert!(ids.next().to_str().unwrap().ends_with("-abcdef0"));
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn json_errors_are_escaped() {
        let res = json_error(StatusCode::BAD_GATEWAY, "a \"b\"\n");
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    }
}
