//! Model servers started by `hoist up` never get the daemon's credentials: not its
//! operator token (which would switch on their `/admin/*` endpoints, so that the
//! daemon's token could reload a production server from any directory), not registry
//! or cloud secrets. A real daemon, real `hoist-server` children, their real
//! `/proc/PID/environ`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const TOKEN: &str = "daemon-token-3f9c1e0a7b5d42e8a61c";
const MLFLOW_SECRET: &str = "mlflow-password-8d2e4b";
const CLOUD_SECRET: &str = "cloud-secret-key-51a7c0";

fn environ(pid: u64) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("read the child's environ");
    String::from_utf8_lossy(&raw).replace('\0', "\n")
}

#[test]
fn model_servers_never_inherit_the_daemons_token_or_secrets() {
    let home = temp_home("server-env");
    let token_file = home.join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let d = Daemon::start_with_env(
        &home,
        &production(""),
        &[
            ("HOIST_ADMIN_TOKEN", TOKEN),
            ("HOIST_ADMIN_TOKEN_FILE", token_file.to_str().unwrap()),
            ("MLFLOW_TRACKING_PASSWORD", MLFLOW_SECRET),
            ("AWS_SECRET_ACCESS_KEY", CLOUD_SECRET),
            ("HOIST_E2E_INHERITED", "kept"),
        ],
    );
    register(&home, "breast_cancer_gbt", Some("champion"));
    let r = d.wait_done(1, Duration::from_secs(60));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");

    let status = d.get("/api/v1/status");
    let servers: Vec<Value> = status["environments"][0]["stable"]["servers"]
        .as_array()
        .unwrap_or_else(|| panic!("no stable servers: {status}"))
        .clone();
    assert!(!servers.is_empty(), "{status}");
    let http = reqwest::blocking::Client::new();
    let other_model = model("breast_cancer_lr");
    for s in &servers {
        let pid = s["pid"].as_u64().unwrap_or_else(|| panic!("no pid: {s}"));
        let addr = s["addr"].as_str().unwrap();

        // The child's real environment: what we pass on arrives, secrets do not.
        let env = environ(pid);
        assert!(env.contains("HOIST_E2E_INHERITED=kept"), "{env}");
        assert!(env.contains("PATH="), "{env}");
        for secret in [TOKEN, MLFLOW_SECRET, CLOUD_SECRET] {
            assert!(!env.contains(secret), "pid {pid} got a secret:\n{env}");
        }
        for name in [
            "HOIST_ADMIN_TOKEN=",
            "HOIST_ADMIN_TOKEN_FILE=",
            "MLFLOW_TRACKING_PASSWORD=",
        ] {
            assert!(!env.contains(name), "pid {pid} has {name}:\n{env}");
        }

        // The daemon's token opens nothing on the server: admin is off (404).
        let resp = http
            .post(format!("http://{addr}/admin/reload"))
            .header("x-admin-token", TOKEN)
            .json(&serde_json::json!({ "path": other_model }))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{}", resp.text().unwrap());
    }

    // Nor through the public gateway.
    let resp = http
        .post(format!("{}/admin/reload", d.env("production")))
        .header("x-admin-token", TOKEN)
        .json(&serde_json::json!({ "path": other_model }))
        .send()
        .unwrap();
    let code = resp.status().as_u16();
    assert!(
        code == 404 || code == 401 || code == 403,
        "gateway /admin/reload answered {code}: {}",
        resp.text().unwrap()
    );

    // And the release the daemon made is what still serves.
    let m: Value = http
        .get(format!("{}/v2/models/m", d.env("production")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(m["versions"][0], "1", "{m}");
    d.stop();
}
