//! Writes: admission, create, replace, server-side apply, merge patches, the `scale`
//! subresource.

use super::*;

pub(super) fn next_version(inner: &mut Inner) -> String {
    inner.version += 1;
    inner.version.to_string()
}

/// Everything but `metadata` and `status`: what bumps the generation.
pub(super) fn desired(o: &Value) -> Value {
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
pub(super) fn admit(
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

pub(super) fn store(inner: &mut Inner, t: &Target, name: &str, obj: Value) -> Value {
    let key = t.key(name);
    inner.objects.insert(key.clone(), obj);
    if t.plural == "deployments" {
        reconcile(inner, &key);
    }
    inner.objects[&key].clone()
}

pub(super) fn create(inner: &mut Inner, t: &Target, obj: Value) -> Answer {
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

pub(super) fn replace(inner: &mut Inner, t: &Target, name: &str, obj: Value) -> Answer {
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

pub(super) fn apply(inner: &mut Inner, t: &Target, name: &str, obj: Value) -> Answer {
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
pub(super) fn merge(
    inner: &mut Inner,
    t: &Target,
    name: &str,
    patch: Value,
    scale: bool,
) -> Answer {
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

pub(super) fn merge_patch(target: &mut Value, patch: &Value) {
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
pub(super) fn scale_of(d: &Value) -> Value {
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
