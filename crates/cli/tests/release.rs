//! End-to-end release tests: the real `hoist up` daemon, its gateways and real
//! `hoist-server` processes on 127.0.0.1, the embedded registry, and the CLI talking
//! to the daemon's API. Traffic generators count every failed request.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model(name: &str) -> PathBuf {
    repo().join("examples/models").join(name)
}

fn temp_home(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hoist-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn hoist(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hoist"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("HOIST_API")
        .env_remove("HOIST_ADMIN_TOKEN")
        .env_remove("HOIST_ADMIN_TOKEN_FILE")
        .output()
        .expect("run hoist")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "hoist failed ({:?}):\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn register(home: &Path, package: &str, alias: Option<&str>) {
    let p = model(package);
    let mut args = vec!["model", "register", p.to_str().unwrap(), "--name", "m"];
    if let Some(a) = alias {
        args.extend(["--alias", a]);
    }
    ok(&hoist(home, &args));
}

const BASE: &str = r#"
[api]
listen = "127.0.0.1:0"

[registry]
url = "embedded"
poll_interval = "100ms"

[model]
name = "m"
trigger = { alias = "champion" }

[server]
runtime = "tract"
stop_grace = "5s"
args = ["--workers", "1"]

[analysis]
interval = "200ms"
max_p99_ms = 1000
min_requests = 10
max_error_rate = 0.02
max_inconclusive = "20s"
"#;

struct Daemon {
    child: Child,
    home: PathBuf,
    envs: BTreeMap<String, String>,
    http: reqwest::blocking::Client,
    api: String,
}

impl Daemon {
    fn start(home: &Path, config: &str) -> Daemon {
        let cfg = home.join("hoist.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_hoist"))
            .arg("--home")
            .arg(home)
            .args(["--json", "up", "--config"])
            .arg(&cfg)
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("HOIST_ADMIN_TOKEN")
            .env_remove("HOIST_ADMIN_TOKEN_FILE")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hoist up");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("hoist up printed nothing").unwrap();
        let v: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{first}: {e}"));
        // Keep draining the progress lines so the daemon never blocks on its stdout.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        let envs = v["environments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["url"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        Daemon {
            child,
            home: home.to_path_buf(),
            envs,
            http: reqwest::blocking::Client::new(),
            api: v["api"].as_str().unwrap().to_string(),
        }
    }

    fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.api))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn release(&self, id: u64) -> Value {
        self.get(&format!("/api/v1/releases/{id}"))
    }

    fn wait_done(&self, id: u64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.release(id);
            if r["phase"]["phase"] == "done" {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "release {id} did not finish: {r}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for(&self, what: &str, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.get("/api/v1/status");
            if f(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stable_version(s: &Value, env: &str) -> Option<String> {
        s["environments"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == env)?["stable"]["version"]
            .as_str()
            .map(str::to_string)
    }

    fn env(&self, name: &str) -> String {
        self.envs[name].clone()
    }

    fn stop(mut self) {
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let _ = self.child.wait();
        std::mem::forget(self);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Steady prediction traffic; counts answers per (variant, version) and failures.
struct Traffic {
    stop: Arc<AtomicBool>,
    counts: Arc<Mutex<BTreeMap<String, (u64, u64)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(url: &str, rows: usize) -> Traffic {
        let example: Value = serde_json::from_str(
            &std::fs::read_to_string(model("breast_cancer_lr").join("input_example.json")).unwrap(),
        )
        .unwrap();
        let rows: Vec<Value> = example
            .as_array()
            .unwrap()
            .iter()
            .cycle()
            .take(rows)
            .cloned()
            .collect();
        let body = serde_json::json!({ "inputs": rows }).to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let threads = (0..2)
            .map(|_| {
                let (stop, counts, url, body) =
                    (stop.clone(), counts.clone(), url.to_string(), body.clone());
                std::thread::spawn(move || {
                    let http = reqwest::blocking::Client::new();
                    while !stop.load(Ordering::Relaxed) {
                        let r = http
                            .post(format!("{url}/invocations"))
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send();
                        let (key, good) = match r {
                            Ok(r) => {
                                let h = |k: &str| {
                                    r.headers()
                                        .get(k)
                                        .and_then(|v| v.to_str().ok())
                                        .unwrap_or("none")
                                        .to_string()
                                };
                                let key =
                                    format!("{}/v{}", h("x-hoist-variant"), h("x-hoist-version"));
                                (key, r.status().is_success())
                            }
                            Err(_) => ("transport".to_string(), false),
                        };
                        let mut c = counts.lock().unwrap();
                        let e = c.entry(key).or_insert((0, 0));
                        if good {
                            e.0 += 1
                        } else {
                            e.1 += 1
                        }
                        drop(c);
                        std::thread::sleep(Duration::from_millis(8));
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

    fn finish(self) -> BTreeMap<String, (u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        self.counts.lock().unwrap().clone()
    }
}

fn failed(counts: &BTreeMap<String, (u64, u64)>, prefix: &str) -> u64 {
    counts
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v.1)
        .sum()
}

fn served(counts: &BTreeMap<String, (u64, u64)>, key: &str) -> u64 {
    counts.get(key).map(|v| v.0).unwrap_or(0)
}

fn weights(release: &Value) -> Vec<u64> {
    release["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["actions"].as_array().unwrap().iter())
        .filter(|a| a["action"] == "set_weight")
        .map(|a| a["weight"].as_u64().unwrap())
        .collect()
}

fn production(extra: &str) -> String {
    format!("{BASE}\n[[environments]]\nname = \"production\"\nlisten = \"127.0.0.1:0\"\n{extra}\n")
}

/// v1 goes live; returns the daemon with steady traffic ready to start.
fn with_v1(tag: &str, config: &str) -> Daemon {
    let home = temp_home(tag);
    let d = Daemon::start(&home, config);
    register(&home, "breast_cancer_gbt", Some("champion"));
    let r = d.wait_done(1, Duration::from_secs(60));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    d
}

#[test]
fn canary_through_staging_and_production_under_load_fails_no_request() {
    let config = format!(
        "{BASE}
[[environments]]
name = \"staging\"
listen = \"127.0.0.1:0\"
strategy = \"blue-green\"
analysis = {{ enabled = false }}

[[environments]]
name = \"production\"
listen = \"127.0.0.1:0\"
steps = [{{ weight = 25, pause = \"1500ms\" }}, {{ weight = 50, pause = \"1500ms\" }}]
"
    );
    let d = with_v1("canary", &config);
    let traffic = Traffic::start(&d.env("production"), 2);
    std::thread::sleep(Duration::from_millis(300));
    register(&d.home, "breast_cancer_lr", Some("champion"));
    let r = d.wait_done(2, Duration::from_secs(90));
    let counts = traffic.finish();
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    assert_eq!(r["trigger"], "alias champion → v2");
    // Staging switched at once; production walked 25 → 50 → 100.
    assert_eq!(weights(&r), vec![100, 25, 50, 100], "{r}");
    let s = d.get("/api/v1/status");
    assert_eq!(Daemon::stable_version(&s, "staging").as_deref(), Some("2"));
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("2")
    );
    assert_eq!(
        failed(&counts, ""),
        0,
        "failed requests during the canary: {counts:?}"
    );
    assert!(served(&counts, "candidate/v2") > 10, "{counts:?}");
    assert!(served(&counts, "stable/v1") > 10, "{counts:?}");
    // The registry carries hoist's results.
    let show: Value =
        serde_json::from_str(&ok(&hoist(&d.home, &["--json", "model", "show", "m/2"]))).unwrap();
    assert_eq!(show["tags"]["hoist.production"], "live", "{show}");
    assert_eq!(show["tags"]["hoist.staging"], "passed", "{show}");
    // history lists both releases with their digests.
    let h: Value = serde_json::from_str(&ok(&hoist(&d.home, &["--json", "history"]))).unwrap();
    let rel = h["releases"].as_array().unwrap();
    assert_eq!(rel.len(), 2);
    assert!(
        rel.iter()
            .all(|r| r["digest"].as_str().unwrap().starts_with("sha256:"))
    );
    d.stop();
}

#[test]
fn blue_green_switches_in_one_step_and_deploy_wait_exits_zero() {
    let d = with_v1(
        "bluegreen",
        &production(
            "strategy = \"blue-green\"\nscale_down_delay = \"1s\"\nanalysis = { min_requests = 1 }",
        ),
    );
    register(&d.home, "breast_cancer_lr", None);
    let traffic = Traffic::start(&d.env("production"), 2);
    let out = hoist(&d.home, &["deploy", "m/2", "--wait"]);
    let counts = traffic.finish();
    let text = ok(&out);
    assert!(text.contains("succeeded"), "{text}");
    let r = d.release(2);
    assert_eq!(weights(&r), vec![100]);
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
    assert!(served(&counts, "candidate/v2") > 0, "{counts:?}");
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("2")
    );
    assert!(s["environments"][0]["candidate"].is_null());
}

#[test]
fn a_candidate_answering_errors_is_rolled_back_by_itself() {
    let d = with_v1(
        "errors",
        &production("steps = [{ weight = 50, pause = \"5s\" }]"),
    );
    register(&d.home, "breast_cancer_batch2", None);
    // One-row requests: the candidate's hard-coded batch size fails them.
    let traffic = Traffic::start(&d.env("production"), 1);
    let out = hoist(&d.home, &["deploy", "m/2", "--wait"]);
    let counts = traffic.finish();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r = d.release(2);
    let reason = r["outcome"]["reason"].as_str().unwrap();
    assert!(reason.contains("error rate"), "{reason}");
    assert_eq!(failed(&counts, "stable"), 0, "{counts:?}");
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("1")
    );
    assert!(s["environments"][0]["candidate"].is_null());
    assert_eq!(s["environments"][0]["weight"], 0);
    let show: Value =
        serde_json::from_str(&ok(&hoist(&d.home, &["--json", "model", "show", "m/2"]))).unwrap();
    assert!(
        show["tags"]["hoist.rollback_reason"]
            .as_str()
            .unwrap()
            .contains("error rate"),
        "{show}"
    );
}

#[test]
fn a_slow_candidate_is_rolled_back_on_latency_with_no_failed_request() {
    let config =
        production("steps = [{ weight = 50, pause = \"5s\" }]\nanalysis = { max_p99_ms = 25 }");
    let d = with_v1("latency", &config);
    register(&d.home, "breast_cancer_slow", None);
    let traffic = Traffic::start(&d.env("production"), 2);
    let out = hoist(&d.home, &["deploy", "m/2", "--wait"]);
    let counts = traffic.finish();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r = d.release(2);
    let reason = r["outcome"]["reason"].as_str().unwrap();
    assert!(reason.contains("p99 latency"), "{reason}");
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
    assert!(served(&counts, "candidate/v2") > 0, "{counts:?}");
    // The decision and the switch back are one transition.
    let last = r["transitions"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"]["verdict"]["verdict"], "fail");
    assert_eq!(last["actions"][0]["action"], "set_weight");
    assert_eq!(last["actions"][0]["weight"], 0);
}

#[test]
fn approval_manual_pause_promote_and_abort() {
    let home = temp_home("approval");
    let d = Daemon::start(
        &home,
        &production(
            "approval = true\nsteps = [{ weight = 30, pause = true }]\nanalysis = { enabled = false }",
        ),
    );
    // Even the first version waits for approval before it serves.
    register(&home, "breast_cancer_gbt", Some("champion"));
    d.wait_for("approval of 1", Duration::from_secs(30), |s| {
        s["active"][0]["phase"]["phase"] == "awaiting_approval"
    });
    ok(&hoist(&home, &["approve", "1"]));
    assert_eq!(
        d.wait_done(1, Duration::from_secs(20))["outcome"]["outcome"],
        "succeeded"
    );
    register(&d.home, "breast_cancer_lr", None);
    ok(&hoist(&d.home, &["deploy", "m/2"]));
    d.wait_for("approval", Duration::from_secs(30), |s| {
        s["active"][0]["summary"]
            .as_str()
            .is_some_and(|x| x.contains("waiting for `hoist approve 2`"))
    });
    // Promote is refused while it waits for approval.
    let refused = hoist(&d.home, &["promote", "2"]);
    assert_eq!(refused.status.code(), Some(6));
    ok(&hoist(&d.home, &["approve", "2"]));
    let s = d.wait_for("the manual pause", Duration::from_secs(10), |s| {
        s["environments"][0]["weight"] == 30
    });
    assert!(
        s["active"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("paused until `hoist promote 2`"),
        "{s}"
    );
    ok(&hoist(&d.home, &["promote", "2"]));
    let r = d.wait_done(2, Duration::from_secs(20));
    assert_eq!(r["outcome"]["outcome"], "succeeded");

    // A second release, aborted during its pause: back to v2 at once.
    register(&d.home, "breast_cancer_rf", None);
    ok(&hoist(&d.home, &["deploy", "m/3"]));
    d.wait_for("approval of 3", Duration::from_secs(30), |s| {
        s["active"][0]["phase"]["phase"] == "awaiting_approval"
    });
    ok(&hoist(&d.home, &["approve", "3"]));
    d.wait_for("the pause of 3", Duration::from_secs(10), |s| {
        s["environments"][0]["weight"] == 30
    });
    // A newer deployment is refused while 3 is mid-rollout (unless --supersede).
    let refused = hoist(&d.home, &["deploy", "m/1"]);
    assert_eq!(refused.status.code(), Some(6));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("release 3 (v3) is mid-rollout") && err.contains("--supersede"),
        "{err}"
    );
    let traffic = Traffic::start(&d.env("production"), 2);
    std::thread::sleep(Duration::from_millis(300));
    ok(&hoist(
        &d.home,
        &["abort", "3", "--reason", "wrong feature set"],
    ));
    std::thread::sleep(Duration::from_millis(300));
    let counts = traffic.finish();
    let r = d.release(3);
    assert_eq!(r["outcome"]["outcome"], "aborted");
    assert_eq!(r["outcome"]["reason"], "wrong feature set");
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("2")
    );
    // A finished release takes no more commands.
    assert_eq!(hoist(&d.home, &["abort", "3"]).status.code(), Some(6));
    assert_eq!(hoist(&d.home, &["approve", "99"]).status.code(), Some(3));
}

#[test]
fn rollback_to_a_version_and_back_to_the_previous() {
    let d = with_v1("rollback", &production("steps = []"));
    register(&d.home, "breast_cancer_lr", Some("champion"));
    let r = d.wait_done(2, Duration::from_secs(60));
    assert_eq!(r["outcome"]["outcome"], "succeeded");
    let traffic = Traffic::start(&d.env("production"), 2);
    ok(&hoist(&d.home, &["rollback", "--to", "1"]));
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("1")
    );
    // Without --to: the previous live version (v2 again).
    ok(&hoist(&d.home, &["rollback"]));
    let counts = traffic.finish();
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("2")
    );
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
    let h: Value = serde_json::from_str(&ok(&hoist(
        &d.home,
        &["--json", "history", "--env", "production"],
    )))
    .unwrap();
    let triggers: Vec<&str> = h["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["trigger"].as_str().unwrap())
        .collect();
    assert_eq!(triggers[0], "rollback to v2");
    assert_eq!(triggers[1], "rollback to v1");
    // An unknown environment is a usage error.
    assert_eq!(
        hoist(&d.home, &["rollback", "--env", "qa"]).status.code(),
        Some(2)
    );
}

#[test]
fn a_daemon_killed_mid_canary_resumes_and_never_repeats_a_step() {
    let config = production(
        "steps = [{ weight = 20, pause = \"1s\" }, { weight = 40, pause = \"4s\" }, { weight = 60, pause = \"1s\" }]\nanalysis = { min_requests = 1 }",
    );
    let d = with_v1("sigkill", &config);
    let home = d.home.clone();
    register(&home, "breast_cancer_lr", None);
    let traffic = Traffic::start(&d.env("production"), 2);
    ok(&hoist(&home, &["deploy", "m/2"]));
    let s = d.wait_for("step 2", Duration::from_secs(30), |s| {
        s["environments"][0]["weight"] == 40
    });
    let pids: Vec<u64> = s["environments"][0]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k == "stable" || *k == "candidate")
        .flat_map(|(_, v)| v["servers"].as_array().cloned().unwrap_or_default())
        .filter_map(|srv| srv["pid"].as_u64())
        .collect();
    assert_eq!(pids.len(), 2, "{s}");
    let _ = traffic.finish();
    // SIGKILL: no cleanup at all.
    let mut d = d;
    let _ = d.child.kill();
    let _ = d.child.wait();
    std::mem::forget(d);
    // Its model servers die with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) {
        assert!(Instant::now() < deadline, "orphaned servers: {pids:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let d = Daemon::start(&home, &config);
    let traffic = Traffic::start(&d.env("production"), 2);
    let r = d.wait_done(2, Duration::from_secs(60));
    let counts = traffic.finish();
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    // Each step ran once; the resumed step's weight was re-applied (not a new step).
    let begun: Vec<u64> = r["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["actions"].as_array().unwrap().iter())
        .filter(|a| a["action"] == "begin_analysis")
        .map(|a| a["step"].as_u64().unwrap())
        .collect();
    assert_eq!(begun, vec![0, 1, 2], "{r}");
    assert_eq!(weights(&r), vec![20, 40, 60, 100]);
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("2")
    );
}

fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.split_whitespace().nth(2).is_none_or(|st| st != "Z"),
        Err(_) => false,
    }
}

#[test]
fn bad_config_is_refused_with_the_key() {
    let home = temp_home("badcfg");
    let cfg = home.join("hoist.toml");
    std::fs::write(&cfg, "[model]\nname = \"m\"\n\n[[environments]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nsteps = [{ weight = 50 }, { weight = 10 }]\n").unwrap();
    let o = hoist(&home, &["up", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("environments[0].steps[1].weight"), "{err}");
    assert!(err.contains("line 4"), "{err}");
    std::fs::write(&cfg, "[modle]\nname = \"m\"\n").unwrap();
    let o = hoist(&home, &["up", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("modle"));
    // No daemon: a clear error naming the address.
    let o = hoist(&home, &["--api", "http://127.0.0.1:9", "status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("no hoist daemon answers at http://127.0.0.1:9")
    );
    let _ = std::fs::remove_dir_all(&home);
}
