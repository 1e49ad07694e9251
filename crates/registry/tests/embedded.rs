//! The embedded registry against real SQLite files and real model packages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hoist_registry::embedded::{ChangeKind, EmbeddedRegistry, FailAt, FailPoint};
use hoist_registry::{Error, ModelRef, Registry};

/// A directory removed when the test ends (kept if it fails).
struct Scratch(hoist_testkit::Scratch);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch(hoist_testkit::Scratch::new(&format!("embedded-{name}")))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn registry(&self) -> EmbeddedRegistry {
        EmbeddedRegistry::open(self.0.join("home")).unwrap()
    }

    /// A copy of an example model with one extra file, so each `i` has its own digest.
    fn variant(&self, model: &str, i: usize) -> PathBuf {
        let dst = self.0.join(format!("pkg-{model}-{i}"));
        copy_dir(&example(model), &dst);
        std::fs::write(dst.join("variant.txt"), i.to_string()).unwrap();
        dst
    }
}

fn example(model: &str) -> PathBuf {
    hoist_testkit::example_model(model)
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

fn no_tags() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn r(s: &str) -> ModelRef {
    ModelRef::parse(s).unwrap()
}

#[test]
fn versions_count_up_and_resolve_by_number_alias_and_latest() {
    let s = Scratch::new("basic");
    let reg = s.registry();
    let tags = BTreeMap::from([("team".to_string(), "risk".to_string())]);
    let v1 = reg
        .register(
            example("breast_cancer_lr"),
            "cancer",
            &tags,
            Some("champion"),
        )
        .unwrap();
    let v2 = reg
        .register(example("breast_cancer_gbt"), "cancer", &no_tags(), None)
        .unwrap();
    assert_eq!((v1.version.as_str(), v2.version.as_str()), ("1", "2"));
    assert_eq!(
        v1.digest.as_deref().unwrap(),
        hoist_types::digest_path(&example("breast_cancer_lr")).unwrap()
    );
    assert_eq!(v1.tags, tags);
    assert_eq!(v1.aliases, ["champion"]);
    assert_eq!(v1.stage, None);

    assert_eq!(reg.resolve(&r("cancer")).unwrap().version, "2");
    assert_eq!(reg.resolve(&r("cancer/1")).unwrap(), v1);
    assert_eq!(reg.resolve(&r("cancer@champion")).unwrap().version, "1");
    assert_eq!(
        reg.resolve(&r("models:/cancer@champion")).unwrap().version,
        "1"
    );

    let versions: Vec<String> = reg
        .list_versions("cancer")
        .unwrap()
        .into_iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, ["2", "1"], "newest first");
    let models = reg.list_models().unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].latest_version.as_deref(), Some("2"));
    assert_eq!(models[0].aliases["champion"], "1");

    // Another process (a fresh handle on the same home) sees the same registry.
    let again = EmbeddedRegistry::open(s.path().join("home")).unwrap();
    assert_eq!(again.get_version("cancer", "2").unwrap(), v2);
    assert_eq!(again.id(), reg.id());
    assert!(reg.id().starts_with("embedded:"));
}

#[test]
fn registering_the_latest_files_again_returns_that_version() {
    let s = Scratch::new("idem");
    let reg = s.registry();
    let first = reg
        .register_detailed(example("breast_cancer_lr"), "m", &no_tags(), None)
        .unwrap();
    assert!(first.created);
    let tags = BTreeMap::from([("k".to_string(), "v".to_string())]);
    let again = reg
        .register_detailed(example("breast_cancer_lr"), "m", &tags, Some("champion"))
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.version.version, "1");
    assert_eq!(again.version.tags, tags, "tags still applied");
    assert_eq!(again.version.aliases, ["champion"], "alias still applied");
    assert_eq!(reg.list_versions("m").unwrap().len(), 1);

    // Files of an older version make a new version (rolling forward to old files).
    reg.register(example("breast_cancer_rf"), "m", &no_tags(), None)
        .unwrap();
    let v3 = reg
        .register(example("breast_cancer_lr"), "m", &no_tags(), None)
        .unwrap();
    assert_eq!(v3.version, "3");
    assert_eq!(v3.digest, first.version.digest);
}

