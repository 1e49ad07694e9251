//! hoist's MLflow adapter and triggers against a REAL MLflow tracking server.
//!
//! One server per test binary ([`hoist_testkit::mlflow`]: MLflow 3.17.2 from
//! `.venv-mlflow`, made by `tools/mlflow-venv.sh`, or the python named by
//! `HOIST_MLFLOW_PYTHON`) on 127.0.0.1 with a SQLite backend, shared by the tests below
//! and killed (its whole process group) when the test process exits. Each test works
//! on models of its own. Versions are registered with the real Python client
//! (`mlflow.onnx.log_model`), then read, resolved, fetched, tagged and aliased through
//! [`MlflowRegistry`]; a bare `.onnx` file is registered through
//! [`MlflowRegistry::register`]; a webhook created with the real client delivers to
//! hoist's receiver, and the poller and the de-duplicator see the same promotion.
//!
//! The same tests run against MLflow 2.x (`HOIST_MLFLOW_PYTHON` set to the python of
//! `.venv-mlflow2`, made by `tools/mlflow2-venv.sh`; tools/test.sh runs this binary
//! once per version): aliases, stages, tags, fetches and registration alike; 2.x has no
//! webhooks, so there the webhook tests check that hoist refuses to create one, naming
//! the server's version, and the triggers run on the poller alone.
//!
//! Without the venv these tests FAIL (they do not skip): run `bash tools/mlflow-venv.sh`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hoist_registry::mlflow::{DIGEST_TAG, MlflowRegistry};
use hoist_registry::watch::{PollConfig, PollerHandle, dedupe, spawn_poller};
use hoist_registry::webhook::{self, WebhookConfig};
use hoist_registry::{Error, Event, EventKind, ModelRef, Registry};
use hoist_testkit::{Scratch, example_model, mlflow, poll, unique_name, wait_for, wait_until};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const SECRET: &str = "hoist-e2e-secret";

fn onnx_path() -> PathBuf {
    example_model("breast_cancer_lr").join("model.onnx")
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A model of its own for one test: `count` versions registered with the Python client.
fn model(prefix: &str, count: usize) -> String {
    let name = unique_name(prefix);
    let t = Instant::now();
    let versions = mlflow().client().register(&name, &onnx_path(), count);
    let want: Vec<String> = (1..=count).map(|v| v.to_string()).collect();
    assert_eq!(versions, want);
    println!(
        "registered {count} versions of {name} with the python client in {:?}",
        t.elapsed()
    );
    name
}

/// Shared by the read-only tests: two versions, `champion` → 1, version 1 in
/// Production. Nothing changes it.
fn read_only_model() -> &'static str {
    static MODEL: OnceLock<String> = OnceLock::new();
    MODEL.get_or_init(|| {
        let name = model("hoist_e2e_breast_cancer", 2);
        let mut c = mlflow().client();
        c.set_alias(&name, "champion", "1");
        c.set_stage(&name, "1", "Production");
        name
    })
}

/// hoist's adapter on the shared server, caching fetched files under `cache`.
fn registry(cache: &Scratch) -> MlflowRegistry {
    MlflowRegistry::new(&mlflow().uri)
        .unwrap()
        .with_cache_dir(cache.join("cache"))
}

/// Tests share the server; the two that count every event of an alias after the
/// de-duplicator have it to themselves ([`alone`]), as the single test they come from
/// had.
static SERVER: RwLock<()> = RwLock::new(());

/// The server, shared with other tests.
fn shared() -> RwLockReadGuard<'static, ()> {
    SERVER.read().unwrap_or_else(|e| e.into_inner())
}

/// The server, with no other test running on it.
fn alone() -> RwLockWriteGuard<'static, ()> {
    SERVER.write().unwrap_or_else(|e| e.into_inner())
}

