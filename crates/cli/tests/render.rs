//! `hoist render k8s`: the real binary on an example hoist.toml, its files checked
//! by kubectl (offline) and by what a reviewer looks for; a bad config writes nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{hoist, ok, temp_home};
use serde_json::Value;

const IMAGE: &str = "registry.example.com/hoist/hoist@sha256:0f4e3d2c1b0a99887766554433221100ffeeddccbbaa99887766554433221100";

fn config(dir: &Path, image: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"
target = "kubernetes"

[model]
name = "fraud"
trigger = {{ alias = "champion" }}

[kubernetes]
image = "{image}"
registry_url = "http://mlflow.mlflow.svc:5000"
registry_secret = "mlflow-credentials"
admin_token_secret = "hoist-admin-token"
hostnames = ["fraud.example.com"]
gateway = {{ name = "public", namespace = "gateway-system" }}
{extra}
"#
    );
    // A file per call: a test may hold several configs at once.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = dir.join(format!("hoist-{n}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// `hoist render k8s` of staging to stdout, pinned to version 7 at `digest` (no
/// registry needed).
fn render_staging_v7(home: &Path, cfg: &Path, digest: &str) -> String {
    ok(&hoist(
        home,
        &[
            "render",
            "k8s",
            "--config",
            cfg.to_str().unwrap(),
            "--env",
            "staging",
            "--version",
            "7",
            "--digest",
            digest,
        ],
    ))
}

