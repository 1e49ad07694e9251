//! A model package is closed: hoist-server refuses, at start and at reload, a package
//! that names a file outside it (absolute paths, `..`, symlinks leaving it, external
//! data of the `.onnx` file outside it), exits non-zero with the reason and never
//! reports ready. A package whose external data is inside loads and serves it.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, client, ort_lib};
use hoist_types::onnx::build::{add_model_with_external_weights, weights, write_package};
use serde_json::{Value, json};

const RUNTIMES: &[&str] = &["onnxruntime", "tract"];

/// What a case is called, how it spoils a good package, what stderr must say.
type Case<'a> = (&'a str, Box<dyn Fn(&Path) + 'a>, &'a str);

fn scratch(tag: &str) -> hoist_testkit::Scratch {
    hoist_testkit::Scratch::new(&format!("closed-{tag}"))
}

/// `base/pkg`: MLmodel naming `data`, model.onnx `Y = X + W` with W in `weights.bin`.
fn package(base: &Path, data: &str, location: &str) -> PathBuf {
    write_package(&base.join("pkg"), data, location, [10.0, 20.0])
}

/// Starts hoist-server on `model` and waits for it to exit; it must exit non-zero
/// without ever answering ready. Returns its stderr.
fn refused_at_start(model: &Path, runtime: &str) -> String {
    let log = model
        .parent()
        .unwrap()
        .join(format!("stderr-{runtime}.log"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist-server"));
    cmd.arg("--model")
        .arg(model)
        .args(["--port", "0", "--runtime", runtime])
        .env_remove("HOIST_ADMIN_TOKEN")
        .env_remove("HOIST_ADMIN_TOKEN_FILE")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    if runtime == "onnxruntime" {
        cmd.arg("--onnxruntime").arg(ort_lib());
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .map(str::to_string);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Some(base) = &base
            && let Ok(r) = client().get(format!("{base}/v2/health/ready")).send()
        {
            assert_ne!(r.status(), 200, "a refused package must never be ready");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hoist-server still running after 60 s on a refused package");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(
        !status.success(),
        "exit status {status:?}; stderr: {stderr}"
    );
    stderr
}

#[test]
fn a_package_with_external_data_inside_loads_and_serves_it() {
    for runtime in RUNTIMES {
        let base = scratch(&format!("good-{runtime}"));
        let pkg = package(&base, "model.onnx", "weights.bin");
        let s = Server::start(&pkg, runtime, &["--name", "add"], &[]);
        let (status, resp) = s.post_json(
            "/v2/models/add/infer",
            &json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}]}),
        );
        assert_eq!(status, 200, "{runtime}: {resp}");
        assert_eq!(resp["outputs"][0]["data"], json!([11.0, 22.0]), "{runtime}");
        let meta: Value = s.get("/v2/models/add").json().unwrap();
        let digest = meta["parameters"]["digest"].as_str().unwrap().to_string();
        assert_eq!(digest, hoist_types::digest_path(&pkg).unwrap());
        drop(s);
        // The digest covers the external data.
        std::fs::write(pkg.join("weights.bin"), weights([1.0, 2.0])).unwrap();
        assert_ne!(digest, hoist_types::digest_path(&pkg).unwrap());
    }
}

#[test]
fn a_package_naming_files_outside_it_is_refused_at_start() {
    for runtime in RUNTIMES {
        let base = scratch(&format!("refused-{runtime}"));
        // The files an attacker would have served: a model and weights outside.
        std::fs::write(
            base.join("x.onnx"),
            add_model_with_external_weights("weights.bin"),
        )
        .unwrap();
        std::fs::write(base.join("weights.bin"), weights([6.0, 6.0])).unwrap();
        std::fs::create_dir_all(base.join("outdir")).unwrap();
        std::fs::write(
            base.join("outdir/model.onnx"),
            add_model_with_external_weights("weights.bin"),
        )
        .unwrap();
        let abs = base.join("x.onnx").canonicalize().unwrap();
        let abs_w = base.join("weights.bin").canonicalize().unwrap();
        let abs = abs.to_str().unwrap();
        let abs_w = abs_w.to_str().unwrap();

        let cases: Vec<Case> = vec![
            (
                "absolute data",
                Box::new(|p| set_data(p, abs)),
                "an absolute path",
            ),
            ("../x.onnx", Box::new(|p| set_data(p, "../x.onnx")), "'..'"),
            (
                "sub/../../x.onnx",
                Box::new(|p| {
                    std::fs::create_dir_all(p.join("sub")).unwrap();
                    set_data(p, "sub/../../x.onnx")
                }),
                "'..'",
            ),
            (
                "symlinked model file",
                Box::new(|p| {
                    std::fs::remove_file(p.join("model.onnx")).unwrap();
                    symlink(base.join("x.onnx"), p.join("model.onnx")).unwrap();
                }),
                "outside the package directory",
            ),
            (
                "symlinked directory",
                Box::new(|p| {
                    symlink(base.join("outdir"), p.join("linked")).unwrap();
                    set_data(p, "linked/model.onnx")
                }),
                "outside the package directory",
            ),
            (
                "absolute external data",
                Box::new(|p| write_model(p, abs_w)),
                "an absolute path",
            ),
            (
                "external data ../",
                Box::new(|p| write_model(p, "../weights.bin")),
                "'..'",
            ),
            (
                "external data through a symlink",
                Box::new(|p| {
                    symlink(base.join("weights.bin"), p.join("w-link.bin")).unwrap();
                    write_model(p, "w-link.bin")
                }),
                "outside the package directory",
            ),
        ];
        for (what, make, want) in cases {
            let pkg = package(&base, "model.onnx", "weights.bin");
            make(&pkg);
            let stderr = refused_at_start(&pkg, runtime);
            assert!(
                stderr.contains(want) && stderr.contains("inside the package directory"),
                "{runtime} {what}: expected '{want}' in stderr: {stderr}"
            );
            std::fs::remove_dir_all(&pkg).unwrap();
        }
    }
}

#[test]
fn a_reload_to_a_package_naming_files_outside_it_is_refused() {
    let base = scratch("reload");
    let good = package(&base, "model.onnx", "weights.bin");
    std::fs::write(base.join("secret.bin"), weights([6.0, 6.0])).unwrap();
    let bad = base.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    for f in ["MLmodel", "weights.bin"] {
        std::fs::copy(good.join(f), bad.join(f)).unwrap();
    }
    std::fs::write(
        bad.join("model.onnx"),
        add_model_with_external_weights("../secret.bin"),
    )
    .unwrap();
    let s = Server::start(
        &good,
        "tract",
        &["--name", "add"],
        &[("HOIST_ADMIN_TOKEN", "t0ken")],
    );
    let resp = client()
        .post(s.url("/admin/reload"))
        .header("X-Admin-Token", "t0ken")
        .json(&json!({"path": bad}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().unwrap();
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("'..'") && msg.contains("still serving"),
        "{msg}"
    );
    let (status, resp) = s.post_json(
        "/v2/models/add/infer",
        &json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [0.0, 0.0]}]}),
    );
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["outputs"][0]["data"], json!([10.0, 20.0]));
    drop(s);
}

fn set_data(pkg: &Path, data: &str) {
    std::fs::write(
        pkg.join("MLmodel"),
        format!("flavors:\n  onnx:\n    data: '{data}'\n"),
    )
    .unwrap();
}

fn write_model(pkg: &Path, location: &str) {
    std::fs::write(
        pkg.join("model.onnx"),
        add_model_with_external_weights(location),
    )
    .unwrap();
}
