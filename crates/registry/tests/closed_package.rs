//! A model package is closed: the embedded registry refuses to register, and refuses
//! to hand out at fetch, a package that names files outside it.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use hoist_registry::embedded::EmbeddedRegistry;
use hoist_registry::{Error, ModelRef, Registry};
use hoist_types::onnx::build::{add_model_with_external_weights, weights, write_package};

fn scratch(tag: &str) -> hoist_testkit::Scratch {
    hoist_testkit::Scratch::new(&format!("reg-closed-{tag}"))
}

fn package(dir: &Path, data: &str, location: &str) -> PathBuf {
    write_package(dir, data, location, [1.0, 2.0])
}

fn refused(e: Error, want: &str) {
    let msg = e.to_string();
    assert!(
        matches!(e, Error::Invalid(_))
            && msg.contains("model package refused")
            && msg.contains(want),
        "expected a refusal naming '{want}', got: {msg}"
    );
}

#[test]
fn register_refuses_packages_that_reach_outside_and_records_nothing() {
    let base = scratch("register");
    let reg = EmbeddedRegistry::open(base.join("home")).unwrap();
    std::fs::write(
        base.join("x.onnx"),
        add_model_with_external_weights("weights.bin"),
    )
    .unwrap();
    std::fs::write(base.join("weights.bin"), weights([6.0, 6.0])).unwrap();
    let abs = base.join("x.onnx").canonicalize().unwrap();

    let cases: Vec<(PathBuf, &str)> = vec![
        (
            package(&base.join("abs"), abs.to_str().unwrap(), "weights.bin"),
            "an absolute path",
        ),
        (
            package(&base.join("up"), "../x.onnx", "weights.bin"),
            "'..'",
        ),
        (
            package(&base.join("ext"), "model.onnx", "../weights.bin"),
            "external data location",
        ),
        {
            let p = package(&base.join("link"), "model.onnx", "weights.bin");
            std::fs::remove_file(p.join("weights.bin")).unwrap();
            symlink(base.join("weights.bin"), p.join("weights.bin")).unwrap();
            (p, "outside the package directory")
        },
        {
            let p = package(&base.join("dirlink"), "model.onnx", "weights.bin");
            symlink(&base, p.join("up")).unwrap();
            (p, "outside the package directory")
        },
    ];
    for (pkg, want) in cases {
        let e = reg.register(&pkg, "m", &BTreeMap::new(), None).unwrap_err();
        refused(e, want);
    }
    assert!(reg.list_models().unwrap().is_empty());
    // Nothing was stored either.
    let stored = std::fs::read_dir(reg.store().root().join("sha256"))
        .unwrap()
        .count();
    assert_eq!(stored, 0);

    // A good package with its external data inside registers; changing the data
    // makes a new version with another digest.
    let good = package(&base.join("good"), "model.onnx", "weights.bin");
    let v1 = reg.register(&good, "m", &BTreeMap::new(), None).unwrap();
    std::fs::write(good.join("weights.bin"), weights([3.0, 4.0])).unwrap();
    let v2 = reg.register(&good, "m", &BTreeMap::new(), None).unwrap();
    assert_eq!((v1.version.as_str(), v2.version.as_str()), ("1", "2"));
    assert_ne!(v1.digest, v2.digest);
    let fetched = reg.fetch(&v2).unwrap();
    assert_eq!(
        std::fs::read(fetched.dir.join("weights.bin")).unwrap(),
        weights([3.0, 4.0])
    );
}

#[test]
fn fetch_refuses_a_stored_package_that_reaches_outside() {
    let base = scratch("fetch");
    let home = base.join("home");
    let reg = EmbeddedRegistry::open(&home).unwrap();
    std::fs::write(base.join("secret.bin"), weights([6.0, 6.0])).unwrap();

    // A package stored without the check (as an older hoist did), and recorded as a
    // version: external data outside the package.
    let bad = package(&base.join("bad"), "model.onnx", "../../../../secret.bin");
    let digest = reg.store().put_dir(&bad).unwrap();
    let db = rusqlite::Connection::open(home.join("registry.db")).unwrap();
    db.execute(
        "INSERT INTO models (name, created_at_ms) VALUES ('m', 0)",
        [],
    )
    .unwrap();
    db.execute(
        "INSERT INTO versions (name, version, digest, source, created_at_ms) VALUES ('m', 1, ?1, 'x', 0)",
        [&digest],
    )
    .unwrap();
    let v = reg.resolve(&ModelRef::parse("m/1").unwrap()).unwrap();
    refused(reg.fetch(&v).unwrap_err(), "'..'");

    // A stored package edited in place: a file replaced by a symlink to a file
    // outside with the same bytes (so its digest still matches).
    let good = package(&base.join("good"), "model.onnx", "weights.bin");
    let v = reg.register(&good, "g", &BTreeMap::new(), None).unwrap();
    let entry = reg.store().entry_path(v.digest.as_ref().unwrap()).unwrap();
    std::fs::write(base.join("copy.bin"), weights([1.0, 2.0])).unwrap();
    std::fs::remove_file(entry.join("weights.bin")).unwrap();
    symlink(base.join("copy.bin"), entry.join("weights.bin")).unwrap();
    refused(reg.fetch(&v).unwrap_err(), "outside the package directory");
}
