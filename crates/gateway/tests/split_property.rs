//! Property: the fast path (httparse headers) and the hyper path (`http::HeaderMap`)
//! make the same split decision for any header list.

use hoist_gateway::fuzz_split::{NAMES, Outcome, VALUES, same_decision};
use proptest::prelude::*;

/// A header name: one of the names that matter (force, sticky, cookie) or an
/// ordinary one, each in a random ASCII case; sometimes an arbitrary token.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (prop::sample::select(NAMES), prop::collection::vec(any::<bool>(), 32)).prop_map(
            |(n, upper)| n
                .bytes()
                .zip(upper)
                .map(|(b, u)| if u { b.to_ascii_uppercase() } else { b.to_ascii_lowercase() })
                .collect()
        ),
        1 => "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,12}".prop_map(String::into_bytes),
    ]
}

/// A value every HTTP/1.1 parser here accepts: tab, visible ASCII, space, and
/// obs-text (0x80..=0xff, not UTF-8), around the values that matter.
fn value() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        Just(b'\t'),
        0x20u8..0x7f,
        0x80u8..=0xff,
        prop::sample::select(&b"=;\" candidatestableuid"[..]),
    ];
    prop_oneof![
        2 => prop::sample::select(VALUES).prop_map(<[u8]>::to_vec),
        2 => prop::collection::vec(byte, 0..24),
        1 => (prop::sample::select(VALUES), "[ \t]{0,2}", "[ \t]{0,2}").prop_map(|(v, a, b)| {
            [a.as_bytes(), v, b.as_bytes()].concat()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn both_paths_decide_the_same(
        present in (any::<bool>(), any::<bool>()),
        headers in prop::collection::vec((name(), value()), 0..12),
    ) {
        let got = same_decision([present.0, present.1], &headers);
        // Every generated head is one both parsers read: the property is never vacuous.
        prop_assert!(matches!(got, Ok(Some(_))), "{got:?} for {headers:?}");
    }
}

#[test]
fn the_edge_cases_decide_as_documented() {
    let h = |pairs: &[(&str, &[u8])]| -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec()))
            .collect()
    };
    let decide =
        |present, pairs: &[(&str, &[u8])]| same_decision(present, &h(pairs)).unwrap().unwrap();
    use hoist_gateway::Variant::*;
    assert_eq!(
        decide([true, true], &[("X-HOIST-variant", b" candidate ")]),
        Outcome::Forced(Candidate)
    );
    assert_eq!(
        decide([true, false], &[("x-hoist-variant", b"candidate")]),
        Outcome::Counter
    );
    assert_eq!(
        decide(
            [true, true],
            &[
                ("x-hoist-variant", b"candidate"),
                ("x-hoist-variant", b"candidate")
            ]
        ),
        Outcome::Counter,
        "two force lines are ambiguous"
    );
    assert!(matches!(
        decide(
            [true, true],
            &[("cookie", b"a=1"), ("COOKIE", b"uid=\"\xff\"")]
        ),
        Outcome::Sticky(_)
    ));
    assert_eq!(
        decide([true, true], &[("cookie", b"UID=x; uid=")]),
        Outcome::Counter
    );
}
