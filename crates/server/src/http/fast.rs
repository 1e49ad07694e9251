//! The fast path: HTTP/1.1 inference requests without hyper's and axum's machinery.
//!
//! Every connection starts here. A request head is parsed with `httparse` straight
//! from the connection's buffer; a plainly framed inference request is answered here,
//! by the same handler code the axum routes use, and its answer written in one write
//! from a buffer the connection reuses. "Plainly framed" means all of:
//! - HTTP/1.1, `POST`, to `/invocations`, `/models/{m}/invocations`,
//!   `/v2/models/{m}/infer` or `/v2/models/{m}/versions/{v}/infer` (an optional query
//!   ignored, as axum ignores it), the path visible ASCII without `%` or `#`;
//! - exactly one `Content-Length`, of digits, at most the body limit
//!   (`--max-body-bytes`) and [`MAX_BODY`]; no `Transfer-Encoding`, `Expect`,
//!   `Upgrade`, nor the binary extension's `Inference-Header-Content-Length`;
//!   `Connection` at most `keep-alive` or `close`; at most one `Content-Type`; at most
//!   [`MAX_HEADERS`] headers in at most [`MAX_HEAD`] bytes.
//!
//! Anything else (another route or method, a malformed or unusual head, a larger
//! body) hands the connection, with the bytes already read, to hyper and the axum
//! router for the rest of its life. So every answer off the fast path, errors for
//! hostile input included, is exactly what axum gives, and the fast path only ever
//! reads a request the way hyper would.
//!
//! # Same answers as axum's path
//! - The handlers are shared (`mlflow::invocations_body`, `v2::infer_body`), and so
//!   is the counting (`super::finish_tracked`: per model, per route, per status, a panic
//!   a 500; in flight from the moment the head is in, as on axum's path).
//! - The answer is the handler's status, headers and body, plus `content-length` and
//!   `date` as hyper writes them, and `connection: close` when the client asked for it
//!   or the server is shutting down (then the connection closes after the answer).
//!
//! # Why
//! hyper's per-request machinery, axum's routing and middleware, and the header
//! maps and boxed futures between them cost more CPU than a small model's inference
//! (docs/benchmarks.md, the serving benchmark).

use std::future::Future;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::HeaderMap;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{Shared, finish_tracked, mlflow, v2};
use crate::metrics::{ModelMetrics, Route};

/// Largest request body the fast path buffers; larger ones go to hyper.
pub const MAX_BODY: usize = 1024 * 1024;
/// Most request headers the fast path takes; more go to hyper.
pub const MAX_HEADERS: usize = 64;
/// Largest request head the fast path waits for; a longer one goes to hyper.
pub const MAX_HEAD: usize = 64 * 1024;
/// Free space ensured before each read.
const READ_SPACE: usize = 16 * 1024;

/// Accepts connections on `listener` until `shutdown` completes; then stops
/// accepting, lets every connection finish the request it is on, and returns.
///
/// # Threads
/// Like the gateway's (and nginx's) workers: one thread per core, each running a
/// single-threaded Tokio runtime that keeps the connections given to it. A request
/// never moves between threads, so no thread wakes another and a connection's
/// buffers stay in one core's cache (the work-stealing runtime moved requests
/// between cores, and spent more CPU per request in development runs).
/// The caller's runtime accepts and gives each connection to the thread with the
/// fewest open (threads accepting for themselves could take uneven shares of a
/// benchmark's connections and leave a core idle part of the time). Requests that go to a
/// model's worker threads still do; the caller's runtime also keeps loading models
/// and serving gRPC.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Shared,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Closed (recv gives None) once every thread has finished.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut workers = Vec::with_capacity(threads);
    for worker in 0..threads {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let live = Arc::new(AtomicUsize::new(0));
        let (state, app, done, count) = (state.clone(), app.clone(), done_tx.clone(), live.clone());
        std::thread::Builder::new()
            .name(format!("hoist-http-{worker}"))
            .spawn(move || {
                runtime.block_on(worker_loop(rx, state, app, count));
                drop(done);
            })?;
        workers.push((tx, live));
    }
    drop(done_tx);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next = 0;
    loop {
        let stream = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        // The fewest open connections; among equals, the next in turn.
        let n = workers.len();
        let pick = (0..n)
            .map(|i| (next + i) % n)
            .min_by_key(|&i| workers[i].1.load(Ordering::Relaxed))
            .unwrap_or(0);
        next = (pick + 1) % n;
        workers[pick].1.fetch_add(1, Ordering::Relaxed);
        if workers[pick].0.send(stream).is_err() {
            workers[pick].1.fetch_sub(1, Ordering::Relaxed);
        }
    }
    drop(listener);
    drop(workers);
    let _ = done_rx.recv().await;
    Ok(())
}

