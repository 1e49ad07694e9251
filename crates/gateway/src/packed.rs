//! Packed upstreams: the target a model server serving several models gets.
//!
//! A variant's servers may serve several models at once (a shared hoist-server,
//! `[server] pack`); [`crate::Upstream::model`] then names this model as they know
//! it. Such a server refuses plain `/invocations` (it cannot tell which model is
//! meant), so a request whose path is exactly `/invocations` goes to it as
//! `/models/{name}/invocations`, the query string kept as it came. Every other path
//! goes unchanged: `/v2/models/{m}/...` names the model already, and `/ping`,
//! `/health`, `/version`, `/v2/health/*` are per server.
//!
//! # Expected flow
//! 1. When routes are applied, each backend of a packed upstream gets its prefix
//!    `/models/{name}` once ([`model_prefix`]: the name percent-encoded as one path
//!    segment); a backend of an unpacked upstream gets none.
//! 2. The request is prepared once, with the target as the client sent it (after a
//!    [`crate::Router`] cut `/models/{m}` off); [`names_no_model`] says whether the
//!    rewrite can apply.
//! 3. Each attempt (the first, a retry on another replica, a failover to the other
//!    variant, a mirrored copy for the candidate) applies the rule of the backend it
//!    goes to: the fast path writes the prefix in front of the target as it writes
//!    the request ([`write_request`], no copy), hyper's path sets the URI
//!    ([`Bare::uri_for`]), the shadow mirror inserts the prefix into its own copy.
//!
//! # Cost
//! Nothing for an unpacked backend: one comparison of the path per request, no
//! allocation, the request written in one piece as before.

use std::borrow::Cow;
use std::io::IoSlice;

use bytes::Bytes;
use http::Uri;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::gateway::{Backend, Table};

/// The one path that names no model and has a per-model form on a packed server.
const BARE: &str = "/invocations";

/// `/models/{name}`, the name percent-encoded as one path segment: what goes in
/// front of `/invocations` for servers that know this model as `name`.
///
/// Every byte but the unreserved ones (RFC 3986: letters, digits, `-._~`) is
/// escaped, so the result is a valid path segment whatever the name (spaces,
/// `%`, `?`, `#`, non-ASCII) and decodes back to exactly `name`.
pub(crate) fn model_prefix(name: &str) -> Bytes {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity("/models/".len() + name.len() * 3);
    out.extend_from_slice(b"/models/");
    for &c in name.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            out.push(c);
        } else {
            out.extend_from_slice(&[b'%', HEX[(c >> 4) as usize], HEX[(c & 0xf) as usize]]);
        }
    }
    Bytes::from(out)
}

/// Whether an origin-form target names no model: its path is exactly
/// `/invocations` (any query string).
pub(crate) fn names_no_model(target: &str) -> bool {
    target.split('?').next() == Some(BARE)
}

/// The target a backend with `prefix` ([`Backend::model_path`]) gets for `target`:
/// the rule of the module docs as one pure function (hyper's path uses it; the fast
/// path writes the same bytes without building a string, see [`write_request`]).
pub(crate) fn target_for<'t>(target: &'t str, prefix: Option<&[u8]>) -> Cow<'t, str> {
    match prefix {
        Some(p) if names_no_model(target) => {
            Cow::Owned(format!("{}{target}", String::from_utf8_lossy(p)))
        }
        _ => Cow::Borrowed(target),
    }
}

/// Writes `request` (a whole request whose target starts at byte `bare_at` when it
/// names no model) to `stream`, with `backend`'s prefix in front of the target when
/// the backend is packed. No copy: the pieces go in one vectored write when they can.
pub(crate) async fn write_request<W: AsyncWrite + Unpin>(
    stream: &mut W,
    request: &[u8],
    bare_at: Option<usize>,
    backend: &Backend,
) -> std::io::Result<()> {
    match (bare_at, &backend.model_path) {
        (Some(at), Some(prefix)) if at <= request.len() => {
            write_all_parts(stream, [&request[..at], prefix, &request[at..]]).await
        }
        _ => stream.write_all(request).await,
    }
}

/// Writes every byte of `parts`, in order.
async fn write_all_parts<W: AsyncWrite + Unpin>(
    stream: &mut W,
    parts: [&[u8]; 3],
) -> std::io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut written = 0;
    while written < total {
        // The slices still to write, the first one cut where the last write ended.
        let mut skip = written;
        let mut slices = [IoSlice::new(&[]), IoSlice::new(&[]), IoSlice::new(&[])];
        let mut n = 0;
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            slices[n] = IoSlice::new(&part[skip..]);
            skip = 0;
            n += 1;
        }
        match stream.write_vectored(&slices[..n]).await? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            w => written += w,
        }
    }
    Ok(())
}

/// `bytes` with `prefix` inserted at `at` (the shadow mirror's own copy).
pub(crate) fn insert_prefix(mut bytes: Vec<u8>, at: usize, prefix: &[u8]) -> Vec<u8> {
    if at <= bytes.len() {
        bytes.splice(at..at, prefix.iter().copied());
    }
    bytes
}

/// Hyper's path: a request on `/invocations` while the routes hold a packed
/// backend, with its target as it came, to set per attempt.
pub(crate) struct Bare {
    original: Uri,
}

