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

// ---------------------------------------------------------------------------------
// Requests.

/// Where a request points.
#[derive(Debug)]
struct Target {
    api_version: String,
    plural: String,
    namespace: String,
    name: Option<String>,
    subresource: Option<String>,
}

impl Target {
    fn key(&self, name: &str) -> Key {
        (
            self.api_version.clone(),
            self.plural.clone(),
            self.namespace.clone(),
            name.to_string(),
        )
    }

    /// `deployments.apps` / `pods`: how the API server names the resource in errors.
    fn qualified(&self) -> String {
        match self.api_version.split_once('/') {
            Some((group, _)) => format!("{}.{group}", self.plural),
            None => self.plural.clone(),
        }
    }

    fn group(&self) -> Option<&str> {
        self.api_version.split_once('/').map(|(g, _)| g)
    }
}

/// `/api/v1/...` or `/apis/GROUP/VERSION/...` into a [`Target`].
fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    let t = |plural: &str, namespace: &str, name: Option<&&str>, sub: Option<&&str>| Target {
        api_version: api_version.clone(),
        plural: plural.to_string(),
        namespace: namespace.to_string(),
        name: name.map(|s| s.to_string()),
        subresource: sub.map(|s| s.to_string()),
    };
    match rest {
        [] => None,
        ["namespaces"] => Some(t("namespaces", "", None, None)),
        ["namespaces", name] => Some(t("namespaces", "", Some(name), None)),
        ["namespaces", ns, plural, rest @ ..] if rest.len() <= 2 => {
            Some(t(plural, ns, rest.first(), rest.get(1)))
        }
        [plural, rest @ ..] if rest.len() <= 2 => Some(t(plural, "", rest.first(), rest.get(1))),
        _ => None,
    }
}

async fn handle(
    State(state): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = Query::<HashMap<String, String>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let mut inner = state.lock().unwrap_or_else(|e| e.into_inner());
    inner.log.push((
        method.to_string(),
        uri.path().to_string(),
        uri.query().unwrap_or("").to_string(),
    ));
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let (code, body) = route(
        &mut inner,
        &method,
        uri.path(),
        &query,
        &content_type,
        &body,
    );
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}

type Answer = (StatusCode, Value);

fn route(
    inner: &mut Inner,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    content_type: &str,
    body: &[u8],
) -> Answer {
    if path == "/version" && method == Method::GET {
        return (
            StatusCode::OK,
            json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-hoist-fake",
                "platform": "linux/amd64",
            }),
        );
    }
    let Some(t) = parse_path(path) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
            None,
        );
    };
    let parse_body = || -> Result<Value, Answer> {
        serde_json::from_slice::<Value>(body)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| {
                status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the body is not a JSON object (this fake API server reads JSON only)",
                    None,
                )
            })
    };
    match (method.as_str(), &t.name, t.subresource.as_deref()) {
        ("GET", None, None) => list(inner, &t, query),
        ("GET", Some(name), None) => match inner.objects.get(&t.key(name)) {
            Some(o) => (StatusCode::OK, o.clone()),
            None => not_found(&t, name),
        },
        ("GET", Some(name), Some("scale")) if t.plural == "deployments" => {
            match inner.objects.get(&t.key(name)) {
                Some(o) => (StatusCode::OK, scale_of(o)),
                None => not_found(&t, name),
            }
        }
        ("POST", None, None) => match parse_body() {
            Ok(b) => create(inner, &t, b),
            Err(e) => e,
        },
        ("PUT", Some(name), None) => match parse_body() {
            Ok(b) => replace(inner, &t, name, b),
            Err(e) => e,
        },
        ("PATCH", Some(name), sub) => {
            let b = match parse_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            match (content_type, sub) {
                ("application/apply-patch+yaml", None) => {
                    if query.get("fieldManager").is_none_or(|m| m.is_empty()) {
                        return status(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "Invalid",
                            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                            None,
                        );
                    }
                    apply(inner, &t, name, b)
                }
                (
                    "application/merge-patch+json" | "application/strategic-merge-patch+json",
                    None,
                ) => merge(inner, &t, name, b, false),
                (
                    "application/merge-patch+json" | "application/strategic-merge-patch+json",
                    Some("scale"),
                ) if t.plural == "deployments" => merge(inner, &t, name, b, true),
                _ => status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    &format!("the fake API server does not take {content_type} patches here"),
                    None,
                ),
            }
        }
        ("DELETE", Some(name), None) => match inner.objects.remove(&t.key(name)) {
            Some(_) => (
                StatusCode::OK,
                json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": details(&t, name),
                }),
            ),
            None => not_found(&t, name),
        },
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("the fake API server does not serve {method} {path}"),
            None,
        ),
    }
}

