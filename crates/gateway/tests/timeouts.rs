//! Timeouts on both sides of the gateway: a model server that never answers gets
//! the client a 504 (on the fast path and on hyper's), a client that stops halfway
//! through its request head gets a 408, and an idle keep-alive connection is closed.
//! Real sockets on 127.0.0.1, a backend that reads requests and answers nothing.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Running, config, routes};
use hoist_gateway::{GatewayConfig, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that accepts connections, reads whatever comes, and never answers.
async fn silent_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A gateway with short timeouts whose only (stable) backend never answers.
async fn in_front_of_a_silent_backend() -> Running {
    let config = GatewayConfig {
        response_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(400),
        header_timeout: Duration::from_millis(300),
        ..config("prod")
    };
    let stable = Upstream {
        version: "1".into(),
        model: None,
        addrs: vec![silent_backend().await],
    };
    Running::start(config, routes(Some(stable), None, 0)).await
}

/// Sends `request` on a new connection and reads until the gateway closes it or
/// `limit` passes.
async fn exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_server_that_never_answers_gets_the_client_a_504() {
    let gw = in_front_of_a_silent_backend().await;
    let body = r#"{"inputs":[[1]]}"#;
    // The fast path (a Content-Length body) and hyper's (a chunked one).
    let fast = format!(
        "POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let chunked = format!(
        "POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    for request in [fast, chunked] {
        let (answer, took) = exchange(gw.addr, request.as_bytes(), Duration::from_secs(10)).await;
        assert!(
            answer.starts_with("HTTP/1.1 504"),
            "{answer:?} after {took:?}"
        );
        assert!(answer.contains("no answer within 300ms"), "{answer}");
        assert!(answer.contains("x-request-id"), "{answer}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
    // Counted as the stable variant's upstream errors.
    let m = gw.gateway.metrics();
    assert_eq!(m.stable.upstream_errors, 2, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_stops_halfway_gets_a_408_and_an_idle_connection_is_closed() {
    let gw = in_front_of_a_silent_backend().await;
    let (answer, took) = exchange(
        gw.addr,
        b"POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-le",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "{answer:?} after {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    // A connection that sends nothing is closed without an answer.
    let (answer, took) = exchange(gw.addr, b"", Duration::from_secs(10)).await;
    assert_eq!(answer, "");
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Nothing reached the backend, nothing was counted.
    let m = gw.gateway.metrics();
    assert_eq!(m.stable.requests, 0, "{m:?}");
}
