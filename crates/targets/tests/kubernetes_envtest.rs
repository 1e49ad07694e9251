//! The cluster client end to end against a real Kubernetes control plane
//! (`tools/envtest.sh`: kube-apiserver with RBAC, kube-controller-manager,
//! kube-scheduler, etcd, and kwok's fake node; see `hoist_testkit::kube_api::envtest`).
//! Server-side apply, defaulting and validation (the Gateway API's and the
//! ServiceMonitor's CRD schemas included), the Deployment and ReplicaSet controllers'
//! rollouts, the scheduler and Leases are the real ones. Pods run nothing: kwok marks
//! them Running and Ready, or fails them with a reason when their template carries
//! [`FAIL_ANNOTATION`] (how these tests make a candidate crash-loop).
//!
//! The order of requests within one operation (traffic moved before the candidate
//! shrinks) is pinned by the scripted kube mock tests in `kubernetes_client.rs`, which
//! see every request; a real server shows only the outcome.
//!
//! Skipped (with a message) only when there is no control plane and
//! `HOIST_REQUIRE_ENVTEST` is unset; `tools/test.sh` sets it.

use std::path::Path;
use std::time::Duration;

use hoist_targets::kubernetes::render;
use hoist_targets::kubernetes::{
    AppSpec, Cluster, Error, GatewayRef, ModelPin, ModelSource, SplitMode, Variant,
};
use hoist_testkit::kube_api::envtest::{Envtest, FAIL_ANNOTATION};
use k8s_openapi::api::apps::v1::Deployment;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::Value;
use tokio::time::Instant;

const IMAGE: &str = "registry.example.com/hoist/hoist@sha256:0f4e3d2c1b0a99887766554433221100ffeeddccbbaa99887766554433221100";

fn pin(version: &str, fill: char) -> ModelPin {
    ModelPin {
        name: "fraud".into(),
        version: version.into(),
        digest: format!("sha256:{}", fill.to_string().repeat(64)),
        artifact: None,
    }
}

fn spec(ns: &str, gateway: bool) -> AppSpec {
    let mut s = AppSpec::new(
        "fraud",
        "production",
        ns,
        IMAGE,
        pin("3", 'a'),
        ModelSource::Registry {
            url: "http://mlflow.mlflow.svc:5000".into(),
            credentials_secret: Some("mlflow-credentials".into()),
        },
    );
    if gateway {
        s.gateway = Some(GatewayRef {
            name: "public".into(),
            namespace: Some("gateway-system".into()),
            section_name: None,
        });
    } else {
        s.autoscale = None;
        s.replicas = 3;
    }
    s
}

async fn client(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

async fn cluster(k: &Envtest, s: AppSpec) -> Cluster {
    Cluster::new(client(&k.kubeconfig).await, s, "hoist")
        .unwrap()
        .with_poll_interval(Duration::from_millis(200))
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

fn annotation(d: &Value, key: &str) -> String {
    d["metadata"]["annotations"][key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The (stable, candidate) weights of the route's weighted rule (the one with both
/// backends; the others force a variant by header).
fn route_weights(k: &Envtest, ns: &str, name: &str) -> Option<(i64, i64)> {
    let r = k.get_json("httproute", ns, name)?;
    let rule = r["spec"]["rules"]
        .as_array()?
        .iter()
        .find(|r| r["backendRefs"].as_array().is_some_and(|b| b.len() == 2))?;
    let w = |suffix: &str| {
        rule["backendRefs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"].as_str().unwrap().ends_with(suffix))
            .and_then(|b| b["weight"].as_i64())
    };
    Some((w("-stable")?, w("-candidate")?))
}

fn replicas(k: &Envtest, ns: &str, name: &str) -> Option<i64> {
    k.get_json("deployment", ns, name)?["spec"]["replicas"].as_i64()
}

/// Makes the Deployment's pods fail with `reason` (kwok), or heals them (`None`):
/// an annotation on the pod template under another field manager, which hoist's
/// applies leave alone.
fn fail_pods(k: &Envtest, ns: &str, deployment: &str, reason: Option<&str>) {
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
        FAIL_ANNOTATION: reason,
    }}}}});
    k.kubectl_ok(&[
        "patch",
        "deployment",
        deployment,
        "-n",
        ns,
        "--type",
        "merge",
        "-p",
        &patch.to_string(),
    ]);
}

