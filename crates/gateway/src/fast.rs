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
//! headers. Every request head, here or on hyper's path, is checked by
//! [`framing::parse_request`] and [`framing::check_target`] first: a malformed or
//! ambiguous request gets a 400 (a head over [`MAX_HEAD`] a 431) and the connection
//! closes; a path under `/admin` gets a 404.
//!
//! # Same behaviour as the hyper path
//! - `GET /metrics` is answered here; the split, the force header, sticky header
//!   and cookie are decided by [`crate::split::SplitRules::decide`], as on the hyper path.
//! - Hop-by-hop request headers ([`framing::HOP_BY_HOP`], and those `Connection`
//!   names) are dropped, the body's length goes as one `content-length` the
//!   gateway writes, `x-request-id` is added when missing; responses lose their
//!   hop-by-hop headers (except `Transfer-Encoding`: the body is forwarded with its
//!   codings as it came) and gain `x-hoist-variant`, `x-hoist-version` and
//!   `x-request-id`.
//! - A refused connection sends the request to the next replica, then to the other
//!   variant, then answers 502; no upstream at all is a 503. A packed backend gets
//!   `/models/{name}` in front of `/invocations`, per attempt (`crate::packed`).
//! - A request is counted when the backend's body has ended, before its last bytes
//!   are written to the client; a backend failing mid-body counts as an upstream
//!   error, a client going away counts by the status.
//! - A pooled connection that the backend closed while it was idle (nothing at all
//!   comes back) is replaced by a new connection once; the request is sent again.
//! - A backend connection goes back to the pool only when its response was HTTP/1.1
//!   without `Connection: close`, framed unambiguously (one valid `Content-Length`,
//!   or `Transfer-Encoding` ending in `chunked` without `Content-Length`), read to
//!   its exact end with no byte after it. A response with an invalid or conflicting
//!   `Content-Length`, or `Transfer-Encoding` in HTTP/1.0, is a 502.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::framing::{self, Body, ChunkScan, MAX_HEAD, Parsed, Refused};
use crate::gateway::{Attempt, Backend, Front, Gateway, Table, json_error_body};
use crate::guard::Guarded;
use crate::metrics::Class;
use crate::pool::Pool;
use crate::split::{Decision, Variant};
use crate::{inspect, packed, shadow};

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
    /// Where `request`'s target starts when it names no model: a packed backend
    /// gets its `/models/{name}` there (`crate::packed`).
    bare_at: Option<usize>,
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
    /// Not a whole request head yet.
    MoreHead,
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
        /// The model's gateway, and its routes as read for this request.
        gw: Gateway,
        table: Arc<Table>,
        consumed: usize,
        decision: Decision,
        head: bool,
        post: bool,
        close: bool,
    },
}

