//! The fast path's request-head parsing and checks (`framing::parse_request`,
//! `check_target`, and the chunk scanner after a chunked head), and the guard that
//! applies them in front of hyper, on arbitrary bytes. They must never panic; a
//! refusal is always a 4xx; the guard gives hyper a prefix of what came, then at
//! most one refusal (bytes hyper answers with 400 or 431).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let status = hoist_gateway::fuzzing::parse_head(data);
    assert!(status == 0 || (400..500).contains(&status), "{status}");

    // The first bytes say how the stream is cut into reads.
    let (cuts, stream) = data.split_at(data.len().min(3));
    let out = hoist_gateway::fuzzing::guard_stream(stream, cuts);
    let poison_431 = {
        let mut p = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..101 {
            p.extend_from_slice(b"a: b\r\n");
        }
        p.extend_from_slice(b"\r\n");
        p
    };
    let passed = [&b"\x01 / HTTP/1.1\r\n\r\n"[..], &poison_431]
        .iter()
        .find_map(|p| out.strip_suffix(*p))
        .filter(|passed| stream.starts_with(passed));
    assert!(
        stream.starts_with(&out) || passed.is_some(),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
});
