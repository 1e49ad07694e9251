//! `[policy]` at deploy, end to end with real parts: a REAL registry on 127.0.0.1
//! (Debian's `docker-registry`), model artifacts pushed by `hoist model push`, keys
//! and signatures by `hoist key generate` / `hoist sign` (and the REAL cosign where
//! it signs), a REAL `hoist up` daemon on the local target and `hoist deploy --wait`.
//!
//! A signed artifact deploys. An unsigned one, one signed by another key, one whose
//! signature has one flipped byte, and another artifact pushed under the version's
//! tag are each refused before any server starts: `hoist deploy --wait` exits 5, the
//! reason is the release's outcome and its journaled `candidate_failed` event, and no
//! hoist-server wrote a log for that version.
//!
//! `hoist model pull` on the same artifacts: verified, unpacked, refused with exit 4.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use common::{BASE, Daemon, model, temp_home};
use hoist_oci::{Blob, Client, ClientOptions, Reference};
use hoist_testkit::registry::Registry;
use serde_json::Value;

const PASSWORD: &str = "policy-test";

fn run(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hoist"))
        .current_dir(home)
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("HOIST_API")
        .env_remove("HOIST_ADMIN_TOKEN")
        .env_remove("HOIST_ADMIN_TOKEN_FILE")
        .env("COSIGN_PASSWORD", PASSWORD)
        .env("DOCKER_CONFIG", home.join("no-docker-config"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("run hoist")
}

fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The pinned cosign (tools/test.sh builds it with tools/cosign.sh).
fn cosign_bin() -> PathBuf {
    let p = std::env::var_os("HOIST_COSIGN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".hoist/cosign/v2.6.5/cosign")
        });
    assert!(
        p.is_file(),
        "no cosign at {}: run `bash tools/cosign.sh` (tools/test.sh does)",
        p.display()
    );
    p
}

/// Registers `package` as the next version of `m` and pushes it: the artifact's tag.
fn register_and_push(home: &Path, repo: &str, package: &str, version: &str) -> String {
    let p = model(package);
    ok(
        run(
            home,
            &["model", "register", p.to_str().unwrap(), "--name", "m"],
        ),
        "register",
    );
    ok(
        run(home, &["model", "push", &format!("m/{version}"), repo]),
        "model push",
    );
    format!("{repo}:m-v{version}")
}

/// Flips one byte of the (first) signature of the image `tag` names, in place.
fn flip_signature_byte(reference: &str) {
    let r = Reference::parse(reference).unwrap();
    let client = Client::connect(&r, ClientOptions::default()).unwrap();
    let digest = hoist_oci::sign::resolve(&client, &r).unwrap();
    let sig_tag = hoist_oci::sign::cosign_tag(&digest, "sig");
    let m = client.get_manifest(&sig_tag).unwrap();
    let mut v: Value = serde_json::from_slice(&m.bytes).unwrap();
    let ann = &mut v["layers"][0]["annotations"][hoist_oci::sign::ANNOTATION_SIGNATURE];
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut der = b64.decode(ann.as_str().unwrap()).unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    *ann = Value::String(b64.encode(der));
    let blob = Blob::new(&m.media_type, serde_json::to_vec(&v).unwrap());
    client.put_manifest(&blob, &sig_tag).unwrap();
}

/// Whether a hoist-server ever ran version `v` in production (each writes its log).
fn server_ran(home: &Path, v: &str) -> bool {
    fn walk(dir: &Path, name: &str) -> bool {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let p = e.path();
                p.file_name().is_some_and(|n| n == name) || (p.is_dir() && walk(&p, name))
            })
    }
    walk(home, &format!("production-v{v}.log"))
}