/// Registers breast_cancer_lr as `fraud` with alias champion; returns its digest.
fn register(home: &Path) -> String {
    let p = common::model("breast_cancer_lr");
    let out = ok(&hoist(
        home,
        &[
            "--json",
            "model",
            "register",
            p.to_str().unwrap(),
            "--name",
            "fraud",
            "--alias",
            "champion",
        ],
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["version"]["digest"].as_str().unwrap().to_string()
}

fn kustomize(dir: &Path) -> Vec<(String, String)> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl is installed (tools/debian-tools.sh)");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split("\n---\n")
        .map(|doc| {
            // kubectl prints keys sorted: `kind:` at the top level, then `metadata:`
            // whose first two-space `name:` is the object's.
            let kind = doc
                .lines()
                .find_map(|l| l.strip_prefix("kind: "))
                .expect("a kind");
            let name = doc
                .lines()
                .skip_while(|l| *l != "metadata:")
                .find_map(|l| l.strip_prefix("  name: "))
                .expect("a name");
            (kind.to_string(), name.to_string())
        })
        .collect()
}

#[test]
fn render_k8s_writes_the_directory_and_json_lists_it() {
    let home = temp_home("render-dir");
    let digest = register(&home);
    let cfg = config(&home, IMAGE, "");
    let out = home.join("manifests");
    let text = ok(&hoist(
        &home,
        &[
            "render",
            "k8s",
            "--config",
            cfg.to_str().unwrap(),
            "--env",
            "production",
            "--out",
            out.to_str().unwrap(),
        ],
    ));
    assert!(text.contains("kubectl apply -k"), "{text}");

    // The stable Deployment runs the champion, pinned by the image's and the model's digests.
    let d = std::fs::read_to_string(out.join("30-deployment-hoist-production-fraud-stable.yaml"))
        .unwrap();
    assert!(d.contains(&format!("hoist.dev/digest: {digest}")), "{d}");
    assert!(d.contains(&format!("image: {IMAGE}")));
    assert!(
        d.contains("- fraud/1"),
        "the init container fetches version 1"
    );
    let objects = kustomize(&out);
    for want in [
        ("Namespace", "hoist-production"),
        ("Deployment", "fraud-stable"),
        ("Service", "fraud-stable"),
        ("Service", "fraud-candidate"),
        ("Service", "fraud"),
        ("HorizontalPodAutoscaler", "fraud-stable"),
        ("PodDisruptionBudget", "fraud"),
        ("NetworkPolicy", "fraud"),
        ("ServiceMonitor", "fraud"),
        ("HTTPRoute", "fraud"),
        ("ServiceAccount", "fraud-server"),
    ] {
        assert!(
            objects.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} missing from {objects:?}"
        );
    }

    // --json lists every file written, and those are exactly the directory's files.
    let json = ok(&hoist(
        &home,
        &[
            "--json",
            "render",
            "k8s",
            "--config",
            cfg.to_str().unwrap(),
            "--env",
            "production",
            "--out",
            out.to_str().unwrap(),
        ],
    ));
    let v: Value = serde_json::from_str(&json).unwrap();
    let mut listed: Vec<String> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            Path::new(f.as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    on_disk.sort();
    assert_eq!(listed, on_disk);
    assert_eq!(
        v["objects"].as_array().unwrap().len(),
        objects.len(),
        "one object per kustomize document"
    );
    let _ = std::fs::remove_dir_all(&home);
}

/// Every environment and the controller, with a candidate at 20%: one directory each
/// and a kustomization over them; kubectl builds the whole tree.
#[test]
fn render_k8s_all_environments_with_candidate_and_controller() {
    let home = temp_home("render-all");
    register(&home);
    let p = common::model("breast_cancer_rf");
    ok(&hoist(
        &home,
        &["model", "register", p.to_str().unwrap(), "--name", "fraud"],
    ));
    let cfg = config(&home, IMAGE, "[kubernetes.controller]\nenabled = true\n");
    let out = home.join("all");
    ok(&hoist(
        &home,
        &[
            "render",
            "k8s",
            "--config",
            cfg.to_str().unwrap(),
            "--candidate",
            "fraud/2",
            "--weight",
            "20",
            "--out",
            out.to_str().unwrap(),
        ],
    ));
    for sub in ["staging", "production", "controller"] {
        assert!(out.join(sub).join("kustomization.yaml").exists(), "{sub}");
    }
    let objects = kustomize(&out);
    let count = |kind: &str, name: &str| {
        objects
            .iter()
            .filter(|(k, n)| k == kind && n == name)
            .count()
    };
    assert_eq!(
        count("Deployment", "fraud-candidate"),
        2,
        "one per environment"
    );
    assert_eq!(count("Deployment", "hoist-controller"), 1);
    assert_eq!(count("Lease", "hoist-controller"), 1);
    let route =
        std::fs::read_to_string(out.join("production/80-httproute-hoist-production-fraud.yaml"))
            .unwrap();
    assert!(
        route.contains("weight: 80") && route.contains("weight: 20"),
        "{route}"
    );
    let _ = std::fs::remove_dir_all(&home);
}

/// --version and --digest pin stable without a registry; YAML goes to stdout.
#[test]
fn render_k8s_to_stdout_without_a_registry() {
    let home = temp_home("render-stdout");
    let cfg = config(&home, IMAGE, "");
    let digest = format!("sha256:{}", "c".repeat(64));
    let yaml = render_staging_v7(&home, &cfg, &digest);
    assert!(yaml.starts_with("# Rendered by `hoist render k8s`"));
    assert!(yaml.contains(&format!("hoist.dev/digest: {digest}")));
    assert!(yaml.contains("hoist.dev/version: '7'"));
    assert!(yaml.contains("namespace: hoist-staging"));
    let _ = std::fs::remove_dir_all(&home);
}

/// A regressor's drift bins reach the pods' hoist-server flags, as `hoist up` passes
/// them to the processes it starts.
#[test]
fn render_k8s_passes_drift_bins_to_the_model_servers() {
    let home = temp_home("render-bins");
    let cfg = config(&home, IMAGE, "[analysis]\ndrift_bins = [100, 150.5]\n");
    let yaml = render_staging_v7(&home, &cfg, &format!("sha256:{}", "d".repeat(64)));
    let lines: Vec<&str> = yaml.lines().map(str::trim).collect();
    let at = lines
        .iter()
        .position(|l| *l == "- --prediction-bins")
        .unwrap_or_else(|| panic!("no --prediction-bins in\n{yaml}"));
    assert_eq!(lines[at + 1], "- 100,150.5", "{yaml}");
    let _ = std::fs::remove_dir_all(&home);
}

/// A bad config is a clear error, exit code 2, and not one file written.
#[test]
fn render_k8s_refuses_a_bad_config_and_writes_nothing() {
    let home = temp_home("render-bad");
    let digest = format!("sha256:{}", "c".repeat(64));
    let out = home.join("never");
    let cases = [
        (
            config(&home, "registry.example.com/hoist/hoist:latest", ""),
            "kubernetes.image",
        ),
        (
            config(&home, IMAGE, "model_path = \"relative\""),
            "kubernetes.model_path",
        ),
        (
            config(
                &home,
                IMAGE,
                "[kubernetes.resources]\nmemory_limit = \"lots\"",
            ),
            "kubernetes.resources",
        ),
    ];
    for (cfg, key) in cases {
        let o = hoist(
            &home,
            &[
                "render",
                "k8s",
                "--config",
                cfg.to_str().unwrap(),
                "--version",
                "7",
                "--digest",
                &digest,
                "--out",
                out.to_str().unwrap(),
            ],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{key}: {err}");
        assert!(err.starts_with("error: ") && err.contains(key), "{err}");
        assert!(!out.exists(), "{key}: nothing may be written");
    }
    // The tag case says why.
    let cfg = config(&home, "registry.example.com/hoist/hoist:latest", "");
    let o = hoist(
        &home,
        &[
            "--json",
            "render",
            "k8s",
            "--config",
            cfg.to_str().unwrap(),
            "--version",
            "7",
            "--digest",
            &digest,
        ],
    );
    let v: Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(v["error"]["code"], "invalid_config");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("not pinned by digest"), "{msg}");
    assert!(o.stdout.is_empty());

    // A stable digest that is not sha256 is refused by the renderer, naming the field.
    let cfg = config(&home, IMAGE, "");
    let o = hoist(
        &home,
        &[
            "render",
            "k8s",
            "--config",
            cfg.to_str().unwrap(),
            "--version",
            "7",
            "--digest",
            "md5:abc",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("stable.digest"), "{err}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&home);
}

/// `model_source = "oci"`: each pod pulls the artifact `hoist model push` recorded on
/// the version (the tag hoist.artifact, by digest), with the pull secret; a version
/// with no artifact is refused with what to do.
#[test]
fn an_oci_model_source_pulls_the_versions_artifact_by_digest() {
    let home = temp_home("render-oci");
    register(&home);
    let cfg = config(
        &home,
        IMAGE,
        "model_source = \"oci\"\npull_secret = \"registry-credentials\"\n",
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
            "trigger = { alias = \"champion\" }",
            "trigger = { alias = \"champion\" }\nartifact_repository = \"registry.example.com/team/models\"",
        );
    std::fs::write(&cfg, text).unwrap();
    let args = [
        "render",
        "k8s",
        "--config",
        cfg.to_str().unwrap(),
        "--env",
        "staging",
    ];
    let out = hoist(&home, &args);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stable.artifact") && err.contains("hoist.artifact"),
        "{err}"
    );

    let artifact = format!("registry.example.com/team/models@sha256:{}", "c".repeat(64));
    ok(&hoist(
        &home,
        &[
            "model",
            "tag",
            "fraud",
            "1",
            &format!("hoist.artifact={artifact}"),
        ],
    ));
    let yaml = ok(&hoist(&home, &args));
    assert!(
        yaml.contains(&format!(
            "- pull\n        - {artifact}\n        - --out\n        - /models/model"
        )),
        "{yaml}"
    );
    assert!(yaml.contains("imagePullSecrets:\n      - name: registry-credentials"));
    assert!(yaml.contains(&format!("hoist.dev/artifact: {artifact}")));
    assert!(
        !yaml.contains("- fetch"),
        "no registry fetch with an OCI source"
    );
    let _ = std::fs::remove_dir_all(&home);
}

/// One `[[models]]` entry is that model (not the default `[model]`); several are
/// refused by name: a rendered set delivers one model.
#[test]
fn render_k8s_takes_the_one_model_of_models_and_refuses_several() {
    let home = temp_home("render-models");
    let one = std::fs::read_to_string(config(&home, IMAGE, ""))
        .unwrap()
        .replace(
            "[model]\nname = \"fraud\"\ntrigger = { alias = \"champion\" }\n",
            "[[models]]\nname = \"churn\"\n",
        );
    assert!(one.contains("[[models]]"), "{one}");
    let p = home.join("one.toml");
    std::fs::write(&p, &one).unwrap();
    let out = render_staging_v7(&home, &p, &format!("sha256:{}", "7".repeat(64)));
    assert!(out.contains("name: churn-stable"), "{out}");
    assert!(!out.contains("default-stable"), "{out}");

    let two = one
        .replace("target = \"kubernetes\"", "target = \"local\"")
        .replace(
            "[[models]]\nname = \"churn\"\n",
            "[[models]]\nname = \"churn\"\n\n[[models]]\nname = \"fraud\"\n",
        );
    let p = home.join("two.toml");
    std::fs::write(&p, &two).unwrap();
    let o = hoist(
        &home,
        &[
            "render",
            "k8s",
            "--config",
            p.to_str().unwrap(),
            "--env",
            "staging",
            "--version",
            "7",
            "--digest",
            &format!("sha256:{}", "7".repeat(64)),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("works on one model"), "{err}");
    assert!(err.contains("churn, fraud"), "{err}");
    let _ = std::fs::remove_dir_all(&home);
}
