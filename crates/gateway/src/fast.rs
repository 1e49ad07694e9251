//! The fast path: HTTP/1.1 proxying without hyper for the common request.
//!
//! Every client connection starts here. A request head is parsed with `httparse`
//! straight from the connection's buffer; the rewritten head and the whole body
//! (`Content-Length`, at most [`MAX_BODY`]) go to a pooled plain backend socket in
//! one write; the response head is parsed the same way, rewritten, and sent to the
//! client with the body bytes that came with it (usually in one write). Buffers
//! belong to the connection and are reused, so a request allocates nothing.
//!
//! What it does not handle it hands to hyper (`Gateway::serve_hyper`), with the
//! bytes already read, for the rest of the connection: HTTP/1.0, chunked or
//! `Expect`/`Upgrade` requests, bodies over [`MAX_BODY`], more than [`MAX_HEADERS`]
//! headers. A malformed request gets a 400 (a head over [`MAX_HEAD`] a 431) and the
//! connection closes.
//!
//! # Same behaviour as the hyper path
//! - `GET /metrics` is answered here; the split, the force header, sticky header
//!   and cookie are decided by [`crate::split::SplitRules::decide`], as on the hyper path.
//! - Hop-by-hop request headers (and those `Connection` names) are dropped,
//!   `x-request-id` is added when missing; responses lose their hop-by-hop headers
//!   (except `Transfer-Encoding`: the body is forwarded with its codings as it came)
//!   and gain `x-hoist-variant`, `x-hoist-version` and `x-request-id`.
//! - A refused connection sends the request to the next replica, then to the other
//!   variant, then answers 502; no upstream at all is a 503.
//! - A request is counted when the backend's body has ended, before its last bytes
//!   are written to the client; a backend failing mid-body counts as an upstream
//!   error, a client going away counts by the status.
//! - A pooled connection that the backend closed while it was idle (nothing at all
//!   comes back) is replaced by a new connection once; the request is sent again.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::gateway::{Attempt, Backend, Gateway, Table, json_error_body};
use crate::metrics::Class;
use crate::pool::Pool;
use crate::split::{Decision, Variant};
use crate::{inspect, shadow};

/// Longest request or response head.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body the fast path buffers; larger ones go to hyper.
const MAX_BODY: usize = 1024 * 1024;
/// Most request headers the fast path takes; more go to hyper.
const MAX_HEADERS: usize = 64;
/// Most response headers.
const MAX_RESPONSE_HEADERS: usize = 100;
/// Free space ensured before each read.
const READ_SPACE: usize = 16 * 1024;

/// One client connection's buffers, reused by every request on it.
#[derive(Default)]
struct Buffers {
    /// Bytes read from the client and not yet handled.
    input: Vec<u8>,
    /// The request as sent to the backend.
    request: Vec<u8>,
    /// Bytes read from the backend.
    response: Vec<u8>,
    /// What goes to the client next.
    output: Vec<u8>,
    /// The request's `x-request-id`.
    request_id: Vec<u8>,
    /// The answer's body, kept while the routes inspect answers (shadow, feedback).
    capture: Vec<u8>,
    /// `capture` holds the whole body (`Content-Length`, at most [`MAX_BODY`]).
    capture_ok: bool,
    /// Who answered the request just proxied, and the status.
    served: Option<(Variant, u16)>,
}

impl Buffers {
    /// Gives back the memory a large message left behind.
    fn shrink(&mut self) {
        const KEEP: usize = 4 * READ_SPACE;
        for buf in [
            &mut self.input,
            &mut self.request,
            &mut self.response,
            &mut self.capture,
        ] {
            if buf.capacity() > KEEP && buf.len() <= READ_SPACE {
                buf.shrink_to(KEEP);
            }
        }
    }
}

/// What to do with the bytes read so far.
enum Prep {
    /// Not a whole request yet.
    More,
    /// Not for the fast path: hyper takes over the connection.
    Fallback,
    /// Malformed: answer this status and close.
    Bad(u16),
    /// Answered here: `GET /metrics`, `POST /feedback`.
    Answer {
        consumed: usize,
        status: u16,
        content_type: &'static str,
        body: String,
        close: bool,
    },
    /// Proxy it: `Buffers::request` holds what to send.
    Proxy {
        consumed: usize,
        decision: Decision,
        head: bool,
        post: bool,
        close: bool,
    },
}

