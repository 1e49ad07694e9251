//! One model server process: spawn it, capture its output, wait for its address and
//! for readiness.
//!
//! # Expected flow
//! 1. Spawn `program leading_args --model P --name N --model-version V --host
//!    127.0.0.1 --port PORT extra_args` with stdout and stderr piped.
//! 2. A reader task per stream copies lines to the log file (stderr goes to our own
//!    stderr when there is no log file) and keeps the last [`TAIL_BYTES`] of stderr.
//! 3. The stdout reader reports the address from `listening on http://ADDR`.
//! 4. `GET /v2/health/ready` every [`PROBE_INTERVAL`] until it answers 200.
//!
//! The child's death or `ready_timeout` at any step ends the launch with an error
//! that carries the stderr tail; on timeout the child is killed and reaped.
//!
//! MLflow's scoring server ([`ServerKind::Mlflow`]) differs in three places: hoist
//! picks its port (it cannot listen on port 0 and report it), so there is no
//! address line to wait for; readiness is `GET /ping`; and it runs in a process
//! group of its own, because it serves from a uvicorn grandchild that every signal
//! must reach ([`signal_server`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::local::{ServerSpec, Shared};
use crate::probe;
use crate::program::ServerKind;

/// How much of a child's stderr is kept for error messages.
pub const TAIL_BYTES: usize = 4096;
/// Time between readiness probes.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(25);
/// The line `hoist-server` prints on stdout once it listens.
const LISTENING: &str = "listening on http://";

/// A child that printed its address and answered ready.
pub(crate) struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    /// The child leads a process group of its own: signals go to the group.
    pub group: bool,
    /// The child's pid, kept after it is reaped: the id of its process group.
    pub pgid: Option<u32>,
    stderr: Arc<Mutex<Tail>>,
    stderr_reader: JoinHandle<()>,
}

impl Running {
    /// The stderr tail once the child is gone (waits briefly for the reader to drain
    /// the pipe).
    pub async fn stderr_tail(&mut self) -> String {
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.stderr_reader).await;
        self.stderr.lock().unwrap().text()
    }
}

