//! [`FakeKubeApi`]: a stand-in Kubernetes API server on 127.0.0.1, over plain HTTP,
//! for end-to-end tests of hoist's cluster client and of the daemon on Kubernetes.
//!
//! No real API server can run where hoist's tests run. This one serves the subset of
//! the API that `hoist_targets::kubernetes::Cluster` uses, with an in-memory object
//! store keyed by (apiVersion, resource plural, namespace, name):
//!
//! - server-side apply (`PATCH`, `application/apply-patch+yaml`, JSON body, the
//!   `fieldManager` query parameter required as the real server requires it): creates
//!   or replaces the object; `metadata.generation` starts at 1 and goes up when
//!   anything but `metadata` and `status` changed; `resourceVersion`, `uid` and
//!   `creationTimestamp` are set; `status` is kept; no `managedFields` are returned.
//!   A Deployment applied without `spec.replicas` keeps its current count (as when an
//!   autoscaler owns the field), or gets 1 when it is new.
//! - JSON merge patches (`application/merge-patch+json`; a strategic merge patch is
//!   treated as one), including the `scale` subresource of Deployments (GET too);
//! - `GET` of one object, `LIST` (a collection `GET`) with an equality-based
//!   `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`), `POST` (409 `AlreadyExists`),
//!   `PUT` (409 `Conflict` on a stale `resourceVersion`, 404 when missing), `DELETE`;
//! - errors as Kubernetes `Status` objects of the real shape (`NotFound`: message
//!   `deployments.apps "x" not found`, `details.kind` the resource plural).
//!
//! Controllers are simulated at once: every Deployment is rolled out as soon as it is
//! written (`status.observedGeneration = generation`, and `replicas`,
//! `updatedReplicas`, `readyReplicas`, `availableReplicas` all `spec.replicas`), and
//! listing pods returns one running pod per replica of each Deployment the label
//! selector matches, with the template's labels and annotations. Unless a test called
//! [`FakeKubeApi::fail_pods`]: then the matching Deployments stay unavailable and
//! their pods are stuck with that reason (`CrashLoopBackOff`, `ImagePullBackOff`, any
//! other waiting reason, `OOMKilled`, or `Unschedulable`).
//!
//! Not modelled: field ownership between managers (an apply replaces the object),
//! watches, resource validation, admission, RBAC, other subresources than `scale`.
//!
//! ```no_run
//! let api = hoist_testkit::kube_api::FakeKubeApi::start();
//! let dir = std::env::temp_dir();
//! let kubeconfig = api.kubeconfig(&dir);
//! // KUBECONFIG=<kubeconfig> makes kube::Client::try_default() talk to `api`.
//! # let _ = kubeconfig;
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

mod controller;
mod helpers;
mod reads;
mod requests;
#[cfg(test)]
mod tests;
mod writes;
use controller::{failure_of, match_labels, pods_of, reconcile, reconcile_all};
use helpers::{find, kind_of, now_rfc3339, plural_of, str_at};
use reads::list;
use requests::{Answer, Target, details, handle, not_found, status};
use writes::{apply, create, merge, replace, scale_of};

/// One stored object's key: (apiVersion, resource plural, namespace or "", name).
type Key = (String, String, String, String);

