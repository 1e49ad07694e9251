//! `hoist render k8s` and `hoist up` with `target = "kubernetes"`, end to end, against
//! a real Kubernetes control plane (`tools/envtest.sh`: kube-apiserver with RBAC,
//! kube-controller-manager, kube-scheduler, etcd and kwok's fake node; see
//! `hoist_testkit::kube_api::envtest`): the real daemon, its release engine and
//! journal, the real kube-rs client, authenticated as the rendered controller's
//! ServiceAccount with a token the API server mints.
//!
//! Pods on kwok's node run nothing. Where a release needs the candidate's answers
//! (gates, smoke tests), a real `hoist serve` process on 127.0.0.1 stands in for the
//! variants' Services, through `kubernetes.service_url`. A candidate that crash-loops
//! is made so by kwok (an annotation on its pod template, [`FAIL_ANNOTATION`]); hoist
//! reads the reason from the pod status as on any cluster.
//!
//! Skipped (with a message) only when there is no control plane and
//! `HOIST_REQUIRE_ENVTEST` is unset; `tools/test.sh` sets it.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hoist_testkit::kube_api::envtest::{Envtest, FAIL_ANNOTATION, unique, yaml_files};
use serde_json::Value;

/// One test's place on the cluster: the environment's namespace and the controller's.
struct Place {
    k: Envtest,
    ns: String,
    ctl: String,
}

impl Place {
    fn new(k: Envtest, tag: &str) -> Place {
        Place {
            ns: unique(&format!("{tag}-app")),
            ctl: unique(&format!("{tag}-ctl")),
            k,
        }
    }

    fn config(&self, port: u16, extra_analysis: &str) -> String {
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
namespace = "{ns}"
image = "hoist@sha256:{image}"
model_path = "/models/m"
service_url = "http://127.0.0.1:{port}"
gateway = {{ name = "public", namespace = "gateways" }}
rollout_timeout = "60s"

[kubernetes.autoscale]
memory_percent = 80

[kubernetes.controller]
enabled = true
namespace = "{ctl}"

[[environments]]
name = "production"
steps = [{{ weight = 10, pause = "300ms" }}, {{ weight = 50, pause = "300ms" }}]
"#,
            ns = self.ns,
            ctl = self.ctl,
            image = "ab".repeat(32)
        )
    }

    /// `hoist render k8s` of `config` into `dir` (stable: v`version`).
    fn render(&self, home: &Path, config: &str, dir: &Path, version: &str) {
        let cfg = home.join("render.toml");
        std::fs::write(&cfg, config).unwrap();
        ok(&hoist(
            home,
            &[
                "render",
                "k8s",
                "--config",
                cfg.to_str().unwrap(),
                "--out",
                dir.to_str().unwrap(),
                "--version",
                version,
                "--digest",
                &format!("sha256:{}", "7".repeat(64)),
            ],
        ));
    }

    /// Applies, as the admin, only the rendered objects of these kinds.
    fn apply_kinds(&self, dir: &Path, kinds: &[&str]) {
        let mut yaml = String::new();
        for f in yaml_files(dir) {
            let text = std::fs::read_to_string(&f).unwrap();
            let kind = text
                .lines()
                .find_map(|l| l.strip_prefix("kind: "))
                .unwrap_or_default();
            if kinds.contains(&kind) {
                yaml.push_str("---\n");
                yaml.push_str(&text);
            }
        }
        self.k.apply(&yaml);
    }

    /// A kubeconfig with a token the API server mints for the rendered controller's
    /// ServiceAccount.
    fn controller_kubeconfig(&self, home: &Path) -> String {
        let p = self
            .k
            .service_account_kubeconfig(home, &self.ctl, "hoist-controller");
        p.to_str().unwrap().to_string()
    }

    fn deployment(&self, name: &str) -> Option<Value> {
        self.k.get_json("deployment", &self.ns, name)
    }

    fn annotation(&self, name: &str, key: &str) -> Option<String> {
        self.deployment(name)?["metadata"]["annotations"][key]
            .as_str()
            .map(str::to_string)
    }

    fn replicas(&self, name: &str) -> Option<i64> {
        self.deployment(name)?["spec"]["replicas"].as_i64()
    }

    /// The (stable, candidate) weights of the route's weighted rule (the one with
    /// both backends; the others force a variant by header).
    fn route_weights(&self) -> Option<(i64, i64)> {
        let r = self.k.get_json("httproute", &self.ns, "m")?;
        let rule = weighted_rule(&r)?;
        let w = |name: &str| {
            rule["backendRefs"]
                .as_array()?
                .iter()
                .find(|b| b["name"] == name)?["weight"]
                .as_i64()
        };
        Some((w("m-stable")?, w("m-candidate")?))
    }

    fn wait(&self, what: &str, f: impl FnMut() -> bool) {
        self.k.wait(what, Duration::from_secs(60), f);
    }

    fn fail_candidate_pods(&self, reason: &str) {
        let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
            FAIL_ANNOTATION: reason,
        }}}}});
        self.k.kubectl_ok(&[
            "patch",
            "deployment",
            "m-candidate",
            "-n",
            &self.ns,
            "--type",
            "merge",
            "-p",
            &patch.to_string(),
        ]);
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.k.delete_namespaces(&[&self.ns, &self.ctl]);
    }
}

