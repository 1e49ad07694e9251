//! The simulated Deployment controller and kubelet.

use super::*;

pub(super) fn match_labels(d: &Value) -> BTreeMap<String, String> {
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
pub(super) fn failure_of<'a>(failures: &'a [(String, String)], d: &Value) -> Option<&'a str> {
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

pub(super) fn reconcile_all(inner: &mut Inner) {
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
pub(super) fn reconcile(inner: &mut Inner, key: &Key) {
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
pub(super) fn pods_of(d: &Value, failure: Option<&str>) -> Vec<Value> {
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
