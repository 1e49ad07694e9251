//! The end-to-end harness shared by the release and gate tests: a real `hoist up`
//! daemon started as a child process, the `hoist` CLI, and a traffic generator that
//! counts every failed request.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub fn repo() -> PathBuf {
    hoist_testkit::repo_root()
}

pub fn model(name: &str) -> PathBuf {
    hoist_testkit::example_model(name)
}

pub fn temp_home(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hoist-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn hoist(home: &Path, args: &[&str]) -> Output {
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

pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "hoist failed ({:?}):\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Registers an example model package as model `name`, aliased `champion`.
pub fn register_as(home: &Path, package: &str, name: &str) {
    let p = model(package);
    let args = [
        "model",
        "register",
        p.to_str().unwrap(),
        "--name",
        name,
        "--alias",
        "champion",
    ];
    ok(&hoist(home, &args));
}

pub fn register(home: &Path, package: &str, alias: Option<&str>) {
    let p = model(package);
    let mut args = vec!["model", "register", p.to_str().unwrap(), "--name", "m"];
    if let Some(a) = alias {
        args.extend(["--alias", a]);
    }
    ok(&hoist(home, &args));
}

pub const BASE: &str = r#"
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

pub struct Daemon {
    pub child: Child,
    pub home: PathBuf,
    pub envs: BTreeMap<String, String>,
    http: reqwest::blocking::Client,
    api: String,
}

impl Daemon {
    pub fn start(home: &Path, config: &str) -> Daemon {
        Daemon::start_with_env(home, config, &[])
    }

    pub fn start_with_env(home: &Path, config: &str, vars: &[(&str, &str)]) -> Daemon {
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
            .envs(vars.iter().copied())
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

    pub fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.api))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    pub fn release(&self, id: u64) -> Value {
        self.get(&format!("/api/v1/releases/{id}"))
    }

    pub fn wait_done(&self, id: u64, timeout: Duration) -> Value {
        let mut last = Value::Null;
        hoist_testkit::poll(timeout, || {
            let r = self.release(id);
            if r["phase"]["phase"] == "done" {
                return Some(r);
            }
            last = r;
            None
        })
        .unwrap_or_else(|| panic!("release {id} did not finish: {last}"))
    }

    pub fn wait_for(&self, what: &str, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        hoist_testkit::poll(timeout, || {
            let s = self.get("/api/v1/status");
            if f(&s) {
                return Some(s);
            }
            last = s;
            None
        })
        .unwrap_or_else(|| panic!("timed out waiting for {what}: {last}"))
    }

    pub fn stable_version(s: &Value, env: &str) -> Option<String> {
        s["environments"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == env)?["stable"]["version"]
            .as_str()
            .map(str::to_string)
    }

    pub fn env(&self, name: &str) -> String {
        self.envs[name].clone()
    }

    pub fn stop(mut self) {
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
pub struct Traffic {
    stop: Arc<AtomicBool>,
    counts: Arc<Mutex<BTreeMap<String, (u64, u64)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    /// Two clients sending `rows`-row predictions, each pausing 8 ms between requests.
    pub fn start(url: &str, rows: usize) -> Traffic {
        Traffic::paced(url, rows, 2, Duration::from_millis(8))
    }

    /// `clients` clients sending `rows`-row predictions of breast_cancer_lr's input
    /// example, each pausing `pause` between requests.
    pub fn paced(url: &str, rows: usize, clients: usize, pause: Duration) -> Traffic {
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
        Traffic::of_rows(url, rows, clients, pause)
    }

    /// `clients` clients sending these rows as one prediction request each time,
    /// each pausing `pause` between requests.
    pub fn of_rows(url: &str, rows: Vec<Value>, clients: usize, pause: Duration) -> Traffic {
        let body = serde_json::json!({ "inputs": rows }).to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let threads = (0..clients)
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
                                let good = r.status().is_success();
                                let mut key =
                                    format!("{}/v{}", h("x-hoist-variant"), h("x-hoist-version"));
                                if !good {
                                    // A failure names its status and what the gateway said.
                                    let status = r.status().as_u16();
                                    let body = r.text().unwrap_or_default();
                                    let said: String = body.chars().take(160).collect();
                                    key = format!("{key} {status} {said}");
                                }
                                (key, good)
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
                        std::thread::sleep(pause);
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

    pub fn finish(self) -> BTreeMap<String, (u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        self.counts.lock().unwrap().clone()
    }
}

pub fn failed(counts: &BTreeMap<String, (u64, u64)>, prefix: &str) -> u64 {
    counts
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v.1)
        .sum()
}

pub fn served(counts: &BTreeMap<String, (u64, u64)>, key: &str) -> u64 {
    counts.get(key).map(|v| v.0).unwrap_or(0)
}

pub fn weights(release: &Value) -> Vec<u64> {
    release["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["actions"].as_array().unwrap().iter())
        .filter(|a| a["action"] == "set_weight")
        .map(|a| a["weight"].as_u64().unwrap())
        .collect()
}

/// BASE with `[[models]]` `names` instead of its `[model]`, `server` added to its
/// `[server]` table, and one `production` environment with `env` added.
pub fn models_config(names: &[&str], server: &str, env: &str) -> String {
    let mut text = BASE
        .replace(
            "[model]\nname = \"m\"\ntrigger = { alias = \"champion\" }\n",
            "",
        )
        .replace("[server]\n", &format!("[server]\n{server}"));
    for m in names {
        text.push_str(&format!("\n[[models]]\nname = \"{m}\"\n"));
    }
    text.push_str(&format!(
        "\n[[environments]]\nname = \"production\"\nlisten = \"127.0.0.1:0\"\n{env}\n"
    ));
    text
}

/// The release of model `m` at `version`, once it has finished.
pub fn model_release_done(d: &Daemon, m: &str, version: &str) -> Value {
    let mut last = Value::Null;
    hoist_testkit::poll(Duration::from_secs(120), || {
        let list = d.get(&format!("/api/v1/models/{m}/releases"));
        let r = list["releases"]
            .as_array()?
            .iter()
            .find(|r| r["version"] == version)
            .cloned();
        match r {
            Some(r) if r["phase"]["phase"] == "done" => Some(r),
            r => {
                last = r.unwrap_or(list);
                None
            }
        }
    })
    .unwrap_or_else(|| panic!("{m} v{version} did not finish: {last}"))
}

pub fn production(extra: &str) -> String {
    format!("{BASE}\n[[environments]]\nname = \"production\"\nlisten = \"127.0.0.1:0\"\n{extra}\n")
}

/// v1 goes live; returns the daemon with steady traffic ready to start.
pub fn with_v1(tag: &str, config: &str) -> Daemon {
    let home = temp_home(tag);
    let d = Daemon::start(&home, config);
    register(&home, "breast_cancer_gbt", Some("champion"));
    let r = d.wait_done(1, Duration::from_secs(60));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    d
}

/// `hoist deploy MODEL --wait [EXTRA...]`: its exit code and what it printed.
pub fn deploy_wait_with(home: &Path, model: &str, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["deploy", model, "--wait"];
    args.extend_from_slice(extra);
    let out = hoist(home, &args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `hoist deploy MODEL --wait`: its exit code and what it printed.
pub fn deploy_wait(home: &Path, model: &str) -> (Option<i32>, String) {
    deploy_wait_with(home, model, &[])
}

/// `hoist deploy m/<release> --wait` under steady traffic of `rows`-row requests; the
/// release must end rolled back (exit 5). Returns the release, what the client saw,
/// and the reason.
pub fn rolled_back_under_traffic(
    d: &Daemon,
    release: u64,
    rows: usize,
) -> (Value, BTreeMap<String, (u64, u64)>, String) {
    let traffic = Traffic::start(&d.env("production"), rows);
    let (code, stdout) = deploy_wait(&d.home, &format!("m/{release}"));
    let counts = traffic.finish();
    assert_eq!(code, Some(5), "{stdout}");
    let r = d.release(release);
    let reason = r["outcome"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (r, counts, reason)
}

/// `strip --strip-debug` of the test build's hoist into `dir`/bin, the binary directory
/// `hoist image push --bin-dir` packs (the unstripped test build is several times larger).
pub fn stripped_bin(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let ok = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(bin.join("hoist"))
        .arg(env!("CARGO_BIN_EXE_hoist"))
        .status()
        .expect("strip (binutils)")
        .success();
    assert!(ok, "strip failed");
    bin
}

/// A real `hoist serve` of an example model on 127.0.0.1 (tract, one worker), ready
/// when returned, killed on drop; `.1` is its port. Stands in for a model server
/// hoist did not start (a variant's Service on a cluster, a gateway's upstream).
pub struct Serve(pub Child, pub u16);

impl Serve {
    /// On a free port.
    pub fn start(package: &str) -> Serve {
        Serve::on(package, hoist_testkit::free_port())
    }

    /// On `port`.
    pub fn on(package: &str, port: u16) -> Serve {
        let child = Command::new(env!("CARGO_BIN_EXE_hoist"))
            .arg("serve")
            .arg("--model")
            .arg(model(package))
            .args(["--runtime", "tract", "--workers", "1", "--port"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("hoist serve");
        let addr = format!("127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !hoist_testkit::answers_200(&addr, "/v2/health/ready") {
            assert!(
                std::time::Instant::now() < deadline,
                "hoist serve did not get ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Serve(child, port)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
