//! The images hoist pushes RUN under a real container engine: Debian's podman pulls
//! them from a real registry on 127.0.0.1 (Debian's `docker-registry`) and runs them
//! with a published port (`tools/podman.sh` holds the settings podman needs here:
//! runc, nofile/nproc limits of 1024 in a private containers.conf, its own storage).
//!
//! - the model image serves its model: a prediction through the published port
//!   matches the model's reference output;
//! - the runtime image runs `hoist --version`, `hoist-server --version`, and
//!   `hoist-server --model /model` on a model directory mounted into it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use hoist_testkit::registry::Registry;
use hoist_testkit::{Scratch, free_port, wait_until};
use serde_json::Value;

/// podman through tools/podman.sh, with its storage in `dir`; every container it
/// started is removed when dropped.
struct Podman {
    dir: PathBuf,
    containers: Vec<String>,
}

impl Podman {
    fn new(dir: &Path) -> Podman {
        Podman {
            dir: dir.join("podman"),
            containers: Vec::new(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(common::repo().join("tools/podman.sh"))
            .args(args)
            .env("HOIST_PODMAN_DIR", &self.dir)
            .output()
            .expect("bash tools/podman.sh (podman: bash tools/oci-tools.sh installs it)")
    }

    /// `podman run -d --name NAME ARGS`: the container keeps running until dropped.
    fn start(&mut self, name: &str, args: &[&str]) {
        let mut a = vec!["run", "-d", "--name", name];
        a.extend_from_slice(args);
        self.containers.push(name.to_string());
        common::ok(&self.run(&a));
    }

    fn logs(&self, name: &str) -> String {
        let o = self.run(&["logs", name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    fn running(&self, name: &str) -> bool {
        let o = self.run(&["inspect", "--format", "{{.State.Running}}", name]);
        String::from_utf8_lossy(&o.stdout).trim() == "true"
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.run(&["rm", "-f", "-t", "2", c]);
        }
    }
}

/// The scratch home with `model` registered as `m@champion`, the stripped test build
/// of hoist, and the images pushed with it.
struct Setup {
    home: Scratch,
    bin: PathBuf,
}

fn setup() -> Setup {
    let home = Scratch::new("podman");
    let bin = common::stripped_bin(home.path());
    Setup { home, bin }
}

impl Setup {
    fn push(&self, args: &[&str]) -> Value {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hoist"));
        c.arg("--home")
            .arg(self.home.path())
            .args(["--json", "image", "push"])
            .args(args)
            .args(["--bin-dir", self.bin.to_str().unwrap()])
            .env_remove("MLFLOW_TRACKING_URI")
            .env("DOCKER_CONFIG", self.home.path().join("no-docker-config"));
        serde_json::from_str(&common::ok(&c.output().unwrap())).unwrap()
    }
}

/// Waits for a server in `container` to answer on `addr`; panics with its logs if it
/// stopped.
fn wait_ready(p: &Podman, container: &str, addr: &str) {
    wait_until(Duration::from_secs(90), "the container's server", || {
        hoist_testkit::answers_200(addr, "/v2/health/ready") || !p.running(container)
    });
    assert!(
        hoist_testkit::answers_200(addr, "/v2/health/ready"),
        "the server in {container} stopped:\n{}",
        p.logs(container)
    );
}

/// The model's reference input through `addr`; its `label` output must equal the
/// reference's.
fn predicts_the_reference(addr: &str, model: &Path, name: &str) {
    let reference: Value =
        serde_json::from_slice(&std::fs::read(model.join("reference.json")).unwrap()).unwrap();
    let input = &reference["inputs"]["input"];
    let body = serde_json::json!({"inputs": [{"name": "input", "shape": input["shape"], "datatype": "FP32", "data": input["data"]}]});
    let answer: Value = reqwest::blocking::Client::new()
        .post(format!("http://{addr}/v2/models/{name}/infer"))
        .json(&body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let label = answer["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no outputs: {answer}"))
        .iter()
        .find(|o| o["name"] == "label")
        .expect("a label output");
    assert_eq!(
        label["data"], reference["outputs"]["label"]["data"],
        "{answer}"
    );
}

#[test]
fn podman_runs_the_model_image_and_it_predicts_the_reference_output() {
    let reg = Registry::start();
    let s = setup();
    let model = common::model("breast_cancer_lr");
    common::ok(&common::hoist(
        s.home.path(),
        &[
            "model",
            "register",
            model.to_str().unwrap(),
            "--name",
            "m",
            "--alias",
            "champion",
        ],
    ));
    let repo = format!("{}/team/models", reg.addr);
    let pushed = s.push(&[&repo, "--model", "m@champion"]);
    let reference = pushed["reference"].as_str().unwrap();

    let mut p = Podman::new(s.home.path());
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    // By digest, as a cluster would run it; the image's own entrypoint and port.
    p.start(
        "hoist-model",
        &["--tls-verify=false", "-p", &publish, reference],
    );
    let addr = format!("127.0.0.1:{port}");
    wait_ready(&p, "hoist-model", &addr);
    predicts_the_reference(&addr, &model, "m");
    // It runs as the image's user, not root.
    let o = p.run(&["inspect", "--format", "{{.Config.User}}", "hoist-model"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "65532");
}

#[test]
fn podman_runs_the_runtime_image_hoist_and_hoist_server_on_a_mounted_model() {
    let reg = Registry::start();
    let s = setup();
    let repo = format!("{}/team/hoist", reg.addr);
    let pushed = s.push(&[&repo, "--tag", "t"]);
    let reference = pushed["reference"].as_str().unwrap();
    let mut p = Podman::new(s.home.path());

    for (entrypoint, want) in [
        ("/usr/local/bin/hoist", "hoist "),
        ("/usr/local/bin/hoist-server", "hoist-server "),
    ] {
        let o = p.run(&[
            "run",
            "--rm",
            "--tls-verify=false",
            "--entrypoint",
            entrypoint,
            reference,
            "--version",
        ]);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && text.starts_with(want),
            "{entrypoint} --version: {text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // hoist-server on a model directory mounted read-only at /model.
    let model = common::model("breast_cancer_rf");
    let mount = format!("{}:/model:ro", model.display());
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    p.start(
        "hoist-runtime",
        &[
            "--tls-verify=false",
            "-p",
            &publish,
            "-v",
            &mount,
            "--entrypoint",
            "/usr/local/bin/hoist-server",
            reference,
            "--model",
            "/model",
            "--name",
            "rf",
            "--host",
            "0.0.0.0",
            "--port",
            "8080",
        ],
    );
    let addr = format!("127.0.0.1:{port}");
    wait_ready(&p, "hoist-runtime", &addr);
    predicts_the_reference(&addr, &model, "rf");
}
