//! The local target: supervised `hoist-server` processes on this machine.
//!
//! # Expected flow
//! 1. [`Supervised::start`] spawns a supervisor task, which launches the child on
//!    port 0 and reports its address once `/v2/health/ready` says 200 (or the error,
//!    with the child's stderr tail).
//! 2. The supervisor waits on the child. An unexpected exit starts a restart on the
//!    *same port* after a backoff ([`INITIAL_BACKOFF`], doubling, at most
//!    [`MAX_BACKOFF`]; back to the start once a child has run [`HEALTHY_RESET`]).
//! 3. [`MAX_START_FAILURES`] restarts in a row that do not become ready mark the
//!    replica [`Status::Failed`] with the last reason; the supervisor gives up.
//! 4. [`Supervised::stop`] sends SIGTERM (hoist-server stops answering ready, drains
//!    the requests in flight and exits), waits up to the grace period, then SIGKILL.
//!
//! # Guarantees
//! - No orphans: dropping a [`Supervised`] that was not stopped SIGKILLs its child at
//!   once; every child has `PR_SET_PDEATHSIG` = SIGTERM, so a daemon that dies, even
//!   by SIGKILL, takes its model servers with it.
//! - Children stay in the daemon's process group: a Ctrl-C in a terminal reaches
//!   them too (the daemon handles SIGINT by stopping them gracefully).
//!
//! # Caveats
//! `PR_SET_PDEATHSIG` follows the *thread* that forked the child. Children are forked
//! by the supervisor task, so on a runtime worker thread whichever thread calls
//! [`Supervised::start`]; with a current-thread runtime that is the thread running
//! `block_on`, which must outlive the replicas. Tasks that call `block_in_place` on
//! the same runtime can retire a worker thread early (see `child::launch`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::child::{Running, group_running, launch, signal_server};
use crate::error::{Error, Result};
use crate::program::{ServerKind, ServerProgram};

/// Default for [`ServerSpec::ready_timeout`].
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The wait before the first restart after a crash.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between restarts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A child that ran this long counts as healthy: the backoff starts over.
pub const HEALTHY_RESET: Duration = Duration::from_secs(30);
/// Restarts in a row that fail to become ready before the replica is `Failed`.
pub const MAX_START_FAILURES: u32 = 5;

/// What to run, and how: one model, one server program.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// `hoist-server`, or `hoist serve`.
    pub program: ServerProgram,
    /// A model package directory or `.onnx` file.
    pub model_path: PathBuf,
    /// The name clients use (`/v2/models/NAME`).
    pub model_name: String,
    /// The version clients see.
    pub model_version: String,
    /// More `hoist-server` flags, e.g. `["--runtime", "tract"]` or `["--workers", "1"]`.
    pub extra_args: Vec<String>,
    /// Environment variables set for the child (on top of ours).
    pub env: Vec<(String, String)>,
    /// The child's stdout and stderr are appended here. Without it, its stderr is
    /// copied to ours and its stdout dropped. Either way the last ~4 KiB of its
    /// stderr are kept for error messages.
    pub log_file: Option<PathBuf>,
    /// How long a child may take from spawn to ready (default 30 s).
    pub ready_timeout: Duration,
    /// A shared server: `hoist-server --model-repository DIR` serving every model
    /// package (or link to one) in `DIR`, instead of `--model P --name N
    /// --model-version V`. `model_name` then only names the server in messages.
    pub repository: Option<PathBuf>,
}

impl ServerSpec {
    /// A spec with no extra flags, no extra environment, no log file and the default
    /// ready timeout.
    pub fn new(
        program: ServerProgram,
        model_path: impl Into<PathBuf>,
        model_name: impl Into<String>,
        model_version: impl Into<String>,
    ) -> ServerSpec {
        ServerSpec {
            program,
            model_path: model_path.into(),
            model_name: model_name.into(),
            model_version: model_version.into(),
            extra_args: Vec::new(),
            env: Vec::new(),
            log_file: None,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            repository: None,
        }
    }
}

/// Where a supervised replica is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The first child is starting (not visible through [`Supervised::start`], which
    /// returns once it is ready).
    Starting,
    /// A child is ready or serving.
    Running,
    /// The child exited unexpectedly; restart number `attempt` (1-based, counting
    /// since the last ready child) is waiting or starting.
    Restarting { attempt: u32 },
    /// Restarts kept failing; supervision gave up. `reason` is the last error.
    Failed { reason: String },
    /// Stopped on request.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Starting => f.write_str("starting"),
            Status::Running => f.write_str("running"),
            Status::Restarting { attempt } => write!(f, "restarting (attempt {attempt})"),
            Status::Failed { reason } => write!(f, "failed: {reason}"),
            Status::Stopped => f.write_str("stopped"),
        }
    }
}