/// Serves one client connection until it closes, `closing` changes (the request in
/// flight finishes first), or it is handed to hyper.
pub(crate) async fn serve(gw: Gateway, mut client: TcpStream, mut closing: watch::Receiver<()>) {
    let mut b = Buffers::default();
    b.input.reserve(READ_SPACE);
    let config = &gw.inner.config;
    loop {
        // When the request under way must have arrived (set by its first bytes).
        let mut deadline: Option<tokio::time::Instant> = None;
        let (table, prep) = loop {
            if !b.input.is_empty() {
                let table = gw.inner.table.load_full();
                match prepare(&gw, &table, &mut b) {
                    Prep::More => {}
                    prep => break (table, prep),
                }
            }
            if b.input.capacity() - b.input.len() < READ_SPACE {
                b.input.reserve(READ_SPACE);
            }
            let read = if b.input.is_empty() {
                tokio::select! {
                    biased;
                    r = client.read_buf(&mut b.input) => r,
                    _ = closing.changed() => return,
                    _ = tokio::time::sleep(config.idle_timeout) => return,
                }
            } else {
                let at = *deadline
                    .get_or_insert_with(|| tokio::time::Instant::now() + config.header_timeout);
                match tokio::time::timeout_at(at, client.read_buf(&mut b.input)).await {
                    Ok(r) => r,
                    Err(_) => {
                        simple_response(&mut b.output, 408, "", b"", None, true);
                        let _ = client.write_all(&b.output).await;
                        return;
                    }
                }
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let shutting_down = || closing.has_changed().unwrap_or(true);
        match prep {
            Prep::More => unreachable!("loops until there is more than that"),
            Prep::Fallback => {
                let io = Prefixed {
                    prefix: std::mem::take(&mut b.input),
                    pos: 0,
                    io: client,
                };
                return gw.serve_hyper(io, closing).await;
            }
            Prep::Bad(status) => {
                simple_response(&mut b.output, status, "", b"", None, true);
                let _ = client.write_all(&b.output).await;
                return;
            }
            Prep::Answer {
                consumed,
                status,
                content_type,
                body,
                close,
            } => {
                let close = close || shutting_down();
                simple_response(
                    &mut b.output,
                    status,
                    content_type,
                    body.as_bytes(),
                    None,
                    close,
                );
                if client.write_all(&b.output).await.is_err() || close {
                    return;
                }
                consume(&mut b.input, consumed);
            }
            Prep::Proxy {
                consumed,
                decision,
                head,
                post,
                close,
            } => {
                let start = Instant::now();
                let close = close || shutting_down();
                consume(&mut b.input, consumed);
                b.shrink();
                let Some(first) = gw.pick(&table, decision) else {
                    let body = json_error_body(&format!(
                        "no model is deployed in environment {}",
                        gw.inner.config.name
                    ));
                    simple_response(
                        &mut b.output,
                        503,
                        "application/json",
                        body.as_bytes(),
                        None,
                        close,
                    );
                    if client.write_all(&b.output).await.is_err() || close {
                        return;
                    }
                    continue;
                };
                b.served = None;
                b.capture.clear();
                b.capture_ok = table.inspects();
                let done = proxy(&gw, &table, first, &mut client, &mut b, head, close, start).await;
                // Forced requests feed neither feedback nor shadow comparisons.
                if table.inspects() && !matches!(decision, Decision::Forced(_)) {
                    after_answer(&gw, &table, &b, post);
                }
                match done {
                    Done::KeepAlive if !close => {}
                    _ => return,
                }
            }
        }
    }
}

/// Drops the first `n` bytes of `input`.
fn consume(input: &mut Vec<u8>, n: usize) {
    if n >= input.len() {
        input.clear();
    } else {
        input.drain(..n);
    }
}

/// Parses what `b.input` holds; for a request to proxy, writes it to `b.request`.
fn prepare(gw: &Gateway, table: &Table, b: &mut Buffers) -> Prep {
    let buf = &b.input[..];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Prep::Bad(431),
        Ok(httparse::Status::Partial) => return Prep::More,
        Err(httparse::Error::TooManyHeaders) => return Prep::Fallback,
        Err(_) => return Prep::Bad(400),
    };
    if req.version != Some(1) {
        return Prep::Fallback;
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Prep::Bad(400);
    };
    let mut content_length: Option<usize> = None;
    let mut close = false;
    let mut connection_header = false;
    let mut request_id = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let Some(n) = parse_length(h.value) else {
                return Prep::Bad(400);
            };
            if content_length.is_some_and(|c| c != n) {
                return Prep::Bad(400);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return Prep::Fallback;
        } else if name.eq_ignore_ascii_case("connection") {
            connection_header = true;
            for token in tokens(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Prep::Fallback;
                }
            }
        } else if request_id.is_none() && name.eq_ignore_ascii_case("x-request-id") {
            request_id = Some(h.value);
        }
    }
    let body_len = content_length.unwrap_or(0);
    if body_len > MAX_BODY {
        return Prep::Fallback;
    }
    let consumed = head_len + body_len;
    if buf.len() < consumed {
        return Prep::More;
    }
    let path = target.split('?').next().unwrap_or(target);
    if method == "GET" && path == "/metrics" {
        return Prep::Answer {
            consumed,
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: gw.prometheus(),
            close,
        };
    }
    if method == "POST" && path == "/feedback" {
        let (status, body) = gw.feedback(request_id, &buf[head_len..consumed]);
        return Prep::Answer {
            consumed,
            status,
            content_type: "application/json",
            body,
            close,
        };
    }

    let decision = gw
        .inner
        .split
        .decide_raw(req.headers, |v| table.get(v).is_some());

    let out = &mut b.request;
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(origin_form(target).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        if is_hop_by_hop(h.name) || (connection_header && listed(req.headers, h.name)) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    b.request_id.clear();
    match request_id {
        Some(id) => b.request_id.extend_from_slice(id),
        None => {
            let mut id = [0u8; 25];
            let len = gw.inner.request_ids.next_into(&mut id);
            b.request_id.extend_from_slice(&id[..len]);
            out.extend_from_slice(b"x-request-id: ");
            out.extend_from_slice(&id[..len]);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&buf[head_len..consumed]);
    Prep::Proxy {
        consumed,
        decision,
        head: method == "HEAD",
        post: method == "POST",
        close,
    }
}

/// An absolute-form target (a client treating us as a forward proxy) in origin form.
fn origin_form(target: &str) -> &str {
    let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    else {
        return target;
    };
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
        _ => "/",
    }
}

