//! Helpers: lookups in JSON objects, kinds and plurals, timestamps.

use super::*;

pub(super) fn find<'a>(
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

pub(super) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
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
pub(super) fn plural_of(kind: &str) -> String {
    KNOWN
        .iter()
        .find(|(_, k)| *k == kind)
        .map(|(p, _)| p.to_string())
        .unwrap_or_else(|| format!("{}s", kind.to_ascii_lowercase()))
}

/// The kind of a resource plural (for lists and objects sent without a kind).
pub(super) fn kind_of(plural: &str) -> String {
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
pub(super) const KNOWN: [(&str, &str); 16] = [
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
pub(super) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = hoist_types::time::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
