//! The split decision: for any header list, the fast path's httparse headers and
//! the hyper path's `HeaderMap` decide the same, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hoist_gateway::fuzz_split::check(data);
});
