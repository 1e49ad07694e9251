//! The cluster client against kube-rs's mock service (`tower_test::mock::pair` behind
//! a real `kube::Client`): no API server runs here. Each test is a recorded scenario:
//! the requests the client must make, in order, and the API server's answers; the
//! test fails on any request out of script, and checks what the caller gets back.

use std::future::Future;
use std::time::Duration;

use hoist_targets::kubernetes::render;
use hoist_targets::kubernetes::{
    AppSpec, Cluster, Error, GatewayRef, ModelPin, ModelSource, SplitMode, Variant,
};
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::time::Instant;

const NS: &str = "hoist-production";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/hoist-production/deployments";
const PODS: &str = "/api/v1/namespaces/hoist-production/pods";
const ROUTE: &str =
    "/apis/gateway.networking.k8s.io/v1/namespaces/hoist-production/httproutes/fraud";
const IMAGE: &str = "registry.example.com/hoist/hoist@sha256:0f4e3d2c1b0a99887766554433221100ffeeddccbbaa99887766554433221100";

fn pin(version: &str, fill: char) -> ModelPin {
    ModelPin {
        name: "fraud".into(),
        version: version.into(),
        digest: format!("sha256:{}", fill.to_string().repeat(64)),
        artifact: None,
    }
}

fn spec(gateway: bool) -> AppSpec {
    let mut s = AppSpec::new(
        "fraud",
        "production",
        NS,
        IMAGE,
        pin("3", 'a'),
        ModelSource::Registry {
            url: "http://mlflow.mlflow.svc:5000".into(),
            credentials_secret: Some("mlflow-credentials".into()),
        },
    );
    s.candidate = Some(pin("4", 'b'));
    if gateway {
        s.gateway = Some(GatewayRef {
            name: "public".into(),
            namespace: Some("gateway-system".into()),
            section_name: None,
        });
    }
    s
}

/// One request the client must make and the answer it gets.
struct Step {
    method: &'static str,
    path: String,
    status: u16,
    /// `None`: answer with the request's own body (what an apply returns).
    body: Option<Value>,
}

fn step(method: &'static str, path: impl Into<String>, status: u16, body: Value) -> Step {
    Step {
        method,
        path: path.into(),
        status,
        body: Some(body),
    }
}

/// A request as the mock API server saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    content_type: String,
    body: Value,
}

impl Seen {
    fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Runs `call` with a client whose API server follows `steps`; returns what the call
/// returned and every request seen. A request out of script fails the test with its
/// method and path; so does a step the client never made.
async fn scenario<T, F, Fut>(steps: Vec<Step>, call: F) -> (T, Vec<Seen>)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = T>,
{
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let expected = steps.len();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        for (i, step) in steps.into_iter().enumerate() {
            let Some((req, send)) = handle.next_request().await else {
                break;
            };
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    // An apply body is YAML-typed but JSON-encoded; be lenient anyway.
                    serde_yaml::from_slice(&bytes).unwrap()
                })
            };
            let rec = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts
                    .uri
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        (
                            k.to_string(),
                            v.replace("%2C", ",")
                                .replace("%3D", "=")
                                .replace("%2F", "/"),
                        )
                    })
                    .collect(),
                content_type: parts
                    .headers
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default(),
                body,
            };
            assert_eq!(
                (rec.method.as_str(), rec.path.as_str()),
                (step.method, step.path.as_str()),
                "request {i} of the scenario"
            );
            let answer = step.body.unwrap_or_else(|| rec.body.clone());
            send.send_response(
                Response::builder()
                    .status(step.status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap(),
            );
            seen.push(rec);
        }
        seen
    });
    let out = call(client).await;
    let seen = server.await.expect("the scenario's API server");
    assert_eq!(
        seen.len(),
        expected,
        "the client made {} of the {expected} requests of the scenario: {:?}",
        seen.len(),
        seen.iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect::<Vec<_>>()
    );
    (out, seen)
}

fn cluster(client: Client, gateway: bool) -> Cluster {
    Cluster::new(client, spec(gateway), "hoist")
        .unwrap()
        .with_poll_interval(Duration::from_millis(5))
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn status(code: u16, reason: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{reason} (scripted)"), "reason": reason, "code": code,
    })
}

