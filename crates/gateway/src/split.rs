//! The traffic split: which variant serves a request.
//!
//! One pure function, [`SplitRules::decide`], owns the rules. It reads the request's
//! header fields as `(name, value)` byte pairs, so the hyper path (an
//! `http::HeaderMap`) and the fast path (`httparse` headers) decide through the
//! very same code and cannot drift apart.
//!
//! # Order of precedence
//! 1. The force header (`x-hoist-variant: stable|candidate` by default), when it
//!    names a variant that has an upstream. A forced request is served by that
//!    variant but is counted apart from the split's traffic (see
//!    [`crate::metrics::ForcedStats`]): it never reaches the numbers a release is
//!    judged on.
//! 2. The sticky key: the sticky header's value, else the sticky cookie's value.
//!    `keyed_hash(key) % 100 < candidate_weight` ⇒ candidate, so one key keeps its
//!    variant while the weight stays, and moves only one way as the weight grows.
//!    The hash is keyed with a secret drawn at random when the gateway is created:
//!    a client cannot compute offline which keys land on the candidate, and a
//!    key's bucket is stable for the gateway's lifetime (not across restarts).
//! 3. The exact split: request `n` of the split goes to the candidate iff
//!    `(n * 61) % 100 < candidate_weight`. 61 is coprime to 100, so any 100
//!    consecutive requests carry exactly `candidate_weight` candidate requests, spread
//!    out rather than in a burst.
//!
//! The chosen variant falls back to the other one when it has no upstream.
//!
//! # Reading the headers, exactly
//! Both paths give the same answer for any header list, because only these rules
//! apply (a property test and a fuzz target check it):
//! - Header names compare ASCII case-insensitively; values are bytes (non-UTF-8
//!   bytes are fine) with leading and trailing spaces and tabs removed.
//! - The force header is honoured only when it comes in exactly one field line
//!   whose value is `stable` or `candidate` (any ASCII case). Two or more force
//!   lines are ambiguous (even if they agree): the request is split as if it had
//!   none. A value that names no variant, or a variant without upstream, is ignored
//!   the same way.
//! - The sticky key is the value of the *first* sticky header line; an empty value
//!   means no key from the header (the cookie is tried next).
//! - The cookie is looked for in every `Cookie` line in order, each split at `;`;
//!   the first pair whose name is exactly the sticky cookie's name (cookie names are
//!   case-sensitive) and whose value is not empty wins. One pair of surrounding
//!   double quotes is removed from the value (`uid="alice"` is `alice`).

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;

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
    /// Set when these servers serve several models (a shared `hoist-server`, see
    /// `[server] pack`): the name they know this model by. A request on a path that
    /// names no model (`/invocations`) is then sent as `/models/{name}/invocations`;
    /// `/v2/models/{name}/...` paths name it already.
    pub model: Option<String>,
}

/// What the gateway routes to. Swapped atomically by [`crate::Gateway::set_routes`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Routes {
    /// What serves now; `None` before the first deployment.
    pub stable: Option<Upstream>,
    /// What is being brought in; `None` outside a release.
    pub candidate: Option<Upstream>,
    /// Percent of traffic (0..=100) the candidate gets. [`Routes::validate`] refuses
    /// more than 100, or a weight without a candidate.
    pub candidate_weight: u32,
    /// Percent of the requests stable answers that are sent again to the candidate
    /// and compared (a shadow step); 0 mirrors nothing.
    pub shadow_percent: u32,
    /// Remember each answer's predicted classes by request id, for `POST /feedback`.
    pub feedback: bool,
    /// Read each variant's live answers for a regressor's values (one number per
    /// row): their sums and the latest of them ([`crate::LiveValues`]), so the
    /// candidate's values can be compared with stable's on live traffic. Only
    /// while a candidate takes a share of the traffic.
    pub values: bool,
}

/// How the split should decide one request, from its headers alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The force header named this variant: served by it, counted apart.
    Forced(Variant),
    /// The sticky key hashed to this bucket (0..100).
    Sticky(u32),
    /// Neither: take the next number of the exact split.
    Counter,
}

/// The split's configuration, resolved once per gateway: which header forces a
/// variant, which header or cookie carries the sticky key, and the secret that keys
/// the sticky hash.
#[derive(Clone, Debug)]
pub(crate) struct SplitRules {
    /// The force header's name, lowercase.
    force: Box<[u8]>,
    /// The sticky header's name, lowercase.
    sticky_header: Option<Box<[u8]>>,
    /// The sticky cookie's name, as configured (cookie names are case-sensitive).
    sticky_cookie: Option<Box<[u8]>>,
    /// Keys the sticky hash; random per gateway.
    salt: RandomState,
}

