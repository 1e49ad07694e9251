//! `target = "kubernetes"` with `[kubernetes] split = "hoist"`: shadow steps and
//! feedback labels on a cluster, through hoist's own gateway.
//!
//! Real parts: the test control plane (`tools/envtest.sh`: kube-apiserver with RBAC,
//! controller manager, scheduler, kwok's node), `hoist up` authenticated as the
//! rendered controller's ServiceAccount, a real `hoist gateway` process on 127.0.0.1
//! (what the rendered gateway Deployment runs), and real `hoist serve` processes.
//!
//! Stand-ins, said plainly: pods on kwok's node run nothing, so the `hoist serve`
//! processes stand in for the variants' Services: the gateway's `--stable` is one
//! server (the version stable serves), its `--candidate` one that the test starts
//! with each release's model before deploying it (as new candidate pods would come
//! up). The controller reaches the gateway's admin API at `kubernetes.gateway_url`
//! and the candidate's stand-in at `kubernetes.service_url` (smoke test). Clients send
//! the golden set to the gateway's public port and post their true labels to its
//! `/feedback`, as an application would.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use hoist_testkit::kube_api::envtest::{Envtest, unique};
use serde_json::{Value, json};

const TOKEN: &str = "gateway-admin-token-for-this-test";

/// `hoist gateway` and its public and admin URLs.
struct GatewayProc(Child, String, String);