/// A Deployment as the API server returns it.
/// `(generation, observedGeneration)` and `(spec.replicas, updated, available, all)`.
fn deploy(
    v: Variant,
    p: &ModelPin,
    (generation, observed): (i64, i64),
    (replicas, updated, available, total): (i32, i32, i32, i32),
) -> Value {
    let mut d =
        serde_json::to_value(render::deployment(&spec(true), v, p, Some(replicas))).unwrap();
    d["metadata"]["generation"] = json!(generation);
    d["status"] = json!({
        "observedGeneration": observed,
        "replicas": total,
        "updatedReplicas": updated,
        "availableReplicas": available,
    });
    d
}

fn pods(items: Vec<Value>) -> Value {
    json!({ "kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items })
}

/// A pod of the candidate with one container in `state` (and `last` as its last state).
fn pod(name: &str, digest: &str, container: &str, state: Value, last: Value) -> Value {
    json!({
        "metadata": { "name": name, "annotations": { "hoist.dev/digest": digest } },
        "status": {
            "phase": "Running",
            "containerStatuses": [{
                "name": container, "image": IMAGE, "imageID": "", "ready": false,
                "restartCount": 3, "state": state, "lastState": last,
            }],
        },
    })
}

fn waiting(reason: &str, message: &str) -> Value {
    json!({ "waiting": { "reason": reason, "message": message } })
}

#[tokio::test]
async fn mock_api_apply_is_server_side_apply_under_hoists_field_manager() {
    let s = spec(true);
    let m = render::render(&s).unwrap();
    let steps: Vec<Step> = m
        .objects
        .iter()
        .map(|o| {
            let path = match o.kind() {
                "Namespace" => format!("/api/v1/namespaces/{}", o.name()),
                kind => {
                    let (prefix, plural) = match kind {
                        "ServiceAccount" => ("/api/v1", "serviceaccounts"),
                        "Service" => ("/api/v1", "services"),
                        "Role" => ("/apis/rbac.authorization.k8s.io/v1", "roles"),
                        "RoleBinding" => ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
                        "Deployment" => ("/apis/apps/v1", "deployments"),
                        "HorizontalPodAutoscaler" => {
                            ("/apis/autoscaling/v2", "horizontalpodautoscalers")
                        }
                        "PodDisruptionBudget" => ("/apis/policy/v1", "poddisruptionbudgets"),
                        "NetworkPolicy" => ("/apis/networking.k8s.io/v1", "networkpolicies"),
                        "ServiceMonitor" => ("/apis/monitoring.coreos.com/v1", "servicemonitors"),
                        "HTTPRoute" => ("/apis/gateway.networking.k8s.io/v1", "httproutes"),
                        other => panic!("no path for {other}"),
                    };
                    format!("{prefix}/namespaces/{NS}/{plural}/{}", o.name())
                }
            };
            Step {
                method: "PATCH",
                path,
                status: 200,
                body: None,
            }
        })
        .collect();
    let (r, seen) = scenario(steps, |c| async move { cluster(c, true).apply(&m).await }).await;
    r.unwrap();
    let m = render::render(&s).unwrap();
    for (req, obj) in seen.iter().zip(&m.objects) {
        assert_eq!(req.query("fieldManager"), Some("hoist"), "{}", req.path);
        assert_eq!(req.query("force"), Some("true"), "{}", req.path);
        assert_eq!(req.content_type, "application/apply-patch+yaml");
        assert_eq!(
            req.body,
            serde_json::to_value(obj).unwrap(),
            "the body is the rendered {} {}",
            obj.kind(),
            obj.name()
        );
    }
}

#[tokio::test]
async fn mock_api_wait_rollout_follows_the_deployment_to_completion() {
    let c4 = pin("4", 'b');
    let name = format!("{DEPLOYMENTS}/fraud-candidate");
    let steps = vec![
        // The Deployment controller has not seen the new spec yet.
        step(
            "GET",
            &name,
            200,
            deploy(Variant::Candidate, &c4, (2, 1), (3, 0, 0, 3)),
        ),
        step("GET", PODS, 200, pods(vec![])),
        // Two of three updated; an old pod (another digest) crash-loops: not ours.
        step(
            "GET",
            &name,
            200,
            deploy(Variant::Candidate, &c4, (2, 2), (3, 2, 1, 4)),
        ),
        step(
            "GET",
            PODS,
            200,
            pods(vec![
                pod(
                    "fraud-candidate-old",
                    &pin("2", 'c').digest,
                    "hoist-server",
                    waiting("CrashLoopBackOff", "back-off 5m0s"),
                    json!({}),
                ),
                pod(
                    "fraud-candidate-new",
                    &c4.digest,
                    "hoist-server",
                    waiting("ContainerCreating", ""),
                    json!({}),
                ),
            ]),
        ),
        step(
            "GET",
            &name,
            200,
            deploy(Variant::Candidate, &c4, (2, 2), (3, 3, 3, 3)),
        ),
    ];
    let (r, seen) = scenario(steps, |c| async move {
        cluster(c, true)
            .wait_rollout(Variant::Candidate, far())
            .await
    })
    .await;
    assert_eq!(r.unwrap().replicas, 3);
    assert_eq!(
        seen[1].query("labelSelector"),
        Some("app.kubernetes.io/name=fraud,hoist.dev/variant=candidate")
    );
}

/// Each reason a pod cannot start ends the wait with that reason, the pod and the
/// container in the message.
#[tokio::test]
async fn mock_api_rollout_failure_reasons_surface_in_the_error() {
    let c4 = pin("4", 'b');
    let terminated = |reason: &str, code: i32| json!({ "terminated": { "reason": reason, "exitCode": code, "message": "cannot load the model" } });
    let cases = [
        (
            "fetch-model",
            waiting(
                "CrashLoopBackOff",
                "back-off 40s restarting failed container",
            ),
            terminated("Error", 4),
            "CrashLoopBackOff",
            "last exit code 4: cannot load the model",
        ),
        (
            "hoist-server",
            waiting("ImagePullBackOff", "Back-off pulling image"),
            json!({}),
            "ImagePullBackOff",
            "Back-off pulling image",
        ),
        (
            "hoist-server",
            waiting("ErrImagePull", "manifest unknown"),
            json!({}),
            "ErrImagePull",
            "manifest unknown",
        ),
        (
            "hoist-server",
            waiting("CrashLoopBackOff", "back-off"),
            terminated("OOMKilled", 137),
            "OOMKilled",
            "ran out of memory",
        ),
    ];
    for (container, state, last, reason, detail) in cases {
        let name = format!("{DEPLOYMENTS}/fraud-candidate");
        let steps = vec![
            step(
                "GET",
                &name,
                200,
                deploy(Variant::Candidate, &c4, (2, 2), (3, 1, 0, 3)),
            ),
            step(
                "GET",
                PODS,
                200,
                pods(vec![pod(
                    "fraud-candidate-x1",
                    &c4.digest,
                    container,
                    state,
                    last,
                )]),
            ),
        ];
        let (r, _) = scenario(steps, |c| async move {
            cluster(c, true)
                .wait_rollout(Variant::Candidate, far())
                .await
        })
        .await;
        let e = r.unwrap_err();
        match &e {
            Error::PodFailed {
                pod,
                container: got,
                reason: got_reason,
                ..
            } => {
                assert_eq!(pod, "fraud-candidate-x1");
                assert_eq!(got, container);
                assert_eq!(got_reason, reason);
            }
            other => panic!("{reason}: expected PodFailed, got {other:?}"),
        }
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "rollout of hoist-production/fraud-candidate failed: pod fraud-candidate-x1"
            ),
            "{msg}"
        );
        assert!(msg.contains(reason) && msg.contains(detail), "{msg}");
    }
}