fn weighted_rule(route: &Value) -> Option<&Value> {
    route["spec"]["rules"]
        .as_array()?
        .iter()
        .find(|r| r["backendRefs"].as_array().is_some_and(|b| b.len() == 2))
}

/// Everything `hoist render k8s` writes is accepted by the real API server through
/// `kubectl apply --server-side -k` (the HTTPRoute and ServiceMonitor validated by
/// their CRDs' schemas, the Roles by RBAC), and applying it again changes nothing.
#[test]
fn rendered_manifests_are_accepted_by_a_real_api_server_and_reapplying_changes_nothing() {
    let Some(k) = Envtest::get() else { return };
    let p = Place::new(k, "render");
    let home = temp_home("cluster-render");
    let dir = home.join("k8s");
    p.render(&home, &p.config(1, "enabled = false"), &dir, "1");
    let files = yaml_files(&dir);
    let kinds: BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            let t = std::fs::read_to_string(f).unwrap();
            t.lines()
                .find_map(|l| l.strip_prefix("kind: ").map(str::to_string))
        })
        .collect();
    for kind in ["HTTPRoute", "ServiceMonitor", "Role", "Deployment", "Lease"] {
        assert!(kinds.contains(kind), "{kind} rendered: {kinds:?}");
    }
    let apply = |args: &[&str]| {
        let mut a = vec!["apply", "--server-side", "-k", dir.to_str().unwrap()];
        a.extend(args);
        p.k.kubectl_ok(&a)
    };
    let out = apply(&[]);
    assert_eq!(
        out.lines()
            .filter(|l| l.ends_with(" serverside-applied"))
            .count(),
        files.len(),
        "every object applied: {out}"
    );
    let route = p.k.get_json("httproute", &p.ns, "m").unwrap();
    assert_eq!(route["spec"]["parentRefs"][0]["name"], "public", "{route}");
    let stable = p.deployment("m-stable").unwrap();
    p.wait("the stable rollout", || {
        let d = p.deployment("m-stable").unwrap();
        d["status"]["availableReplicas"].as_i64() == d["spec"]["replicas"].as_i64()
            && d["status"]["observedGeneration"] == d["metadata"]["generation"]
    });

    // The same objects again: no difference on the server, no new generation.
    p.k.assert_no_diff(&dir);
    apply(&[]);
    let again = p.deployment("m-stable").unwrap();
    assert_eq!(
        again["metadata"]["generation"],
        stable["metadata"]["generation"]
    );
    assert_eq!(again["metadata"]["uid"], stable["metadata"]["uid"]);
    let _ = std::fs::remove_dir_all(&home);
}

