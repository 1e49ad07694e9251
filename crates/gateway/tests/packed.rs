//! Packed upstreams (`Upstream::model`): a model server serving several models gets
//! `/invocations` as `/models/{name}/invocations`, per backend and per attempt, on
//! the fast path and on hyper's path, through failover, forced variants, shadow
//! mirroring and a `Router`. Real HTTP on 127.0.0.1, stand-in servers that echo the
//! target they got (`x-seen-path`).

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use hoist_gateway::{Gateway, Router, Routes, Upstream};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `backend`'s upstream at `version`, packed as `model` (`None`: its own server).
fn upstream(backend: &Backend, version: &str, model: Option<&str>) -> Upstream {
    Upstream {
        model: model.map(str::to_string),
        ..backend.upstream(version)
    }
}

/// An address nothing listens on (a refused connection).
async fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// How a request reaches the gateway.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// HTTP/1.1 with `Content-Length`: the fast path.
    Fast,
    /// A chunked body: handed to hyper.
    Chunked,
    /// HTTP/1.0: handed to hyper.
    Http10,
}

const ALL: [Via; 3] = [Via::Fast, Via::Chunked, Via::Http10];

/// One request on a connection of its own, closed after the answer; returns the
/// status and the answer's headers (names lower-case).
async fn send(
    addr: SocketAddr,
    via: Via,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, BTreeMap<String, String>) {
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let request = match via {
        Via::Fast => format!(
            "POST {target} HTTP/1.1\r\nhost: x\r\n{extra}connection: close\r\ncontent-length: 2\r\n\r\n{{}}"
        ),
        Via::Chunked => format!(
            "POST {target} HTTP/1.1\r\nhost: x\r\n{extra}connection: close\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
        ),
        Via::Http10 => {
            format!("POST {target} HTTP/1.0\r\n{extra}content-length: 2\r\n\r\n{{}}")
        }
    };
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    let head = text.split("\r\n\r\n").next().unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

/// (variant, path the server got) of one request.
async fn seen(
    addr: SocketAddr,
    via: Via,
    target: &str,
    headers: &[(&str, &str)],
) -> (String, String) {
    let (status, h) = send(addr, via, target, headers).await;
    assert_eq!(status, 200, "{via:?} {target}: {h:?}");
    (h["x-hoist-variant"].clone(), h["x-seen-path"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packed_stable_gets_the_model_in_the_path_and_an_unpacked_candidate_does_not() {
    let stable = Backend::start("stable").await;
    let candidate = Backend::start("candidate").await;
    let gw = Running::start(
        config("prod"),
        routes(
            Some(upstream(&stable, "1", Some("fraud detector"))),
            Some(upstream(&candidate, "2", None)),
            50,
        ),
    )
    .await;
    for via in ALL {
        let mut variants = BTreeMap::new();
        for _ in 0..10 {
            let (variant, path) = seen(gw.addr, via, "/invocations?x=1", &[]).await;
            let want = match variant.as_str() {
                "stable" => "/models/fraud%20detector/invocations?x=1",
                "candidate" => "/invocations?x=1",
                other => panic!("variant {other}"),
            };
            assert_eq!(path, want, "{via:?} {variant}");
            *variants.entry(variant).or_insert(0) += 1;
            // A path that names its model goes unchanged to either.
            let (variant, path) = seen(gw.addr, via, "/v2/models/a/infer", &[]).await;
            assert_eq!(path, "/v2/models/a/infer", "{via:?} {variant}");
            *variants.entry(variant).or_insert(0) += 1;
        }
        // The split sent requests of both kinds to both variants.
        assert_eq!(variants.len(), 2, "{via:?}: {variants:?}");
        // Forced requests follow the rule of the variant they are forced to.
        for (force, want) in [
            ("stable", "/models/fraud%20detector/invocations"),
            ("candidate", "/invocations"),
        ] {
            let (variant, path) =
                seen(gw.addr, via, "/invocations", &[("x-hoist-variant", force)]).await;
            assert_eq!((variant.as_str(), path.as_str()), (force, want), "{via:?}");
        }
        // Paths that only look alike, and per-server paths, go unchanged.
        for target in ["/invocations/x", "/ping", "/v2/health/ready"] {
            let (_, path) = seen(gw.addr, via, target, &[("x-hoist-variant", "stable")]).await;
            assert_eq!(path, target, "{via:?}");
        }
    }
    // The packed stable's traffic is still counted as stable's, by version.
    let m = gw.gateway.metrics();
    assert!(m.stable.requests > 0 && m.candidate.requests > 0, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_follows_the_backend_actually_used() {
    let packed = Backend::start("packed").await;
    let single = Backend::start("single").await;
    let nowhere = refused_addr().await;
    let down = |version: &str, model: Option<&str>| Upstream {
        version: version.to_string(),
        model: model.map(str::to_string),
        addrs: vec![nowhere],
    };
    // Stable refused (and itself packed under another name), candidate packed:
    // the request lands on the candidate with the candidate's model in its path.
    let gw = Running::start(
        config("prod"),
        routes(
            Some(down("1", Some("other"))),
            Some(upstream(&packed, "2", Some("b"))),
            0,
        ),
    )
    .await;
    // The reverse: a packed candidate refused, an unpacked stable takes the request
    // with the target as it came.
    let back = Running::start(
        config("prod"),
        routes(
            Some(upstream(&single, "1", None)),
            Some(down("2", Some("b"))),
            100,
        ),
    )
    .await;
    for via in ALL {
        for _ in 0..3 {
            assert_eq!(
                seen(gw.addr, via, "/invocations?x=1", &[]).await,
                ("candidate".into(), "/models/b/invocations?x=1".into()),
                "{via:?}"
            );
            assert_eq!(
                seen(back.addr, via, "/invocations?x=1", &[]).await,
                ("stable".into(), "/invocations?x=1".into()),
                "{via:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_router_a_packed_model_keeps_its_name() {
    let shared = Backend::start("shared").await;
    let own = Backend::start("own").await;
    // Model b lives on a server packing several models; model a has its own.
    let a = Gateway::new(config("prod"));
    a.set_routes(routes(Some(upstream(&own, "1", None)), None, 0));
    let b = Gateway::new(config("prod"));
    b.set_routes(routes(Some(upstream(&shared, "1", Some("b"))), None, 0));
    let router = Router::new("prod");
    router.insert("a", a);
    router.insert("b", b);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(router.serve_with_threads(listener, 2, async move {
        let _ = rx.await;
    }));
    for via in ALL {
        for (target, want) in [
            ("/models/b/invocations?x=1", "/models/b/invocations?x=1"),
            ("/models/a/invocations?x=1", "/invocations?x=1"),
            ("/v2/models/b/infer", "/v2/models/b/infer"),
            ("/models/b/ping", "/ping"),
        ] {
            let (_, path) = seen(addr, via, target, &[]).await;
            assert_eq!(path, want, "{via:?} {target}");
        }
    }
}

/// A model server stand-in that records the target of every request it gets.
struct Recorder {
    addr: SocketAddr,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let recorded = paths.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let recorded = recorded.clone();
                        async move {
                            let path = req.uri().to_string();
                            let _ = req.into_body().collect().await;
                            recorded.lock().unwrap().push(path);
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                br#"{"predictions": [1]}"#,
                            ))))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Recorder { addr, paths }
    }

    fn upstream(&self, version: &str, model: Option<&str>) -> Upstream {
        Upstream {
            version: version.to_string(),
            model: model.map(str::to_string),
            addrs: vec![self.addr],
        }
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived.
    async fn wait_for(&self, n: usize) -> Vec<String> {
        loop {
            let paths = self.paths();
            if paths.len() >= n {
                return paths;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_copy_follows_the_candidates_rule() {
    for (stable_model, candidate_model, stable_want, candidate_want) in [
        (
            None,
            Some("m"),
            "/invocations?x=1",
            "/models/m/invocations?x=1",
        ),
        (
            Some("m"),
            None,
            "/models/m/invocations?x=1",
            "/invocations?x=1",
        ),
    ] {
        let stable = Recorder::start().await;
        let candidate = Recorder::start().await;
        let gw = Running::start(
            config("prod"),
            Routes {
                stable: Some(stable.upstream("1", stable_model)),
                candidate: Some(candidate.upstream("2", candidate_model)),
                candidate_weight: 0,
                shadow_percent: 100,
                ..Default::default()
            },
        )
        .await;
        let (status, h) = send(gw.addr, Via::Fast, "/invocations?x=1", &[]).await;
        assert_eq!(status, 200, "{h:?}");
        assert_eq!(h["x-hoist-variant"], "stable");
        assert_eq!(stable.paths(), [stable_want]);
        // The copy goes after the answer: wait for it, then look at its target.
        assert_eq!(candidate.wait_for(1).await, [candidate_want]);
        assert_eq!(stable.paths().len(), 1);
    }
}
