//! A version's files from the registry, verified by digest, and the HTTP client of
//! gates, smoke tests and metrics.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hoist_registry::Registry;

/// Fetch a version's files from the registry and verify their digest: `(digest, dir)`.
pub async fn fetch(
    registry: Arc<dyn Registry>,
    model: String,
    version: String,
) -> Result<(String, PathBuf), String> {
    tokio::task::spawn_blocking(move || {
        let v = registry
            .get_version(&model, &version)
            .map_err(|e| e.to_string())?;
        let f = registry.fetch(&v).map_err(|e| e.to_string())?;
        Ok((f.digest, f.dir))
    })
    .await
    .map_err(|e| format!("fetch task failed: {e}"))?
}

/// The HTTP client of gates, smoke tests and metrics.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}