/// Either.
enum Turn {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

/// On a server without the webhooks API (MLflow 2.x), hoist refuses to create one at
/// once, with a message naming the server's version and what to do instead.
fn assert_webhooks_refused(hoist: &MlflowRegistry) {
    let err = hoist
        .create_webhook(
            "hoist_e2e_no_webhooks",
            "http://127.0.0.1:9/webhook",
            SECRET,
            &["model_version_tag.set"],
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("has no webhooks API")
            && err.contains(&mlflow().version)
            && err.contains("polling"),
        "{err}"
    );
}

/// True when the server has webhooks; else checks they are refused (see
/// [`assert_webhooks_refused`]) and says so, for the webhook tests to end there.
fn webhooks_or_refused() -> bool {
    if mlflow().has_webhooks() {
        return true;
    }
    let tmp = Scratch::new("mlflow-no-webhooks");
    assert_webhooks_refused(&registry(&tmp));
    println!(
        "MLflow {}: no webhooks API; hoist refuses to create one (checked)",
        mlflow().version
    );
    false
}

fn rest_get(path_and_query: &str) -> Value {
    let uri = &mlflow().uri;
    let r = reqwest::blocking::get(format!("{uri}/api/2.0/mlflow/{path_and_query}")).unwrap();
    assert!(r.status().is_success(), "{path_and_query}: {}", r.status());
    r.json().unwrap()
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[((s.len() - 1) as f64 * p).round() as usize]
}

// ---- list and read ----

#[test]
fn lists_a_model_with_its_aliases_and_latest_version() {
    let _server = shared();
    let model = read_only_model();
    let tmp = Scratch::new("mlflow-list");
    let hoist = registry(&tmp);
    assert_eq!(hoist.id(), mlflow().uri);
    let models = hoist.list_models().unwrap();
    let m = models
        .iter()
        .find(|m| m.name == model)
        .expect("model listed");
    assert_eq!(m.aliases, BTreeMap::from([("champion".into(), "1".into())]));
    assert_eq!(m.latest_version.as_deref(), Some("2"));
}

#[test]
fn lists_versions_newest_first_with_their_source() {
    let _server = shared();
    let model = read_only_model();
    let tmp = Scratch::new("mlflow-versions");
    let versions = registry(&tmp).list_versions(model).unwrap();
    let numbers: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(numbers, ["2", "1"], "newest first");
    assert!(versions.iter().all(|v| !v.source.is_empty()));
}

#[test]
fn reads_a_version_with_its_stage_aliases_and_run() {
    let _server = shared();
    let model = read_only_model();
    let tmp = Scratch::new("mlflow-version");
    let v1 = registry(&tmp).get_version(model, "1").unwrap();
    assert_eq!(v1.stage.as_deref(), Some("Production"));
    assert_eq!(v1.aliases, ["champion"]);
    assert!(v1.run_id.is_some() && v1.created_at_ms > 0);
}

#[test]
fn errors_name_the_missing_version_model_or_alias() {
    let _server = shared();
    let model = read_only_model();
    let tmp = Scratch::new("mlflow-errors");
    let hoist = registry(&tmp);
    let e = hoist.get_version(model, "99").unwrap_err();
    assert!(matches!(e, Error::VersionNotFound { .. }), "{e}");
    let e = hoist.get_version("no_such_model", "1").unwrap_err();
    assert!(
        matches!(e, Error::ModelNotFound(_) | Error::VersionNotFound { .. }),
        "{e}"
    );
    let e = hoist.list_versions("no_such_model").unwrap_err();
    assert!(matches!(e, Error::ModelNotFound(_)), "{e}");
    let e = hoist
        .resolve(&ModelRef::parse(&format!("{model}@nope")).unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::AliasNotFound { .. }), "{e}");
}

#[test]
fn resolves_an_alias_a_stage_a_number_and_the_latest() {
    let _server = shared();
    let model = read_only_model();
    let tmp = Scratch::new("mlflow-resolve");
    let hoist = registry(&tmp);
    let resolve = |s: &str| hoist.resolve(&ModelRef::parse(s).unwrap());
    assert_eq!(resolve(&format!("{model}@champion")).unwrap().version, "1");
    assert_eq!(
        resolve(&format!("{model}/Production")).unwrap().version,
        "1"
    );
    assert_eq!(resolve(&format!("{model}/2")).unwrap().version, "2");
    assert_eq!(resolve(model).unwrap().version, "2");
    let e = resolve(&format!("{model}/Staging")).unwrap_err();
    assert!(matches!(e, Error::StageEmpty { .. }), "{e}");
}

