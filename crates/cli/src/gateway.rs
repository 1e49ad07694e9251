//! `hoist gateway`: hoist's gateway alone, as a process (on a cluster, the gateway
//! Deployment of `split = "hoist"`), in front of a stable and a candidate upstream.
//!
//! Traffic, `GET /metrics` and `POST /feedback` arrive on `--listen`. The admin API
//! listens on its own address (`--admin-listen`), never on the public one, and
//! answers only `Authorization: Bearer <token>` with the token of
//! `--admin-token-file` (re-read when the file changes, so a rotated mounted Secret
//! needs no restart) or `HOIST_ADMIN_TOKEN`:
//!
//! | call | what |
//! |---|---|
//! | `GET /healthz` | 200 once serving (no token: probes) |
//! | `GET /admin/routes` | the split now: weight, shadow, feedback, versions, upstream addresses |
//! | `PUT /admin/routes` | set it, atomically: `{"candidate_weight", "shadow_percent", "feedback", "values", "stable_version", "candidate_version"}` |
//! | `GET /admin/snapshot` | every counter ([`hoist_gateway::Snapshot`]) and this process's `instance` id |
//!
//! The daemon judges a cluster's step from `/admin/snapshot` exactly as it judges
//! its own gateway's counters on one machine. A new process (a restarted pod) has a
//! new `instance` and starts at 100% stable with zeroed counters.
//!
//! Upstreams are URLs or `HOST:PORT`; a host name (a Service's DNS name) is resolved
//! at start and again at every `PUT /admin/routes`.

use hoist_types::Secret;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hoist_gateway::{Gateway, GatewayConfig, Routes, Upstream};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::CliError;

#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    /// Where clients' requests arrive (and `GET /metrics`, `POST /feedback`)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The admin API's address (weights, shadow, counters); never the public one
    #[arg(long, value_name = "ADDR")]
    admin_listen: SocketAddr,
    /// Stable's upstream: http://HOST:PORT or HOST:PORT (a name is resolved)
    #[arg(long, value_name = "URL")]
    stable: String,
    /// The candidate's upstream, as --stable; without it no candidate can be set
    #[arg(long, value_name = "URL")]
    candidate: Option<String>,
    /// The environment's name (a label on every metric)
    #[arg(long, default_value = "default")]
    name: String,
    /// The admin token in a file, re-read when it changes [default: $HOIST_ADMIN_TOKEN]
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// The token `POST /feedback` needs, in a file (none: labels from anyone who can
    /// reach the gateway)
    #[arg(long, value_name = "FILE")]
    feedback_token_file: Option<PathBuf>,
    /// The header that forces a variant (`stable` or `candidate`)
    #[arg(long, value_name = "NAME")]
    force_header: Option<String>,
    /// A header whose value pins a client to a variant
    #[arg(long, value_name = "NAME")]
    sticky_header: Option<String>,
    /// A cookie used the same way when the sticky header is absent
    #[arg(long, value_name = "NAME")]
    sticky_cookie: Option<String>,
    /// Longest wait for an upstream's response head (e.g. 60s)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    response_timeout: Duration,
    /// Worker threads of the data plane [default: one per core]
    #[arg(long)]
    threads: Option<usize>,
}

fn duration(s: &str) -> Result<Duration, String> {
    hoist_release::config::parse_duration(s)
}

/// The split as the admin API reads and writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesBody {
    /// Percent of traffic to the candidate (0..=100).
    #[serde(default)]
    pub candidate_weight: u32,
    /// Percent of stable's requests mirrored to the candidate and compared.
    #[serde(default)]
    pub shadow_percent: u32,
    /// Remember answers' predictions for `POST /feedback`.
    #[serde(default)]
    pub feedback: bool,
    /// Read a regressor's live values while the candidate takes traffic.
    #[serde(default)]
    pub values: bool,
    /// The version stable serves (`x-hoist-version`, a metric label).
    #[serde(default = "unknown")]
    pub stable_version: String,
    /// The candidate's version; `None`: no candidate (weight and shadow must be 0).
    #[serde(default)]
    pub candidate_version: Option<String>,
}

fn unknown() -> String {
    "unknown".into()
}

impl Default for RoutesBody {
    fn default() -> Self {
        RoutesBody {
            candidate_weight: 0,
            shadow_percent: 0,
            feedback: false,
            values: false,
            stable_version: unknown(),
            candidate_version: None,
        }
    }
}

