//! A model package is closed: `check_package` and `digest_path` on real directories.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use hoist_types::onnx::build::{external_tensor, field, int_field};
use hoist_types::{check_package, digest_path};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hoist-pkgcheck-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An `.onnx` file whose one initializer keeps its data in `location`.
fn onnx_with_external(location: &str) -> Vec<u8> {
    let graph = field(5, &external_tensor("w", location));
    [int_field(1, 8), field(7, &graph)].concat()
}

const MLMODEL: &str = "flavors:\n  onnx:\n    data: model.onnx\n  python_function:\n    data: model.onnx\n    env:\n      conda: conda.yaml\n      virtualenv: python_env.yaml\n    loader_module: mlflow.onnx\n";

/// A package dir under `base/pkg` with MLmodel, model.onnx (external data in
/// `weights.bin`) and weights.bin.
fn good_package(base: &Path) -> PathBuf {
    let pkg = base.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("MLmodel"), MLMODEL).unwrap();
    std::fs::write(pkg.join("model.onnx"), onnx_with_external("weights.bin")).unwrap();
    std::fs::write(pkg.join("weights.bin"), [1u8; 16]).unwrap();
    std::fs::write(pkg.join("conda.yaml"), "name: x\n").unwrap();
    pkg
}

fn with_data(pkg: &Path, data: &str) {
    std::fs::write(
        pkg.join("MLmodel"),
        MLMODEL.replacen("data: model.onnx", &format!("data: '{data}'"), 1),
    )
    .unwrap();
}

fn refused(pkg: &Path, want: &str) -> String {
    let e = check_package(pkg).expect_err("package must be refused");
    let msg = e.to_string();
    assert!(msg.contains(want), "expected '{want}' in: {msg}");
    msg
}