/// A whole canary with a Gateway: every rendered object accepted by the real API
/// server, candidate 4 rolled out by the real controllers, 25% then 50%, promoted;
/// candidate 5 crash-loops, the rollout fails naming the pod's reason, and the
/// rollback routes everything to stable and takes the candidate to zero.
#[tokio::test]
async fn envtest_canary_through_gateway_weights_promote_crash_and_rollback() {
    let Some(k) = Envtest::get() else { return };
    let ns = k.namespace("canary");
    let s = spec(&ns, true);
    let c = cluster(&k, s.clone()).await;

    let m = render::render(&s).unwrap();
    c.apply(&m).await.unwrap();
    for o in &m.objects {
        let got = k.get_json(o.kind(), o.namespace().unwrap_or(""), o.name());
        let got = got.unwrap_or_else(|| panic!("{} {} not stored", o.kind(), o.name()));
        let managers: Vec<&str> = got["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["operation"] == "Apply")
            .map(|f| f["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["hoist"], "{} {}", o.kind(), o.name());
    }
    assert_eq!(route_weights(&k, &ns, "fraud"), Some((100, 0)));
    let stable = k.get_json("deployment", &ns, "fraud-stable").unwrap();
    assert_eq!(annotation(&stable, "hoist.dev/version"), "3");
    // Defaulted by the API server, not rendered.
    assert_eq!(
        stable["spec"]["template"]["spec"]["dnsPolicy"],
        "ClusterFirst"
    );
    let r = c.wait_rollout(Variant::Stable, soon()).await.unwrap();
    // The real autoscaler owns the replicas: at least its minimum (3).
    assert!(r.replicas >= 3, "{r:?}");
    let hpa = k.get_json("hpa", &ns, "fraud-stable").unwrap();
    assert_eq!(hpa["spec"]["minReplicas"], 3);

    // Applying the same objects again changes no generation.
    let stable = k.get_json("deployment", &ns, "fraud-stable").unwrap();
    c.apply(&m).await.unwrap();
    let again = k.get_json("deployment", &ns, "fraud-stable").unwrap();
    assert_eq!(
        again["metadata"]["generation"],
        stable["metadata"]["generation"]
    );
    assert_eq!(again["metadata"]["uid"], stable["metadata"]["uid"]);
    let generation = again["metadata"]["generation"].as_i64().unwrap();

    // The candidate, rolled out, then 25% and 50% of the traffic.
    c.deploy(Variant::Candidate, &pin("4", 'b'), Some(2))
        .await
        .unwrap();
    let r = c.wait_rollout(Variant::Candidate, soon()).await.unwrap();
    assert_eq!(r.replicas, 2);
    let pods = k.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        &ns,
        "-l",
        "hoist.dev/variant=candidate",
        "-o",
        "jsonpath={range .items[*]}{.spec.nodeName} {.status.phase}\n{end}",
    ]);
    assert_eq!(
        pods.lines().filter(|l| *l == "kwok-node-0 Running").count(),
        2,
        "scheduled and running: {pods}"
    );
    for (w, want) in [(25, (75, 25)), (50, (50, 50))] {
        let split = c.set_weights(w, soon()).await.unwrap();
        assert_eq!((split.mode, split.effective), (SplitMode::Gateway, w));
        assert_eq!(route_weights(&k, &ns, "fraud"), Some(want), "at {w}%");
    }
    let live = c.live().await.unwrap();
    assert_eq!(live.candidate_weight, 50);
    assert_eq!(live.candidate.as_ref().unwrap().pin, pin("4", 'b'));
    assert_eq!(live.candidate.as_ref().unwrap().available, 2);

    // Promote: stable now runs 4 (a new generation), all traffic to it, candidate at 0.
    let promoted = c.promote(soon()).await.unwrap();
    assert_eq!(promoted, pin("4", 'b'));
    let stable = k.get_json("deployment", &ns, "fraud-stable").unwrap();
    assert_eq!(annotation(&stable, "hoist.dev/version"), "4");
    assert_eq!(
        annotation(&stable, "hoist.dev/digest"),
        pin("4", 'b').digest
    );
    assert_eq!(stable["metadata"]["generation"], generation + 1);
    assert_eq!(stable["status"]["observedGeneration"], generation + 1);
    assert_eq!(route_weights(&k, &ns, "fraud"), Some((100, 0)));
    assert_eq!(replicas(&k, &ns, "fraud-candidate"), Some(0));

    // Candidate 5 crash-loops: the wait ends with the pod's reason.
    fail_pods(&k, &ns, "fraud-candidate", Some("CrashLoopBackOff"));
    c.deploy(Variant::Candidate, &pin("5", 'c'), Some(1))
        .await
        .unwrap();
    let e = c
        .wait_rollout(Variant::Candidate, soon())
        .await
        .unwrap_err();
    match &e {
        Error::PodFailed {
            deployment,
            container,
            reason,
            message,
            ..
        } => {
            assert_eq!(deployment, &format!("{ns}/fraud-candidate"));
            assert_eq!(container, "hoist-server");
            assert_eq!(reason, "CrashLoopBackOff");
            assert_eq!(message, "last exit code 1: kwok stage envtest-pod-fail");
        }
        other => panic!("expected PodFailed, got {other:?}"),
    }
    // The annotation hoist does not render survived hoist's forced apply.
    let cand = k.get_json("deployment", &ns, "fraud-candidate").unwrap();
    assert_eq!(
        cand["spec"]["template"]["metadata"]["annotations"][FAIL_ANNOTATION],
        "CrashLoopBackOff"
    );

    // It had been given 10% before it failed; the rollback takes it away.
    c.set_weights(10, soon()).await.unwrap();
    assert_eq!(route_weights(&k, &ns, "fraud"), Some((90, 10)));
    c.rollback(soon()).await.unwrap();
    assert_eq!(route_weights(&k, &ns, "fraud"), Some((100, 0)));
    assert_eq!(replicas(&k, &ns, "fraud-candidate"), Some(0));

    // What runs, read back from the cluster alone.
    let live = c.live().await.unwrap();
    assert_eq!(live.mode, SplitMode::Gateway);
    assert_eq!(live.candidate_weight, 0);
    let stable = live.stable.unwrap();
    assert_eq!(stable.pin, pin("4", 'b'));
    assert_eq!(stable.available, stable.replicas);
    let candidate = live.candidate.unwrap();
    assert_eq!((candidate.pin, candidate.replicas), (pin("5", 'c'), 0));
    k.delete_namespaces(&[&ns]);
}

/// Without a Gateway the split is a replica ratio through the `scale` subresource:
/// 25% of 3 stable pods is 1 candidate pod; 100% hands every pod to the candidate
/// once it is rolled out; rollback brings stable back and the candidate to zero.
#[tokio::test]
async fn envtest_replica_ratio_canary_scales_through_the_scale_subresource() {
    let Some(k) = Envtest::get() else { return };
    let ns = k.namespace("ratio");
    let s = spec(&ns, false);
    let c = cluster(&k, s.clone()).await;
    c.apply(&render::render(&s).unwrap()).await.unwrap();
    assert!(k.get_json("httproute", &ns, "fraud").is_none());
    assert_eq!(replicas(&k, &ns, "fraud-stable"), Some(3));
    c.wait_rollout(Variant::Stable, soon()).await.unwrap();

    c.deploy(Variant::Candidate, &pin("4", 'b'), Some(0))
        .await
        .unwrap();
    let split = c.set_weights(25, soon()).await.unwrap();
    assert_eq!(
        (
            split.effective,
            split.stable_replicas,
            split.candidate_replicas
        ),
        (25, Some(3), Some(1))
    );
    assert_eq!(replicas(&k, &ns, "fraud-candidate"), Some(1));
    c.wait_rollout(Variant::Candidate, soon()).await.unwrap();
    // The app Service selects both variants' ready pods: 3 stable + 1 candidate.
    k.wait(
        "4 endpoints behind the app Service",
        Duration::from_secs(60),
        || {
            let out = k.kubectl_ok(&[
                "get",
                "endpointslices",
                "-n",
                &ns,
                "-l",
                "kubernetes.io/service-name=fraud",
                "-o",
                "jsonpath={range .items[*].endpoints[*]}{.conditions.ready}\n{end}",
            ]);
            out.lines().filter(|l| *l == "true").count() == 4
        },
    );

    let split = c.set_weights(100, soon()).await.unwrap();
    assert_eq!(
        (split.stable_replicas, split.candidate_replicas),
        (Some(0), Some(3))
    );
    assert_eq!(replicas(&k, &ns, "fraud-stable"), Some(0));
    assert_eq!(c.live().await.unwrap().candidate_weight, 100);

    c.rollback(soon()).await.unwrap();
    assert_eq!(replicas(&k, &ns, "fraud-stable"), Some(3));
    assert_eq!(replicas(&k, &ns, "fraud-candidate"), Some(0));
    let live = c.live().await.unwrap();
    assert_eq!(
        (live.mode, live.candidate_weight),
        (SplitMode::ReplicaRatio, 0)
    );
    k.delete_namespaces(&[&ns]);
}

/// Pods that cannot run end the rollout with their reason, as the kubelet (kwok
/// here) or the real scheduler reports it; the Deployment stays unavailable until
/// they heal.
#[tokio::test]
async fn envtest_pod_failures_end_the_rollout_with_their_reason() {
    let Some(k) = Envtest::get() else { return };
    let ns = k.namespace("failures");
    let s = spec(&ns, true);
    let c = cluster(&k, s.clone()).await;
    c.apply(&render::render(&s).unwrap()).await.unwrap();
    c.deploy(Variant::Candidate, &pin("9", 'd'), Some(0))
        .await
        .unwrap();
    for (i, reason) in ["ImagePullBackOff", "OOMKilled"].into_iter().enumerate() {
        fail_pods(&k, &ns, "fraud-candidate", Some(reason));
        let p = pin(&(10 + i).to_string(), ['d', 'e'][i]);
        c.deploy(Variant::Candidate, &p, Some(2)).await.unwrap();
        let e = c
            .wait_rollout(Variant::Candidate, soon())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::PodFailed { reason: r, .. } if r == reason),
            "{reason}: {e:?}"
        );
        let d = k.get_json("deployment", &ns, "fraud-candidate").unwrap();
        assert!(
            d["status"]["availableReplicas"].as_i64().unwrap_or(0) < 2,
            "{reason}: {d}"
        );
    }
    // The stable Deployment was never affected; a next version without the fault
    // rolls out (the failed pods of the earlier ones do not count against it).
    c.wait_rollout(Variant::Stable, soon()).await.unwrap();
    fail_pods(&k, &ns, "fraud-candidate", None);
    c.deploy(Variant::Candidate, &pin("12", 'g'), Some(2))
        .await
        .unwrap();
    let r = c.wait_rollout(Variant::Candidate, soon()).await.unwrap();
    assert_eq!(r.replicas, 2);

    // More CPU than any node has: the real scheduler leaves the pods Unschedulable.
    let mut big = s.clone();
    big.resources.cpu_request = "500".into();
    let c = cluster(&k, big).await;
    c.deploy(Variant::Candidate, &pin("13", 'f'), Some(1))
        .await
        .unwrap();
    let e = c
        .wait_rollout(Variant::Candidate, soon())
        .await
        .unwrap_err();
    match &e {
        Error::PodFailed {
            reason, message, ..
        } => {
            assert_eq!(reason, "Unschedulable");
            assert!(message.contains("Insufficient cpu"), "{message}");
        }
        other => panic!("expected Unschedulable, got {other:?}"),
    }
    k.delete_namespaces(&[&ns]);
}