/// `split = "hoist"`: hoist's gateway's Deployment, Service and admin NetworkPolicy
/// are accepted by the real API server beside the rest; the gateway's pod becomes
/// ready on kwok's node and is what the app Service selects (its EndpointSlice), the
/// variants' Services stay; a second apply changes nothing.
#[test]
fn a_hoist_gateway_split_is_accepted_and_the_app_service_selects_the_gateway() {
    let Some(k) = Envtest::get() else { return };
    let p = Place::new(k, "hoistsplit");
    let home = temp_home("cluster-hoist-split");
    let dir = home.join("k8s");
    let config = p.config(1, "enabled = false").replace(
        "gateway = { name = \"public\", namespace = \"gateways\" }\n",
        "split = \"hoist\"\nadmin_token_secret = \"hoist-admin\"\nfeedback_token_secret = \"m-labels\"\n",
    );
    assert!(config.contains("split = \"hoist\""), "{config}");
    p.render(&home, &config, &dir, "1");
    let out =
        p.k.kubectl_ok(&["apply", "--server-side", "-k", dir.to_str().unwrap()]);
    for want in [
        "deployment.apps/m-gateway serverside-applied",
        "service/m-gateway serverside-applied",
        "networkpolicy.networking.k8s.io/m-gateway-admin serverside-applied",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    assert!(!out.contains("httproute"), "{out}");
    p.wait("the gateway's pod ready behind the app Service", || {
        let out = p.k.kubectl_ok(&[
            "get",
            "endpointslices",
            "-n",
            &p.ns,
            "-l",
            "kubernetes.io/service-name=m",
            "-o",
            "jsonpath={range .items[*].endpoints[*]}{.targetRef.name} {.conditions.ready}\n{end}",
        ]);
        let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
        !lines.is_empty()
            && lines
                .iter()
                .all(|l| l.starts_with("m-gateway-") && l.ends_with(" true"))
    });
    let gw = p.deployment("m-gateway").unwrap();
    let args = gw["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains(&format!("http://m-stable.{}.svc:80", p.ns)),
        "{args}"
    );
    assert!(args.contains("--feedback-token-file"), "{args}");
    let volumes = gw["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(volumes.contains("\"secretName\":\"m-labels\""), "{volumes}");
    let policy =
        p.k.get_json("networkpolicy", &p.ns, "m-gateway-admin")
            .unwrap();
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        p.ctl.as_str(),
        "{policy}"
    );
    p.k.assert_no_diff(&dir);
    let _ = std::fs::remove_dir_all(&home);
}