/// One thread: serves the connections it is given until the acceptor stops, then
/// tells them to close after their request in flight and waits for them.
async fn worker_loop(
    mut streams: tokio::sync::mpsc::UnboundedReceiver<std::net::TcpStream>,
    state: Shared,
    app: Router,
    live: Arc<AtomicUsize>,
) {
    // Changed once, at shutdown; every connection holds a receiver, so `closed()`
    // completes when the last connection has ended.
    let (closing_tx, closing_rx) = watch::channel(());
    while let Some(stream) = streams.recv().await {
        let gone = Gone(live.clone());
        let Ok(stream) = TcpStream::from_std(stream) else {
            continue;
        };
        let conn = connection(state.clone(), app.clone(), stream, closing_rx.clone());
        tokio::spawn(async move {
            conn.await;
            drop(gone);
        });
    }
    drop(closing_rx);
    let _ = closing_tx.send(());
    closing_tx.closed().await;
}

/// Counts a connection out of its thread's open connections when it ends.
struct Gone(Arc<AtomicUsize>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the bytes read so far hold.
enum Plan {
    /// Not a whole head yet.
    More,
    /// Not for the fast path: hyper takes the connection.
    Fallback,
    /// An inference request, its body possibly still arriving.
    Fast(Fast),
}

/// A fast-path request: where its parts are in the connection's buffer.
struct Fast {
    head: usize,
    len: usize,
    route: Hot,
    content_type: Option<Range<usize>>,
    close: bool,
}

/// The routes the fast path answers, with the model (and version) names' places.
#[derive(Debug, PartialEq)]
enum Hot {
    Invocations(Option<Range<usize>>),
    Infer(Range<usize>, Option<Range<usize>>),
}

/// One connection: requests on the fast path until one is not for it, then hyper.
async fn connection(
    state: Shared,
    app: Router,
    mut stream: TcpStream,
    mut closing: watch::Receiver<()>,
) {
    let mut input: Vec<u8> = Vec::with_capacity(READ_SPACE);
    let mut output: Vec<u8> = Vec::new();
    loop {
        // The request under way, counted in flight since its head came in (as axum's
        // path counts it): its model's metrics, route and start.
        let mut started: Option<(Arc<ModelMetrics>, Route, Instant)> = None;
        let (fast, (metrics, route, start)) = loop {
            if !input.is_empty() {
                match plan(&state, &input) {
                    Plan::More => {}
                    Plan::Fallback => return fallback(app, stream, input, closing).await,
                    Plan::Fast(f) => {
                        let counted = started.take().unwrap_or_else(|| {
                            let (metrics, route) = counted_in(&state, &input, &f);
                            metrics.request_started();
                            (metrics, route, Instant::now())
                        });
                        if input.len() >= f.head + f.len {
                            break (f, counted);
                        }
                        started = Some(counted);
                        // Not all of the body yet. The buffer grows as bytes arrive,
                        // never by what the head claims: idle connections claiming a
                        // large body must not cost the server that memory up front.
                    }
                }
            }
            if input.capacity() - input.len() < READ_SPACE {
                input.reserve(READ_SPACE);
            }
            let read = if input.is_empty() {
                tokio::select! {
                    biased;
                    r = stream.read_buf(&mut input) => r,
                    _ = closing.changed() => return,
                }
            } else {
                stream.read_buf(&mut input).await
            };
            match read {
                Ok(0) | Err(_) => {
                    // Gone before its body was in: a 400, as axum counts a body it
                    // could not read.
                    if let Some((metrics, route, start)) = started {
                        metrics.request_finished(route, 400, start.elapsed());
                    }
                    return;
                }
                Ok(_) => {}
            }
        };
        let resp = finish_tracked(&metrics, route, start, answer(&state, &input, &fast)).await;
        let close = fast.close || closing.has_changed().unwrap_or(true);
        if !write_response(&mut stream, &mut output, resp, close).await || close {
            let _ = stream.shutdown().await;
            return;
        }
        let used = fast.head + fast.len;
        if used >= input.len() {
            input.clear();
        } else {
            input.drain(..used);
        }
        if input.capacity() > 4 * MAX_HEAD && input.len() <= READ_SPACE {
            input.shrink_to(4 * MAX_HEAD);
        }
    }
}

/// The metrics and route a request counts in, as axum's path counts it.
fn counted_in(state: &Shared, input: &[u8], f: &Fast) -> (Arc<ModelMetrics>, Route) {
    let text = |r: &Range<usize>| std::str::from_utf8(&input[r.clone()]).unwrap_or("");
    match &f.route {
        Hot::Invocations(name) => (
            state.models.metrics_for(name.as_ref().map(text)),
            Route::Invocations,
        ),
        Hot::Infer(name, _) => (state.models.metrics_for(Some(text(name))), Route::V2Infer),
    }
}

/// Runs the request's handler.
async fn answer(state: &Shared, input: &[u8], f: &Fast) -> Response {
    let text = |r: &Range<usize>| std::str::from_utf8(&input[r.clone()]).unwrap_or("");
    let body = &input[f.head..f.head + f.len];
    match &f.route {
        Hot::Invocations(name) => {
            let content_type = f.content_type.as_ref().map(|r| &input[r.clone()]);
            mlflow::invocations_body(state, name.as_ref().map(text), content_type, body).await
        }
        Hot::Infer(name, version) => {
            let headers = HeaderMap::new();
            v2::infer_body(
                state,
                text(name),
                version.as_ref().map(text),
                &headers,
                body,
            )
            .await
        }
    }
}

/// Reads what `input` holds: a whole fast-path head, not yet, or not for here.
fn plan(state: &Shared, input: &[u8]) -> Plan {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if input.len() <= MAX_HEAD => return Plan::More,
        _ => return Plan::Fallback,
    };
    if req.version != Some(1) || req.method != Some("POST") {
        return Plan::Fallback;
    }
    let base = input.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let Some(path) = req.path else {
        return Plan::Fallback;
    };
    let Some(route) = hot_route(path).map(|r| r.shift(at(path.as_bytes()).start)) else {
        return Plan::Fallback;
    };
    let (mut len, mut content_type, mut close) = (None, None, false);
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            match (len, parse_length(h.value)) {
                (None, Some(n)) => len = Some(n),
                _ => return Plan::Fallback,
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            if content_type.is_some() {
                return Plan::Fallback;
            }
            content_type = Some(at(h.value));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&c| c == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                    return Plan::Fallback;
                }
            }
        } else if ["transfer-encoding", "expect", "upgrade", v2::HEADER_LEN]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            return Plan::Fallback;
        }
    }
    match len {
        Some(len) if len <= state.max_body.min(MAX_BODY) => Plan::Fast(Fast {
            head,
            len,
            route,
            content_type,
            close,
        }),
        _ => Plan::Fallback,
    }
}

