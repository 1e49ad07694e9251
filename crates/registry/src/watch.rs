//! The polling watcher and the de-duplicated event stream.
//!
//! Owns: finding promotions in registries that cannot call us (older MLflow, stages,
//! the embedded registry) by comparing snapshots of where every alias and stage
//! points, and merging those events with webhook events so that one promotion yields
//! exactly one event. It must not act on events.
//!
//! # Expected flow
//! ```text
//! webhook::router ─┐
//!                  ├─► raw channel ─► dedupe() ─► subscriber (release engine, `hoist watch`)
//! spawn_poller ────┘
//! ```
//!
//! # Guarantees
//! - The first poll is a baseline: it reports nothing, so a restart does not replay
//!   every alias as a promotion.
//! - [`Dedup`] passes an alias or stage event only when it points somewhere other than
//!   the last passed event for the same (registry, model, alias/stage) said, or when
//!   that was longer ago than its window. A webhook and a poll seeing the same move
//!   therefore yield one event, whichever comes first; moving an alias back is a new
//!   event.
//!
//! # Caveats
//! - Snapshot polling ([`Poller`], for MLflow) sees states, not transitions: an alias
//!   moved twice between two polls is reported once, at its final version. A change
//!   is reported once two reads in a row agree on it ([`settle`]), so one read served
//!   from an older state (MLflow behind several workers or a replica) moves nothing.
//! - The embedded registry is better followed through its change log
//!   ([`ChangeLogPoller`]), which sees every transition.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::embedded::{ChangeKind, EmbeddedRegistry};
use crate::webhook::{Event, EventKind};
use crate::{Registry, Result};

/// What a pointer in a registry is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pointer {
    Alias(String),
    Stage(String),
}

/// Where every watched alias and stage points: (model, pointer) → version.
pub type Snapshot = BTreeMap<(String, Pointer), String>;

/// What to poll and how often.
#[derive(Debug, Clone)]
pub struct PollConfig {
    /// Time between two polls.
    pub interval: Duration,
    /// Only these models (`None`: every model in the registry).
    pub models: Option<Vec<String>>,
    /// Also watch stages (one version listing per model per poll; MLflow stages are
    /// deprecated, so this is off by default).
    pub stages: bool,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            interval: Duration::from_secs(10),
            models: None,
            stages: false,
        }
    }
}

/// Reads where every watched alias (and stage) of `registry` points now.
pub fn snapshot(registry: &dyn Registry, config: &PollConfig) -> Result<Snapshot> {
    let mut snap = Snapshot::new();
    let wanted = |name: &str| {
        config
            .models
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == name))
    };
    for m in registry.list_models()? {
        if !wanted(&m.name) {
            continue;
        }
        for (alias, version) in &m.aliases {
            snap.insert(
                (m.name.clone(), Pointer::Alias(alias.clone())),
                version.clone(),
            );
        }
        if config.stages {
            for v in registry.list_versions(&m.name)? {
                let Some(stage) = v.stage.filter(|s| s != "None") else {
                    continue;
                };
                // Newest first: the first version seen in a stage is its latest.
                snap.entry((m.name.clone(), Pointer::Stage(stage)))
                    .or_insert(v.version);
            }
        }
    }
    Ok(snap)
}

/// The events that lead from `old` to `new`.
pub fn diff(registry: &str, old: &Snapshot, new: &Snapshot) -> Vec<Event> {
    let event = |model: &str, p: &Pointer, version: Option<&String>, kind: EventKind| {
        let (alias, stage) = match p {
            Pointer::Alias(a) => (Some(a.clone()), None),
            Pointer::Stage(s) => (None, Some(s.clone())),
        };
        Event {
            registry: registry.to_string(),
            model: model.to_string(),
            version: version.cloned(),
            alias,
            stage,
            kind,
            delivery: None,
        }
    };
    let mut out = Vec::new();
    for ((model, p), version) in new {
        if old.get(&(model.clone(), p.clone())) != Some(version) {
            let kind = match p {
                Pointer::Alias(_) => EventKind::AliasSet,
                Pointer::Stage(_) => EventKind::StageChanged,
            };
            out.push(event(model, p, Some(version), kind));
        }
    }
    for ((model, p), version) in old {
        if matches!(p, Pointer::Alias(_)) && !new.contains_key(&(model.clone(), p.clone())) {
            out.push(event(model, p, Some(version), EventKind::AliasDeleted));
        }
    }
    out
}

