//! The client connection as hyper reads it, after the fast path handed it over:
//! every request head is checked by [`framing::parse_request`] and
//! [`framing::check_target`] (the fast path's own rules) before hyper sees a byte
//! of it, so both paths refuse the same requests.
//!
//! The guard follows the messages on the connection: it lets through a checked
//! head, then exactly the body its framing says (`Content-Length` bytes, or a
//! chunked body checked by [`ChunkScan`]), then checks the next head. A refused head
//! is replaced by a few bytes hyper itself answers with 400 (or 431 for too many
//! headers or a head too large) and the connection ends there: hyper has answered
//! the requests before it, and nothing after it is read.
//!
//! A chunked body is held back with its head until it is complete (up to
//! [`HOLD`] bytes), so an invalid chunk gets a 400 before anything was forwarded.
//! Longer chunked bodies, and those of `Expect: 100-continue` requests (whose
//! client waits for hyper's `100 Continue`), are checked as they pass: an invalid
//! chunk then fails the read, hyper aborts the request (the backend connection
//! is closed with it) and closes the client connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::framing::{self, Body, ChunkScan, Parsed, Refused};
use http::Version;
use http::header::{self, HeaderMap, HeaderName};

/// The largest chunked body held back until it is complete.
pub(crate) const HOLD: usize = 1024 * 1024;
/// Most headers a request may have on hyper's path (hyper's own limit).
const MAX_HEADERS: usize = 100;

/// Bytes hyper refuses with 400 (an invalid method).
const POISON_400: &[u8] = b"\x01 / HTTP/1.1\r\n\r\n";

/// What comes after the bytes already let through.
enum State {
    /// A request head (and, if chunked, the body held back with it).
    Head,
    /// A chunked body being held back: the head took `head`, `scan` has seen the
    /// bytes up to `scanned`.
    Holding {
        head: usize,
        scan: ChunkScan,
        scanned: usize,
    },
    /// This many body bytes.
    Length(u64),
    /// A chunked body checked as it passes.
    Chunked(ChunkScan),
    /// Refused: after the replacement bytes, the end.
    Ended,
}

/// A client connection whose first bytes were already read by the fast path.
pub(crate) struct Guarded<I = TcpStream> {
    io: I,
    /// Read from the client, not yet given to hyper: `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    /// Bytes of `buf[pos..]` checked and free to go to hyper.
    free: usize,
    /// In [`State::Head`]: how much of `buf[pos..]` was an incomplete head when last
    /// parsed (parsed again only once a new line may have ended it, so a head sent
    /// a byte at a time costs one parse per line, not one per byte).
    partial: usize,
    state: State,
    eof: bool,
}

impl<I> Guarded<I> {
    pub(crate) fn new(io: I, prefix: Vec<u8>) -> Guarded<I> {
        Guarded {
            io,
            buf: prefix,
            pos: 0,
            free: 0,
            partial: 0,
            state: State::Head,
            eof: false,
        }
    }

    /// Replaces everything unread by bytes hyper answers with `status`.
    fn refuse(&mut self, status: u16) -> io::Result<()> {
        self.buf.clear();
        self.pos = 0;
        if status == 431 {
            // One header more than hyper takes.
            self.buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
            for _ in 0..=MAX_HEADERS {
                self.buf.extend_from_slice(b"a: b\r\n");
            }
            self.buf.extend_from_slice(b"\r\n");
        } else {
            self.buf.extend_from_slice(POISON_400);
        }
        self.free = self.buf.len();
        self.state = State::Ended;
        Ok(())
    }

