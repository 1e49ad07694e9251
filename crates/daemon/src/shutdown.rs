//! The one shutdown signal every server the daemon starts listens to.

use tokio::sync::watch;

/// A future that completes once `stop` says so (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