/// A `Content-Length` value: digits only.
fn parse_length(v: &[u8]) -> Option<usize> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 15 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0, |n, d| n * 10 + usize::from(d - b'0')))
}

/// The comma-separated tokens of a header value.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&c| c == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// Whether a `Connection` header of `headers` names `name`.
fn listed(headers: &[httparse::Header<'_>], name: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| tokens(h.value).any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
}

/// The headers that belong to one connection (RFC 9110 section 7.6.1).
fn is_hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// A whole response of the gateway's own in `out`.
fn simple_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    request_id: Option<&[u8]>,
    close: bool,
) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    push_status(out, status);
    out.push(b' ');
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !content_type.is_empty() {
        out.extend_from_slice(b"content-type: ");
        out.extend_from_slice(content_type.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(id) = request_id {
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(id);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    push_decimal(out, body.len());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

fn push_status(out: &mut Vec<u8>, status: u16) {
    let status = status.min(999);
    out.extend_from_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]);
}

fn push_decimal(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// How a proxied exchange left the client connection.
enum Done {
    /// Ready for the next request.
    KeepAlive,
    /// Must close (error, `Connection: close`, body delimited by close).
    Close,
}

/// Why an exchange with one backend produced no response.
enum Failure {
    /// Nothing was sent (the connection was refused): try elsewhere.
    NotSent(String),
    /// The request was sent, then the exchange failed.
    Failed(String),
    /// No response head within the gateway's `response_timeout` (504).
    TimedOut(String),
}

/// How the response body is delimited.
enum Framing {
    Empty,
    Length(usize),
    Chunked(ChunkScan),
    /// Until the backend closes.
    Close,
}

/// The response head as the client gets it, and what follows it.
struct ResponseHead {
    /// Bytes of `Buffers::response` the head took.
    len: usize,
    status: u16,
    framing: Framing,
    /// The backend connection can take another request after this body.
    reusable: bool,
}

/// Sends the prepared request to `first`'s variant (retrying as the module docs
/// say) and forwards the response to the client.
#[allow(clippy::too_many_arguments)]
async fn proxy(
    gw: &Gateway,
    table: &Arc<Table>,
    first: &Backend,
    client: &mut TcpStream,
    b: &mut Buffers,
    head: bool,
    close: bool,
    start: Instant,
) -> Done {
    let mut attempt = Attempt::new(first);
    let timeout = gw.inner.config.response_timeout;
    let mut status = 502;
    let failure = loop {
        let backend = attempt.backend;
        let pool = &backend.pools[attempt.slot()];
        let exchanged = tokio::time::timeout(timeout, exchange(pool, backend, b, head, close))
            .await
            .unwrap_or_else(|_| Err(Failure::TimedOut(format!("no answer within {timeout:?}"))));
        match exchanged {
            Ok((stream, resp)) => {
                b.served = Some((backend.variant, resp.status));
                return forward(pool, backend, stream, resp, client, b, start).await;
            }
            Err(Failure::NotSent(why)) => {
                tracing::debug!(
                    env = %gw.inner.config.name,
                    variant = %backend.variant,
                    "not sent, trying elsewhere: {why}"
                );
                if !attempt.next_after_not_sent(table) {
                    break why;
                }
            }
            Err(Failure::Failed(why)) => break format!("{}: {why}", pool.addr),
            Err(Failure::TimedOut(why)) => {
                status = 504;
                break format!("{}: {why}", pool.addr);
            }
        }
    };
    tracing::warn!(
        env = %gw.inner.config.name,
        variant = %attempt.backend.variant,
        "upstream failed: {failure}"
    );
    attempt
        .backend
        .counters
        .record(Class::Upstream, start.elapsed());
    let body = json_error_body(&format!(
        "no model server of environment {} answered: {failure}",
        gw.inner.config.name
    ));
    simple_response(
        &mut b.output,
        status,
        "application/json",
        body.as_bytes(),
        Some(&b.request_id),
        close,
    );
    match client.write_all(&b.output).await {
        Ok(()) if !close => Done::KeepAlive,
        _ => Done::Close,
    }
}

/// One request to one backend address: sends `b.request` on a pooled connection
/// (a new one if none is idle or the idle one turns out closed), reads the
/// response head and writes the client's version of it to `b.output`.
async fn exchange(
    pool: &Pool,
    backend: &Backend,
    b: &mut Buffers,
    head: bool,
    close: bool,
) -> Result<(TcpStream, ResponseHead), Failure> {
    let (mut stream, mut reused) = match pool.take_raw() {
        Some(s) => (s, true),
        None => (pool.connect_raw().await.map_err(Failure::NotSent)?, false),
    };
    loop {
        match send_and_read_head(&mut stream, backend, b, head, close).await {
            Ok(resp) => return Ok((stream, resp)),
            // An idle connection the backend had closed: nothing came back.
            Err((true, _)) if reused => {
                reused = false;
                stream = pool.connect_raw().await.map_err(Failure::NotSent)?;
            }
            Err((_, why)) => return Err(Failure::Failed(why)),
        }
    }
}

/// Writes the request, reads and rewrites the response head. The error says
/// whether nothing at all came back.
async fn send_and_read_head(
    stream: &mut TcpStream,
    backend: &Backend,
    b: &mut Buffers,
    head: bool,
    close: bool,
) -> Result<ResponseHead, (bool, String)> {
    stream
        .write_all(&b.request)
        .await
        .map_err(|e| (true, e.to_string()))?;
    b.response.clear();
    loop {
        if !b.response.is_empty() {
            match rewrite_head(backend, b, head, close)? {
                Some(resp) => return Ok(resp),
                None if b.response.len() > MAX_HEAD => {
                    return Err((false, "response head too large".into()));
                }
                None => {}
            }
        }
        if b.response.capacity() - b.response.len() < READ_SPACE {
            b.response.reserve(READ_SPACE);
        }
        match stream.read_buf(&mut b.response).await {
            Ok(0) => {
                return Err((
                    b.response.is_empty(),
                    "connection closed before the response".into(),
                ));
            }
            Ok(_) => {}
            Err(e) => return Err((b.response.is_empty(), e.to_string())),
        }
    }
}

/// Parses the response head in `b.response` and writes the client's head to
/// `b.output`. `None`: not complete yet. An interim (1xx) response is dropped.
fn rewrite_head(
    backend: &Backend,
    b: &mut Buffers,
    head: bool,
    close: bool,
) -> Result<Option<ResponseHead>, (bool, String)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(&b.response) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err((false, format!("invalid response: {e}"))),
        };
        let status = resp.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            b.response.drain(..len);
            if b.response.is_empty() {
                return Ok(None);
            }
            continue;
        }
        if status == 101 || !(100..1000).contains(&status) {
            return Err((false, format!("unexpected status {status}")));
        }
        let mut reusable = resp.version == Some(1);
        let mut length = None;
        let mut chunked = false;
        let mut other_coding = false;
        let mut connection_header = false;
        let mut has_request_id = false;
        for h in resp.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = parse_length(h.value)
                    .ok_or_else(|| (false, "invalid content-length".to_string()))?;
                if length.is_some_and(|l| l != n) {
                    return Err((false, "conflicting content-length".into()));
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = tokens(h.value)
                    .last()
                    .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
                other_coding = !chunked;
            } else if name.eq_ignore_ascii_case("connection") {
                connection_header = true;
                if tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"close")) {
                    reusable = false;
                }
            } else if name.eq_ignore_ascii_case("x-request-id") {
                has_request_id = true;
            }
        }
        let framing = if head || status < 200 || status == 204 || status == 304 {
            Framing::Empty
        } else if chunked {
            Framing::Chunked(ChunkScan::default())
        } else if other_coding {
            Framing::Close
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::Close
        };
        if matches!(framing, Framing::Close) {
            reusable = false;
        }

        let out = &mut b.output;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        push_status(out, status);
        out.push(b' ');
        out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for h in resp.headers.iter() {
            let name = h.name;
            let keep = if name.eq_ignore_ascii_case("transfer-encoding") {
                // The body goes through as it came, transfer codings and all.
                true
            } else if name.eq_ignore_ascii_case("content-length") {
                // Meaningless next to Transfer-Encoding (RFC 9112 section 6.3).
                !(chunked || other_coding)
            } else {
                let ours = name.eq_ignore_ascii_case("x-hoist-variant")
                    || name.eq_ignore_ascii_case("x-hoist-version");
                let hop = is_hop_by_hop(name) || (connection_header && listed(resp.headers, name));
                !(ours || hop)
            };
            if keep {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(h.value);
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"x-hoist-variant: ");
        out.extend_from_slice(backend.variant.as_str().as_bytes());
        out.extend_from_slice(b"\r\nx-hoist-version: ");
        out.extend_from_slice(backend.version.as_bytes());
        out.extend_from_slice(b"\r\n");
        if !has_request_id {
            out.extend_from_slice(b"x-request-id: ");
            out.extend_from_slice(&b.request_id);
            out.extend_from_slice(b"\r\n");
        }
        if close || matches!(framing, Framing::Close) {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        return Ok(Some(ResponseHead {
            len,
            status,
            framing,
            reusable,
        }));
    }
}

