//! Progress lines for people watching the daemon (its log and `hoist up`'s output).

use hoist_release::machine::ReleaseId;
use tokio::sync::broadcast;

use crate::clock::now_ms;
use crate::views::LogLine;

/// Tell people watching the daemon.
pub fn say(log: &broadcast::Sender<LogLine>, release: Option<ReleaseId>, message: String) {
    tracing::info!("{message}");
    let _ = log.send(LogLine {
        at_ms: now_ms(),
        release,
        message,
    });
}
