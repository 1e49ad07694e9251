//! The fast path's request-head parsing and checks (`framing::parse_request`,
//! `check_target`, and the chunk scanner after a chunked head) on arbitrary bytes:
//! they must never panic, and a refusal is always a 4xx.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let status = hoist_gateway::fuzzing::parse_head(data);
    assert!(status == 0 || (400..500).contains(&status), "{status}");
});