/// `hoist up` as the rendered controller's ServiceAccount (only its RBAC, Namespaces
/// and ServiceAccount applied beforehand: the daemon creates the rest): v1 straight to
/// stable, v2 a canary 10 → 50 → 100 through the HTTPRoute's weights, v3 crash-loops
/// and is rolled back with the pod's reason. The API server's audit log then shows
/// that the daemon used every permission the rendered Role grants, and no other.
#[test]
fn hoist_up_as_the_rendered_controller_runs_a_canary_and_rolls_back_a_crashing_candidate() {
    let Some(k) = Envtest::get() else { return };
    let p = Place::new(k, "canary");
    let server = Serve::start("breast_cancer_lr");
    let home = temp_home("cluster");
    let config = p.config(server.1, "enabled = false");
    let dir = home.join("k8s");
    p.render(&home, &config, &dir, "1");
    p.apply_kinds(
        &dir,
        &["Namespace", "ServiceAccount", "Role", "RoleBinding"],
    );
    let kubeconfig = p.controller_kubeconfig(&home);
    let d = Daemon::start_with_env(&home, &config, &[("KUBECONFIG", &kubeconfig)]);
    // The Services releases route through are applied at start.
    for name in ["m", "m-stable", "m-candidate"] {
        assert!(
            p.k.get_json("service", &p.ns, name).is_some(),
            "no Service {name}"
        );
    }

    // v1: nothing live yet, so straight to 100% and into the stable Deployment.
    register(&home, "breast_cancer_gbt", Some("champion"));
    let r = d.wait_done(1, Duration::from_secs(120));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    assert_eq!(
        p.annotation("m-stable", "hoist.dev/version").as_deref(),
        Some("1")
    );
    let digest = p.annotation("m-stable", "hoist.dev/digest").unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    // v2: a canary through the HTTPRoute's weights, then promoted.
    register(&home, "breast_cancer_lr", None);
    ok(&hoist(&home, &["deploy", "m/2", "--wait"]));
    let r = d.release(2);
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    assert_eq!(weights(&r), vec![10, 50, 100], "{r}");
    // The promotion follows the release's end: v2 into the stable Deployment, the
    // route back on stable, the candidate to zero.
    p.wait("v2 promoted into the stable Deployment", || {
        p.annotation("m-stable", "hoist.dev/version").as_deref() == Some("2")
            && p.route_weights() == Some((100, 0))
            && p.replicas("m-candidate") == Some(0)
    });
    let stable = p.deployment("m-stable").unwrap();
    assert_eq!(
        stable["status"]["observedGeneration"], stable["metadata"]["generation"],
        "{stable}"
    );
    let s = d.get("/api/v1/status");
    let env = &s["environments"][0];
    assert_eq!(env["target"], "kubernetes", "{s}");
    assert_eq!(env["stable"]["version"], "2", "{s}");

    // v3's pods crash-loop (kwok): the release fails with the pod's reason and the
    // route never leaves stable.
    p.fail_candidate_pods("CrashLoopBackOff");
    register(&home, "breast_cancer_rf", None);
    let out = hoist(&home, &["deploy", "m/3", "--wait"]);
    assert_eq!(out.status.code(), Some(5));
    let r = d.release(3);
    let reason = r["outcome"]["reason"].as_str().unwrap();
    assert!(reason.contains("CrashLoopBackOff"), "{reason}");
    assert!(weights(&r).iter().all(|w| *w == 0), "{r}");
    p.wait("the crashing candidate scaled to 0", || {
        p.replicas("m-candidate") == Some(0)
    });
    assert_eq!(p.route_weights(), Some((100, 0)));
    assert_eq!(
        p.annotation("m-stable", "hoist.dev/version").as_deref(),
        Some("2")
    );
    d.stop();

    // Every permission of the rendered Role in the environment's namespace was used,
    // and nothing else was asked there (an apply that created an object needed
    // `create` as well as `patch`).
    let mut used = BTreeSet::new();
    for (verb, resource, ns, _, code) in p.k.audited(&p.ctl, "hoist-controller") {
        assert!(
            code < 400 || code == 404,
            "{verb} {resource} in {ns} answered {code}"
        );
        if ns != p.ns {
            continue;
        }
        if verb == "patch" && code == 201 {
            used.insert(("create".to_string(), resource.clone()));
        }
        used.insert((verb, resource));
    }
    let role = p.k.get_json("role", &p.ns, "hoist-controller").unwrap();
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for r in rule["resources"].as_array().unwrap() {
            for v in rule["verbs"].as_array().unwrap() {
                granted.insert((
                    v.as_str().unwrap().to_string(),
                    r.as_str().unwrap().to_string(),
                ));
            }
        }
    }
    assert_eq!(
        granted,
        used,
        "granted but unused: {:?}; used but not granted: {:?}",
        granted.difference(&used).collect::<Vec<_>>(),
        used.difference(&granted).collect::<Vec<_>>()
    );
}

