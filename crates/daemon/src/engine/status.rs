//! `hoist status`: each environment (what serves, the split, the traffic since the
//! candidate arrived) and each active release.

use super::{Deployment, Engine, EnvState};
use crate::views::ToApi;
use crate::views::{DeploymentView, EnvView, ReleaseView, StatusView};

impl Engine {
    pub(super) fn status(&self) -> StatusView {
        let environments = self.envs.iter().map(env_view).collect();
        let active = self
            .active
            .keys()
            .filter_map(|id| self.journal.get(*id).ok())
            .map(|record| ReleaseView {
                summary: record.release.describe(),
                progress: record.release.progress(),
                last_verdict: self.verdicts.get(&record.release.id).cloned(),
                release: record.to_api(),
            })
            .collect();
        StatusView {
            model: self.cfg.model.name.clone(),
            registry: self.registry.id(),
            environments,
            active,
            notifications: self.notifier.status(),
        }
    }
}

fn env_view(e: &EnvState) -> EnvView {
    let (stable_metrics, candidate_metrics) = e.target.windows();
    let view = |d: &Option<Deployment>, candidate: bool| {
        d.as_ref().map(|d| DeploymentView {
            version: d.version.clone(),
            digest: d.digest.clone(),
            release_id: d.release_id,
            servers: e.target.servers(candidate),
        })
    };
    EnvView {
        name: e.cfg.name.clone(),
        url: e.target.url(),
        target: e.target.kind().into(),
        split: e.target.split_note(),
        strategy: match e.cfg.strategy {
            hoist_release::config::StrategyKind::Canary => "canary".into(),
            hoist_release::config::StrategyKind::BlueGreen => "blue-green".into(),
        },
        weight: if e.candidate.is_some() { e.weight } else { 0 },
        stable: view(&e.stable, false),
        candidate: view(&e.candidate, true),
        stable_metrics,
        candidate_metrics,
    }
}
