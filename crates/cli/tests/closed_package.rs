//! A model package is closed: `hoist model register` and `hoist model fetch`, run as
//! real processes, refuse a package that names files outside it, with exit code 2
//! (invalid input) and the reason, and record or write nothing.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use hoist_types::onnx::build::{add_model_with_external_weights, weights, write_package};
use serde_json::Value;

struct Env {
    dir: hoist_testkit::Scratch,
}

impl Env {
    fn new(tag: &str) -> Env {
        Env {
            dir: hoist_testkit::Scratch::new(&format!("cli-closed-{tag}")),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_hoist"))
            .args(args)
            .current_dir(&self.dir)
            .env("HOIST_HOME", self.dir.join("home"))
            .env_remove("HOIST_TEST_FAIL_AT")
            .env_remove("MLFLOW_TRACKING_URI")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn package(&self, name: &str, data: &str, location: &str) -> PathBuf {
        write_package(&self.dir.join(name), data, location, [1.0, 2.0])
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn register_refuses_a_package_reaching_outside_with_exit_2_and_registers_nothing() {
    let env = Env::new("register");
    std::fs::write(
        env.dir.join("x.onnx"),
        add_model_with_external_weights("weights.bin"),
    )
    .unwrap();
    std::fs::write(env.dir.join("weights.bin"), weights([6.0, 6.0])).unwrap();
    let abs = env.dir.join("x.onnx").canonicalize().unwrap();
    let abs_w = env.dir.join("weights.bin").canonicalize().unwrap();
    let cases = vec![
        (
            env.package("abs", s(&abs), "weights.bin"),
            "an absolute path",
        ),
        (env.package("up", "../x.onnx", "weights.bin"), "'..'"),
        (
            env.package("subup", "sub/../../x.onnx", "weights.bin"),
            "'..'",
        ),
        (
            env.package("extabs", "model.onnx", s(&abs_w)),
            "an absolute path",
        ),
        (env.package("extup", "model.onnx", "../weights.bin"), "'..'"),
        {
            let p = env.package("link", "model.onnx", "weights.bin");
            std::fs::remove_file(p.join("model.onnx")).unwrap();
            symlink(&abs, p.join("model.onnx")).unwrap();
            (p, "outside the package directory")
        },
        {
            let p = env.package("extlink", "model.onnx", "w.bin");
            symlink(&abs_w, p.join("w.bin")).unwrap();
            (p, "outside the package directory")
        },
    ];
    for (pkg, want) in cases {
        let out = env.run(&["model", "register", s(&pkg), "--name", "m"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", pkg.display());
        assert!(
            err.contains("model package refused") && err.contains(want),
            "{}: expected '{want}' in: {err}",
            pkg.display()
        );
    }
    // Nothing was registered.
    let out = env.run(&["model", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let models: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(models.as_array().map(Vec::len), Some(0), "{models}");
    let out = env.run(&["model", "versions", "m"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[test]
fn fetch_refuses_a_tampered_package_with_exit_2_and_writes_nothing() {
    let env = Env::new("fetch");
    let good = env.package("good", "model.onnx", "weights.bin");
    let out = env.run(&["model", "register", s(&good), "--name", "m", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hex = j["version"]["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap()
        .to_string();
    let entry = env.dir.join("home/artifacts/sha256").join(hex);

    // Fetching the good package works and brings its external data.
    let ok = env.dir.join("ok");
    let out = env.run(&["model", "fetch", "m", "--to", s(&ok)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(ok.join("weights.bin")).unwrap(),
        weights([1.0, 2.0])
    );

    // The store edited: the weights replaced by a symlink to a file outside with the
    // same bytes, so the digest alone would not notice.
    std::fs::write(env.dir.join("outside.bin"), weights([1.0, 2.0])).unwrap();
    std::fs::remove_file(entry.join("weights.bin")).unwrap();
    symlink(env.dir.join("outside.bin"), entry.join("weights.bin")).unwrap();
    let to = env.dir.join("out");
    let out = env.run(&["model", "fetch", "m", "--to", s(&to)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("model package refused") && err.contains("outside the package directory"),
        "{err}"
    );
    assert!(!to.exists(), "nothing fetched");
}