#[test]
fn without_prometheus_a_cluster_canary_fails_closed() {
    let Some(k) = Envtest::get() else { return };
    let p = Place::new(k, "noprom");
    let server = Serve::start("breast_cancer_lr");
    let home = temp_home("cluster-noprom");
    let config = p.config(server.1, "");
    let dir = home.join("k8s");
    p.render(&home, &config, &dir, "1");
    p.apply_kinds(
        &dir,
        &["Namespace", "ServiceAccount", "Role", "RoleBinding"],
    );
    let kubeconfig = p.controller_kubeconfig(&home);
    let d = Daemon::start_with_env(&home, &config, &[("KUBECONFIG", &kubeconfig)]);
    register(&home, "breast_cancer_gbt", Some("champion"));
    assert_eq!(
        d.wait_done(1, Duration::from_secs(120))["outcome"]["outcome"],
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
    assert_eq!(p.route_weights(), Some((100, 0)));
    d.stop();
}

/// A controller that died mid-canary and lost its disk left the candidate at 30%;
/// a new one with no journal adopts what runs (read from the cluster) and rolls the
/// leftover candidate back.
#[test]
fn a_controller_without_a_journal_adopts_the_cluster_and_rolls_back_a_leftover_candidate() {
    let Some(k) = Envtest::get() else { return };
    let p = Place::new(k, "adopt");
    let server = Serve::start("breast_cancer_lr");
    let home = temp_home("cluster-adopt");
    let config = p.config(server.1, "enabled = false");
    let dir = home.join("k8s");
    p.render(&home, &config, &dir, "7");
    p.k.kubectl_ok(&["apply", "--server-side", "-k", dir.to_str().unwrap()]);
    // What the dead controller left: candidate v8 at 2 replicas, 30% of the traffic.
    // (The candidate Deployment as hoist applies it: the stable one's, renamed.)
    let mut cand = p.deployment("m-stable").unwrap();
    for k in [
        "resourceVersion",
        "uid",
        "managedFields",
        "creationTimestamp",
        "generation",
    ] {
        cand["metadata"].as_object_mut().unwrap().remove(k);
    }
    cand.as_object_mut().unwrap().remove("status");
    let digest = format!("sha256:{}", "8".repeat(64));
    let text = cand
        .to_string()
        .replace(
            "\"hoist.dev/variant\":\"stable\"",
            "\"hoist.dev/variant\":\"candidate\"",
        )
        .replace("\"name\":\"m-stable\"", "\"name\":\"m-candidate\"")
        .replace(&format!("sha256:{}", "7".repeat(64)), &digest)
        .replace("\"hoist.dev/version\":\"7\"", "\"hoist.dev/version\":\"8\"");
    let mut cand: Value = serde_json::from_str(&text).unwrap();
    cand["spec"]["replicas"] = 2.into();
    let o = p.k.kubectl_as(
        &p.k.kubeconfig,
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "hoist",
            "-f",
            "-",
        ],
        Some(&cand.to_string()),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let route = p.k.get_json("httproute", &p.ns, "m").unwrap();
    let mut rules = route["spec"]["rules"].clone();
    for r in rules.as_array_mut().unwrap() {
        if r["backendRefs"].as_array().unwrap().len() == 2 {
            for b in r["backendRefs"].as_array_mut().unwrap() {
                b["weight"] = if b["name"] == "m-stable" { 70 } else { 30 }.into();
            }
        }
    }
    p.k.kubectl_ok(&[
        "patch",
        "httproute",
        "m",
        "-n",
        &p.ns,
        "--type",
        "merge",
        "-p",
        &serde_json::json!({"spec": {"rules": rules}}).to_string(),
    ]);
    assert_eq!(p.route_weights(), Some((70, 30)));

    let kubeconfig = p.controller_kubeconfig(&home);
    let d = Daemon::start_with_env(&home, &config, &[("KUBECONFIG", &kubeconfig)]);
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("7"),
        "{s}"
    );
    p.wait("the leftover candidate rolled back", || {
        p.route_weights() == Some((100, 0)) && p.replicas("m-candidate") == Some(0)
    });
    assert_eq!(
        p.annotation("m-stable", "hoist.dev/version").as_deref(),
        Some("7")
    );
    d.stop();
}

