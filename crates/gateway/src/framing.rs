//! HTTP/1.1 message framing (RFC 9112), one set of rules for every path.
//!
//! The fast path (`crate::fast`), the hyper path (through `crate::guard`, which
//! checks each request head before hyper sees it) and the backend pools decide how
//! long a message is, which headers belong to one connection, and which request
//! targets are refused, with the functions here. When two parsers on a connection
//! (client, gateway, model server) could disagree about where a message ends, the
//! gateway refuses the message instead of guessing.
//!
//! # What a request is refused for
//! With 400, and the client connection closes:
//! - a request line that is not `method SP target SP HTTP/1.0|HTTP/1.1` (HTTP/0.9 or
//!   HTTP/2.0 request lines included), the `CONNECT` method, a control character (NUL, bare CR, DEL, ...)
//!   anywhere in the head, a header name with a character outside `token`, whitespace
//!   between a header name and its colon, a header line that starts with whitespace
//!   (obs-fold);
//! - a line that ends in a bare LF: the gateway accepts only CRLF line endings
//!   (RFC 9112 section 2.2 allows either choice; refusing means a bare LF never
//!   means a line end to one parser and not to another);
//! - `Content-Length` that is not exactly one or more digits (a sign, inner space, a
//!   list such as `1, 1` or `1, 2`, more than 19 digits), two `Content-Length`
//!   fields that differ;
//! - a header named `Content_Length` or `Transfer_Encoding` (some servers read `_`
//!   as `-`);
//! - `Transfer-Encoding` together with `Content-Length`; `Transfer-Encoding` in an
//!   HTTP/1.0 request; any `Transfer-Encoding` other than one field whose value is
//!   exactly `chunked` (so `chunked, identity`, `xchunked`, `gzip`, `gzip, chunked`,
//!   and `chunked` twice are refused);
//! - a `Connection` header that names `Content-Length`, `Transfer-Encoding` or
//!   `Host`: *refused*, not kept. Those headers frame and route the message; a
//!   request that asks a proxy to drop them is an attempt to make the next hop see a
//!   different message, so it gets no second reading;
//! - an HTTP/1.1 request without exactly one `Host` field, or a `Host` value with
//!   whitespace or a comma;
//! - a target that is not origin-form (`/path?query`) or absolute-form
//!   (`http://host/path`), or whose path has a `.` or `..` segment, a backslash, an
//!   invalid percent-escape, or a control or non-ASCII byte, before or after
//!   percent-decoding (see [`check_path`]);
//! - a chunked body with an invalid chunk size (not hex, a `0x` prefix, more than 16
//!   digits, junk after it), an invalid chunk extension or trailer, or a bare LF.
//!
//! A head over 64 KiB gets 431. A path whose first segment is `admin` (after
//! percent-decoding, in any letter case, however many slashes precede it) gets 404:
//! the model servers' operator endpoints are never reachable through the gateway.

use httparse::Header;

/// Longest request head.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// The headers that belong to one connection (RFC 9110 section 7.6.1, plus the
/// `Keep-Alive` and `Proxy-Connection` of older HTTP): never forwarded, in either
/// direction, on either path. Lowercase.
pub(crate) const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Headers a `Connection` header can never remove: a request naming one is refused.
pub(crate) const PROTECTED: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// Whether a header belongs to one connection (see [`HOP_BY_HOP`]).
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// The comma-separated tokens of a header value.
pub(crate) fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&c| c == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// Whether a `Connection` header of `headers` names `name`.
pub(crate) fn listed(headers: &[Header<'_>], name: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| tokens(h.value).any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
}

/// A `Content-Length` value: `1*DIGIT` and nothing else (surrounding whitespace is
/// already gone), at most 19 digits.
pub(crate) fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// No body.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request head that passed every check of the module docs except the target's.
#[derive(Debug)]
pub(crate) struct Head<'h, 'b> {
    /// Bytes the head took.
    pub len: usize,
    pub method: &'b str,
    pub target: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: &'h [Header<'b>],
    pub body: Body,
    /// `Connection: close`.
    pub close: bool,
    /// There is a `Connection` header (so [`listed`] may say yes).
    pub connection: bool,
    /// `Expect` or `Upgrade` (or `Connection: upgrade`).
    pub expect_or_upgrade: bool,
}

