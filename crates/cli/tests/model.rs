//! `hoist model …` run as a real process against a temporary `HOIST_HOME`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// A temporary registry home and scratch space, removed when the test ends.
struct Env {
    dir: hoist_testkit::Scratch,
}

impl Env {
    fn new(name: &str) -> Env {
        Env {
            dir: hoist_testkit::Scratch::new(&format!("cli-{name}")),
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// `hoist ARGS` with `HOIST_HOME` set to this test's home.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hoist"));
        // Run in the scratch directory, so that anything a process leaves in its
        // working directory (a core file from the abort test) goes away with it.
        c.args(args)
            .current_dir(&self.dir)
            .env("HOIST_HOME", self.home())
            .env_remove("HOIST_TEST_FAIL_AT")
            .env_remove("MLFLOW_TRACKING_URI")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs a command that must succeed and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "hoist {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    /// A copy of an example model with one extra file, so each `i` has its own digest.
    fn variant(&self, model: &str, i: usize) -> PathBuf {
        let dst = self.dir.join(format!("pkg-{model}-{i}"));
        copy_dir(&example(model), &dst);
        std::fs::write(dst.join("variant.txt"), i.to_string()).unwrap();
        dst
    }
}

fn example(model: &str) -> PathBuf {
    hoist_testkit::example_model(model)
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn two_versions_an_alias_and_show_by_alias_as_json() {
    let env = Env::new("basic");
    let lr = example("breast_cancer_lr");
    let out = env.ok(&[
        "model",
        "register",
        path_str(&lr),
        "--name",
        "cancer",
        "--tag",
        "team=risk",
    ]);
    assert!(
        out.starts_with("registered cancer version 1 (sha256:"),
        "{out}"
    );
    let v2 = env.json(&[
        "model",
        "register",
        path_str(&example("breast_cancer_gbt")),
        "--name",
        "cancer",
        "--alias",
        "candidate",
    ]);
    assert_eq!(v2["created"], true);
    assert_eq!(v2["version"]["version"], "2");

    // The latest version's files again: nothing new.
    let gbt = example("breast_cancer_gbt");
    let again = env.ok(&["model", "register", path_str(&gbt), "--name", "cancer"]);
    assert!(
        again.contains("cancer version 2 already has these files"),
        "{again}"
    );
    let again = env.json(&["model", "register", path_str(&gbt), "--name", "cancer"]);
    assert_eq!(again["created"], false);
    assert_eq!(again["version"]["version"], "2");

    let out = env.ok(&["model", "alias", "cancer", "1", "champion"]);
    assert_eq!(out, "cancer@champion -> version 1\n");

    let shown = env.json(&["model", "show", "cancer@champion"]);
    assert_eq!(shown["name"], "cancer");
    assert_eq!(shown["version"], "1");
    assert_eq!(shown["tags"]["team"], "risk");
    assert_eq!(shown["aliases"], serde_json::json!(["champion"]));
    assert_eq!(shown["status"], "READY");
    assert_eq!(
        shown["digest"],
        hoist_types::digest_path(&lr).unwrap().as_str()
    );
    assert_eq!(env.json(&["model", "show", "cancer"])["version"], "2");
    assert_eq!(env.json(&["model", "show", "cancer/2"])["version"], "2");

    let versions = env.json(&["model", "versions", "cancer"]);
    let numbers: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["2", "1"]);

    let models = env.json(&["model", "list"]);
    assert_eq!(models[0]["name"], "cancer");
    assert_eq!(models[0]["latest_version"], "2");
    assert_eq!(models[0]["aliases"]["champion"], "1");
    assert_eq!(models[0]["aliases"]["candidate"], "2");

    // The human tables name what matters.
    let table = env.ok(&["model", "list"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("candidate=2, champion=1"), "{table}");
    let table = env.ok(&["model", "versions", "cancer"]);
    assert!(
        table.contains("team=risk") && table.contains("champion"),
        "{table}"
    );
    let show = env.ok(&["model", "show", "cancer@champion"]);
    assert!(
        show.contains("tag team")
            && show
                .lines()
                .any(|l| l.starts_with("version ") && l.ends_with(" 1")),
        "{show}"
    );

    // Alias moves, then goes away.
    env.ok(&["model", "alias", "cancer", "2", "champion"]);
    assert_eq!(
        env.json(&["model", "show", "cancer@champion"])["version"],
        "2"
    );
    env.ok(&["model", "unalias", "cancer", "champion"]);
    assert_eq!(
        env.run(&["model", "show", "cancer@champion"]).status.code(),
        Some(3)
    );
}

#[test]
fn fetch_copies_exactly_the_verified_files() {
    let env = Env::new("fetch");
    let src = example("image_cnn");
    env.ok(&[
        "model",
        "register",
        path_str(&src),
        "--name",
        "cnn",
        "--alias",
        "champion",
    ]);
    let to = env.dir.join("out/cnn");
    let out = env.ok(&["model", "fetch", "cnn@champion", "--to", path_str(&to)]);
    assert!(out.starts_with("fetched cnn version 1 (sha256:"), "{out}");
    assert_eq!(
        hoist_types::digest_path(&to).unwrap(),
        hoist_types::digest_path(&src).unwrap()
    );
    assert!(to.join("images").is_dir(), "subdirectories come along");
    // Fetched copies are the user's: writable, unlike the store's.
    assert!(
        !std::fs::metadata(to.join("model.onnx"))
            .unwrap()
            .permissions()
            .readonly()
    );

    // A non-empty destination is refused and left alone; an empty one is filled.
    let again = env.run(&["model", "fetch", "cnn", "--to", path_str(&to)]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("not an empty directory"),
        "{}",
        stderr(&again)
    );
    let empty = env.dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let j = env.json(&["model", "fetch", "cnn/1", "--to", path_str(&empty)]);
    assert_eq!(
        j["digest"],
        hoist_types::digest_path(&src).unwrap().as_str()
    );
    assert_eq!(
        hoist_types::digest_path(&empty).unwrap(),
        hoist_types::digest_path(&src).unwrap()
    );
}

#[test]
fn a_corrupted_artifact_fails_fetch_with_exit_code_4() {
    let env = Env::new("corrupt");
    let j = env.json(&[
        "model",
        "register",
        path_str(&example("breast_cancer_lr")),
        "--name",
        "m",
    ]);
    let hex = j["version"]["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap()
        .to_string();
    let stored = env
        .home()
        .join("artifacts/sha256")
        .join(hex)
        .join("model.onnx");
    let mut perm = std::fs::metadata(&stored).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&stored, perm).unwrap();
    std::fs::write(&stored, b"not the model").unwrap();

    let to = env.dir.join("out");
    let out = env.run(&["model", "fetch", "m", "--to", path_str(&to)]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("digest mismatch for model 'm' version 1"),
        "{}",
        stderr(&out)
    );
    assert!(!to.exists(), "nothing fetched");
}

#[test]
fn unknown_models_and_aliases_exit_3_and_say_what_is_missing() {
    let env = Env::new("unknown");
    let out = env.run(&["model", "show", "ghost@champion"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stderr(&out), "error: model 'ghost' not found\n");

    env.ok(&[
        "model",
        "register",
        path_str(&example("breast_cancer_lr")),
        "--name",
        "m",
    ]);
    let out = env.run(&["model", "show", "m@champion", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let err: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"]["code"], "alias_not_found");
    assert_eq!(err["error"]["message"], "model 'm' has no alias 'champion'");
    assert!(out.stdout.is_empty());

    let out = env.run(&["model", "alias", "m", "5", "champion"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stderr(&out), "error: model 'm' has no version 5\n");
    let out = env.run(&["model", "versions", "ghost"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let env = Env::new("bad");
    let missing = env.dir.join("no-such-model");
    let out = env.run(&["model", "register", path_str(&missing), "--name", "m"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no-such-model does not exist"),
        "{}",
        stderr(&out)
    );

    let lr = example("breast_cancer_lr");
    let out = env.run(&[
        "model",
        "register",
        path_str(&lr),
        "--name",
        "m",
        "--tag",
        "novalue",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("'novalue' is not KEY=VALUE"),
        "{}",
        stderr(&out)
    );

    let out = env.run(&["model", "register", path_str(&lr), "--name", "a@b"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid model name 'a@b'"),
        "{}",
        stderr(&out)
    );

    let out = env.run(&["model", "show", "m@"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid model reference"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unreachable_mlflow_registry_is_named_in_the_error() {
    let env = Env::new("mlflow");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    for args in [
        vec!["model", "list", "--registry", url.as_str()],
        vec!["model", "show", "m@champion", "--registry", url.as_str()],
        vec!["watch", "--registry", url.as_str()],
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&url) && err.contains("unreachable"),
            "{args:?}: {err}"
        );
    }
    // MLFLOW_TRACKING_URI is the default registry; --json errors carry a code.
    let out = env
        .cmd(&["model", "versions", "m", "--json"])
        .env("MLFLOW_TRACKING_URI", &url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stderr(&out)).unwrap();
    assert_eq!(v["error"]["code"], "registry_unreachable");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(&url),
        "{v}"
    );
    // `--registry embedded` wins over the variable.
    let out = env
        .cmd(&["model", "list", "--registry", "embedded", "--json"])
        .env("MLFLOW_TRACKING_URI", &url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );
}

#[test]
fn mlflow_stages_are_refused_and_an_unreachable_mlflow_is_named() {
    let env = Env::new("mlflow-refuse");
    let url = "http://127.0.0.1:9";
    let lr = example("breast_cancer_lr");
    // Registering into MLflow works (tests/mlflow.rs); with no server there, it says where.
    let out = env.run(&[
        "model",
        "register",
        path_str(&lr),
        "--name",
        "m",
        "--registry",
        url,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(url) && stderr(&out).contains("unreachable"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["model", "stage", "m", "1", "Production", "--registry", url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("alias"), "{}", stderr(&out));
    let out = env.run(&["model", "list", "--registry", "sqlite:///mlflow.db"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("MLflow tracking server URL"),
        "{}",
        stderr(&out)
    );
    assert!(!env.home().exists(), "nothing was created");
}

#[test]
fn home_comes_from_the_flag_before_the_environment() {
    let env = Env::new("homeflag");
    let other = env.dir.join("other-home");
    env.ok(&[
        "--home",
        path_str(&other),
        "model",
        "register",
        path_str(&example("breast_cancer_lr")),
        "--name",
        "m",
    ]);
    assert!(other.join("registry.db").is_file());
    assert_eq!(env.json(&["model", "list"]), serde_json::json!([]));
    assert_eq!(
        env.ok(&["model", "list", "--home", path_str(&other)])
            .lines()
            .count(),
        2
    );
}

#[test]
fn processes_registering_at_once_all_succeed_with_distinct_versions() {
    let env = Env::new("procs");
    // A fresh home: the processes also race to create the database.
    let pkgs: Vec<PathBuf> = (0..4).map(|i| env.variant("breast_cancer_lr", i)).collect();
    let children: Vec<_> = pkgs
        .iter()
        .map(|p| {
            env.cmd(&["model", "register", path_str(p), "--name", "m", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut versions: Vec<u32> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
            let j: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(j["created"], true);
            j["version"]["version"].as_str().unwrap().parse().unwrap()
        })
        .collect();
    versions.sort();
    assert_eq!(versions, [1, 2, 3, 4]);
    assert_eq!(
        env.json(&["model", "versions", "m"])
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn a_registration_killed_before_commit_leaves_no_version() {
    let env = Env::new("killed");
    let lr = example("breast_cancer_lr");
    let out = env
        .cmd(&[
            "model",
            "register",
            path_str(&lr),
            "--name",
            "m",
            "--alias",
            "champion",
        ])
        .env("HOIST_TEST_FAIL_AT", "before_commit:abort")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        out.status.code(),
        None,
        "killed by a signal: {}",
        stderr(&out)
    );

    let out = env.run(&["model", "versions", "m"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "no half-registered model is visible"
    );
    assert_eq!(env.json(&["model", "list"]), serde_json::json!([]));

    let j = env.json(&[
        "model",
        "register",
        path_str(&lr),
        "--name",
        "m",
        "--alias",
        "champion",
    ]);
    assert_eq!(j["version"]["version"], "1");
    assert_eq!(env.json(&["model", "show", "m@champion"])["version"], "1");
}

#[test]
fn tags_and_stages_are_set_from_the_command_line() {
    let env = Env::new("tagstage");
    for m in ["breast_cancer_lr", "breast_cancer_gbt"] {
        env.ok(&["model", "register", path_str(&example(m)), "--name", "m"]);
    }
    let out = env.ok(&[
        "model",
        "tag",
        "m",
        "1",
        "hoist.staging=passed",
        "owner=ana",
    ]);
    assert_eq!(out, "m/1 tags: hoist.staging=passed, owner=ana\n");
    let j = env.json(&["model", "tag", "m", "1", "--delete", "owner"]);
    assert_eq!(j["tags"], serde_json::json!({ "hoist.staging": "passed" }));
    let out = env.run(&["model", "tag", "m", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    assert_eq!(
        env.ok(&["model", "stage", "m", "1", "production"]),
        "m/1 -> stage Production\n"
    );
    assert_eq!(env.json(&["model", "show", "m/Production"])["version"], "1");
    let out = env.run(&["model", "show", "m/Staging"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr(&out),
        "error: model 'm' has no version in stage 'Staging'\n"
    );
    let out = env.run(&["model", "stage", "m", "1", "Prod"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown stage 'Prod'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_explains_every_command() {
    let env = Env::new("help");
    let top = env.ok(&["--help"]);
    assert!(top.contains("model") && top.contains("Exit codes"), "{top}");
    let model = env.ok(&["model", "--help"]);
    for (cmd, words) in [
        ("register", "Register a model package"),
        ("list", "List registered models"),
        ("versions", "List the versions"),
        ("show", "Show one version"),
        ("alias", "Point an alias"),
        ("unalias", "Remove an alias"),
        ("fetch", "verified against their digest"),
        ("tag", "Set or delete tags"),
        ("stage", "MLflow-style stage"),
    ] {
        assert!(
            model.contains(cmd) && model.contains(words),
            "{cmd}: {model}"
        );
    }
    let watch = env.ok(&["watch", "--help"]);
    for flag in [
        "--webhook-listen",
        "--webhook-secret-file",
        "--poll-interval",
        "--max-events",
        "--alias",
        "--model",
    ] {
        assert!(watch.contains(flag), "{flag}: {watch}");
    }
    let connect = env.ok(&["mlflow", "connect", "--help"]);
    assert!(
        connect.contains("--url") && connect.contains("model_version_alias.created"),
        "{connect}"
    );
    let register = env.ok(&["model", "register", "--help"]);
    assert!(
        register.contains("sha256") && register.contains("--tag <KEY=VALUE>"),
        "{register}"
    );
}