/// Polls one registry: each call to [`Poller::poll`] returns what changed since the last.
pub struct Poller {
    registry: Arc<dyn Registry>,
    config: PollConfig,
    /// The previous snapshot; `None` before the baseline.
    last: Option<Snapshot>,
}

impl Poller {
    pub fn new(registry: Arc<dyn Registry>, config: PollConfig) -> Poller {
        Poller {
            registry,
            config,
            last: None,
        }
    }

    /// One poll. The first returns no events (it is the baseline).
    ///
    /// A poll that sees a change reads again at once and reports only what both reads
    /// agree on ([`settle`]): a registry behind several workers or replicas (MLflow
    /// with `--workers`, a read replica) can answer one read from an older state, and
    /// a snapshot that went back and forth would report a promotion nobody made.
    pub fn poll(&mut self) -> Result<Vec<Event>> {
        let now = snapshot(self.registry.as_ref(), &self.config)?;
        let Some(old) = self.last.take() else {
            self.last = Some(now);
            return Ok(Vec::new());
        };
        if diff("", &old, &now).is_empty() {
            self.last = Some(now);
            return Ok(Vec::new());
        }
        let again = match snapshot(self.registry.as_ref(), &self.config) {
            Ok(s) => s,
            Err(e) => {
                self.last = Some(old);
                return Err(e);
            }
        };
        let settled = settle(&old, &now, &again);
        let events = diff(&self.registry.id(), &old, &settled);
        self.last = Some(settled);
        Ok(events)
    }
}

/// What two reads taken one after the other agree on, over `old`: a pointer both
/// reads give the same target (or both lack) takes it; one they disagree on keeps
/// its `old` target until a later poll settles it.
pub fn settle(old: &Snapshot, first: &Snapshot, second: &Snapshot) -> Snapshot {
    let mut out = old.clone();
    for key in first.keys().chain(second.keys()).chain(old.keys()) {
        match (first.get(key), second.get(key)) {
            (a, b) if a != b => {}
            (Some(v), _) => {
                out.insert(key.clone(), v.clone());
            }
            (None, _) => {
                out.remove(key);
            }
        }
    }
    out
}

/// Anything that can be asked "what changed since you were last asked?".
pub trait Poll: Send + 'static {
    /// The events since the previous call (the first call may be a baseline).
    fn poll(&mut self) -> Result<Vec<Event>>;
    /// The registry's identity, for logs.
    fn registry_id(&self) -> String;
}

impl Poll for Poller {
    fn poll(&mut self) -> Result<Vec<Event>> {
        Poller::poll(self)
    }
    fn registry_id(&self) -> String {
        self.registry.id()
    }
}

/// Follows the embedded registry's change log ([`EmbeddedRegistry::changes_since`]):
/// every transition, in commit order, none missed between polls (unlike a snapshot).
pub struct ChangeLogPoller {
    registry: Arc<EmbeddedRegistry>,
    /// The last change already reported; `None` before the baseline.
    seq: Option<i64>,
}

impl ChangeLogPoller {
    /// Starts after the newest change at the first poll (history is not replayed).
    pub fn new(registry: Arc<EmbeddedRegistry>) -> ChangeLogPoller {
        ChangeLogPoller {
            registry,
            seq: None,
        }
    }

    /// Starts after change `seq` (a subscriber that persisted its position).
    pub fn after(registry: Arc<EmbeddedRegistry>, seq: i64) -> ChangeLogPoller {
        ChangeLogPoller {
            registry,
            seq: Some(seq),
        }
    }

    /// The last change reported.
    pub fn position(&self) -> Option<i64> {
        self.seq
    }
}

