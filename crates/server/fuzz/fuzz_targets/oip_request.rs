//! Open Inference Protocol request bodies: the JSON header, the binary tensor
//! extension and the tensors they make. Input: an optional first line `H:<value>`
//! (the `Inference-Header-Content-Length` header, any bytes), then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.strip_prefix(b"H:") {
        Some(rest) => match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (Some(rest), &[][..]),
        },
        None => (None, data),
    };
    hoist_server::fuzzing::oip_request(header, body);
});