/// Starts one child on `port` (0: any) and waits until it is ready, within
/// `spec.ready_timeout`. The child's pid is published in `shared` while it lives.
///
/// # Caveats
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the
/// process. Spawn only from threads that live as long as the supervisor: a tokio
/// runtime worker (any `async fn` running in a spawned task, as here) or the thread
/// that runs `block_on`. Never spawn from `spawn_blocking`: the blocking pool retires
/// idle threads after a few seconds, and the child would receive SIGTERM with them.
/// (`block_in_place` has the same hazard: the worker thread that calls it may end up
/// a blocking-pool thread. The supervisor itself never calls either.)
pub(crate) async fn launch(spec: &ServerSpec, port: u16, shared: &Shared) -> Result<Running> {
    let model = spec.model_name.clone();
    let log = match &spec.log_file {
        Some(path) => Some(Arc::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| Error::LogFile {
                    path: path.clone(),
                    source,
                })?,
        )),
        None => None,
    };

    let kind = spec.program.kind;
    let port = match kind {
        ServerKind::Mlflow if port == 0 => free_port().map_err(|source| Error::Io {
            model: model.clone(),
            source,
        })?,
        _ => port,
    };
    let mut cmd = Command::new(&spec.program.program);
    cmd.args(&spec.program.leading_args);
    match kind {
        ServerKind::Hoist if let Some(dir) = &spec.repository => {
            cmd.arg("--model-repository").arg(dir).args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ]);
        }
        ServerKind::Hoist => {
            cmd.arg("--model")
                .arg(&spec.model_path)
                .arg("--name")
                .arg(&spec.model_name)
                .arg("--model-version")
                .arg(&spec.model_version)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()]);
        }
        ServerKind::Mlflow => {
            cmd.arg("-m")
                .arg(&spec.model_path)
                .args(["--env-manager", "local", "-h", "127.0.0.1", "-p"])
                .arg(port.to_string())
                // MLflow runs `uvicorn` by name: the one beside this python.
                .env("PATH", path_with(&spec.program.program))
                // Its log lines reach the log file as they are written.
                .env("PYTHONUNBUFFERED", "1")
                .process_group(0);
        }
    }
    cmd.args(&spec.extra_args)
        // anyhow reads RUST_LIB_BACKTRACE before RUST_BACKTRACE: with RUST_BACKTRACE=1
        // in our environment, hoist-server's one-line "Error: ..." would come with a
        // stack trace that pushes it out of the stderr tail. Panics keep theirs.
        .envs(
            std::env::var_os("RUST_LIB_BACKTRACE")
                .is_none()
                .then_some(("RUST_LIB_BACKTRACE", "0")),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Whoever drops the child without reaping it kills it (the supervisor reaps
        // it in every ordinary path; this covers a runtime shutting down).
        .kill_on_drop(true);
    // Our credentials stay ours: the operator token (which would switch on the
    // child's /admin endpoints with the daemon's own token), registry and webhook
    // secrets. `spec.env` comes after, so a caller can still hand a child a
    // credential of its own on purpose.
    for name in withheld_env() {
        cmd.env_remove(name);
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // The child gets SIGTERM (and drains, as on any SIGTERM) when the thread
            // that forked it dies: see the caveat on `launch`.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) == -1
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would
            // ever send the signal, so do not start at all.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        program: spec.program.program.clone(),
        source,
    })?;
    let pid = child.id();
    if let Some(pid) = pid
        && !shared.set_pid(Some(pid))
    {
        // The handle was dropped while we spawned: this child must not live.
        let _ = child.start_kill();
    }
    tracing::debug!(model = %model, pid, port, "model server spawned");

    let tail = Arc::new(Mutex::new(Tail::default()));
    let stderr_reader = tokio::spawn(copy_lines(
        child.stderr.take().expect("stderr is piped"),
        log.clone(),
        Some(tail.clone()),
        None,
    ));
    let (addr_tx, mut addr_rx) = oneshot::channel();
    tokio::spawn(copy_lines(
        child.stdout.take().expect("stdout is piped"),
        log,
        None,
        Some(addr_tx),
    ));
    let mut launching = Launching {
        child: Some(child),
        tail,
        stderr_reader: Some(stderr_reader),
        shared,
        model,
        group: kind == ServerKind::Mlflow,
        pid,
    };

    let started = Instant::now();
    let deadline = started + spec.ready_timeout;
    let child = launching.child.as_mut().expect("child");
    let addr = if kind == ServerKind::Mlflow {
        // Told where to listen: nothing to read from its output.
        SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port))
    } else {
        tokio::select! {
        // An address that arrived counts even if the child died right after it.
        biased;
        addr = &mut addr_rx => match addr {
            Ok(addr) => addr,
            // stdout closed without the line: the child is exiting (or is not
            // hoist-server); its exit status says which.
            Err(_) => match tokio::time::timeout_at(deadline, child.wait()).await {
                Ok(status) => return Err(launching.exited(status, None).await),
                Err(_) => return Err(launching.timed_out(None, spec.ready_timeout).await),
            },
        },
        status = child.wait() => {
            // The stdout reader may not have seen the address yet: the pipe is at
            // EOF now, so it will have in a moment.
            let addr = tokio::time::timeout(Duration::from_secs(1), &mut addr_rx)
                .await
                .ok()
                .and_then(Result::ok);
            return Err(launching.exited(status, addr).await);
        }
        _ = tokio::time::sleep_until(deadline) => {
            return Err(launching.timed_out(None, spec.ready_timeout).await);
        }
        }
    };
    tracing::debug!(model = %launching.model, %addr, "model server listening; waiting until ready");

    let child = launching.child.as_mut().expect("child");
    let ready_path = match kind {
        ServerKind::Hoist => probe::READY_PATH,
        ServerKind::Mlflow => probe::MLFLOW_READY_PATH,
    };
    let ready = async {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let probe_timeout = left.min(Duration::from_secs(2));
            if probe::get_status(addr, ready_path, probe_timeout).await == Some(200) {
                return true;
            }
            tokio::time::sleep(
                PROBE_INTERVAL.min(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
        }
    };
    tokio::select! {
        ready = ready => {
            if !ready {
                return Err(launching.timed_out(Some(addr), spec.ready_timeout).await);
            }
        }
        status = child.wait() => return Err(launching.exited(status, Some(addr)).await),
    }
    tracing::info!(
        model = %launching.model,
        %addr,
        pid,
        ready_ms = started.elapsed().as_millis() as u64,
        "model server ready"
    );
    Ok(launching.into_running(addr))
}

/// A port on 127.0.0.1 that was free a moment ago, for a server that must be told
/// its port. Another process may take it before the server binds it: the server
/// then exits at once and this start fails (restarts keep the replica's port).
fn free_port() -> std::io::Result<u16> {
    Ok(
        std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port(),
    )
}

/// `PATH` with the directory of `program` first (and our own `PATH` after it).
fn path_with(program: &std::path::Path) -> std::ffi::OsString {
    let ours = std::env::var_os("PATH").unwrap_or_default();
    let dirs = program
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(std::path::Path::to_path_buf)
        .into_iter()
        .chain(std::env::split_paths(&ours));
    std::env::join_paths(dirs).unwrap_or(ours)
}

/// Sends `signal` to a model server: to its whole process group when it leads one
/// (MLflow's server and its uvicorn), else to the process alone.
pub(crate) fn signal_server(pid: u32, group: bool, signal: libc::c_int) {
    let target = if group {
        -(pid as libc::pid_t)
    } else {
        pid as libc::pid_t
    };
    // SAFETY: kill(2) on our own child (or the group it leads), not yet reaped.
    unsafe {
        libc::kill(target, signal);
    }
}