#[test]
fn an_alias_moves_and_each_move_is_one_change() {
    let s = Scratch::new("alias");
    let reg = s.registry();
    for m in ["breast_cancer_lr", "breast_cancer_gbt"] {
        reg.register(example(m), "m", &no_tags(), None).unwrap();
    }
    let start = reg.last_change_seq().unwrap();
    reg.set_alias("m", "champion", "1").unwrap();
    reg.set_alias("m", "champion", "1").unwrap(); // no move: no change
    reg.set_alias("m", "champion", "2").unwrap();
    assert_eq!(reg.resolve(&r("m@champion")).unwrap().version, "2");
    assert!(reg.get_version("m", "1").unwrap().aliases.is_empty());
    reg.delete_alias("m", "champion").unwrap();
    assert!(matches!(
        reg.resolve(&r("m@champion")),
        Err(Error::AliasNotFound { .. })
    ));

    let changes: Vec<(String, ChangeKind)> = reg
        .changes_since(start)
        .unwrap()
        .into_iter()
        .map(|c| (c.version, c.kind))
        .collect();
    let alias = |a: &str| a.to_string();
    assert_eq!(
        changes,
        [
            (
                "1".into(),
                ChangeKind::AliasSet {
                    alias: alias("champion")
                }
            ),
            (
                "2".into(),
                ChangeKind::AliasSet {
                    alias: alias("champion")
                }
            ),
            (
                "2".into(),
                ChangeKind::AliasDeleted {
                    alias: alias("champion")
                }
            ),
        ]
    );
}

#[test]
fn tags_are_set_overwritten_and_deleted_with_changes_logged() {
    let s = Scratch::new("tags");
    let reg = s.registry();
    reg.register(example("digits_mlp"), "digits", &no_tags(), None)
        .unwrap();
    reg.set_tag("digits", "1", "hoist.staging", "running")
        .unwrap();
    reg.set_tag("digits", "1", "hoist.staging", "passed")
        .unwrap();
    assert_eq!(
        reg.get_version("digits", "1").unwrap().tags["hoist.staging"],
        "passed"
    );
    reg.delete_tag("digits", "1", "hoist.staging").unwrap();
    reg.delete_tag("digits", "1", "hoist.staging").unwrap(); // already gone: fine
    assert!(reg.get_version("digits", "1").unwrap().tags.is_empty());

    let kinds: Vec<ChangeKind> = reg
        .changes_since(0)
        .unwrap()
        .into_iter()
        .map(|c| c.kind)
        .collect();
    let key = || "hoist.staging".to_string();
    assert_eq!(
        kinds,
        [
            ChangeKind::VersionCreated,
            ChangeKind::TagSet { key: key() },
            ChangeKind::TagSet { key: key() },
            ChangeKind::TagDeleted { key: key() },
        ]
    );
    let seqs: Vec<i64> = reg
        .changes_since(0)
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(reg.last_change_seq().unwrap(), *seqs.last().unwrap());
}

#[test]
fn stages_select_the_newest_version_in_them() {
    let s = Scratch::new("stages");
    let reg = s.registry();
    for m in ["breast_cancer_lr", "breast_cancer_gbt", "breast_cancer_rf"] {
        reg.register(example(m), "m", &no_tags(), None).unwrap();
    }
    reg.set_stage("m", "1", Some("production")).unwrap();
    reg.set_stage("m", "2", Some("Production")).unwrap();
    assert_eq!(reg.resolve(&r("m/Production")).unwrap().version, "2");
    assert_eq!(
        reg.get_version("m", "2").unwrap().stage.as_deref(),
        Some("Production")
    );
    assert_eq!(reg.resolve(&r("m/None")).unwrap().version, "3");
    assert!(matches!(
        reg.resolve(&r("m/Staging")),
        Err(Error::StageEmpty { .. })
    ));
    assert!(matches!(reg.resolve(&r("m/Prod")), Err(Error::Invalid(_))));
    let last = reg.changes_since(0).unwrap().pop().unwrap();
    assert_eq!(
        last.kind,
        ChangeKind::StageSet {
            stage: Some("Production".into())
        }
    );
}