/// Forwards the response body after the head in `b.output`; counts the request
/// when the backend's body has ended; gives the connection back when reusable.
async fn forward(
    pool: &Pool,
    backend: &Backend,
    mut stream: TcpStream,
    resp: ResponseHead,
    client: &mut TcpStream,
    b: &mut Buffers,
    start: Instant,
) -> Done {
    let class = match http::StatusCode::from_u16(resp.status) {
        Ok(s) => Class::of_status(s),
        Err(_) => Class::Upstream,
    };
    let mut framing = resp.framing;
    let mut from = resp.len;
    if !matches!(framing, Framing::Length(n) if n <= MAX_BODY) {
        b.capture_ok = false;
    }
    loop {
        let data = &b.response[from..];
        let end = match &mut framing {
            Framing::Empty => Ok(Some(0)),
            Framing::Length(rest) => Ok(if data.len() >= *rest {
                Some(*rest)
            } else {
                *rest -= data.len();
                None
            }),
            Framing::Chunked(scan) => scan.feed(data),
            Framing::Close => Ok(None),
        };
        match end {
            Ok(Some(n)) => {
                // The body has ended: count, give the connection back, write the rest.
                backend.counters.record(class, start.elapsed());
                b.output.extend_from_slice(&data[..n]);
                if b.capture_ok {
                    b.capture.extend_from_slice(&data[..n]);
                }
                if resp.reusable && n == data.len() {
                    pool.put_raw(stream);
                }
                return match client.write_all(&b.output).await {
                    Ok(()) => Done::KeepAlive,
                    Err(_) => Done::Close,
                };
            }
            Ok(None) => {
                b.output.extend_from_slice(data);
                if b.capture_ok {
                    b.capture.extend_from_slice(data);
                }
                if client.write_all(&b.output).await.is_err() {
                    // The client went away: counted by its status, as in hyper's path.
                    backend.counters.record(class, start.elapsed());
                    return Done::Close;
                }
                b.output.clear();
                b.response.clear();
                from = 0;
                if b.response.capacity() < READ_SPACE {
                    b.response.reserve(READ_SPACE);
                }
                match stream.read_buf(&mut b.response).await {
                    Ok(0) if matches!(framing, Framing::Close) => {
                        backend.counters.record(class, start.elapsed());
                        let _ = client.shutdown().await;
                        return Done::Close;
                    }
                    Ok(0) | Err(_) => {
                        backend.counters.record(Class::Upstream, start.elapsed());
                        return Done::Close;
                    }
                    Ok(_) => {}
                }
            }
            Err(()) => {
                backend.counters.record(Class::Upstream, start.elapsed());
                // What came before the bad framing still goes to the client.
                let _ = client.write_all(&b.output).await;
                return Done::Close;
            }
        }
    }
}