fn details(t: &Target, name: &str) -> Value {
    let mut d = Map::new();
    d.insert("name".into(), json!(name));
    if let Some(g) = t.group() {
        d.insert("group".into(), json!(g));
    }
    d.insert("kind".into(), json!(t.plural));
    Value::Object(d)
}

/// A Kubernetes `Status` failure.
fn status(code: StatusCode, reason: &str, message: &str, details: Option<Value>) -> Answer {
    let mut s = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason,
    });
    if let Some(d) = details {
        s["details"] = d;
    }
    s["code"] = json!(code.as_u16());
    (code, s)
}

fn not_found(t: &Target, name: &str) -> Answer {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{} \"{name}\" not found", t.qualified()),
        Some(details(t, name)),
    )
}

// ---------------------------------------------------------------------------------
// Writes.

fn next_version(inner: &mut Inner) -> String {
    inner.version += 1;
    inner.version.to_string()
}

/// Everything but `metadata` and `status`: what bumps the generation.
fn desired(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

/// Checks the body's name and namespace against the path, and fills what the server
/// fills: kind and apiVersion when missing, namespace, uid, creationTimestamp,
/// generation and resourceVersion. `old`: the stored object this one replaces.
fn admit(
    inner: &mut Inner,
    t: &Target,
    name: &str,
    mut obj: Value,
    old: Option<&Value>,
) -> Result<Value, Answer> {
    let body_name = str_at(&obj, &["metadata", "name"]).to_string();
    if !body_name.is_empty() && body_name != name {
        return Err(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            ),
            None,
        ));
    }
    let body_ns = str_at(&obj, &["metadata", "namespace"]).to_string();
    if !t.namespace.is_empty() && !body_ns.is_empty() && body_ns != t.namespace {
        return Err(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
            None,
        ));
    }
    if t.plural == "deployments" {
        let replicas = obj.pointer("/spec/replicas").cloned();
        if replicas.is_none() {
            let keep = old
                .and_then(|o| o.pointer("/spec/replicas").cloned())
                .unwrap_or(json!(1));
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("replicas".into(), keep);
            }
        }
    }
    let generation = match old {
        None => 1,
        Some(o) => {
            let g = o
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            if desired(o) == desired(&obj) {
                g
            } else {
                g + 1
            }
        }
    };
    let version = next_version(inner);
    let m = obj
        .as_object_mut()
        .expect("checked to be an object")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    let m = m.as_object_mut().expect("an object");
    m.insert("name".into(), json!(name));
    if !t.namespace.is_empty() {
        m.insert("namespace".into(), json!(t.namespace));
    }
    m.remove("managedFields");
    let uid = old
        .and_then(|o| o.pointer("/metadata/uid").cloned())
        .unwrap_or_else(|| json!(format!("00000000-0000-4000-8000-{:012x}", inner.version)));
    let created = old
        .and_then(|o| o.pointer("/metadata/creationTimestamp").cloned())
        .unwrap_or_else(|| json!(now_rfc3339()));
    m.insert("uid".into(), uid);
    m.insert("creationTimestamp".into(), created);
    m.insert("generation".into(), json!(generation));
    m.insert("resourceVersion".into(), json!(version));
    let o = obj.as_object_mut().expect("an object");
    if !o.contains_key("apiVersion") {
        o.insert("apiVersion".into(), json!(t.api_version));
    }
    if !o.contains_key("kind") {
        let kind = old
            .map(|x| str_at(x, &["kind"]).to_string())
            .unwrap_or_else(|| kind_of(&t.plural));
        o.insert("kind".into(), json!(kind));
    }
    // Status is a subresource: writes of the object never change it.
    match old.and_then(|x| x.get("status")) {
        Some(s) => {
            o.insert("status".into(), s.clone());
        }
        None => {
            o.remove("status");
        }
    }
    Ok(obj)
}