#[test]
fn unknown_names_give_errors_that_say_what_is_missing() {
    let s = Scratch::new("unknown");
    let reg = s.registry();
    reg.register(example("breast_cancer_lr"), "m", &no_tags(), None)
        .unwrap();
    let msg = |e: Error| e.to_string();

    let e = reg.resolve(&r("nope@champion")).unwrap_err();
    assert!(matches!(e, Error::ModelNotFound(ref n) if n == "nope"));
    assert_eq!(msg(e), "model 'nope' not found");

    let e = reg.resolve(&r("m@champion")).unwrap_err();
    assert!(matches!(e, Error::AliasNotFound { .. }));
    assert_eq!(msg(e), "model 'm' has no alias 'champion'");

    let e = reg.get_version("m", "7").unwrap_err();
    assert_eq!(msg(e), "model 'm' has no version 7");
    assert!(matches!(
        reg.get_version("m", "x"),
        Err(Error::VersionNotFound { .. })
    ));
    assert!(matches!(
        reg.list_versions("nope"),
        Err(Error::ModelNotFound(_))
    ));
    assert!(matches!(
        reg.set_alias("m", "champion", "9"),
        Err(Error::VersionNotFound { .. })
    ));
    assert!(matches!(
        reg.delete_alias("m", "champion"),
        Err(Error::AliasNotFound { .. })
    ));
    assert!(matches!(
        reg.set_tag("nope", "1", "k", "v"),
        Err(Error::ModelNotFound(_))
    ));
    assert!(matches!(
        reg.set_alias("m", "latest", "1"),
        Err(Error::Invalid(_))
    ));

    let e = reg
        .register(s.path().join("missing"), "m", &no_tags(), None)
        .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)));
    assert!(msg(e).contains("does not exist"));
    assert!(matches!(
        reg.register(example("breast_cancer_lr"), "a/b", &no_tags(), None),
        Err(Error::Invalid(_))
    ));
    // Failed calls recorded nothing.
    assert_eq!(reg.changes_since(0).unwrap().len(), 1);
}

