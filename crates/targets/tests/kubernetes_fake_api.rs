//! The cluster client end to end against [`FakeKubeApi`], a stand-in Kubernetes API
//! server on 127.0.0.1 (plain HTTP, objects in memory, Deployments that roll out at
//! once unless a test makes their pods fail). A real API server cannot run here; this
//! is the closest substitute, and it complements the scripted kube mock tests
//! (`kubernetes_client.rs`): those pin every request and answer one by one, these run
//! whole canaries through a real `kube::Client` over HTTP, from a kubeconfig, against
//! a server that keeps state, so what one call wrote is what the next one reads.
//!
//! The clients are built from the fake server's kubeconfig file directly
//! (`Config::from_custom_kubeconfig`), not through the process-wide KUBECONFIG; the
//! one test of `Cluster::connect` runs itself again as a child process with KUBECONFIG
//! set.

use std::time::Duration;

use hoist_targets::kubernetes::render;
use hoist_targets::kubernetes::{
    AppSpec, Cluster, Error, GatewayRef, ModelPin, ModelSource, SplitMode, Variant,
};
use hoist_testkit::kube_api::FakeKubeApi;
use k8s_openapi::api::apps::v1::Deployment;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tokio::time::Instant;

const NS: &str = "hoist-production";
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

/// A kube client for `api`, from the kubeconfig it writes.
async fn client(api: &FakeKubeApi, dir: &std::path::Path) -> Client {
    let kc = Kubeconfig::read_from(api.kubeconfig(dir)).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

async fn cluster(api: &FakeKubeApi, dir: &std::path::Path, s: AppSpec) -> Cluster {
    Cluster::new(client(api, dir).await, s, "hoist")
        .unwrap()
        .with_poll_interval(Duration::from_millis(20))
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn annotation(d: &serde_json::Value, key: &str) -> String {
    d["metadata"]["annotations"][key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Index of the first request matching `method` and a path ending in `suffix`.
fn position(api: &FakeKubeApi, from: usize, method: &str, suffix: &str) -> usize {
    api.requests()
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, (m, p))| m == method && p.ends_with(suffix))
        .map(|(i, _)| i)
        .unwrap_or_else(|| {
            panic!(
                "no {method} …{suffix} after request {from}: {:?}",
                api.requests()
            )
        })
}

/// A whole canary with a Gateway: apply, candidate 4 rolled out, 25% then 50%,
/// promoted; candidate 5 crash-loops, the rollout fails naming the reason, and the
/// rollback routes everything to stable before the candidate goes to zero.
#[tokio::test]
async fn fake_api_canary_through_gateway_weights_promote_crash_and_rollback() {
    let api = FakeKubeApi::start();
    let dir = tempdir("canary");
    let s = spec(true);
    let c = cluster(&api, &dir, s.clone()).await;

    // Apply every rendered object: all of them are stored, each by server-side apply.
    let m = render::render(&s).unwrap();
    c.apply(&m).await.unwrap();
    for o in &m.objects {
        let ns = o.namespace().unwrap_or("");
        assert!(
            api.object(o.kind(), ns, o.name()).is_some(),
            "{} {ns}/{} stored",
            o.kind(),
            o.name()
        );
    }
    for (method, path, query) in api.requests_with_query() {
        assert_eq!(method, "PATCH", "{path}");
        assert!(
            query.contains("fieldManager=hoist") && query.contains("force=true"),
            "{path}?{query}"
        );
    }
    assert_eq!(api.route_weights(NS, "fraud"), Some((100, 0)));
    let stable = api.object("Deployment", NS, "fraud-stable").unwrap();
    assert_eq!(annotation(&stable, "hoist.dev/version"), "3");
    assert_eq!(stable["metadata"]["generation"], 1);
    assert!(stable["metadata"]["managedFields"].is_null());
    c.wait_rollout(Variant::Stable, soon()).await.unwrap();

    // Applying the same objects again changes no generation.
    c.apply(&m).await.unwrap();
    let again = api.object("Deployment", NS, "fraud-stable").unwrap();
    assert_eq!(again["metadata"]["generation"], 1);
    assert_eq!(again["metadata"]["uid"], stable["metadata"]["uid"]);
    assert_ne!(
        again["metadata"]["resourceVersion"],
        stable["metadata"]["resourceVersion"]
    );

    // The candidate, rolled out, then 25% and 50% of the traffic.
    c.deploy(Variant::Candidate, &pin("4", 'b'), Some(2))
        .await
        .unwrap();
    let r = c.wait_rollout(Variant::Candidate, soon()).await.unwrap();
    assert_eq!(r.replicas, 2);
    for (w, want) in [(25, (75, 25)), (50, (50, 50))] {
        let split = c.set_weights(w, soon()).await.unwrap();
        assert_eq!((split.mode, split.effective), (SplitMode::Gateway, w));
        assert_eq!(api.route_weights(NS, "fraud"), Some(want), "at {w}%");
    }
    let live = c.live().await.unwrap();
    assert_eq!(live.candidate_weight, 50);
    assert_eq!(live.candidate.as_ref().unwrap().pin, pin("4", 'b'));
    assert_eq!(live.candidate.as_ref().unwrap().available, 2);

    // Promote: stable now runs 4 (a new generation), all traffic to it, candidate at 0.
    let promoted = c.promote(soon()).await.unwrap();
    assert_eq!(promoted, pin("4", 'b'));
    let stable = api.object("Deployment", NS, "fraud-stable").unwrap();
    assert_eq!(annotation(&stable, "hoist.dev/version"), "4");
    assert_eq!(
        annotation(&stable, "hoist.dev/digest"),
        pin("4", 'b').digest
    );
    assert_eq!(stable["metadata"]["generation"], 2);
    assert_eq!(stable["status"]["observedGeneration"], 2);
    assert_eq!(api.route_weights(NS, "fraud"), Some((100, 0)));
    assert_eq!(api.deployment_replicas(NS, "fraud-candidate"), Some(0));

    // Candidate 5 crash-loops: the wait ends at once with the reason.
    api.fail_pods("fraud-candidate", "CrashLoopBackOff");
    c.deploy(Variant::Candidate, &pin("5", 'c'), Some(1))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let e = c
        .wait_rollout(Variant::Candidate, soon())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    match &e {
        Error::PodFailed {
            deployment,
            container,
            reason,
            message,
            ..
        } => {
            assert_eq!(deployment, "hoist-production/fraud-candidate");
            assert_eq!(container, "hoist-server");
            assert_eq!(reason, "CrashLoopBackOff");
            assert_eq!(
                message,
                "last exit code 1: the fake API server made this container crash"
            );
        }
        other => panic!("expected PodFailed, got {other:?}"),
    }
    assert!(e.to_string().contains("CrashLoopBackOff"), "{e}");

    // It had been given 10% before it failed; the rollback takes it away first.
    c.set_weights(10, soon()).await.unwrap();
    assert_eq!(api.route_weights(NS, "fraud"), Some((90, 10)));
    let mark = api.requests().len();
    c.rollback(soon()).await.unwrap();
    assert_eq!(api.route_weights(NS, "fraud"), Some((100, 0)));
    assert_eq!(api.deployment_replicas(NS, "fraud-candidate"), Some(0));
    let route = position(&api, mark, "PATCH", "/httproutes/fraud");
    let scale = position(&api, mark, "PATCH", "/deployments/fraud-candidate/scale");
    assert!(route < scale, "traffic moves before the candidate shrinks");

    // What runs, read back from the cluster alone.
    let live = c.live().await.unwrap();
    assert_eq!(live.mode, SplitMode::Gateway);
    assert_eq!(live.candidate_weight, 0);
    let stable = live.stable.unwrap();
    assert_eq!(
        (stable.pin, stable.replicas, stable.available),
        (pin("4", 'b'), 1, 1)
    );
    let candidate = live.candidate.unwrap();
    assert_eq!((candidate.pin, candidate.replicas), (pin("5", 'c'), 0));
}

/// Without a Gateway the split is a replica ratio through the `scale` subresource:
/// 25% of 3 stable pods is 1 candidate pod; 100% hands every pod to the candidate
/// once it is rolled out; rollback brings stable back before the candidate goes.
#[tokio::test]
async fn fake_api_replica_ratio_canary_scales_through_the_scale_subresource() {
    let api = FakeKubeApi::start();
    let dir = tempdir("ratio");
    let s = spec(false);
    let c = cluster(&api, &dir, s.clone()).await;
    c.apply(&render::render(&s).unwrap()).await.unwrap();
    assert!(api.object("HTTPRoute", NS, "fraud").is_none());
    assert_eq!(api.deployment_replicas(NS, "fraud-stable"), Some(3));

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
    assert_eq!(api.deployment_replicas(NS, "fraud-candidate"), Some(1));
    let candidate = api.object("Deployment", NS, "fraud-candidate").unwrap();
    assert_eq!(candidate["status"]["availableReplicas"], 1);

    let split = c.set_weights(100, soon()).await.unwrap();
    assert_eq!(
        (split.stable_replicas, split.candidate_replicas),
        (Some(0), Some(3))
    );
    assert_eq!(api.deployment_replicas(NS, "fraud-stable"), Some(0));
    assert_eq!(c.live().await.unwrap().candidate_weight, 100);

    let mark = api.requests().len();
    c.rollback(soon()).await.unwrap();
    assert_eq!(api.deployment_replicas(NS, "fraud-stable"), Some(3));
    assert_eq!(api.deployment_replicas(NS, "fraud-candidate"), Some(0));
    let stable = position(&api, mark, "PATCH", "/deployments/fraud-stable/scale");
    let candidate = position(&api, mark, "PATCH", "/deployments/fraud-candidate/scale");
    assert!(
        stable < candidate,
        "stable serves again before the candidate shrinks"
    );
    let live = c.live().await.unwrap();
    assert_eq!(
        (live.mode, live.candidate_weight),
        (SplitMode::ReplicaRatio, 0)
    );
}

/// Every kind of pod failure the fake server injects is reported by name, and the
/// Deployment stays unavailable until the pods heal.
#[tokio::test]
async fn fake_api_pod_failures_end_the_rollout_with_their_reason() {
    let api = FakeKubeApi::start();
    let dir = tempdir("failures");
    let s = spec(true);
    let c = cluster(&api, &dir, s.clone()).await;
    c.apply(&render::render(&s).unwrap()).await.unwrap();
    for (i, reason) in ["ImagePullBackOff", "OOMKilled", "Unschedulable"]
        .into_iter()
        .enumerate()
    {
        api.heal_pods();
        api.fail_pods("hoist.dev/variant=candidate", reason);
        let p = pin(&(10 + i).to_string(), 'd');
        c.deploy(Variant::Candidate, &p, Some(2)).await.unwrap();
        let e = c
            .wait_rollout(Variant::Candidate, soon())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::PodFailed { reason: r, .. } if r == reason),
            "{reason}: {e:?}"
        );
        let d = api.object("Deployment", NS, "fraud-candidate").unwrap();
        assert!(d["status"]["availableReplicas"].is_null(), "{reason}: {d}");
        assert_eq!(d["status"]["unavailableReplicas"], 2);
    }
    // The stable Deployment was never affected.
    c.wait_rollout(Variant::Stable, soon()).await.unwrap();
    api.heal_pods();
    let r = c.wait_rollout(Variant::Candidate, soon()).await.unwrap();
    assert_eq!(r.replicas, 2);
}

