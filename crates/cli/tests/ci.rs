//! `hoist ci init` and `--format markdown`, end to end.
//!
//! The generated GitHub workflow and Azure Pipelines file are checked by the real
//! tools: actionlint (tools/actionlint.sh builds it from its Go module) and
//! check-jsonschema with SchemaStore's published schemas (tools/check-jsonschema.sh);
//! tools/test.sh sets HOIST_ACTIONLINT and HOIST_CHECK_JSONSCHEMA. The Markdown job
//! summary is rendered from real releases of a real daemon: one promoted (gates and a
//! verdict on live traffic, its model image pushed to a real registry) and one rolled
//! back by its golden-set gate.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use hoist_testkit::Scratch;
use hoist_testkit::registry::Registry;

/// A validator's path from the environment; a clear failure when it is not set up.
fn tool(var: &str, script: &str) -> PathBuf {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{var} is not set: run `bash tools/test.sh`, or `export {var}=$(bash {script} | tail -n 1)`"
        )
    });
    assert!(p.is_file(), "{var}={} is not a file", p.display());
    p
}

fn actionlint(file: &Path) -> Output {
    Command::new(tool("HOIST_ACTIONLINT", "tools/actionlint.sh"))
        .args(["-no-color", "-shellcheck=", "-pyflakes="])
        .arg(file)
        .output()
        .unwrap()
}

fn schema_check(schema: &str, file: &Path) -> Output {
    // The Azure schema's patterns need Python's regex engine's leniency
    // (its default engine refuses one of them).
    Command::new(tool("HOIST_CHECK_JSONSCHEMA", "tools/check-jsonschema.sh"))
        .args(["--regex-variant", "nonunicode", "--builtin-schema", schema])
        .arg(file)
        .output()
        .unwrap()
}

fn passes(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} refused the file:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `hoist ci init ARGS` in `dir`.
fn ci_init(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hoist"))
        .current_dir(dir)
        .args(["ci", "init"])
        .args(args)
        .output()
        .unwrap()
}

const TOML: &str = r#"
[model]
name = "fraud"
trigger = { alias = "champion" }

[kubernetes]
image = "registry.example:5000/team/hoist@sha256:4946d1032eb89787b3bd503b4ec4ccb584ddf1d60b6a0df2e7655d600f1ee941"
"#;

#[test]
fn the_generated_files_pass_actionlint_and_the_published_schemas() {
    let dir = Scratch::new("ci-init");
    std::fs::write(dir.path().join("hoist.toml"), TOML).unwrap();
    let out = ok(&ci_init(dir.path(), &["github"]));
    assert!(out.contains("wrote .github/workflows/hoist.yml"), "{out}");
    assert!(out.contains("set trigger = \"manual\""), "{out}");
    let gh = dir.path().join(".github/workflows/hoist.yml");
    let text = std::fs::read_to_string(&gh).unwrap();
    // hoist.toml's model and alias; its image repository without the digest.
    assert!(text.contains("|| 'fraud@champion' }}"), "{text}");
    assert!(
        text.contains("IMAGE_REPOSITORY: 'registry.example:5000/team/hoist'"),
        "{text}"
    );
    for step in [
        "repository_dispatch:",
        "hoist image push \"$IMAGE_REPOSITORY\" --model \"$MODEL_VERSION\"",
        "hoist sign \"$MODEL_IMAGE\" --key \"$key\"",
        "hoist attest \"$MODEL_IMAGE\" --key \"$key\" --model \"$MODEL_VERSION\"",
        "COSIGN_PASSWORD: ${{ secrets.COSIGN_PASSWORD }}",
        "hoist deploy \"$MODEL_VERSION\" --wait --format markdown >> \"$GITHUB_STEP_SUMMARY\"",
    ] {
        assert!(text.contains(step), "missing {step:?}:\n{text}");
    }
    passes(&actionlint(&gh), "actionlint");
    passes(
        &schema_check("vendor.github-workflows", &gh),
        "the github-workflows schema",
    );

    let json = ok(&Command::new(env!("CARGO_BIN_EXE_hoist"))
        .current_dir(dir.path())
        .args(["--json", "ci", "init", "azure", "--branch", "release"])
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["path"], "azure-pipelines.yml");
    assert_eq!(v["model"], "fraud@champion");
    assert_eq!(v["repository"], "registry.example:5000/team/hoist");
    let az = dir.path().join("azure-pipelines.yml");
    let text = std::fs::read_to_string(&az).unwrap();
    assert!(text.contains("      - release\n"), "{text}");
    assert!(text.contains("##vso[task.uploadsummary]"), "{text}");
    passes(
        &schema_check("vendor.azure-pipelines", &az),
        "the azure-pipelines schema",
    );

    // Without hoist.toml: flags, else the CI variable for the repository.
    let bare = Scratch::new("ci-init-bare");
    ok(&ci_init(
        bare.path(),
        &["github", "--model", "churn/7", "--out", "wf/ci.yaml"],
    ));
    let text = std::fs::read_to_string(bare.path().join("wf/ci.yaml")).unwrap();
    assert!(text.contains("'churn/7'"), "{text}");
    assert!(
        text.contains("'${{ vars.HOIST_IMAGE_REPOSITORY }}'"),
        "{text}"
    );
    passes(&actionlint(&bare.path().join("wf/ci.yaml")), "actionlint");
    ok(&ci_init(bare.path(), &["azure", "--model", "churn/7"]));
    passes(
        &schema_check(
            "vendor.azure-pipelines",
            &bare.path().join("azure-pipelines.yml"),
        ),
        "the azure-pipelines schema",
    );

    // The validators do refuse a broken file (so their passes above mean something).
    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        text.replace("runs-on: ubuntu-latest", "runs-on: ["),
    )
    .unwrap();
    assert!(!actionlint(&broken).status.success());
    std::fs::write(&broken, text.replace("runs-on:", "run-on:")).unwrap();
    assert!(!actionlint(&broken).status.success());
    assert!(
        !schema_check("vendor.github-workflows", &broken)
            .status
            .success()
    );
}

