//! The traffic split: which variant serves a request.
//!
//! Pure functions over the request's headers and a counter, so the choice is tested
//! without sockets.
//!
//! # Order of precedence
//! 1. The force header (`x-hoist-variant: stable|candidate` by default), when it
//!    names a variant that has an upstream.
//! 2. The sticky key: the sticky header's value, else the sticky cookie's value.
//!    `fnv1a(key) % 100 < candidate_weight` ⇒ candidate, so one key keeps its
//!    variant while the weight stays, and moves only one way as the weight grows.
//! 3. The exact split: request `n` of the split goes to the candidate iff
//!    `(n * 61) % 100 < candidate_weight`. 61 is coprime to 100, so any 100
//!    consecutive requests carry exactly `candidate_weight` candidate requests, spread
//!    out rather than in a burst.
//!
//! The chosen variant falls back to the other one when it has no upstream.

use std::fmt;
use std::net::SocketAddr;

use http::HeaderMap;

/// One side of the split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// What serves now.
    Stable,
    /// What is being brought in (canary, green).
    Candidate,
}

impl Variant {
    /// `"stable"` or `"candidate"`: the metric label and the response header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Stable => "stable",
            Variant::Candidate => "candidate",
        }
    }

    /// The other side.
    pub fn other(self) -> Variant {
        match self {
            Variant::Stable => Variant::Candidate,
            Variant::Candidate => Variant::Stable,
        }
    }

    /// Parses `stable` / `candidate` (ASCII case-insensitive).
    pub fn parse(s: &[u8]) -> Option<Variant> {
        if s.eq_ignore_ascii_case(b"stable") {
            Some(Variant::Stable)
        } else if s.eq_ignore_ascii_case(b"candidate") {
            Some(Variant::Candidate)
        } else {
            None
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The model servers of one variant: one version, one or more replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// The model version these servers serve (sent back as `x-hoist-version`).
    pub version: String,
    /// Replicas, used round-robin.
    pub addrs: Vec<SocketAddr>,
}

/// What the gateway routes to. Swapped atomically by [`crate::Gateway::set_routes`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Routes {
    /// What serves now; `None` before the first deployment.
    pub stable: Option<Upstream>,
    /// What is being brought in; `None` outside a release.
    pub candidate: Option<Upstream>,
    /// Percent of traffic (0..=100) the candidate gets; larger values count as 100.
    pub candidate_weight: u32,
    /// Percent of the requests stable answers that are sent again to the candidate
    /// and compared (a shadow step); 0 mirrors nothing.
    pub shadow_percent: u32,
    /// Remember each answer's predicted classes by request id, for `POST /feedback`.
    pub feedback: bool,
}

/// How the split should decide one request, from its headers alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The force header named this variant.
    Forced(Variant),
    /// The sticky key hashed to this bucket (0..100).
    Sticky(u32),
    /// Neither: take the next number of the exact split.
    Counter,
}

/// Reads the force header and the sticky key. `present` says which variants have
/// an upstream: a force header naming a missing one is ignored.
pub(crate) fn decide(
    headers: &HeaderMap,
    force_header: &http::HeaderName,
    sticky_header: Option<&http::HeaderName>,
    sticky_cookie: Option<&str>,
    present: impl Fn(Variant) -> bool,
) -> Decision {
    if let Some(v) = headers
        .get(force_header)
        .and_then(|v| Variant::parse(v.as_bytes().trim_ascii()))
        && present(v)
    {
        return Decision::Forced(v);
    }
    if let Some(name) = sticky_header
        && let Some(value) = headers.get(name)
        && !value.is_empty()
    {
        return Decision::Sticky(bucket(value.as_bytes()));
    }
    if let Some(cookie) = sticky_cookie {
        for header in headers.get_all(http::header::COOKIE) {
            if let Some(value) = cookie_value(header.as_bytes(), cookie.as_bytes()) {
                return Decision::Sticky(bucket(value));
            }
        }
    }
    Decision::Counter
}

