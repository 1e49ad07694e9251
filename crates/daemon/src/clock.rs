//! The engine's clock: what "now" is when an event is stepped and a timer is set.
//!
//! In production it is the wall clock (milliseconds since the epoch, journaled in
//! `until_ms`, so a pause survives a restart). Tests inject [`TokioClock`], which
//! follows Tokio's time: with paused time (`tokio::time::pause`) the engine can be
//! stepped deterministically, timers firing as the runtime auto-advances.

/// Milliseconds since the epoch, as the engine sees them.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// A clock that follows Tokio's (pausable) time from a fixed start.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    /// The milliseconds this clock reads at `start`.
    base_ms: u64,
    /// When it read `base_ms`, in Tokio's time.
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new(base_ms: u64) -> TokioClock {
        TokioClock {
            base_ms,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.base_ms + self.start.elapsed().as_millis() as u64
    }
}

/// The wall clock in milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
