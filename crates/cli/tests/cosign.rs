//! Signatures and provenance, compatible with cosign both ways: the REAL `cosign`
//! CLI (v2.6.5, built from its Go module by tools/cosign.sh) verifies what `hoist
//! sign` / `hoist attest` wrote, and `hoist verify` accepts what `cosign sign`
//! wrote, against a REAL registry on 127.0.0.1. A signature with a flipped byte, a
//! signature copied from another image, and another image pushed under the signed
//! tag are all refused (exit 4, with the reason).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hoist_oci::{Client, ClientOptions, Reference};
use hoist_testkit::Scratch;
use hoist_testkit::registry::Registry;
use serde_json::Value;

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

const PASSWORD: &str = "test-password";

fn cosign(dir: &Path, args: &[&str]) -> Output {
    Command::new(cosign_bin())
        .current_dir(dir)
        .args(args)
        .env("COSIGN_PASSWORD", PASSWORD)
        .env("HOME", dir)
        .env("TUF_ROOT", dir.join("tuf"))
        .env("SIGSTORE_NO_CACHE", "1")
        .output()
        .expect("run cosign")
}

fn hoist(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hoist"))
        .current_dir(home)
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("MLFLOW_TRACKING_URI")
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

/// cosign prints an empty line before its JSON.
fn first_json_line(out: &str) -> &str {
    out.lines()
        .find(|l| !l.trim().is_empty())
        .expect("cosign printed JSON")
}

fn refused(o: Output, want: &str) {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(4), "stderr: {err}");
    assert!(err.contains(want), "want '{want}' in: {err}");
}

/// Two model versions pushed as artifacts: two small images with distinct digests.
fn two_images(reg: &Registry, home: &Path) -> (String, String) {
    for (pkg, _) in [("breast_cancer_lr", 1), ("breast_cancer_gbt", 2)] {
        let p = common::model(pkg);
        ok(
            hoist(
                home,
                &["model", "register", p.to_str().unwrap(), "--name", "m"],
            ),
            "register",
        );
    }
    let repo = format!("{}/signed/models", reg.addr);
    let mut refs = vec![];
    for v in ["m/1", "m/2"] {
        let out = ok(
            hoist(home, &["--json", "model", "push", v, &repo]),
            "model push",
        );
        let j: Value = serde_json::from_str(&out).unwrap();
        refs.push(j["reference"].as_str().unwrap().to_string());
    }
    (refs[0].clone(), refs[1].clone())
}

const INSECURE: [&str; 2] = [
    "--allow-http-registry=true",
    "--allow-insecure-registry=true",
];