// ---- fetch: files through the artifact proxy, digest recorded then verified ----

#[test]
fn fetch_records_the_digest_of_the_logged_files_and_reuses_the_cache() {
    let _server = shared();
    let model = model("hoist_e2e_fetch", 1);
    let tmp = Scratch::new("mlflow-fetch");
    let hoist = registry(&tmp);
    let v1 = hoist.get_version(&model, "1").unwrap();
    let t = Instant::now();
    let f = hoist.fetch(&v1).unwrap();
    println!(
        "fetched version 1 in {:?} into {}",
        t.elapsed(),
        f.dir.display()
    );
    assert_eq!(
        std::fs::read(f.dir.join("model.onnx")).unwrap(),
        std::fs::read(onnx_path()).unwrap(),
        "model.onnx is byte for byte the file logged"
    );
    assert!(f.dir.join("MLmodel").exists());
    assert_eq!(
        f.digest,
        hoist_types::digest_path(&f.dir).unwrap(),
        "the digest is of the fetched files"
    );
    let tagged = hoist.get_version(&model, "1").unwrap();
    assert_eq!(tagged.tags.get(DIGEST_TAG), Some(&f.digest));
    assert_eq!(tagged.digest.as_ref(), Some(&f.digest));
    // Second fetch: the cached copy, verified against the tag.
    let again = hoist.fetch(&tagged).unwrap();
    assert_eq!(
        (again.digest.as_str(), &again.dir),
        (f.digest.as_str(), &f.dir)
    );
}

#[test]
fn fetch_refuses_a_changed_cached_copy_and_files_that_no_longer_match_the_tag() {
    let _server = shared();
    let model = model("hoist_e2e_tamper", 1);
    let tmp = Scratch::new("mlflow-tamper");
    let hoist = registry(&tmp);
    let f = hoist
        .fetch(&hoist.get_version(&model, "1").unwrap())
        .unwrap();
    let tagged = hoist.get_version(&model, "1").unwrap();
    // A cached copy that changed is an error, never a silent re-download.
    let cached_model = f.dir.join("model.onnx");
    let original = std::fs::read(&cached_model).unwrap();
    let mut perms = std::fs::metadata(&cached_model).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&cached_model, perms).unwrap();
    std::fs::write(&cached_model, b"tampered").unwrap();
    let e = hoist.fetch(&tagged).unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    std::fs::write(&cached_model, &original).unwrap();
    // Files in MLflow that no longer match the recorded digest: an error too.
    let wrong = format!("sha256:{}", "0".repeat(64));
    hoist.set_tag(&model, "1", DIGEST_TAG, &wrong).unwrap();
    let e = hoist.fetch(&tagged).unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&wrong), "{e}");
    hoist.delete_tag(&model, "1", DIGEST_TAG).unwrap();
    assert_eq!(hoist.fetch(&tagged).unwrap().digest, f.digest, "re-tagged");
    assert_eq!(
        hoist.get_version(&model, "1").unwrap().digest.as_ref(),
        Some(&f.digest)
    );
}

// ---- tags and aliases written by hoist, read back over plain REST ----

#[test]
fn tags_hoist_sets_are_read_over_rest_and_deleted() {
    let _server = shared();
    let model = model("hoist_e2e_tags", 2);
    let tmp = Scratch::new("mlflow-tags");
    let hoist = registry(&tmp);
    hoist
        .set_tag(&model, "2", "hoist.staging", "passed")
        .unwrap();
    let raw = rest_get(&format!("model-versions/get?name={model}&version=2"));
    let tags = raw["model_version"]["tags"].as_array().unwrap();
    assert!(
        tags.iter()
            .any(|t| t["key"] == "hoist.staging" && t["value"] == "passed"),
        "{raw}"
    );
    hoist.delete_tag(&model, "2", "hoist.staging").unwrap();
    assert!(
        !hoist
            .get_version(&model, "2")
            .unwrap()
            .tags
            .contains_key("hoist.staging")
    );
}