/// A `Content-Length` value: digits only (no sign, no list), that fits.
fn parse_length(v: &[u8]) -> Option<usize> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 15 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

impl Hot {
    /// The same route with its ranges moved by `by` bytes.
    fn shift(self, by: usize) -> Hot {
        let s = |r: Range<usize>| r.start + by..r.end + by;
        match self {
            Hot::Invocations(n) => Hot::Invocations(n.map(s)),
            Hot::Infer(n, v) => Hot::Infer(s(n), v.map(s)),
        }
    }
}

/// The fast-path route `target` names (ranges relative to `target`), exactly as the
/// axum router would match it; `None` for every other target.
fn hot_route(target: &str) -> Option<Hot> {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if !path
        .bytes()
        .all(|c| c.is_ascii_graphic() && c != b'%' && c != b'#')
    {
        return None;
    }
    let mut segments = Vec::with_capacity(8);
    let mut start = 0;
    for (i, c) in path.bytes().enumerate() {
        if c == b'/' {
            segments.push(start..i);
            start = i + 1;
        }
    }
    segments.push(start..path.len());
    let seg = |i: usize| &path[segments[i].clone()];
    let name = |i: usize| (!segments[i].is_empty()).then(|| segments[i].clone());
    if !seg(0).is_empty() {
        return None;
    }
    match segments.len() {
        2 if seg(1) == "invocations" => Some(Hot::Invocations(None)),
        4 if seg(1) == "models" && seg(3) == "invocations" => {
            Some(Hot::Invocations(Some(name(2)?)))
        }
        5 if seg(1) == "v2" && seg(2) == "models" && seg(4) == "infer" => {
            Some(Hot::Infer(name(3)?, None))
        }
        7 if seg(1) == "v2" && seg(2) == "models" && seg(4) == "versions" && seg(6) == "infer" => {
            Some(Hot::Infer(name(3)?, Some(name(5)?)))
        }
        _ => None,
    }
}

