//! The gateway on the wire: raw HTTP/1.1 from the client and from the backend, so
//! framing the fast path handles itself (large, chunked and close-delimited bodies,
//! pipelining, malformed requests) and what it hands to hyper are both covered.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Running, config, routes};
use hoist_gateway::Upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BIG: usize = 300_000;

/// A backend that reads one request head (and its Content-Length body) at a time
/// and answers by the path: `/big` (a large Content-Length body written in pieces),
/// `/chunked`, `/close` (body delimited by closing), anything else a small body that
/// repeats the request body's length.
async fn raw_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some((path, body_len)) = read_request(&mut s, &mut buf).await else {
                        return;
                    };
                    match path.as_str() {
                        "/big" => {
                            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {BIG}\r\n\r\n");
                            s.write_all(head.as_bytes()).await.unwrap();
                            for chunk in vec![b'x'; BIG].chunks(70_000) {
                                s.write_all(chunk).await.unwrap();
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        }
                        "/chunked" => {
                            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
                                .await
                                .unwrap();
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            s.write_all(b"6\r\n world\r\n0\r\n\r\n").await.unwrap();
                        }
                        "/close" => {
                            s.write_all(
                                b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end",
                            )
                            .await
                            .unwrap();
                            return;
                        }
                        _ => {
                            let body = format!("got {body_len}");
                            let head = format!(
                                "HTTP/1.1 201 Created\r\nconnection: keep-alive, x-secret\r\nx-secret: 1\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            s.write_all(head.as_bytes()).await.unwrap();
                            s.write_all(body.as_bytes()).await.unwrap();
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Reads one request (head and Content-Length body or chunked body) from `s`.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, usize)> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let path = head.split(' ').nth(1)?.to_string();
            let chunked = head.contains("transfer-encoding: chunked");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            loop {
                let rest = &buf[end + 4..];
                let done = if chunked {
                    find(rest, b"0\r\n\r\n").map(|i| i + 5)
                } else {
                    (rest.len() >= len).then_some(len)
                };
                if let Some(n) = done {
                    let body_len = if chunked { n } else { len };
                    buf.drain(..end + 4 + n);
                    return Some((path, body_len));
                }
                if s.read_buf(buf).await.ok()? == 0 {
                    return None;
                }
            }
        }
        if s.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends `raw` and reads until the gateway closes or `responses` heads arrived
/// and their bodies are complete (by a short quiet period).
async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    loop {
        let mut buf = [0u8; 65536];
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn gateway() -> Running {
    let backend = raw_backend().await;
    Running::start(
        config("wire"),
        routes(
            Some(Upstream {
                version: "7".into(),
                model: None,
                addrs: vec![backend],
            }),
            None,
            0,
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_of_every_framing_come_through_whole() {
    let gw = gateway().await;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nhost: a\r\n\r\n");

    let big = exchange(gw.addr, get("/big").as_bytes()).await;
    assert!(big.starts_with("HTTP/1.1 200 OK\r\n"), "{}", &big[..100]);
    assert!(big.contains("x-hoist-variant: stable\r\n"));
    assert!(big.ends_with(&"x".repeat(BIG)));
    assert_eq!(big.split("\r\n\r\n").nth(1).unwrap().len(), BIG);

    let chunked = exchange(gw.addr, get("/chunked").as_bytes()).await;
    assert!(
        chunked.contains("transfer-encoding: chunked\r\n"),
        "{chunked}"
    );
    assert!(
        chunked.ends_with("\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        "{chunked}"
    );

    assert!(!chunked.contains("content-length"), "{chunked}");

    let close = exchange(gw.addr, get("/close").as_bytes()).await;
    assert!(close.contains("connection: close\r\n"), "{close}");
    assert!(close.ends_with("\r\n\r\nuntil the end"), "{close}");

    // Pipelined, with a body; the connection stays usable after a chunked answer.
    let two = format!(
        "{}POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc{}",
        get("/chunked"),
        get("/echo")
    );
    let two = exchange(gw.addr, two.as_bytes()).await;
    assert_eq!(two.matches("HTTP/1.1 ").count(), 3, "{two}");
    assert!(two.contains("HTTP/1.1 201 Created\r\n"), "{two}");
    assert!(two.contains("got 3"), "{two}");
    assert!(two.ends_with("got 0"), "{two}");
    assert!(!two.contains("x-secret"), "{two}");

    let m = gw.gateway.metrics();
    assert_eq!(m.stable.requests, 6);
    assert_eq!(m.stable.upstream_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusual_requests_go_to_hyper_and_bad_ones_get_a_400() {
    let gw = gateway().await;
    // Chunked request body: hyper's path.
    let chunked = exchange(
        gw.addr,
        b"POST /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(chunked.starts_with("HTTP/1.1 201 Created\r\n"), "{chunked}");
    assert!(chunked.contains("x-hoist-version: 7\r\n"), "{chunked}");
    // HTTP/1.0: hyper's path too.
    let old = exchange(gw.addr, b"GET /echo HTTP/1.0\r\n\r\n").await;
    assert!(old.starts_with("HTTP/1.0 201 Created\r\n"), "{old}");
    // Garbage and conflicting lengths: 400, then the connection closes.
    for bad in [
        &b"NOT HTTP AT ALL\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
        b"POST / HTTP/1.1\r\ncontent-length: x\r\n\r\n",
    ] {
        let answer = exchange(gw.addr, bad).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    }
    // A head that never ends: 431 once it is too large.
    let huge = format!("GET / HTTP/1.1\r\nx-a: {}", "a".repeat(70_000));
    let answer = exchange(gw.addr, huge.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
}
