//! Waiting for a condition instead of sleeping for a guessed time.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// The pause after the n-th failed check: 5 ms, doubling up to 100 ms.
fn pause(n: u32) -> Duration {
    Duration::from_millis(5u64 << n.min(5)).min(Duration::from_millis(100))
}

/// Checks `f` until it gives `Some` or `timeout` has passed (then `None`; `f` is checked
/// at least once, and once more at the deadline).
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    let mut n = 0;
    loop {
        if let Some(x) = f() {
            return Some(x);
        }
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return None;
        }
        std::thread::sleep(pause(n).min(left));
        n += 1;
    }
}

/// Waits until `f` gives `Some` and returns it; panics naming `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: impl Display, f: impl FnMut() -> Option<T>) -> T {
    poll(timeout, f).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Waits until `cond` holds; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: impl Display, mut cond: impl FnMut() -> bool) {
    wait_for(timeout, what, || cond().then_some(()))
}

/// [`poll`] for async tests: sleeps with tokio between checks.
pub async fn poll_async<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    let mut n = 0;
    loop {
        if let Some(x) = f() {
            return Some(x);
        }
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return None;
        }
        tokio::time::sleep(pause(n).min(left)).await;
        n += 1;
    }
}

/// [`wait_until`] for async tests: sleeps with tokio between checks.
pub async fn wait_until_async(
    timeout: Duration,
    what: impl Display,
    mut cond: impl FnMut() -> bool,
) {
    if poll_async(timeout, || cond().then_some(())).await.is_none() {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_returns_once_the_condition_holds() {
        let mut n = 0;
        wait_until(Duration::from_secs(5), "the third check", || {
            n += 1;
            n == 3
        });
        assert_eq!(n, 3);
    }

    #[test]
    #[should_panic(expected = "waiting for the sky to fall")]
    fn wait_until_names_what_it_waited_for() {
        wait_until(Duration::from_millis(30), "the sky to fall", || false);
    }

    #[test]
    fn poll_gives_none_after_the_timeout() {
        let start = Instant::now();
        assert_eq!(poll(Duration::from_millis(30), || None::<()>), None);
        assert!(start.elapsed() >= Duration::from_millis(30));
    }
}
