//! A client of `hoist gateway`'s admin API: how the daemon drives hoist's gateway
//! on a cluster (`kubernetes.split = "hoist"`) and reads its counters.
//!
//! The daemon keeps the split it wants ([`Desired`]) and sends all of it on every
//! change, so one call sets weight, shadow, feedback and versions at once, and a
//! gateway that restarted (a new `instance`, back at 100% stable) is given the same
//! split again ([`GatewayAdmin::reassert`]). The token is read at each call
//! (`HOIST_ADMIN_TOKEN`, else the file `HOIST_ADMIN_TOKEN_FILE`: a mounted Secret
//! rotates in place).

use std::sync::Mutex;
use std::time::Duration;

use hoist_gateway::Snapshot;
use serde::{Deserialize, Serialize};

/// The split the daemon wants, as `PUT /admin/routes` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    pub candidate_weight: u32,
    pub shadow_percent: u32,
    pub feedback: bool,
    pub values: bool,
    pub stable_version: String,
    pub candidate_version: Option<String>,
}

/// One environment's gateway admin API.
pub struct GatewayAdmin {
    /// e.g. `http://fraud-gateway.hoist-production.svc:9090`.
    url: String,
    http: reqwest::Client,
    desired: Mutex<Desired>,
    /// The counters last read, and those when the current candidate arrived
    /// (`hoist status`'s windows).
    last: Mutex<Option<(String, Snapshot)>>,
    since: Mutex<Option<(String, Snapshot)>>,
}

fn token() -> Option<String> {
    if let Ok(t) = std::env::var("HOIST_ADMIN_TOKEN")
        && !t.trim().is_empty()
    {
        return Some(t.trim().to_string());
    }
    let path = std::env::var("HOIST_ADMIN_TOKEN_FILE").ok()?;
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

#[derive(Deserialize)]
struct SnapshotBody {
    instance: String,
    snapshot: Snapshot,
}

impl GatewayAdmin {
    /// `feedback` and `values` stay as configured for the environment's analysis.
    pub fn new(url: &str, stable_version: &str, feedback: bool, values: bool) -> GatewayAdmin {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        GatewayAdmin {
            url: url.trim_end_matches('/').to_string(),
            http,
            desired: Mutex::new(Desired {
                candidate_weight: 0,
                shadow_percent: 0,
                feedback,
                values,
                stable_version: stable_version.to_string(),
                candidate_version: None,
            }),
            last: Mutex::new(None),
            since: Mutex::new(None),
        }
    }

    /// Where the admin API is.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The split wanted now.
    pub fn desired(&self) -> Desired {
        self.desired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn request(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match token() {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Changes the wanted split with `f` and sends it; on failure the wanted split
    /// is kept (the next change or [`GatewayAdmin::reassert`] sends it again).
    pub async fn set(&self, f: impl FnOnce(&mut Desired)) -> Result<Desired, String> {
        let want = {
            let mut d = self.desired.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut d);
            d.clone()
        };
        self.put(&want).await?;
        Ok(want)
    }

    /// Sends the wanted split again (after the gateway restarted).
    pub async fn reassert(&self) -> Result<(), String> {
        self.put(&self.desired()).await
    }

    async fn put(&self, want: &Desired) -> Result<(), String> {
        let url = format!("{}/admin/routes", self.url);
        let r = self
            .request(self.http.put(&url).json(want))
            .send()
            .await
            .map_err(|e| format!("hoist's gateway at {url}: {e}"))?;
        if r.status().is_success() {
            return Ok(());
        }
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        Err(format!(
            "hoist's gateway at {url} answered {status}: {body}"
        ))
    }

    /// Every counter of the gateway and its `instance` (a new one after a restart).
    pub async fn snapshot(&self) -> Result<(String, Snapshot), String> {
        let url = format!("{}/admin/snapshot", self.url);
        let r = self
            .request(self.http.get(&url))
            .send()
            .await
            .map_err(|e| format!("hoist's gateway at {url}: {e}"))?;
        let status = r.status();
        if !status.is_success() {
            let body = r.text().await.unwrap_or_default();
            return Err(format!(
                "hoist's gateway at {url} answered {status}: {body}"
            ));
        }
        let b: SnapshotBody = r
            .json()
            .await
            .map_err(|e| format!("hoist's gateway at {url}: unreadable counters: {e}"))?;
        let got = (b.instance, b.snapshot);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(got.clone());
        Ok(got)
    }

    /// A candidate arrived: `hoist status` counts its window from the last counters.
    pub fn mark_candidate(&self) {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        *self.since.lock().unwrap_or_else(|p| p.into_inner()) = last;
    }

    /// The traffic since the candidate arrived, as last read (empty before any read).
    pub fn window(&self) -> Snapshot {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let since = self.since.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match (last, since) {
            (Some((i, l)), Some((j, s))) if i == j => l.since(&s),
            (Some((_, l)), _) => l,
            _ => Snapshot::default(),
        }
    }
}