#[test]
fn aliases_hoist_sets_are_read_over_rest_and_deleted_once() {
    let _server = shared();
    let model = model("hoist_e2e_aliases", 2);
    let tmp = Scratch::new("mlflow-aliases");
    let hoist = registry(&tmp);
    hoist.set_alias(&model, "challenger", "2").unwrap();
    let raw = rest_get(&format!(
        "registered-models/alias?name={model}&alias=challenger"
    ));
    assert_eq!(raw["model_version"]["version"], "2");
    hoist.delete_alias(&model, "challenger").unwrap();
    let e = hoist.delete_alias(&model, "challenger").unwrap_err();
    assert!(matches!(e, Error::AliasNotFound { .. }), "{e}");
}

// ---- register: a bare .onnx file through the artifact proxy, fetched, re-registered ----

#[test]
fn registers_a_bare_onnx_file_in_a_finished_run_and_fetches_it() {
    let _server = shared();
    let bare = unique_name("hoist_e2e_bare_onnx");
    let tmp = Scratch::new("mlflow-register");
    let hoist = registry(&tmp);
    let t = Instant::now();
    let r = hoist
        .register(onnx_path(), &bare, &BTreeMap::new(), Some("champion"))
        .unwrap();
    println!("registered a bare .onnx with hoist in {:?}", t.elapsed());
    assert!(r.created);
    assert_eq!(
        (r.version.version.as_str(), r.version.aliases.as_slice()),
        ("1", ["champion".to_string()].as_slice())
    );
    let run_id = r.version.run_id.clone().expect("a run owns the files");
    let run = rest_get(&format!("runs/get?run_id={run_id}"));
    assert_eq!(run["run"]["info"]["status"], "FINISHED", "{run}");
    let exp = rest_get("experiments/get-by-name?experiment_name=hoist");
    assert_eq!(
        run["run"]["info"]["experiment_id"], exp["experiment"]["experiment_id"],
        "{run} {exp}"
    );
    let f = hoist.fetch(&r.version).unwrap();
    assert_eq!(Some(&f.digest), r.version.tags.get(DIGEST_TAG));
    assert_eq!(
        std::fs::read(f.dir.join("model.onnx")).unwrap(),
        std::fs::read(onnx_path()).unwrap()
    );
    assert_eq!(
        f.digest,
        hoist_types::digest_path(&f.dir).unwrap(),
        "the tag is the digest of the files as MLflow holds them"
    );
}

#[test]
fn registering_the_same_files_again_adds_tags_but_no_version() {
    let _server = shared();
    let bare = unique_name("hoist_e2e_bare_again");
    let tmp = Scratch::new("mlflow-register-again");
    let hoist = registry(&tmp);
    let first = hoist
        .register(onnx_path(), &bare, &BTreeMap::new(), Some("champion"))
        .unwrap();
    assert!(first.created);
    let again = hoist
        .register(
            onnx_path(),
            &bare,
            &BTreeMap::from([("team".to_string(), "risk".to_string())]),
            None,
        )
        .unwrap();
    assert!(!again.created, "the same files again: no version 2");
    assert_eq!(again.version.version, "1");
    assert_eq!(
        again.version.tags.get("team").map(String::as_str),
        Some("risk")
    );
    assert_eq!(hoist.list_versions(&bare).unwrap().len(), 1);
}

#[test]
fn register_refuses_an_invalid_model_name() {
    let _server = shared();
    let tmp = Scratch::new("mlflow-register-bad");
    let e = registry(&tmp)
        .register(onnx_path(), "bad/name", &BTreeMap::new(), None)
        .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
}

// ---- triggers: webhook receiver + poller → tap → dedupe ----

/// Events as they reached the de-duplicator, with their arrival time (unix seconds).
type Tap = Arc<Mutex<Vec<(f64, Event)>>>;

