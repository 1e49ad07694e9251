//! Reads: label selectors and LIST.

use super::*;

/// One requirement of an equality-based label selector.
pub(super) enum Requirement {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
}

pub(super) fn parse_selector(s: &str) -> Result<Vec<Requirement>, String> {
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

pub(super) fn selects(reqs: &[Requirement], labels: Option<&Map<String, Value>>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
        Requirement::Ne(k, v) => get(k) != Some(v.as_str()),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::Absent(k) => get(k).is_none(),
    })
}

pub(super) fn list(inner: &mut Inner, t: &Target, query: &HashMap<String, String>) -> Answer {
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
