//! Shadow traffic: a share of the requests stable answered is sent again to the
//! candidate, after the client has its answer; the candidate's answer is compared
//! with stable's and discarded.
//!
//! # Expected flow
//! 1. The fast path proxies a request to stable and keeps stable's answer body
//!    (only while a shadow share or feedback is on).
//! 2. When stable answered 2xx and the shadow counter picks the request
//!    ([`split::counter_picks_candidate`] at the shadow share: exact, not random),
//!    a task sends the same request bytes to the next candidate replica on a
//!    connection of its own pool (with the candidate's `/models/{name}` in front of
//!    `/invocations` when it is packed, see `crate::packed`).
//! 3. The candidate's answer is counted like a request (class, latency) in the
//!    shadow counters; when both answers hold predictions ([`inspect::parse`]),
//!    their labels and probabilities are compared row by row.
//!
//! # Caveats
//! - Only requests the fast path handles are mirrored (a `Content-Length` body up to
//!   1 MiB, HTTP/1.1); only `POST` requests are.
//! - Mirroring adds load to the candidate, none to the client's latency.
//! - A candidate answer must carry `Content-Length`; a chunked one counts as
//!   unreadable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gateway::{Gateway, Table};
use crate::inspect::{self, Predictions};
use crate::metrics::{Class, Counters, ShadowStats};

/// Longest a mirrored request may take before it counts as failed.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest candidate answer read.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// Cumulative shadow counters of one gateway.
#[derive(Debug, Default)]
pub(crate) struct ShadowCounters {
    answers: Counters,
    rows: AtomicU64,
    agreeing_rows: AtomicU64,
    probabilities: AtomicU64,
    /// Sum of absolute probability differences, in billionths.
    diff_nanos: AtomicU64,
    unreadable: AtomicU64,
    /// Regressors' values compared (signed sums: kept under a lock, off the
    /// request path).
    values: std::sync::Mutex<inspect::ValueSums>,
    /// The shadow split's request number.
    pub(crate) picks: AtomicU64,
}

impl ShadowCounters {
    pub(crate) fn snapshot(&self) -> ShadowStats {
        let mut s = ShadowStats::default();
        s.answers.latency_buckets = vec![0; crate::LATENCY_BUCKETS.len() + 1];
        self.answers.add_to(&mut s.answers);
        s.rows = self.rows.load(Relaxed);
        s.agreeing_rows = self.agreeing_rows.load(Relaxed);
        s.probabilities = self.probabilities.load(Relaxed);
        s.probability_diff_sum = self.diff_nanos.load(Relaxed) as f64 / 1e9;
        s.unreadable = self.unreadable.load(Relaxed);
        s.values = *self.values.lock().unwrap_or_else(|e| e.into_inner());
        s
    }

    fn record(&self, stable: &Predictions, candidate: &Predictions) {
        let c = inspect::compare(stable, candidate);
        self.rows.fetch_add(c.rows, Relaxed);
        self.agreeing_rows.fetch_add(c.agreeing_rows, Relaxed);
        self.probabilities.fetch_add(c.probabilities, Relaxed);
        self.diff_nanos
            .fetch_add((c.probability_diff_sum * 1e9).round() as u64, Relaxed);
        if c.values.rows > 0 {
            self.values
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .add(&c.values);
        }
    }
}

/// Sends `request` (a whole HTTP/1.1 request as the fast path wrote it, its target
/// as the client sent it, starting at `bare_at` when it names no model) to the
/// candidate of `table`, and compares its answer with `stable`'s predictions. A
/// packed candidate gets its `/models/{name}` in front of a target that names no
/// model (`crate::packed`), whatever stable got.
pub(crate) async fn mirror(
    gw: Gateway,
    table: Arc<Table>,
    request: Vec<u8>,
    bare_at: Option<usize>,
    stable: Option<Predictions>,
) {
    let Some(candidate) = table.get(crate::split::Variant::Candidate) else {
        return;
    };
    let request = match (bare_at, &candidate.model_path) {
        (Some(at), Some(prefix)) => crate::packed::insert_prefix(request, at, prefix),
        _ => request,
    };
    let counters = &gw.inner.shadow;
    let start = Instant::now();
    let slot = candidate.next.fetch_add(1, Relaxed) % candidate.pools.len();
    let pool = &candidate.pools[slot];
    let answer = tokio::time::timeout(MIRROR_TIMEOUT, async {
        let mut stream = match pool.take_raw() {
            Some(s) => s,
            None => pool.connect_raw().await?,
        };
        let (status, body, reusable) = exchange(&mut stream, &request).await?;
        if reusable {
            pool.put_raw(stream);
        }
        Ok::<_, String>((status, body))
    })
    .await
    .unwrap_or_else(|_| Err(format!("no answer within {MIRROR_TIMEOUT:?}")));
    match answer {
        Ok((status, body)) => {
            let class = http::StatusCode::from_u16(status)
                .map(Class::of_status)
                .unwrap_or(Class::Upstream);
            counters
                .answers
                .record_status(status, class, start.elapsed());
            if class != Class::Success {
                return;
            }
            match (stable, body.as_deref().and_then(inspect::parse)) {
                (Some(s), Some(c)) => counters.record(&s, &c),
                (Some(_), None) => {
                    counters.unreadable.fetch_add(1, Relaxed);
                }
                (None, _) => {}
            }
        }
        Err(why) => {
            tracing::debug!(env = %gw.inner.config.name, "shadow request failed: {why}");
            counters.answers.record(Class::Upstream, start.elapsed());
        }
    }
}

/// Writes the request and reads one response: status, body (`None` when it is not
/// delimited by `Content-Length`) and whether the connection can be used again.
async fn exchange(
    stream: &mut tokio::net::TcpStream,
    request: &[u8],
) -> Result<(u16, Option<Vec<u8>>, bool), String> {
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        if buf.len() > MAX_ANSWER {
            return Err("answer too large".into());
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(&buf) {
            Ok(httparse::Status::Complete(h)) => h,
            Ok(httparse::Status::Partial) if n == 0 => {
                return Err("connection closed before the answer".into());
            }
            Ok(httparse::Status::Partial) => continue,
            Err(e) => return Err(format!("invalid answer: {e}")),
        };
        let status = resp.code.unwrap_or(0);
        let mut length = None;
        let mut reusable = resp.version == Some(1);
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok());
            } else if h.name.eq_ignore_ascii_case("connection")
                && h.value.eq_ignore_ascii_case(b"close")
            {
                reusable = false;
            }
        }
        let Some(length) = length.filter(|l| *l <= MAX_ANSWER) else {
            return Ok((status, None, false));
        };
        while buf.len() < head + length {
            let n = stream
                .read_buf(&mut buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed in the answer's body".into());
            }
        }
        let reusable = reusable && buf.len() == head + length;
        return Ok((status, Some(buf[head..head + length].to_vec()), reusable));
    }
}