/// The result of [`parse_request`].
#[derive(Debug)]
pub(crate) enum Parsed<'h, 'b> {
    /// Not a whole head yet.
    Partial,
    /// More headers than slots.
    TooManyHeaders,
    /// Refused: answer this status and close.
    Bad(u16),
    Head(Head<'h, 'b>),
}

/// Parses and checks a request head at the start of `buf` (see the module docs).
pub(crate) fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
) -> Parsed<'h, 'b> {
    let mut req = httparse::Request::new(headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD {
                Parsed::Bad(431)
            } else if bare_lf(buf) {
                Parsed::Bad(400)
            } else {
                Parsed::Partial
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Parsed::TooManyHeaders,
        Err(_) => return Parsed::Bad(400),
    };
    if len > MAX_HEAD {
        return Parsed::Bad(431);
    }
    // httparse refuses every control character but HTAB in the head, a CR not
    // followed by LF, and obs-fold; it takes a bare LF as a line end. We do not.
    if bare_lf(&buf[..len]) {
        return Parsed::Bad(400);
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Bad(400);
    };
    if method == "CONNECT" {
        // A tunnel: a model server that said yes would turn the pooled connection
        // into raw bytes.
        return Parsed::Bad(400);
    }
    let headers: &'h [Header<'b>] = req.headers;
    let mut length: Option<u64> = None;
    let mut te = 0u32;
    let mut te_chunked = false;
    let mut hosts = 0u32;
    let mut close = false;
    let mut connection = false;
    let mut expect_or_upgrade = false;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let Some(n) = parse_length(h.value) else {
                return Parsed::Bad(400);
            };
            if length.is_some_and(|l| l != n) {
                return Parsed::Bad(400);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            te += 1;
            te_chunked = h.value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            if h.value
                .iter()
                .any(|&c| c == b',' || c == b' ' || c == b'\t')
            {
                return Parsed::Bad(400);
            }
        } else if name.eq_ignore_ascii_case("connection") {
            connection = true;
            for token in tokens(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    expect_or_upgrade = true;
                } else if PROTECTED
                    .iter()
                    .any(|p| token.eq_ignore_ascii_case(p.as_bytes()))
                {
                    return Parsed::Bad(400);
                }
            }
        } else if name.eq_ignore_ascii_case("expect") || name.eq_ignore_ascii_case("upgrade") {
            expect_or_upgrade = true;
        } else if (name.len() == 14 || name.len() == 17) && underscored_framing(name) {
            // `Content_Length`: a server that reads `_` as `-` would frame by it.
            return Parsed::Bad(400);
        }
    }
    let body = match (te, length) {
        (0, None) => Body::None,
        (0, Some(n)) => Body::Length(n),
        (1, None) if te_chunked && version == 1 => Body::Chunked,
        _ => return Parsed::Bad(400),
    };
    if (version == 1 && hosts != 1) || hosts > 1 {
        return Parsed::Bad(400);
    }
    Parsed::Head(Head {
        len,
        method,
        target,
        version,
        headers,
        body,
        close,
        connection,
        expect_or_upgrade,
    })
}

/// Whether `name` is `Content-Length` or `Transfer-Encoding` spelt with `_`.
fn underscored_framing(name: &str) -> bool {
    let same = |want: &str| {
        name.bytes()
            .zip(want.bytes())
            .all(|(a, b)| a.eq_ignore_ascii_case(&b) || (a == b'_' && b == b'-'))
    };
    name.contains('_') && (same("content-length") || same("transfer-encoding"))
}

/// Whether a LF in `head` is not preceded by CR.
fn bare_lf(head: &[u8]) -> bool {
    let mut prev = 0u8;
    for &c in head {
        if c == b'\n' && prev != b'\r' {
            return true;
        }
        prev = c;
    }
    false
}

/// Why a target is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Malformed or ambiguous: 400, and the connection closes.
    Bad,
    /// An operator-only path of the model servers: 404.
    Private,
}

impl Refused {
    pub(crate) fn status(self) -> u16 {
        match self {
            Refused::Bad => 400,
            Refused::Private => 404,
        }
    }
}

