//! A differential corpus of malformed and ambiguous requests, sent as raw bytes to
//! a real gateway in front of a hyper model-server stand-in (the parser hoist-server
//! uses). Each case must get a refusal (400, 404 for operator paths, 431 for heads
//! too large), or exactly the answers (status and body) the same bytes get sent
//! straight to the backend. After every case, a probe on a new connection must get
//! its own answer, and no request the case smuggled in may have reached the backend.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Running, config, routes};
use hoist_gateway::Upstream;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What every request that reached the backend looked like: "METHOD path marker".
type Log = Arc<Mutex<Vec<String>>>;

/// A model-server stand-in on hyper's HTTP/1.1 server: answers every request with
/// what it saw (marker header, method, path, how the body was framed, the body).
async fn echo_backend() -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let marker = req
                            .headers()
                            .get("x-marker")
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                            .unwrap_or_else(|| "none".into());
                        let framing = if req.headers().contains_key("transfer-encoding") {
                            "chunked"
                        } else if req.headers().contains_key("content-length") {
                            "length"
                        } else {
                            "none"
                        };
                        let (method, path) = (req.method().clone(), req.uri().path().to_string());
                        seen.lock()
                            .unwrap()
                            .push(format!("{method} {path} {marker}"));
                        let body = match req.into_body().collect().await {
                            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                            Err(e) => format!("<body error: {e}>"),
                        };
                        let text = format!(
                            "marker={marker};method={method};path={path};framing={framing};body={body}"
                        );
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, log)
}

/// One response: status and body (interim 1xx responses are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    body: String,
}

/// Parses the responses in `buf`; how many bytes they took. `eof`: the peer
/// closed, so a response without length ends with `buf`.
fn parse_answers(buf: &[u8], out: &mut Vec<Answer>, eof: bool) -> usize {
    let mut at = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(n)) = resp.parse(&buf[at..]) else {
            return at;
        };
        let status = resp.code.unwrap();
        let chunked = resp.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding") && h.value.ends_with(b"chunked")
        });
        let (body, len) = if chunked {
            match dechunk(&buf[at + n..]) {
                Some(b) => b,
                None => return at,
            }
        } else {
            let len = match resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            {
                Some(h) => std::str::from_utf8(h.value)
                    .unwrap()
                    .parse::<usize>()
                    .unwrap(),
                None if (100..200).contains(&status) || status == 204 || status == 304 => 0,
                None if eof => buf.len() - at - n,
                None => return at,
            };
            if buf.len() < at + n + len {
                return at;
            }
            (buf[at + n..at + n + len].to_vec(), len)
        };
        if !(100..200).contains(&status) {
            out.push(Answer {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        at += n + len;
    }
}

/// A whole chunked body (without trailers) decoded, and the bytes it took.
fn dechunk(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line = buf[at..].windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&buf[at..at + line]).ok()?, 16).ok()?;
        at += line + 2;
        if size == 0 {
            return (buf.len() >= at + 2).then_some((body, at + 2));
        }
        body.extend_from_slice(buf.get(at..at + size)?);
        at += size + 2;
    }
}

/// Sends `raw` on a new connection to `addr`; reads until `n` answers came (and,
/// with `linger`, a little longer, to see more answers or the end), the peer
/// closed, or nothing came for a while. Also says whether the peer closed.
async fn send(addr: SocketAddr, raw: &[u8], n: usize, linger: bool) -> (Vec<Answer>, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The peer may refuse before it has read everything.
    let _ = s.write_all(raw).await;
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    let mut closed = false;
    loop {
        let mut chunk = [0u8; 65536];
        let wait = if answers.len() >= n {
            if !linger {
                break;
            }
            Duration::from_millis(150)
        } else {
            Duration::from_secs(3)
        };
        match tokio::time::timeout(wait, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                parse_answers(&buf, &mut answers, true);
                break;
            }
            Ok(Ok(k)) => {
                buf.extend_from_slice(&chunk[..k]);
                let used = parse_answers(&buf, &mut answers, false);
                buf.drain(..used);
            }
            Err(_) => break,
        }
    }
    (answers, closed)
}

/// What a case must get from the gateway.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This status, then the connection closes.
    Refused(u16),
    /// 404 for an operator path (the connection may stay open).
    Private,
    /// The same answers the backend gives directly (this many of them).
    Same(usize),
    /// The backend's answers to the first `n` requests, then the gateway's `status`
    /// (and, if `true`, the connection closes).
    Then(usize, u16, bool),
}