/// Serves one client connection until it closes, `closing` changes (the request in
/// flight finishes first), or it is handed to hyper.
pub(crate) async fn serve(front: Front, mut client: TcpStream, mut closing: watch::Receiver<()>) {
    let mut b = Buffers::default();
    b.input.reserve(READ_SPACE);
    loop {
        let (idle_timeout, header_timeout) = front.timeouts();
        // When the request under way must have arrived (set by its first bytes).
        let mut deadline: Option<tokio::time::Instant> = None;
        // How much of `b.input` was an incomplete head when last parsed: it is parsed
        // again only once a new line may have ended it (a head sent a byte at a
        // time costs one parse per line, not one per byte).
        let mut partial = 0;
        let prep = loop {
            let no_new_line = partial > 0
                && b.input.len() <= MAX_HEAD
                && !b.input[partial.min(b.input.len())..].contains(&b'\n');
            if !b.input.is_empty() && !no_new_line {
                match prepare(&front, &mut b) {
                    Prep::More => partial = 0,
                    Prep::MoreHead => partial = b.input.len(),
                    prep => break prep,
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
                    _ = tokio::time::sleep(idle_timeout) => return,
                }
            } else {
                let at =
                    *deadline.get_or_insert_with(|| tokio::time::Instant::now() + header_timeout);
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
            Prep::More | Prep::MoreHead => unreachable!("loops until there is more than that"),
            Prep::Fallback => {
                let io = Guarded::new(client, std::mem::take(&mut b.input));
                return front.serve_hyper(io, closing).await;
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
                gw,
                table,
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
                    // A HEAD request's answer has no body (RFC 9110 section 9.3.2).
                    let body = if head { "" } else { body.as_str() };
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

/// Parses what `b.input` holds; for a request to proxy, finds the model's gateway
/// and writes the request to `b.request`.
fn prepare(front: &Front, b: &mut Buffers) -> Prep {
    let buf = &b.input[..];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let req = match framing::parse_request(buf, &mut headers) {
        Parsed::Head(h) => h,
        Parsed::Partial => return Prep::MoreHead,
        Parsed::TooManyHeaders => return Prep::Fallback,
        Parsed::Bad(status) => return Prep::Bad(status),
    };
    let head_len = req.len;
    let body_len = match req.body {
        Body::None => 0,
        Body::Length(n) if n <= MAX_BODY as u64 => n as usize,
        // Chunked, or too large to buffer: hyper's path, behind the same checks.
        Body::Length(_) | Body::Chunked => return Prep::Fallback,
    };
    if req.version != 1 || req.expect_or_upgrade {
        return Prep::Fallback;
    }
    let consumed = head_len + body_len;
    if buf.len() < consumed {
        return Prep::More;
    }
    let target = match framing::check_target(req.target) {
        Ok(t) => t,
        Err(Refused::Private) => return private(consumed, req.method == "HEAD", req.close),
        Err(refused) => return Prep::Bad(refused.status()),
    };
    let (method, close, connection) = (req.method, req.close, req.connection);
    // A header the `Connection` header names goes, so it counts as absent.
    let dropped = |name: &str| {
        framing::is_hop_by_hop(name)
            || name.eq_ignore_ascii_case("content-length")
            || (connection && framing::listed(req.headers, name))
    };
    let request_id = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("x-request-id"))
        .filter(|h| !connection || !framing::listed(req.headers, h.name))
        .map(|h| h.value);
    let path = target.split('?').next().unwrap_or(target);
    if method == "GET" && path == "/metrics" {
        return Prep::Answer {
            consumed,
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: front.prometheus(),
            close,
        };
    }
    // The model's gateway, and the target as it goes to it.
    let (gw, target) = match front.resolve(target, path) {
        Ok(found) => found,
        Err((status, body)) => {
            return Prep::Answer {
                consumed,
                status,
                content_type: "application/json",
                // A HEAD request's answer has no body (RFC 9110 section 9.3.2).
                body: if req.method == "HEAD" {
                    String::new()
                } else {
                    body
                },
                close,
            };
        }
    };
    let path = target.split('?').next().unwrap_or(target);
    if method == "POST" && path == "/feedback" {
        let authorization = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("authorization"))
            .map(|h| h.value);
        let (status, body) = gw.feedback(request_id, authorization, &buf[head_len..consumed]);
        return Prep::Answer {
            consumed,
            status,
            content_type: "application/json",
            body,
            close,
        };
    }

    let table = gw.inner.table.load_full();
    let decision = gw
        .inner
        .split
        .decide_raw(req.headers, |v| table.get(v).is_some());

    b.bare_at = packed::names_no_model(target).then_some(method.len() + 1);
    let out = &mut b.request;
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        if dropped(h.name) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if let Body::Length(n) = req.body {
        // One length, written by us: the client's fields never reach the backend.
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, n as usize);
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
        gw,
        table,
        consumed,
        decision,
        head: method == "HEAD",
        post: method == "POST",
        close,
    }
}

/// The answer to a request for an operator-only path of the model servers.
fn private(consumed: usize, head: bool, close: bool) -> Prep {
    Prep::Answer {
        consumed,
        status: 404,
        content_type: "application/json",
        body: if head {
            String::new()
        } else {
            json_error_body(
                "not found: operator endpoints of model servers are not served by the gateway",
            )
        },
        close,
    }
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
    let body = if head { "" } else { body.as_str() };
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
    packed::write_request(stream, &b.request, b.bare_at, backend)
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
        let mut te_fields = 0u32;
        let mut chunked = false;
        let mut connection_header = false;
        let mut has_request_id = false;
        for h in resp.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = framing::parse_length(h.value)
                    .ok_or_else(|| (false, "invalid content-length".to_string()))?;
                if length.is_some_and(|l| l != n) {
                    return Err((false, "conflicting content-length".into()));
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                te_fields += 1;
                chunked = framing::tokens(h.value)
                    .last()
                    .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                connection_header = true;
                if framing::tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"close")) {
                    reusable = false;
                }
            } else if name.eq_ignore_ascii_case("x-request-id") {
                has_request_id = true;
            }
        }
        let transfer_coded = te_fields > 0;
        if transfer_coded && resp.version != Some(1) {
            // RFC 9112 section 6.1: the framing of such a message is faulty.
            return Err((false, "transfer-encoding in an HTTP/1.0 response".into()));
        }
        if transfer_coded && (te_fields > 1 || length.is_some()) {
            // Transfer-Encoding wins (RFC 9112 section 6.3), but the backend that
            // sent this is not trusted with another request.
            reusable = false;
        }
        let framing = if head || status < 200 || status == 204 || status == 304 {
            Framing::Empty
        } else if chunked {
            Framing::Chunked(ChunkScan::default())
        } else if transfer_coded {
            Framing::Close
        } else if let Some(n) = length {
            match usize::try_from(n) {
                Ok(n) => Framing::Length(n),
                Err(_) => return Err((false, "invalid content-length".into())),
            }
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
                !transfer_coded
            } else {
                let ours = name.eq_ignore_ascii_case(hoist_types::wire::headers::VARIANT)
                    || name.eq_ignore_ascii_case(hoist_types::wire::headers::VERSION);
                let hop = framing::is_hop_by_hop(name)
                    || (connection_header && framing::listed(resp.headers, name));
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
                backend
                    .counters
                    .record_status(resp.status, class, start.elapsed());
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
                    backend
                        .counters
                        .record_status(resp.status, class, start.elapsed());
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
                        backend
                            .counters
                            .record_status(resp.status, class, start.elapsed());
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
    if table.values
        && let (Some(p), Some(backend)) = (&predictions, table.get(variant))
    {
        if !p.values.is_empty() {
            backend.counters.record_values(&p.values);
        } else {
            backend.counters.record_classes(&p.labels);
        }
    }
    if post && variant == Variant::Stable && table.mirrors(gw) {
        tokio::spawn(shadow::mirror(
            gw.clone(),
            table.clone(),
            b.request.clone(),
            b.bare_at,
            predictions,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        push_decimal(&mut out, 1234);
        assert_eq!(out, b"01234");
    }
}