impl Bare {
    /// `Some` when `uri`'s path names no model and a backend of `table` is packed
    /// (otherwise no attempt changes the target: nothing is kept).
    pub(crate) fn of(uri: &Uri, table: &Table) -> Option<Bare> {
        let packs = [&table.stable, &table.candidate]
            .into_iter()
            .flatten()
            .any(|b| b.model_path.is_some());
        (packs && uri.path() == BARE).then(|| Bare {
            original: uri.clone(),
        })
    }

    /// The URI to send to `backend`: the original, or with its prefix in front.
    pub(crate) fn uri_for(&self, backend: &Backend) -> Uri {
        let pq = self
            .original
            .path_and_query()
            .map_or(BARE, |pq| pq.as_str());
        match target_for(pq, backend.model_path.as_deref()) {
            Cow::Borrowed(_) => self.original.clone(),
            // The prefix is escaped to a valid path segment and `pq` was a valid
            // target, so this parses; if it ever did not, the server's 400 says so.
            Cow::Owned(target) => target.parse().unwrap_or_else(|_| self.original.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `%XX` decoded, as a server decodes a path parameter.
    fn unescape(s: &str) -> String {
        let mut out = Vec::new();
        let mut b = s.bytes();
        while let Some(c) = b.next() {
            if c == b'%' {
                let hex: String = [b.next().unwrap(), b.next().unwrap()]
                    .iter()
                    .map(|&c| c as char)
                    .collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap());
            } else {
                out.push(c);
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn rewrite(target: &str, model: Option<&str>) -> String {
        target_for(target, model.map(model_prefix).as_deref()).into_owned()
    }

    #[test]
    fn bare_invocations_gets_the_model_and_keeps_its_query() {
        assert_eq!(rewrite("/invocations", Some("b")), "/models/b/invocations");
        assert_eq!(
            rewrite("/invocations?x=1&y=/a b", Some("b")),
            "/models/b/invocations?x=1&y=/a b"
        );
        assert_eq!(
            rewrite("/invocations?", Some("b")),
            "/models/b/invocations?"
        );
    }

    #[test]
    fn other_paths_and_unpacked_backends_are_unchanged() {
        for target in [
            "/v2/models/a/infer",
            "/v2/models/fraud%20detector/infer",
            "/invocations/x",
            "/invocationsx",
            "/models/b/invocations",
            "//invocations",
            "/ping",
            "/health",
            "/version",
            "/v2/health/ready",
            "/predict-image",
        ] {
            assert_eq!(rewrite(target, Some("b")), target);
        }
        assert_eq!(rewrite("/invocations?x=1", None), "/invocations?x=1");
        assert!(matches!(target_for("/invocations", None), Cow::Borrowed(_)));
    }

    #[test]
    fn names_are_escaped_as_one_path_segment() {
        assert_eq!(
            &model_prefix("fraud detector")[..],
            b"/models/fraud%20detector"
        );
        assert_eq!(&model_prefix("a-b_c.d~9")[..], b"/models/a-b_c.d~9");
        assert_eq!(
            &model_prefix("50%?#;+&=:@")[..],
            b"/models/50%25%3F%23%3B%2B%26%3D%3A%40"
        );
        assert_eq!(&model_prefix("modèle")[..], b"/models/mod%C3%A8le");
        // What comes out is one valid path segment that decodes back to the name
        // (as the model server decodes it), whatever the name holds.
        for name in [
            "fraud detector",
            "50%?#",
            "modèle",
            "a\"b<c>",
            "x\\y",
            "%2e%2e",
        ] {
            let target = rewrite("/invocations?q=1", Some(name));
            let uri: Uri = target.parse().unwrap();
            let segment = uri.path().strip_prefix("/models/").unwrap();
            let segment = segment.strip_suffix("/invocations").unwrap();
            assert!(!segment.contains('/'), "{target}");
            assert_eq!(unescape(segment), name, "{target}");
            assert_eq!(uri.query(), Some("q=1"));
        }
        // Those a client may send through the gateway pass its checks as well.
        for name in ["fraud detector", "50%?#", "modèle", "a\"b<c>"] {
            let target = rewrite("/invocations?q=1", Some(name));
            assert!(crate::framing::check_target(&target).is_ok(), "{target}");
        }
    }

    /// A writer that takes at most `chunk` bytes a call, to test partial writes.
    struct Trickle {
        out: Vec<u8>,
        chunk: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.chunk);
            self.out.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn parts_are_written_whole_through_partial_writes() {
        let request = b"POST /invocations?x=1 HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}";
        for chunk in [1, 2, 3, 5, 7, 64, 1024] {
            let mut w = Trickle {
                out: Vec::new(),
                chunk,
            };
            write_all_parts(&mut w, [&request[..5], b"/models/a%20b", &request[5..]])
                .await
                .unwrap();
            assert_eq!(
                w.out,
                b"POST /models/a%20b/invocations?x=1 HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}",
                "chunk {chunk}"
            );
        }
        assert_eq!(
            insert_prefix(request.to_vec(), 5, b"/models/m"),
            b"POST /models/m/invocations?x=1 HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}"
        );
    }
}