/// A missing object is a Kubernetes `NotFound` Status that kube decodes; creates and
/// stale replaces conflict as on a real server; leader election works over Leases.
#[tokio::test]
async fn fake_api_not_found_and_leases_behave_like_the_api_server() {
    let api = FakeKubeApi::start();
    let dir = tempdir("lease");
    let c = cluster(&api, &dir, spec(true)).await;

    let deployments: Api<Deployment> = Api::namespaced(client(&api, &dir).await, NS);
    match deployments.get("nope").await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
            assert_eq!(s.message, "deployments.apps \"nope\" not found");
        }
        other => panic!("expected a 404 Status, got {other:?}"),
    }
    let e = c.wait_rollout(Variant::Stable, soon()).await.unwrap_err();
    assert!(matches!(e, Error::Missing(_)), "{e:?}");
    assert!(c.live().await.unwrap().stable.is_none());

    let ttl = Duration::from_secs(3);
    let take =
        |holder: &'static str| c.try_acquire_lease("hoist-system", "hoist-controller", holder, ttl);
    assert!(
        take("pod-a").await.unwrap(),
        "a free Lease is taken (created)"
    );
    assert!(!take("pod-b").await.unwrap(), "held by pod-a");
    assert!(take("pod-a").await.unwrap(), "pod-a renews");
    let lease = api
        .object("Lease", "hoist-system", "hoist-controller")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "pod-a");
    tokio::time::sleep(Duration::from_millis(3300)).await;
    assert!(
        take("pod-b").await.unwrap(),
        "an expired Lease changes hands"
    );
    let lease = api
        .object("Lease", "hoist-system", "hoist-controller")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "pod-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    let methods: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|(_, p)| p.contains("/leases"))
        .map(|(m, _)| m)
        .collect();
    assert_eq!(methods, ["GET", "POST", "GET", "GET", "PUT", "GET", "PUT"]);
}