#[test]
fn eight_threads_registering_at_once_all_get_distinct_versions() {
    let s = Scratch::new("threads");
    let home = s.path().join("home");
    let pkgs: Vec<PathBuf> = (0..8).map(|i| s.variant("breast_cancer_lr", i)).collect();
    let shared = Arc::new(EmbeddedRegistry::open(&home).unwrap());
    let versions: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = pkgs
            .iter()
            .enumerate()
            .map(|(i, pkg)| {
                let shared = Arc::clone(&shared);
                let home = home.clone();
                scope.spawn(move || {
                    // Half share one handle, half open their own (as processes would).
                    let own;
                    let reg: &EmbeddedRegistry = if i % 2 == 0 {
                        &shared
                    } else {
                        own = EmbeddedRegistry::open(&home).unwrap();
                        &own
                    };
                    reg.register(pkg, "m", &no_tags(), None).unwrap().version
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut numbers: Vec<u32> = versions.iter().map(|v| v.parse().unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, (1..=8).collect::<Vec<_>>());
    let listed = shared.list_versions("m").unwrap();
    assert_eq!(listed.len(), 8);
    // The change log is in commit order: a poller sees versions 1..8 in order.
    let created: Vec<String> = shared
        .changes_since(0)
        .unwrap()
        .into_iter()
        .filter(|c| c.kind == ChangeKind::VersionCreated)
        .map(|c| c.version)
        .collect();
    assert_eq!(created, (1..=8).map(|v| v.to_string()).collect::<Vec<_>>());
    // Each version holds the files it was registered with.
    for v in &listed {
        let f = shared.fetch(v).unwrap();
        let i = std::fs::read_to_string(f.dir.join("variant.txt")).unwrap();
        assert_eq!(
            v.digest.as_deref().unwrap(),
            hoist_types::digest_path(&pkgs[i.parse::<usize>().unwrap()]).unwrap()
        );
    }
}

#[test]
fn eight_threads_registering_the_same_files_make_one_version() {
    let s = Scratch::new("same");
    let home = s.path().join("home");
    EmbeddedRegistry::open(&home).unwrap();
    let created: Vec<(String, bool)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let home = home.clone();
                scope.spawn(move || {
                    let reg = EmbeddedRegistry::open(&home).unwrap();
                    let r = reg
                        .register_detailed(example("digits_mlp"), "m", &no_tags(), None)
                        .unwrap();
                    (r.version.version, r.created)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(created.iter().all(|(v, _)| v == "1"), "{created:?}");
    assert_eq!(created.iter().filter(|(_, c)| *c).count(), 1, "{created:?}");
    let reg = EmbeddedRegistry::open(&home).unwrap();
    assert_eq!(reg.list_versions("m").unwrap().len(), 1);
    reg.fetch(&reg.get_version("m", "1").unwrap()).unwrap();
}

#[test]
fn fetch_returns_verified_files_and_detects_corruption() {
    let s = Scratch::new("corrupt");
    let reg = s.registry();
    let v = reg
        .register(example("breast_cancer_lr"), "m", &no_tags(), None)
        .unwrap();
    let f = reg.fetch(&v).unwrap();
    assert_eq!(
        std::fs::read(f.dir.join("model.onnx")).unwrap(),
        std::fs::read(example("breast_cancer_lr/model.onnx")).unwrap()
    );
    assert_eq!(Some(f.digest.clone()), v.digest);

    // Flip one byte of the stored model.
    let stored = f.dir.join("model.onnx");
    let mut perm = std::fs::metadata(&stored).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&stored, perm).unwrap();
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();

    let e = reg.fetch(&v).unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains("model 'm' version 1"), "{e}");
    // Still corrupt: nothing was silently repaired.
    assert!(matches!(reg.fetch(&v), Err(Error::DigestMismatch { .. })));
    assert_eq!(std::fs::read(&stored).unwrap(), bytes);

    // A caller whose recorded digest differs from the registry's gets an error too.
    let mut other = reg.get_version("m", "1").unwrap();
    other.digest = Some(format!("sha256:{}", "0".repeat(64)));
    assert!(matches!(
        reg.fetch(&other),
        Err(Error::DigestMismatch { .. })
    ));
}

#[test]
fn a_bare_onnx_file_registers_and_fetches() {
    let s = Scratch::new("file");
    let reg = s.registry();
    let file = example("breast_cancer_rf/model.onnx");
    let v = reg.register(&file, "rf", &no_tags(), None).unwrap();
    assert_eq!(
        v.digest.as_deref().unwrap(),
        hoist_types::digest_path(&file).unwrap()
    );
    let f = reg.fetch(&v).unwrap();
    let names: Vec<_> = std::fs::read_dir(&f.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["model.onnx"]);
}

#[test]
fn an_interrupted_registration_leaves_no_version() {
    let s = Scratch::new("killed");
    let home = s.path().join("home");
    for at in [FailAt::AfterArtifacts, FailAt::BeforeCommit] {
        let failing = EmbeddedRegistry::open(&home)
            .unwrap()
            .with_fail_point(Some(FailPoint { at, abort: false }));
        let e = failing
            .register(
                example("breast_cancer_lr"),
                "m",
                &no_tags(),
                Some("champion"),
            )
            .unwrap_err();
        assert!(e.to_string().contains("injected failure"), "{e}");
        let reg = EmbeddedRegistry::open(&home).unwrap();
        assert!(matches!(
            reg.list_versions("m"),
            Err(Error::ModelNotFound(_))
        ));
        assert!(reg.list_models().unwrap().is_empty());
        assert!(reg.changes_since(0).unwrap().is_empty());
    }
    // The artifacts are in the store but no version names them; the next
    // registration reuses them and gets version 1.
    let reg = EmbeddedRegistry::open(&home).unwrap();
    let v = reg
        .register(
            example("breast_cancer_lr"),
            "m",
            &no_tags(),
            Some("champion"),
        )
        .unwrap();
    assert_eq!(v.version, "1");
    assert_eq!(reg.resolve(&r("m@champion")).unwrap().version, "1");
    assert_eq!(reg.changes_since(0).unwrap().len(), 2);
}
