//! Test fixtures: tiny model-server stand-ins, a gateway on a free port, a client.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hoist_gateway::{Gateway, GatewayConfig, Routes, Upstream};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// A stand-in for a model server. It answers with its own name, and obeys two
/// request headers: `x-status: N` (answer with that status) and `x-sleep-ms: N`
/// (wait that long first). It echoes the `x-request-id` it saw as `x-seen-request-id`,
/// and the target it got as `x-seen-path`.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    /// Requests that arrived (counted before any sleep).
    pub hits: Arc<AtomicUsize>,
    /// Connections accepted.
    pub conns: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

async fn answer(
    name: String,
    hits: Arc<AtomicUsize>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let status = header("x-status").unwrap_or(200);
    let sleep = header("x-sleep-ms").unwrap_or(0);
    let seen_id = req.headers().get("x-request-id").cloned();
    let seen_connection = req.headers().contains_key("x-hop");
    let seen_path = req
        .uri()
        .path_and_query()
        .map_or_else(String::new, |pq| pq.as_str().to_string());
    let _ = req.into_body().collect().await;
    if sleep > 0 {
        tokio::time::sleep(Duration::from_millis(sleep)).await;
    }
    let mut res = Response::new(Full::new(Bytes::from(name)));
    *res.status_mut() = StatusCode::from_u16(status as u16).unwrap();
    if let Some(id) = seen_id {
        res.headers_mut().insert("x-seen-request-id", id);
    }
    if let Ok(path) = seen_path.parse() {
        res.headers_mut().insert("x-seen-path", path);
    }
    if seen_connection {
        res.headers_mut().insert("x-saw-hop", "1".parse().unwrap());
    }
    Ok(res)
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let owned = name.to_string();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let conns = Arc::new(AtomicUsize::new(0));
        let accepted_conns = conns.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        accepted_conns.fetch_add(1, Ordering::SeqCst);
                        let (name, hits) = (owned.clone(), counted.clone());
                        conns.spawn(async move {
                            let svc = service_fn(move |req| answer(name.clone(), hits.clone(), req));
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                }
            }
            drop(listener);
            conns.shutdown().await;
        });
        Backend {
            name: name.to_string(),
            addr,
            hits,
            conns,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// Closes the listener and every connection (as a killed process would).
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for_hits(&self, n: usize) {
        while self.hits.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn upstream(&self, version: &str) -> Upstream {
        Upstream {
            version: version.to_string(),
            model: None,
            addrs: vec![self.addr],
        }
    }
}

/// A gateway serving on a free port.
pub struct Running {
    pub gateway: Gateway,
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    pub async fn start(config: GatewayConfig, routes: Routes) -> Running {
        let gateway = Gateway::new(config);
        gateway.set_routes(routes);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway.clone().serve(listener, async move {
            let _ = rx.await;
        }));
        Running {
            gateway,
            addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Starts the graceful shutdown; returns the serve task.
    pub fn shut_down(&mut self) -> JoinHandle<std::io::Result<()>> {
        let _ = self.shutdown.take().unwrap().send(());
        self.task.take().unwrap()
    }
}

pub fn config(name: &str) -> GatewayConfig {
    GatewayConfig {
        name: name.to_string(),
        ..Default::default()
    }
}

/// Routes with `stable` serving version 1 and `candidate` version 2 at `weight`.
pub fn both(stable: &Backend, candidate: &Backend, weight: u32) -> Routes {
    routes(
        Some(stable.upstream("1")),
        Some(candidate.upstream("2")),
        weight,
    )
}

pub fn routes(stable: Option<Upstream>, candidate: Option<Upstream>, weight: u32) -> Routes {
    Routes {
        stable,
        candidate,
        candidate_weight: weight,
        ..Default::default()
    }
}

/// One answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn variant(&self) -> &str {
        self.header("x-hoist-variant").unwrap_or("")
    }
}

#[derive(Clone)]
pub struct Client(HyperClient<HttpConnector, Full<Bytes>>);

impl Client {
    pub fn new() -> Client {
        Client(HyperClient::builder(TokioExecutor::new()).build_http())
    }

    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        self.try_request(method, url, headers, body).await.unwrap()
    }

    pub async fn try_request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Answer, String> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        let res = self.0.request(req).await.map_err(|e| format!("{e:?}"))?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Answer {
        self.request("GET", url, headers, "").await
    }

    pub async fn post(&self, url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        self.request("POST", url, headers, body).await
    }
}