fn store(inner: &mut Inner, t: &Target, name: &str, obj: Value) -> Value {
    let key = t.key(name);
    inner.objects.insert(key.clone(), obj);
    if t.plural == "deployments" {
        reconcile(inner, &key);
    }
    inner.objects[&key].clone()
}

fn create(inner: &mut Inner, t: &Target, obj: Value) -> Answer {
    let name = str_at(&obj, &["metadata", "name"]).to_string();
    if name.is_empty() {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value: name or generateName is required",
            None,
        );
    }
    if inner.objects.contains_key(&t.key(&name)) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", t.qualified()),
            Some(details(t, &name)),
        );
    }
    match admit(inner, t, &name, obj, None) {
        Ok(o) => (StatusCode::CREATED, store(inner, t, &name, o)),
        Err(e) => e,
    }
}

fn replace(inner: &mut Inner, t: &Target, name: &str, obj: Value) -> Answer {
    let Some(old) = inner.objects.get(&t.key(name)).cloned() else {
        return not_found(t, name);
    };
    let sent = str_at(&obj, &["metadata", "resourceVersion"]);
    if !sent.is_empty() && sent != str_at(&old, &["metadata", "resourceVersion"]) {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                t.qualified()
            ),
            Some(details(t, name)),
        );
    }
    match admit(inner, t, name, obj, Some(&old)) {
        Ok(o) => (StatusCode::OK, store(inner, t, name, o)),
        Err(e) => e,
    }
}

fn apply(inner: &mut Inner, t: &Target, name: &str, obj: Value) -> Answer {
    let old = inner.objects.get(&t.key(name)).cloned();
    let created = old.is_none();
    match admit(inner, t, name, obj, old.as_ref()) {
        Ok(o) => {
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (code, store(inner, t, name, o))
        }
        Err(e) => e,
    }
}

/// A JSON merge patch (RFC 7386) of the object, or of its `scale` subresource.
fn merge(inner: &mut Inner, t: &Target, name: &str, patch: Value, scale: bool) -> Answer {
    let Some(old) = inner.objects.get(&t.key(name)).cloned() else {
        return not_found(t, name);
    };
    let mut new = old.clone();
    if scale {
        if let Some(r) = patch.pointer("/spec/replicas") {
            if r.as_i64().is_none_or(|r| r < 0) {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    &format!(
                        "Scale.autoscaling \"{name}\" is invalid: spec.replicas: must be a non-negative integer"
                    ),
                    None,
                );
            }
            new["spec"]["replicas"] = r.clone();
        }
    } else {
        merge_patch(&mut new, &patch);
    }
    // Keep the stored identity: a merge patch cannot rename.
    new["metadata"]["name"] = json!(name);
    match admit(inner, t, name, new, Some(&old)) {
        Ok(o) => {
            let stored = store(inner, t, name, o);
            if scale {
                (StatusCode::OK, scale_of(&stored))
            } else {
                (StatusCode::OK, stored)
            }
        }
        Err(e) => e,
    }
}

fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().expect("an object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The `autoscaling/v1` Scale of a Deployment.
fn scale_of(d: &Value) -> Value {
    let selector = match_labels(d)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": str_at(d, &["metadata", "name"]),
            "namespace": str_at(d, &["metadata", "namespace"]),
            "uid": str_at(d, &["metadata", "uid"]),
            "resourceVersion": str_at(d, &["metadata", "resourceVersion"]),
            "creationTimestamp": str_at(d, &["metadata", "creationTimestamp"]),
        },
        "spec": { "replicas": d.pointer("/spec/replicas").cloned().unwrap_or(json!(1)) },
        "status": {
            "replicas": d.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

// ---------------------------------------------------------------------------------
// The simulated Deployment controller and kubelet.

fn match_labels(d: &Value) -> BTreeMap<String, String> {
    d.pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The failure injected for Deployment `d`, if any.
fn failure_of<'a>(failures: &'a [(String, String)], d: &Value) -> Option<&'a str> {
    let name = str_at(d, &["metadata", "name"]);
    let selector = match_labels(d)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    failures
        .iter()
        .rev()
        .find(|(s, _)| name.contains(s.as_str()) || selector.contains(s.as_str()))
        .map(|(_, r)| r.as_str())
}

fn reconcile_all(inner: &mut Inner) {
    let keys: Vec<Key> = inner
        .objects
        .keys()
        .filter(|k| k.1 == "deployments")
        .cloned()
        .collect();
    for k in keys {
        reconcile(inner, &k);
    }
}

/// Rolls the Deployment at `key` out at once, or leaves it unavailable when its pods
/// were made to fail.
fn reconcile(inner: &mut Inner, key: &Key) {
    let Some(d) = inner.objects.get(key) else {
        return;
    };
    let want = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let generation = d
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let failing = want > 0 && failure_of(&inner.failures, d).is_some();
    let now = now_rfc3339();
    let condition = |type_: &str, ok: bool, reason: &str, message: &str| {
        json!({
            "type": type_, "status": if ok { "True" } else { "False" },
            "lastUpdateTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message,
        })
    };
    let mut st = Map::new();
    st.insert("observedGeneration".into(), json!(generation));
    let mut put = |k: &str, v: i64| {
        if v != 0 {
            st.insert(k.into(), json!(v));
        }
    };
    put("replicas", want);
    put("updatedReplicas", want);
    if failing {
        put("unavailableReplicas", want);
    } else {
        put("readyReplicas", want);
        put("availableReplicas", want);
    }
    let conditions = if failing {
        vec![
            condition(
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            ),
            condition(
                "Progressing",
                true,
                "ReplicaSetUpdated",
                "ReplicaSet is progressing.",
            ),
        ]
    } else {
        vec![
            condition(
                "Available",
                true,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            ),
            condition(
                "Progressing",
                true,
                "NewReplicaSetAvailable",
                "ReplicaSet has successfully progressed.",
            ),
        ]
    };
    st.insert("conditions".into(), Value::Array(conditions));
    if let Some(d) = inner.objects.get_mut(key) {
        d["status"] = Value::Object(st);
    }
}

/// The pods of Deployment `d`: one per replica, running, or stuck for the injected
/// reason.
fn pods_of(d: &Value, failure: Option<&str>) -> Vec<Value> {
    let want = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .clamp(0, 100);
    let name = str_at(d, &["metadata", "name"]);
    let ns = str_at(d, &["metadata", "namespace"]);
    let generation = d
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let template = d
        .pointer("/spec/template/metadata")
        .cloned()
        .unwrap_or(json!({}));
    let containers: Vec<(String, String)> = d
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        str_at(c, &["name"]).to_string(),
                        str_at(c, &["image"]).to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let now = now_rfc3339();
    (0..want)
        .map(|i| {
            let pod_name = format!("{name}-{generation:x}f7c9d8b6-{i:05x}");
            let mut conditions = vec![json!({
                "type": "PodScheduled", "status": "True", "lastTransitionTime": now,
            })];
            let mut statuses = Vec::new();
            for (j, (c, image)) in containers.iter().enumerate() {
                let mut cs = json!({
                    "name": c, "image": image, "imageID": "", "ready": true,
                    "restartCount": 0, "started": true,
                    "state": { "running": { "startedAt": now } },
                });
                match failure {
                    // The first container (hoist-server) is the one that fails.
                    Some(reason) if j == 0 && reason != "Unschedulable" => {
                        cs["ready"] = json!(false);
                        cs["started"] = json!(false);
                        match reason {
                            "OOMKilled" => {
                                cs["restartCount"] = json!(1);
                                cs["state"] = json!({ "terminated": {
                                    "exitCode": 137, "reason": "OOMKilled",
                                    "startedAt": now, "finishedAt": now,
                                }});
                            }
                            "CrashLoopBackOff" => {
                                cs["restartCount"] = json!(3);
                                cs["state"] = json!({ "waiting": {
                                    "reason": "CrashLoopBackOff",
                                    "message": format!("back-off 40s restarting failed container={c} pod={pod_name}_{ns}"),
                                }});
                                cs["lastState"] = json!({ "terminated": {
                                    "exitCode": 1, "reason": "Error",
                                    "message": "the fake API server made this container crash",
                                    "startedAt": now, "finishedAt": now,
                                }});
                            }
                            other => {
                                cs["state"] = json!({ "waiting": {
                                    "reason": other,
                                    "message": format!("{other} (injected by the fake API server) for image {image}"),
                                }});
                            }
                        }
                    }
                    _ => {}
                }
                statuses.push(cs);
            }
            let mut phase = if failure.is_some() { "Pending" } else { "Running" };
            if failure == Some("Unschedulable") {
                phase = "Pending";
                statuses.clear();
                conditions = vec![json!({
                    "type": "PodScheduled", "status": "False", "lastTransitionTime": now,
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient memory (injected by the fake API server).",
                })];
            } else if failure.is_none() {
                conditions.push(json!({ "type": "Ready", "status": "True", "lastTransitionTime": now }));
            }
            let mut meta = template.clone();
            if !meta.is_object() {
                meta = json!({});
            }
            meta["name"] = json!(pod_name);
            meta["namespace"] = json!(ns);
            meta["uid"] = json!(format!("00000000-0000-4000-9000-{:012x}", i));
            meta["creationTimestamp"] = json!(now);
            json!({
                "kind": "Pod",
                "apiVersion": "v1",
                "metadata": meta,
                "spec": d.pointer("/spec/template/spec").cloned().unwrap_or(json!({})),
                "status": {
                    "phase": phase,
                    "conditions": conditions,
                    "containerStatuses": statuses,
                },
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Reads.

/// One requirement of an equality-based label selector.
enum Requirement {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
}

fn parse_selector(s: &str) -> Result<Vec<Requirement>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            if let Some((k, v)) = p.split_once("!=") {
                Ok(Requirement::Ne(k.trim().into(), v.trim().into()))
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Ok(Requirement::Eq(k.trim().into(), v.trim().into()))
            } else if p.contains(' ') || p.contains('(') {
                Err(format!(
                    "set-based selector `{p}` is not served by the fake API server"
                ))
            } else if let Some(k) = p.strip_prefix('!') {
                Ok(Requirement::Absent(k.trim().into()))
            } else {
                Ok(Requirement::Exists(p.into()))
            }
        })
        .collect()
}

fn selects(reqs: &[Requirement], labels: Option<&Map<String, Value>>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
        Requirement::Ne(k, v) => get(k) != Some(v.as_str()),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::Absent(k) => get(k).is_none(),
    })
}

fn list(inner: &mut Inner, t: &Target, query: &HashMap<String, String>) -> Answer {
    let reqs = match parse_selector(query.get("labelSelector").map_or("", String::as_str)) {
        Ok(r) => r,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e, None),
    };
    let in_scope = |ns: &str| t.namespace.is_empty() || ns == t.namespace;
    let labels_of = |o: &Value| {
        o.pointer("/metadata/labels")
            .and_then(Value::as_object)
            .cloned()
    };
    let mut items: Vec<Value> = inner
        .objects
        .iter()
        .filter(|((v, p, ns, _), _)| *v == t.api_version && *p == t.plural && in_scope(ns))
        .map(|(_, o)| o.clone())
        .filter(|o| selects(&reqs, labels_of(o).as_ref()))
        .collect();
    if t.plural == "pods" && t.api_version == "v1" {
        for ((_, p, ns, _), d) in &inner.objects {
            if p != "deployments" || !in_scope(ns) {
                continue;
            }
            let failure = failure_of(&inner.failures, d);
            items.extend(
                pods_of(d, failure)
                    .into_iter()
                    .filter(|pod| selects(&reqs, labels_of(pod).as_ref())),
            );
        }
    }
    let version = inner.version.to_string();
    (
        StatusCode::OK,
        json!({
            "kind": format!("{}List", kind_of(&t.plural)),
            "apiVersion": t.api_version,
            "metadata": { "resourceVersion": version },
            "items": items,
        }),
    )
}