/// Two replicas of the controller (two `hoist up` with `HOIST_LEASE`, as the rendered
/// controller Deployment runs them, as its ServiceAccount): exactly one leads through
/// the Lease; when it dies, the other takes the Lease over and starts. The rendered
/// Role of the controller's namespace is exactly what leader election used.
#[test]
fn two_controllers_one_leader_through_the_lease() {
    let Some(k) = Envtest::get() else { return };
    let p = Place::new(k, "lease");
    let server = Serve::start("breast_cancer_lr");
    let home_a = temp_home("cluster-lease-a");
    let home_b = temp_home("cluster-lease-b");
    let config = p.config(server.1, "enabled = false");
    let dir = home_a.join("k8s");
    p.render(&home_a, &config, &dir, "1");
    p.apply_kinds(
        &dir,
        &["Namespace", "ServiceAccount", "Role", "RoleBinding"],
    );
    let kubeconfig = p.controller_kubeconfig(&home_a);
    let lease = format!("{}/hoist-controller", p.ctl);
    let vars = |pod: &'static str| {
        vec![
            ("KUBECONFIG", kubeconfig.clone()),
            ("HOIST_LEASE", lease.clone()),
            ("HOIST_POD_NAME", pod.to_string()),
        ]
    };
    let a_vars = vars("controller-a");
    let a = Daemon::start_with_env(
        &home_a,
        &config,
        &a_vars
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
    );
    let holder = || {
        p.k.get_json("lease", &p.ctl, "hoist-controller")
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    };
    assert_eq!(holder().as_deref(), Some("controller-a"));

    // The second replica waits: it prints nothing (its API is not up) while a leads.
    std::fs::write(home_b.join("hoist.toml"), &config).unwrap();
    let mut b = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .arg("--home")
        .arg(&home_b)
        .args(["--json", "up", "--config"])
        .arg(home_b.join("hoist.toml"))
        .envs(vars("controller-b"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = b.stdout.take().unwrap();
    std::thread::spawn(move || {
        if let Some(Ok(l)) = BufReader::new(stdout).lines().next() {
            let _ = tx.send(l);
        }
    });
    let stderr = b.stderr.take().unwrap();
    let (etx, erx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = etx.send(l);
        }
    });
    let waiting = erx
        .recv_timeout(Duration::from_secs(30))
        .expect("controller-b said nothing");
    assert!(waiting.contains("another replica holds Lease"), "{waiting}");
    assert!(
        rx.recv_timeout(Duration::from_secs(3)).is_err(),
        "b started while a leads"
    );
    assert_eq!(holder().as_deref(), Some("controller-a"));

    // a dies without a word; once its Lease expires (15 s), b leads and starts.
    let _ = a.child.id();
    drop(a);
    let first = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("controller-b never started");
    let v: Value = serde_json::from_str(&first).unwrap();
    assert!(v["api"].is_string(), "{first}");
    assert_eq!(holder().as_deref(), Some("controller-b"));
    let l = p.k.get_json("lease", &p.ctl, "hoist-controller").unwrap();
    assert_eq!(l["spec"]["leaseTransitions"], 1, "{l}");
    let _ = b.kill();
    let _ = b.wait();

    // The controller namespace's Role: every rule used by leader election.
    let mut used = BTreeSet::new();
    for (verb, resource, ns, name, code) in p.k.audited(&p.ctl, "hoist-controller") {
        if ns == p.ctl {
            assert!(
                code < 400 || code == 404,
                "{verb} {resource}/{name}: {code}"
            );
            used.insert((verb, resource));
        }
    }
    let role = p.k.get_json("role", &p.ctl, "hoist-controller").unwrap();
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for r in rule["resources"].as_array().unwrap() {
            for v in rule["verbs"].as_array().unwrap() {
                granted.insert((
                    v.as_str().unwrap().to_string(),
                    r.as_str().unwrap().to_string(),
                ));
            }
        }
    }
    assert_eq!(
        granted, used,
        "controller namespace Role vs what leader election used"
    );
    let _ = std::fs::remove_dir_all(&home_b);
}

/// `[policy]` and `model_source = "oci"` on a cluster: the daemon verifies
/// `kubernetes.image` and the model artifact (a REAL registry on loopback) before any
/// Deployment of the candidate is applied, and the pods pull exactly the verified
/// artifact, by digest. An unsigned version is refused and never applied.
#[test]
fn on_a_cluster_only_signed_artifacts_are_applied_and_pods_pull_them_by_digest() {
    use hoist_oci::{Client, ClientOptions, ImageSpec, LayerBuilder, PrivateKey, Reference};

    let Some(k) = Envtest::get() else { return };
    let p = Place::new(k, "policy");
    let reg = hoist_testkit::registry::Registry::start();
    let server = Serve::start("breast_cancer_lr");
    let home = temp_home("cluster-policy");
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
    let config = p
        .config(server.1, "enabled = false")
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
    // The RBAC is the same whatever the model source: rendered from the base config.
    let dir = home.join("k8s");
    p.render(&home, &p.config(server.1, ""), &dir, "1");
    p.apply_kinds(
        &dir,
        &["Namespace", "ServiceAccount", "Role", "RoleBinding"],
    );
    let kubeconfig = p.controller_kubeconfig(&home);
    let no_docker = home.join("no-docker-config");
    let d = Daemon::start_with_env(
        &home,
        &config,
        &[
            ("KUBECONFIG", kubeconfig.as_str()),
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
        p.annotation("m-stable", "hoist.dev/artifact").as_deref(),
        Some(pinned.as_str())
    );
    let dep = p.deployment("m-stable").unwrap();
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
            p.annotation(name, "hoist.dev/version").as_deref(),
            Some("2"),
            "v2 was applied to {name}"
        );
    }
    d.stop();
}