/// [`decide`] over a request head parsed by `httparse` (the fast path).
pub(crate) fn decide_raw(
    headers: &[httparse::Header<'_>],
    force_header: &str,
    sticky_header: Option<&str>,
    sticky_cookie: Option<&str>,
    present: impl Fn(Variant) -> bool,
) -> Decision {
    let first = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if let Some(v) = first(force_header).and_then(|v| Variant::parse(v.trim_ascii()))
        && present(v)
    {
        return Decision::Forced(v);
    }
    if let Some(name) = sticky_header
        && let Some(value) = first(name)
        && !value.is_empty()
    {
        return Decision::Sticky(bucket(value));
    }
    if let Some(cookie) = sticky_cookie {
        for h in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
        {
            if let Some(value) = cookie_value(h.value, cookie.as_bytes()) {
                return Decision::Sticky(bucket(value));
            }
        }
    }
    Decision::Counter
}

/// Whether the `n`-th request of the exact split goes to the candidate.
pub(crate) fn counter_picks_candidate(n: u64, weight: u32) -> bool {
    ((n % 100) * 61 % 100) < u64::from(weight)
}

/// The stable bucket (0..100) of a sticky key.
pub(crate) fn bucket(key: &[u8]) -> u32 {
    (fnv1a(key) % 100) as u32
}

/// FNV-1a, 64 bits: stable across processes and releases (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The value of cookie `name` in one `Cookie` header (`a=1; b=2`), if non-empty.
fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (k, v) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
        let v = v
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(v);
        (k == name && !v.is_empty()).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn any_hundred_consecutive_requests_carry_exactly_the_weight() {
        for weight in 0..=100 {
            for start in [0u64, 1, 37, 99, 12_345, u64::MAX - 250] {
                let n = (0..100)
                    .filter(|i| counter_picks_candidate(start.wrapping_add(*i), weight))
                    .count();
                // Near u64::MAX the window wraps; only check windows that do not.
                if start.checked_add(100).is_some() {
                    assert_eq!(n as u32, weight, "weight {weight} start {start}");
                }
            }
        }
    }

    #[test]
    fn the_split_spreads_the_candidate_requests_out() {
        // At 10% no two candidate requests are closer than 5 apart.
        let picks: Vec<u64> = (0..100)
            .filter(|&n| counter_picks_candidate(n, 10))
            .collect();
        assert_eq!(picks.len(), 10);
        assert!(picks.windows(2).all(|w| w[1] - w[0] >= 5), "{picks:?}");
    }

    #[test]
    fn force_header_wins_when_the_variant_exists() {
        let force = HeaderName::from_static("x-hoist-variant");
        let sticky = HeaderName::from_static("x-user-id");
        let h = headers(&[("x-hoist-variant", "Candidate"), ("x-user-id", "u1")]);
        assert_eq!(
            decide(&h, &force, Some(&sticky), None, |_| true),
            Decision::Forced(Variant::Candidate)
        );
        assert_eq!(
            decide(&h, &force, Some(&sticky), None, |v| v == Variant::Stable),
            Decision::Sticky(bucket(b"u1"))
        );
        let h = headers(&[("x-hoist-variant", "blue")]);
        assert_eq!(decide(&h, &force, None, None, |_| true), Decision::Counter);
    }

    #[test]
    fn sticky_header_then_cookie() {
        let force = HeaderName::from_static("x-hoist-variant");
        let sticky = HeaderName::from_static("x-user-id");
        let h = headers(&[("cookie", "a=1; uid=\"alice\"; b=2")]);
        assert_eq!(
            decide(&h, &force, Some(&sticky), Some("uid"), |_| true),
            Decision::Sticky(bucket(b"alice"))
        );
        let h = headers(&[("cookie", "a=1"), ("cookie", "uid=bob")]);
        assert_eq!(
            decide(&h, &force, Some(&sticky), Some("uid"), |_| true),
            Decision::Sticky(bucket(b"bob"))
        );
        let h = headers(&[("cookie", "uid=bob"), ("x-user-id", "carol")]);
        assert_eq!(
            decide(&h, &force, Some(&sticky), Some("uid"), |_| true),
            Decision::Sticky(bucket(b"carol"))
        );
        let h = headers(&[("cookie", "uidx=bob; uid=")]);
        assert_eq!(
            decide(&h, &force, Some(&sticky), Some("uid"), |_| true),
            Decision::Counter
        );
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket(b"alice"), bucket(b"alice"));
        let mut seen = [0u32; 100];
        for i in 0..10_000 {
            seen[bucket(format!("user-{i}").as_bytes()) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50 && n < 150), "{seen:?}");
    }
}