/// State shared by a [`Supervised`] handle and its supervisor task.
pub(crate) struct Shared {
    /// The model name, for messages.
    model: String,
    /// Which server the children are.
    kind: ServerKind,
    /// Each child leads a process group of its own (MLflow's server): every signal
    /// goes to the group.
    group: bool,
    state: Mutex<State>,
}

struct State {
    status: Status,
    /// The live child's pid, so `Drop` can kill it synchronously.
    pid: Option<u32>,
    /// Replacement children spawned so far.
    restarts: u32,
    /// Set by `Drop`: no child may live any more.
    stopping: bool,
}

impl Shared {
    /// Records the live child's pid. Returns false (and records nothing) when the
    /// handle is being dropped: the caller must kill that child.
    pub(crate) fn set_pid(&self, pid: Option<u32>) -> bool {
        let mut s = self.state.lock().unwrap();
        if pid.is_some() && s.stopping {
            return false;
        }
        s.pid = pid;
        true
    }

    fn set_status(&self, status: Status) {
        self.state.lock().unwrap().status = status;
    }

    fn stopping(&self) -> bool {
        self.state.lock().unwrap().stopping
    }
}

/// What the handle asks of its supervisor.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Control {
    Run,
    /// Stop: SIGTERM, then SIGKILL after the grace period.
    Stop(Duration),
}

/// One supervised replica: a `hoist-server` child, restarted on the same port when
/// it dies. Dropping it kills the child; [`Supervised::stop`] stops it gracefully.
pub struct Supervised {
    /// The address clients use; the same for every restarted child.
    addr: SocketAddr,
    /// Status, pid and restarts, written by the supervisor task.
    shared: Arc<Shared>,
    /// Tells the supervisor to stop; dropping it tells it to kill.
    control: watch::Sender<Control>,
    /// The supervisor task.
    task: Option<JoinHandle<()>>,
    /// Set once `stop` completed: `Drop` has nothing left to do.
    stopped: bool,
}

impl Supervised {
    /// Spawns `program leading_args --model P --name N --model-version V --host
    /// 127.0.0.1 --port 0 extra_args`, reads `listening on http://ADDR` from its
    /// stdout, then waits until `GET /v2/health/ready` answers 200 (hoist-server is
    /// ready only after the model answered its input example), all within
    /// `spec.ready_timeout`. On failure the child is gone and the error carries the
    /// tail of its stderr.
    pub async fn start(spec: ServerSpec) -> Result<Supervised> {
        let model = spec.model_name.clone();
        let shared = Arc::new(Shared {
            model: model.clone(),
            kind: spec.program.kind,
            group: spec.program.kind == ServerKind::Mlflow,
            state: Mutex::new(State {
                status: Status::Starting,
                pid: None,
                restarts: 0,
                stopping: false,
            }),
        });
        let (control, control_rx) = watch::channel(Control::Run);
        let (ready_tx, ready_rx) = oneshot::channel();
        // The handle exists before the child does: if this future is dropped while
        // the child starts, the handle's Drop kills it.
        let mut handle = Supervised {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            shared: shared.clone(),
            control,
            task: None,
            stopped: false,
        };
        handle.task = Some(tokio::spawn(supervise(spec, shared, control_rx, ready_tx)));
        match ready_rx.await {
            Ok(Ok(addr)) => {
                handle.addr = addr;
                Ok(handle)
            }
            Ok(Err(e)) => {
                handle.stopped = true;
                Err(e)
            }
            Err(_) => Err(Error::SupervisorGone { model }),
        }
    }

    /// The address clients use: `127.0.0.1:PORT`, stable across restarts.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Which server this replica runs (hoist-server or MLflow's).
    pub fn kind(&self) -> ServerKind {
        self.shared.kind
    }

    /// The live child's pid; `None` between a crash and its replacement.
    pub fn pid(&self) -> Option<u32> {
        self.shared.state.lock().unwrap().pid
    }

    /// Replacement children spawned after unexpected exits (each attempt counts,
    /// ready or not).
    pub fn restarts(&self) -> u32 {
        self.shared.state.lock().unwrap().restarts
    }

    /// Where the replica is in its life.
    pub fn status(&self) -> Status {
        self.shared.state.lock().unwrap().status.clone()
    }

    /// Graceful stop: supervision ends first (no restart), then SIGTERM
    /// (hoist-server drains the requests in flight and exits), up to `grace`, then
    /// SIGKILL. Returns once the child is reaped.
    pub async fn stop(mut self, grace: Duration) {
        // From here on no new child may live (a restart in progress kills its own).
        self.shared.state.lock().unwrap().stopping = true;
        // If the supervisor already ended (Failed), there is no child to stop.
        let _ = self.control.send(Control::Stop(grace));
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        {
            let mut s = self.shared.state.lock().unwrap();
            s.stopping = true;
            s.status = Status::Stopped;
            s.pid = None;
        }
        self.stopped = true;
    }
}

