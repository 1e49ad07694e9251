//! The HTTP ceiling for `bench/serving.sh`: a bare hyper 1.x server that answers
//! every request with the same small JSON body, without reading a model.
//!
//! hoist-server's throughput divided by this one's says how much of the cost of a
//! request is ours (routing, parsing, inference, encoding) rather than the HTTP
//! stack's. It reads and discards the request body, as a real server has to.
//!
//! Usage: `hyper_ceiling [--host 127.0.0.1] [--port 0]`. Once it accepts
//! connections it prints `listening on http://HOST:PORT`, like hoist-server.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What a one-row `/invocations` answer of the benchmark model looks like.
const BODY: &[u8] = br#"{"predictions":[{"label":0,"probabilities":[0.9,0.1]}]}"#;

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Drain the body so the connection can be reused; a broken body just ends it.
    let _ = req.into_body().collect().await;
    let mut res = Response::new(Full::new(Bytes::from_static(BODY)));
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(res)
}

fn parse_args() -> Result<SocketAddr, String> {
    let mut host = "127.0.0.1".to_string();
    let mut port: u16 = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--host" => host = value("--host")?,
            "--port" => {
                port = value("--port")?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?
            }
            "-h" | "--help" => {
                println!("usage: hyper_ceiling [--host 127.0.0.1] [--port 0]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    format!("{host}:{port}")
        .parse()
        .map_err(|e| format!("bad address {host}:{port}: {e}"))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let addr = match parse_args() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("hyper_ceiling: {e}");
            std::process::exit(64);
        }
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hyper_ceiling: bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().expect("bound socket has an address");
    println!("listening on http://{local}");
    let _ = std::io::stdout().flush();

    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the others.
                eprintln!("hyper_ceiling: accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(answer));
            // Clients closing mid-request are normal under load; nothing to report.
            let _ = conn.await;
        });
    }
}