/// After an answer, while the routes inspect answers: remember its predictions for
/// feedback, and mirror the request to the candidate when stable answered it and the
/// shadow share picks it.
fn after_answer(gw: &Gateway, table: &Arc<Table>, b: &Buffers, post: bool) {
    let Some((variant, status)) = b.served else {
        return;
    };
    if !(200..300).contains(&status) {
        return;
    }
    let predictions = if b.capture_ok {
        inspect::parse(&b.capture)
    } else {
        None
    };
    if table.feedback
        && let (Some(p), Some(backend)) = (&predictions, table.get(variant))
    {
        gw.remember(&b.request_id, backend, p.labels.clone());
    }
    if post && variant == Variant::Stable && table.mirrors(gw) {
        tokio::spawn(shadow::mirror(
            gw.clone(),
            table.clone(),
            b.request.clone(),
            predictions,
        ));
    }
}

/// Finds the end of a chunked body (RFC 9112 section 7.1) in the bytes fed to it.
#[derive(Default)]
struct ChunkScan {
    state: Chunk,
    size: u64,
    digits: bool,
}

#[derive(Default, Clone, Copy)]
enum Chunk {
    /// In the chunk size.
    #[default]
    Size,
    /// In a chunk extension.
    Extension,
    /// After the size line's CR.
    SizeLf,
    /// In chunk data; `size` bytes left.
    Data,
    /// After chunk data: CR.
    DataCr,
    /// After chunk data: LF.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// In a trailer line.
    Trailer,
    /// After the final CR.
    EndLf,
}