impl Poll for ChangeLogPoller {
    fn poll(&mut self) -> Result<Vec<Event>> {
        let Some(seq) = self.seq else {
            self.seq = Some(self.registry.last_change_seq()?);
            return Ok(Vec::new());
        };
        let id = self.registry.id();
        let mut out = Vec::new();
        let mut last = seq;
        for c in self.registry.changes_since(seq)? {
            last = c.seq;
            let (kind, alias, stage) = match c.kind {
                ChangeKind::VersionCreated => (EventKind::VersionCreated, None, None),
                ChangeKind::AliasSet { alias } => (EventKind::AliasSet, Some(alias), None),
                ChangeKind::AliasDeleted { alias } => (EventKind::AliasDeleted, Some(alias), None),
                ChangeKind::StageSet { stage: Some(stage) } => {
                    (EventKind::StageChanged, None, Some(stage))
                }
                // Leaving every stage promotes nothing.
                ChangeKind::StageSet { stage: None } => continue,
                ChangeKind::TagSet { key } => {
                    // The log keeps the key only; the value is the current one.
                    let value = self
                        .registry
                        .get_version(&c.name, &c.version)?
                        .tags
                        .get(&key)
                        .cloned()
                        .unwrap_or_default();
                    (EventKind::TagSet { key, value }, None, None)
                }
                ChangeKind::TagDeleted { key } => (EventKind::TagDeleted { key }, None, None),
            };
            out.push(Event {
                registry: id.clone(),
                model: c.name,
                version: Some(c.version),
                alias,
                stage,
                kind,
                delivery: None,
            });
        }
        self.seq = Some(last);
        Ok(out)
    }

    fn registry_id(&self) -> String {
        self.registry.id()
    }
}

/// A running poller thread. [`PollerHandle::stop`] stops it and waits; dropping the
/// handle stops it without waiting.
pub struct PollerHandle {
    /// Set to ask the thread to end after its current poll.
    stop: Arc<AtomicBool>,
    /// Joined by [`PollerHandle::stop`].
    thread: Option<JoinHandle<()>>,
}

impl PollerHandle {
    /// Stops the poller and waits for its thread (at most one poll: the sleep between
    /// polls is interrupted).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PollerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Polls `registry`'s aliases (and stages) every `config.interval` on its own thread
/// (registry calls block) and sends events to `sender`. See [`spawn`].
pub fn spawn_poller(
    registry: Arc<dyn Registry>,
    config: PollConfig,
    sender: mpsc::Sender<Event>,
) -> PollerHandle {
    let interval = config.interval;
    spawn(Poller::new(registry, config), interval, sender)
}

/// Runs `source` every `interval` on its own thread and sends its events to `sender`.
/// A failed poll is logged and retried next interval; the position is kept, so
/// nothing is lost or repeated across an outage. Ends when `sender`'s receiver closes
/// or on [`PollerHandle::stop`].
pub fn spawn(
    mut source: impl Poll,
    interval: Duration,
    sender: mpsc::Sender<Event>,
) -> PollerHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("hoist-poller".into())
        .spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let started = Instant::now();
                match source.poll() {
                    Ok(events) => {
                        for e in events {
                            if sender.blocking_send(e).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => tracing::warn!("poll of {} failed: {e}", source.registry_id()),
                }
                // Sleep in small steps so that stop() is prompt.
                while !flag.load(Ordering::SeqCst) && started.elapsed() < interval {
                    std::thread::sleep(
                        (interval.saturating_sub(started.elapsed())).min(Duration::from_millis(50)),
                    );
                }
            }
        })
        .expect("spawn poller thread");
    PollerHandle {
        stop,
        thread: Some(thread),
    }
}

/// Drops events already seen through another path (see the module's guarantees).
#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    /// (registry, model, pointer) → (version it points to or `None` once deleted, when passed).
    pointers: HashMap<(String, String, Pointer), (Option<String>, Instant)>,
    /// Any other event → when it was passed.
    others: HashMap<(String, String, Option<String>, EventKind), Instant>,
}

impl Dedup {
    pub fn new(window: Duration) -> Dedup {
        Dedup {
            window,
            pointers: HashMap::new(),
            others: HashMap::new(),
        }
    }

