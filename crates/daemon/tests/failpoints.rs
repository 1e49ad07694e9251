//! The engine killed between a journal write and its action, for every action kind,
//! then restarted on the same journal: the release ends where it would have without
//! the kill (weights, live versions, registry tags, notifications at least once).
//!
//! The engine runs as in the daemon but against a fake `EnvTarget` (a world of
//! variants and weights in memory, fresh after each kill as processes would be), an
//! in-memory journal, a fake registry and a real HTTP receiver of notifications.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hoist_daemon::clock::{Clock, SystemClock, TokioClock};
use hoist_daemon::cmd::{Cmd, EngineClient, Started};
use hoist_daemon::engine::{Engine, EngineParts};
use hoist_daemon::failpoint::{ACTION_KINDS, FailPoint, FailPoints};
use hoist_daemon::live::{Judged, LiveMetrics, StepShape};
use hoist_daemon::notify::Notifier;
use hoist_daemon::target::{Candidate, EnvTarget, Serving};
use hoist_daemon::views::{CreateRequest, ServerView, WindowView};
use hoist_registry::{Fetched, ModelVersion, RegisteredModel, Registry, VersionStatus};
use hoist_release::config::{Analysis, Config};
use hoist_release::journal::{Journal, Live};
use hoist_release::machine::{Event, Outcome, Phase, ReleaseId, Verdict};
use tokio::sync::{broadcast, mpsc};

// ---------------------------------------------------------------- the fake world

/// One environment as the fake target keeps it.
#[derive(Debug, Default, Clone, PartialEq)]
struct EnvWorld {
    stable: Option<String>,
    candidate: Option<String>,
    weight: u32,
    shadow: u32,
}

type World = Arc<Mutex<HashMap<String, EnvWorld>>>;

struct FakeTarget {
    name: String,
    world: World,
    tx: mpsc::Sender<Cmd>,
    /// Whether analysis fails the candidate.
    failing: Arc<AtomicBool>,
}

impl FakeTarget {
    fn with<T>(&self, f: impl FnOnce(&mut EnvWorld) -> T) -> T {
        f(self
            .world
            .lock()
            .unwrap()
            .entry(self.name.clone())
            .or_default())
    }
}

struct FakeMetrics {
    failing: Arc<AtomicBool>,
}

impl LiveMetrics for FakeMetrics {
    fn begin<'a>(&'a mut self, _: &'a Analysis) -> BoxFuture<'a, ()> {
        async {}.boxed()
    }
    fn judge<'a>(&'a mut self, _: &'a Analysis, _: Duration) -> BoxFuture<'a, Judged> {
        let verdict = if self.failing.load(Ordering::SeqCst) {
            Verdict::Fail {
                reason: "error rate 0.5 > 0.01".into(),
            }
        } else {
            Verdict::Pass
        };
        async move {
            Judged {
                verdict,
                window: WindowView::default(),
                numbers: serde_json::json!({}),
            }
        }
        .boxed()
    }
}