/// Without a Gateway the split is a replica ratio: the candidate's pods join the app
/// Service beside stable's. A promotion (`hoist promote --full`) arrives while the
/// release pauses at its first step: straight to 100%, the candidate's version into
/// the stable Deployment, the candidate back to zero.
#[test]
fn a_replica_ratio_canary_promoted_mid_rollout() {
    let Some(k) = Envtest::get() else { return };
    let p = Place::new(k, "ratio");
    let server = Serve::start("breast_cancer_lr");
    let home = temp_home("cluster-ratio");
    let config = p
        .config(server.1, "enabled = false")
        .replace(
            "gateway = { name = \"public\", namespace = \"gateways\" }\n",
            "",
        )
        .replace(
            "steps = [{ weight = 10, pause = \"300ms\" }, { weight = 50, pause = \"300ms\" }]",
            "steps = [{ weight = 25, pause = \"1h\" }]",
        );
    assert!(!config.contains("gateway ="), "{config}");
    let dir = home.join("k8s");
    p.render(&home, &config, &dir, "1");
    p.apply_kinds(
        &dir,
        &["Namespace", "ServiceAccount", "Role", "RoleBinding"],
    );
    let kubeconfig = p.controller_kubeconfig(&home);
    let d = Daemon::start_with_env(&home, &config, &[("KUBECONFIG", &kubeconfig)]);
    register(&home, "breast_cancer_gbt", Some("champion"));
    let r = d.wait_done(1, Duration::from_secs(120));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    assert!(p.k.get_json("httproute", &p.ns, "m").is_none());

    register(&home, "breast_cancer_lr", None);
    ok(&hoist(&home, &["deploy", "m/2"]));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = d.release(2);
        if r["phase"]["phase"] == "step" && r["weight"] == 25 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "release 2 never paused at 25%: {r}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Both variants' ready pods are behind the app Service `m`.
    p.wait("the candidate's pods behind the app Service", || {
        let out = p.k.kubectl_ok(&[
            "get",
            "endpointslices",
            "-n",
            &p.ns,
            "-l",
            "kubernetes.io/service-name=m",
            "-o",
            "jsonpath={range .items[*].endpoints[*]}{.targetRef.name} {.conditions.ready}\n{end}",
        ]);
        let ready = |prefix: &str| {
            out.lines()
                .any(|l| l.starts_with(prefix) && l.ends_with(" true"))
        };
        ready("m-stable-") && ready("m-candidate-")
    });
    let s = d.get("/api/v1/status");
    assert!(s.to_string().contains("replica ratio"), "{s}");

    ok(&hoist(&home, &["promote", "2", "--full"]));
    let r = d.wait_done(2, Duration::from_secs(120));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    p.wait("v2 promoted, the candidate at zero", || {
        p.annotation("m-stable", "hoist.dev/version").as_deref() == Some("2")
            && p.replicas("m-candidate") == Some(0)
            && p.replicas("m-stable").is_some_and(|n| n >= 1)
    });
    d.stop();
}

