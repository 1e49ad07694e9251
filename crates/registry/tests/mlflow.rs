//! hoist's MLflow adapter and triggers against a REAL MLflow tracking server.
//!
//! One server (MLflow 3.17.2 from `.venv-mlflow`, made by `tools/mlflow-venv.sh`, or
//! the python named by `HOIST_MLFLOW_PYTHON`) is started on 127.0.0.1 with a SQLite
//! backend for the single test below, and killed (its whole process group) at the end.
//! Versions are registered with the real Python client (`mlflow.onnx.log_model`), then
//! read, resolved, fetched, tagged and aliased through [`MlflowRegistry`]; a bare
//! `.onnx` file is registered through [`MlflowRegistry::register`]; a webhook
//! created with the real client delivers to hoist's receiver, and the poller and the
//! de-duplicator see the same promotion.
//!
//! Without the venv this test FAILS (it does not skip): run `bash tools/mlflow-venv.sh`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hoist_registry::mlflow::{DIGEST_TAG, MlflowRegistry};
use hoist_registry::watch::{PollConfig, dedupe, spawn_poller};
use hoist_registry::webhook::{self, WebhookConfig};
use hoist_registry::{Error, Event, EventKind, ModelRef, Registry};
use hoist_testkit::{MlflowServer, PyClient, mlflow_python, repo_root, tail};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const MODEL: &str = "hoist_e2e_breast_cancer";
/// A bare `.onnx` file hoist registers itself.
const BARE: &str = "hoist_e2e_bare_onnx";
const SECRET: &str = "hoist-e2e-secret";

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Moves `alias` of the test model with the Python client; the unix time just before.
fn set_alias(c: &mut PyClient, alias: &str, version: &str) -> f64 {
    let r = c.call(json!({"op": "alias", "name": MODEL, "alias": alias, "version": version}));
    r["before"].as_f64().unwrap()
}

