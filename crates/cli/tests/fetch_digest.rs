//! `hoist model fetch --digest`: the fetched version must be exactly the pinned
//! package (what the Kubernetes init container relies on), else exit code 4 and
//! nothing written.

mod common;

use std::path::Path;

use common::{hoist, ok, register, temp_home};
use serde_json::Value;

fn digest_of(home: &Path, reference: &str) -> String {
    let v: Value =
        serde_json::from_str(&ok(&hoist(home, &["model", "show", reference, "--json"]))).unwrap();
    v["digest"].as_str().unwrap().to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn fetch_digest_accepts_the_pinned_package_and_refuses_another() {
    let home = temp_home("fetch-digest");
    register(&home, "breast_cancer_lr", Some("champion"));
    register(&home, "breast_cancer_rf", None);
    let (d1, d2) = (digest_of(&home, "m/1"), digest_of(&home, "m/2"));
    assert_ne!(d1, d2);
    let work = home.join("work");

    // The pinned digest: fetched, and the files are that package.
    let to = work.join("ok");
    let out = ok(&hoist(
        &home,
        &[
            "model",
            "fetch",
            "m/1",
            "--to",
            to.to_str().unwrap(),
            "--digest",
            &d1,
        ],
    ));
    assert!(out.contains(&d1), "{out}");
    assert_eq!(hoist_types::digest_path(&to).unwrap().as_str(), d1);

    // Written in capitals, it is the same digest.
    let to = work.join("upper");
    ok(&hoist(
        &home,
        &[
            "model",
            "fetch",
            "m@champion",
            "--to",
            to.to_str().unwrap(),
            "--digest",
            &d1.to_uppercase().replace("SHA256:", "sha256:"),
        ],
    ));
    assert_eq!(hoist_types::digest_path(&to).unwrap().as_str(), d1);

    // Another version's digest: exit 4, both digests named, nothing written.
    let to = work.join("refused");
    let o = hoist(
        &home,
        &[
            "model",
            "fetch",
            "m@champion",
            "--to",
            to.to_str().unwrap(),
            "--digest",
            &d2,
        ],
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains(&d1) && e.contains(&d2), "{e}");
    assert!(e.contains("--digest") && e.contains("m version 1"), "{e}");
    assert!(!to.exists(), "nothing in --to");
    let left: Vec<String> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.iter().all(|n| n == "ok" || n == "upper"),
        "no temporary directory left behind: {left:?}"
    );

    // An empty --to stays empty; --json names the failure for scripts.
    let empty = work.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = hoist(
        &home,
        &[
            "model",
            "fetch",
            "m/1",
            "--to",
            empty.to_str().unwrap(),
            "--digest",
            &d2,
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(4));
    let j: Value = serde_json::from_str(stderr(&o).trim()).unwrap();
    assert_eq!(j["error"]["code"], "digest_mismatch");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn fetch_digest_that_is_not_a_digest_is_bad_usage() {
    let home = temp_home("fetch-digest-usage");
    register(&home, "breast_cancer_lr", None);
    let to = home.join("out");
    for bad in [
        "sha256:abc",
        "md5:0123",
        &format!("sha256:{}", "g".repeat(64)),
    ] {
        let o = hoist(
            &home,
            &[
                "model",
                "fetch",
                "m/1",
                "--to",
                to.to_str().unwrap(),
                "--digest",
                bad,
            ],
        );
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("64 hex digits"), "{}", stderr(&o));
        assert!(!to.exists());
    }
}