/// A request target in origin form (`/path?query`), or refused. Absolute-form
/// (`http://host/path`, any letter case in the scheme) loses its scheme and
/// authority; asterisk-form, authority-form and anything else are refused.
pub(crate) fn check_target(target: &str) -> Result<&str, Refused> {
    let origin = if target.starts_with('/') {
        target
    } else {
        let b = target.as_bytes();
        let rest = if b.len() >= 7 && b[..7].eq_ignore_ascii_case(b"http://") {
            &target[7..]
        } else if b.len() >= 8 && b[..8].eq_ignore_ascii_case(b"https://") {
            &target[8..]
        } else {
            return Err(Refused::Bad);
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if authority.is_empty() || authority.contains('@') {
            return Err(Refused::Bad);
        }
        match rest.as_bytes().get(end) {
            None => "/",
            Some(b'/') => &rest[end..],
            Some(_) => return Err(Refused::Bad),
        }
    };
    check_path(origin)?;
    Ok(origin)
}

/// Checks an origin-form target (`/path?query`).
///
/// Refused as [`Refused::Bad`]: not starting with `/`; a byte that is a control
/// character, a space, `#`, or not ASCII; in the path, a backslash, an invalid
/// percent-escape, or a segment that is `.` or `..` (also as `%2e`, `%2E%2e`, ...).
/// Refused as [`Refused::Private`]: a path whose first non-empty segment is `admin`
/// (any letter case, with or without `;params`), after decoding percent-escapes up
/// to three times (`/admin`, `//admin/x`, `/ADMIN`, `/%61dmin`, `/%2561dmin`,
/// `/%2Fadmin`), and likewise a path starting `/v2/repository` (the Open Inference
/// Protocol's repository extension: model load and unload). The model server routes
/// by the raw path, so anything that could mean either to any decoder is kept away
/// from it.
pub(crate) fn check_path(target: &str) -> Result<(), Refused> {
    let b = target.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(Refused::Bad);
    }
    if b.iter().any(|&c| c <= b' ' || c >= 0x7f || c == b'#') {
        return Err(Refused::Bad);
    }
    let path = &b[..b.iter().position(|&c| c == b'?').unwrap_or(b.len())];
    check_segments(path)?;
    if !path.contains(&b'%') {
        return Ok(());
    }
    // Rare: decode (allocating) and look again, a few levels deep.
    let mut decoded = percent_decode(path, true).ok_or(Refused::Bad)?;
    for _ in 0..3 {
        if decoded.iter().any(|&c| c < b' ' || c == 0x7f) {
            return Err(Refused::Bad);
        }
        check_segments(&decoded)?;
        if !decoded.contains(&b'%') {
            return Ok(());
        }
        match percent_decode(&decoded, false) {
            Some(next) if next != decoded => decoded = next,
            _ => return Ok(()),
        }
    }
    Err(Refused::Bad)
}

/// The segment checks of [`check_path`] on one (decoded or raw) path.
fn check_segments(path: &[u8]) -> Result<(), Refused> {
    if path.contains(&b'\\') {
        return Err(Refused::Bad);
    }
    // Non-empty segments seen, and whether the first was `v2`.
    let mut seen = 0usize;
    let mut v2 = false;
    for segment in path.split(|&c| c == b'/') {
        let name = segment.split(|&c| c == b';').next().unwrap_or(segment);
        if name == b"." || name == b".." {
            return Err(Refused::Bad);
        }
        if segment.is_empty() {
            continue;
        }
        match seen {
            0 if name.eq_ignore_ascii_case(b"admin") => return Err(Refused::Private),
            0 => v2 = name.eq_ignore_ascii_case(b"v2"),
            // The repository extension loads and unloads models: operators only.
            1 if v2 && name.eq_ignore_ascii_case(b"repository") => {
                return Err(Refused::Private);
            }
            _ => {}
        }
        seen += 1;
    }
    Ok(())
}

/// `%XX` escapes decoded. `strict`: an invalid escape is `None`; otherwise it
/// stays as it is.
fn percent_decode(s: &[u8], strict: bool) -> Option<Vec<u8>> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            match (
                s.get(i + 1).and_then(|&c| hex(c)),
                s.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ if strict => return None,
                _ => {}
            }
        }
        out.push(s[i]);
        i += 1;
    }
    Some(out)
}

/// Longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: u32 = 4096;
/// Longest trailer section.
const MAX_TRAILERS: u32 = 16 * 1024;
/// Most hex digits in a chunk size.
const MAX_SIZE_DIGITS: u32 = 16;

