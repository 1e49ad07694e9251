//! `hoist gateway`: hoist's gateway alone, as a process, in front of two real
//! `hoist serve` processes, driven through its token-protected admin API on its own
//! port. What a cluster's `split = "hoist"` runs in its gateway pod.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::{Value, json};

/// A `hoist gateway` process and the addresses it printed.
struct GatewayProc {
    child: Child,
    public: String,
    admin: String,
}

impl GatewayProc {
    fn start(args: &[&str], vars: &[(&str, &str)]) -> GatewayProc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hoist"))
            .args([
                "gateway",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .env_remove("HOIST_ADMIN_TOKEN")
            .envs(vars.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hoist gateway");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = |prefix: &str| {
            let l = lines
                .next()
                .expect("hoist gateway printed its addresses")
                .unwrap();
            l.strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{l:?} does not start with {prefix:?}"))
                .to_string()
        };
        let public = next("listening on ");
        let admin = next("admin API on ");
        GatewayProc {
            child,
            public,
            admin,
        }
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn predict(http: &reqwest::blocking::Client, url: &str) -> reqwest::blocking::Response {
    let row: Vec<f64> = (0..30).map(|i| i as f64 * 0.5).collect();
    http.post(format!("{url}/invocations"))
        .header("content-type", "application/json")
        .body(json!({ "inputs": [row] }).to_string())
        .send()
        .unwrap()
}

fn put(http: &reqwest::blocking::Client, g: &GatewayProc, token: &str, body: &str) -> (u16, Value) {
    let r = http
        .put(format!("{}/admin/routes", g.admin))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn snapshot(http: &reqwest::blocking::Client, g: &GatewayProc, token: &str) -> Value {
    let r = http
        .get(format!("{}/admin/snapshot", g.admin))
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

#[test]
fn the_admin_api_sets_the_split_and_hands_out_the_counters_only_with_the_token() {
    let stable = Serve::start("breast_cancer_gbt");
    let candidate = Serve::start("breast_cancer_lr");
    let home = temp_home("gateway-cmd");
    let token_file = home.join("token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let g = GatewayProc::start(
        &[
            "--name",
            "production",
            "--stable",
            &format!("http://127.0.0.1:{}", stable.1),
            "--candidate",
            &format!("127.0.0.1:{}", candidate.1),
            "--admin-token-file",
            token_file.to_str().unwrap(),
        ],
        &[],
    );
    let http = reqwest::blocking::Client::new();

    // All traffic on stable from the start.
    for _ in 0..5 {
        let r = predict(&http, &g.public);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-hoist-variant"], "stable");
    }

    // No token, a wrong one: 401, and nothing changes. Probes need none.
    let r = http
        .get(format!("{}/admin/snapshot", g.admin))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let (s, _) = put(
        &http,
        &g,
        "wrong",
        r#"{"candidate_weight": 100, "candidate_version": "2"}"#,
    );
    assert_eq!(s, 401);
    assert_eq!(
        http.get(format!("{}/healthz", g.admin))
            .send()
            .unwrap()
            .status(),
        200
    );
    // The admin API is not on the public port: there the path goes to the model
    // server like any other request.
    let r = http
        .get(format!("{}/admin/snapshot", g.public))
        .bearer_auth("first-token")
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);

    // Bad input: a clear 400 naming what is wrong; the split stays as it was.
    for (body, want) in [
        (
            r#"{"candidate_weight": 150, "candidate_version": "2"}"#,
            "percentages",
        ),
        (r#"{"candidate_weight": 10}"#, "needs a candidate_version"),
        (r#"{"weight": 10}"#, "unknown field `weight`"),
        ("not json", "routes:"),
    ] {
        let (s, v) = put(&http, &g, "first-token", body);
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(want), "{body}: {v}");
    }
    assert_eq!(
        predict(&http, &g.public).headers()["x-hoist-variant"],
        "stable"
    );

    // All traffic to the candidate, in one call.
    let (s, v) = put(
        &http,
        &g,
        "first-token",
        r#"{"candidate_weight": 100, "stable_version": "1", "candidate_version": "2"}"#,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["routes"]["candidate_weight"], 100, "{v}");
    assert_eq!(
        v["candidate_addrs"][0],
        format!("127.0.0.1:{}", candidate.1),
        "{v}"
    );
    let before = snapshot(&http, &g, "first-token");
    for _ in 0..10 {
        let r = predict(&http, &g.public);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-hoist-variant"], "candidate");
        assert_eq!(r.headers()["x-hoist-version"], "2");
    }
    let after = snapshot(&http, &g, "first-token");
    assert_eq!(after["instance"], before["instance"]);
    let count = |s: &Value, v: &str| s["snapshot"][v]["requests"].as_u64().unwrap();
    assert_eq!(count(&after, "candidate") - count(&before, "candidate"), 10);
    // Stable answered the first five predictions and the one after the bad input.
    assert_eq!(after["snapshot"]["stable"]["ok"], 6, "{after}");
    // The gateway's own metrics are on the public port, for Prometheus.
    let metrics = http
        .get(format!("{}/metrics", g.public))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("hoist_gateway_requests_total"),
        "{metrics}"
    );

    // The token file is re-read: a rotated Secret needs no restart.
    std::fs::write(&token_file, "second-token\n").unwrap();
    let (s, _) = put(&http, &g, "first-token", r#"{"stable_version": "1"}"#);
    assert_eq!(s, 401);
    let (s, v) = put(&http, &g, "second-token", r#"{"stable_version": "1"}"#);
    assert_eq!(s, 200, "{v}");
    assert!(v["routes"]["candidate_version"].is_null(), "{v}");
    assert_eq!(
        predict(&http, &g.public).headers()["x-hoist-variant"],
        "stable"
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn the_gateway_refuses_to_start_without_a_token_or_on_one_port() {
    let run = |args: &[&str], vars: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_hoist"))
            .arg("gateway")
            .args(args)
            .env_remove("HOIST_ADMIN_TOKEN")
            .envs(vars.iter().copied())
            .output()
            .unwrap()
    };
    let out = run(
        &["--admin-listen", "127.0.0.1:0", "--stable", "127.0.0.1:1"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the admin API needs a token"),
        "{out:?}"
    );
    let out = run(
        &[
            "--listen",
            "127.0.0.1:7",
            "--admin-listen",
            "127.0.0.1:7",
            "--stable",
            "127.0.0.1:1",
        ],
        &[("HOIST_ADMIN_TOKEN", "t")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("never on the public port"),
        "{out:?}"
    );
    let out = run(
        &["--admin-listen", "127.0.0.1:0", "--stable", "https://x:1"],
        &[("HOIST_ADMIN_TOKEN", "t")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--stable: `https://x:1`"),
        "{out:?}"
    );
}