    /// Whether `e` is new at `now`; remembers it if so.
    pub fn admit(&mut self, e: &Event, now: Instant) -> bool {
        let window = self.window;
        let fresh = |at: &Instant| now.saturating_duration_since(*at) < window;
        self.others.retain(|_, at| fresh(at));
        let pointer = match (&e.alias, &e.stage) {
            (Some(a), _) => Some(Pointer::Alias(a.clone())),
            (None, Some(s)) => Some(Pointer::Stage(s.clone())),
            (None, None) => None,
        };
        match (pointer, &e.kind) {
            (Some(p), EventKind::AliasSet | EventKind::StageChanged | EventKind::AliasDeleted) => {
                let target = match e.kind {
                    EventKind::AliasDeleted => None,
                    _ => e.version.clone(),
                };
                let key = (e.registry.clone(), e.model.clone(), p);
                if let Some((last, at)) = self.pointers.get(&key)
                    && *last == target
                    && fresh(at)
                {
                    return false;
                }
                self.pointers.insert(key, (target, now));
                true
            }
            _ => {
                let key = (
                    e.registry.clone(),
                    e.model.clone(),
                    e.version.clone(),
                    e.kind.clone(),
                );
                if self.others.get(&key).is_some_and(fresh) {
                    return false;
                }
                self.others.insert(key, now);
                true
            }
        }
    }
}