impl EnvTarget for FakeTarget {
    fn kind(&self) -> &'static str {
        "fake"
    }
    fn url(&self) -> String {
        format!("http://fake/{}", self.name)
    }
    fn restore(&mut self, live: Option<Live>) -> BoxFuture<'_, Option<Serving>> {
        let serving = live.map(|l| {
            self.with(|w| w.stable = Some(l.version.clone()));
            Serving {
                version: l.version,
                digest: l.digest,
                release_id: l.release_id,
            }
        });
        async move { serving }.boxed()
    }
    fn start_candidate(&mut self, c: Candidate) {
        self.with(|w| w.candidate = Some(c.version.clone()));
        let (tx, env) = (self.tx.clone(), self.name.clone());
        tokio::spawn(async move {
            let result = Ok(Started::default());
            let _ = tx
                .send(Cmd::CandidateStarted {
                    id: c.id,
                    env,
                    result,
                })
                .await;
        });
    }
    fn take_candidate(&mut self, _: &str, _: Started, known: bool) -> bool {
        !known
    }
    fn discard(&mut self, _: Started) {}
    fn set_weight(&mut self, _: ReleaseId, weight: u32) {
        self.with(|w| w.weight = weight);
    }
    fn mirror(&mut self, percent: u32) {
        self.with(|w| w.shadow = percent);
    }
    fn promote(&mut self, _: ReleaseId) {
        self.with(|w| {
            if let Some(c) = w.candidate.take() {
                w.stable = Some(c);
            }
            w.weight = 0;
        });
    }
    fn roll_back(&mut self, _: ReleaseId) {
        self.with(|w| {
            w.candidate = None;
            w.weight = 0;
        });
    }
    fn stop(&mut self) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
    fn variant_url(&self, _: bool) -> Option<String> {
        Some(self.url())
    }
    fn smoke_test(&self, _: Option<String>) -> BoxFuture<'static, Result<(), String>> {
        async { Ok(()) }.boxed()
    }
    fn live_metrics(&self, _: StepShape) -> Box<dyn LiveMetrics> {
        Box::new(FakeMetrics {
            failing: self.failing.clone(),
        })
    }
    fn servers(&self, _: bool) -> Vec<ServerView> {
        Vec::new()
    }
    fn windows(&self) -> (WindowView, WindowView) {
        (WindowView::default(), WindowView::default())
    }
}

// ---------------------------------------------------------------- a fake registry

#[derive(Default)]
struct FakeRegistry {
    tags: Mutex<BTreeMap<(String, String), String>>,
}

impl FakeRegistry {
    fn tag(&self, version: &str, key: &str) -> Option<String> {
        self.tags
            .lock()
            .unwrap()
            .get(&(version.to_string(), key.to_string()))
            .cloned()
    }
}

fn digest(version: &str) -> String {
    format!("sha256:{:0>64}", version)
}

impl Registry for FakeRegistry {
    fn id(&self) -> String {
        "fake".into()
    }
    fn list_models(&self) -> hoist_registry::Result<Vec<RegisteredModel>> {
        Ok(Vec::new())
    }
    fn list_versions(&self, name: &str) -> hoist_registry::Result<Vec<ModelVersion>> {
        Ok(vec![self.get_version(name, "1")?])
    }
    fn get_version(&self, name: &str, version: &str) -> hoist_registry::Result<ModelVersion> {
        let tags = self
            .tags
            .lock()
            .unwrap()
            .iter()
            .filter(|((v, _), _)| v == version)
            .map(|((_, k), val)| (k.clone(), val.clone()))
            .collect();
        Ok(ModelVersion {
            name: name.into(),
            version: version.into(),
            digest: Some(digest(version)),
            source: format!("fake:/{version}"),
            status: VersionStatus::Ready,
            stage: None,
            aliases: Vec::new(),
            tags,
            run_id: None,
            created_at_ms: 0,
        })
    }
    fn resolve(&self, r: &hoist_registry::ModelRef) -> hoist_registry::Result<ModelVersion> {
        self.get_version(&r.name, "1")
    }
    fn fetch(&self, v: &ModelVersion) -> hoist_registry::Result<Fetched> {
        Ok(Fetched {
            version: v.clone(),
            dir: std::env::temp_dir(),
            digest: digest(&v.version),
        })
    }
    fn set_alias(&self, _: &str, _: &str, _: &str) -> hoist_registry::Result<()> {
        Ok(())
    }
    fn delete_alias(&self, _: &str, _: &str) -> hoist_registry::Result<()> {
        Ok(())
    }
    fn set_tag(
        &self,
        _: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> hoist_registry::Result<()> {
        self.tags
            .lock()
            .unwrap()
            .insert((version.into(), key.into()), value.into());
        Ok(())
    }
    fn delete_tag(&self, _: &str, version: &str, key: &str) -> hoist_registry::Result<()> {
        self.tags
            .lock()
            .unwrap()
            .remove(&(version.into(), key.into()));
        Ok(())
    }
}

// ---------------------------------------------------------------- notifications

/// A real HTTP receiver on 127.0.0.1 that keeps each event's `event` and `release`.
async fn receiver() -> (String, Arc<Mutex<Vec<(String, u64)>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                keep.lock().unwrap().push((
                    v["event"].as_str().unwrap_or("").to_string(),
                    v["release"].as_u64().unwrap_or(0),
                ));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), got)
}