/// A missing object is the API server's own `NotFound` Status; two controllers
/// competing for one Lease: exactly one holds it until it expires.
#[tokio::test]
async fn envtest_not_found_and_leases() {
    let Some(k) = Envtest::get() else { return };
    let ns = k.namespace("lease");
    let a = cluster(&k, spec(&ns, true)).await;
    let b = cluster(&k, spec(&ns, true)).await;

    let deployments: Api<Deployment> = Api::namespaced(client(&k.kubeconfig).await, &ns);
    match deployments.get("nope").await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
            assert_eq!(s.message, "deployments.apps \"nope\" not found");
        }
        other => panic!("expected a 404 Status, got {other:?}"),
    }
    let e = a.wait_rollout(Variant::Stable, soon()).await.unwrap_err();
    assert!(matches!(e, Error::Missing(_)), "{e:?}");
    assert!(a.live().await.unwrap().stable.is_none());

    let ttl = Duration::from_secs(3);
    // Both ask at once: one creates the Lease, the other finds it held.
    let (ra, rb) = tokio::join!(
        a.try_acquire_lease(&ns, "hoist-controller", "pod-a", ttl),
        b.try_acquire_lease(&ns, "hoist-controller", "pod-b", ttl),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra ^ rb, "exactly one leader: a {ra}, b {rb}");
    let (leader, other, lname, oname) = if ra {
        (&a, &b, "pod-a", "pod-b")
    } else {
        (&b, &a, "pod-b", "pod-a")
    };
    assert!(
        !other
            .try_acquire_lease(&ns, "hoist-controller", oname, ttl)
            .await
            .unwrap()
    );
    assert!(
        leader
            .try_acquire_lease(&ns, "hoist-controller", lname, ttl)
            .await
            .unwrap()
    );
    let lease = k.get_json("lease", &ns, "hoist-controller").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], lname);
    tokio::time::sleep(Duration::from_millis(3300)).await;
    assert!(
        other
            .try_acquire_lease(&ns, "hoist-controller", oname, ttl)
            .await
            .unwrap(),
        "an expired Lease changes hands"
    );
    let lease = k.get_json("lease", &ns, "hoist-controller").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], oname);
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert!(
        !leader
            .try_acquire_lease(&ns, "hoist-controller", lname, ttl)
            .await
            .unwrap()
    );
    k.delete_namespaces(&[&ns]);
}

