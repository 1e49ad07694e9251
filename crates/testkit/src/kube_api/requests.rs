//! Requests: where one points, and the router that answers it (Kubernetes `Status`
//! errors of the real shape).

use super::*;

/// Where a request points.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) api_version: String,
    pub(super) plural: String,
    pub(super) namespace: String,
    pub(super) name: Option<String>,
    pub(super) subresource: Option<String>,
}

impl Target {
    pub(super) fn key(&self, name: &str) -> Key {
        (
            self.api_version.clone(),
            self.plural.clone(),
            self.namespace.clone(),
            name.to_string(),
        )
    }

    /// `deployments.apps` / `pods`: how the API server names the resource in errors.
    pub(super) fn qualified(&self) -> String {
        match self.api_version.split_once('/') {
            Some((group, _)) => format!("{}.{group}", self.plural),
            None => self.plural.clone(),
        }
    }

    pub(super) fn group(&self) -> Option<&str> {
        self.api_version.split_once('/').map(|(g, _)| g)
    }
}

/// `/api/v1/...` or `/apis/GROUP/VERSION/...` into a [`Target`].
pub(super) fn parse_path(path: &str) -> Option<Target> {
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

pub(super) async fn handle(
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

pub(super) type Answer = (StatusCode, Value);

pub(super) fn route(
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

pub(super) fn details(t: &Target, name: &str) -> Value {
    let mut d = Map::new();
    d.insert("name".into(), json!(name));
    if let Some(g) = t.group() {
        d.insert("group".into(), json!(g));
    }
    d.insert("kind".into(), json!(t.plural));
    Value::Object(d)
}

/// A Kubernetes `Status` failure.
pub(super) fn status(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<Value>,
) -> Answer {
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

pub(super) fn not_found(t: &Target, name: &str) -> Answer {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{} \"{name}\" not found", t.qualified()),
        Some(details(t, name)),
    )
}