struct Admin {
    gateway: Gateway,
    /// Read again when its file is rotated (a mounted Secret).
    token: Secret,
    stable: String,
    candidate: Option<String>,
    /// What was last set (the upstream addresses aside).
    routes: Mutex<RoutesBody>,
    /// This process's id: a restarted gateway has another, and zeroed counters.
    instance: String,
}

/// `http://host:port[/]` or `host:port` to `host:port`.
fn host_port(u: &str) -> Result<String, String> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| (!u.contains("://")).then_some(u))
        .ok_or_else(|| format!("`{u}`: only http:// upstreams are supported"))?;
    let hp = rest.trim_end_matches('/');
    if hp.contains('/') || !hp.contains(':') {
        return Err(format!("`{u}`: write http://HOST:PORT (no path)"));
    }
    Ok(hp.to_string())
}

async fn resolve(u: &str) -> Result<Vec<SocketAddr>, String> {
    let hp = host_port(u)?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&hp)
        .await
        .map_err(|e| format!("cannot resolve `{hp}`: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("`{hp}` resolves to no address"));
    }
    Ok(addrs)
}

impl Admin {
    /// Applies `body` to the gateway: validated, upstreams resolved again.
    async fn apply(&self, body: RoutesBody) -> Result<(), (StatusCode, String)> {
        let bad = |m: String| Err((StatusCode::BAD_REQUEST, m));
        if body.candidate_weight > 100 || body.shadow_percent > 100 {
            return bad(format!(
                "candidate_weight {} and shadow_percent {} are percentages (0 to 100)",
                body.candidate_weight, body.shadow_percent
            ));
        }
        if body.candidate_version.is_none()
            && (body.candidate_weight > 0 || body.shadow_percent > 0)
        {
            return bad("a weight or shadow needs a candidate_version".into());
        }
        let candidate = match (&body.candidate_version, &self.candidate) {
            (Some(_), None) => {
                return bad(
                    "this gateway was started without --candidate: no candidate can be set".into(),
                );
            }
            (Some(v), Some(u)) => Some(Upstream {
                version: v.clone(),
                model: None,
                addrs: resolve(u)
                    .await
                    .map_err(|e| (StatusCode::BAD_GATEWAY, format!("candidate: {e}")))?,
            }),
            (None, _) => None,
        };
        let stable = Upstream {
            version: body.stable_version.clone(),
            model: None,
            addrs: resolve(&self.stable)
                .await
                .map_err(|e| (StatusCode::BAD_GATEWAY, format!("stable: {e}")))?,
        };
        let routes = Routes {
            stable: Some(stable),
            candidate,
            candidate_weight: body.candidate_weight,
            shadow_percent: body.shadow_percent,
            feedback: body.feedback,
            values: body.values,
        };
        routes.validate().or_else(|e| bad(e.to_string()))?;
        self.gateway.set_routes(routes);
        *self.routes.lock().unwrap_or_else(|p| p.into_inner()) = body;
        Ok(())
    }

    /// The 401 to answer when the request lacks the admin token.
    fn refused(&self, headers: &HeaderMap) -> Option<Response> {
        let want = self.token.get();
        let got = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if constant_time_eq(got.as_bytes(), want.as_bytes()) {
            None
        } else {
            Some(error(
                StatusCode::UNAUTHORIZED,
                "the admin API needs `Authorization: Bearer <admin token>`".into(),
            ))
        }
    }

