//! `hoist image push` and `hoist model push` end to end: the real `hoist` binary
//! pushes to a REAL registry (Debian's `docker-registry` on 127.0.0.1), `skopeo`
//! inspects and copies what it pushed, and the model image RUNS (its layers unpacked
//! into a root file system, its entrypoint started under `chroot` as user 65532) and
//! answers a prediction that matches the model's reference output.
//!
//! The image carries the test build's `hoist` with its debug info stripped (the
//! debug binary is ~800 MB; the program is the same).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hoist_testkit::registry::{PASSWORD, Registry, USER, skopeo};
use hoist_testkit::{Scratch, free_port, wait_until};
use serde_json::Value;

struct Setup {
    home: Scratch,
    bin: PathBuf,
}

fn setup() -> Setup {
    let home = Scratch::new("image-home");
    let bin = common::stripped_bin(home.path());
    let ort = ort();
    assert!(
        ort.is_file(),
        "no ONNX Runtime at {}: run tools/fetch-onnxruntime.sh",
        ort.display()
    );
    Setup { home, bin }
}

fn ort() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap())
                .join(".hoist/lib/libonnxruntime.so.1.31.1")
        })
}

impl Setup {
    fn hoist(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hoist"));
        c.arg("--home").arg(self.home.path()).args(args);
        c.env_remove("MLFLOW_TRACKING_URI")
            .env_remove("HOIST_REGISTRY_USERNAME")
            .env_remove("HOIST_REGISTRY_PASSWORD")
            .env_remove("REGISTRY_AUTH_FILE")
            .env("DOCKER_CONFIG", self.home.path().join("no-docker-config"))
            .env("ORT_DYLIB_PATH", ort())
            .env("SOURCE_DATE_EPOCH", "1700000000");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run hoist")
    }

    fn push(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json", "image", "push"];
        a.extend_from_slice(args);
        a.extend(["--bin-dir", self.bin.to_str().unwrap()]);
        serde_json::from_str(&common::ok(&self.hoist(&a, &[]))).unwrap()
    }
}

fn inspect(reference: &str, extra: &[&str]) -> Value {
    let mut args = vec!["inspect", "--tls-verify=false"];
    args.extend_from_slice(extra);
    let target = format!("docker://{reference}");
    args.push(&target);
    serde_json::from_str(&skopeo(&args)).unwrap()
}