impl SplitRules {
    /// Rules for these header names, with a fresh random salt (from the OS, through
    /// std's `RandomState`: SipHash with a random 128-bit key).
    pub(crate) fn new(
        force: &str,
        sticky_header: Option<&str>,
        sticky_cookie: Option<&str>,
    ) -> Self {
        SplitRules {
            force: force.to_ascii_lowercase().into_bytes().into(),
            sticky_header: sticky_header.map(|h| h.to_ascii_lowercase().into_bytes().into()),
            sticky_cookie: sticky_cookie.map(|c| c.as_bytes().into()),
            salt: RandomState::new(),
        }
    }

    /// The one decision, over any header list given as `(name, value)` byte pairs in
    /// the order they came (see the module docs for the exact rules). `present` says
    /// which variants have an upstream: a force header naming a missing one is
    /// ignored.
    pub(crate) fn decide<'h, I>(&self, headers: I, present: impl Fn(Variant) -> bool) -> Decision
    where
        I: IntoIterator<Item = (&'h [u8], &'h [u8])>,
    {
        let mut force_lines = 0u32;
        let mut forced = None;
        let mut sticky: Option<&[u8]> = None;
        let mut sticky_seen = false;
        let mut cookie: Option<&[u8]> = None;
        for (name, value) in headers {
            if name.eq_ignore_ascii_case(&self.force) {
                force_lines += 1;
                forced = Variant::parse(trim_ows(value));
            }
            if let Some(h) = &self.sticky_header
                && !sticky_seen
                && name.eq_ignore_ascii_case(h)
            {
                sticky_seen = true;
                let v = trim_ows(value);
                sticky = (!v.is_empty()).then_some(v);
            }
            if let Some(c) = &self.sticky_cookie
                && cookie.is_none()
                && name.eq_ignore_ascii_case(b"cookie")
            {
                cookie = cookie_value(value, c);
            }
        }
        if force_lines == 1
            && let Some(v) = forced
            && present(v)
        {
            return Decision::Forced(v);
        }
        match sticky.or(cookie) {
            Some(key) => Decision::Sticky(self.bucket(key)),
            None => Decision::Counter,
        }
    }

    /// [`SplitRules::decide`] over the hyper path's headers.
    pub(crate) fn decide_map(
        &self,
        headers: &http::HeaderMap,
        present: impl Fn(Variant) -> bool,
    ) -> Decision {
        self.decide(
            headers
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
            present,
        )
    }

    /// [`SplitRules::decide`] over the fast path's headers.
    pub(crate) fn decide_raw(
        &self,
        headers: &[httparse::Header<'_>],
        present: impl Fn(Variant) -> bool,
    ) -> Decision {
        self.decide(
            headers.iter().map(|h| (h.name.as_bytes(), h.value)),
            present,
        )
    }

    /// The bucket (0..100) of a sticky key: stable for this gateway's lifetime,
    /// unpredictable without its salt.
    pub(crate) fn bucket(&self, key: &[u8]) -> u32 {
        (self.salt.hash_one(key) % 100) as u32
    }
}

/// Whether the `n`-th request of the exact split goes to the candidate.
pub(crate) fn counter_picks_candidate(n: u64, weight: u32) -> bool {
    ((n % 100) * 61 % 100) < u64::from(weight)
}

/// `value` without leading and trailing spaces and tabs (HTTP's OWS).
fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// The value of cookie `name` in one `Cookie` header (`a=1; b=2`), if non-empty.
fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = trim_ows(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (k, v) = (trim_ows(&pair[..eq]), trim_ows(&pair[eq + 1..]));
        let v = v
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(v);
        (k == name && !v.is_empty()).then_some(v)
    })
}

/// Why a [`Routes`] cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoutesError {
    /// `candidate_weight` over 100.
    WeightOver100(u32),
    /// `shadow_percent` over 100.
    ShadowOver100(u32),
    /// A candidate weight (or shadow share) without a candidate upstream.
    NoCandidate { weight: u32, shadow: u32 },
    /// A shadow share without a stable upstream to mirror from.
    ShadowWithoutStable(u32),
    /// An upstream without any address.
    NoAddresses(Variant),
    /// A version that cannot be sent as the `x-hoist-version` header.
    InvalidVersion(Variant, String),
}

