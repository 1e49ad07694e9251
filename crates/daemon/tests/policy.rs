//! The daemon's `[policy]` check (`hoist_daemon::policy::check`) against a REAL
//! registry on 127.0.0.1: provenance required on top of the signature, the
//! Kubernetes target's image verified beside the model artifact, several accepted
//! keys, an artifact resolved by digest for pods that pull it, and a missing key file.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use hoist_daemon::policy::{self, Checked};
use hoist_oci::{
    Client, ClientOptions, ImageSpec, LayerBuilder, MODEL_LAYER_MEDIA, PrivateKey, Reference,
    artifact_manifest, sign,
};
use hoist_release::config::Config;
use hoist_testkit::Scratch;
use hoist_testkit::registry::Registry;

/// Pushes a model artifact of the files in `dir` under `repo:tag`; its digest.
fn push_model(reg: &Registry, repo: &str, tag: &str, dir: &Path, digest: &str) -> String {
    let mut layer = LayerBuilder::new(1_700_000_000).media_type(MODEL_LAYER_MEDIA);
    layer.tree("model", dir).unwrap();
    let ann = BTreeMap::from([("dev.hoist.model.digest".to_string(), digest.to_string())]);
    let m = artifact_manifest(layer.build().unwrap(), &ann);
    let client = client(&format!("{}/{repo}", reg.addr));
    client.push(&m, &[tag.to_string()]).unwrap().digest
}

fn client(reference: &str) -> Client {
    Client::connect(
        &Reference::parse(reference).unwrap(),
        ClientOptions::default(),
    )
    .unwrap()
}

fn config(text: &str) -> Arc<Config> {
    Arc::new(Config::parse(text, "hoist.toml").unwrap())
}

fn check(cfg: &Arc<Config>, base: &Path, digest: &str) -> Result<Checked, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(policy::check(
        cfg.clone(),
        base.to_path_buf(),
        "production".into(),
        "1".into(),
        digest.into(),
    ))
}

#[test]
fn provenance_the_image_and_several_keys_are_checked_before_a_server_starts() {
    let reg = Registry::start();
    let scratch = Scratch::new("daemon-policy");
    let base = scratch.path();
    let model = hoist_testkit::example_model("breast_cancer_lr");
    let digest = hoist_types::digest::digest_path(&model).unwrap();
    let (ours, theirs) = (PrivateKey::generate(), PrivateKey::generate());
    std::fs::write(base.join("ours.pub"), ours.public().to_pem()).unwrap();
    std::fs::write(base.join("theirs.pub"), theirs.public().to_pem()).unwrap();
    let repo = format!("{}/team/models", reg.addr);
    let tag_ref = format!("{repo}:m-v1");
    let pushed = push_model(&reg, "team/models", "m-v1", &model, &digest);
    let pinned = format!("{repo}@{pushed}");
    let r = Reference::parse(&tag_ref).unwrap();

    // Provenance required: a signature alone is not enough.
    let local = config(&format!(
        "[model]\nname = \"m\"\nartifact_repository = \"{repo}\"\n\
         [policy.production]\nrequire_provenance = true\nkeys = [\"theirs.pub\", \"ours.pub\"]\n"
    ));
    sign::sign(&client(&tag_ref), &r, &ours).unwrap();
    let e = check(&local, base, &digest).unwrap_err();
    assert!(
        e.starts_with("refused by [policy.production]: ")
            && e.contains("key 1: none of the 1 signature(s)")
            && e.contains("key 2: no SLSA provenance attestation"),
        "{e}"
    );
    // Attested by the second of the two keys: passes, and names the artifact by digest.
    let predicate = serde_json::json!({"buildDefinition": {"buildType": "test"}});
    sign::attest(
        &client(&tag_ref),
        &r,
        &ours,
        sign::SLSA_PROVENANCE_V1,
        predicate,
    )
    .unwrap();
    let ok = check(&local, base, &digest).unwrap();
    assert_eq!(ok.artifact.as_deref(), Some(pinned.as_str()));
    let passed = ok.passed.unwrap();
    assert!(
        passed.contains("signature and provenance verified"),
        "{passed}"
    );
    // The version in the model registry is another package: refused.
    let other = format!("sha256:{}", "1".repeat(64));
    let e = check(&local, base, &other).unwrap_err();
    assert!(e.contains(&format!("not {other}")), "{e}");

    // On Kubernetes the image is verified too: unsigned, refused; signed, passes.
    let repo_image = format!("{}/team/hoist", reg.addr);
    let mut l = LayerBuilder::new(5);
    l.bytes("usr/local/bin/hoist", b"#!".to_vec(), true)
        .unwrap();
    let m = ImageSpec {
        created: 5,
        ..Default::default()
    }
    .build(vec![l.build().unwrap()]);
    let d = client(&repo_image)
        .push(&m, &["0.1.0".to_string()])
        .unwrap()
        .digest;
    let image = format!("{repo_image}@{d}");
    let cluster = config(&format!(
        "target = \"kubernetes\"\n[kubernetes]\nimage = \"{image}\"\nmodel_source = \"oci\"\n\
         [model]\nname = \"m\"\nartifact_repository = \"{repo}\"\n\
         [policy.production]\nrequire_signature = true\nkeys = [\"ours.pub\"]\n"
    ));
    assert!(policy::needed(&cluster, "production"));
    let e = check(&cluster, base, &digest).unwrap_err();
    assert!(
        e.contains("team/hoist@sha256:") && e.contains("no signature"),
        "{e}"
    );
    sign::sign(&client(&image), &Reference::parse(&image).unwrap(), &ours).unwrap();
    let ok = check(&cluster, base, &digest).unwrap();
    let passed = ok.passed.unwrap();
    assert!(
        passed.contains(&format!("image {image}: signature verified"))
            && passed.contains("model artifact"),
        "{passed}"
    );
    assert_eq!(ok.artifact.as_deref(), Some(pinned.as_str()));

    // No policy, but pods pull the artifact: resolved by digest, no signature needed.
    let unsigned = config(&format!(
        "target = \"kubernetes\"\n[kubernetes]\nimage = \"{image}\"\nmodel_source = \"oci\"\n\
         [model]\nname = \"m\"\nartifact_repository = \"{repo}\"\n"
    ));
    assert!(policy::needed(&unsigned, "production"));
    let ok = check(&unsigned, base, &digest).unwrap();
    assert_eq!(
        ok,
        Checked {
            passed: None,
            artifact: Some(pinned.clone())
        }
    );

    // A key file that is not there refuses (fail closed).
    std::fs::remove_file(base.join("ours.pub")).unwrap();
    let e = check(&cluster, base, &digest).unwrap_err();
    assert!(e.contains("cannot read the key"), "{e}");
}
