//! `[server] pack = true`: the models of one environment share hoist-server processes
//! instead of running one process per model version.
//!
//! # Design
//! Two shared servers per environment, *pack 0* and *pack 1*, each a supervised
//! `hoist-server --model-repository DIR` (`DIR` is `HOIST_HOME/daemon/packs/<env>/<i>`).
//! A model's stable version lives in one pack and its candidate in the other, so two
//! versions of one model are never in one process, and a promotion moves nothing:
//! the gateway's routes swap, and the old stable leaves its pack
//! [`RETIRE_AFTER`](super::local::RETIRE_AFTER) later.
//!
//! Loading model `m` at version `v` into a pack: `DIR/m` becomes a link to the
//! version's files (made beside it and renamed over it, so it is never half there),
//! then the server's `POST /admin/reload {"model": m, "path": DIR/m, "version": v}`
//! loads it; when the pack held `m` already, the new version is loaded beside the
//! old one and swapped in. Unloading is `POST /v2/repository/models/m/unload`, then
//! the link goes. A pack that crashes is restarted by its supervisor on the same port
//! with the same directory: it serves the same models again. Each pack has its own
//! admin token, made here and given to no one else.
//!
//! A pack's process starts with the first model loaded into it and lives until the
//! daemon stops.
//!
//! # Guarantees
//! - A pack's loads and unloads run one at a time.
//! - An unload scheduled for a model that was loaded into the same pack again since
//!   (a new candidate within the retire delay) does nothing.
//! - A failed load leaves the pack as it was: the model it held before (if any)
//!   keeps serving, and its link points to it again.
//!
//! # Must not
//! Decide which version is stable: the environment ([`super::local::LocalEnv`]) says
//! which pack to avoid.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hoist_targets::{ServerSpec, Status, Supervised};

use crate::views::ServerView;

/// A model version loaded in a pack.
#[derive(Debug, Clone)]
pub struct Packed {
    /// Which pack (0 or 1).
    pub pack: usize,
    /// The name the pack knows it by (the model's name).
    pub model: String,
    /// The pack's address.
    pub addr: SocketAddr,
    /// Its load, among the loads of this model into this pack.
    generation: u64,
}

/// An environment's two packs.
pub struct Packs {
    env: String,
    packs: [Pack; 2],
    /// What every pack's server is started with (program, flags, timeouts, log).
    template: ServerSpec,
    http: reqwest::Client,
}

struct Pack {
    index: usize,
    dir: PathBuf,
    token: String,
    /// Held across each load or unload: they run one at a time.
    ops: tokio::sync::Mutex<Held>,
    /// The server, once started (read for views without waiting on `ops`).
    server: Mutex<Option<Supervised>>,
}

/// What a pack holds: each model, its link's target and the generation of its load.
#[derive(Default)]
struct Held {
    models: BTreeMap<String, (PathBuf, u64)>,
    next: u64,
}