const CHILD: &str = "HOIST_FAKE_KUBE_CHILD";

/// `Cluster::connect` finds the fake server through KUBECONFIG, as the daemon does.
/// KUBECONFIG is process-wide, so this test runs itself again as a child process with
/// it set; the child reads what the parent applied.
#[test]
fn fake_api_connect_uses_kubeconfig() {
    if std::env::var_os(CHILD).is_some() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let c = Cluster::connect(spec(true), "hoist").await.unwrap();
            let live = c.live().await.unwrap();
            assert_eq!(live.stable.unwrap().pin, pin("3", 'a'));
            assert_eq!(live.candidate_weight, 0);
        });
        return;
    }
    let api = FakeKubeApi::start();
    let dir = tempdir("connect");
    let s = spec(true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = cluster(&api, &dir, s.clone()).await;
        c.apply(&render::render(&s).unwrap()).await.unwrap();
    });
    api.clear_requests();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "fake_api_connect_uses_kubeconfig", "--nocapture"])
        .env(CHILD, "1")
        .env("KUBECONFIG", api.kubeconfig(&dir))
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
    let seen = api.requests();
    assert!(
        seen.contains(&(
            "GET".into(),
            "/apis/apps/v1/namespaces/hoist-production/deployments/fraud-stable".into()
        )),
        "{seen:?}"
    );
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hoist-fake-kube-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
