//! Applying routes: [`Gateway::try_set_routes`] (validated) and
//! [`Gateway::set_routes`] (lenient), which build the request path's [`Table`]:
//! per variant, one backend for the split's requests and one for forced requests,
//! sharing the connection pools but counting into separate series.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use http::HeaderValue;

use crate::gateway::{Backend, Control, Gateway, Table};
use crate::metrics::Counters;
use crate::pool::Pool;
use crate::split::{Routes, RoutesError, Upstream, Variant};

impl Gateway {
    /// Replaces the routes atomically, once [`Routes::validate`] accepts them; routes
    /// it refuses are not applied (the routes in force stay) and the error says why.
    /// Requests already routed finish on the backend they started on; connections to
    /// addresses that left the routes close once idle.
    pub fn try_set_routes(&self, routes: Routes) -> Result<(), RoutesError> {
        routes.validate()?;
        self.apply_routes(routes);
        Ok(())
    }

    /// Replaces the routes atomically: the lenient form of
    /// [`Gateway::try_set_routes`], kept for callers that cannot handle an error.
    /// Routes that [`Routes::validate`] refuses are applied as far as they make sense,
    /// with a warning that names the fault: a weight or shadow share over 100 acts as
    /// 100, one without the upstream it needs acts as 0, an upstream without
    /// addresses as no upstream, a version that is no header value is sent as
    /// `invalid`. [`Gateway::routes`] returns them as given.
    pub fn set_routes(&self, routes: Routes) {
        if let Err(e) = routes.validate() {
            tracing::warn!(env = %self.inner.config.name, "routes applied leniently: {e}");
        }
        self.apply_routes(routes);
    }

    /// Takes the pools from `shared` (a router's, when the gateway becomes one of
    /// its models) or makes its own (`None`), and lets the previous ones go: a
    /// request under way finishes on the connection it has.
    pub(crate) fn share_pools(&self, shared: Option<Arc<crate::pool::Shared>>) {
        {
            let mut control = self.control();
            let same = match (&control.shared, &shared) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if same {
                return;
            }
            control.release_pools();
            control.shared = shared;
        }
        self.apply_routes(self.routes());
    }

    fn apply_routes(&self, routes: Routes) {
        let mut control = self.control();
        let Control {
            pools,
            shared,
            series,
            forced,
        } = &mut *control;
        let mut backend =
            |variant: Variant, up: &Option<Upstream>, is_forced: bool| -> Option<Backend> {
                let up = up.as_ref().filter(|u| !u.addrs.is_empty())?;
                let list = if is_forced {
                    &mut *forced
                } else {
                    &mut *series
                };
                let counters = match list
                    .iter()
                    .find(|(v, ver, _)| *v == variant && *ver == up.version)
                {
                    Some((_, _, c)) => c.clone(),
                    None => {
                        let c = Arc::new(Counters::default());
                        list.push((variant, up.version.clone(), c.clone()));
                        c
                    }
                };
                let version = HeaderValue::from_str(&up.version)
                    .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
                Some(Backend {
                    variant,
                    version,
                    pools: up
                        .addrs
                        .iter()
                        .map(|a| {
                            pools
                                .entry(*a)
                                .or_insert_with(|| match shared {
                                    Some(s) => s.take(*a),
                                    None => Arc::new(Pool::new(*a)),
                                })
                                .clone()
                        })
                        .collect(),
                    next: AtomicUsize::new(0),
                    counters,
                    forced: is_forced,
                    model_path: up.model.as_deref().map(crate::packed::model_prefix),
                })
            };
        let stable = backend(Variant::Stable, &routes.stable, false);
        let candidate = backend(Variant::Candidate, &routes.candidate, false);
        let table = Table {
            forced_stable: backend(Variant::Stable, &routes.stable, true),
            forced_candidate: backend(Variant::Candidate, &routes.candidate, true),
            weight: if candidate.is_some() {
                routes.candidate_weight.min(100)
            } else {
                0
            },
            shadow: if candidate.is_some() && stable.is_some() {
                routes.shadow_percent.min(100)
            } else {
                0
            },
            values: routes.values
                && candidate.is_some()
                && stable.is_some()
                && routes.candidate_weight > 0,
            stable,
            candidate,
            feedback: routes.feedback,
            routes,
        };
        pools.retain(|addr, pool| {
            let keep = [&table.routes.stable, &table.routes.candidate]
                .into_iter()
                .flatten()
                .any(|u| u.addrs.contains(addr));
            if !keep {
                match shared {
                    Some(s) => s.release(*addr),
                    None => pool.retire(),
                }
            }
            keep
        });
        tracing::info!(
            env = %self.inner.config.name,
            stable = ?table.routes.stable.as_ref().map(|u| &u.version),
            candidate = ?table.routes.candidate.as_ref().map(|u| &u.version),
            weight = table.weight,
            shadow = table.shadow,
            feedback = table.feedback,
            "routes changed"
        );
        self.inner.table.store(Arc::new(table));
    }
}