/// Finds the end of a chunked body (RFC 9112 section 7.1) in the bytes fed to it,
/// checking its grammar exactly: CRLF line ends only, `1*HEXDIG` sizes (at most 16
/// digits), extensions `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`,
/// trailer fields `token ":" value` without obs-fold.
#[derive(Default, Debug, Clone)]
pub(crate) struct ChunkScan {
    state: Chunk,
    size: u64,
    /// Digits of the size, then bytes of the size line; bytes of the trailers.
    count: u32,
    trailers: u32,
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In the chunk size.
    #[default]
    Size,
    /// Whitespace after the size or a complete extension: `;` or CR next.
    AfterSize,
    /// After `;`: whitespace, then a name.
    ExtPreName,
    ExtName,
    /// After a name: whitespace, then `=`, `;` or CR.
    ExtPostName,
    /// After `=`: whitespace, then a value.
    ExtPreValue,
    ExtToken,
    ExtQuoted,
    ExtQuotedEscape,
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
    TrailerName,
    TrailerValue,
    /// After a trailer line's CR.
    TrailerLf,
    /// After the final CR.
    EndLf,
}

fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

impl ChunkScan {
    /// Ok(Some(n)): the body ends after `n` bytes of `data`; Ok(None): it goes on;
    /// Err: not valid chunked framing.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, ()> {
        use Chunk::*;
        let mut i = 0;
        while i < data.len() {
            let c = data[i];
            if matches!(
                self.state,
                AfterSize
                    | ExtPreName
                    | ExtName
                    | ExtPostName
                    | ExtPreValue
                    | ExtToken
                    | ExtQuoted
                    | ExtQuotedEscape
            ) {
                self.count += 1;
                if self.count > MAX_CHUNK_LINE {
                    return Err(());
                }
            }
            if matches!(self.state, TrailerName | TrailerValue | TrailerLf) {
                self.trailers += 1;
                if self.trailers > MAX_TRAILERS {
                    return Err(());
                }
            }
            self.state = match (self.state, c) {
                (Size, c) if c.is_ascii_hexdigit() => {
                    self.count += 1;
                    if self.count > MAX_SIZE_DIGITS {
                        return Err(());
                    }
                    let d = (c as char).to_digit(16).ok_or(())?;
                    self.size = (self.size << 4) | u64::from(d);
                    Size
                }
                (Size, _) if self.count == 0 => return Err(()),
                (Size | AfterSize | ExtPostName, c) if is_ws(c) => AfterSize,
                (Size | AfterSize | ExtPostName | ExtToken, b';') => ExtPreName,
                (Size | AfterSize | ExtPostName | ExtToken, b'\r') => SizeLf,
                (ExtPreName, c) if is_ws(c) => ExtPreName,
                (ExtPreName | ExtName, c) if is_token(c) => ExtName,
                (ExtName | ExtPostName, c) if is_ws(c) => ExtPostName,
                (ExtName | ExtPostName, b'=') => ExtPreValue,
                (ExtName, b';') => ExtPreName,
                (ExtName, b'\r') => SizeLf,
                (ExtPreValue, c) if is_ws(c) => ExtPreValue,
                (ExtPreValue, b'"') => ExtQuoted,
                (ExtPreValue | ExtToken, c) if is_token(c) => ExtToken,
                (ExtToken, c) if is_ws(c) => AfterSize,
                (ExtQuoted, b'"') => AfterSize,
                (ExtQuoted, b'\\') => ExtQuotedEscape,
                (ExtQuoted, c) if c == b'\t' || (c >= b' ' && c != 0x7f) => ExtQuoted,
                (ExtQuotedEscape, c) if c == b'\t' || (c >= b' ' && c != 0x7f) => ExtQuoted,
                (SizeLf, b'\n') => {
                    self.count = 0;
                    if self.size == 0 { TrailerStart } else { Data }
                }
                (Data, _) => {
                    let take = (data.len() - i).min(self.size.min(usize::MAX as u64) as usize);
                    self.size -= take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = DataCr;
                    }
                    continue;
                }
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => Size,
                (TrailerStart, b'\r') => EndLf,
                (TrailerStart | TrailerName, c) if is_token(c) => TrailerName,
                (TrailerName, b':') => TrailerValue,
                (TrailerValue, b'\r') => TrailerLf,
                (TrailerValue, c) if c == b'\t' || (c >= b' ' && c != 0x7f) => TrailerValue,
                (TrailerLf, b'\n') => TrailerStart,
                (EndLf, b'\n') => return Ok(Some(i + 1)),
                _ => return Err(()),
            };
            i += 1;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<(Body, bool), u16> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        match parse_request(raw, &mut headers) {
            Parsed::Head(h) => Ok((h.body, h.close)),
            Parsed::Bad(s) => Err(s),
            Parsed::Partial => Err(0),
            Parsed::TooManyHeaders => Err(1),
        }
    }

    fn req(headers: &str) -> Vec<u8> {
        format!("POST /x HTTP/1.1\r\nhost: h\r\n{headers}\r\n").into_bytes()
    }

    #[test]
    fn framing_headers() {
        assert_eq!(parse(&req("")), Ok((Body::None, false)));
        assert_eq!(
            parse(&req("content-length: 5\r\n")),
            Ok((Body::Length(5), false))
        );
        assert_eq!(
            parse(&req("content-length: 5\r\ncontent-length: 5\r\n")),
            Ok((Body::Length(5), false))
        );
        assert_eq!(
            parse(&req("transfer-encoding: Chunked\r\nconnection: close\r\n")),
            Ok((Body::Chunked, true))
        );
        for bad in [
            "content-length: 5\r\ncontent-length: 6\r\n",
            "content-length: 1, 2\r\n",
            "content-length: 1, 1\r\n",
            "content-length: +1\r\n",
            "content-length: -1\r\n",
            "content-length: 1 2\r\n",
            "content-length: 0x10\r\n",
            "content-length: \r\n",
            "content-length: 99999999999999999999\r\n",
            "transfer-encoding: chunked\r\ncontent-length: 3\r\n",
            "content-length: 3\r\ntransfer-encoding: chunked\r\n",
            "transfer-encoding: chunked, identity\r\n",
            "transfer-encoding: identity, chunked\r\n",
            "transfer-encoding: gzip, chunked\r\n",
            "transfer-encoding: xchunked\r\n",
            "transfer-encoding: gzip\r\n",
            "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n",
            "transfer-encoding: chunked, chunked\r\n",
            "transfer-encoding: \r\n",
            "connection: keep-alive, Content-Length\r\ncontent-length: 3\r\n",
            "connection: transfer-encoding\r\n",
            "connection: HOST\r\n",
            "host: other\r\n",
            "x-a: 1\r\n b\r\n",
            "x-a: 1\r\n\tb\r\n",
            "x-a : 1\r\n",
            "x-a\t: 1\r\n",
            "x(a): 1\r\n",
            "x-a: 1\0\r\n",
            "x-a: 1\r2\r\n",
            "x-a: \x7f\r\n",
            "x-a: 1\n",
            "content_length: 3\r\n",
            "Transfer_Encoding: chunked\r\n",
        ] {
            assert_eq!(parse(&req(bad)), Err(400), "{bad:?}");
        }
    }

    #[test]
    fn request_lines() {
        assert!(parse(b"GET / HTTP/1.0\r\n\r\n").is_ok());
        assert!(parse(b"\r\nGET / HTTP/1.1\r\nhost: h\r\n\r\n").is_ok());
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n",
            b"GET / HTTP/2.0\r\nhost: h\r\n\r\n",
            b"GET / HTTP/0.9\r\nhost: h\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET / HTTP/1.1\nhost: h\n\n",
            b"GET / HTTP/1.1\r\nhost: h\n\r\n",
            b"\nGET / HTTP/1.1\r\nhost: h\r\n\r\n",
            b"GET /a\rb HTTP/1.1\r\nhost: h\r\n\r\n",
            b"GET /a\0b HTTP/1.1\r\nhost: h\r\n\r\n",
            b"GET  / HTTP/1.1\r\nhost: h\r\n\r\n",
            b"GET / HTTP/1.1 \r\nhost: h\r\n\r\n",
            b"G\tET / HTTP/1.1\r\nhost: h\r\n\r\n",
            b"CONNECT /x HTTP/1.1\r\nhost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\n host: h\r\n\r\n",
        ] {
            assert_eq!(parse(bad), Err(400), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(b"GET / HTTP/1.1\r\nhost: h\r\n"), Err(0));
        assert_eq!(parse(b"GET / HTTP/1.1\nhost"), Err(400));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "a: b\r\n".repeat(17));
        assert_eq!(parse(many.as_bytes()), Err(1));
        let huge = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse(huge.as_bytes()), Err(431));
    }

    #[test]
    fn targets() {
        assert_eq!(check_target("/a?b"), Ok("/a?b"));
        assert_eq!(check_target("http://h:1/a?b"), Ok("/a?b"));
        assert_eq!(check_target("HTTP://h"), Ok("/"));
        assert_eq!(
            check_target("/v2/models/m%20x/infer"),
            Ok("/v2/models/m%20x/infer")
        );
        assert_eq!(check_target("/a?x=../admin"), Ok("/a?x=../admin"));
        assert_eq!(check_target("/administrator"), Ok("/administrator"));
        assert_eq!(check_target("/x/admin"), Ok("/x/admin"));
        assert_eq!(
            check_target("/v2/models/repository/infer"),
            Ok("/v2/models/repository/infer")
        );
        assert_eq!(check_target("/x/v2/repository"), Ok("/x/v2/repository"));
        assert_eq!(check_target("/v2/repositoryx"), Ok("/v2/repositoryx"));
        assert_eq!(check_target("/100%25"), Ok("/100%25"));
        for private in [
            "/admin",
            "/admin/",
            "/admin/reload",
            "/ADMIN/reload",
            "/Admin;x/reload",
            "//admin/reload",
            "/%61dmin/reload",
            "/%2561dmin/reload",
            "/%2Fadmin/reload",
            "http://h/admin/reload",
            "https://h//admin?x",
            "/v2/repository/index",
            "/v2/repository/models/m/load",
            "//v2//repository/models/m/unload",
            "/V2/Repository/index",
            "/v2/%72epository/index",
            "/v2;x/repository;y/index",
        ] {
            assert_eq!(check_target(private), Err(Refused::Private), "{private}");
        }
        for bad in [
            "*",
            "h:443",
            "admin/reload",
            "ftp://h/x",
            "http://",
            "http:///x",
            "http://u@h/x",
            "http://h?x",
            "/./admin/reload",
            "/x/../admin/reload",
            "/x/..",
            "/%2e%2e/admin",
            "/x/%2E/y",
            "/x/%252e%252e/y",
            "/a\\..\\admin",
            "/a%5cb",
            "/a%zz",
            "/a%0d%0ab",
            "/a%00",
            "/a#b",
            "/é",
        ] {
            assert_eq!(check_target(bad), Err(Refused::Bad), "{bad}");
        }
    }

    fn scan(parts: &[&[u8]]) -> Result<Option<(usize, usize)>, ()> {
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
        let body = b"5\r\nhello\r\n1a;ext=1;b; c = \"q\\\"\" \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\nNEXT";
        assert_eq!(scan(&[body]), Ok(Some((0, body.len() - 4))));
        let parts: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(scan(&parts), Ok(Some((body.len() - 5, 1))));
        let body = b"3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n";
        assert_eq!(scan(&[body]), Ok(Some((0, body.len()))));
        assert_eq!(scan(&[b"3\r\nab"]), Ok(None));
        assert_eq!(scan(&[b"ffffffffffffffff\r\n"]), Ok(None));
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"0x3\r\nabc\r\n0\r\n\r\n",
            b"+3\r\nabc\r\n",
            b"-3\r\nabc\r\n",
            b" 3\r\nabc\r\n",
            b"3 x\r\nabc\r\n",
            b"3\nabc\r\n",
            b"3\r\nabc\n0\r\n\r\n",
            b"3\r\nabcd\r\n",
            b"3\rabc\r\n",
            b"10000000000000000\r\n",
            b"3;\r\nabc\r\n",
            b"3;a=\r\nabc\r\n",
            b"3;a=\"x\r\nabc\r\n",
            b"3;a b\r\nabc\r\n",
            b"3;a=b c\r\nabc\r\n",
            b"3;a\0\r\nabc\r\n",
            b"0\r\n\n",
            b"0\r\nx-t: 1\n\r\n",
            b"0\r\n x-t: 1\r\n\r\n",
            b"0\r\nx-t : 1\r\n\r\n",
            b"0\r\nx-t: \0\r\n\r\n",
        ] {
            assert_eq!(scan(&[bad]), Err(()), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = format!("1;{}\r\n", "a".repeat(5000));
        assert_eq!(scan(&[long.as_bytes()]), Err(()));
    }
}