impl GatewayProc {
    fn start(stable: u16, candidate: u16) -> GatewayProc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hoist"))
            .args([
                "gateway",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--name", "production", "--stable"])
            .arg(format!("http://127.0.0.1:{stable}"))
            .arg("--candidate")
            .arg(format!("http://127.0.0.1:{candidate}"))
            .env("HOIST_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hoist gateway");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = |p: &str| {
            let l = lines.next().unwrap().unwrap();
            l.strip_prefix(p).unwrap().to_string()
        };
        let public = next("listening on ");
        let admin = next("admin API on ");
        GatewayProc(child, public, admin)
    }

    fn routes(&self) -> Value {
        reqwest::blocking::Client::new()
            .get(format!("{}/admin/routes", self.2))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// The routes once `ok` holds of them (the cluster worker applies a promotion
    /// or rollback after the release has ended), or as they are after 60 s.
    fn routes_when(&self, ok: impl Fn(&Value) -> bool) -> Value {
        let until = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.routes();
            if ok(&r) || std::time::Instant::now() > until {
                return r;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The golden set's rows: features and true label.
fn golden() -> Vec<(Vec<f64>, i64)> {
    let text = std::fs::read_to_string(repo().join("examples/data/breast_cancer_golden.jsonl"))
        .expect("the golden set");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let f = v["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            (f, v["label"].as_i64().unwrap())
        })
        .collect()
}

/// Two clients sending golden-set rows to the gateway until stopped, each answer's
/// true labels posted to `/feedback`. Counts (sent, failed, labelled).
struct Traffic {
    stop: Arc<AtomicBool>,
    counts: Arc<[AtomicU64; 3]>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(url: &str) -> Traffic {
        let data = Arc::new(golden());
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
        let threads = (0..2)
            .map(|worker| {
                let (stop, counts, data, url) =
                    (stop.clone(), counts.clone(), data.clone(), url.to_string());
                std::thread::spawn(move || {
                    let http = reqwest::blocking::Client::new();
                    let mut at = worker * 71;
                    while !stop.load(Ordering::Relaxed) {
                        let batch: Vec<&(Vec<f64>, i64)> =
                            (0..4).map(|i| &data[(at + i) % data.len()]).collect();
                        at += 4;
                        let body =
                            json!({ "inputs": batch.iter().map(|r| &r.0).collect::<Vec<_>>() });
                        let r = http
                            .post(format!("{url}/invocations"))
                            .header("content-type", "application/json")
                            .body(body.to_string())
                            .send();
                        counts[0].fetch_add(1, Ordering::Relaxed);
                        let id = match r {
                            Ok(r) if r.status().is_success() => r
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string),
                            _ => None,
                        };
                        let Some(id) = id else {
                            counts[1].fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        let labels: Vec<i64> = batch.iter().map(|r| r.1).collect();
                        let f = http
                            .post(format!("{url}/feedback"))
                            .body(json!({ "request_id": id, "labels": labels }).to_string())
                            .send();
                        if f.is_ok_and(|f| f.status().is_success()) {
                            counts[2].fetch_add(1, Ordering::Relaxed);
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            counts,
            threads,
        }
    }

    fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let c = |i: usize| self.counts[i].load(Ordering::Relaxed);
        (c(0), c(1), c(2))
    }
}

/// The numbers of a release's verdicts that have `key`.
fn verdicts_with(r: &Value, key: &str) -> Vec<Value> {
    r["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["event"]["event"] == "verdict" && t["event"]["numbers"][key].is_object())
        .map(|t| t["event"]["numbers"].clone())
        .collect()
}

#[test]
fn shadow_steps_and_feedback_labels_on_a_cluster_through_hoists_gateway() {
    let Some(k) = Envtest::get() else { return };
    let (ns, ctl) = (unique("hsplit-app"), unique("hsplit-ctl"));
    let stable_port = hoist_testkit::free_port();
    let candidate_port = hoist_testkit::free_port();
    let _stable = Serve::on("breast_cancer_gbt", stable_port);
    let gw = GatewayProc::start(stable_port, candidate_port);
    let home = temp_home("cluster-hoist-split");
    let config = format!(
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
interval = "500ms"
max_inconclusive = "20s"
compare_latency = false
drift = false
min_agreement = 0.85
max_probability_diff = 0.3
feedback = true
min_labels = 40
min_accuracy = 0.8

[kubernetes]
namespace = "{ns}"
image = "hoist@sha256:{image}"
model_path = "/models/m"
split = "hoist"
admin_token_secret = "hoist-admin"
service_url = "http://127.0.0.1:{candidate_port}"
gateway_url = "{admin}"
rollout_timeout = "60s"

[kubernetes.controller]
enabled = true
namespace = "{ctl}"

[[environments]]
name = "production"
steps = [{{ shadow = 100, pause = "4s" }}, {{ weight = 50, pause = "4s" }}]
"#,
        image = "ab".repeat(32),
        admin = gw.2,
    );
    let cfg = home.join("render.toml");
    std::fs::write(&cfg, &config).unwrap();
    let dir = home.join("k8s");
    ok(&hoist(
        &home,
        &[
            "render",
            "k8s",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
            "--version",
            "1",
            "--digest",
            &format!("sha256:{}", "7".repeat(64)),
        ],
    ));
    // As the cluster admin: only the namespaces and the controller's identity and
    // Roles; the controller applies the Services itself.
    // Namespaces first: one apply creates the objects in the order given.
    let kinds = ["Namespace", "ServiceAccount", "Role", "RoleBinding"];
    let mut docs: Vec<(usize, String)> = Vec::new();
    let mut files = Vec::new();
    // Every environment's directory and the controller's.
    let subs: Vec<std::path::PathBuf> = std::iter::once(dir.clone())
        .chain(
            std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_dir()),
        )
        .collect();
    for sub in subs {
        if let Ok(rd) = std::fs::read_dir(&sub) {
            files.extend(rd.map(|e| e.unwrap().path()));
        }
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let kind = text
            .lines()
            .find_map(|l| l.strip_prefix("kind: "))
            .unwrap_or_default();
        if let Some(rank) = kinds.iter().position(|k| *k == kind) {
            docs.push((rank, text));
        }
    }
    docs.sort_by_key(|(rank, _)| *rank);
    let yaml: String = docs.iter().map(|(_, t)| format!("---\n{t}")).collect();
    k.apply(&yaml);
    let kubeconfig = k.service_account_kubeconfig(&home, &ctl, "hoist-controller");
    // The daemon's API token is the gateway's admin token (the rendered controller
    // mounts the same Secret); the CLI finds it in the daemon's home.
    std::fs::create_dir_all(home.join("daemon")).unwrap();
    std::fs::write(home.join("daemon/token"), TOKEN).unwrap();
    let d = Daemon::start_with_env(
        &home,
        &config,
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("HOIST_ADMIN_TOKEN", TOKEN),
        ],
    );
    // The app Service selects the gateway's pods.
    let app = k.get_json("service", &ns, "m").expect("the app Service");
    assert_eq!(
        app["spec"]["selector"]["hoist.dev/variant"], "gateway",
        "{app}"
    );

    // v1 straight to stable; the gateway then routes everything to stable.
    let c1 = Serve::on("breast_cancer_gbt", candidate_port);
    register(&home, "breast_cancer_gbt", Some("champion"));
    let r = d.wait_done(1, Duration::from_secs(120));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    let routes = gw.routes_when(|r| r["routes"]["stable_version"] == "1");
    assert_eq!(routes["routes"]["stable_version"], "1", "{routes}");
    assert!(routes["routes"]["candidate_version"].is_null(), "{routes}");
    assert_eq!(routes["routes"]["feedback"], true, "{routes}");
    drop(c1);

    // v2, trained on shuffled labels, comes up as the candidate: the shadow step
    // mirrors stable's requests to it, compares the answers, and rolls it back
    // before any caller sees one of its answers.
    let c2 = Serve::on("breast_cancer_shuffled", candidate_port);
    register(&home, "breast_cancer_shuffled", None);
    let traffic = Traffic::start(&gw.1);
    let out = hoist(&home, &["deploy", "m/2", "--wait"]);
    let (sent, failed, _) = traffic.finish();
    let r = d.release(2);
    assert_eq!(out.status.code(), Some(5), "{r}");
    let reason = r["outcome"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("shadow: the candidate agreed with stable on"),
        "{reason}"
    );
    let shadow = verdicts_with(&r, "shadow");
    let last = &shadow.last().expect("a shadow verdict")["shadow"];
    assert!(last["agreement"].as_f64().unwrap() < 0.85, "{last}");
    assert!(last["mirrored"].as_u64().unwrap() >= 10, "{last}");
    assert!(!weights(&r).iter().any(|w| *w > 0), "{r}");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
    let routes = gw.routes_when(|r| r["routes"]["candidate_version"].is_null());
    assert_eq!(
        (
            &routes["routes"]["candidate_weight"],
            &routes["routes"]["shadow_percent"]
        ),
        (&json!(0), &json!(0)),
        "{routes}"
    );
    assert!(routes["routes"]["candidate_version"].is_null(), "{routes}");
    k.wait(
        "the rolled-back candidate at zero",
        Duration::from_secs(60),
        || {
            k.get_json("deployment", &ns, "m-candidate")
                .is_some_and(|d| d["spec"]["replicas"] == 0)
        },
    );
    drop(c2);

    // v3 predicts like stable: it passes the shadow step, then takes 50% of live
    // traffic while the clients' labels judge its accuracy, and is promoted.
    let _c3 = Serve::on("breast_cancer_lr", candidate_port);
    register(&home, "breast_cancer_lr", None);
    let traffic = Traffic::start(&gw.1);
    let out = hoist(&home, &["deploy", "m/3", "--wait"]);
    let (sent, failed, labelled) = traffic.finish();
    let r = d.release(3);
    assert_eq!(out.status.code(), Some(0), "{r}");
    let w = weights(&r);
    assert!(w.contains(&50) && w.last() == Some(&100), "{r}");
    let shadow = verdicts_with(&r, "shadow");
    assert!(
        shadow
            .iter()
            .any(|n| n["shadow"]["agreement"].as_f64().unwrap() >= 0.85),
        "{shadow:?}"
    );
    let feedback = verdicts_with(&r, "feedback");
    let n = feedback.last().expect("a feedback verdict");
    let candidate = &n["feedback"]["candidate"];
    assert!(candidate["labelled"].as_u64().unwrap() >= 40, "{n}");
    assert!(candidate["accuracy"].as_f64().unwrap() >= 0.8, "{n}");
    assert!(n["candidate"]["requests"].as_u64().unwrap() > 0, "{n}");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
    assert!(labelled > 0);
    k.wait(
        "v3 promoted into the stable Deployment",
        Duration::from_secs(60),
        || {
            k.get_json("deployment", &ns, "m-stable")
                .is_some_and(|d| d["metadata"]["annotations"]["hoist.dev/version"] == "3")
                && k.get_json("deployment", &ns, "m-candidate")
                    .is_some_and(|d| d["spec"]["replicas"] == 0)
        },
    );
    let routes = gw.routes_when(|r| r["routes"]["stable_version"] == "3");
    assert_eq!(routes["routes"]["stable_version"], "3", "{routes}");
    assert!(routes["routes"]["candidate_version"].is_null(), "{routes}");
    let s = d.get("/api/v1/status");
    assert!(s.to_string().contains("hoist's gateway"), "{s}");
    d.stop();
    k.delete_namespaces(&[&ns, &ctl]);
    let _ = std::fs::remove_dir_all(&home);
}
