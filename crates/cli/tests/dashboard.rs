//! The web dashboard (`GET /` of the daemon's API) in a real browser: Debian's
//! Chromium driven by playwright-core (`tests/dashboard/browser.mjs`, set up by
//! `tools/browser.sh`), against a real `hoist up` with real model servers and steady
//! traffic. From the page: a read-only view with no action enabled, a wrong token
//! refused with the API's message, approvals, a promotion to 100%, an abort that
//! rolls back, a rollback to a chosen version; the charts show the test's traffic.
//! Screenshots go to `HOIST_DASHBOARD_SHOTS` (docs/dashboard/ to refresh the docs).
//!
//! The plain-HTTP checks (assets, headers, the live stream) run without a browser.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Chromium and playwright-core: from tools/test.sh's environment, or set up here.
fn browser() -> (String, String) {
    if let (Ok(c), Ok(m)) = (
        std::env::var("HOIST_CHROMIUM"),
        std::env::var("HOIST_BROWSER_MODULES"),
    ) {
        return (c, m);
    }
    let out = Command::new("bash")
        .arg(repo().join("tools/browser.sh"))
        .output()
        .expect("run tools/browser.sh");
    assert!(
        out.status.success(),
        "tools/browser.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "tools/browser.sh printed: {text}");
    (
        lines[lines.len() - 2].to_string(),
        lines[lines.len() - 1].to_string(),
    )
}

fn api_of(home: &std::path::Path) -> String {
    std::fs::read_to_string(home.join("daemon/api"))
        .unwrap()
        .trim()
        .to_string()
}

/// Runs `crates/cli/tests/dashboard/<script>` (playwright-core driving Chromium)
/// against the daemon of `home`, with its token; screenshots go to
/// `HOIST_DASHBOARD_SHOTS`, else `home/shots`.
fn run_page(
    script: &str,
    home: &std::path::Path,
    (chromium, modules): &(String, String),
) -> std::process::Output {
    let shots = std::env::var("HOIST_DASHBOARD_SHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| home.join("shots"));
    let token = std::fs::read_to_string(home.join("daemon/token")).unwrap();
    Command::new("node")
        .arg(repo().join("crates/cli/tests/dashboard").join(script))
        .env("HOIST_API", api_of(home))
        .env("HOIST_TOKEN", token.trim())
        .env("HOIST_BIN", env!("CARGO_BIN_EXE_hoist"))
        .env("HOIST_HOME", home)
        .env("HOIST_MODELS", model("breast_cancer_lr").parent().unwrap())
        .env("HOIST_CHROMIUM", chromium)
        .env("HOIST_BROWSER_MODULES", modules)
        .env("HOIST_SHOTS", &shots)
        .output()
        .expect("run node")
}

const CONFIG_EXTRA: &str = "approval = true\nsteps = [{ weight = 50, pause = true }]";

#[test]
fn the_dashboard_approves_promotes_aborts_and_rolls_back_in_a_real_browser() {
    let browser = browser();
    let home = temp_home("dashboard");
    let d = Daemon::start(&home, &production(CONFIG_EXTRA));
    register(&home, "breast_cancer_gbt", Some("champion"));
    d.wait_for("approval of 1", Duration::from_secs(30), |s| {
        s["active"][0]["phase"]["phase"] == "awaiting_approval"
    });
    let traffic = Traffic::paced(&d.env("production"), 2, 2, Duration::from_millis(20));
    let started = Instant::now();
    let out = run_page("browser.mjs", &home, &browser);
    let counts = traffic.finish();
    let log = String::from_utf8_lossy(&out.stderr);
    let measured = String::from_utf8_lossy(&out.stdout);
    eprintln!("{log}");
    assert!(out.status.success(), "the browser test failed:\n{log}");
    eprintln!(
        "browser part took {:.1} s; measured: {measured}",
        started.elapsed().as_secs_f64()
    );
    // What the page did, as the API tells it.
    let r = |id: u64| d.release(id)["outcome"]["outcome"].clone();
    assert_eq!(r(1), "succeeded");
    assert_eq!(r(2), "succeeded");
    assert_eq!(r(3), "aborted");
    assert_eq!(r(4), "succeeded", "the rollback to v1");
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("1")
    );
    assert_eq!(failed(&counts, ""), 0, "no request failed: {counts:?}");
    let m: serde_json::Value = serde_json::from_str(measured.trim()).unwrap();
    assert!(m["page_weight_bytes"].as_u64().unwrap() < 500 * 1024, "{m}");
}

/// Two models (`[[models]]` fraud and churn), both behind approval, traffic to churn
/// only.
fn two_models() -> String {
    let mut text = BASE.replace(
        "[model]\nname = \"m\"\ntrigger = { alias = \"champion\" }\n",
        "",
    );
    for m in ["fraud", "churn"] {
        text.push_str(&format!("\n[[models]]\nname = \"{m}\"\n"));
    }
    text.push_str(&format!(
        "\n[[environments]]\nname = \"production\"\nlisten = \"127.0.0.1:0\"\n{CONFIG_EXTRA}\n"
    ));
    text
}

#[test]
fn the_dashboard_shows_and_acts_on_each_of_two_models_in_a_real_browser() {
    let home = temp_home("dashboard-models");
    let d = Daemon::start(&home, &two_models());
    // The dashboard's reads name the model; an unknown one, or an unknown parameter,
    // is a 4xx naming what was wrong.
    let http = reqwest::blocking::Client::new();
    let api = api_of(&home);
    for (path, code, says) in [
        (
            "/api/v1/metrics?model=nope",
            404,
            "no model `nope`; this daemon delivers: fraud, churn",
        ),
        ("/api/v1/versions?model=nope", 404, "no model `nope`"),
        ("/api/v1/metrics?modle=churn", 400, "modle"),
    ] {
        let r = http.get(format!("{api}{path}")).send().unwrap();
        assert_eq!(r.status().as_u16(), code, "{path}");
        let body: serde_json::Value = r.json().unwrap();
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{path}: {body}");
    }
    for m in ["fraud", "churn"] {
        register_as(&home, "breast_cancer_gbt", m);
        let mut last = serde_json::Value::Null;
        hoist_testkit::poll(Duration::from_secs(30), || {
            let s = d.get(&format!("/api/v1/models/{m}/status"));
            if s["active"][0]["phase"]["phase"] == "awaiting_approval" {
                return Some(());
            }
            last = s;
            None
        })
        .unwrap_or_else(|| panic!("{m}'s v1 did not wait for approval: {last}"));
    }
    // Each model's samples carry its name; the default is the first model's.
    let m = d.get("/api/v1/metrics?model=churn");
    assert_eq!(m["model"], "churn", "{m}");
    assert_eq!(d.get("/api/v1/metrics")["model"], "fraud");
    let traffic = Traffic::paced(
        &format!("{}/models/churn", d.env("production")),
        2,
        2,
        Duration::from_millis(20),
    );
    let out = run_page("models.mjs", &home, &browser());
    let counts = traffic.finish();
    let log = String::from_utf8_lossy(&out.stderr);
    eprintln!("{log}");
    assert!(out.status.success(), "the browser test failed:\n{log}");
    // What the page did, as the API tells it: churn went v1, v2, back to v1; fraud
    // stayed on v1 throughout.
    let live = |m: &str| {
        let s = d.get(&format!("/api/v1/models/{m}/status"));
        Daemon::stable_version(&s, "production")
    };
    assert_eq!(live("fraud").as_deref(), Some("1"));
    assert_eq!(live("churn").as_deref(), Some("1"));
    let churn = d.get("/api/v1/models/churn/releases");
    let triggers: Vec<&str> = churn["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["trigger"].as_str().unwrap())
        .collect();
    assert_eq!(triggers[0], "rollback to v1", "{churn}");
    assert_eq!(
        d.get("/api/v1/models/fraud/releases")["releases"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(failed(&counts, ""), 0, "no request failed: {counts:?}");
    d.stop();
}

/// One raw HTTP/1.1 GET: status line + headers, and the body read until `until`
/// appears (or the connection ends).
fn raw_get(addr: &str, path: &str, extra: &str, until: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let mut body = String::new();
    let mut buf = [0u8; 4096];
    while !body.contains(until) {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    (head, body)
}

#[test]
fn the_page_is_served_embedded_with_a_strict_policy_and_the_stream_tells_each_transition() {
    let home = temp_home("dashboard-http");
    let d = Daemon::start(&home, &production("steps = []"));
    let api = api_of(&home);
    let addr = api.trim_start_matches("http://").to_string();
    let (head, body) = raw_get(&addr, "/", "", "</html>");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(!lower.contains("access-control-allow-origin"), "{head}");
    assert!(body.contains("/assets/app.js"), "{body}");
    // No resource from anywhere else: every src/href is the page's own (or the
    // empty icon, so that the browser asks for no /favicon.ico).
    for attr in ["src=\"", "href=\""] {
        for part in body.split(attr).skip(1) {
            assert!(
                part.starts_with('/') || part.starts_with('#') || part.starts_with("data:,\""),
                "{attr}{part}"
            );
        }
    }
    let (head, _) = raw_get(&addr, "/assets/nope.js", "", "\n\n");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // The live stream: hello, then each transition of a release and its metrics.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut seen = String::new();
    let mut line = String::new();
    // Read until the stream said hello, then register v1.
    while !seen.contains("event: hello") {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "stream ended: {seen}");
        seen.push_str(&line);
    }
    assert!(seen.contains("text/event-stream"), "{seen}");
    register(&home, "breast_cancer_gbt", Some("champion"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(seen.contains("\"phase\":\"done\"") && seen.contains("event: metrics")) {
        assert!(Instant::now() < deadline, "no done transition: {seen}");
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "stream ended: {seen}");
        seen.push_str(&line);
    }
    assert!(seen.contains("event: transition"), "{seen}");
    assert!(seen.contains("\"event\":\"start\""), "{seen}");
    // The traffic history and the registry's versions.
    let m = d.get("/api/v1/metrics");
    assert!(!m["samples"].as_array().unwrap().is_empty(), "{m}");
    assert_eq!(m["samples"][0]["envs"][0]["env"], "production", "{m}");
    let v = d.get("/api/v1/versions");
    assert_eq!(v["versions"][0]["version"], "1", "{v}");
    assert!(
        v["versions"][0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{v}"
    );
    // The daemon stops with a stream open (the stream ends with it).
    d.stop();
}
