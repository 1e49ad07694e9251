//! Labels, selectors, object metadata and the pin annotations every object shares.

use super::*;

pub(super) fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels([("app.kubernetes.io/part-of", "hoist")])),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub(super) fn labels<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Labels every object of the environment carries.
pub(super) fn common(spec: &AppSpec) -> BTreeMap<String, String> {
    labels([
        (LABEL_APP, spec.app.as_str()),
        ("app.kubernetes.io/part-of", "hoist"),
        ("app.kubernetes.io/managed-by", "hoist"),
        (LABEL_ENV, spec.env.as_str()),
    ])
}

/// The selector of one variant's pods (immutable once a Deployment exists).
pub fn selector(spec: &AppSpec, v: Variant) -> BTreeMap<String, String> {
    labels([(LABEL_APP, spec.app.as_str()), (LABEL_VARIANT, v.as_str())])
}

/// The `app.kubernetes.io/name=APP,hoist.dev/variant=V` form of [`selector`].
pub fn selector_string(spec: &AppSpec, v: Variant) -> String {
    selector(spec, v)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn meta(spec: &AppSpec, name: String, extra: BTreeMap<String, String>) -> ObjectMeta {
    let mut l = common(spec);
    l.extend(extra);
    ObjectMeta {
        name: Some(name),
        namespace: Some(spec.namespace.clone()),
        labels: Some(l),
        ..Default::default()
    }
}

/// The `hoist.dev/*` annotations that say which model a Deployment runs; they are
/// how a controller that lost its journal finds out what is live.
pub fn pin_annotations(pin: &ModelPin) -> BTreeMap<String, String> {
    let mut a = labels([
        (ANN_MODEL, pin.name.as_str()),
        (ANN_VERSION, pin.version.as_str()),
        (ANN_DIGEST, pin.digest.as_str()),
    ]);
    if let Some(artifact) = &pin.artifact {
        a.insert(ANN_ARTIFACT.into(), artifact.clone());
    }
    a
}