// ---------------------------------------------------------------- the harness

/// staging (blue-green, the gates) then production (approval, a shadow step, a 20%
/// step, analysis), with `pause` per production step.
fn config(notify_url: Option<&str>, pause: &str) -> Config {
    let notifications = notify_url
        .map(|u| format!("[[notifications]]\nurl = \"{u}\"\nmax_attempts = 10\n"))
        .unwrap_or_default();
    let text = format!(
        r#"
[model]
name = "m"

[analysis]
interval = "10ms"

[[gates]]
kind = "command"
run = ["true"]

[[environments]]
name = "staging"
listen = "127.0.0.1:0"
strategy = "blue-green"

[[environments]]
name = "production"
listen = "127.0.0.1:0"
approval = true
steps = [{{ weight = 0, shadow = 50, pause = "{pause}" }}, {{ weight = 20, pause = "{pause}" }}]

{notifications}"#
    );
    Config::parse(&text, "hoist.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// What lives across kills: the journal, the registry, the notifications received.
struct Harness {
    cfg: Arc<Config>,
    journal: Arc<Journal>,
    registry: Arc<FakeRegistry>,
    failing: Arc<AtomicBool>,
    clock: Arc<dyn Clock>,
    /// How often `finish` looks at the journal.
    poll: Duration,
}

/// One engine's life: its inbox and its world.
struct Booted {
    client: EngineClient,
    world: World,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    fn new(cfg: Config, clock: Arc<dyn Clock>, poll: Duration) -> Harness {
        Harness {
            poll,
            cfg: Arc::new(cfg),
            journal: Arc::new(Journal::in_memory().unwrap()),
            registry: Arc::new(FakeRegistry::default()),
            failing: Arc::new(AtomicBool::new(false)),
            clock,
        }
    }

    /// Start an engine on the journal, in a fresh world, recovering what the journal
    /// holds; `failpoints` may kill it.
    async fn boot(&self, failpoints: FailPoints) -> Booted {
        let (tx, rx) = mpsc::channel(1024);
        let (log, _) = broadcast::channel(1024);
        let world: World = Arc::default();
        let targets = self
            .cfg
            .environments
            .iter()
            .map(|e| {
                let t: Box<dyn EnvTarget> = Box::new(FakeTarget {
                    name: e.name.clone(),
                    world: world.clone(),
                    tx: tx.clone(),
                    failing: self.failing.clone(),
                });
                (e.clone(), t)
            })
            .collect();
        let notifier = Notifier::new(&self.cfg.notifications, &|_| None).unwrap();
        let mut engine = Engine::new(EngineParts {
            cfg: self.cfg.clone(),
            journal: self.journal.clone(),
            registry: self.registry.clone(),
            base_dir: std::env::temp_dir(),
            targets,
            tx: tx.clone(),
            log,
            notifier,
            clock: self.clock.clone(),
            failpoints,
        });
        engine.recover().await;
        Booted {
            client: EngineClient { tx },
            world,
            task: tokio::spawn(engine.run(rx)),
        }
    }

    async fn deploy(&self, b: &Booted, version: &str) -> Option<ReleaseId> {
        let req = CreateRequest {
            version: version.into(),
            env: None,
            supersede: false,
            trigger: "test".into(),
            breaking_change: false,
        };
        let r = b
            .client
            .call(|reply| Cmd::Create { req, reply })
            .await
            .ok()?;
        Some(r.expect("the release is created").release.id)
    }

    /// Drive release `id` to its end: approve when it waits; after a kill, boot again
    /// (without failure points) on the same journal. Returns the last engine.
    async fn finish(&self, id: ReleaseId, mut b: Booted, fired: &AtomicUsize) -> Booted {
        let mut restarted = false;
        for _ in 0..4000 {
            // Killed: what ran dies with it; a new engine starts on the same journal.
            if fired.load(Ordering::SeqCst) > 0 && !restarted {
                b.task.await.unwrap();
                b = self.boot(FailPoints::default()).await;
                restarted = true;
                continue;
            }
            let r = self.journal.get(id).unwrap().release;
            if r.is_done() {
                // The journal is written before the actions: one round trip through
                // the engine's inbox waits for them.
                // (An engine killed meanwhile does not answer: restart it first.)
                if b.client.call(|reply| Cmd::Status { reply }).await.is_ok() {
                    return b;
                }
                continue;
            }
            if r.phase == Phase::AwaitingApproval {
                let _ = b
                    .client
                    .call(|reply| Cmd::Operator {
                        id,
                        event: Event::Approve,
                        reply,
                    })
                    .await;
            }
            tokio::time::sleep(self.poll).await;
        }
        panic!(
            "release {id} did not finish: {}",
            self.journal.get(id).unwrap().release.describe()
        );
    }

    /// Release v1 everywhere (the first deployment goes straight to stable).
    async fn seed(&self) -> Booted {
        let b = self.boot(FailPoints::default()).await;
        let id = self.deploy(&b, "1").await.unwrap();
        self.finish(id, b, &AtomicUsize::new(0)).await
    }
}

/// Kill at the `nth` (1-based) action of `kind`; `fired` counts the kills.
fn kill_at(kind: &'static str, nth: usize, fired: Arc<AtomicUsize>) -> FailPoints {
    let seen = AtomicUsize::new(0);
    FailPoints::with(Arc::new(move |p| {
        let FailPoint::BeforeAction(k) = p;
        if k != kind || seen.fetch_add(1, Ordering::SeqCst) + 1 != nth {
            return false;
        }
        fired.fetch_add(1, Ordering::SeqCst);
        true
    }))
}

/// How release v2 should end.
#[derive(Clone, Copy, Debug)]
enum Ending {
    Live,
    RolledBack,
}

/// Release v2 with a kill at the `nth` action of `kind`, then checks the end state.
async fn killed_at(kind: &'static str, nth: usize, ending: Ending) {
    let (url, received) = receiver().await;
    let h = Harness::new(
        config(Some(&url), "30ms"),
        Arc::new(SystemClock),
        Duration::from_millis(5),
    );
    let seeded = h.seed().await;
    seeded.task.abort();
    h.failing
        .store(matches!(ending, Ending::RolledBack), Ordering::SeqCst);
    let fired = Arc::new(AtomicUsize::new(0));
    let b = h.boot(kill_at(kind, nth, fired.clone())).await;
    let id = match h.deploy(&b, "2").await {
        Some(id) => id,
        // Killed before it could answer: the release is in the journal.
        None => h.journal.list(None, None, 1).unwrap()[0].release.id,
    };
    let b = h.finish(id, b, &fired).await;
    assert_eq!(
        fired.load(Ordering::SeqCst),
        1,
        "the failure point before {kind} #{nth} fired once: {:?}",
        h.journal
            .transitions(id)
            .unwrap()
            .iter()
            .map(|t| (&t.event, &t.actions))
            .collect::<Vec<_>>()
    );
    let r = h.journal.get(id).unwrap().release;
    let world = b.world.lock().unwrap().clone();
    let prod = &world["production"];
    let (version, tag) = match ending {
        Ending::Live => {
            assert_eq!(r.outcome, Some(Outcome::Succeeded), "{kind}: {r:?}");
            ("2", "live")
        }
        Ending::RolledBack => {
            assert!(
                matches!(&r.outcome, Some(Outcome::Failed { reason }) if reason.contains("analysis")),
                "{kind}: {:?}",
                r.outcome
            );
            ("1", "rolled-back")
        }
    };
    assert_eq!(
        prod.stable.as_deref(),
        Some(version),
        "{kind}: production serves"
    );
    assert_eq!(
        (prod.candidate.as_deref(), prod.weight),
        (None, 0),
        "{kind}"
    );
    assert_eq!(world["staging"].stable.as_deref(), Some("2"), "{kind}");
    assert_eq!(
        h.journal.live("m", "production").unwrap().unwrap().version,
        version
    );
    assert_eq!(
        h.journal.live("m", "staging").unwrap().unwrap().version,
        "2"
    );
    // The tags are written (the registry's call runs off the engine's loop).
    for _ in 0..400 {
        if h.journal.pending_tags(None).unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        h.registry.tag("2", "hoist.staging").as_deref(),
        Some("passed"),
        "{kind}"
    );
    assert_eq!(
        h.registry.tag("2", "hoist.production").as_deref(),
        Some(tag),
        "{kind}"
    );
    assert!(h.journal.pending_tags(None).unwrap().is_empty(), "{kind}");
    if let Ending::RolledBack = ending {
        let reason = h
            .registry
            .tag("2", "hoist.rollback_reason")
            .unwrap_or_default();
        assert!(
            reason.contains("error rate"),
            "{kind}: rollback_reason {reason:?}"
        );
    }
    // Every event of the release reached the receiver at least once.
    let last = match ending {
        Ending::Live => "promoted",
        Ending::RolledBack => "rolled_back",
    };
    let wanted = ["started", "gate_passed", "awaiting_approval", last];
    let mut missing = Vec::new();
    for _ in 0..1000 {
        let got = received.lock().unwrap().clone();
        missing = wanted
            .iter()
            .filter(|w| !got.iter().any(|(e, rel)| e == *w && *rel == id))
            .collect::<Vec<_>>();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(missing.is_empty(), "{kind}: never notified: {missing:?}");
    b.task.abort();
}

// ---------------------------------------------------------------- the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_each_action_of_a_successful_release() {
    for kind in ACTION_KINDS {
        if kind == "stop_candidate" {
            continue;
        }
        killed_at(kind, 1, Ending::Live).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_each_action_of_a_rollback() {
    for kind in ["stop_candidate", "tag", "mirror", "begin_analysis"] {
        killed_at(kind, 1, Ending::RolledBack).await;
    }
    // The rollback's own tags (rollback_reason, then hoist.production).
    killed_at("tag", 2, Ending::RolledBack).await;
    killed_at("tag", 3, Ending::RolledBack).await;
}

/// The defect this fixed: killed right after the journal wrote the release's final
/// transition, before its tag reached the registry. The release is finished, so
/// nothing resumes it; the journal's pending tag is written at restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_final_tag_the_tag_is_written_at_restart() {
    killed_at("tag", 2, Ending::Live).await;
}

/// The engine steps on paused time: two one-hour production steps pass in an instant
/// of real time, and a kill before the timer is set resumes the same pause.
#[tokio::test(start_paused = true)]
async fn hour_long_steps_on_paused_time() {
    let clock = Arc::new(TokioClock::new(1_700_000_000_000));
    let mut cfg = config(None, "1h");
    cfg.gates.clear();
    let h = Harness::new(cfg, clock.clone(), Duration::from_secs(10));
    let seeded = h.seed().await;
    seeded.task.abort();
    let fired = Arc::new(AtomicUsize::new(0));
    let b = h.boot(kill_at("wake_at", 2, fired.clone())).await;
    let started = clock.now_ms();
    let id = h.deploy(&b, "2").await.unwrap();
    let b = h.finish(id, b, &fired).await;
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    let r = h.journal.get(id).unwrap().release;
    assert_eq!(r.outcome, Some(Outcome::Succeeded));
    let hours = (clock.now_ms() - started) as f64 / 3_600_000.0;
    assert!(
        hours >= 2.0,
        "two one-hour steps took {hours} h of the engine's time"
    );
    let world = b.world.lock().unwrap().clone();
    assert_eq!(world["production"].stable.as_deref(), Some("2"));
    b.task.abort();
}
