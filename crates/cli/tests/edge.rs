//! Hostile input at the edge, end to end: `hoist up` with a real `hoist-server`
//! behind its gateway, attacked the way issue 14 reported it. The gateway's own
//! tests (`crates/gateway/tests/smuggling.rs`) cover the framing rules case by case
//! against a stand-in backend; this file proves the same doors are shut in front of
//! the real model server the daemon starts.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use serde_json::Value;

const DAEMON_TOKEN: &str = "daemon-secret-token-0123456789";

fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// Writes `raw` on a new connection and reads until the server closes it or goes
/// quiet for a second.
fn exchange(gw: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(gw).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// An inference request whose answer carries `id`, so each client can tell its own
/// answer from anyone else's.
fn infer(id: &str, row: &Value) -> String {
    serde_json::json!({
        "id": id,
        "inputs": [{
            "name": "input",
            "shape": [1, row.as_array().unwrap().len()],
            "datatype": "FP32",
            "data": row,
        }]
    })
    .to_string()
}

fn row() -> Value {
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(model("breast_cancer_gbt").join("input_example.json")).unwrap(),
    )
    .unwrap();
    example[0].clone()
}

#[test]
fn the_gateway_in_front_of_real_model_servers_refuses_smuggling_admin_and_overflow() {
    let home = temp_home("edge");
    let d = Daemon::start_with_env(
        &home,
        &production(""),
        &[("HOIST_ADMIN_TOKEN", DAEMON_TOKEN)],
    );
    register(&home, "breast_cancer_gbt", Some("champion"));
    let r = d.wait_done(1, Duration::from_secs(60));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    let gw = addr(&d.env("production"));
    let http = reqwest::blocking::Client::new();
    let url = d.env("production");
    let metadata = || -> Value {
        http.get(format!("{url}/v2/models/m"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let meta = metadata();
    assert_eq!(meta["name"], "m", "{meta}");
    let good = |id: &str| -> Value {
        http.post(format!("{url}/v2/models/m/infer"))
            .header("content-type", "application/json")
            .body(infer(id, &row()))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    assert_eq!(good("warm")["id"], "warm");

    // 1. Connection naming Content-Length: refused, and nobody gets the smuggled
    // answer later on a pooled backend connection.
    let smuggled = infer("smuggled", &row());
    let inner = format!(
        "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    for connection in [
        "keep-alive, Content-Length",
        "Content-Length",
        "close, content-length",
        "Transfer-Encoding",
        "Host",
    ] {
        let raw = format!(
            "POST /ping HTTP/1.1\r\nHost: x\r\nConnection: {connection}\r\nContent-Length: {}\r\n\r\n{inner}",
            inner.len()
        );
        let answer = exchange(gw, raw.as_bytes());
        assert_eq!(
            status_of(&answer),
            400,
            "Connection: {connection}: {answer}"
        );
        assert!(!answer.contains("smuggled"), "{answer}");
        for k in 0..5 {
            let id = format!("probe-{k}");
            let got = good(&id);
            assert_eq!(
                got["id"],
                id.as_str(),
                "a probe got another's answer: {got}"
            );
        }
    }

    // 2. Other ambiguous framings: each one a 400, never an answer to a request
    // the gateway did not see.
    let cases = [
        format!(
            "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{inner}"
        ),
        format!(
            "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{inner}",
            inner.len()
        ),
        format!(
            "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{inner}"
        ),
        format!(
            "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n{inner}"
        ),
        format!(
            "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length : {}\r\n\r\n{inner}",
            inner.len()
        ),
        format!("GET /ping HTTP/1.1\r\nHost: x\rX: y\r\n\r\n{inner}"),
        format!("GET /ping HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n{inner}"),
        format!(
            "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{inner}"
        ),
    ];
    for (i, raw) in cases.iter().enumerate() {
        let answer = exchange(gw, raw.as_bytes());
        assert_eq!(status_of(&answer), 400, "case {i}: {answer}");
        assert!(!answer.contains("smuggled"), "case {i}: {answer}");
        let got = good(&format!("after-{i}"));
        assert_eq!(got["id"], format!("after-{i}").as_str(), "{got}");
    }

    // 3. Operator endpoints: 404 at the gateway however the path is written, even
    // with the daemon's token, and the model that serves is still the released one.
    let elsewhere = temp_home("edge-elsewhere");
    for target in [
        "/admin/reload",
        "/ADMIN/reload",
        "//admin/reload",
        "/%61dmin/reload",
        "/admin;x/reload",
        "http://x/admin/reload",
    ] {
        let body =
            serde_json::json!({"path": elsewhere.to_string_lossy(), "version": "666"}).to_string();
        let raw = format!(
            "POST {target} HTTP/1.1\r\nHost: x\r\nX-Admin-Token: {DAEMON_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = exchange(gw, raw.as_bytes());
        assert!(
            matches!(status_of(&answer), 400 | 404),
            "{target}: {answer}"
        );
    }
    let status = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&status, "production").as_deref(),
        Some("1"),
        "{status}"
    );
    let meta = metadata();
    assert_ne!(meta["versions"], serde_json::json!(["666"]), "{meta}");

    // 4. A shape whose product overflows 64 bits: a 400 naming the shape, not a 500.
    let body = serde_json::json!({
        "inputs": [{"name": "input", "shape": [4_294_967_296u64, 4_294_967_296u64, 4_294_967_296u64], "datatype": "FP32", "data": [1.0]}]
    })
    .to_string();
    let r = http
        .post(format!("{url}/v2/models/m/infer"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let e: Value = r.json().unwrap();
    assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    assert_eq!(good("last")["id"], "last");
    d.stop();
}