/// A fake Kubernetes API server on `127.0.0.1:<port>`, over plain HTTP. Dropping it
/// stops it.
pub struct FakeKubeApi {
    addr: SocketAddr,
    state: Arc<Mutex<Inner>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Inner {
    objects: BTreeMap<Key, Value>,
    /// Every request: (method, path, query).
    log: Vec<(String, String, String)>,
    /// Injected pod failures: (selector or name substring, reason).
    failures: Vec<(String, String)>,
    /// The last resourceVersion handed out.
    version: u64,
}

impl FakeKubeApi {
    /// Starts the server on its own thread (with its own tokio runtime), so it works
    /// from synchronous tests and from `#[tokio::test]`s alike.
    pub fn start() -> FakeKubeApi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(Inner::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("fake-kube-api".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let app = Router::new().fallback(handle).with_state(shared);
                    tokio::select! {
                        r = axum::serve(listener, app) => r.expect("fake API server"),
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime ends every open connection.
                rt.shutdown_background();
            })
            .expect("spawn the fake API server");
        FakeKubeApi {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes `dir/kubeconfig` pointing at this server (cluster, context and user
    /// `fake`, no credentials, namespace `default`) and returns its path:
    /// `KUBECONFIG=<path>` makes `kube::Client::try_default()` use it.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("create the kubeconfig's directory");
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: fake\n  cluster:\n    server: {url}\n\
             contexts:\n\
             - name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\n\
             users:\n\
             - name: fake\n  user: {{}}\n\
             preferences: {{}}\n",
            url = self.url()
        );
        std::fs::write(&path, text).expect("write the kubeconfig");
        path
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored object of `kind` (`Deployment`, `HTTPRoute`, … or the plural,
    /// `deployments`; any case) named `namespace/name` (`namespace` "" for a
    /// cluster-scoped kind), as the API server would return it.
    pub fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let inner = self.lock();
        find(&inner, kind, namespace, name).map(|(_, v)| v.clone())
    }

    /// Stores `object` as a server-side apply would (for seeding a test without a
    /// kube client): its `apiVersion`, `kind`, `metadata.name` and, for a namespaced
    /// kind, `metadata.namespace` say where. Returns the object as stored.
    ///
    /// # Panics
    /// When the object lacks those fields or is refused.
    pub fn insert(&self, object: Value) -> Value {
        let api_version = str_at(&object, &["apiVersion"]).to_string();
        let kind = str_at(&object, &["kind"]).to_string();
        let name = str_at(&object, &["metadata", "name"]).to_string();
        let namespace = str_at(&object, &["metadata", "namespace"]).to_string();
        assert!(
            !api_version.is_empty() && !kind.is_empty() && !name.is_empty(),
            "insert needs apiVersion, kind and metadata.name: {object}"
        );
        let t = Target {
            api_version,
            plural: plural_of(&kind),
            namespace: if kind == "Namespace" {
                String::new()
            } else {
                namespace
            },
            name: Some(name.clone()),
            subresource: None,
        };
        let mut inner = self.lock();
        let (code, stored) = apply(&mut inner, &t, &name, object);
        assert!(code.is_success(), "insert refused: {stored}");
        stored
    }

    /// Every stored object, as `(kind, namespace, name)`, in key order.
    pub fn objects(&self) -> Vec<(String, String, String)> {
        self.lock()
            .objects
            .iter()
            .map(|((_, _, ns, name), v)| {
                (str_at(v, &["kind"]).to_string(), ns.clone(), name.clone())
            })
            .collect()
    }

    /// Every request so far, in order, as (method, path without the query).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.lock()
            .log
            .iter()
            .map(|(m, p, _)| (m.clone(), p.clone()))
            .collect()
    }

    /// Every request so far, in order, as (method, path, raw query string).
    pub fn requests_with_query(&self) -> Vec<(String, String, String)> {
        self.lock().log.clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.lock().log.clear();
    }

    /// The HTTPRoute's (stable, candidate) `backendRefs` weights in its weighted rule
    /// (the rule with two backends: the one named `*-stable` first, else the first).
    pub fn route_weights(&self, namespace: &str, name: &str) -> Option<(u32, u32)> {
        let route = self.object("HTTPRoute", namespace, name)?;
        let rules = route.pointer("/spec/rules")?.as_array()?;
        let refs = rules
            .iter()
            .filter_map(|r| r.get("backendRefs")?.as_array())
            .find(|b| b.len() == 2)?;
        let weight = |b: &Value| b.get("weight").and_then(Value::as_u64).unwrap_or(1) as u32;
        let is = |b: &Value, suffix: &str| {
            b.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.ends_with(suffix))
        };
        let (s, c) = if is(&refs[1], "-stable") || is(&refs[0], "-candidate") {
            (&refs[1], &refs[0])
        } else {
            (&refs[0], &refs[1])
        };
        Some((weight(s), weight(c)))
    }

    /// A Deployment's `spec.replicas`.
    pub fn deployment_replicas(&self, namespace: &str, name: &str) -> Option<i64> {
        self.object("Deployment", namespace, name)?
            .pointer("/spec/replicas")?
            .as_i64()
    }

    /// From now on, the pods of every Deployment whose name or `matchLabels`
    /// (as `k=v,k=v`, sorted by key) contains `selector_substring` cannot start, for
    /// `reason`: `CrashLoopBackOff` (a waiting container whose last run exited 1),
    /// `OOMKilled` (a container terminated by the kernel), `Unschedulable` (a pod
    /// with `PodScheduled=False`), or any other waiting reason (`ImagePullBackOff`,
    /// `ErrImagePull`, …). Those Deployments report no available replica.
    pub fn fail_pods(&self, selector_substring: &str, reason: &str) {
        let mut inner = self.lock();
        inner
            .failures
            .push((selector_substring.to_string(), reason.to_string()));
        reconcile_all(&mut inner);
    }

    /// Undoes every [`FakeKubeApi::fail_pods`]: the pods start, the Deployments roll
    /// out.
    pub fn heal_pods(&self) {
        let mut inner = self.lock();
        inner.failures.clear();
        reconcile_all(&mut inner);
    }
}

impl Drop for FakeKubeApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