fn is_move(model: &str, e: &Event, alias: &str, version: &str) -> bool {
    e.kind == EventKind::AliasSet
        && e.model == model
        && e.alias.as_deref() == Some(alias)
        && e.version.as_deref() == Some(version)
}

/// A model of its own (two versions), hoist's webhook receiver and poller feeding a
/// tap then the de-duplicator, a webhook made with the real client (aliases) and one
/// made by hoist (tags). Dropping it stops both and deletes the webhooks.
struct Triggers {
    model: String,
    hoist: MlflowRegistry,
    rt: tokio::runtime::Runtime,
    tap: Tap,
    out_rx: mpsc::Receiver<Event>,
    poll_interval: Duration,
    hook_ids: Vec<String>,
    poller: Option<PollerHandle>,
    stop_tx: Option<tokio::sync::oneshot::Sender<()>>,
    receiver: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _tmp: Scratch,
    _turn: Turn,
}

impl Triggers {
    fn start(prefix: &str, alone_on_server: bool) -> Triggers {
        let turn = if alone_on_server {
            Turn::Alone(alone())
        } else {
            Turn::Shared(shared())
        };
        let model = model(prefix, 2);
        let tmp = Scratch::new("mlflow-triggers");
        let hoist = registry(&tmp);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (raw_tx, mut raw_rx) = mpsc::channel::<Event>(256);
        let (tapped_tx, tapped_rx) = mpsc::channel::<Event>(256);
        let (out_tx, out_rx) = mpsc::channel::<Event>(256);
        let tap: Tap = Arc::default();
        let tap_in = tap.clone();
        rt.spawn(async move {
            while let Some(e) = raw_rx.recv().await {
                tap_in.lock().unwrap().push((unix_now(), e.clone()));
                if tapped_tx.send(e).await.is_err() {
                    return;
                }
            }
        });
        rt.spawn(dedupe(tapped_rx, out_tx, Duration::from_secs(600)));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let hook_url = format!("http://{}/webhook", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let receiver = rt.spawn(webhook::run(
            listener,
            WebhookConfig::new(SECRET, hoist.id()),
            raw_tx.clone(),
            async {
                let _ = stop_rx.await;
            },
        ));

        // A webhook made with the real client (aliases) and one made by hoist (tags);
        // on a server without webhooks (MLflow 2.x), the poller alone.
        let mut hook_ids = Vec::new();
        if mlflow().has_webhooks() {
            let made = mlflow().client().call(
                json!({"op": "webhook", "name": format!("{model}-aliases"), "url": hook_url,
                "events": ["model_version_alias.created"], "secret": SECRET}),
            );
            hook_ids.push(made["id"].as_str().unwrap().to_string());
            hook_ids.push(
                hoist
                    .create_webhook(
                        &format!("{model}-tags"),
                        &hook_url,
                        SECRET,
                        &["model_version_tag.set"],
                    )
                    .unwrap(),
            );
        } else {
            assert_webhooks_refused(&hoist);
        }

        let poll_registry: Arc<dyn Registry> =
            Arc::new(MlflowRegistry::new(&mlflow().uri).unwrap());
        let poll_interval = Duration::from_millis(500);
        let poller = spawn_poller(
            poll_registry,
            PollConfig {
                interval: poll_interval,
                models: Some(vec![model.clone()]),
                stages: true,
            },
            raw_tx,
        );
        // Let the poller take its baseline and the server's webhook cache (TTL 1 s) expire.
        std::thread::sleep(Duration::from_millis(1500));
        Triggers {
            model,
            hoist,
            rt,
            tap,
            out_rx,
            poll_interval,
            hook_ids,
            poller: Some(poller),
            stop_tx: Some(stop_tx),
            receiver: Some(receiver),
            _tmp: tmp,
            _turn: turn,
        }
    }

    fn is_move(&self, e: &Event, alias: &str, version: &str) -> bool {
        is_move(&self.model, e, alias, version)
    }

    /// Arrival times of the moves of `alias` to `version` since `after`, by webhook
    /// (`webhook`) or by the poller.
    fn seen(&self, webhook: bool, alias: &str, version: &str, after: f64) -> Vec<f64> {
        self.tap
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, e)| {
                *at >= after && e.delivery.is_some() == webhook && self.is_move(e, alias, version)
            })
            .map(|(at, _)| *at)
            .collect()
    }

    fn set_alias(&self, alias: &str, version: &str) -> f64 {
        mlflow().client().set_alias(&self.model, alias, version)
    }

    /// The first promotion (champion → 2): the server may still hold a stale webhook
    /// list, so re-set the alias until a delivery arrives (≤ ~70 s even with MLflow's
    /// default 60 s cache). The unix time just before the alias move that was delivered.
    fn first_promotion(&self) -> f64 {
        let first = Instant::now();
        loop {
            let t0 = self.set_alias("champion", "2");
            if poll(Duration::from_secs(5), || {
                self.seen(true, "champion", "2", t0).first().copied()
            })
            .is_some()
            {
                return t0;
            }
            assert!(
                first.elapsed() < Duration::from_secs(75),
                "no webhook delivery within 75 s; server log:\n{}",
                mlflow().log_tail()
            );
            println!(
                "no delivery yet after {:?}; setting the alias again",
                first.elapsed()
            );
        }
    }

    /// Events of this test's model after the de-duplicator, as they are now.
    fn drain(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.out_rx.try_recv().ok())
            .filter(|e| e.model == self.model)
            .collect()
    }
}