const CHILD: &str = "HOIST_ENVTEST_CHILD_NS";

/// `Cluster::connect` finds the API server through KUBECONFIG, as the daemon does.
/// KUBECONFIG is process-wide, so this test runs itself again as a child process with
/// it set; the child reads what the parent applied.
#[test]
fn envtest_connect_uses_kubeconfig() {
    if let Some(ns) = std::env::var_os(CHILD) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let c = Cluster::connect(spec(ns.to_str().unwrap(), true), "hoist")
                .await
                .unwrap();
            let live = c.live().await.unwrap();
            assert_eq!(live.stable.unwrap().pin, pin("3", 'a'));
            assert_eq!(live.candidate_weight, 0);
        });
        return;
    }
    let Some(k) = Envtest::get() else { return };
    let ns = k.namespace("connect");
    let s = spec(&ns, true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = cluster(&k, s.clone()).await;
        c.apply(&render::render(&s).unwrap()).await.unwrap();
    });
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "envtest_connect_uses_kubeconfig", "--nocapture"])
        .env(CHILD, &ns)
        .env("KUBECONFIG", &k.kubeconfig)
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    k.delete_namespaces(&[&ns]);
}

/// `service_type` reaches the app Service only, and the real API server treats it as
/// such: a NodePort gets a port allocated from the node-port range; a LoadBalancer is
/// accepted (no cloud here, so it gets no address).
#[tokio::test]
async fn envtest_service_type_of_the_app_service() {
    let Some(k) = Envtest::get() else { return };
    let ns = k.namespace("svctype");
    for t in ["NodePort", "LoadBalancer"] {
        let mut s = spec(&ns, false);
        s.service_type = t.into();
        let c = cluster(&k, s.clone()).await;
        c.apply(&render::render(&s).unwrap()).await.unwrap();
        let app = k.get_json("service", &ns, "fraud").unwrap();
        assert_eq!(app["spec"]["type"], t, "{app}");
        let port = app["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert!((30000..=32767).contains(&port), "{app}");
        let stable = k.get_json("service", &ns, "fraud-stable").unwrap();
        assert_eq!(stable["spec"]["type"], "ClusterIP");
    }
    let mut bad = spec(&ns, false);
    bad.service_type = "External".into();
    let e = render::render(&bad).unwrap_err().to_string();
    assert!(e.contains("service_type"), "{e}");
    k.delete_namespaces(&[&ns]);
}