/// The controller is killed (SIGKILL) while a canary pauses at 25% through the
/// HTTPRoute; started again with its journal, it resumes the release at that step
/// (the route untouched meanwhile), and a promotion then finishes it.
#[test]
fn a_controller_killed_mid_canary_resumes_from_its_journal() {
    let Some(k) = Envtest::get() else { return };
    let p = Place::new(k, "resume");
    let server = Serve::start("breast_cancer_lr");
    let home = temp_home("cluster-resume");
    let config = p.config(server.1, "enabled = false").replace(
        "steps = [{ weight = 10, pause = \"300ms\" }, { weight = 50, pause = \"300ms\" }]",
        "steps = [{ weight = 25, pause = \"1h\" }]",
    );
    let dir = home.join("k8s");
    p.render(&home, &config, &dir, "1");
    p.apply_kinds(
        &dir,
        &["Namespace", "ServiceAccount", "Role", "RoleBinding"],
    );
    let kubeconfig = p.controller_kubeconfig(&home);
    let vars = [("KUBECONFIG", kubeconfig.as_str())];
    let mut d = Daemon::start_with_env(&home, &config, &vars);
    register(&home, "breast_cancer_gbt", Some("champion"));
    let r = d.wait_done(1, Duration::from_secs(120));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    register(&home, "breast_cancer_lr", None);
    ok(&hoist(&home, &["deploy", "m/2"]));
    let at_step = |d: &Daemon| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = d.release(2);
            if r["phase"]["phase"] == "step" && r["weight"] == 25 {
                return r;
            }
            assert!(Instant::now() < deadline, "release 2 not at 25%: {r}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    at_step(&d);
    assert_eq!(p.route_weights(), Some((75, 25)));

    // Killed without a chance to clean up; the journal stays in its home.
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    std::mem::forget(d);
    assert_eq!(p.route_weights(), Some((75, 25)));
    let d = Daemon::start_with_env(&home, &config, &vars);
    let r = at_step(&d);
    assert_eq!(r["outcome"], Value::Null, "{r}");
    assert_eq!(p.route_weights(), Some((75, 25)));
    assert_eq!(
        p.annotation("m-candidate", "hoist.dev/version").as_deref(),
        Some("2")
    );

    ok(&hoist(&home, &["promote", "2", "--full"]));
    let r = d.wait_done(2, Duration::from_secs(120));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    p.wait("v2 promoted after the restart", || {
        p.annotation("m-stable", "hoist.dev/version").as_deref() == Some("2")
            && p.route_weights() == Some((100, 0))
            && p.replicas("m-candidate") == Some(0)
    });
    d.stop();
    let _ = std::fs::remove_dir_all(&home);
}

/// Blue-green on a cluster: the candidate rolled out at 0%, smoke-tested (through the
/// real `hoist serve` standing in for its Service), then 100% through the route at
/// once and promoted.
#[test]
fn a_blue_green_release_on_a_cluster_switches_the_route_at_once() {
    let Some(k) = Envtest::get() else { return };
    let p = Place::new(k, "bluegreen");
    let server = Serve::start("breast_cancer_lr");
    let home = temp_home("cluster-bluegreen");
    let config = p.config(server.1, "enabled = false").replace(
        "steps = [{ weight = 10, pause = \"300ms\" }, { weight = 50, pause = \"300ms\" }]",
        "strategy = \"blue-green\"\nscale_down_delay = \"0s\"",
    );
    let dir = home.join("k8s");
    p.render(&home, &config, &dir, "1");
    p.apply_kinds(
        &dir,
        &["Namespace", "ServiceAccount", "Role", "RoleBinding"],
    );
    let kubeconfig = p.controller_kubeconfig(&home);
    let d = Daemon::start_with_env(&home, &config, &[("KUBECONFIG", &kubeconfig)]);
    register(&home, "breast_cancer_gbt", Some("champion"));
    let r = d.wait_done(1, Duration::from_secs(120));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    register(&home, "breast_cancer_lr", None);
    ok(&hoist(&home, &["deploy", "m/2", "--wait"]));
    let r = d.release(2);
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    assert_eq!(weights(&r), vec![100], "{r}");
    let actions: Vec<String> = r["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["actions"].as_array().unwrap().iter())
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect();
    assert!(actions.contains(&"smoke_test".to_string()), "{actions:?}");
    p.wait("v2 promoted, the route on stable", || {
        p.annotation("m-stable", "hoist.dev/version").as_deref() == Some("2")
            && p.route_weights() == Some((100, 0))
            && p.replicas("m-candidate") == Some(0)
    });
    d.stop();
}