impl ChunkScan {
    /// Ok(Some(n)): the body ends after `n` bytes of `data`; Ok(None): it goes on;
    /// Err: not valid chunked framing.
    fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, ()> {
        let mut i = 0;
        while i < data.len() {
            let c = data[i];
            match self.state {
                Chunk::Size => match c {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (c as char).to_digit(16).ok_or(())?;
                        self.size = self
                            .size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(d)))
                            .ok_or(())?;
                        self.digits = true;
                    }
                    b';' | b' ' | b'\t' if self.digits => self.state = Chunk::Extension,
                    b'\r' if self.digits => self.state = Chunk::SizeLf,
                    b'\n' if self.digits => self.size_done(),
                    _ => return Err(()),
                },
                Chunk::Extension => match c {
                    b'\r' => self.state = Chunk::SizeLf,
                    b'\n' => self.size_done(),
                    _ => {}
                },
                Chunk::SizeLf => {
                    if c != b'\n' {
                        return Err(());
                    }
                    self.size_done();
                }
                Chunk::Data => {
                    let take = (data.len() - i).min(self.size.min(usize::MAX as u64) as usize);
                    self.size -= take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = Chunk::DataCr;
                    }
                    continue;
                }
                Chunk::DataCr => match c {
                    b'\r' => self.state = Chunk::DataLf,
                    b'\n' => self.state = Chunk::Size,
                    _ => return Err(()),
                },
                Chunk::DataLf => {
                    if c != b'\n' {
                        return Err(());
                    }
                    self.state = Chunk::Size;
                }
                Chunk::TrailerStart => match c {
                    b'\r' => self.state = Chunk::EndLf,
                    b'\n' => return Ok(Some(i + 1)),
                    _ => self.state = Chunk::Trailer,
                },
                Chunk::Trailer => {
                    if c == b'\n' {
                        self.state = Chunk::TrailerStart;
                    }
                }
                Chunk::EndLf => {
                    if c != b'\n' {
                        return Err(());
                    }
                    return Ok(Some(i + 1));
                }
            }
            i += 1;
        }
        Ok(None)
    }

    fn size_done(&mut self) {
        self.state = if self.size == 0 {
            Chunk::TrailerStart
        } else {
            Chunk::Data
        };
        self.digits = false;
    }
}