#[test]
fn a_good_package_with_external_data_passes_and_its_digest_covers_the_data() {
    let base = scratch("good");
    let pkg = good_package(&base);
    let files = check_package(&pkg).unwrap();
    let root = pkg.canonicalize().unwrap();
    assert_eq!(files.onnx, Some(root.join("model.onnx")));
    assert_eq!(files.external_data, vec![root.join("weights.bin")]);
    let before = digest_path(&pkg).unwrap();
    std::fs::write(pkg.join("weights.bin"), [2u8; 16]).unwrap();
    assert_ne!(before, digest_path(&pkg).unwrap());
    // External data in a subdirectory, and a symlink to a file inside, are fine.
    std::fs::create_dir_all(pkg.join("data")).unwrap();
    std::fs::rename(pkg.join("weights.bin"), pkg.join("data/w.bin")).unwrap();
    symlink("data/w.bin", pkg.join("weights.bin")).unwrap();
    let files = check_package(&pkg).unwrap();
    assert_eq!(files.external_data, vec![root.join("data/w.bin")]);
    digest_path(&pkg).unwrap();
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn mlmodel_paths_that_leave_the_package_are_refused() {
    let base = scratch("mlmodel");
    let pkg = good_package(&base);
    std::fs::write(base.join("x.onnx"), onnx_with_external("weights.bin")).unwrap();
    std::fs::create_dir_all(pkg.join("sub")).unwrap();
    let outside = base.join("x.onnx").canonicalize().unwrap();
    with_data(&pkg, outside.to_str().unwrap());
    let msg = refused(&pkg, "flavors.onnx.data");
    assert!(
        msg.contains("absolute path") && msg.contains("MLmodel"),
        "{msg}"
    );
    with_data(&pkg, "../x.onnx");
    refused(&pkg, "climbs out with '..'");
    with_data(&pkg, "sub/../../x.onnx");
    refused(&pkg, "climbs out with '..'");
    with_data(&pkg, "missing.onnx");
    refused(&pkg, "not in the package");
    // python_function's data and env are checked too.
    std::fs::write(
        pkg.join("MLmodel"),
        MLMODEL.replace("conda: conda.yaml", "conda: /etc/passwd"),
    )
    .unwrap();
    refused(
        &pkg,
        "flavors.python_function.env.conda '/etc/passwd' is an absolute path",
    );
    std::fs::write(
        pkg.join("MLmodel"),
        format!("{MLMODEL}saved_input_example_info:\n  artifact_path: ../secret.json\n"),
    )
    .unwrap();
    refused(&pkg, "saved_input_example_info.artifact_path");
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn symlinks_that_leave_the_package_are_refused_by_check_and_digest() {
    let base = scratch("links");
    let pkg = good_package(&base);
    std::fs::write(base.join("x.onnx"), onnx_with_external("weights.bin")).unwrap();
    std::fs::create_dir_all(base.join("outdir")).unwrap();
    std::fs::write(base.join("outdir/m.onnx"), b"").unwrap();

    // A symlinked file leaving the package.
    std::fs::remove_file(pkg.join("model.onnx")).unwrap();
    symlink(base.join("x.onnx"), pkg.join("model.onnx")).unwrap();
    refused(&pkg, "outside the package directory");
    let e = digest_path(&pkg).unwrap_err().to_string();
    assert!(e.contains("outside the package directory"), "{e}");
    std::fs::remove_file(pkg.join("model.onnx")).unwrap();
    std::fs::write(pkg.join("model.onnx"), onnx_with_external("weights.bin")).unwrap();
    check_package(&pkg).unwrap();

    // A symlinked directory leaving the package (named or not).
    symlink(base.join("outdir"), pkg.join("linked")).unwrap();
    refused(&pkg, "symlink linked");
    assert!(digest_path(&pkg).is_err());
    with_data(&pkg, "linked/m.onnx");
    refused(&pkg, "symlink linked");
    std::fs::remove_file(pkg.join("linked")).unwrap();
    with_data(&pkg, "model.onnx");

    // A symlinked directory inside the package is refused too (see the crate docs).
    std::fs::create_dir_all(pkg.join("d")).unwrap();
    symlink("d", pkg.join("alias")).unwrap();
    refused(&pkg, "is not a regular file");
    std::fs::remove_file(pkg.join("alias")).unwrap();

    // A dangling symlink.
    symlink("nowhere", pkg.join("dangling")).unwrap();
    refused(&pkg, "does not resolve");
    std::fs::remove_file(pkg.join("dangling")).unwrap();
    check_package(&pkg).unwrap();
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn external_data_locations_that_leave_the_package_are_refused() {
    let base = scratch("external");
    let pkg = good_package(&base);
    std::fs::write(base.join("secret.bin"), [9u8; 16]).unwrap();
    let secret = base.join("secret.bin").canonicalize().unwrap();
    for (loc, want) in [
        (secret.to_str().unwrap(), "absolute path"),
        ("../secret.bin", "climbs out with '..'"),
        ("data/../../secret.bin", "climbs out with '..'"),
        ("missing.bin", "not in the package"),
        ("*/_ORT_MEM_ADDR_/*", "not in the package"),
        ("", "empty path"),
    ] {
        std::fs::write(pkg.join("model.onnx"), onnx_with_external(loc)).unwrap();
        let msg = refused(&pkg, want);
        assert!(msg.contains("external data location"), "{msg}");
    }
    // A symlink leaving the package: refused whether the location or the tree names it.
    symlink(&secret, pkg.join("link.bin")).unwrap();
    std::fs::write(pkg.join("model.onnx"), onnx_with_external("link.bin")).unwrap();
    refused(&pkg, "outside the package directory");
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_bare_onnx_file_may_not_use_external_data_and_garbage_is_refused() {
    let base = scratch("bare");
    std::fs::write(base.join("w.bin"), [0u8; 4]).unwrap();
    std::fs::write(base.join("m.onnx"), onnx_with_external("w.bin")).unwrap();
    refused(&base.join("m.onnx"), "single .onnx file");
    std::fs::write(
        base.join("m.onnx"),
        [int_field(1, 8), field(7, b"")].concat(),
    )
    .unwrap();
    assert_eq!(
        check_package(&base.join("m.onnx")).unwrap().onnx,
        Some(base.join("m.onnx").canonicalize().unwrap())
    );
    // Bytes that are no protobuf name nothing: accepted, and reported unreadable.
    std::fs::write(base.join("bad.onnx"), b"not really onnx").unwrap();
    let files = check_package(&base.join("bad.onnx")).unwrap();
    assert_eq!(files.unreadable.len(), 1);
    assert!(
        files.unreadable[0]
            .1
            .contains("not a well-formed ONNX model")
    );
    refused(&base.join("nope"), "does not exist");
    // A directory without MLmodel: every .onnx file in it is checked.
    let dir = base.join("plain");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/m.onnx"), onnx_with_external("../../w.bin")).unwrap();
    refused(&dir, "climbs out");
    std::fs::remove_dir_all(&base).unwrap();
}