/// Forwards events from `input` to `output`, dropping duplicates (window: how long a
/// repeated identical event counts as the same one). Ends when either side closes.
pub async fn dedupe(
    mut input: mpsc::Receiver<Event>,
    output: mpsc::Sender<Event>,
    window: Duration,
) {
    let mut d = Dedup::new(window);
    while let Some(e) = input.recv().await {
        if d.admit(&e, Instant::now()) && output.send(e).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(entries: &[(&str, Pointer, &str)]) -> Snapshot {
        entries
            .iter()
            .map(|(m, p, v)| ((m.to_string(), p.clone()), v.to_string()))
            .collect()
    }

    fn alias(a: &str) -> Pointer {
        Pointer::Alias(a.into())
    }

    #[test]
    fn a_change_is_reported_only_once_two_reads_agree_on_it() {
        let one = snap(&[("m", alias("champion"), "1")]);
        let two = snap(&[("m", alias("champion"), "2")]);
        let none = snap(&[]);
        // Both reads see the move: it is the new state.
        assert_eq!(settle(&one, &two, &two), two);
        // One read from an older state (a second worker, a replica): nothing moves yet.
        assert_eq!(settle(&two, &one, &two), two);
        assert_eq!(settle(&two, &two, &one), two);
        // Deletion, the same way.
        assert_eq!(settle(&one, &none, &none), none);
        assert_eq!(settle(&one, &none, &one), one);
        // Pointers the reads agree on settle even when another one does not.
        let old = snap(&[("m", alias("champion"), "1"), ("m", alias("beta"), "1")]);
        let a = snap(&[("m", alias("champion"), "2"), ("m", alias("beta"), "3")]);
        let b = snap(&[("m", alias("champion"), "2"), ("m", alias("beta"), "1")]);
        assert_eq!(
            settle(&old, &a, &b),
            snap(&[("m", alias("champion"), "2"), ("m", alias("beta"), "1")])
        );
        // A new pointer both reads see.
        assert_eq!(settle(&none, &one, &one), one);
    }

    #[test]
    fn diff_reports_moves_new_pointers_and_deletions() {
        let old = snap(&[("m", alias("champion"), "1"), ("m", alias("old"), "1")]);
        let new = snap(&[
            ("m", alias("champion"), "2"),
            ("m", Pointer::Stage("Production".into()), "2"),
        ]);
        let ev = diff("r", &old, &new);
        assert_eq!(ev.len(), 3, "{ev:?}");
        assert!(ev.iter().any(|e| e.kind == EventKind::AliasSet
            && e.alias.as_deref() == Some("champion")
            && e.version.as_deref() == Some("2")));
        assert!(
            ev.iter()
                .any(|e| e.kind == EventKind::StageChanged
                    && e.stage.as_deref() == Some("Production"))
        );
        assert!(
            ev.iter()
                .any(|e| e.kind == EventKind::AliasDeleted && e.alias.as_deref() == Some("old"))
        );
        assert!(diff("r", &new, &new).is_empty());
    }

    fn alias_set(version: &str, delivery: Option<&str>) -> Event {
        Event {
            registry: "r".into(),
            model: "m".into(),
            version: Some(version.into()),
            alias: Some("champion".into()),
            stage: None,
            kind: EventKind::AliasSet,
            delivery: delivery.map(str::to_string),
        }
    }

    #[test]
    fn one_promotion_seen_twice_is_one_event() {
        let mut d = Dedup::new(Duration::from_secs(600));
        let t = Instant::now();
        assert!(d.admit(&alias_set("2", Some("w1")), t));
        // The poller sees the same move a little later.
        assert!(!d.admit(&alias_set("2", None), t + Duration::from_secs(3)));
        // A webhook retry with another delivery id, same move.
        assert!(!d.admit(&alias_set("2", Some("w2")), t + Duration::from_secs(4)));
        // Moving on, and moving back, are new promotions.
        assert!(d.admit(&alias_set("3", None), t + Duration::from_secs(5)));
        assert!(d.admit(&alias_set("2", Some("w3")), t + Duration::from_secs(6)));
        // Re-setting the same alias long after counts again.
        assert!(d.admit(&alias_set("2", None), t + Duration::from_secs(700)));
        // Deletion is its own state.
        let mut del = alias_set("2", None);
        del.kind = EventKind::AliasDeleted;
        assert!(d.admit(&del, t + Duration::from_secs(701)));
        assert!(!d.admit(&del, t + Duration::from_secs(702)));
        // Other kinds de-duplicate on their identity.
        let mut created = alias_set("4", Some("w9"));
        created.alias = None;
        created.kind = EventKind::VersionCreated;
        assert!(d.admit(&created, t));
        assert!(!d.admit(&created, t + Duration::from_secs(1)));
    }

    #[test]
    fn the_change_log_poller_reports_every_embedded_transition_once() {
        let home = std::env::temp_dir().join(format!(
            "hoist-watch-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&home);
        let reg = Arc::new(EmbeddedRegistry::open(&home).unwrap());
        let pkg = home.join("pkg.onnx");
        std::fs::write(&pkg, b"not really onnx, but bytes").unwrap();
        let no_tags = BTreeMap::new();
        reg.register(&pkg, "m", &no_tags, Some("champion")).unwrap();
        let mut p = ChangeLogPoller::new(reg.clone());
        assert!(p.poll().unwrap().is_empty(), "history is not replayed");
        std::fs::write(&pkg, b"other bytes").unwrap();
        reg.register(&pkg, "m", &no_tags, None).unwrap();
        reg.set_alias("m", "champion", "2").unwrap();
        reg.set_tag("m", "2", "hoist.staging", "passed").unwrap();
        let ev = p.poll().unwrap();
        let kinds: Vec<&EventKind> = ev.iter().map(|e| &e.kind).collect();
        assert_eq!(
            kinds,
            [
                &EventKind::VersionCreated,
                &EventKind::AliasSet,
                &EventKind::TagSet {
                    key: "hoist.staging".into(),
                    value: "passed".into()
                }
            ],
            "{ev:?}"
        );
        assert_eq!(ev[1].alias.as_deref(), Some("champion"));
        assert_eq!(ev[1].version.as_deref(), Some("2"));
        assert!(ev.iter().all(|e| e.registry == reg.id()));
        assert!(p.poll().unwrap().is_empty(), "nothing twice");
        let _ = std::fs::remove_dir_all(&home);
    }

    #[tokio::test]
    async fn dedupe_forwards_each_promotion_once() {
        let (raw_tx, raw_rx) = mpsc::channel(16);
        let (out_tx, mut out_rx) = mpsc::channel(16);
        let task = tokio::spawn(dedupe(raw_rx, out_tx, Duration::from_secs(60)));
        for e in [
            alias_set("2", Some("w")),
            alias_set("2", None),
            alias_set("3", None),
        ] {
            raw_tx.send(e).await.unwrap();
        }
        drop(raw_tx);
        task.await.unwrap();
        let mut got = Vec::new();
        while let Some(e) = out_rx.recv().await {
            got.push(e.version.unwrap());
        }
        assert_eq!(got, ["2", "3"]);
    }
}