impl Drop for Triggers {
    fn drop(&mut self) {
        if let Some(p) = self.poller.take() {
            p.stop();
        }
        if let Some(stop) = self.stop_tx.take() {
            let _ = stop.send(());
        }
        if let Some(receiver) = self.receiver.take() {
            let stopped = self.rt.block_on(receiver);
            if !std::thread::panicking() {
                stopped.unwrap().unwrap();
            }
        }
        for id in &self.hook_ids {
            let deleted = self.hoist.delete_webhook(id);
            if !std::thread::panicking() {
                deleted.unwrap();
            }
        }
    }
}

#[test]
fn a_webhook_hoist_creates_is_listed_by_mlflow() {
    if !webhooks_or_refused() {
        return;
    }
    let t = Triggers::start("hoist_e2e_hook_listed", false);
    let listed = rest_get("webhooks");
    assert!(
        listed["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["webhook_id"] == t.hook_ids[1].as_str()),
        "{listed}"
    );
}

#[test]
fn one_alias_move_is_one_webhook_event_one_polled_event_and_one_event_after_dedupe() {
    if !webhooks_or_refused() {
        return;
    }
    let mut t = Triggers::start("hoist_e2e_promotion", true);
    let t0 = t.first_promotion();
    let poll_seen = wait_for(
        t.poll_interval * 10,
        "the poller to see the alias move",
        || t.seen(false, "champion", "2", t0).first().copied(),
    );
    // Give a duplicate the time to show up.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        t.seen(true, "champion", "2", t0).len(),
        1,
        "exactly one verified webhook event for one set_registered_model_alias"
    );
    assert_eq!(
        t.seen(false, "champion", "2", t0).len(),
        1,
        "and one polled event"
    );
    let out = t.drain();
    let moves: Vec<&Event> = out
        .iter()
        .filter(|e| t.is_move(e, "champion", "2"))
        .collect();
    assert_eq!(
        moves.len(),
        1,
        "one promotion, one event after dedupe: {out:?}"
    );
    assert!(!out.iter().any(|e| e.kind == EventKind::AliasSet
        && e.alias.as_deref() == Some("champion")
        && e.version.as_deref() != Some("2")));
    println!(
        "first promotion: webhook {:.1} ms, poll {:.1} ms after set_registered_model_alias",
        (t.seen(true, "champion", "2", t0)[0] - t0) * 1e3,
        (poll_seen - t0) * 1e3
    );
}