/// `hoist deploy m/V --wait` must exit 5 with the policy's reason journaled.
fn refused(d: &Daemon, id: u64, version: &str, want: &str) {
    let out = run(&d.home, &["deploy", &format!("m/{version}"), "--wait"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(5),
        "v{version}: stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = d.release(id);
    assert_eq!(r["version"], version, "{r}");
    let reason = r["outcome"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("no reason: {r}"));
    assert!(
        reason.contains("refused by [policy.production]: ") && reason.contains(want),
        "v{version}: {reason}"
    );
    let journaled = r["transitions"].as_array().unwrap().iter().any(|t| {
        t["event"]["event"] == "candidate_failed"
            && t["event"]["reason"].as_str().is_some_and(|e| {
                e.starts_with("refused by [policy.production]: ") && reason.ends_with(e)
            })
    });
    assert!(journaled, "the refusal is a journaled event: {r}");
    assert!(!server_ran(&d.home, version), "a server ran v{version}");
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("1"),
        "{s}"
    );
}

#[test]
fn only_artifacts_signed_by_the_policys_key_reach_production() {
    let reg = Registry::start();
    let home = temp_home("policy");
    let repo = format!("{}/team/models", reg.addr);
    ok(
        run(&home, &["key", "generate", "--out-prefix", "cosign"]),
        "key",
    );
    ok(
        run(&home, &["key", "generate", "--out-prefix", "other"]),
        "key",
    );
    let config = format!(
        "{}\n[[environments]]\nname = \"production\"\nlisten = \"127.0.0.1:0\"\nstrategy = \"blue-green\"\nanalysis = {{ enabled = false }}\n\n[policy.production]\nrequire_signature = true\nkeys = [\"cosign.pub\"]\n",
        BASE.replace(
            "trigger = { alias = \"champion\" }",
            &format!("trigger = \"manual\"\nartifact_repository = \"{repo}\""),
        )
    );
    let no_docker = home.join("no-docker-config");
    let d = Daemon::start_with_env(
        &home,
        &config,
        &[("DOCKER_CONFIG", no_docker.to_str().unwrap())],
    );

    // v1: pushed and signed by the policy's key: deploys.
    let v1 = register_and_push(&home, &repo, "breast_cancer_lr", "1");
    ok(run(&home, &["sign", &v1, "--key", "cosign.key"]), "sign");
    let out = ok(run(&home, &["deploy", "m/1", "--wait"]), "deploy v1");
    let r = d.release(1);
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{out}\n{r}");
    assert!(server_ran(&home, "1"));

    // v2: pushed, never signed.
    register_and_push(&home, &repo, "breast_cancer_gbt", "2");
    refused(&d, 2, "2", "no signature for sha256:");

    // v3: signed, by a key the policy does not name.
    let v3 = register_and_push(&home, &repo, "breast_cancer_rf", "3");
    ok(run(&home, &["sign", &v3, "--key", "other.key"]), "sign");
    refused(&d, 3, "3", "verifies with the key");

    // v4: signed by the right key, then one byte of the signature flipped.
    let v4 = register_and_push(&home, &repo, "breast_cancer_batch2", "4");
    ok(run(&home, &["sign", &v4, "--key", "cosign.key"]), "sign");
    flip_signature_byte(&v4);
    refused(&d, 4, "4", "verifies with the key");

    // v5: signed, then another artifact pushed under its tag — v1's, itself signed:
    // the signature verifies, the package is not v5's.
    let v5 = register_and_push(&home, &repo, "breast_cancer_skewed", "5");
    ok(run(&home, &["sign", &v5, "--key", "cosign.key"]), "sign");
    ok(
        run(&home, &["model", "push", "m/1", &repo, "--tag", "m-v5"]),
        "push v1 under v5's tag",
    );
    refused(&d, 5, "5", "not sha256:");

    // v6: signed by the real cosign with the policy's key: deploys.
    {
        let cosign = cosign_bin();
        let v6 = register_and_push(&home, &repo, "breast_cancer_shuffled", "6");
        let o = Command::new(cosign)
            .current_dir(&home)
            .args([
                "sign",
                "--key",
                "cosign.key",
                "--tlog-upload=false",
                "--yes",
                "--allow-http-registry=true",
                "--allow-insecure-registry=true",
                &v6,
            ])
            .env("COSIGN_PASSWORD", PASSWORD)
            .env("HOME", &home)
            .env("TUF_ROOT", home.join("tuf"))
            .env("SIGSTORE_NO_CACHE", "1")
            .output()
            .unwrap();
        ok(o, "cosign sign");
        let out = ok(run(&home, &["deploy", "m/6", "--wait"]), "deploy v6");
        let r = d.release(6);
        assert_eq!(r["outcome"]["outcome"], "succeeded", "{out}\n{r}");
    }

    // `hoist model pull`, what an init container runs, on the same artifacts.
    let out_dir = home.join("pulled");
    let pulled = ok(
        run(
            &home,
            &[
                "--json",
                "model",
                "pull",
                &v1,
                "--out",
                out_dir.to_str().unwrap(),
                "--key",
                "cosign.pub",
            ],
        ),
        "model pull",
    );
    let p: Value = serde_json::from_str(&pulled).unwrap();
    assert_eq!(p["signed"], true);
    assert_eq!(p["version"], "1");
    let show: Value =
        serde_json::from_str(&ok(run(&home, &["--json", "model", "show", "m/1"]), "show")).unwrap();
    assert_eq!(p["model_digest"], show["digest"], "{show}");
    assert_eq!(
        hoist_types::digest::digest_path(&out_dir).unwrap(),
        show["digest"].as_str().unwrap()
    );
    for (reference, want) in [
        (v3.as_str(), "verifies with the key"),
        (v4.as_str(), "verifies"),
    ] {
        let dir = home.join("refused");
        let o = run(
            &home,
            &[
                "model",
                "pull",
                reference,
                "--out",
                dir.to_str().unwrap(),
                "--key",
                "cosign.pub",
            ],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(4), "{reference}: {err}");
        assert!(err.contains(want), "{err}");
        assert!(!dir.exists());
    }
    d.stop();
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn policy_fails_closed_when_the_registry_is_unreachable() {
    let home = temp_home("policy-unreachable");
    let p = model("breast_cancer_lr");
    // Nothing listens on port 1.
    let config = format!(
        "{}\n[[environments]]\nname = \"production\"\nlisten = \"127.0.0.1:0\"\nstrategy = \"blue-green\"\nanalysis = {{ enabled = false }}\n\n[policy.production]\nrequire_signature = true\nrequire_provenance = true\nkeys = [\"cosign.pub\"]\n",
        BASE.replace(
            "trigger = { alias = \"champion\" }",
            "trigger = \"manual\"\nartifact_repository = \"127.0.0.1:1/team/models\"",
        )
    );
    ok(
        run(&home, &["key", "generate", "--out-prefix", "cosign"]),
        "key",
    );
    let d = Daemon::start(&home, &config);
    ok(
        run(
            &home,
            &["model", "register", p.to_str().unwrap(), "--name", "m"],
        ),
        "register",
    );
    let out = run(&home, &["deploy", "m/1", "--wait"]);
    assert_eq!(out.status.code(), Some(5));
    let r = d.wait_done(1, Duration::from_secs(30));
    let reason = r["outcome"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("refused by [policy.production]: ") && reason.contains("unreachable"),
        "{reason}"
    );
    assert!(!server_ran(&home, "1"));
}
