//! What the split's property test and fuzz target need, and nothing else: not a
//! public API (hidden from the docs, may change at any time).
//!
//! [`same_decision`] writes a header list as a request head, parses it with
//! `httparse` as the fast path does, builds the `http::HeaderMap` hyper would build
//! from it, and asks [`SplitRules::decide`] through both representations.

use crate::split::{Decision, SplitRules, Variant};

/// A header list: `(name, value)` as sent, in order.
pub type Headers = Vec<(Vec<u8>, Vec<u8>)>;

/// Header names the inputs pick from: the force, sticky and cookie names (in mixed
/// case), near misses, and ordinary headers.
pub const NAMES: &[&str] = &[
    "x-hoist-variant",
    "X-Hoist-Variant",
    "X-HOIST-VARIANT",
    "x-user-id",
    "X-User-ID",
    "cookie",
    "Cookie",
    "COOKIE",
    "x-hoist-variants",
    "x-user",
    "cookies",
    "content-type",
    "host",
];

/// Values the inputs pick from, besides arbitrary bytes.
pub const VALUES: &[&[u8]] = &[
    b"candidate",
    b"stable",
    b"Candidate",
    b" CANDIDATE\t",
    b"stable ",
    b"",
    b" ",
    b"candidate, stable",
    b"uid=alice",
    b"a=1; uid=\"bob\"; b=2",
    b"uid=; uid=carol",
    b"uid=\"\"",
    b"UID=dan",
    b"uid",
    b"=",
    b";;",
    b"\"",
    b"\xff\xfe",
];

/// The decision of one representation, comparable across gateways: a sticky bucket
/// depends on the gateway's salt, so it is compared as the key's bucket under the
/// same rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Forced(Variant),
    Sticky(u32),
    Counter,
}

impl From<Decision> for Outcome {
    fn from(d: Decision) -> Outcome {
        match d {
            Decision::Forced(v) => Outcome::Forced(v),
            Decision::Sticky(b) => Outcome::Sticky(b),
            Decision::Counter => Outcome::Counter,
        }
    }
}

/// Decides `headers` (names and values as sent) on both paths, with the sticky
/// header `x-user-id` and cookie `uid` configured, and with neither; `present`
/// says whether stable and candidate have an upstream. `Ok(None)` when the head is
/// not a request the gateway would read (httparse or `http` refuse a name or
/// value); `Ok(Some(outcome))` when both paths agree (the outcome with stickiness
/// configured); `Err` describing the difference otherwise.
pub fn same_decision(
    present: [bool; 2],
    headers: &[(Vec<u8>, Vec<u8>)],
) -> Result<Option<Outcome>, String> {
    let mut head = b"POST /invocations HTTP/1.1\r\n".to_vec();
    for (name, value) in headers {
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let mut parsed = vec![httparse::EMPTY_HEADER; headers.len() + 1];
    let mut req = httparse::Request::new(&mut parsed);
    match req.parse(&head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return Ok(None),
    }
    let raw = req.headers;
    let mut map = http::HeaderMap::new();
    for h in raw.iter() {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) else {
            return Ok(None);
        };
        map.append(name, value);
    }
    let present = |v: Variant| match v {
        Variant::Stable => present[0],
        Variant::Candidate => present[1],
    };
    let mut outcome = None;
    for rules in [
        SplitRules::new("x-hoist-variant", Some("x-user-id"), Some("uid")),
        SplitRules::new("X-Hoist-Variant", None, None),
    ] {
        let fast = Outcome::from(rules.decide_raw(raw, present));
        let hyper = Outcome::from(rules.decide_map(&map, present));
        if fast != hyper {
            return Err(format!(
                "fast path {fast:?}, hyper path {hyper:?} for {:?}",
                String::from_utf8_lossy(&head)
            ));
        }
        outcome.get_or_insert(fast);
    }
    Ok(outcome)
}

/// Reads a header list out of fuzzer bytes: the first byte says which variants
/// have an upstream; then records of a name selector byte (an index into
/// [`NAMES`], or with the top bit set a name of the following length byte's
/// bytes), a value selector byte (an index into [`VALUES`], or with the top bit
/// set a value of the following length byte's bytes).
pub fn input(data: &[u8]) -> ([bool; 2], Headers) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return ([true, true], Vec::new());
    };
    let present = [flags & 1 == 0, flags & 2 == 0];
    let take = |table_len: usize, rest: &mut &[u8]| -> Option<Result<usize, Vec<u8>>> {
        let (&sel, r) = rest.split_first()?;
        *rest = r;
        if sel & 0x80 == 0 {
            return Some(Ok(sel as usize % table_len));
        }
        let (&len, r) = rest.split_first().unwrap_or((&0, &[]));
        let len = (len as usize).min(r.len());
        let (bytes, r) = r.split_at(len);
        *rest = r;
        Some(Err(bytes.to_vec()))
    };
    let mut headers = Vec::new();
    while headers.len() < 64 {
        let Some(name) = take(NAMES.len(), &mut rest) else {
            break;
        };
        let value = take(VALUES.len(), &mut rest).unwrap_or(Ok(0));
        let name = name.map_or_else(|b| b, |i| NAMES[i].as_bytes().to_vec());
        let value = value.map_or_else(|b| b, |i| VALUES[i].to_vec());
        headers.push((name, value));
    }
    (present, headers)
}

/// The fuzz target's body: never panics except when the two paths disagree.
pub fn check(data: &[u8]) {
    let (present, headers) = input(data);
    if let Err(why) = same_decision(present, &headers) {
        panic!("{why}");
    }
}