#[test]
fn alias_moves_back_and_forth_each_reach_the_subscriber_once() {
    if !webhooks_or_refused() {
        return;
    }
    let mut t = Triggers::start("hoist_e2e_moves", true);
    t.first_promotion();
    wait_until(
        Duration::from_secs(10),
        "the first move after dedupe",
        || !t.drain().is_empty(),
    );
    // Latency samples: move the alias back and forth.
    let mut webhook_ms = Vec::new();
    let mut poll_ms = Vec::new();
    for i in 0..6 {
        let version = if i % 2 == 0 { "1" } else { "2" };
        let t0 = t.set_alias("champion", version);
        let w = wait_for(Duration::from_secs(10), "a webhook event", || {
            t.seen(true, "champion", version, t0).first().copied()
        });
        let p = wait_for(t.poll_interval * 10, "a polled event", || {
            t.seen(false, "champion", version, t0).first().copied()
        });
        webhook_ms.push((w - t0) * 1e3);
        poll_ms.push((p - t0) * 1e3);
        let model = t.model.clone();
        let deduped = poll(Duration::from_secs(2), || {
            t.out_rx
                .try_recv()
                .ok()
                .filter(|e| is_move(&model, e, "champion", version))
        });
        assert!(deduped.is_some(), "move {i} reached the subscriber");
        // Give a duplicate the time to show up, then check that none did.
        std::thread::sleep(Duration::from_millis(300));
        let extra: Vec<Event> = t
            .drain()
            .into_iter()
            .filter(|e| e.kind == EventKind::AliasSet)
            .collect();
        assert!(extra.is_empty(), "duplicate after dedupe: {extra:?}");
    }
    println!(
        "set_registered_model_alias → hoist event over {} moves: webhook p50 {:.1} ms max {:.1} ms; \
         poll ({:?} interval) p50 {:.1} ms max {:.1} ms",
        webhook_ms.len(),
        percentile(&webhook_ms, 0.5),
        percentile(&webhook_ms, 1.0),
        t.poll_interval,
        percentile(&poll_ms, 0.5),
        percentile(&poll_ms, 1.0),
    );
}

#[test]
fn the_webhook_hoist_created_delivers_tag_events() {
    if !webhooks_or_refused() {
        return;
    }
    let t = Triggers::start("hoist_e2e_tag_events", false);
    t.first_promotion();
    let before_tag = unix_now();
    t.hoist
        .set_tag(&t.model, "2", "hoist.production", "live")
        .unwrap();
    let tag_event = wait_for(
        Duration::from_secs(10),
        "a tag event through the webhook hoist created",
        || {
            t.tap
                .lock()
                .unwrap()
                .iter()
                .find(|(at, e)| {
                    *at >= before_tag
                        && e.model == t.model
                        && e.kind
                            == (EventKind::TagSet {
                                key: "hoist.production".into(),
                                value: "live".into(),
                            })
                })
                .map(|(_, e)| e.clone())
        },
    );
    assert_eq!(tag_event.version.as_deref(), Some("2"));
    assert!(tag_event.delivery.is_some());
}

#[test]
fn the_poller_reports_stage_transitions() {
    // Stages have no webhook: the poller reports a transition.
    let t = Triggers::start("hoist_e2e_stages", false);
    let before_stage = unix_now();
    mlflow().client().set_stage(&t.model, "2", "Staging");
    let staged = wait_for(
        t.poll_interval * 10,
        "the poller to report the stage transition",
        || {
            t.tap
                .lock()
                .unwrap()
                .iter()
                .find(|(at, e)| {
                    *at >= before_stage && e.model == t.model && e.kind == EventKind::StageChanged
                })
                .map(|(at, e)| (*at, e.clone()))
        },
    );
    assert_eq!(
        (staged.1.stage.as_deref(), staged.1.version.as_deref()),
        (Some("Staging"), Some("2"))
    );
    println!(
        "transition_model_version_stage → polled event: {:.1} ms",
        (staged.0 - before_stage) * 1e3
    );
    assert_eq!(
        t.hoist
            .resolve(&ModelRef::parse(&format!("{}/Staging", t.model)).unwrap())
            .unwrap()
            .version,
        "2"
    );
}
