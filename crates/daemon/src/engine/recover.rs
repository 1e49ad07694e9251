//! After a restart: what the journal says comes back. Each environment's live
//! version serves again, registry tags not confirmed written are written again, and
//! each unfinished release resumes where it was (`machine::resume`).

use hoist_release::machine::{self, Action, Event, Phase};

use super::{Deployment, Engine};

impl Engine {
    /// Bring back what the journal says: each environment's live version, the
    /// registry tags still pending, then each unfinished release where it was.
    pub async fn recover(&mut self) {
        self.restore_live().await;
        self.retag();
        let active = match self.journal.active(Some(&self.cfg.model.name)) {
            Ok(a) => a,
            Err(e) => {
                self.say(None, format!("cannot read the journal: {e}"));
                return;
            }
        };
        let now = self.clock.now_ms();
        for rec in active {
            let r = rec.release;
            self.say(
                Some(r.id),
                format!(
                    "release {} v{}: resuming ({})",
                    r.id,
                    r.version,
                    r.describe()
                ),
            );
            let actions = machine::resume(&r, now);
            self.active.insert(r.id, r.clone());
            if r.phase == Phase::Queued {
                let _ = self.apply(r.id, Event::Start);
                continue;
            }
            let mut actions = actions.into_iter();
            let first = actions.next();
            // The candidate first; the rest once it runs (see `Engine::deferred`).
            if matches!(first, Some(Action::StartCandidate { .. })) {
                self.deferred.insert(r.id, actions.by_ref().collect());
            }
            for a in first.into_iter().chain(actions) {
                self.perform(&r, a);
            }
        }
    }

    /// Each environment's live version serves again before the gateways accept
    /// (their listeners are bound; connections wait in the backlog meanwhile).
    async fn restore_live(&mut self) {
        let journal = self.journal.clone();
        let model = self.cfg.model.name.clone();
        let mut errors = Vec::new();
        let restores: Vec<_> = self
            .envs
            .iter_mut()
            .filter_map(|e| match journal.live(&model, &e.cfg.name) {
                Ok(live) => {
                    let name = e.cfg.name.clone();
                    let restore = e.target.restore(live);
                    Some(async move { (name, restore.await) })
                }
                Err(err) => {
                    errors.push(format!("{}: cannot read the journal: {err}", e.cfg.name));
                    None
                }
            })
            .collect();
        let serving = futures_util::future::join_all(restores).await;
        for m in errors {
            self.say(None, m);
        }
        for (name, s) in serving {
            if let (Some(s), Some(e)) = (s, self.env_mut(&name)) {
                e.stable = Some(Deployment {
                    version: s.version,
                    digest: s.digest,
                    release_id: s.release_id,
                });
            }
        }
    }

    /// Registry tags journaled but not confirmed written (a kill came between): write
    /// them again; a tag written twice is the same tag.
    fn retag(&mut self) {
        let pending = match self.journal.pending_tags(Some(&self.cfg.model.name)) {
            Ok(p) => p,
            Err(e) => {
                self.say(None, format!("cannot read the journal's pending tags: {e}"));
                return;
            }
        };
        for t in pending {
            self.tag(t.release_id, t.model, t.version, t.key, t.value);
        }
    }
}