use Expect::*;

fn cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    // The smuggled request the ambiguous ones carry: it must never reach a backend.
    const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: h\r\nx-marker: smuggled\r\n\r\n";
    let post = |headers: &str, body: &str| {
        format!("POST /echo HTTP/1.1\r\nHost: h\r\nx-marker: case\r\n{headers}\r\n{body}")
            .into_bytes()
    };
    let chunked = |body: &str| post("Transfer-Encoding: chunked\r\n", body);
    let get = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes();
    let smuggled_len = SMUGGLED.len();
    vec![
        // The reported bug: Connection names Content-Length.
        (
            "connection names content-length",
            post(
                &format!("Connection: keep-alive, Content-Length\r\nContent-Length: {smuggled_len}\r\n"),
                SMUGGLED,
            ),
            Refused(400),
        ),
        (
            "connection names transfer-encoding",
            post(
                "Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n",
                &format!("{smuggled_len:x}\r\n{SMUGGLED}\r\n0\r\n\r\n"),
            ),
            Refused(400),
        ),
        ("connection names host", post("Connection: close, host\r\n", ""), Refused(400)),
        (
            "te and cl",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
            Refused(400),
        ),
        (
            "cl and te",
            post("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
            Refused(400),
        ),
        (
            "te and cl 0",
            post("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n", "0\r\n\r\n"),
            Refused(400),
        ),
        (
            "two lengths",
            post("Content-Length: 0\r\nContent-Length: 56\r\n", SMUGGLED),
            Refused(400),
        ),
        ("length list", post("Content-Length: 1, 2\r\n", "ab"), Refused(400)),
        ("length list alike", post("Content-Length: 2, 2\r\n", "ab"), Refused(400)),
        ("length plus", post("Content-Length: +2\r\n", "ab"), Refused(400)),
        ("length minus", post("Content-Length: -1\r\n", "ab"), Refused(400)),
        ("length inner space", post("Content-Length: 1 0\r\n", "ab"), Refused(400)),
        ("length hex", post("Content-Length: 0x2\r\n", "ab"), Refused(400)),
        ("length overflow", post("Content-Length: 99999999999999999999999\r\n", ""), Refused(400)),
        ("te chunked, identity", post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"), Refused(400)),
        ("te identity, chunked", post("Transfer-Encoding: identity, chunked\r\n", "0\r\n\r\n"), Refused(400)),
        ("te xchunked", post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), Refused(400)),
        ("te gzip", post("Transfer-Encoding: gzip\r\n", "0\r\n\r\n"), Refused(400)),
        (
            "te chunked twice",
            post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
            Refused(400),
        ),
        ("te chunked, chunked", post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"), Refused(400)),
        (
            "te in http/1.0",
            b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            Refused(400),
        ),
        ("obs-fold", post("X-A: 1\r\n 2\r\n", ""), Refused(400)),
        (
            "obs-fold on te",
            post("Transfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n", "0\r\n\r\n"),
            Refused(400),
        ),
        ("space before colon", post("Content-Length : 3\r\n", "abc"), Refused(400)),
        ("tab before colon", post("Transfer-Encoding\t: chunked\r\n", "0\r\n\r\n"), Refused(400)),
        ("chunk size not hex", chunked("zz\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        ("chunk size 0x", chunked("0x3\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        ("chunk size overflow", chunked("fffffffffffffffff1\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        ("chunk size leading space", chunked(" 3\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        ("chunk size junk", chunked("3 x\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        ("chunk size negative", chunked("-3\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        ("chunk extension empty", chunked("3;\r\nabc\r\n0\r\n\r\n"), Refused(400)),
        ("chunk extension bare lf", chunked("3;a\nabc\r\n0\r\n\r\n"), Refused(400)),
        ("chunk data too long", chunked(&format!("3\r\nabcd\r\n0\r\n\r\n{SMUGGLED}")), Refused(400)),
        ("chunk lf-only", chunked("3\nabc\n0\n\n"), Refused(400)),
        ("bare cr in value", post("X-A: 1\r2\r\n", ""), Refused(400)),
        ("nul in value", post("X-A: 1\x002\r\n", ""), Refused(400)),
        ("del in value", post("X-A: 1\x7f2\r\n", ""), Refused(400)),
        ("nul in target", b"GET /ec\0ho HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), Refused(400)),
        ("bare cr in request line", b"GET /echo\rHTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), Refused(400)),
        ("lf-only lines", b"GET /echo HTTP/1.1\nHost: h\n\n".to_vec(), Refused(400)),
        ("one lf-only line", b"GET /echo HTTP/1.1\r\nHost: h\nX-A: 1\r\n\r\n".to_vec(), Refused(400)),
        ("bare lf before request", b"\nGET /echo HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), Refused(400)),
        ("bad header name", post("X(A): 1\r\n", ""), Refused(400)),
        ("space in header name", post("X A: 1\r\n", ""), Refused(400)),
        ("underscore length", post(&format!("Content_Length: {smuggled_len}\r\n"), SMUGGLED), Refused(400)),
        ("http/0.9", b"GET /echo\r\n\r\n".to_vec(), Refused(400)),
        ("http/2.0 line", b"GET /echo HTTP/2.0\r\nHost: h\r\n\r\n".to_vec(), Refused(400)),
        ("http/1.2", b"GET /echo HTTP/1.2\r\nHost: h\r\n\r\n".to_vec(), Refused(400)),
        ("h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), Refused(400)),
        ("tab in request line", b"GET\t/echo HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), Refused(400)),
        ("no host", b"GET /echo HTTP/1.1\r\n\r\n".to_vec(), Refused(400)),
        ("two hosts", b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(), Refused(400)),
        ("host list", b"GET /echo HTTP/1.1\r\nHost: a, b\r\n\r\n".to_vec(), Refused(400)),
        (
            "huge header value",
            format!("GET /echo HTTP/1.1\r\nHost: h\r\nX-A: {}\r\n\r\n", "a".repeat(65_600)).into_bytes(),
            Refused(431),
        ),
        (
            "too many headers",
            format!("GET /echo HTTP/1.1\r\nHost: h\r\n{}\r\n", "X-A: 1\r\n".repeat(150)).into_bytes(),
            Refused(431),
        ),
        ("asterisk target", b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), Refused(400)),
        ("connect", b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n".to_vec(), Refused(400)),
        ("connect origin-form", b"CONNECT /echo HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), Refused(400)),
        ("dot segment", get("/./admin/reload"), Refused(400)),
        ("dot-dot segment", get("/x/../admin/reload"), Refused(400)),
        ("encoded dot-dot", get("/x/%2e%2e/admin/reload"), Refused(400)),
        ("backslash", get("/x\\..\\admin"), Refused(400)),
        ("encoded nul", get("/echo%00"), Refused(400)),
        ("non-ascii target", "GET /é HTTP/1.1\r\nHost: h\r\n\r\n".as_bytes().to_vec(), Refused(400)),
        // Operator paths of the model servers.
        ("admin", b"POST /admin/reload HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}".to_vec(), Private),
        ("admin bare", get("/admin"), Private),
        ("admin upper", get("/ADMIN/reload"), Private),
        ("admin double slash", get("//admin/reload"), Private),
        ("admin encoded", get("/%61dmin/reload"), Private),
        ("admin double encoded", get("/%2561dmin/reload"), Private),
        ("admin params", get("/admin;x/reload"), Private),
        ("admin absolute-form", get("http://h/admin/reload"), Private),
        (
            "admin chunked (hyper's path)",
            b"POST /admin/reload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n".to_vec(),
            Private,
        ),
        ("admin http/1.0 (hyper's path)", b"GET /admin/reload HTTP/1.0\r\n\r\n".to_vec(), Private),
        // Valid, if unusual: exactly what the backend says.
        ("plain", get("/echo"), Same(1)),
        ("absolute-form", get("http://h/echo?x=1"), Same(1)),
        ("length with leading zeros", post("Content-Length: 003\r\n", "abc"), Same(1)),
        ("same length twice", post("Content-Length: 3\r\nContent-Length: 3\r\n", "abc"), Same(1)),
        ("chunked (hyper's path)", chunked("3\r\nabc\r\n0\r\n\r\n"), Same(1)),
        ("chunked upper case", post("Transfer-Encoding: CHUNKED\r\n", "3\r\nabc\r\n0\r\n\r\n"), Same(1)),
        ("chunked with tab", post("Transfer-Encoding:\tchunked\r\n", "3\r\nabc\r\n0\r\n\r\n"), Same(1)),
        (
            "chunked with extensions and trailers",
            chunked("3;a=b;c=\"d e\"\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\n"),
            Same(1),
        ),
        ("expect 100-continue", post("Expect: 100-continue\r\nContent-Length: 3\r\n", "abc"), Same(1)),
        ("upgrade", b"GET /echo HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n".to_vec(), Same(1)),
        ("http/1.0 with length", b"POST /echo HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc".to_vec(), Same(1)),
        ("leading empty line", b"\r\nGET /echo HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), Same(1)),
        ("connection names a plain header", post("Connection: x-other\r\nX-Other: 1\r\nContent-Length: 1\r\n", "a"), Same(1)),
        (
            "body longer than its length",
            post("Content-Length: 3\r\n", "abcGET /second HTTP/1.1\r\nHost: h\r\nx-marker: second\r\n\r\n"),
            Same(2),
        ),
        (
            "pipelined",
            [get("/one"), post("Content-Length: 2\r\n", "hi"), get("/three")].concat(),
            Same(3),
        ),
        (
            "pipelined after chunked (hyper's path)",
            [chunked("1\r\na\r\n0\r\n\r\n"), get("/two")].concat(),
            Same(2),
        ),
        (
            "pipelined smuggle after chunked (hyper's path)",
            [
                chunked("1\r\na\r\n0\r\n\r\n"),
                post("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", &format!("0\r\n\r\n{SMUGGLED}")),
            ]
            .concat(),
            Then(1, 400, true),
        ),
        (
            "pipelined bad chunk after chunked (hyper's path)",
            [chunked("1\r\na\r\n0\r\n\r\n"), chunked(&format!("0x0\r\n\r\n{SMUGGLED}"))].concat(),
            Then(1, 400, true),
        ),
        (
            "pipelined lf-only after http/1.0 (hyper's path)",
            [
                &b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"[..],
                b"GET /smuggled HTTP/1.1\nHost: h\n\n",
            ]
            .concat(),
            Then(1, 400, true),
        ),
        (
            "pipelined admin after chunked (hyper's path)",
            [chunked("1\r\na\r\n0\r\n\r\n"), get("/%61dmin/reload")].concat(),
            Then(1, 404, false),
        ),
    ]
}

/// A chunked request: the fast path hands it, and the rest of the connection, to hyper.
const HYPER_FIRST: &[u8] =
    b"POST /echo HTTP/1.1\r\nHost: h\r\nx-marker: first\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n";

async fn gateway() -> (Running, SocketAddr, Log) {
    let (backend, log) = echo_backend().await;
    let gw = Running::start(
        config("smuggling"),
        routes(
            Some(Upstream {
                version: "1".into(),
                model: None,
                addrs: vec![backend],
            }),
            None,
            0,
        ),
    )
    .await;
    (gw, backend, log)
}

/// A request on a new connection must get its own answer.
async fn probe(gw: SocketAddr, name: &str, n: usize) {
    let marker = format!("probe-{n}");
    let raw = format!("GET /probe HTTP/1.1\r\nHost: h\r\nx-marker: {marker}\r\n\r\n");
    let (answers, _) = send(gw, raw.as_bytes(), 1, false).await;
    assert_eq!(answers.len(), 1, "after {name:?}: probe got {answers:?}");
    assert_eq!(answers[0].status, 200, "after {name:?}: {answers:?}");
    assert!(
        answers[0]
            .body
            .starts_with(&format!("marker={marker};method=GET;path=/probe;")),
        "after {name:?}: the probe got another request's answer: {answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_ambiguous_requests_are_refused_or_answered_as_the_backend_would() {
    let (gw, _, log) = gateway().await;
    // The same backend, started again for the direct requests: its log stays apart.
    let (backend, _) = echo_backend().await;
    let cases = cases();
    assert!(cases.len() >= 40);
    let mut failures = Vec::new();
    for (i, (name, raw, expect)) in cases.iter().enumerate() {
        let before = log.lock().unwrap().len();
        let n = match *expect {
            Same(n) => n,
            Then(n, ..) => n + 1,
            Refused(_) | Private => 1,
        };
        let (answers, closed) = send(gw.addr, raw, n, !matches!(expect, Private)).await;
        let backend_saw = log.lock().unwrap()[before..].to_vec();
        let check = match *expect {
            Refused(status) => {
                if answers.len() != 1 || answers[0].status != status || !closed {
                    Err(format!(
                        "want {status} and close, got {answers:?} (closed: {closed})"
                    ))
                } else if !backend_saw.is_empty() {
                    Err(format!("refused, yet the backend saw {backend_saw:?}"))
                } else {
                    Ok(())
                }
            }
            Private => match answers.first() {
                Some(a)
                    if a.status == 404
                        && a.body.contains("not found")
                        && backend_saw.is_empty() =>
                {
                    Ok(())
                }
                _ => Err(format!(
                    "want a 404 of the gateway's, got {answers:?}; backend saw {backend_saw:?}"
                )),
            },
            Same(n) | Then(n, ..) => {
                let (direct, _) = send(backend, raw, n, false).await;
                let direct: Vec<Answer> = direct.into_iter().take(n).collect();
                let (served, rest) = answers.split_at(answers.len().min(n));
                match *expect {
                    _ if served != direct.as_slice() || direct.len() != n => Err(format!(
                        "gateway answered {answers:?}, the backend directly {direct:?}"
                    )),
                    Then(_, status, close)
                        if rest.len() != 1 || rest[0].status != status || (close && !closed) =>
                    {
                        Err(format!(
                            "want {status} after the answers, got {rest:?} (closed: {closed})"
                        ))
                    }
                    Same(_) if !rest.is_empty() => {
                        Err(format!("more answers than the backend gives: {rest:?}"))
                    }
                    _ => Ok(()),
                }
            }
        };
        if let Err(why) = check {
            failures.push(format!("{name}: {why}"));
        }
        probe(gw.addr, name, i).await;

        // The same request on hyper's path: behind a chunked one, which the fast
        // path hands over with the rest of the connection.
        let status = match *expect {
            Refused(status) => status,
            Private => 404,
            Same(_) | Then(..) => continue,
        };
        let raw = [HYPER_FIRST, raw.as_slice()].concat();
        let (answers, closed) = send(gw.addr, &raw, 2, status != 404).await;
        let first_ok = answers
            .first()
            .is_some_and(|a| a.status == 200 && a.body.starts_with("marker=first;"));
        let second = answers.get(1).map(|a| a.status);
        if !first_ok || second != Some(status) || (status != 404 && !closed) || answers.len() != 2 {
            failures.push(format!(
                "{name} (hyper's path): want 200 then {status}, got {answers:?} (closed: {closed})"
            ));
        }
        probe(gw.addr, name, i).await;
    }
    let smuggled: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("smuggled"))
        .cloned()
        .collect();
    if !smuggled.is_empty() {
        failures.push(format!(
            "smuggled requests reached the backend: {smuggled:?}"
        ));
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A backend that answers by the path with responses whose framing is wrong or
/// ambiguous, and says in every `/ok` answer which of its connections it came on.
async fn tricky_backend() -> (SocketAddr, Arc<Mutex<Vec<(String, usize)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let log = served.clone();
    tokio::spawn(async move {
        for conn in 0.. {
            let (mut s, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end);
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    log.lock().unwrap().push((path.clone(), conn));
                    let answer: String = match path.as_str() {
                        "/cl-te" => "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into(),
                        "/bad-cl" => "HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok".into(),
                        "/extra" => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstolen".into(),
                        "/http10" => "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok".into(),
                        "/close" => "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok".into(),
                        "/te-twice" => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n".into(),
                        "/late-extra" => {
                            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                            tokio::time::sleep(Duration::from_millis(30)).await;
                            "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstolen".into()
                        }
                        _ => {
                            let body = format!("conn={conn}");
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                        }
                    };
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connections_are_reused_only_after_unambiguous_responses() {
    let (backend, served) = tricky_backend().await;
    // One worker thread: every client connection shares its idle backend connections.
    let gateway = hoist_gateway::Gateway::new(config("reuse"));
    gateway.set_routes(routes(
        Some(Upstream {
            version: "1".into(),
            model: None,
            addrs: vec![backend],
        }),
        None,
        0,
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gateway.serve_with_threads(listener, 1, std::future::pending()));
    // The fast path (HTTP/1.1) and hyper's (HTTP/1.0 clients).
    let fast = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes();
    let hyper = |path: &str| format!("GET {path} HTTP/1.0\r\n\r\n").into_bytes();
    let conn_of = |body: &str| -> usize {
        body.strip_prefix("conn=")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not an /ok answer: {body:?}"))
    };
    for (name, request) in [
        ("fast", &fast as &dyn Fn(&str) -> Vec<u8>),
        ("hyper", &hyper),
    ] {
        // A good answer leaves the connection reusable: the next request takes it.
        let (a, _) = send(addr, &request("/ok"), 1, false).await;
        let (b, _) = send(addr, &request("/ok"), 1, false).await;
        assert_eq!(
            conn_of(&a[0].body),
            conn_of(&b[0].body),
            "{name}: {a:?} {b:?}"
        );

        for (path, status, body) in [
            ("/cl-te", 200, "hello"),
            ("/bad-cl", 502, ""),
            ("/extra", 200, "ok"),
            ("/http10", 200, "ok"),
            ("/close", 200, "ok"),
            ("/te-twice", 200, "ok"),
            ("/late-extra", 200, "ok"),
        ] {
            let raw = [request(path), request("/ok")].concat();
            let (answers, _) = send(addr, &raw, 2, false).await;
            let used = served
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|(p, _)| p == path)
                .map(|(_, c)| *c)
                .unwrap();
            // The client reads exactly the answer, whatever the backend sent after it.
            let got = answers.first().map(|a| (a.status, a.body.as_str()));
            if status == 200 {
                assert_eq!(got, Some((200, body)), "{name} {path}: {answers:?}");
            } else {
                assert_eq!(got.map(|g| g.0), Some(status), "{name} {path}: {answers:?}");
            }
            // Let a late second answer arrive on the idle connection.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (next, _) = send(addr, &request("/ok"), 1, false).await;
            assert_eq!(next.len(), 1, "{name} {path}: {next:?}");
            assert_ne!(
                conn_of(&next[0].body),
                used,
                "{name} {path}: the connection was used again"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_chunked_bodies_are_checked_as_they_stream() {
    let (gw, _, log) = gateway().await;
    // Over the 1 MiB the guard holds back: streamed to the backend, checked on the way.
    let data = "x".repeat(1_100_000);
    let head =
        "POST /echo HTTP/1.1\r\nHost: h\r\nx-marker: long\r\nTransfer-Encoding: chunked\r\n\r\n";
    let good = format!("{head}{:x}\r\n{data}\r\n0\r\n\r\n", data.len());
    let (answers, _) = send(gw.addr, good.as_bytes(), 1, false).await;
    assert_eq!(answers.len(), 1, "{}", answers.len());
    assert_eq!(answers[0].status, 200);
    let echoed = format!("marker=long;method=POST;path=/echo;framing=chunked;body={data}");
    assert!(answers[0].body == echoed, "{}", &answers[0].body[..80]);

    // The same with an invalid chunk after it, and a request behind that.
    let bad = format!(
        "{head}{:x}\r\n{data}\r\n0x1\r\na\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
        data.len()
    );
    let (answers, closed) = send(gw.addr, bad.as_bytes(), 1, true).await;
    assert!(closed, "the connection must close");
    assert!(
        answers.iter().all(|a| a.status != 200),
        "an invalid chunked body was answered: {:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    probe(gw.addr, "a long invalid chunked body", 0).await;
    let seen = log.lock().unwrap().clone();
    assert!(!seen.iter().any(|l| l.contains("smuggled")), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_answers_to_head_have_no_body() {
    let (gw, _, _) = gateway().await;
    let raw = b"HEAD /admin/reload HTTP/1.1\r\nHost: h\r\n\r\n\
        GET /echo HTTP/1.1\r\nHost: h\r\nx-marker: after-head\r\n\r\n";
    let (answers, _) = send(gw.addr, raw, 2, false).await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(
        answers[0],
        Answer {
            status: 404,
            body: String::new()
        }
    );
    assert!(
        answers[1]
            .body
            .starts_with("marker=after-head;method=GET;path=/echo;"),
        "{answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sent_a_byte_at_a_time_are_read_whole() {
    let (gw, _, _) = gateway().await;
    for (raw, body) in [
        (
            &b"POST /echo HTTP/1.1\r\nHost: h\r\nx-marker: drip\r\nContent-Length: 3\r\n\r\nabc"[..],
            "marker=drip;method=POST;path=/echo;framing=length;body=abc",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: h\r\nx-marker: drip\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "marker=drip;method=POST;path=/echo;framing=chunked;body=abc",
        ),
    ] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        for byte in raw {
            s.write_all(&[*byte]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut buf = Vec::new();
        let mut answers = Vec::new();
        while answers.is_empty() {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
                .await
                .expect("an answer")
                .unwrap();
            assert!(n > 0, "closed without an answer");
            buf.extend_from_slice(&chunk[..n]);
            parse_answers(&buf, &mut answers, false);
        }
        assert_eq!(answers[0].status, 200);
        assert_eq!(answers[0].body, body);
    }
}