    /// Moves `free` forward over what the state allows of the buffered bytes.
    /// Err: a chunked body already under way is invalid.
    fn check(&mut self) -> io::Result<()> {
        let avail = &self.buf[self.pos..];
        match &mut self.state {
            State::Ended => {}
            State::Head => {
                if avail.is_empty()
                    || (self.partial > 0
                        && avail.len() <= framing::MAX_HEAD
                        && !avail[self.partial..].contains(&b'\n'))
                {
                    return Ok(());
                }
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let parsed = framing::parse_request(avail, &mut headers);
                self.partial = match parsed {
                    Parsed::Partial => avail.len(),
                    _ => 0,
                };
                let (len, body, expect) = match parsed {
                    Parsed::Partial => return Ok(()),
                    Parsed::TooManyHeaders => return self.refuse(431),
                    Parsed::Bad(status) => return self.refuse(status),
                    Parsed::Head(h) => match framing::check_target(h.target) {
                        // The gateway answers 404 itself, as on the fast path.
                        Ok(_) | Err(Refused::Private) => (h.len, h.body, h.expect_or_upgrade),
                        Err(Refused::Bad) => return self.refuse(400),
                    },
                };
                match body {
                    Body::None | Body::Length(0) => self.free = len,
                    Body::Length(n) => {
                        self.free = len;
                        self.state = State::Length(n);
                    }
                    Body::Chunked if expect => {
                        self.free = len;
                        self.state = State::Chunked(ChunkScan::default());
                    }
                    Body::Chunked => {
                        self.state = State::Holding {
                            head: len,
                            scan: ChunkScan::default(),
                            scanned: len,
                        };
                        return self.check();
                    }
                }
            }
            State::Holding {
                head,
                scan,
                scanned,
            } => match scan.feed(&avail[*scanned..]) {
                Ok(Some(n)) => {
                    self.free = *scanned + n;
                    self.state = State::Head;
                }
                Ok(None) if avail.len() - *head > HOLD => {
                    // Too long to hold: let it stream, checked as it goes.
                    self.free = avail.len();
                    self.state = State::Chunked(scan.clone());
                }
                Ok(None) => *scanned = avail.len(),
                Err(()) => return self.refuse(400),
            },
            State::Length(n) => {
                let take = (avail.len() as u64).min(*n);
                *n -= take;
                self.free = take as usize;
                if *n == 0 {
                    self.state = State::Head;
                }
            }
            State::Chunked(scan) => match scan.feed(avail) {
                Ok(Some(n)) => {
                    self.free = n;
                    self.state = State::Head;
                }
                Ok(None) => self.free = avail.len(),
                Err(()) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "invalid chunked request body",
                    ));
                }
            },
        }
        Ok(())
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.free > 0 {
                let n = this.free.min(out.remaining());
                out.put_slice(&this.buf[this.pos..this.pos + n]);
                this.pos += n;
                this.free -= n;
                if this.pos == this.buf.len() {
                    this.buf.clear();
                    this.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if matches!(this.state, State::Ended) {
                return Poll::Ready(Ok(()));
            }
            let before = this.buf.len() - this.pos;
            this.check()?;
            if this.free > 0 || matches!(this.state, State::Ended) {
                continue;
            }
            if this.eof {
                // What is left is not a whole message: hyper sees it end there.
                this.free = before;
                this.state = State::Ended;
                continue;
            }
            // Read more.
            if this.pos > 0 && this.pos == this.buf.len() {
                this.buf.clear();
                this.pos = 0;
            }
            if this.buf.len() - this.pos > framing::MAX_HEAD + HOLD + 64 * 1024 {
                // Cannot happen (every state frees or refuses before that); be safe.
                this.refuse(400)?;
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => this.eof = true,
                Poll::Ready(Ok(())) => this.buf.extend_from_slice(rb.filled()),
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
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

/// Feeds `data` through a guard in pieces of the sizes `cuts` gives (read by hyper
/// in pieces of other sizes), as the fuzz target `request_head` does. Returns what
/// hyper would have been given; never panics.
#[doc(hidden)]
pub fn fuzz_stream(data: &[u8], cuts: &[u8]) -> Vec<u8> {
    /// Yields `data` in pieces; then the end.
    struct Pieces<'a> {
        data: &'a [u8],
        cuts: std::iter::Cycle<std::slice::Iter<'a, u8>>,
    }
    impl AsyncRead for Pieces<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let cut = usize::from(*self.cuts.next().unwrap_or(&255)).max(1);
            let n = cut.min(self.data.len()).min(out.remaining());
            out.put_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Poll::Ready(Ok(()))
        }
    }
    let cuts = if cuts.is_empty() { &[255][..] } else { cuts };
    let (first, rest) = data.split_at(data.len().min(usize::from(cuts[0])));
    let mut guard = Guarded::new(
        Pieces {
            data: rest,
            cuts: cuts.iter().cycle(),
        },
        first.to_vec(),
    );
    let mut given = Vec::new();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut sizes = cuts.iter().rev().cycle();
    loop {
        let mut buf = [0u8; 256];
        let size = usize::from(*sizes.next().unwrap_or(&255)).max(1);
        let mut out = ReadBuf::new(&mut buf[..size]);
        match Pin::new(&mut guard).poll_read(&mut cx, &mut out) {
            Poll::Ready(Ok(())) if out.filled().is_empty() => return given,
            Poll::Ready(Ok(())) => given.extend_from_slice(out.filled()),
            Poll::Ready(Err(_)) | Poll::Pending => return given,
        }
    }
}