#[test]
fn ci_init_refuses_to_overwrite_and_bad_values() {
    let dir = Scratch::new("ci-init-refuse");
    ok(&ci_init(dir.path(), &["github"]));
    let path = dir.path().join(".github/workflows/hoist.yml");
    std::fs::write(&path, "mine\n").unwrap();
    let o = ci_init(dir.path(), &["github"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("exists; --force overwrites it"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine\n");
    ok(&ci_init(dir.path(), &["github", "--force"]));
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("hoist deploy")
    );

    for (args, want) in [
        (
            vec!["github", "--out", "x.yml", "--branch", "a b"],
            "branch 'a b'",
        ),
        (vec!["github", "--out", "x.yml", "--model", "m/1'"], "model"),
        (vec!["gitlab"], "invalid value 'gitlab'"),
        (vec!["github", "--out", ".github"], "is a directory"),
    ] {
        let o = ci_init(dir.path(), &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[model]\nnme = 1\n").unwrap();
    let o = ci_init(dir.path(), &["azure", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn markdown_summaries_of_a_promoted_and_a_rolled_back_release() {
    let golden = repo().join("examples/data/breast_cancer_golden.csv");
    let config = format!(
        "{BASE}
[[gates]]
kind = \"golden-set\"
file = \"{}\"
min_accuracy = 0.9

[[environments]]
name = \"production\"
listen = \"127.0.0.1:0\"
steps = [{{ weight = 50, pause = \"2s\" }}]
",
        golden.display()
    );
    let d = with_v1("ci-markdown", &config);

    // v2's model image, pushed to a real registry: its reference lands on the version.
    let reg = Registry::start();
    register(&d.home, "breast_cancer_lr", None);
    let bin = common::stripped_bin(&d.home);
    let pushed = ok(&Command::new(env!("CARGO_BIN_EXE_hoist"))
        .arg("--home")
        .arg(&d.home)
        .args(["image", "push", &format!("{}/team/models", reg.addr)])
        .args(["--model", "m/2", "--bin-dir", bin.to_str().unwrap()])
        .env_remove("MLFLOW_TRACKING_URI")
        .env("DOCKER_CONFIG", d.home.join("no-docker-config"))
        .output()
        .unwrap());
    let image = pushed.lines().last().unwrap().to_string();
    assert!(image.contains("@sha256:"), "{pushed}");

    let traffic = Traffic::start(&d.env("production"), 2);
    let out = hoist(
        &d.home,
        &["deploy", "m/2", "--wait", "--format", "markdown"],
    );
    traffic.finish();
    let md = ok(&out);
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(
        progress.contains("release 2 v2"),
        "progress on stderr: {progress}"
    );
    let r = d.release(2);
    let digest = r["digest"].as_str().unwrap();
    assert!(
        md.starts_with("## hoist release 2: m v2 · ✅ succeeded\n"),
        "{md}"
    );
    for want in [
        "| **model** | m |".to_string(),
        "| **version** | 2 |".to_string(),
        format!("| **model digest** | `{digest}` |"),
        format!("| **image** | `{image}` |"),
        "| **outcome** | ✅ succeeded |".into(),
        "| **environments** | production |".into(),
        "### Gates".into(),
        "| production | golden-set | ✅ pass | accuracy 0.9".into(),
        "| production | smoke test | ✅ pass |".into(),
        "### Analysis".into(),
        "| production | 1 | ✅ pass |  | candidate ".into(),
        format!("| production | {} | canary | v2 |", d.env("production")),
    ] {
        assert!(md.contains(&want), "missing {want:?} in:\n{md}");
    }
    assert!(!md.contains("[ "), "no progress lines on stdout:\n{md}");
    let took = md
        .lines()
        .find_map(|l| l.strip_prefix("| **time taken** | "))
        .unwrap();
    let secs: f64 = took.trim_end_matches(" s |").parse().unwrap();
    assert!(secs > 0.0, "{took}");

    // history RELEASE renders the same summary; --json is unchanged by --format.
    let again = ok(&hoist(&d.home, &["history", "2", "--format", "markdown"]));
    assert_eq!(again, md);
    let o = hoist(&d.home, &["--json", "history", "2", "--format", "markdown"]);
    assert_eq!(o.status.code(), Some(2));
    let o = hoist(&d.home, &["history", "--format", "markdown"]);
    assert_eq!(o.status.code(), Some(2));

    // A version that fails the golden set: exit 5, and the summary says why.
    register(&d.home, "breast_cancer_shuffled", None);
    let out = hoist(
        &d.home,
        &["deploy", "m/3", "--wait", "--format", "markdown"],
    );
    assert_eq!(out.status.code(), Some(5));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.starts_with("## hoist release 3: m v3 · ❌ rolled back\n"),
        "{md}"
    );
    assert!(
        md.contains("| **reason** | gate golden-set: accuracy"),
        "{md}"
    );
    assert!(md.contains("| production | golden-set | ❌ fail |"), "{md}");
    assert!(
        md.contains("not recorded"),
        "no image was pushed for v3: {md}"
    );
    assert!(md.contains("No verdict on live traffic."), "{md}");
    assert!(md.contains("| production | "), "{md}");
}