impl fmt::Display for RoutesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutesError::WeightOver100(w) => {
                write!(f, "candidate weight {w}% is over 100%")
            }
            RoutesError::ShadowOver100(s) => write!(f, "shadow share {s}% is over 100%"),
            RoutesError::NoCandidate { weight, shadow } => write!(
                f,
                "candidate weight {weight}% and shadow share {shadow}% need a candidate upstream, and there is none"
            ),
            RoutesError::ShadowWithoutStable(s) => write!(
                f,
                "shadow share {s}% mirrors stable's requests, and there is no stable upstream"
            ),
            RoutesError::NoAddresses(v) => write!(f, "the {v} upstream has no address"),
            RoutesError::InvalidVersion(v, ver) => write!(
                f,
                "the {v} upstream's version {ver:?} is not a valid header value"
            ),
        }
    }
}

impl std::error::Error for RoutesError {}

impl Routes {
    /// Checks that the routes mean what they say: weights and shares within
    /// 0..=100, no weight or shadow share without the upstream it needs, every
    /// upstream with at least one address and a version that can be sent as a
    /// header. [`crate::Gateway::try_set_routes`] refuses routes that fail this.
    pub fn validate(&self) -> Result<(), RoutesError> {
        if self.candidate_weight > 100 {
            return Err(RoutesError::WeightOver100(self.candidate_weight));
        }
        if self.shadow_percent > 100 {
            return Err(RoutesError::ShadowOver100(self.shadow_percent));
        }
        if self.candidate.is_none() && (self.candidate_weight > 0 || self.shadow_percent > 0) {
            return Err(RoutesError::NoCandidate {
                weight: self.candidate_weight,
                shadow: self.shadow_percent,
            });
        }
        if self.stable.is_none() && self.shadow_percent > 0 {
            return Err(RoutesError::ShadowWithoutStable(self.shadow_percent));
        }
        for (v, up) in [
            (Variant::Stable, &self.stable),
            (Variant::Candidate, &self.candidate),
        ] {
            let Some(up) = up else { continue };
            if up.addrs.is_empty() {
                return Err(RoutesError::NoAddresses(v));
            }
            if http::HeaderValue::from_str(&up.version).is_err() {
                return Err(RoutesError::InvalidVersion(v, up.version.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderName};

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

    fn rules() -> SplitRules {
        SplitRules::new("x-hoist-variant", Some("x-user-id"), Some("uid"))
    }

    /// Decides `pairs` on both paths; they must agree.
    fn both(r: &SplitRules, pairs: &[(&str, &str)], present: fn(Variant) -> bool) -> Decision {
        let map = r.decide_map(&headers(pairs), present);
        let raw: Vec<httparse::Header<'_>> = pairs
            .iter()
            .map(|(k, v)| httparse::Header {
                name: k,
                value: v.as_bytes(),
            })
            .collect();
        assert_eq!(map, r.decide_raw(&raw, present), "{pairs:?}");
        map
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
        let r = rules();
        let pairs = [("X-Hoist-Variant", " Candidate\t"), ("x-user-id", "u1")];
        assert_eq!(
            both(&r, &pairs, |_| true),
            Decision::Forced(Variant::Candidate)
        );
        assert_eq!(
            both(&r, &pairs, |v| v == Variant::Stable),
            Decision::Sticky(r.bucket(b"u1"))
        );
        assert_eq!(
            both(&r, &[("x-hoist-variant", "blue")], |_| true),
            Decision::Counter
        );
        assert_eq!(
            both(&r, &[("x-hoist-variant", "")], |_| true),
            Decision::Counter
        );
    }

    #[test]
    fn repeated_force_headers_are_ambiguous_and_ignored() {
        let r = rules();
        for pairs in [
            &[
                ("x-hoist-variant", "candidate"),
                ("x-hoist-variant", "stable"),
            ][..],
            &[
                ("x-hoist-variant", "candidate"),
                ("X-HOIST-VARIANT", "candidate"),
            ],
            &[("x-hoist-variant", "candidate"), ("x-hoist-variant", "")],
        ] {
            assert_eq!(both(&r, pairs, |_| true), Decision::Counter, "{pairs:?}");
        }
        let pairs = [
            ("x-hoist-variant", "stable"),
            ("x-user-id", "u9"),
            ("x-hoist-variant", "stable"),
        ];
        assert_eq!(
            both(&r, &pairs, |_| true),
            Decision::Sticky(r.bucket(b"u9"))
        );
        // A list in one line names no variant either.
        assert_eq!(
            both(&r, &[("x-hoist-variant", "candidate, candidate")], |_| true),
            Decision::Counter
        );
    }

    #[test]
    fn sticky_header_then_cookie() {
        let r = rules();
        assert_eq!(
            both(&r, &[("cookie", "a=1; uid=\"alice\"; b=2")], |_| true),
            Decision::Sticky(r.bucket(b"alice"))
        );
        assert_eq!(
            both(&r, &[("cookie", "a=1"), ("Cookie", "uid=bob")], |_| true),
            Decision::Sticky(r.bucket(b"bob"))
        );
        assert_eq!(
            both(&r, &[("cookie", "uid=bob"), ("x-user-id", "carol")], |_| {
                true
            }),
            Decision::Sticky(r.bucket(b"carol"))
        );
        assert_eq!(
            both(
                &r,
                &[("cookie", "uidx=bob; uid=; UID=dan; uid=\"\"")],
                |_| true
            ),
            Decision::Counter
        );
        // The first sticky header line counts; an empty one gives way to the cookie.
        assert_eq!(
            both(
                &r,
                &[("x-user-id", " erin "), ("x-user-id", "frank")],
                |_| true
            ),
            Decision::Sticky(r.bucket(b"erin"))
        );
        assert_eq!(
            both(
                &r,
                &[
                    ("x-user-id", " "),
                    ("x-user-id", "frank"),
                    ("cookie", "uid=gus")
                ],
                |_| true
            ),
            Decision::Sticky(r.bucket(b"gus"))
        );
        // The first non-empty value of the cookie wins, across lines.
        assert_eq!(
            both(
                &r,
                &[("cookie", "uid=; uid=hal"), ("cookie", "uid=ian")],
                |_| true
            ),
            Decision::Sticky(r.bucket(b"hal"))
        );
    }

    #[test]
    fn non_utf8_values_are_keys_like_any_other() {
        let r = rules();
        let mut map = HeaderMap::new();
        map.append(
            "x-user-id",
            http::HeaderValue::from_bytes(b"\xff\xfeid").unwrap(),
        );
        let raw = [httparse::Header {
            name: "X-User-Id",
            value: b"\xff\xfeid",
        }];
        let want = Decision::Sticky(r.bucket(b"\xff\xfeid"));
        assert_eq!(r.decide_map(&map, |_| true), want);
        assert_eq!(r.decide_raw(&raw, |_| true), want);
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        let r = rules();
        assert_eq!(r.bucket(b"alice"), r.bucket(b"alice"));
        let mut seen = [0u32; 100];
        for i in 0..10_000 {
            seen[r.bucket(format!("user-{i}").as_bytes()) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50 && n < 150), "{seen:?}");
    }

    #[test]
    fn buckets_are_salted_per_gateway() {
        let (a, b) = (rules(), rules());
        let keys: Vec<String> = (0..64).map(|i| format!("user-{i}")).collect();
        let of = |r: &SplitRules| {
            keys.iter()
                .map(|k| r.bucket(k.as_bytes()))
                .collect::<Vec<_>>()
        };
        assert_eq!(of(&a), of(&a));
        assert_ne!(of(&a), of(&b), "two gateways share no bucket layout");
    }

    #[test]
    fn routes_are_validated() {
        let up = |v: &str| Upstream {
            version: v.into(),
            model: None,
            addrs: vec!["127.0.0.1:1".parse().unwrap()],
        };
        let ok = Routes {
            stable: Some(up("1")),
            candidate: Some(up("2")),
            candidate_weight: 100,
            shadow_percent: 100,
            feedback: true,
            values: true,
        };
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(Routes::default().validate(), Ok(()));
        let bad = |f: fn(&mut Routes)| {
            let mut r = ok.clone();
            f(&mut r);
            r.validate().unwrap_err()
        };
        assert_eq!(
            bad(|r| r.candidate_weight = 101),
            RoutesError::WeightOver100(101)
        );
        assert_eq!(
            bad(|r| r.shadow_percent = 250),
            RoutesError::ShadowOver100(250)
        );
        assert_eq!(
            bad(|r| r.candidate = None),
            RoutesError::NoCandidate {
                weight: 100,
                shadow: 100
            }
        );
        assert_eq!(
            bad(|r| r.stable = None),
            RoutesError::ShadowWithoutStable(100)
        );
        assert_eq!(
            bad(|r| r.candidate.as_mut().unwrap().addrs.clear()),
            RoutesError::NoAddresses(Variant::Candidate)
        );
        let e = bad(|r| r.stable.as_mut().unwrap().version = "1\n2".into());
        assert_eq!(
            e,
            RoutesError::InvalidVersion(Variant::Stable, "1\n2".into())
        );
        assert!(e.to_string().contains("stable upstream's version"), "{e}");
    }
}