// ---------------------------------------------------------------------------------
// Helpers.

fn find<'a>(
    inner: &'a Inner,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Option<(&'a Key, &'a Value)> {
    inner.objects.iter().find(|((_, plural, ns, n), o)| {
        ns == namespace
            && n == name
            && (plural.eq_ignore_ascii_case(kind)
                || str_at(o, &["kind"]).eq_ignore_ascii_case(kind))
    })
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut v = v;
    for p in path {
        match v.get(p) {
            Some(x) => v = x,
            None => return "",
        }
    }
    v.as_str().unwrap_or("")
}

/// The resource plural of a kind.
fn plural_of(kind: &str) -> String {
    KNOWN
        .iter()
        .find(|(_, k)| *k == kind)
        .map(|(p, _)| p.to_string())
        .unwrap_or_else(|| format!("{}s", kind.to_ascii_lowercase()))
}

/// The kind of a resource plural (for lists and objects sent without a kind).
fn kind_of(plural: &str) -> String {
    KNOWN
        .iter()
        .find(|(p, _)| *p == plural)
        .map(|(_, k)| k.to_string())
        .unwrap_or_else(|| {
            let mut k = plural.trim_end_matches('s').to_string();
            if let Some(first) = k.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            k
        })
}

/// (plural, kind) of the kinds hoist writes or reads.
const KNOWN: [(&str, &str); 16] = [
    ("namespaces", "Namespace"),
    ("pods", "Pod"),
    ("services", "Service"),
    ("serviceaccounts", "ServiceAccount"),
    ("configmaps", "ConfigMap"),
    ("secrets", "Secret"),
    ("deployments", "Deployment"),
    ("roles", "Role"),
    ("rolebindings", "RoleBinding"),
    ("leases", "Lease"),
    ("horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ("poddisruptionbudgets", "PodDisruptionBudget"),
    ("networkpolicies", "NetworkPolicy"),
    ("servicemonitors", "ServiceMonitor"),
    ("httproutes", "HTTPRoute"),
    ("events", "Event"),
];

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_like_the_api_server_routes_them() {
        let t = parse_path("/apis/apps/v1/namespaces/p/deployments/x/scale").unwrap();
        assert_eq!(
            (
                t.api_version.as_str(),
                t.plural.as_str(),
                t.namespace.as_str()
            ),
            ("apps/v1", "deployments", "p")
        );
        assert_eq!(t.name.as_deref(), Some("x"));
        assert_eq!(t.subresource.as_deref(), Some("scale"));
        let t = parse_path("/api/v1/namespaces/hoist-prod").unwrap();
        assert_eq!(
            (t.plural.as_str(), t.namespace.as_str()),
            ("namespaces", "")
        );
        assert_eq!(t.name.as_deref(), Some("hoist-prod"));
        let t = parse_path("/api/v1/namespaces/p/pods").unwrap();
        assert_eq!((t.plural.as_str(), t.name.as_deref()), ("pods", None));
        assert!(parse_path("/healthz").is_none());
    }

    #[test]
    fn selectors_are_equality_based() {
        let mut l = Map::new();
        l.insert("a".into(), json!("1"));
        let r = parse_selector("a=1,b!=2,!c").unwrap();
        assert!(selects(&r, Some(&l)));
        assert!(!selects(&parse_selector("a==2").unwrap(), Some(&l)));
        assert!(selects(&parse_selector("a").unwrap(), Some(&l)));
        assert!(parse_selector("a in (1,2)").is_err());
    }

    #[test]
    fn inserted_deployments_roll_out_unless_their_pods_fail() {
        let api = FakeKubeApi::start();
        let d = api.insert(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "m-stable", "namespace": "p" },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "app": "m", "variant": "stable" } },
                "template": { "metadata": { "labels": { "app": "m", "variant": "stable" } } },
            },
        }));
        assert_eq!(d["metadata"]["generation"], 1);
        assert_eq!(d["status"]["availableReplicas"], 2);
        assert_eq!(api.deployment_replicas("p", "m-stable"), Some(2));
        api.fail_pods("variant=stable", "ImagePullBackOff");
        let d = api.object("deployments", "p", "m-stable").unwrap();
        assert!(d["status"]["availableReplicas"].is_null(), "{d}");
        api.heal_pods();
        let d = api.object("Deployment", "p", "m-stable").unwrap();
        assert_eq!(d["status"]["availableReplicas"], 2);
        assert_eq!(
            api.objects(),
            [(
                "Deployment".to_string(),
                "p".to_string(),
                "m-stable".to_string()
            )]
        );
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }
}