impl Drop for Supervised {
    /// Not stopped: SIGKILL the child now, synchronously (then the supervisor, seeing
    /// the handle gone, reaps it and ends).
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        let pid = {
            let mut s = self.shared.state.lock().unwrap();
            s.stopping = true;
            if !matches!(s.status, Status::Failed { .. }) {
                s.status = Status::Stopped;
            }
            s.pid.take()
        };
        if let Some(pid) = pid {
            // A pid this handle's child holds (it is not reaped before the
            // supervisor clears the pid under the same lock).
            signal_server(pid, self.shared.group, libc::SIGKILL);
        }
    }
}

impl std::fmt::Debug for Supervised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervised")
            .field("model", &self.shared.model)
            .field("addr", &self.addr)
            .field("pid", &self.pid())
            .field("restarts", &self.restarts())
            .field("status", &self.status())
            .finish()
    }
}

/// Starts `n` replicas of `spec` concurrently, each on its own port. If any fails,
/// the others are stopped (or killed while starting) and the first error returned.
pub async fn start_replicas(spec: &ServerSpec, n: usize) -> Result<Vec<Supervised>> {
    let mut starting = JoinSet::new();
    for i in 0..n {
        let spec = spec.clone();
        starting.spawn(async move { (i, Supervised::start(spec).await) });
    }
    let mut started = Vec::with_capacity(n);
    let mut failure = None;
    while let Some(joined) = starting.join_next().await {
        match joined {
            Ok((i, Ok(s))) => started.push((i, s)),
            Ok((_, Err(e))) => {
                if failure.is_none() {
                    failure = Some(e);
                    // The handles of the replicas still starting drop with their
                    // tasks, which kills their children.
                    starting.abort_all();
                }
            }
            Err(join) if join.is_cancelled() => {}
            Err(_) => {
                failure.get_or_insert(Error::SupervisorGone {
                    model: spec.model_name.clone(),
                });
                starting.abort_all();
            }
        }
    }
    if let Some(e) = failure {
        let mut stopping = JoinSet::new();
        for (_, s) in started {
            stopping.spawn(s.stop(Duration::from_secs(5)));
        }
        while stopping.join_next().await.is_some() {}
        return Err(e);
    }
    started.sort_by_key(|(i, _)| *i);
    Ok(started.into_iter().map(|(_, s)| s).collect())
}

/// Completes with `Some(grace)` when a stop is requested, or `None` when the handle
/// is gone (dropped: kill at once).
async fn stop_requested(control: &mut watch::Receiver<Control>) -> Option<Duration> {
    loop {
        if let Control::Stop(grace) = *control.borrow_and_update() {
            return Some(grace);
        }
        if control.changed().await.is_err() {
            return None;
        }
    }
}

/// Exponential backoff between restarts.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            next: INITIAL_BACKOFF,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(MAX_BACKOFF);
        d
    }
}

