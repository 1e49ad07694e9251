//! The daemon API at its edges, on a real `hoist up`: whatever a client sends, the
//! answer is a 4xx in the JSON error shape (never a 5xx, never axum's plain text), and
//! no write happens without the token. (tests/api/run.sh runs Schemathesis against the
//! same daemon for the generated cases; these are the ones worth naming.)

mod common;

use common::*;
use reqwest::blocking::{Client, Response};
use serde_json::Value;

fn error_of(r: Response, status: u16, code: &str) -> Value {
    let got = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = r.text().unwrap();
    assert_eq!(got, status, "{text}");
    assert!(ctype.starts_with("application/json"), "{ctype}: {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    v
}

#[test]
fn hostile_requests_get_a_json_4xx_and_writes_need_the_token() {
    let home = temp_home("api-edges");
    let d = Daemon::start(&home, &production(""));
    let token = std::fs::read_to_string(home.join("daemon/token")).unwrap();
    // The daemon writes its API's URL here for the CLI.
    let api = std::fs::read_to_string(home.join("daemon/api"))
        .unwrap()
        .trim()
        .to_string();
    let http = Client::new();
    let get = |path: &str| http.get(format!("{api}{path}")).send().unwrap();

    for path in [
        "/api/v1/releases?limit=abc",
        "/api/v1/releases?limit=-1",
        "/api/v1/releases?limit=99999999999999999999999",
        "/api/v1/releases?env=nowhere",
        "/api/v1/releases/%FF",
        "/api/v1/releases/0",
        "/api/v1/releases/-1",
        "/api/v1/releases/99999999999999999999999999",
        "/api/v1/releases/1e3",
    ] {
        error_of(get(path), 400, "bad_request");
    }
    error_of(
        get("/api/v1/releases/18446744073709551615"),
        404,
        "not_found",
    );
    error_of(get("/api/v1/nothing"), 404, "not_found");
    let r = http
        .delete(format!("{api}/api/v1/releases"))
        .send()
        .unwrap();
    assert_eq!(r.headers()["allow"], "GET,HEAD,POST");
    error_of(r, 405, "method_not_allowed");

    // Without the token every write is a 401 (with the scheme to use), whatever the
    // body or the id: nothing is looked at before the token.
    let writes = [
        ("/api/v1/releases", r#"{"model":"m"}"#),
        ("/api/v1/releases", "not json"),
        ("/api/v1/releases/1/promote", "{}"),
        ("/api/v1/releases/abc/approve", ""),
        ("/api/v1/releases/1/abort", "[1"),
        ("/api/v1/rollback", "{}"),
    ];
    for (path, body) in writes {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Basic Zm9vOmJhcg=="),
            Some("Bearer "),
        ] {
            let mut req = http
                .post(format!("{api}{path}"))
                .header("content-type", "application/json")
                .body(body);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().unwrap();
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            error_of(r, 401, "unauthorized");
        }
    }

    // With the token: bad bodies are 400s, a huge one a 413, all in the JSON shape.
    let post = |path: &str, body: Vec<u8>| {
        http.post(format!("{api}{path}"))
            .header("authorization", format!("bearer {token}"))
            .body(body)
            .send()
            .unwrap()
    };
    for (path, body) in [
        ("/api/v1/releases", "[1"),
        ("/api/v1/releases", r#"{"model":"m","extra":1}"#),
        ("/api/v1/releases", r#"{"model":""}"#),
        ("/api/v1/releases", r#"{"model":"other/1"}"#),
        ("/api/v1/releases", r#"{"model":"m/1","env":"nowhere"}"#),
        ("/api/v1/rollback", r#"{"to":""}"#),
        ("/api/v1/rollback", r#"{"to":7}"#),
        ("/api/v1/releases/abc/abort", "{}"),
        ("/api/v1/releases/1/promote", r#"{"full":"yes"}"#),
    ] {
        error_of(post(path, body.as_bytes().to_vec()), 400, "bad_request");
    }
    // A version the registry does not have: refused before anything is journaled.
    error_of(
        post("/api/v1/rollback", br#"{"to":"../../etc"}"#.to_vec()),
        404,
        "not_found",
    );
    error_of(
        post("/api/v1/releases", br#"{"model":"m/9"}"#.to_vec()),
        404,
        "not_found",
    );
    assert_eq!(d.get("/api/v1/releases")["releases"], serde_json::json!([]));
    d.stop();
}

/// `hoist up` with HOIST_ADMIN_TOKEN_FILE (a mounted Secret on a cluster) reads the file
/// again when it is rotated: the old token is refused at once and the new one taken,
/// with no restart; a file emptied by mistake keeps the last token.
#[test]
fn a_rotated_token_file_takes_effect_without_a_restart() {
    let home = temp_home("api-token-rotation");
    let file = home.join("admin-token");
    std::fs::write(&file, "first-token\n").unwrap();
    let d = Daemon::start_with_env(
        &home,
        &production(""),
        &[("HOIST_ADMIN_TOKEN_FILE", file.to_str().unwrap())],
    );
    let api = std::fs::read_to_string(home.join("daemon/api"))
        .unwrap()
        .trim()
        .to_string();
    let http = Client::new();
    // A write that passes the token check and is then refused for its body: 400 means
    // the token was taken, 401 that it was not.
    let write_with = |token: &str| {
        http.post(format!("{api}/api/v1/releases"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body("[1")
            .send()
            .unwrap()
    };
    error_of(write_with("first-token"), 400, "bad_request");

    let rotate = |value: &str| {
        let tmp = home.join("admin-token.new");
        std::fs::write(&tmp, value).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    rotate("second-token");
    error_of(write_with("first-token"), 401, "unauthorized");
    error_of(write_with("second-token"), 400, "bad_request");

    rotate("");
    error_of(write_with("second-token"), 400, "bad_request");
    drop(d);
}