/// Writes `resp` as hyper would, in one write; false when the client is gone.
async fn write_response(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    resp: Response,
    close: bool,
) -> bool {
    let (parts, body) = resp.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return false;
    };
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "date"
        ) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"date: ");
    push_date(out);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&body);
    stream.write_all(out).await.is_ok()
}

/// Appends the current time as an HTTP date, formatted once a second per thread.
fn push_date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            *d = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(d.1.as_bytes());
    });
}

/// Serves the rest of the connection with hyper and the axum router, starting with
/// the bytes already read.
async fn fallback(app: Router, stream: TcpStream, read: Vec<u8>, mut closing: watch::Receiver<()>) {
    let io = Rewind {
        read,
        at: 0,
        inner: stream,
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = closing.changed() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// A stream that first gives back bytes already read from it.
struct Rewind {
    read: Vec<u8>,
    at: usize,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.read.len() {
            let n = (this.read.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.read[this.at..this.at + n]);
            this.at += n;
            if this.at == this.read.len() {
                this.read = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(target: &str) -> Option<(Option<&str>, Option<&str>, bool)> {
        let text = |r: Range<usize>| &target[r];
        hot_route(target).map(|h| match h {
            Hot::Invocations(n) => (n.map(text), None, false),
            Hot::Infer(n, v) => (Some(text(n)), v.map(text), true),
        })
    }

    #[test]
    fn the_fast_routes_are_exactly_the_inference_routes() {
        assert_eq!(route("/invocations"), Some((None, None, false)));
        assert_eq!(route("/invocations?x=1"), Some((None, None, false)));
        assert_eq!(
            route("/models/iris/invocations"),
            Some((Some("iris"), None, false))
        );
        assert_eq!(
            route("/v2/models/iris/infer"),
            Some((Some("iris"), None, true))
        );
        assert_eq!(
            route("/v2/models/iris/versions/3/infer"),
            Some((Some("iris"), Some("3"), true))
        );
        for other in [
            "/",
            "/invocations/",
            "//invocations",
            "/models//invocations",
            "/models/a/b/invocations",
            "/v2/models/iris/infer/",
            "/v2/models//infer",
            "/v2/models/iris/versions//infer",
            "/v2/models/fraud%20detector/infer",
            "/v2/models/iris",
            "/ping",
            "/predict-image",
            "/admin/reload",
            "invocations",
            "*",
        ] {
            assert_eq!(route(other), None, "{other}");
        }
    }

    #[test]
    fn content_length_is_digits_only() {
        assert_eq!(parse_length(b"12"), Some(12));
        assert_eq!(parse_length(b" 0 "), Some(0));
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b"1,1",
            b"0x10",
            b"1 2",
            b"99999999999999999999",
        ] {
            assert_eq!(
                parse_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