#[test]
fn cosign_verifies_what_hoist_signed_and_attested() {
    let reg = Registry::start();
    let home = Scratch::new("cosign-a");
    let h = home.path();
    let (a, _) = two_images(&reg, h);
    ok(
        hoist(h, &["key", "generate", "--out-prefix", "hoist"]),
        "key generate",
    );
    ok(hoist(h, &["sign", &a, "--key", "hoist.key"]), "hoist sign");
    ok(
        hoist(h, &["attest", &a, "--key", "hoist.key", "--model", "m/1"]),
        "hoist attest",
    );

    let mut args = vec![
        "verify",
        "--key",
        "hoist.pub",
        "--insecure-ignore-tlog=true",
    ];
    args.extend(INSECURE);
    args.push(&a);
    let out = ok(cosign(h, &args), "cosign verify");
    let v: Value = serde_json::from_str(first_json_line(&out)).unwrap();
    assert_eq!(
        v[0]["critical"]["image"]["docker-manifest-digest"],
        a.split('@').nth(1).unwrap()
    );
    let mut args = vec![
        "verify-attestation",
        "--key",
        "hoist.pub",
        "--type",
        "slsaprovenance1",
        "--insecure-ignore-tlog=true",
    ];
    args.extend(INSECURE);
    args.push(&a);
    let out = ok(cosign(h, &args), "cosign verify-attestation");
    let env: Value = serde_json::from_str(first_json_line(&out)).unwrap();
    use base64::Engine as _;
    let st: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(env["payload"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v1");
    let params = &st["predicate"]["buildDefinition"]["externalParameters"];
    assert_eq!(params["model"]["name"], "m");
    assert_eq!(params["model"]["version"], "1");
    assert!(
        params["model"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(
        st["predicate"]["runDetails"]["builder"]["version"]["hoist"],
        env!("CARGO_PKG_VERSION")
    );
    // And hoist verifies both.
    ok(
        hoist(h, &["verify", &a, "--key", "hoist.pub", "--attestation"]),
        "hoist verify",
    );
}

#[test]
fn hoist_verifies_what_cosign_signed_and_signs_with_cosigns_key() {
    let reg = Registry::start();
    let home = Scratch::new("cosign-b");
    let h = home.path();
    let (a, b) = two_images(&reg, h);
    ok(
        cosign(h, &["generate-key-pair"]),
        "cosign generate-key-pair",
    );
    let mut args = vec![
        "sign",
        "--key",
        "cosign.key",
        "--tlog-upload=false",
        "--yes",
    ];
    args.extend(INSECURE);
    args.push(&a);
    ok(cosign(h, &args), "cosign sign");
    let out = ok(
        hoist(h, &["--json", "verify", &a, "--key", "cosign.pub"]),
        "hoist verify",
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verified"], true);
    // hoist reads cosign's private key; cosign verifies the result.
    ok(
        hoist(h, &["sign", &b, "--key", "cosign.key"]),
        "hoist sign with cosign's key",
    );
    let mut args = vec![
        "verify",
        "--key",
        "cosign.pub",
        "--insecure-ignore-tlog=true",
    ];
    args.extend(INSECURE);
    args.push(&b);
    ok(cosign(h, &args), "cosign verify");
    // Another key: refused by both.
    ok(
        hoist(h, &["key", "generate", "--out-prefix", "other"]),
        "key generate",
    );
    refused(
        hoist(h, &["verify", &a, "--key", "other.pub"]),
        "verifies with the key",
    );
    let mut args = vec![
        "verify",
        "--key",
        "other.pub",
        "--insecure-ignore-tlog=true",
    ];
    args.extend(INSECURE);
    args.push(&a);
    assert!(!cosign(h, &args).status.success());
}

#[test]
fn a_flipped_byte_a_copied_signature_and_a_retagged_image_are_refused() {
    let reg = Registry::start();
    let home = Scratch::new("cosign-c");
    let h = home.path();
    let (a, b) = two_images(&reg, h);
    ok(
        hoist(h, &["key", "generate", "--out-prefix", "k"]),
        "key generate",
    );
    ok(hoist(h, &["sign", &a, "--key", "k.key"]), "sign");
    ok(hoist(h, &["verify", &a, "--key", "k.pub"]), "verify");

    let repo = Reference::parse(&a).unwrap();
    let client = Client::connect(&repo, ClientOptions::default()).unwrap();
    let digest_a = a.split('@').nth(1).unwrap();
    let digest_b = b.split('@').nth(1).unwrap();
    let sig_tag = format!("{}.sig", digest_a.replace(':', "-"));
    let sig_manifest = client.get_manifest(&sig_tag).unwrap();

    // A's signature copied to B's .sig tag: it verifies, but names A, so B is refused.
    let b_tag = format!("{}.sig", digest_b.replace(':', "-"));
    client.put_manifest(&sig_manifest, &b_tag).unwrap();
    refused(hoist(h, &["verify", &b, "--key", "k.pub"]), "another image");

    // One flipped byte in the signature: refused.
    let mut m: Value = serde_json::from_slice(&sig_manifest.bytes).unwrap();
    let ann = &mut m["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"];
    let mut sig = ann.as_str().unwrap().as_bytes().to_vec();
    sig[20] = if sig[20] == b'A' { b'B' } else { b'A' };
    *ann = Value::String(String::from_utf8(sig).unwrap());
    let flipped = hoist_oci::Blob::new(hoist_oci::MEDIA_MANIFEST, serde_json::to_vec(&m).unwrap());
    client.put_manifest(&flipped, &sig_tag).unwrap();
    refused(
        hoist(h, &["verify", &a, "--key", "k.pub"]),
        "verifies with the key",
    );
    client.put_manifest(&sig_manifest, &sig_tag).unwrap();
    ok(hoist(h, &["verify", &a, "--key", "k.pub"]), "verify again");

    // Another image pushed under the signed tag: the tag now names an unsigned digest.
    let tagged = format!("{}/signed/models:release", reg.addr);
    ok(
        hoist(
            h,
            &[
                "model",
                "push",
                "m/1",
                &format!("{}/signed/models", reg.addr),
                "--tag",
                "release",
            ],
        ),
        "push",
    );
    ok(
        hoist(h, &["verify", &tagged, "--key", "k.pub"]),
        "verify the tag",
    );
    ok(
        hoist(
            h,
            &[
                "model",
                "push",
                "m/2",
                &format!("{}/signed/models", reg.addr),
                "--tag",
                "release",
            ],
        ),
        "push another",
    );
    // (m/2's .sig holds the signature copied from A above: still refused.)
    refused(
        hoist(h, &["verify", &tagged, "--key", "k.pub"]),
        "is not verified",
    );
    // No attestation: refused with --attestation.
    refused(
        hoist(h, &["verify", &a, "--key", "k.pub", "--attestation"]),
        "provenance",
    );
}
