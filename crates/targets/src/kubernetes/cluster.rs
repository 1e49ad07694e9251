//! [`Cluster`]: one environment on a Kubernetes cluster, driven through its API.
//!
//! # Guarantees
//! - Every write of a whole object is a server-side apply under hoist's own field
//!   manager, forced: hoist owns the fields it renders and nothing else, so a label
//!   someone adds by hand survives, and a field hoist renders is hoist's again after
//!   the next apply.
//! - Replica counts alone are changed through the `scale` subresource, so the
//!   rest of a Deployment is never re-applied to move traffic.
//! - [`Cluster::rollback`] moves traffic first (one apply of the HTTPRoute, or the
//!   stable replicas back) and only then scales the candidate to zero: no request is
//!   ever routed to a Service with no pods.
//! - [`Cluster::live`] reads what is running from the Deployments' `hoist.dev/*`
//!   annotations and the HTTPRoute's weights: the truth when the journal is lost.
//!
//! # Assumptions
//! The environment's objects were applied once from [`super::render()`] (by
//! [`Cluster::apply`] or by `kubectl apply -k`), so the Services, the HTTPRoute and
//! the stable Deployment exist.

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ContainerStatus, Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::crds::HttpRoute;
use super::render::{self, ANN_ARTIFACT, ANN_DIGEST, ANN_MODEL, ANN_VERSION, Manifests, Object};
use super::spec::{AppSpec, ModelPin, Variant};
use super::{Error, Result};

/// How traffic is split in an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitMode {
    /// HTTPRoute backendRefs weights: exact.
    Gateway,
    /// The app Service over both variants' pods: as precise as whole pods allow.
    ReplicaRatio,
    /// hoist's gateway in front of both variants' Services: exact, set through its
    /// admin API by the caller (the daemon); the cluster's objects do not move.
    Hoist,
}

/// A traffic split that was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Split {
    pub mode: SplitMode,
    /// The candidate's share that was asked for, in percent.
    pub requested: u32,
    /// The share really set: equal to `requested` with a Gateway; the nearest ratio of
    /// whole replicas otherwise (10% of 3 stable pods is 1 candidate pod, 25%).
    pub effective: u32,
    pub stable_replicas: Option<i32>,
    pub candidate_replicas: Option<i32>,
}

/// A finished rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rollout {
    pub replicas: i32,
}

