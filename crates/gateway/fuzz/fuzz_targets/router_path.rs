//! A `Router`'s routing of request targets (`hoist_gateway::fuzzing::route`, models
//! `a` and `b`): never panics; a refusal or the router's own answer is a 4xx or a
//! 503; what a model's gateway gets is the checked target or a suffix of it that
//! passes the same checks on its own, and the model is one the target names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    match hoist_gateway::fuzzing::route(target) {
        Ok((model, forwarded)) => {
            assert!(target.ends_with(&forwarded), "{target:?} -> {forwarded:?}");
            assert!(
                hoist_gateway::fuzzing::route(&forwarded).is_err()
                    || !forwarded.starts_with("/models/"),
                "{forwarded:?} would be routed again"
            );
            assert!(
                hoist_gateway::fuzzing::parse_head(
                    format!("GET {forwarded} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()
                ) == 0,
                "{forwarded:?} fails the checks"
            );
            assert!(target.contains(&format!("/models/{model}")), "{target:?}");
        }
        Err(status) => assert!((400..500).contains(&status) || status == 503, "{status}"),
    }
});