// Hop-by-hop headers and backend reuse on hyper's path (the fast path has its own,
// from the same rules in `crate::framing`).

/// Whether a header belongs to one connection ([`crate::framing::HOP_BY_HOP`]).
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    crate::framing::is_hop_by_hop(name.as_str())
}

/// Removes the headers that belong to one connection, and those every `Connection`
/// header names, except the [`crate::framing::PROTECTED`] ones (a request naming
/// them never gets here: it is refused).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass of cheap comparisons; most messages have none of them.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| crate::framing::tokens(v.as_bytes()))
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .filter(|n| !crate::framing::PROTECTED.contains(&n.as_str()))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in crate::framing::HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether a backend connection may take another request after this response:
/// HTTP/1.1, no `Connection: close`, and framing nobody could read two ways (not
/// both `Transfer-Encoding` and `Content-Length`, at most one `Transfer-Encoding`).
/// hyper's client checks the rest (lengths, chunks, bytes after the response).
pub(crate) fn reusable(parts: &http::response::Parts) -> bool {
    let h = &parts.headers;
    let te = h.get_all(header::TRANSFER_ENCODING).iter().count();
    parts.version == Version::HTTP_11
        && te <= 1
        && !(te == 1 && h.contains_key(header::CONTENT_LENGTH))
        && !h
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| crate::framing::tokens(v.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"close")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What hyper reads of `data`, given whole and given one byte at a time.
    fn through(data: &[u8]) -> Vec<u8> {
        let whole = fuzz_stream(data, &[255]);
        let bytewise = fuzz_stream(data, &[1]);
        assert_eq!(whole, bytewise, "{:?}", String::from_utf8_lossy(data));
        whole
    }

    #[test]
    fn checked_requests_pass_whole_and_a_bad_one_ends_the_stream() {
        let good = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc\
            POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nt: 1\r\n\r\n\
            GET /c HTTP/1.0\r\n\r\n";
        assert_eq!(through(good), good);

        let bad = b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let both = [&good[..], bad].concat();
        assert_eq!(through(&both), [&good[..], POISON_400].concat());

        let bad_chunk = b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(through(bad_chunk), POISON_400);
        let lf = b"GET /a HTTP/1.1\nHost: h\n\n";
        assert_eq!(through(lf), POISON_400);
        let dots = b"GET /a/../b HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(through(dots), POISON_400);
        // The gateway answers /admin itself (404): the head goes through.
        let admin = b"GET /%61dmin HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(through(admin), admin);

        let many = format!(
            "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
            "a: b\r\n".repeat(120)
        );
        let out = through(many.as_bytes());
        assert!(out.starts_with(b"GET / HTTP/1.1\r\na: b\r\n"));
        assert_eq!(out.len(), 16 + 6 * (MAX_HEADERS + 1) + 2);

        // An unfinished message goes as far as it came.
        let cut = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nabc";
        assert_eq!(through(cut), cut);
    }

    #[test]
    fn a_bad_chunk_after_the_head_was_released_fails_the_read() {
        // Expect: 100-continue: the head goes at once, the body is checked as it passes.
        let data = b"POST /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n";
        let out = fuzz_stream(data, &[255]);
        let head_len = data.len() - b"3\r\nabc\r\nzz\r\n".len();
        assert!(out.len() >= head_len && data.starts_with(&out), "{out:?}");
        assert!(!out.ends_with(b"zz\r\n"));
    }
}