/// Whether any process of the group `pgid` is still running (a zombie, whose parent
/// has not reaped it, no longer counts): read from `/proc`.
pub(crate) fn group_running(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .any(|stat| {
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("Z");
            let pgrp = fields.nth(1).and_then(|p| p.parse::<u32>().ok());
            pgrp == Some(pgid) && state != "Z" && state != "X"
        })
}

/// Variables a model server never inherits: they hold credentials of whoever starts
/// it. `HOIST_ADMIN_TOKEN`/`HOIST_ADMIN_TOKEN_FILE` would switch on the server's
/// `/admin/*` endpoints with the daemon's token; the rest are registry and webhook
/// credentials a model server has no use for. `hoist-server` reads only
/// `HOIST_MODEL`, `HOIST_LOG`, `MODEL_AUTO_REFRESH_SECONDS`, `ORT_DYLIB_PATH`,
/// `HOIST_HOME`, `HOME`, `RUST_LOG` and the admin token variables.
const WITHHELD: &[&str] = &[
    "HOIST_ADMIN_TOKEN",
    "HOIST_ADMIN_TOKEN_FILE",
    "HOIST_WEBHOOK_SECRET",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
];

/// Name fragments that mark a variable as a credential (matched case-insensitively):
/// `AWS_SECRET_ACCESS_KEY`, `GITHUB_TOKEN`, `PGPASSWORD`, `OPENAI_API_KEY`, ...
const SECRET_MARKS: &[&str] = &[
    "TOKEN",
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "CREDENTIAL",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
];

/// Whether a model server must not inherit the variable `name`.
pub(crate) fn withheld_from_servers(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    WITHHELD.contains(&upper.as_str()) || SECRET_MARKS.iter().any(|m| upper.contains(m))
}

/// The names in our environment that [`withheld_from_servers`] names.
fn withheld_env() -> Vec<std::ffi::OsString> {
    std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k.to_str().is_some_and(withheld_from_servers))
        .collect()
}

/// A child between spawn and ready, with what an error message needs.
struct Launching<'a> {
    child: Option<Child>,
    tail: Arc<Mutex<Tail>>,
    stderr_reader: Option<JoinHandle<()>>,
    shared: &'a Shared,
    model: String,
    /// The child leads a process group of its own (MLflow's server).
    group: bool,
    /// The child's pid (its process group's id when it leads one).
    pid: Option<u32>,
}

impl Drop for Launching<'_> {
    fn drop(&mut self) {
        // Abandoned (the launch was cancelled): the child is killed as it drops
        // (and, leading a group, its group with it).
        if let Some(child) = &self.child {
            if let Some(pid) = child.id() {
                signal_server(pid, self.group, libc::SIGKILL);
            }
            self.shared.set_pid(None);
        }
    }
}

impl Launching<'_> {
    async fn tail(&mut self) -> String {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
        }
        self.tail.lock().unwrap().text()
    }

    /// The child exited: the error says how, with its stderr.
    async fn exited(
        &mut self,
        status: std::io::Result<ExitStatus>,
        addr: Option<SocketAddr>,
    ) -> Error {
        self.child = None;
        self.shared.set_pid(None);
        let stderr = self.tail().await;
        let model = self.model.clone();
        match (status, addr) {
            (Err(source), _) => Error::Io { model, source },
            (Ok(status), None) => Error::ExitedBeforeListening {
                model,
                status,
                stderr,
            },
            (Ok(status), Some(addr)) => Error::ExitedBeforeReady {
                model,
                addr,
                status,
                stderr,
            },
        }
    }

    /// `ready_timeout` passed: kill and reap the child, then say so.
    async fn timed_out(&mut self, addr: Option<SocketAddr>, waited: Duration) -> Error {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                signal_server(pid, self.group, libc::SIGKILL);
            }
            let _ = child.kill().await;
        }
        self.shared.set_pid(None);
        Error::NotReady {
            model: self.model.clone(),
            addr,
            waited,
            stderr: self.tail().await,
        }
    }

    fn into_running(mut self, addr: SocketAddr) -> Running {
        Running {
            child: self.child.take().expect("child"),
            addr,
            group: self.group,
            pgid: self.pid,
            stderr: self.tail.clone(),
            stderr_reader: self.stderr_reader.take().expect("reader"),
        }
    }
}