/// The supervisor task of one replica: first start, then wait, restart, stop.
async fn supervise(
    spec: ServerSpec,
    shared: Arc<Shared>,
    mut control: watch::Receiver<Control>,
    ready_tx: oneshot::Sender<Result<SocketAddr>>,
) {
    let model = spec.model_name.clone();
    let first = tokio::select! {
        r = launch(&spec, 0, &shared) => r,
        // Only a dropped handle gets here (start has not returned it yet).
        _ = stop_requested(&mut control) => return,
    };
    let mut running = match first {
        Ok(r) => r,
        Err(e) => {
            shared.set_status(Status::Failed {
                reason: e.to_string(),
            });
            let _ = ready_tx.send(Err(e));
            return;
        }
    };
    shared.set_status(Status::Running);
    let addr = running.addr;
    if ready_tx.send(Ok(addr)).is_err() {
        // start() was cancelled; its handle's Drop killed the child already.
        let _ = running.child.kill().await;
        return;
    }

    let mut backoff = Backoff::new();
    loop {
        let ready_at = Instant::now();
        let exit = tokio::select! {
            status = running.child.wait() => status,
            stop = stop_requested(&mut control) => {
                terminate(&mut running, stop.unwrap_or(Duration::ZERO)).await;
                shared.set_pid(None);
                shared.set_status(Status::Stopped);
                return;
            }
        };
        shared.set_pid(None);
        if shared.stopping() {
            // Drop killed it.
            return;
        }
        if running.group
            && let Some(pgid) = running.pgid
        {
            // What is left of its group (MLflow's uvicorn) would hold the port the
            // replacement needs.
            signal_server(pgid, true, libc::SIGKILL);
        }
        let stderr = running.stderr_tail().await;
        let last_line = stderr.lines().rev().find(|l| !l.trim().is_empty());
        match &exit {
            Ok(status) => tracing::warn!(
                model = %model, %addr, %status, stderr = last_line.unwrap_or(""),
                "model server exited unexpectedly; restarting it"
            ),
            Err(e) => tracing::warn!(
                model = %model, %addr, error = %e,
                "cannot wait on the model server; restarting it"
            ),
        }
        if ready_at.elapsed() >= HEALTHY_RESET {
            backoff = Backoff::new();
        }

        let mut failures = 0;
        running = loop {
            shared.set_status(Status::Restarting {
                attempt: failures + 1,
            });
            let delay = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop_requested(&mut control) => {
                    shared.set_status(Status::Stopped);
                    return;
                }
            }
            shared.state.lock().unwrap().restarts += 1;
            let attempt = tokio::select! {
                r = launch(&spec, addr.port(), &shared) => r,
                // The launch drops, killing its child.
                _ = stop_requested(&mut control) => {
                    shared.set_status(Status::Stopped);
                    return;
                }
            };
            match attempt {
                Ok(r) => break r,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(model = %model, %addr, attempt = failures, error = %e, "restart failed");
                    if shared.stopping() {
                        return;
                    }
                    if failures >= MAX_START_FAILURES {
                        tracing::error!(model = %model, %addr, "giving up after {failures} failed restarts");
                        shared.set_status(Status::Failed {
                            reason: format!("{failures} restarts in a row failed; the last: {e}"),
                        });
                        return;
                    }
                }
            }
        };
        if running.addr != addr {
            // Cannot happen with hoist-server (it listens where it is told); a
            // replica that moved would be unreachable, so treat it as a failure.
            tracing::error!(model = %model, expected = %addr, got = %running.addr, "restarted model server listens elsewhere");
        }
        shared.set_status(Status::Running);
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL; always reaps. A child that leads a
/// process group (MLflow's server) is stopped as a group: SIGTERM to all, then up to
/// `grace` until none of them runs (uvicorn drains after its parent is gone), then
/// SIGKILL to what is left.
async fn terminate(running: &mut Running, grace: Duration) {
    let deadline = Instant::now() + grace;
    if let Some(pid) = running.child.id() {
        signal_server(pid, running.group, libc::SIGTERM);
    }
    if tokio::time::timeout_at(deadline, running.child.wait())
        .await
        .is_err()
    {
        let _ = running.child.kill().await;
    }
    if running.group
        && let Some(pgid) = running.pgid
    {
        while group_running(pgid) && Instant::now() < deadline {
            tokio::time::sleep(crate::child::PROBE_INTERVAL).await;
        }
        signal_server(pgid, true, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_and_errors_cross_tasks() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Supervised>();
        send_sync::<Error>();
        send_sync::<ServerSpec>();
        assert_eq!(
            Status::Restarting { attempt: 2 }.to_string(),
            "restarting (attempt 2)"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::new();
        let delays: Vec<_> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[tokio::test]
    async fn a_missing_program_is_a_clear_error() {
        let spec = ServerSpec::new(
            ServerProgram::binary("/nonexistent/hoist-server"),
            "/nonexistent/model",
            "m",
            "1",
        );
        let err = Supervised::start(spec).await.unwrap_err();
        assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/hoist-server"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_program_that_exits_at_once_shows_its_stderr() {
        let spec = ServerSpec::new(
            ServerProgram {
                program: "/bin/sh".into(),
                leading_args: vec!["-c".into(), "echo 'no such model' >&2; exit 3".into()],
                kind: ServerKind::Hoist,
            },
            "/m",
            "m",
            "1",
        );
        let err = Supervised::start(spec).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, Error::ExitedBeforeListening { .. }),
            "{err:?}"
        );
        assert!(msg.contains("no such model") && msg.contains("3"), "{msg}");
    }

    #[tokio::test]
    async fn a_program_that_never_gets_ready_times_out_and_is_killed() {
        // Prints an address nobody listens on, then sleeps.
        let mut spec = ServerSpec::new(
            ServerProgram {
                program: "/bin/sh".into(),
                leading_args: vec![
                    "-c".into(),
                    "echo 'listening on http://127.0.0.1:9'; echo waiting >&2; exec sleep 60"
                        .into(),
                ],
                kind: ServerKind::Hoist,
            },
            "/m",
            "m",
            "1",
        );
        spec.ready_timeout = Duration::from_millis(500);
        let err = Supervised::start(spec).await.unwrap_err();
        assert!(
            matches!(err, Error::NotReady { addr: Some(_), .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("waiting"), "{err}");
    }
}