/// One variant as it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveVariant {
    /// From the Deployment's `hoist.dev/*` annotations.
    pub pin: ModelPin,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.availableReplicas`.
    pub available: i32,
}

/// What runs in an environment, read from the cluster alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Live {
    pub stable: Option<LiveVariant>,
    /// Present while a candidate Deployment exists (possibly at 0 replicas).
    pub candidate: Option<LiveVariant>,
    /// The candidate's share of traffic, in percent.
    pub candidate_weight: u32,
    pub mode: SplitMode,
}

/// One environment's objects on a cluster.
pub struct Cluster {
    client: Client,
    spec: AppSpec,
    field_manager: String,
    poll: Duration,
}

impl Cluster {
    /// A cluster from the usual places (KUBECONFIG, ~/.kube/config, or the pod's
    /// service account when running in-cluster).
    pub async fn connect(spec: AppSpec, field_manager: &str) -> Result<Cluster> {
        let client = Client::try_default()
            .await
            .map_err(|e| Error::Connect(e.to_string()))?;
        Cluster::new(client, spec, field_manager)
    }

    /// A cluster behind `client` (tests pass kube's mock service).
    pub fn new(client: Client, spec: AppSpec, field_manager: &str) -> Result<Cluster> {
        spec.validate()?;
        if field_manager.is_empty() || field_manager.len() > 128 {
            return Err(Error::Invalid(format!(
                "field manager `{field_manager}` must be 1 to 128 characters"
            )));
        }
        Ok(Cluster {
            client,
            spec,
            field_manager: field_manager.into(),
            poll: Duration::from_secs(2),
        })
    }

    /// How often [`Cluster::wait_rollout`] looks (default 2 s).
    pub fn with_poll_interval(mut self, poll: Duration) -> Cluster {
        self.poll = poll;
        self
    }

    /// The environment this cluster drives.
    pub fn spec(&self) -> &AppSpec {
        &self.spec
    }

    /// The split this environment uses.
    pub fn mode(&self) -> SplitMode {
        if self.spec.hoist_gateway.is_some() {
            SplitMode::Hoist
        } else if self.spec.gateway.is_some() {
            SplitMode::Gateway
        } else {
            SplitMode::ReplicaRatio
        }
    }

    fn apply_params(&self) -> PatchParams {
        PatchParams::apply(&self.field_manager).force()
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.spec.namespace)
    }

    /// Server-side applies every object, in order.
    pub async fn apply(&self, manifests: &Manifests) -> Result<()> {
        for o in &manifests.objects {
            self.apply_object(o).await?;
        }
        Ok(())
    }

    /// Server-side applies one object.
    pub async fn apply_object(&self, o: &Object) -> Result<()> {
        match o {
            Object::Namespace(x) => {
                let api: Api<Namespace> = Api::all(self.client.clone());
                let name = o.name();
                api.patch(name, &self.apply_params(), &Patch::Apply(x))
                    .await
                    .map(drop)
                    .map_err(|e| api_err(format!("apply Namespace {name}"), e))
            }
            Object::ServiceAccount(x) => self.apply_namespaced(x).await,
            Object::Role(x) => self.apply_namespaced(x).await,
            Object::RoleBinding(x) => self.apply_namespaced(x).await,
            Object::ConfigMap(x) => self.apply_namespaced(x).await,
            Object::Lease(x) => self.apply_namespaced(x).await,
            Object::Deployment(x) => self.apply_namespaced(x.as_ref()).await,
            Object::Service(x) => self.apply_namespaced(x).await,
            Object::HorizontalPodAutoscaler(x) => self.apply_namespaced(x).await,
            Object::PodDisruptionBudget(x) => self.apply_namespaced(x).await,
            Object::NetworkPolicy(x) => self.apply_namespaced(x).await,
            Object::ServiceMonitor(x) => self.apply_namespaced(x).await,
            Object::HttpRoute(x) => self.apply_namespaced(x).await,
        }
    }

    async fn apply_namespaced<K>(&self, obj: &K) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Serialize
            + DeserializeOwned
            + Clone
            + Debug,
    {
        let ns = obj
            .meta()
            .namespace
            .clone()
            .unwrap_or_else(|| self.spec.namespace.clone());
        let name = obj.meta().name.clone().unwrap_or_default();
        let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
        api.patch(&name, &self.apply_params(), &Patch::Apply(obj))
            .await
            .map(drop)
            .map_err(|e| api_err(format!("apply {} {ns}/{name}", K::kind(&())), e))
    }

    /// Applies one variant's Deployment running `pin` (`replicas: None` leaves the
    /// count as it is, to the autoscaler). Follow with [`Cluster::wait_rollout`].
    pub async fn deploy(&self, v: Variant, pin: &ModelPin, replicas: Option<i32>) -> Result<()> {
        let d = render::deployment(&self.spec, v, pin, replicas);
        self.apply_namespaced(&d).await
    }

    async fn scale(&self, v: Variant, replicas: i32) -> Result<()> {
        let name = self.spec.name(v);
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        self.deployments()
            .patch_scale(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .map_err(|e| {
                api_err(
                    format!(
                        "scale Deployment {}/{name} to {replicas}",
                        self.spec.namespace
                    ),
                    e,
                )
            })
    }

    async fn get_deployment(&self, v: Variant) -> Result<Option<Deployment>> {
        let name = self.spec.name(v);
        self.deployments()
            .get_opt(&name)
            .await
            .map_err(|e| api_err(format!("read Deployment {}/{name}", self.spec.namespace), e))
    }

    /// Waits until the variant's Deployment has rolled out: its controller saw the
    /// newest spec (`observedGeneration >= generation`), and every replica is updated
    /// and available, with no old pod left. A pod that cannot start (crash loop,
    /// image pull failure, out of memory, unschedulable) ends the wait at once with
    /// the reason; so does the Deployment's own progress deadline. The deadline ends
    /// it with what was reached.
    pub async fn wait_rollout(&self, v: Variant, deadline: Instant) -> Result<Rollout> {
        let name = self.spec.name(v);
        let full = format!("{}/{name}", self.spec.namespace);
        let started = Instant::now();
        loop {
            let d = self
                .get_deployment(v)
                .await?
                .ok_or_else(|| Error::Missing(format!("Deployment {full} does not exist")))?;
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let generation = d.metadata.generation.unwrap_or(0);
            let st = d.status.clone().unwrap_or_default();
            let observed = st.observed_generation.unwrap_or(0);
            let updated = st.updated_replicas.unwrap_or(0);
            let available = st.available_replicas.unwrap_or(0);
            let total = st.replicas.unwrap_or(0);
            if observed >= generation && updated == want && available == want && total == want {
                return Ok(Rollout { replicas: want });
            }
            if let Some(c) = st.conditions.iter().flatten().find(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            }) {
                return Err(Error::RolloutFailed {
                    deployment: full,
                    reason: "ProgressDeadlineExceeded".into(),
                    message: c.message.clone().unwrap_or_default(),
                });
            }
            self.check_pods(v, &d, &full).await?;
            let now = Instant::now();
            if now >= deadline {
                let progress = if observed < generation {
                    format!("the Deployment controller has not seen generation {generation} yet")
                } else {
                    format!(
                        "{updated} of {want} replicas updated, {available} available, {total} in all"
                    )
                };
                return Err(Error::RolloutTimeout {
                    deployment: full,
                    waited: now - started,
                    progress,
                });
            }
            tokio::time::sleep(self.poll.min(deadline - now)).await;
        }
    }

    /// Fails with the first reason a pod of this rollout cannot start. Only pods of
    /// the Deployment's current template count (same `hoist.dev/digest`): an old
    /// pod's trouble is not this rollout's.
    async fn check_pods(&self, v: Variant, d: &Deployment, full: &str) -> Result<()> {
        let want_digest = d
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(ANN_DIGEST))
            .cloned();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.spec.namespace);
        let lp = ListParams::default().labels(&render::selector_string(&self.spec, v));
        let list = pods
            .list(&lp)
            .await
            .map_err(|e| api_err(format!("list pods of {full}"), e))?;
        for pod in list.items {
            let digest = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANN_DIGEST));
            if want_digest.is_some() && digest != want_digest.as_ref() {
                continue;
            }
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            let Some(st) = &pod.status else { continue };
            let statuses = st
                .init_container_statuses
                .iter()
                .flatten()
                .chain(st.container_statuses.iter().flatten());
            for cs in statuses {
                if let Some((reason, message)) = container_failure(cs) {
                    return Err(Error::PodFailed {
                        deployment: full.into(),
                        pod: pod_name,
                        container: cs.name.clone(),
                        reason,
                        message,
                    });
                }
            }
            if let Some(c) = st.conditions.iter().flatten().find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            }) {
                return Err(Error::PodFailed {
                    deployment: full.into(),
                    pod: pod_name,
                    container: "-".into(),
                    reason: "Unschedulable".into(),
                    message: c.message.clone().unwrap_or_default(),
                });
            }
        }
        Ok(())
    }

    /// Sends `candidate_percent` of the traffic to the candidate.
    ///
    /// With a Gateway: one apply of the HTTPRoute with the new weights. Without:
    /// the candidate gets `round(S × w / (100 − w))` replicas (at least 1) beside the
    /// stable's S, and at 100% the candidate gets S replicas and, once they are
    /// rolled out (by `deadline`), stable goes to zero. [`Split::effective`] is the
    /// share those whole replicas give.
    pub async fn set_weights(&self, candidate_percent: u32, deadline: Instant) -> Result<Split> {
        if candidate_percent > 100 {
            return Err(Error::Invalid(format!(
                "a weight is a percentage from 0 to 100, not {candidate_percent}"
            )));
        }
        if self.mode() == SplitMode::Hoist {
            // hoist's gateway holds the weights; nothing on the cluster changes.
            return Ok(Split {
                mode: SplitMode::Hoist,
                requested: candidate_percent,
                effective: candidate_percent,
                stable_replicas: None,
                candidate_replicas: None,
            });
        }
        if self.spec.gateway.is_some() {
            let route = render::http_route(&self.spec, candidate_percent);
            self.apply_namespaced(&route).await?;
            return Ok(Split {
                mode: SplitMode::Gateway,
                requested: candidate_percent,
                effective: candidate_percent,
                stable_replicas: None,
                candidate_replicas: None,
            });
        }
        let live = self.stable_replicas_now().await?;
        let base = if live > 0 {
            live
        } else {
            self.configured_replicas()
        };
        let w = candidate_percent as i64;
        let (stable, candidate) = match w {
            0 => (base, 0),
            100 => (0, base),
            _ => {
                let c = ((base as i64 * w + (100 - w) / 2) / (100 - w)).max(1);
                (base, c.min(1000) as i32)
            }
        };
        if live == 0 && stable > 0 {
            // Back from a 100% step: stable serves again before the candidate shrinks.
            self.scale(Variant::Stable, stable).await?;
            self.wait_rollout(Variant::Stable, deadline).await?;
        }
        self.scale(Variant::Candidate, candidate).await?;
        if stable == 0 && live > 0 {
            // The candidate carries everything before stable goes.
            self.wait_rollout(Variant::Candidate, deadline).await?;
            self.scale(Variant::Stable, 0).await?;
        }
        Ok(Split {
            mode: SplitMode::ReplicaRatio,
            requested: candidate_percent,
            effective: ratio(stable, candidate),
            stable_replicas: Some(stable),
            candidate_replicas: Some(candidate),
        })
    }

    /// The stable Deployment's `spec.replicas` now (0 when it does not exist).
    async fn stable_replicas_now(&self) -> Result<i32> {
        Ok(self
            .get_deployment(Variant::Stable)
            .await?
            .and_then(|d| d.spec.and_then(|s| s.replicas))
            .unwrap_or(0))
    }

    /// The stable count to restore after a 100% step: the autoscaler's minimum, else
    /// the configured replicas.
    fn configured_replicas(&self) -> i32 {
        self.spec.autoscale.map_or(self.spec.replicas, |a| a.min)
    }

    /// Rolls back: all traffic to stable first (one apply of the HTTPRoute; without a
    /// Gateway, stable's replicas back and rolled out by `deadline`), then the
    /// candidate scaled to zero.
    /// With hoist's gateway the caller has moved the traffic to stable first; this
    /// only scales the candidate to zero.
    pub async fn rollback(&self, deadline: Instant) -> Result<()> {
        if self.mode() == SplitMode::Hoist {
            // Stable was never scaled down: its Service carries what the gateway sends.
        } else if self.spec.gateway.is_some() {
            let route = render::http_route(&self.spec, 0);
            self.apply_namespaced(&route).await?;
        } else {
            if self.stable_replicas_now().await? == 0 {
                self.scale(Variant::Stable, self.configured_replicas())
                    .await?;
                self.wait_rollout(Variant::Stable, deadline).await?;
            }
        }
        if self.get_deployment(Variant::Candidate).await?.is_some() {
            self.scale(Variant::Candidate, 0).await?;
        }
        Ok(())
    }

    /// Makes the candidate the new stable: the stable Deployment is applied with the
    /// candidate's model and rolled out (maxUnavailable 0: capacity never drops),
    /// then all traffic goes to stable and the candidate is scaled to zero.
    pub async fn promote(&self, deadline: Instant) -> Result<ModelPin> {
        let pin = self.promote_stable(deadline).await?;
        if self.spec.gateway.is_some() {
            self.apply_namespaced(&render::http_route(&self.spec, 0))
                .await?;
        }
        self.scale(Variant::Candidate, 0).await?;
        Ok(pin)
    }

    /// The first half of [`Cluster::promote`]: the stable Deployment applied with
    /// the candidate's model and rolled out by `deadline`. The traffic is then moved
    /// to stable (by the caller, with hoist's gateway) before
    /// [`Cluster::retire_candidate`].
    pub async fn promote_stable(&self, deadline: Instant) -> Result<ModelPin> {
        let live = self.live().await?;
        let Some(candidate) = live.candidate else {
            return Err(Error::Missing(format!(
                "no candidate Deployment {}/{} to promote",
                self.spec.namespace,
                self.spec.name(Variant::Candidate)
            )));
        };
        let replicas = render::stable_replicas(&self.spec);
        self.deploy(Variant::Stable, &candidate.pin, replicas)
            .await?;
        if live.stable.as_ref().is_none_or(|s| s.replicas == 0) && replicas.is_none() {
            self.scale(Variant::Stable, self.configured_replicas())
                .await?;
        }
        self.wait_rollout(Variant::Stable, deadline).await?;
        Ok(candidate.pin)
    }

    /// The candidate scaled to zero (when it exists): no traffic may reach it any more.
    pub async fn retire_candidate(&self) -> Result<()> {
        if self.get_deployment(Variant::Candidate).await?.is_some() {
            self.scale(Variant::Candidate, 0).await?;
        }
        Ok(())
    }

    /// What runs, from the cluster alone: each Deployment's model (its `hoist.dev/*`
    /// annotations) and replicas, and the candidate's share (the HTTPRoute's weights,
    /// else the replica ratio). A controller that lost its journal starts from this.
    pub async fn live(&self) -> Result<Live> {
        let read = |d: Option<Deployment>| -> Result<Option<LiveVariant>> {
            let Some(d) = d else { return Ok(None) };
            let name = d.metadata.name.clone().unwrap_or_default();
            let ann = d.metadata.annotations.clone().unwrap_or_default();
            let get = |k: &str| {
                ann.get(k).cloned().ok_or_else(|| {
                    Error::Missing(format!(
                        "Deployment {}/{name} has no {k} annotation: it was not applied by hoist",
                        self.spec.namespace
                    ))
                })
            };
            Ok(Some(LiveVariant {
                pin: ModelPin {
                    name: get(ANN_MODEL)?,
                    version: get(ANN_VERSION)?,
                    digest: get(ANN_DIGEST)?,
                    artifact: ann.get(ANN_ARTIFACT).cloned(),
                },
                replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                available: d
                    .status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .unwrap_or(0),
            }))
        };
        let stable = read(self.get_deployment(Variant::Stable).await?)?;
        let candidate = read(self.get_deployment(Variant::Candidate).await?)?;
        let candidate_weight = match self.mode() {
            SplitMode::Gateway => {
                let api: Api<HttpRoute> =
                    Api::namespaced(self.client.clone(), &self.spec.namespace);
                let route = api.get_opt(&self.spec.app).await.map_err(|e| {
                    api_err(
                        format!("read HTTPRoute {}/{}", self.spec.namespace, self.spec.app),
                        e,
                    )
                })?;
                route
                    .and_then(|r| render::route_weight(&r, &self.spec))
                    .unwrap_or(0)
            }
            SplitMode::ReplicaRatio => ratio(
                stable.as_ref().map_or(0, |s| s.replicas),
                candidate.as_ref().map_or(0, |c| c.replicas),
            ),
            // Held by hoist's gateway, not by any object: the caller asks it.
            SplitMode::Hoist => 0,
        };
        Ok(Live {
            stable,
            candidate,
            candidate_weight,
            mode: self.mode(),
        })
    }

    /// One round of leader election on the Lease `namespace/name`: takes it when it
    /// is free or expired, renews it when `holder` has it. `Ok(false)`: another
    /// replica leads. A concurrent taker loses on the resourceVersion (409), never
    /// both.
    pub async fn try_acquire_lease(
        &self,
        namespace: &str,
        name: &str,
        holder: &str,
        duration: Duration,
    ) -> Result<bool> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("Lease {namespace}/{name}");
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now(),
        );
        let secs = duration.as_secs().clamp(1, i32::MAX as u64) as i32;
        let Some(mut lease) = api
            .get_opt(name)
            .await
            .map_err(|e| api_err(format!("read {what}"), e))?
        else {
            let lease = Lease {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(namespace.into()),
                    ..Default::default()
                },
                spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                    holder_identity: Some(holder.into()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(api_err(format!("create {what}"), e)),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let mine = spec.holder_identity.as_deref() == Some(holder);
        let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(t), Some(d)) => {
                let until = t.0 + k8s_openapi::jiff::SignedDuration::from_secs(d as i64);
                until < now.0
            }
            _ => true,
        };
        if !(mine || free || expired) {
            return Ok(false);
        }
        if !mine {
            spec.holder_identity = Some(holder.into());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(secs);
        match api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(api_err(format!("renew {what}"), e)),
        }
    }
}

fn api_err(action: String, source: kube::Error) -> Error {
    Error::Api { action, source }
}

/// The candidate's percent of `stable + candidate` replicas, rounded.
fn ratio(stable: i32, candidate: i32) -> u32 {
    let (s, c) = (stable.max(0) as i64, candidate.max(0) as i64);
    if s + c == 0 {
        return 0;
    }
    ((c * 100 + (s + c) / 2) / (s + c)) as u32
}

/// Why a container cannot run, if it cannot: a waiting reason that retrying will not
/// fix, or an out-of-memory kill now or last time.
fn container_failure(cs: &ContainerStatus) -> Option<(String, String)> {
    const FATAL: [&str; 6] = [
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "InvalidImageName",
        "CreateContainerError",
    ];
    let state = cs.state.as_ref();
    let oom = |s: Option<&k8s_openapi::api::core::v1::ContainerState>| {
        s.and_then(|s| s.terminated.as_ref())
            .filter(|t| t.reason.as_deref() == Some("OOMKilled"))
            .is_some()
    };
    if oom(state) || oom(cs.last_state.as_ref()) {
        return Some((
            "OOMKilled".into(),
            "the container ran out of memory (raise kubernetes.resources.memory_limit)".into(),
        ));
    }
    let waiting = state.and_then(|s| s.waiting.as_ref())?;
    let reason = waiting.reason.as_deref()?;
    if !FATAL.contains(&reason) {
        return None;
    }
    let mut message = waiting.message.clone().unwrap_or_default();
    if reason == "CrashLoopBackOff"
        && let Some(t) = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref())
    {
        message = format!(
            "last exit code {}{}",
            t.exit_code,
            t.message
                .as_deref()
                .map(|m| format!(": {}", m.trim()))
                .unwrap_or_default()
        );
    }
    Some((reason.into(), message))
}