impl Packs {
    /// The packs of environment `env`, their directories under `dir` made empty.
    /// `template` gives the program, flags, ready timeout and log directory
    /// (`template.log_file`'s parent; each pack logs to `<env>-pack<i>.log`).
    pub fn new(
        env: &str,
        dir: &Path,
        template: ServerSpec,
        http: reqwest::Client,
    ) -> std::io::Result<Arc<Packs>> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        let pack = |index: usize| -> std::io::Result<Pack> {
            let d = dir.join(index.to_string());
            std::fs::create_dir_all(&d)?;
            Ok(Pack {
                index,
                dir: d,
                token: crate::run::random_token(),
                ops: tokio::sync::Mutex::new(Held::default()),
                server: Mutex::new(None),
            })
        };
        Ok(Arc::new(Packs {
            env: env.to_string(),
            packs: [pack(0)?, pack(1)?],
            template,
            http,
        }))
    }

    /// Loads `model` at `version` from `path` into a pack: the other one than
    /// `avoid` (where the model's other version is), else pack 0.
    pub async fn load(
        &self,
        avoid: Option<usize>,
        model: &str,
        version: &str,
        path: &Path,
    ) -> Result<Packed, String> {
        let pack = &self.packs[avoid.map_or(0, |i| 1 - i.min(1))];
        let mut held = pack.ops.lock().await;
        let addr = self.ensure_started(pack).await?;
        let link = pack.dir.join(model);
        let before = held.models.get(model).map(|(p, _)| p.clone());
        relink(&link, path).map_err(|e| format!("{}: {e}", link.display()))?;
        let body = serde_json::json!({
            "model": model,
            "path": link,
            "version": version,
        });
        let answer = self
            .http
            .post(format!("http://{addr}/admin/reload"))
            .header("x-admin-token", &pack.token)
            .json(&body)
            .timeout(self.template.ready_timeout)
            .send()
            .await;
        let failure = match answer {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                Some(format!("{status}: {}", error_of(&text)))
            }
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failure {
            // Back as it was: the previous version's link, or none.
            let _ = match &before {
                Some(old) => relink(&link, old),
                None => std::fs::remove_file(&link),
            };
            return Err(format!(
                "{}: pack {} could not load {model} v{version}: {why}",
                self.env, pack.index
            ));
        }
        held.next += 1;
        let generation = held.next;
        held.models
            .insert(model.to_string(), (path.to_path_buf(), generation));
        Ok(Packed {
            pack: pack.index,
            model: model.to_string(),
            addr,
            generation,
        })
    }

    /// Unloads `p` from its pack `after` from now, unless that model was loaded
    /// into the pack again since.
    pub fn unload_later(self: &Arc<Self>, p: Packed, after: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            this.unload(&p).await;
        });
    }

    async fn unload(&self, p: &Packed) {
        let pack = &self.packs[p.pack];
        let mut held = pack.ops.lock().await;
        if held.models.get(&p.model).map(|(_, g)| *g) != Some(p.generation) {
            return;
        }
        let url = format!("http://{}/v2/repository/models/{}/unload", p.addr, p.model);
        let answer = self
            .http
            .post(url)
            .header("x-admin-token", &pack.token)
            .send()
            .await;
        if let Err(e) = answer.and_then(|r| r.error_for_status()) {
            tracing::warn!(env = %self.env, pack = p.pack, model = %p.model, "unload: {e}");
        }
        let _ = std::fs::remove_file(pack.dir.join(&p.model));
        held.models.remove(&p.model);
    }

    /// The pack's server, started if it is not running yet.
    async fn ensure_started(&self, pack: &Pack) -> Result<SocketAddr, String> {
        {
            let mut server = pack.server.lock().unwrap();
            if let Some(s) = server.as_ref() {
                if !matches!(s.status(), Status::Failed { .. }) {
                    return Ok(s.addr());
                }
                // Supervision gave up on it: a new one (its models come back with it,
                // from the directory's links).
                drop(server.take());
            }
        }
        let mut spec = self.template.clone();
        spec.repository = Some(pack.dir.clone());
        spec.model_name = format!("pack {} of {}", pack.index, self.env);
        spec.env
            .push(("HOIST_ADMIN_TOKEN".into(), pack.token.clone()));
        spec.log_file = self
            .template
            .log_file
            .as_ref()
            .and_then(|f| f.parent())
            .map(|d| d.join(format!("{}-pack{}.log", self.env, pack.index)));
        let server = Supervised::start(spec)
            .await
            .map_err(|e| format!("{}: pack {} did not start: {e}", self.env, pack.index))?;
        let addr = server.addr();
        *pack.server.lock().unwrap() = Some(server);
        Ok(addr)
    }

    /// The pack's server as `hoist status` shows it.
    pub fn view(&self, p: &Packed) -> Vec<ServerView> {
        let server = self.packs[p.pack.min(1)].server.lock().unwrap();
        server.iter().map(super::local::server_view).collect()
    }

    /// Stops both packs' servers (drain, then kill after `grace`).
    pub async fn stop(&self, grace: Duration) {
        let servers: Vec<Supervised> = self
            .packs
            .iter()
            .filter_map(|p| p.server.lock().unwrap().take())
            .collect();
        futures_util::future::join_all(servers.into_iter().map(|s| s.stop(grace))).await;
    }
}

/// Points `link` at `target`: a new link beside it, renamed over it.
fn relink(link: &Path, target: &Path) -> std::io::Result<()> {
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = link.with_file_name(format!(".{name}.new"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)
}

/// The `error` of a JSON error body, else the body.
fn error_of(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relink_replaces_a_link_in_one_step() {
        let dir = std::env::temp_dir().join(format!("hoist-relink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("v1")).unwrap();
        std::fs::create_dir_all(dir.join("v2")).unwrap();
        let link = dir.join("m");
        relink(&link, &dir.join("v1")).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), dir.join("v1"));
        relink(&link, &dir.join("v2")).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), dir.join("v2"));
        // Nothing left beside it.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_server_error_is_read_from_its_json() {
        assert_eq!(error_of(r#"{"error": "bad model"}"#), "bad model");
        assert_eq!(error_of("plain"), "plain");
    }
}