/// Events as they reached the de-duplicator, with their arrival time (unix seconds).
type Tap = Arc<Mutex<Vec<(f64, Event)>>>;

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(x) = f() {
            return Some(x);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn is_move(e: &Event, alias: &str, version: &str) -> bool {
    e.kind == EventKind::AliasSet
        && e.model == MODEL
        && e.alias.as_deref() == Some(alias)
        && e.version.as_deref() == Some(version)
}

fn rest_get(uri: &str, path_and_query: &str) -> Value {
    let r = reqwest::blocking::get(format!("{uri}/api/2.0/mlflow/{path_and_query}")).unwrap();
    assert!(r.status().is_success(), "{path_and_query}: {}", r.status());
    r.json().unwrap()
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[((s.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn hoist_reads_fetches_tags_and_hears_a_real_mlflow_server() {
    let test_start = Instant::now();
    let py = mlflow_python();
    let tmp = std::env::temp_dir().join(format!("hoist-mlflow-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let server = MlflowServer::start(&py, &tmp);
    let uri = server.uri.clone();
    let mut client = PyClient::start(&py, &tmp, &uri);

    // ---- register two versions with the real client; alias and stage version 1 ----
    let onnx_path = repo_root().join("examples/models/breast_cancer_lr/model.onnx");
    let t = Instant::now();
    let reg = client.call(json!({"op": "register", "name": MODEL, "path": onnx_path, "count": 2}));
    assert_eq!(reg["versions"], json!(["1", "2"]));
    set_alias(&mut client, "champion", "1");
    client.call(json!({"op": "stage", "name": MODEL, "version": "1", "stage": "Production"}));
    println!(
        "registered 2 versions with the python client in {:?}",
        t.elapsed()
    );

    let hoist = MlflowRegistry::new(&uri)
        .unwrap()
        .with_cache_dir(tmp.join("cache"));
    assert_eq!(hoist.id(), uri);

    // ---- list and read ----
    let models = hoist.list_models().unwrap();
    let m = models
        .iter()
        .find(|m| m.name == MODEL)
        .expect("model listed");
    assert_eq!(m.aliases, BTreeMap::from([("champion".into(), "1".into())]));
    assert_eq!(m.latest_version.as_deref(), Some("2"));

    let versions = hoist.list_versions(MODEL).unwrap();
    let numbers: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(numbers, ["2", "1"], "newest first");
    assert!(versions.iter().all(|v| !v.source.is_empty()));

    let v1 = hoist.get_version(MODEL, "1").unwrap();
    assert_eq!(v1.stage.as_deref(), Some("Production"));
    assert_eq!(v1.aliases, ["champion"]);
    assert!(v1.run_id.is_some() && v1.created_at_ms > 0);

    // ---- errors name what is missing ----
    let e = hoist.get_version(MODEL, "99").unwrap_err();
    assert!(matches!(e, Error::VersionNotFound { .. }), "{e}");
    let e = hoist.get_version("no_such_model", "1").unwrap_err();
    assert!(
        matches!(e, Error::ModelNotFound(_) | Error::VersionNotFound { .. }),
        "{e}"
    );
    let e = hoist.list_versions("no_such_model").unwrap_err();
    assert!(matches!(e, Error::ModelNotFound(_)), "{e}");
    let e = hoist
        .resolve(&ModelRef::parse(&format!("{MODEL}@nope")).unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::AliasNotFound { .. }), "{e}");

    // ---- resolve every selector ----
    let resolve = |s: &str| hoist.resolve(&ModelRef::parse(s).unwrap());
    assert_eq!(resolve(&format!("{MODEL}@champion")).unwrap().version, "1");
    assert_eq!(
        resolve(&format!("{MODEL}/Production")).unwrap().version,
        "1"
    );
    assert_eq!(resolve(&format!("{MODEL}/2")).unwrap().version, "2");
    assert_eq!(resolve(MODEL).unwrap().version, "2");
    let e = resolve(&format!("{MODEL}/Staging")).unwrap_err();
    assert!(matches!(e, Error::StageEmpty { .. }), "{e}");

    // ---- fetch: files through the artifact proxy, digest recorded then verified ----
    let t = Instant::now();
    let f = hoist.fetch(&v1).unwrap();
    println!(
        "fetched version 1 in {:?} into {}",
        t.elapsed(),
        f.dir.display()
    );
    assert_eq!(
        std::fs::read(f.dir.join("model.onnx")).unwrap(),
        std::fs::read(&onnx_path).unwrap(),
        "model.onnx is byte for byte the file logged"
    );
    assert!(f.dir.join("MLmodel").exists());
    assert_eq!(
        f.digest,
        hoist_types::digest_path(&f.dir).unwrap(),
        "the digest is of the fetched files"
    );
    let tagged = hoist.get_version(MODEL, "1").unwrap();
    assert_eq!(tagged.tags.get(DIGEST_TAG), Some(&f.digest));
    assert_eq!(tagged.digest.as_ref(), Some(&f.digest));
    // Second fetch: the cached copy, verified against the tag.
    let again = hoist.fetch(&tagged).unwrap();
    assert_eq!(
        (again.digest.as_str(), &again.dir),
        (f.digest.as_str(), &f.dir)
    );
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
    hoist.set_tag(MODEL, "1", DIGEST_TAG, &wrong).unwrap();
    let e = hoist.fetch(&tagged).unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&wrong), "{e}");
    hoist.delete_tag(MODEL, "1", DIGEST_TAG).unwrap();
    assert_eq!(hoist.fetch(&tagged).unwrap().digest, f.digest, "re-tagged");
    assert_eq!(
        hoist.get_version(MODEL, "1").unwrap().digest.as_ref(),
        Some(&f.digest)
    );

    // ---- tags and aliases written by hoist, read back over plain REST ----
    hoist
        .set_tag(MODEL, "2", "hoist.staging", "passed")
        .unwrap();
    let raw = rest_get(&uri, &format!("model-versions/get?name={MODEL}&version=2"));
    let tags = raw["model_version"]["tags"].as_array().unwrap();
    assert!(
        tags.iter()
            .any(|t| t["key"] == "hoist.staging" && t["value"] == "passed"),
        "{raw}"
    );
    hoist.delete_tag(MODEL, "2", "hoist.staging").unwrap();
    assert!(
        !hoist
            .get_version(MODEL, "2")
            .unwrap()
            .tags
            .contains_key("hoist.staging")
    );
    hoist.set_alias(MODEL, "challenger", "2").unwrap();
    let raw = rest_get(
        &uri,
        &format!("registered-models/alias?name={MODEL}&alias=challenger"),
    );
    assert_eq!(raw["model_version"]["version"], "2");
    hoist.delete_alias(MODEL, "challenger").unwrap();
    let e = hoist.delete_alias(MODEL, "challenger").unwrap_err();
    assert!(matches!(e, Error::AliasNotFound { .. }), "{e}");
    println!(
        "read/resolve/fetch/tag phase done at {:?}",
        test_start.elapsed()
    );

    // ---- register: a bare .onnx file through the artifact proxy, fetched, re-registered ----
    let t = Instant::now();
    let r = hoist
        .register(&onnx_path, BARE, &BTreeMap::new(), Some("champion"))
        .unwrap();
    println!("registered a bare .onnx with hoist in {:?}", t.elapsed());
    assert!(r.created);
    assert_eq!(
        (r.version.version.as_str(), r.version.aliases.as_slice()),
        ("1", ["champion".to_string()].as_slice())
    );
    let run_id = r.version.run_id.clone().expect("a run owns the files");
    let run = rest_get(&uri, &format!("runs/get?run_id={run_id}"));
    assert_eq!(run["run"]["info"]["status"], "FINISHED", "{run}");
    let exp = rest_get(&uri, "experiments/get-by-name?experiment_name=hoist");
    assert_eq!(
        run["run"]["info"]["experiment_id"], exp["experiment"]["experiment_id"],
        "{run} {exp}"
    );
    let f = hoist.fetch(&r.version).unwrap();
    assert_eq!(Some(&f.digest), r.version.tags.get(DIGEST_TAG));
    assert_eq!(
        std::fs::read(f.dir.join("model.onnx")).unwrap(),
        std::fs::read(&onnx_path).unwrap()
    );
    assert_eq!(
        f.digest,
        hoist_types::digest_path(&f.dir).unwrap(),
        "the tag is the digest of the files as MLflow holds them"
    );
    let again = hoist
        .register(
            &onnx_path,
            BARE,
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
    assert_eq!(hoist.list_versions(BARE).unwrap().len(), 1);
    let e = hoist
        .register(&onnx_path, "bad/name", &BTreeMap::new(), None)
        .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");

    // ---- triggers: webhook receiver + poller → tap → dedupe ----
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (raw_tx, mut raw_rx) = mpsc::channel::<Event>(256);
    let (tapped_tx, tapped_rx) = mpsc::channel::<Event>(256);
    let (out_tx, mut out_rx) = mpsc::channel::<Event>(256);
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

    // A webhook made with the real client (aliases) and one made by hoist (tags).
    client.call(
        json!({"op": "webhook", "name": "hoist-e2e-aliases", "url": hook_url,
        "events": ["model_version_alias.created"], "secret": SECRET}),
    );
    let hook_id = hoist
        .create_webhook(
            "hoist-e2e-tags",
            &hook_url,
            SECRET,
            &["model_version_tag.set"],
        )
        .unwrap();
    let listed = rest_get(&uri, "webhooks");
    assert!(
        listed["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["webhook_id"] == hook_id.as_str()),
        "{listed}"
    );

    let poll_registry: Arc<dyn Registry> = Arc::new(MlflowRegistry::new(&uri).unwrap());
    let poll_interval = Duration::from_millis(500);
    let poller = spawn_poller(
        poll_registry,
        PollConfig {
            interval: poll_interval,
            models: Some(vec![MODEL.into()]),
            stages: true,
        },
        raw_tx.clone(),
    );
    // Let the poller take its baseline and the server's webhook cache (TTL 1 s) expire.
    std::thread::sleep(Duration::from_millis(1500));

    let from_webhook = |alias: &str, version: &str, after: f64| -> Vec<f64> {
        tap.lock()
            .unwrap()
            .iter()
            .filter(|(at, e)| *at >= after && e.delivery.is_some() && is_move(e, alias, version))
            .map(|(at, _)| *at)
            .collect()
    };
    let from_poll = |alias: &str, version: &str, after: f64| -> Vec<f64> {
        tap.lock()
            .unwrap()
            .iter()
            .filter(|(at, e)| *at >= after && e.delivery.is_none() && is_move(e, alias, version))
            .map(|(at, _)| *at)
            .collect()
    };

    // First promotion: the server may still hold a stale webhook list, so re-set the
    // alias until a delivery arrives (≤ ~70 s even with MLflow's default 60 s cache).
    let first = Instant::now();
    let mut t0;
    loop {
        t0 = set_alias(&mut client, "champion", "2");
        if wait_for(Duration::from_secs(5), || {
            from_webhook("champion", "2", t0).first().copied()
        })
        .is_some()
        {
            break;
        }
        assert!(
            first.elapsed() < Duration::from_secs(75),
            "no webhook delivery within 75 s; server log:\n{}",
            tail(&server.log)
        );
        println!(
            "no delivery yet after {:?}; setting the alias again",
            first.elapsed()
        );
    }
    let poll_seen = wait_for(poll_interval * 10, || {
        from_poll("champion", "2", t0).first().copied()
    })
    .expect("the poller sees the alias move");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        from_webhook("champion", "2", t0).len(),
        1,
        "exactly one verified webhook event for one set_registered_model_alias"
    );
    assert_eq!(
        from_poll("champion", "2", t0).len(),
        1,
        "and one polled event"
    );
    let mut out = Vec::new();
    while let Ok(e) = out_rx.try_recv() {
        out.push(e);
    }
    let moves: Vec<&Event> = out.iter().filter(|e| is_move(e, "champion", "2")).collect();
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
        (from_webhook("champion", "2", t0)[0] - t0) * 1e3,
        (poll_seen - t0) * 1e3
    );

    // Latency samples: move the alias back and forth.
    let mut webhook_ms = Vec::new();
    let mut poll_ms = Vec::new();
    for i in 0..6 {
        let version = if i % 2 == 0 { "1" } else { "2" };
        let t0 = set_alias(&mut client, "champion", version);
        let w = wait_for(Duration::from_secs(10), || {
            from_webhook("champion", version, t0).first().copied()
        })
        .expect("webhook event");
        let p = wait_for(poll_interval * 10, || {
            from_poll("champion", version, t0).first().copied()
        })
        .expect("polled event");
        webhook_ms.push((w - t0) * 1e3);
        poll_ms.push((p - t0) * 1e3);
        let deduped = wait_for(Duration::from_secs(2), || {
            out_rx
                .try_recv()
                .ok()
                .filter(|e| is_move(e, "champion", version))
        });
        assert!(deduped.is_some(), "move {i} reached the subscriber");
        // Give a duplicate the time to show up, then check that none did.
        std::thread::sleep(Duration::from_millis(300));
        let extra: Vec<Event> = std::iter::from_fn(|| out_rx.try_recv().ok())
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
        poll_interval,
        percentile(&poll_ms, 0.5),
        percentile(&poll_ms, 1.0),
    );

    // The webhook hoist created delivers tag events.
    let before_tag = unix_now();
    hoist
        .set_tag(MODEL, "2", "hoist.production", "live")
        .unwrap();
    let tag_event = wait_for(Duration::from_secs(10), || {
        tap.lock()
            .unwrap()
            .iter()
            .find(|(at, e)| {
                *at >= before_tag
                    && e.kind
                        == (EventKind::TagSet {
                            key: "hoist.production".into(),
                            value: "live".into(),
                        })
            })
            .map(|(_, e)| e.clone())
    })
    .expect("tag event through the webhook hoist created");
    assert_eq!(tag_event.version.as_deref(), Some("2"));
    assert!(tag_event.delivery.is_some());

    // Stages have no webhook: the poller reports a transition.
    let before_stage = unix_now();
    client.call(json!({"op": "stage", "name": MODEL, "version": "2", "stage": "Staging"}));
    let staged = wait_for(poll_interval * 10, || {
        tap.lock()
            .unwrap()
            .iter()
            .find(|(at, e)| *at >= before_stage && e.kind == EventKind::StageChanged)
            .map(|(at, e)| (*at, e.clone()))
    })
    .expect("the poller reports the stage transition");
    assert_eq!(
        (staged.1.stage.as_deref(), staged.1.version.as_deref()),
        (Some("Staging"), Some("2"))
    );
    println!(
        "transition_model_version_stage → polled event: {:.1} ms",
        (staged.0 - before_stage) * 1e3
    );
    assert_eq!(
        hoist
            .resolve(&ModelRef::parse(&format!("{MODEL}/Staging")).unwrap())
            .unwrap()
            .version,
        "2"
    );

    poller.stop();
    let _ = stop_tx.send(());
    rt.block_on(receiver).unwrap().unwrap();
    hoist.delete_webhook(&hook_id).unwrap();
    drop(client);
    drop(server);
    let _ = std::fs::remove_dir_all(&tmp);
    println!("total {:?}", test_start.elapsed());
}