#[tokio::test]
async fn mock_api_rollout_progress_deadline_is_a_failure() {
    let c4 = pin("4", 'b');
    let mut d = deploy(Variant::Candidate, &c4, (2, 2), (3, 1, 0, 3));
    d["status"]["conditions"] = json!([{
        "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
        "message": "ReplicaSet \"fraud-candidate-5d9\" has timed out progressing.",
    }]);
    let steps = vec![step(
        "GET",
        format!("{DEPLOYMENTS}/fraud-candidate"),
        200,
        d,
    )];
    let (r, _) = scenario(steps, |c| async move {
        cluster(c, true)
            .wait_rollout(Variant::Candidate, far())
            .await
    })
    .await;
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("ProgressDeadlineExceeded") && msg.contains("timed out progressing"),
        "{msg}"
    );
}

/// The deadline ends the wait with how far the rollout got (paused time: the polls
/// at 0, 2, 4 and 5 seconds are the whole script).
#[tokio::test(start_paused = true)]
async fn mock_api_rollout_deadline_reports_progress() {
    let c4 = pin("4", 'b');
    let name = format!("{DEPLOYMENTS}/fraud-candidate");
    let mut steps = Vec::new();
    for _ in 0..4 {
        steps.push(step(
            "GET",
            &name,
            200,
            deploy(Variant::Candidate, &c4, (2, 2), (3, 1, 1, 3)),
        ));
        steps.push(step("GET", PODS, 200, pods(vec![])));
    }
    let (r, _) = scenario(steps, |c| async move {
        let cl = Cluster::new(c, spec(true), "hoist")
            .unwrap()
            .with_poll_interval(Duration::from_secs(2));
        cl.wait_rollout(Variant::Candidate, Instant::now() + Duration::from_secs(5))
            .await
    })
    .await;
    let e = r.unwrap_err();
    assert!(matches!(e, Error::RolloutTimeout { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "rollout of hoist-production/fraud-candidate did not finish within 5s: \
         1 of 3 replicas updated, 1 available, 3 in all"
    );
}

#[tokio::test]
async fn mock_api_set_weights_applies_the_httproute_once() {
    let steps = vec![Step {
        method: "PATCH",
        path: ROUTE.into(),
        status: 200,
        body: None,
    }];
    let (r, seen) = scenario(steps, |c| async move {
        cluster(c, true).set_weights(25, far()).await
    })
    .await;
    let split = r.unwrap();
    assert_eq!(split.mode, SplitMode::Gateway);
    assert_eq!((split.requested, split.effective), (25, 25));
    let req = &seen[0];
    assert_eq!(req.query("fieldManager"), Some("hoist"));
    assert_eq!(req.query("force"), Some("true"));
    assert_eq!(req.content_type, "application/apply-patch+yaml");
    let rules = req.body["spec"]["rules"].as_array().unwrap();
    let weighted = rules.last().unwrap()["backendRefs"].clone();
    assert_eq!(
        weighted,
        json!([
            { "name": "fraud-stable", "port": 80, "weight": 75 },
            { "name": "fraud-candidate", "port": 80, "weight": 25 },
        ])
    );
    assert_eq!(req.body["spec"]["parentRefs"][0]["name"], "public");
}

/// Without a Gateway the candidate's replicas carry the split, and the share really
/// set is returned: 10% beside 3 stable pods is 1 candidate pod, 25%.
#[tokio::test]
async fn mock_api_set_weights_without_gateway_is_a_replica_ratio() {
    let a3 = pin("3", 'a');
    let steps = vec![
        step(
            "GET",
            format!("{DEPLOYMENTS}/fraud-stable"),
            200,
            deploy(Variant::Stable, &a3, (1, 1), (3, 3, 3, 3)),
        ),
        step(
            "PATCH",
            format!("{DEPLOYMENTS}/fraud-candidate/scale"),
            200,
            json!({ "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {}, "spec": { "replicas": 1 } }),
        ),
    ];
    let (r, seen) = scenario(steps, |c| async move {
        cluster(c, false).set_weights(10, far()).await
    })
    .await;
    let split = r.unwrap();
    assert_eq!(split.mode, SplitMode::ReplicaRatio);
    assert_eq!((split.requested, split.effective), (10, 25));
    assert_eq!(
        (split.stable_replicas, split.candidate_replicas),
        (Some(3), Some(1))
    );
    assert_eq!(seen[1].content_type, "application/merge-patch+json");
    assert_eq!(seen[1].body, json!({ "spec": { "replicas": 1 } }));
}

/// Rollback: the route goes to 100% stable in one apply before the candidate is
/// scaled to zero, never the other way round.
#[tokio::test]
async fn mock_api_rollback_routes_to_stable_first_then_scales_candidate_to_zero() {
    let b4 = pin("4", 'b');
    let steps = vec![
        Step {
            method: "PATCH",
            path: ROUTE.into(),
            status: 200,
            body: None,
        },
        step(
            "GET",
            format!("{DEPLOYMENTS}/fraud-candidate"),
            200,
            deploy(Variant::Candidate, &b4, (2, 2), (3, 3, 3, 3)),
        ),
        step(
            "PATCH",
            format!("{DEPLOYMENTS}/fraud-candidate/scale"),
            200,
            json!({ "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {}, "spec": { "replicas": 0 } }),
        ),
    ];
    let (r, seen) = scenario(
        steps,
        |c| async move { cluster(c, true).rollback(far()).await },
    )
    .await;
    r.unwrap();
    let weights: Vec<i64> = seen[0].body["spec"]["rules"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["backendRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["weight"].as_i64().unwrap())
        .collect();
    assert_eq!(weights, [100, 0]);
    assert_eq!(seen[0].query("force"), Some("true"));
    assert_eq!(seen[2].body, json!({ "spec": { "replicas": 0 } }));
}

/// Promotion: stable is applied with the candidate's model and rolled out, then the
/// route goes to 100% stable, then the candidate is scaled to zero.
#[tokio::test]
async fn mock_api_promote_rolls_stable_to_the_candidate_then_retires_it() {
    let (a3, b4) = (pin("3", 'a'), pin("4", 'b'));
    let route = serde_json::to_value(render::http_route(&spec(true), 50)).unwrap();
    let steps = vec![
        step(
            "GET",
            format!("{DEPLOYMENTS}/fraud-stable"),
            200,
            deploy(Variant::Stable, &a3, (1, 1), (3, 3, 3, 3)),
        ),
        step(
            "GET",
            format!("{DEPLOYMENTS}/fraud-candidate"),
            200,
            deploy(Variant::Candidate, &b4, (1, 1), (3, 3, 3, 3)),
        ),
        step("GET", ROUTE, 200, route),
        Step {
            method: "PATCH",
            path: format!("{DEPLOYMENTS}/fraud-stable"),
            status: 200,
            body: None,
        },
        step(
            "GET",
            format!("{DEPLOYMENTS}/fraud-stable"),
            200,
            deploy(Variant::Stable, &b4, (2, 2), (3, 3, 3, 3)),
        ),
        Step {
            method: "PATCH",
            path: ROUTE.into(),
            status: 200,
            body: None,
        },
        step(
            "PATCH",
            format!("{DEPLOYMENTS}/fraud-candidate/scale"),
            200,
            json!({ "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {}, "spec": { "replicas": 0 } }),
        ),
    ];
    let (r, seen) = scenario(
        steps,
        |c| async move { cluster(c, true).promote(far()).await },
    )
    .await;
    assert_eq!(r.unwrap(), b4);
    let applied = &seen[3].body;
    assert_eq!(applied["metadata"]["annotations"]["hoist.dev/version"], "4");
    assert_eq!(
        applied["metadata"]["annotations"]["hoist.dev/digest"],
        b4.digest.as_str()
    );
    assert!(
        applied["spec"].get("replicas").is_none(),
        "the autoscaler keeps the stable count"
    );
    assert_eq!(
        seen[5].body["spec"]["rules"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["backendRefs"][1]["weight"],
        0
    );
    assert_eq!(seen[6].body, json!({ "spec": { "replicas": 0 } }));
}

/// A controller that lost its journal reads what is live from the annotations and
/// the route.
#[tokio::test]
async fn mock_api_live_recovers_versions_from_annotations() {
    let (a3, b4) = (pin("3", 'a'), pin("4", 'b'));
    let mut route = serde_json::to_value(render::http_route(&spec(true), 25)).unwrap();
    route["status"] = json!({ "parents": [] });
    let steps = vec![
        step(
            "GET",
            format!("{DEPLOYMENTS}/fraud-stable"),
            200,
            deploy(Variant::Stable, &a3, (1, 1), (3, 3, 3, 3)),
        ),
        step(
            "GET",
            format!("{DEPLOYMENTS}/fraud-candidate"),
            200,
            deploy(Variant::Candidate, &b4, (1, 1), (3, 3, 2, 3)),
        ),
        step("GET", ROUTE, 200, route),
    ];
    let (r, _) = scenario(steps, |c| async move { cluster(c, true).live().await }).await;
    let live = r.unwrap();
    assert_eq!(live.stable.as_ref().unwrap().pin, a3);
    let cand = live.candidate.as_ref().unwrap();
    assert_eq!(cand.pin, b4);
    assert_eq!((cand.replicas, cand.available), (3, 2));
    assert_eq!(live.candidate_weight, 25);

    // No candidate Deployment: none, and no traffic to it.
    let steps = vec![
        step(
            "GET",
            format!("{DEPLOYMENTS}/fraud-stable"),
            200,
            deploy(Variant::Stable, &a3, (1, 1), (3, 3, 3, 3)),
        ),
        step(
            "GET",
            format!("{DEPLOYMENTS}/fraud-candidate"),
            404,
            status(404, "NotFound"),
        ),
    ];
    let (r, _) = scenario(steps, |c| async move { cluster(c, false).live().await }).await;
    let live = r.unwrap();
    assert!(live.candidate.is_none());
    assert_eq!(live.candidate_weight, 0);

    // A Deployment hoist did not apply is named, not guessed at.
    let mut foreign = deploy(Variant::Stable, &a3, (1, 1), (3, 3, 3, 3));
    foreign["metadata"]["annotations"] = json!({});
    let steps = vec![step(
        "GET",
        format!("{DEPLOYMENTS}/fraud-stable"),
        200,
        foreign,
    )];
    let (r, _) = scenario(steps, |c| async move { cluster(c, false).live().await }).await;
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("hoist.dev/model") && msg.contains("not applied by hoist"),
        "{msg}"
    );
}

#[tokio::test]
async fn mock_api_errors_name_the_call() {
    let steps = vec![step("PATCH", ROUTE, 403, status(403, "Forbidden"))];
    let (r, _) = scenario(steps, |c| async move {
        cluster(c, true).set_weights(50, far()).await
    })
    .await;
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.starts_with("apply HTTPRoute hoist-production/fraud:"),
        "{msg}"
    );
    assert!(msg.contains("Forbidden"), "{msg}");
}

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/hoist-system/leases/hoist-controller";

fn lease(holder: &str, renewed_secs_ago: i64) -> Value {
    let t = k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::from_secs(renewed_secs_ago);
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "hoist-controller", "namespace": "hoist-system", "resourceVersion": "7" },
        "spec": {
            "holderIdentity": holder, "leaseDurationSeconds": 15,
            "renewTime": t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), "leaseTransitions": 1,
        },
    })
}

/// Leader election: a free Lease is created, a fresh one held by another replica is
/// left alone, an expired one is taken over, and a lost race (409) is not leading.
#[tokio::test]
async fn mock_api_lease_elects_one_leader() {
    let take = |c: Client| async move {
        cluster(c, true)
            .try_acquire_lease(
                "hoist-system",
                "hoist-controller",
                "pod-a",
                Duration::from_secs(15),
            )
            .await
    };
    let steps = vec![
        step("GET", LEASE, 404, status(404, "NotFound")),
        Step {
            method: "POST",
            path: "/apis/coordination.k8s.io/v1/namespaces/hoist-system/leases".into(),
            status: 201,
            body: None,
        },
    ];
    let (r, seen) = scenario(steps, take).await;
    assert!(r.unwrap());
    assert_eq!(seen[1].body["spec"]["holderIdentity"], "pod-a");

    let (r, _) = scenario(vec![step("GET", LEASE, 200, lease("pod-b", 3))], take).await;
    assert!(!r.unwrap(), "pod-b renewed 3 s ago: it leads");

    let steps = vec![
        step("GET", LEASE, 200, lease("pod-b", 60)),
        Step {
            method: "PUT",
            path: LEASE.into(),
            status: 200,
            body: None,
        },
    ];
    let (r, seen) = scenario(steps, take).await;
    assert!(r.unwrap(), "pod-b's lease expired 45 s ago");
    assert_eq!(seen[1].body["spec"]["holderIdentity"], "pod-a");
    assert_eq!(seen[1].body["spec"]["leaseTransitions"], 2);
    assert_eq!(seen[1].body["metadata"]["resourceVersion"], "7");

    let steps = vec![
        step("GET", LEASE, 200, lease("pod-b", 60)),
        step("PUT", LEASE, 409, status(409, "Conflict")),
    ];
    let (r, _) = scenario(steps, take).await;
    assert!(!r.unwrap(), "another replica took it first");
}