/// Copies `stream` line by line to `log` (else stderr lines to our stderr, stdout
/// lines nowhere), keeps a stderr tail, and reports the address line, until EOF. It
/// must keep reading after the address: a child blocked on a full pipe would hang.
async fn copy_lines(
    stream: impl AsyncRead + Unpin,
    log: Option<Arc<File>>,
    tail: Option<Arc<Mutex<Tail>>>,
    mut addr_tx: Option<oneshot::Sender<SocketAddr>>,
) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if addr_tx.is_some()
            && let Some(addr) = parse_listening(&line)
            && let Some(tx) = addr_tx.take()
        {
            let _ = tx.send(addr);
        }
        if let Some(tail) = &tail {
            tail.lock().unwrap().push(&line);
        }
        // A small append to a local file: cheap enough to do inline.
        match &log {
            Some(file) => {
                let _ = (&**file).write_all(&line);
            }
            None if tail.is_some() => {
                let _ = std::io::stderr().write_all(&line);
            }
            None => {}
        }
    }
}

/// The address in `listening on http://ADDR`.
fn parse_listening(line: &[u8]) -> Option<SocketAddr> {
    let line = std::str::from_utf8(line).ok()?.trim();
    line.strip_prefix(LISTENING)?
        .trim_end_matches('/')
        .parse()
        .ok()
}

/// The last [`TAIL_BYTES`] bytes written to a stream, and its last `Error: ` line
/// (how a Rust `main` reports the error it failed with), which a long backtrace or
/// log flood after it must not hide.
#[derive(Default)]
pub(crate) struct Tail {
    bytes: VecDeque<u8>,
    truncated: bool,
    error_line: Option<String>,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        if data.starts_with(b"Error: ") {
            let line = String::from_utf8_lossy(data).trim_end().to_string();
            self.error_line = Some(line.chars().take(TAIL_BYTES).collect());
        }
        self.bytes.extend(data);
        if self.bytes.len() > TAIL_BYTES {
            let extra = self.bytes.len() - TAIL_BYTES;
            self.bytes.drain(..extra);
            self.truncated = true;
        }
    }

    /// The tail as text, starting at a line boundary when older output was dropped.
    pub(crate) fn text(&self) -> String {
        let bytes: Vec<u8> = self.bytes.iter().copied().collect();
        let start = if self.truncated {
            bytes.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1)
        } else {
            0
        };
        let text = String::from_utf8_lossy(&bytes[start..]).into_owned();
        match &self.error_line {
            Some(e) if !text.contains(e.as_str()) => format!("{e}\n...\n{text}"),
            _ => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_withheld_from_servers() {
        for name in [
            "HOIST_ADMIN_TOKEN",
            "HOIST_ADMIN_TOKEN_FILE",
            "hoist_admin_token",
            "MLFLOW_TRACKING_PASSWORD",
            "MLFLOW_TRACKING_TOKEN",
            "MLFLOW_TRACKING_USERNAME",
            "HOIST_WEBHOOK_SECRET",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "GITHUB_TOKEN",
            "PGPASSWORD",
            "OPENAI_API_KEY",
        ] {
            assert!(withheld_from_servers(name), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "HOIST_HOME",
            "HOIST_LOG",
            "RUST_LOG",
            "ORT_DYLIB_PATH",
            "MODEL_AUTO_REFRESH_SECONDS",
            "LD_LIBRARY_PATH",
        ] {
            assert!(!withheld_from_servers(name), "{name}");
        }
    }

    #[test]
    fn the_listening_line() {
        assert_eq!(
            parse_listening(b"listening on http://127.0.0.1:4321\n"),
            Some("127.0.0.1:4321".parse().unwrap())
        );
        assert_eq!(
            parse_listening(b"listening on http://[::1]:80\r\n"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(parse_listening(b"listening on http://localhost:80\n"), None);
        assert_eq!(parse_listening(b"something else\n"), None);
    }

    #[test]
    fn the_tail_keeps_the_last_lines() {
        let mut t = Tail::default();
        t.push(b"first\n");
        assert_eq!(t.text(), "first\n");
        for i in 0..1000 {
            t.push(format!("line {i}\n").as_bytes());
        }
        t.push(b"Error: cannot load the model: NoSuchOp\n");
        let text = t.text();
        assert!(text.len() <= TAIL_BYTES);
        assert!(text.starts_with("line "), "{text}");
        assert!(text.ends_with("Error: cannot load the model: NoSuchOp\n"));
        assert!(!text.contains("first"));
    }

    #[test]
    fn the_error_line_survives_a_long_backtrace() {
        let mut t = Tail::default();
        t.push(b"INFO loading\n");
        t.push(b"Error: cannot load the model: NoSuchOp\n");
        t.push(b"\nStack backtrace:\n");
        for i in 0..500 {
            t.push(format!("  {i}: some::frame\n").as_bytes());
        }
        let text = t.text();
        assert!(
            text.starts_with("Error: cannot load the model: NoSuchOp\n...\n"),
            "{text}"
        );
        assert!(text.ends_with("499: some::frame\n"));
    }
}
