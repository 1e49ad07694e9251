//! `hoist up` with `target = "kubernetes"`, end to end: the real daemon, its real
//! release engine and journal, the real kube-rs client, against a fake Kubernetes API
//! server on loopback (`hoist_testkit::kube_api`) — a stand-in, since no real API
//! server can run here. The fake rolls Deployments out at once (or fails their pods
//! when told to); gates and smoke tests reach a real `hoist serve` process through
//! `kubernetes.service_url`, standing in for the Services.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hoist_testkit::kube_api::FakeKubeApi;

const NS: &str = "hoist-production";

/// A real model server standing in for the variants' Services.
struct Server(Child, u16);

impl Server {
    fn start() -> Server {
        let port = hoist_testkit::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_hoist"))
            .arg("serve")
            .arg("--model")
            .arg(model("breast_cancer_lr"))
            .args(["--runtime", "tract", "--workers", "1", "--port"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("hoist serve");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !hoist_testkit::answers_200(&addr, "/v2/health/ready") {
            assert!(Instant::now() < deadline, "hoist serve did not get ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server(child, port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(port: u16, extra_analysis: &str) -> String {
    format!(
        r#"target = "kubernetes"

[api]
listen = "127.0.0.1:0"

[registry]
url = "embedded"
poll_interval = "100ms"

[model]
name = "m"
trigger = {{ alias = "champion" }}

[server]
runtime = "tract"

[analysis]
interval = "200ms"
max_inconclusive = "1s"
{extra_analysis}

[kubernetes]
image = "hoist@sha256:{}"
model_path = "/models/m"
service_url = "http://127.0.0.1:{port}"
gateway = {{ name = "public", namespace = "gateways" }}
rollout_timeout = "20s"

[[environments]]
name = "production"
listen = "127.0.0.1:0"
steps = [{{ weight = 25, pause = "300ms" }}, {{ weight = 50, pause = "300ms" }}]
"#,
        "ab".repeat(32)
    )
}

fn annotation(api: &FakeKubeApi, name: &str, key: &str) -> Option<String> {
    api.object("Deployment", NS, name)?["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_string)
}

#[test]
fn a_canary_on_a_cluster_walks_the_route_weights_and_rolls_back_a_crashing_candidate() {
    let api = FakeKubeApi::start();
    let server = Server::start();
    let home = temp_home("cluster");
    let kubeconfig = api.kubeconfig(&home);
    let d = Daemon::start_with_env(
        &home,
        &config(server.1, "enabled = false"),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    // The Services releases route through are applied at start (the controller's Role
    // allows no more; the rest comes with `hoist render k8s`).
    for name in ["m", "m-stable", "m-candidate"] {
        assert!(
            api.object("Service", NS, name).is_some(),
            "no Service {name} in {:?}",
            api.objects()
        );
    }

    // v1: nothing live yet, so straight to 100% and promoted into the stable Deployment.
    register(&home, "breast_cancer_gbt", Some("champion"));
    let r = d.wait_done(1, Duration::from_secs(60));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("v1 in the stable Deployment", &|| {
        annotation(&api, "m-stable", "hoist.dev/version").as_deref() == Some("1")
    });
    let digest = annotation(&api, "m-stable", "hoist.dev/digest").unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    // v2: a canary through the HTTPRoute's weights, then promoted.
    register(&home, "breast_cancer_lr", None);
    ok(&hoist(&home, &["deploy", "m/2", "--wait"]));
    assert_eq!(
        weights(&d.release(2)),
        vec![25, 50, 100],
        "{}",
        d.release(2)
    );
    wait("v2 in the stable Deployment", &|| {
        annotation(&api, "m-stable", "hoist.dev/version").as_deref() == Some("2")
    });
    wait("the route back on stable", &|| {
        api.route_weights(NS, "m") == Some((100, 0))
    });
    assert_eq!(api.deployment_replicas(NS, "m-candidate"), Some(0));
    // Every write was a server-side apply (or a scale) under hoist's field manager.
    let writes: Vec<_> = api
        .requests_with_query()
        .into_iter()
        .filter(|(m, _, _)| m == "PATCH")
        .collect();
    assert!(!writes.is_empty());
    for (_, path, query) in &writes {
        assert!(
            query.contains("fieldManager=hoist") || path.ends_with("/scale"),
            "{path}?{query}"
        );
    }
    let s = d.get("/api/v1/status");
    let env = &s["environments"][0];
    assert_eq!(env["target"], "kubernetes", "{s}");
    assert_eq!(env["stable"]["version"], "2", "{s}");

    // v3 cannot start: its pods crash. The release fails with the pod's reason and the
    // route never leaves stable.
    api.fail_pods("m-candidate", "CrashLoopBackOff");
    register(&home, "breast_cancer_rf", None);
    let out = hoist(&home, &["deploy", "m/3", "--wait"]);
    assert_eq!(out.status.code(), Some(5));
    let r = d.release(3);
    let reason = r["outcome"]["reason"].as_str().unwrap();
    assert!(reason.contains("CrashLoopBackOff"), "{reason}");
    assert!(weights(&r).iter().all(|w| *w == 0), "{r}");
    wait("the crashing candidate scaled to 0", &|| {
        api.deployment_replicas(NS, "m-candidate") == Some(0)
    });
    assert_eq!(api.route_weights(NS, "m"), Some((100, 0)));
    assert_eq!(
        annotation(&api, "m-stable", "hoist.dev/version").as_deref(),
        Some("2")
    );
    d.stop();
}

#[test]
fn without_prometheus_a_cluster_canary_fails_closed() {
    let api = FakeKubeApi::start();
    let server = Server::start();
    let home = temp_home("cluster-noprom");
    let kubeconfig = api.kubeconfig(&home);
    let d = Daemon::start_with_env(
        &home,
        &config(server.1, ""),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    register(&home, "breast_cancer_gbt", Some("champion"));
    assert_eq!(
        d.wait_done(1, Duration::from_secs(60))["outcome"]["outcome"],
        "succeeded"
    );
    register(&home, "breast_cancer_lr", None);
    let out = hoist(&home, &["deploy", "m/2", "--wait"]);
    assert_eq!(out.status.code(), Some(5));
    let reason = d.release(2)["outcome"]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("inconclusive"), "{reason}");
    assert!(reason.contains("kubernetes.prometheus_url"), "{reason}");
    assert_eq!(api.route_weights(NS, "m"), Some((100, 0)));
    d.stop();
}

#[test]
fn a_controller_without_a_journal_adopts_the_cluster_and_rolls_back_a_leftover_candidate() {
    let api = FakeKubeApi::start();
    let server = Server::start();
    let digest = format!("sha256:{}", "7".repeat(64));
    let deployment = |name: &str, version: &str, replicas: u32| {
        serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": NS,
                "annotations": {
                    "hoist.dev/model": "m",
                    "hoist.dev/version": version,
                    "hoist.dev/digest": digest,
                },
            },
            "spec": { "replicas": replicas },
        })
    };
    // What a controller that died mid-canary (and lost its disk) left behind.
    api.insert(deployment("m-stable", "7", 2));
    api.insert(deployment("m-candidate", "8", 2));
    api.insert(serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": { "name": "m", "namespace": NS },
        "spec": { "rules": [{ "backendRefs": [
            { "name": "m-stable", "port": 80, "weight": 70 },
            { "name": "m-candidate", "port": 80, "weight": 30 },
        ] }] },
    }));
    let home = temp_home("cluster-adopt");
    let kubeconfig = api.kubeconfig(&home);
    let d = Daemon::start_with_env(
        &home,
        &config(server.1, "enabled = false"),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("7"),
        "{s}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while api.route_weights(NS, "m") != Some((100, 0))
        || api.deployment_replicas(NS, "m-candidate") != Some(0)
    {
        assert!(
            Instant::now() < deadline,
            "the leftover candidate was not rolled back: route {:?}, candidate replicas {:?}",
            api.route_weights(NS, "m"),
            api.deployment_replicas(NS, "m-candidate")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(api.deployment_replicas(NS, "m-stable"), Some(2));
    d.stop();
}

/// `[policy]` and `model_source = "oci"` on a cluster: the daemon verifies
/// `kubernetes.image` and the model artifact (REAL registry on loopback) before any
/// Deployment of the candidate is applied, and the pods pull exactly the verified
/// artifact, by digest. An unsigned version is refused and never applied.
#[test]
fn on_a_cluster_only_signed_artifacts_are_applied_and_pods_pull_them_by_digest() {
    use hoist_oci::{Client, ClientOptions, ImageSpec, LayerBuilder, PrivateKey, Reference};

    let reg = hoist_testkit::registry::Registry::start();
    let api = FakeKubeApi::start();
    let server = Server::start();
    let home = temp_home("cluster-policy");
    let kubeconfig = api.kubeconfig(&home);
    let key = PrivateKey::generate();
    std::fs::write(home.join("cosign.pub"), key.public().to_pem()).unwrap();
    let connect =
        |r: &str| Client::connect(&Reference::parse(r).unwrap(), ClientOptions::default()).unwrap();
    // The hoist image: any image will do for a cluster that runs no pods; signed.
    let repo_image = format!("{}/team/hoist", reg.addr);
    let mut l = LayerBuilder::new(5);
    l.bytes("usr/local/bin/hoist", b"#!".to_vec(), true)
        .unwrap();
    let img = ImageSpec::default().build(vec![l.build().unwrap()]);
    let d = connect(&repo_image).push(&img, &[]).unwrap().digest;
    let image = format!("{repo_image}@{d}");
    hoist_oci::sign::sign(&connect(&image), &Reference::parse(&image).unwrap(), &key).unwrap();

    let repo = format!("{}/team/models", reg.addr);
    let config = config(server.1, "enabled = false")
        .replace(
            &format!(
                "image = \"hoist@sha256:{}\"\nmodel_path = \"/models/m\"",
                "ab".repeat(32)
            ),
            &format!("image = \"{image}\"\nmodel_source = \"oci\""),
        )
        .replace(
            "trigger = { alias = \"champion\" }",
            &format!("trigger = \"manual\"\nartifact_repository = \"{repo}\""),
        )
        + "\n[policy.production]\nrequire_signature = true\nkeys = [\"cosign.pub\"]\n";
    assert!(config.contains("model_source = \"oci\""), "{config}");
    let no_docker = home.join("no-docker-config");
    let d = Daemon::start_with_env(
        &home,
        &config,
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("DOCKER_CONFIG", no_docker.to_str().unwrap()),
        ],
    );
    let push = |v: &str| {
        ok(&hoist(&home, &["model", "push", &format!("m/{v}"), &repo]));
        format!("{repo}:m-v{v}")
    };

    // v1: pushed and signed: applied, its pods pull the artifact by digest.
    register(&home, "breast_cancer_gbt", None);
    let v1 = push("1");
    hoist_oci::sign::sign(&connect(&v1), &Reference::parse(&v1).unwrap(), &key).unwrap();
    let pinned = format!(
        "{repo}@{}",
        hoist_oci::sign::resolve(&connect(&v1), &Reference::parse(&v1).unwrap()).unwrap()
    );
    ok(&hoist(&home, &["deploy", "m/1", "--wait"]));
    let r = d.release(1);
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    assert_eq!(
        annotation(&api, "m-stable", "hoist.dev/artifact").as_deref(),
        Some(pinned.as_str())
    );
    let dep = api.object("Deployment", NS, "m-stable").unwrap();
    let init = &dep["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["name"], "pull-model", "{dep}");
    assert_eq!(
        init["args"],
        serde_json::json!(["model", "pull", pinned, "--out", "/models/model"])
    );

    // v2: pushed, not signed: refused before anything of it is applied.
    register(&home, "breast_cancer_lr", None);
    push("2");
    let out = hoist(&home, &["deploy", "m/2", "--wait"]);
    assert_eq!(out.status.code(), Some(5));
    let reason = d.release(2)["outcome"]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("refused by [policy.production]") && reason.contains("no signature"),
        "{reason}"
    );
    for name in ["m-stable", "m-candidate"] {
        assert_ne!(
            annotation(&api, name, "hoist.dev/version").as_deref(),
            Some("2"),
            "v2 was applied to {name}"
        );
    }
    d.stop();
}