/// A client connection whose first bytes were already read: hyper reads them again.
struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    io: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(parts: &[&[u8]]) -> Result<Option<(usize, usize)>, ()> {
        let mut s = ChunkScan::default();
        for (i, p) in parts.iter().enumerate() {
            if let Some(n) = s.feed(p)? {
                return Ok(Some((i, n)));
            }
        }
        Ok(None)
    }

    #[test]
    fn chunked_bodies_end_where_they_end() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\nNEXT";
        assert_eq!(scan_all(&[body]), Ok(Some((0, body.len() - 4))));
        // Byte by byte.
        let parts: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(scan_all(&parts), Ok(Some((body.len() - 5, 1))));
        // Trailers.
        let body = b"3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n";
        assert_eq!(scan_all(&[body]), Ok(Some((0, body.len()))));
        // Not yet.
        assert_eq!(scan_all(&[b"3\r\nab"]), Ok(None));
        // Not chunked.
        assert_eq!(scan_all(&[b"zz\r\n"]), Err(()));
        assert_eq!(scan_all(&[b"\r\n"]), Err(()));
    }

    #[test]
    fn targets_and_lengths() {
        assert_eq!(origin_form("/a?b"), "/a?b");
        assert_eq!(origin_form("http://h:1/a?b"), "/a?b");
        assert_eq!(origin_form("http://h:1"), "/");
        assert_eq!(origin_form("http://h?x"), "/");
        assert_eq!(parse_length(b" 12 "), Some(12));
        assert_eq!(parse_length(b"+1"), None);
        assert_eq!(parse_length(b""), None);
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        push_decimal(&mut out, 1234);
        assert_eq!(out, b"01234");
    }
}
