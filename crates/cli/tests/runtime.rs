//! `hoist runtime install|list`, run as a user would: the real binary, the real
//! pip downloading the real onnxruntime wheel from the package index this machine
//! is set up with, into a scratch HOIST_HOME.

use std::path::Path;
use std::process::{Command, Output};

use hoist_testkit::Scratch;
use serde_json::Value;

/// The pinned library's sha256 (tools/fetch-onnxruntime.sh pins the same file).
fn pinned_sha256() -> String {
    let script =
        std::fs::read_to_string(hoist_testkit::repo_root().join("tools/fetch-onnxruntime.sh"))
            .expect("tools/fetch-onnxruntime.sh");
    script
        .lines()
        .find_map(|l| l.strip_prefix("LIB_SHA256="))
        .expect("LIB_SHA256 in the script")
        .to_string()
}

/// `hoist` with HOIST_HOME and HOME in the scratch dir and no ORT_DYLIB_PATH, so
/// only what the command installs can be found.
fn hoist(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(args)
        .env("HOIST_HOME", home.join("hoist"))
        .env("HOME", home)
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .expect("run hoist")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn sha256(path: &Path) -> String {
    hoist_types::digest::hash_file(path).expect("hash")
}

/// Nothing but finished libraries in `dir`: no staging directory left behind.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn install_fetches_the_pinned_library_that_then_serves_by_default() {
    let scratch = Scratch::new("runtime-install");
    let home = scratch.path();
    let lib_dir = home.join("hoist/lib");

    // Before: nothing installed, tract serves.
    let out = hoist(home, &["runtime", "list", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let rows = json(&out);
    let rows = rows.as_array().expect("a list");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["runtime"], "tract");
    assert_eq!(rows[0]["default"], true);
    let out = hoist(home, &["runtime", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("hoist runtime install onnxruntime"),
        "the hint names the command: {text}"
    );

    assert_eq!(served_by(home), "tract_onnx");

    // Install: the pinned file, verified, in HOIST_HOME/lib.
    let out = hoist(home, &["runtime", "install", "onnxruntime", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = json(&out);
    let path = Path::new(done["path"].as_str().expect("path")).to_path_buf();
    assert!(path.starts_with(&lib_dir), "{path:?}");
    assert_eq!(done["downloaded"], true);
    assert_eq!(done["pinned"], true);
    assert_eq!(done["default"], true);
    assert_eq!(done["sha256"], pinned_sha256().as_str());
    assert_eq!(
        sha256(&path),
        pinned_sha256(),
        "the file on disk is the pinned one"
    );
    assert_eq!(
        entries(&lib_dir),
        vec![path.file_name().unwrap().to_string_lossy().into_owned()]
    );

    // Again: already there, nothing downloaded.
    let out = hoist(home, &["runtime", "install", "onnxruntime", "--json"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json(&out)["downloaded"], false);

    // list: ONNX Runtime is now the default, tract still there.
    let rows = json(&hoist(home, &["runtime", "list", "--json"]));
    let rows = rows.as_array().expect("a list");
    let ort = rows
        .iter()
        .find(|r| r["runtime"] == "onnxruntime")
        .expect("listed");
    assert_eq!(ort["default"], true);
    assert_eq!(ort["pinned"], true);
    assert_eq!(ort["path"], done["path"]);
    let tract = rows
        .iter()
        .find(|r| r["runtime"] == "tract")
        .expect("listed");
    assert_eq!(tract["default"], false);

    // A tampered library is not "already installed": it is fetched again and replaced.
    std::fs::write(&path, b"not a library").unwrap();
    let out = hoist(home, &["runtime", "install", "onnxruntime", "--json"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json(&out)["downloaded"], true);
    assert_eq!(sha256(&path), pinned_sha256());

    // A model server really serves with what was installed, under --runtime auto.
    assert_eq!(served_by(home), "onnxruntime_onnx");
}

/// Starts `hoist serve` (hoist-server's flags) on the example model with only the
/// scratch home to look in, and returns the platform its metadata names.
fn served_by(home: &Path) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let model = hoist_testkit::example_model("breast_cancer_lr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args([
            "serve",
            "--port",
            "0",
            "--runtime",
            "auto",
            "--name",
            "m",
            "--model",
        ])
        .arg(&model)
        .env("HOIST_HOME", home.join("hoist"))
        .env("HOME", home)
        .env_remove("ORT_DYLIB_PATH")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start hoist serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read the address");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    hoist_testkit::wait_until(
        std::time::Duration::from_secs(60),
        "the model server to be ready",
        || hoist_testkit::answers_200(&addr, "/v2/models/m/ready"),
    );
    let mut s = std::net::TcpStream::connect(&addr).expect("connect");
    write!(s, "GET /v2/models/m HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let body = answer.split("\r\n\r\n").nth(1).expect("a body");
    let meta: Value = serde_json::from_str(body).expect("JSON metadata");
    meta["platform"].as_str().expect("platform").to_string()
}

#[test]
fn bad_versions_are_refused_and_leave_nothing_behind() {
    let scratch = Scratch::new("runtime-bad");
    let home = scratch.path();
    let lib_dir = home.join("hoist/lib");

    let out = hoist(
        home,
        &["runtime", "install", "onnxruntime", "--version", "1.x"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a release number"));

    let out = hoist(
        home,
        &[
            "runtime",
            "install",
            "onnxruntime",
            "--version",
            "0.0.1",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err: Value = serde_json::from_slice(&out.stderr).expect("a JSON error");
    assert_eq!(err["error"]["code"], "not_found");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("no onnxruntime 0.0.1 wheel"), "{message}");
    assert!(entries(&lib_dir).is_empty(), "{:?}", entries(&lib_dir));

    let out = hoist(
        home,
        &[
            "runtime",
            "install",
            "onnxruntime",
            "--python",
            "/nonexistent/python3",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ORT_DYLIB_PATH"));
    assert!(entries(&lib_dir).is_empty(), "{:?}", entries(&lib_dir));
}