    fn view(&self) -> serde_json::Value {
        let r = self.gateway.routes();
        let body = self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let addrs = |u: &Option<Upstream>| {
            u.as_ref()
                .map(|u| u.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>())
        };
        json!({
            "routes": body,
            "stable_addrs": addrs(&r.stable),
            "candidate_addrs": addrs(&r.candidate),
            "instance": self.instance,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn get_routes(State(a): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if let Some(r) = a.refused(&headers) {
        return r;
    }
    axum::Json(a.view()).into_response()
}

async fn put_routes(State(a): State<Arc<Admin>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = a.refused(&headers) {
        return r;
    }
    let body: RoutesBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("routes: {e}")),
    };
    match a.apply(body).await {
        Ok(()) => axum::Json(a.view()).into_response(),
        Err((status, m)) => error(status, m),
    }
}

async fn snapshot(State(a): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if let Some(r) = a.refused(&headers) {
        return r;
    }
    axum::Json(json!({
        "instance": a.instance,
        "snapshot": a.gateway.metrics(),
    }))
    .into_response()
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub(crate) fn run(
    env: &dyn Fn(&str) -> Option<String>,
    a: GatewayArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let token = match (&a.admin_token_file, env("HOIST_ADMIN_TOKEN")) {
        (Some(p), _) => {
            Secret::file(p).map_err(|e| CliError::Usage(format!("--admin-token-file: {e}")))?
        }
        (None, Some(t)) if !t.trim().is_empty() => Secret::value(t.trim()),
        _ => {
            return Err(CliError::Usage(
                "the admin API needs a token: --admin-token-file FILE or HOIST_ADMIN_TOKEN".into(),
            ));
        }
    };
    if a.admin_listen == a.listen && a.listen.port() != 0 {
        return Err(CliError::Usage(
            "--admin-listen must differ from --listen: the admin API is never on the public port"
                .into(),
        ));
    }
    for (flag, u) in std::iter::once(("--stable", &a.stable))
        .chain(a.candidate.iter().map(|c| ("--candidate", c)))
    {
        host_port(u).map_err(|e| CliError::Usage(format!("{flag}: {e}")))?;
    }
    // Both read again when their files are rotated.
    let feedback_token = match &a.feedback_token_file {
        Some(p) => Some(
            Secret::file(p).map_err(|e| CliError::Usage(format!("--feedback-token-file: {e}")))?,
        ),
        None => None,
    };
    let config = GatewayConfig {
        name: a.name.clone(),
        sticky_header: a.sticky_header.clone(),
        sticky_cookie: a.sticky_cookie.clone(),
        force_header: a
            .force_header
            .clone()
            .unwrap_or_else(|| hoist_gateway::DEFAULT_FORCE_HEADER.to_string()),
        response_timeout: a.response_timeout,
        feedback_token,
        ..GatewayConfig::default()
    };
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // The data plane runs its own worker threads; this runtime serves the admin API
    // and waits for signals.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Io {
            context: "starting the runtime".into(),
            source,
        })?;
    rt.block_on(async move {
        let bind = |addr: SocketAddr, what: &'static str| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| CliError::Io {
                    context: format!("{what} {addr}"),
                    source,
                })
        };
        let listener = bind(a.listen, "--listen").await?;
        let admin_listener = bind(a.admin_listen, "--admin-listen").await?;
        let gateway = Gateway::new(config);
        let instance = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let admin = Arc::new(Admin {
            gateway: gateway.clone(),
            token,
            stable: a.stable.clone(),
            candidate: a.candidate.clone(),
            routes: Mutex::new(RoutesBody::default()),
            instance,
        });
        // All traffic to stable from the start; a name that does not resolve yet
        // (a Service created after this pod) fails the start: the pod restarts.
        admin
            .apply(RoutesBody::default())
            .await
            .map_err(|(_, m)| CliError::Usage(format!("--stable: {m}")))?;
        let app = Router::new()
            .route(
                "/healthz",
                get(|| async { axum::Json(json!({"ok": true})) }),
            )
            .route("/admin/routes", get(get_routes).put(put_routes))
            .route("/admin/snapshot", get(snapshot))
            .with_state(admin);
        let (public, admin_addr) = (
            listener.local_addr().map_err(|source| CliError::Io {
                context: "--listen".into(),
                source,
            })?,
            admin_listener.local_addr().map_err(|source| CliError::Io {
                context: "--admin-listen".into(),
                source,
            })?,
        );
        tokio::spawn(async move {
            let _ = axum::serve(admin_listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await;
        });
        let _ = writeln!(out, "listening on http://{public}");
        let _ = writeln!(out, "admin API on http://{admin_addr}");
        let _ = out.flush();
        gateway
            .serve_with_threads(listener, threads, shutdown_signal())
            .await
            .map_err(|source| CliError::Io {
                context: "serving".into(),
                source,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_urls_or_host_ports_without_a_path() {
        assert_eq!(
            host_port("http://m-stable.ns.svc:80").unwrap(),
            "m-stable.ns.svc:80"
        );
        assert_eq!(host_port("127.0.0.1:9001/").unwrap(), "127.0.0.1:9001");
        assert!(
            host_port("https://x:1")
                .unwrap_err()
                .contains("only http://")
        );
        assert!(host_port("http://x:1/v2").unwrap_err().contains("no path"));
        assert!(host_port("x").unwrap_err().contains("HOST:PORT"));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