#[test]
fn the_runtime_image_is_reproducible_labelled_and_not_uploaded_twice() {
    let reg = Registry::start();
    let s = setup();
    let repo = format!("{}/hoist/runtime", reg.addr);
    let first = s.push(&[&repo]);
    let digest = first["digest"].as_str().unwrap().to_string();
    assert_eq!(first["reference"], format!("{repo}@{digest}").as_str());
    let tags: Vec<&str> = first["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags[0], env!("CARGO_PKG_VERSION"));
    assert!(tags[1].starts_with("git-"), "{tags:?}");
    assert_eq!(first["blobs_uploaded"], 4);
    let puts = reg.blob_puts();
    assert_eq!(puts, 4);

    let v = inspect(&format!("{repo}:{}", tags[1]), &[]);
    assert_eq!(v["Digest"], digest.as_str());
    let labels = &v["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        labels["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    assert!(
        labels["org.opencontainers.image.source"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    let rev = labels["org.opencontainers.image.revision"]
        .as_str()
        .unwrap();
    assert_eq!(rev.len(), 40, "a full git SHA: {rev}");
    assert!(rev.starts_with(&tags[1]["git-".len()..]));
    let config = inspect(&format!("{repo}:{}", tags[0]), &["--config"]);
    assert_eq!(config["config"]["User"], "65532");

    // Same inputs, same digest; nothing uploaded the second time.
    let second = s.push(&[&repo, "--tag", "again"]);
    assert_eq!(second["digest"], digest.as_str());
    assert_eq!(second["tags"], serde_json::json!(["again"]));
    assert_eq!(
        (
            second["blobs_uploaded"].as_u64(),
            second["blobs_skipped"].as_u64()
        ),
        (Some(0), Some(4))
    );
    assert_eq!(reg.blob_puts(), puts, "no blob PUT on the second push");

    // The runtime image runs: hoist, and hoist-server (the link), as user 65532.
    let root = unpack(&format!("{repo}:again"), s.home.path());
    for (prog, want) in [("hoist", "hoist "), ("hoist-server", "hoist-server ")] {
        let o = in_image(
            &root,
            &config,
            &[&format!("/usr/local/bin/{prog}"), "--version"],
        )
        .output()
        .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && text.starts_with(want),
            "{prog}: {text} {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// `skopeo copy` of `reference` into an OCI layout, its layers unpacked in order.
fn unpack(reference: &str, scratch: &Path) -> PathBuf {
    let layout = scratch.join("layout");
    let root = scratch.join("rootfs");
    let _ = std::fs::remove_dir_all(&layout);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("oci:{}:x", layout.display()),
    ]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| layout.join("blobs/sha256").join(&d[7..]);
    let m: Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    for l in m["layers"].as_array().unwrap() {
        let ok = Command::new("tar")
            .arg("xzf")
            .arg(blob(l["digest"].as_str().unwrap()))
            .arg("-C")
            .arg(&root)
            .status()
            .unwrap()
            .success();
        assert!(ok, "unpacking a layer");
    }
    root
}

/// `argv` in the unpacked image: `chroot` as the config's user, with only its Env.
fn in_image(root: &Path, config: &Value, argv: &[&str]) -> Command {
    assert!(
        unsafe_is_root(),
        "running an image's files needs root (chroot), as podman does here"
    );
    let user = config["config"]["User"].as_str().unwrap();
    let mut c = Command::new("/usr/sbin/chroot");
    c.arg(format!("--userspec={user}:{user}"))
        .arg(root)
        .args(argv);
    c.env_clear();
    for e in config["config"]["Env"].as_array().unwrap() {
        let (k, v) = e.as_str().unwrap().split_once('=').unwrap();
        c.env(k, v);
    }
    c
}

fn unsafe_is_root() -> bool {
    let o = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim() == "0"
}

#[test]
fn a_model_image_serves_the_model_and_its_digest_is_recorded_on_the_version() {
    let reg = Registry::start();
    let s = setup();
    let home = s.home.path().to_str().unwrap();
    let model = common::model("breast_cancer_lr");
    common::ok(&s.hoist(
        &[
            "model",
            "register",
            model.to_str().unwrap(),
            "--name",
            "m",
            "--alias",
            "champion",
        ],
        &[],
    ));
    let repo = format!("{}/hoist/models", reg.addr);
    let pushed = s.push(&[&repo, "--model", "m@champion"]);
    assert_eq!(pushed["tags"], serde_json::json!(["m-v1"]));
    let reference = pushed["reference"].as_str().unwrap();
    let shown: Value = serde_json::from_str(&common::ok(
        &s.hoist(&["--json", "model", "show", "m/1"], &[]),
    ))
    .unwrap();
    assert_eq!(shown["tags"]["hoist.image"], reference, "{shown}");
    let digest = shown["digest"].as_str().unwrap();

    let v = inspect(&format!("{repo}:m-v1"), &[]);
    assert_eq!(v["Digest"], pushed["digest"]);
    assert_eq!(v["Labels"]["dev.hoist.model.digest"], digest);
    assert_eq!(v["Layers"].as_array().unwrap().len(), 4);
    let config = inspect(&format!("{repo}:m-v1"), &["--config"]);
    let entry: Vec<&str> = config["config"]["Entrypoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        &entry[..3],
        ["/usr/local/bin/hoist-server", "--model", "/model"]
    );

    // Run the entrypoint (on a free port instead of 8080) and predict.
    let root = unpack(&format!("{repo}:m-v1"), s.home.path());
    let port = free_port();
    let mut argv: Vec<String> = entry.iter().map(|s| s.to_string()).collect();
    let p = argv.iter().position(|a| a == "--port").unwrap();
    argv[p + 1] = port.to_string();
    let h = argv.iter().position(|a| a == "--host").unwrap();
    argv[h + 1] = "127.0.0.1".into();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let log = std::fs::File::create(s.home.path().join("server.log")).unwrap();
    let mut child = in_image(&root, &config, &argv)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    wait_until(Duration::from_secs(60), "the model image's server", || {
        hoist_testkit::answers_200(&addr, "/v2/health/ready") || child.try_wait().unwrap().is_some()
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "the server exited: {}",
        hoist_testkit::tail(&s.home.path().join("server.log"))
    );
    let reference_out: Value =
        serde_json::from_slice(&std::fs::read(model.join("reference.json")).unwrap()).unwrap();
    let input = &reference_out["inputs"]["input"];
    let body = serde_json::json!({"inputs": [{"name": "input", "shape": input["shape"], "datatype": "FP32", "data": input["data"]}]});
    let answer: Value = reqwest::blocking::Client::new()
        .post(format!("http://{addr}/v2/models/m/infer"))
        .json(&body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let label = answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "label")
        .expect("a label output");
    assert_eq!(
        label["data"], reference_out["outputs"]["label"]["data"],
        "{answer}"
    );
    let _ = home;
}

#[test]
fn a_model_artifact_has_its_own_types_and_is_recorded_on_the_version() {
    let reg = Registry::start();
    let s = setup();
    let model = common::model("breast_cancer_lr");
    common::ok(&s.hoist(
        &["model", "register", model.to_str().unwrap(), "--name", "m"],
        &[],
    ));
    let repo = format!("{}/hoist/model-artifacts", reg.addr);
    let out: Value = serde_json::from_str(&common::ok(
        &s.hoist(&["--json", "model", "push", "m/1", &repo], &[]),
    ))
    .unwrap();
    assert_eq!(out["tags"], serde_json::json!(["m-v1"]));
    let raw: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{repo}:m-v1"),
    ]))
    .unwrap();
    assert_eq!(raw["artifactType"], "application/vnd.hoist.model.v1");
    assert_eq!(
        raw["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(
        raw["layers"][0]["mediaType"],
        "application/vnd.hoist.model.layer.v1.tar+gzip"
    );
    let shown: Value = serde_json::from_str(&common::ok(
        &s.hoist(&["--json", "model", "show", "m/1"], &[]),
    ))
    .unwrap();
    assert_eq!(
        raw["annotations"]["dev.hoist.model.digest"],
        shown["digest"]
    );
    assert_eq!(shown["tags"]["hoist.artifact"], out["reference"]);
    // Pushed again: the same digest.
    let again: Value = serde_json::from_str(&common::ok(
        &s.hoist(&["--json", "model", "push", "m/1", &repo], &[]),
    ))
    .unwrap();
    assert_eq!(again["digest"], out["digest"]);
    assert_eq!(again["blobs_uploaded"], 0);
}

#[test]
fn registry_failures_say_what_is_wrong_with_their_exit_codes() {
    let s = setup();
    let bin = s.bin.to_str().unwrap();
    // Nothing listens: 8.
    let dead = format!("127.0.0.1:{}/x", free_port());
    let o = s.hoist(&["image", "push", &dead, "--bin-dir", bin], &[]);
    assert_eq!(
        o.status.code(),
        Some(8),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("unreachable"));

    // TLS + htpasswd: no credentials 9; right ones from REGISTRY_AUTH_FILE work.
    let reg = Registry::start_tls();
    let ca = reg.ca.clone().unwrap();
    let repo = format!("{}/secure/hoist", reg.addr);
    let base = [
        "--json",
        "image",
        "push",
        &repo,
        "--bin-dir",
        bin,
        "--ca-file",
        ca.to_str().unwrap(),
    ];
    let o = s.hoist(&base, &[]);
    assert_eq!(
        o.status.code(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err: Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(err["error"]["code"], "registry_unauthorized");
    let o = s.hoist(
        &base,
        &[
            ("HOIST_REGISTRY_USERNAME", USER),
            ("HOIST_REGISTRY_PASSWORD", "wrong"),
        ],
    );
    assert_eq!(o.status.code(), Some(9));
    let auth = s.home.path().join("auth.json");
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    };
    std::fs::write(
        &auth,
        format!(r#"{{"auths":{{"{}":{{"auth":"{b64}"}}}}}}"#, reg.addr),
    )
    .unwrap();
    let pushed: Value = serde_json::from_str(&common::ok(
        &s.hoist(&base, &[("REGISTRY_AUTH_FILE", auth.to_str().unwrap())]),
    ))
    .unwrap();
    assert!(pushed["digest"].as_str().unwrap().starts_with("sha256:"));
    // Without the CA: the certificate is named, exit 8.
    let o = s.hoist(
        &["image", "push", &repo, "--bin-dir", bin],
        &[("REGISTRY_AUTH_FILE", auth.to_str().unwrap())],
    );
    assert_eq!(o.status.code(), Some(8));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .to_lowercase()
            .contains("certificate")
    );
    // A tag or a bad tag: usage, 2.
    let o = s.hoist(
        &["image", "push", &format!("{repo}:v1"), "--bin-dir", bin],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let o = s.hoist(
        &["image", "push", &repo, "--tag", "-bad", "--bin-dir", bin],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn hoist_help_lists_the_image_and_signature_commands() {
    let o = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for cmd in ["image", "key", "sign", "attest", "verify"] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{cmd} "))),
            "`{cmd}` missing from hoist --help:\n{help}"
        );
    }
    for code in ["8  the OCI registry is unreachable", "12  manifest unknown"] {
        assert!(help.contains(code), "{help}");
    }
}
