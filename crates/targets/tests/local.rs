//! The local target with the real `hoist-server` binary and the example models.
//!
//! The binary comes from HOIST_SERVER_BIN, else `<target>/debug/hoist-server` (built
//! with `cargo build -p hoist-server` when missing). Servers run on tract with one
//! worker, so the tests need no ONNX Runtime and stay light on a small machine.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hoist_targets::{Error, ServerProgram, ServerSpec, Status, Supervised, start_replicas};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---- fixtures ----------------------------------------------------------------------

fn repo_root() -> PathBuf {
    hoist_testkit::repo_root().canonicalize().unwrap()
}

fn model(name: &str) -> PathBuf {
    repo_root().join("examples/models").join(name)
}

/// `<target>/debug`: this test runs as `<target>/debug/deps/local-HASH`.
fn target_debug_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Runs `cargo ARGS` from the repository root, for artifacts a plain `cargo test -p
/// hoist-targets` does not build.
fn cargo(args: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .current_dir(repo_root())
        .status()
        .expect("run cargo");
    assert!(status.success(), "cargo {args:?} failed: {status}");
}

fn server_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("HOIST_SERVER_BIN") {
            return PathBuf::from(p);
        }
        let bin = target_debug_dir().join("hoist-server");
        if !bin.is_file() {
            cargo(&["build", "-p", "hoist-server"]);
        }
        assert!(bin.is_file(), "no hoist-server at {}", bin.display());
        bin
    })
    .clone()
}

/// An example of this crate, built now: `cargo test --test local` alone would run a
/// stale one (a no-op when `cargo test` built it already). Built as part of the
/// workspace: `-p hoist-targets` alone unifies features differently from the
/// workspace build and recompiles much of the dependency tree (minutes on CI).
fn example_bin(name: &str) -> PathBuf {
    let bin = target_debug_dir().join("examples").join(name);
    cargo(&["build", "--workspace", "--example", name]);
    assert!(bin.is_file(), "no example at {}", bin.display());
    bin
}

fn temp_path(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "hoist-targets-test-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A spec for an example model: tract, one worker, output in the log file `log`
/// (one per test, emptied here, so repeated runs do not pile up files).
fn spec(model_path: &Path, name: &str, log: &str) -> ServerSpec {
    let mut spec = ServerSpec::new(ServerProgram::binary(server_bin()), model_path, name, "7");
    spec.extra_args = ["--runtime", "tract", "--workers", "1"]
        .map(String::from)
        .to_vec();
    spec.env = vec![("HOIST_LOG".into(), "info".into())];
    let log = log_path(log);
    std::fs::File::create(&log).unwrap();
    spec.log_file = Some(log);
    // Generous: the machine may be busy with other builds.
    spec.ready_timeout = Duration::from_secs(120);
    spec
}

fn log_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("hoist-targets-test-{tag}.log"))
}

fn lr_spec(log: &str) -> ServerSpec {
    spec(&model("breast_cancer_lr"), "breast_cancer_lr", log)
}

/// The MLflow scoring body from the model's own example.
fn lr_body() -> Vec<u8> {
    std::fs::read(model("breast_cancer_lr").join("serving_input_example.json")).unwrap()
}

/// The process is gone: no `/proc/PID`, or only a zombie nobody reaped yet.
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `PID (comm) STATE ...`; comm may hold spaces, so look after the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_for(what: &str, deadline: Duration, cond: impl FnMut() -> bool) {
    hoist_testkit::wait_until_async(deadline, what, cond).await
}

// ---- a bare HTTP/1.1 client ----------------------------------------------------------

struct Response {
    status: u16,
    body: String,
}

/// Sends the request head and the first `split` bytes of `body`; the rest is sent by
/// [`finish`]. `Connection: close`, so the response ends at EOF.
async fn begin(addr: SocketAddr, method: &str, path: &str, body: &[u8], split: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body[..split]).await.unwrap();
    s.flush().await.unwrap();
    s
}

async fn finish(mut s: TcpStream, rest: &[u8]) -> std::io::Result<Response> {
    s.write_all(rest).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok(Response { status, body })
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<Response> {
    let s = TcpStream::connect(addr).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut s = s;
    s.write_all(head.as_bytes()).await?;
    finish(s, body).await
}

async fn invoke(addr: SocketAddr) -> Response {
    let r = request(addr, "POST", "/invocations", &lr_body())
        .await
        .expect("POST /invocations");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("predictions"), "{}", r.body);
    r
}

// ---- tests -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_ready_and_answers_the_input_example() {
    let spec = lr_spec("ready");
    let log = spec.log_file.clone().unwrap();
    let s = Supervised::start(spec).await.unwrap();
    assert_eq!(s.status(), Status::Running);
    assert_eq!(s.restarts(), 0);
    assert!(s.addr().ip().is_loopback());
    assert_ne!(s.addr().port(), 0);
    let pid = s.pid().expect("pid");
    invoke(s.addr()).await;
    let meta = request(s.addr(), "GET", "/v2/models/breast_cancer_lr", b"")
        .await
        .unwrap();
    assert_eq!(meta.status, 200, "{}", meta.body);
    assert!(
        meta.body.contains("\"7\""),
        "the version is passed: {}",
        meta.body
    );

    s.stop(Duration::from_secs(30)).await;
    assert!(process_gone(pid), "the child {pid} is gone after stop");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("listening on http://"),
        "stdout is logged: {log}"
    );
    assert!(log.contains("model loaded"), "stderr is logged: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_fails_to_load_names_the_missing_op() {
    let unknown = repo_root().join("examples/models/invalid/unknown_op.onnx");
    let err = Supervised::start(spec(&unknown, "unknown_op", "unknown_op"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, Error::ExitedBeforeReady { .. }), "{err:?}");
    assert!(msg.contains("NoSuchOp"), "{msg}");
    assert!(err.stderr_tail().unwrap().contains("NoSuchOp"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_child_is_restarted_on_the_same_address() {
    let s = Supervised::start(lr_spec("restart")).await.unwrap();
    let addr = s.addr();
    let first = s.pid().unwrap();
    // SAFETY: kill(2) on the child this test started.
    unsafe {
        libc::kill(first as libc::pid_t, libc::SIGKILL);
    }
    wait_for("a ready replacement", Duration::from_secs(120), || {
        s.status() == Status::Running && s.pid().is_some_and(|p| p != first)
    })
    .await;
    assert_eq!(s.addr(), addr);
    assert_eq!(s.restarts(), 1);
    assert!(process_gone(first));
    invoke(addr).await;
    s.stop(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_cannot_come_back_is_failed_with_the_reason() {
    // A private copy of the model, removed once the server runs: every restart fails.
    let dir = temp_path("model");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(model("breast_cancer_lr")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let s = Supervised::start(spec(&dir, "breast_cancer_lr", "failed"))
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let pid = s.pid().unwrap();
    // SAFETY: kill(2) on the child this test started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
    let mut seen_restarting = false;
    wait_for("the replica to fail", Duration::from_secs(120), || {
        let st = s.status();
        seen_restarting |= matches!(st, Status::Restarting { .. });
        matches!(st, Status::Failed { .. })
    })
    .await;
    assert!(seen_restarting);
    let Status::Failed { reason } = s.status() else {
        unreachable!()
    };
    assert!(reason.contains("does not exist"), "{reason}");
    assert_eq!(s.restarts(), hoist_targets::local::MAX_START_FAILURES);
    assert_eq!(s.pid(), None);
    s.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drains_requests_in_flight() {
    let s = Supervised::start(lr_spec("drain")).await.unwrap();
    let addr = s.addr();
    let body = lr_body();

    // A slow stream of whole requests, until the server stops taking new ones. It
    // pauses on request, so the in-flight gauge below counts only our own requests.
    let ok = Arc::new(AtomicUsize::new(0));
    let pause = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let stream = tokio::spawn({
        let (ok, pause, paused) = (ok.clone(), pause.clone(), paused.clone());
        async move {
            let mut failed = Vec::new();
            loop {
                paused.store(pause.load(Ordering::SeqCst), Ordering::SeqCst);
                if !paused.load(Ordering::SeqCst) {
                    match request(addr, "POST", "/invocations", &lr_body()).await {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failed.push(format!("{} {}", r.status, r.body)),
                        // Refused or reset before an answer: the request was never
                        // accepted, because shutdown had begun.
                        Err(_) => break,
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            failed
        }
    });
    wait_for("the stream to start", Duration::from_secs(60), || {
        ok.load(Ordering::Relaxed) >= 3
    })
    .await;
    pause.store(true, Ordering::SeqCst);
    wait_for("the stream to pause", Duration::from_secs(60), || {
        paused.load(Ordering::SeqCst)
    })
    .await;

    // Requests the server is in the middle of: head and half the body are sent.
    let mut pending = Vec::new();
    for _ in 0..3 {
        pending.push(begin(addr, "POST", "/invocations", &body, body.len() / 2).await);
    }
    // They are being handled once the in-flight gauge counts them (and this request).
    let start = Instant::now();
    loop {
        let m = request(addr, "GET", "/metrics", b"").await.unwrap().body;
        // Summed over the `model` label: the inferences count under their model,
        // this request under model="".
        let n: i64 = m
            .lines()
            .filter(|l| l.starts_with("hoist_requests_in_flight{"))
            .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<i64>().ok())
            .sum();
        if n >= 4 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "in flight: {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pause.store(false, Ordering::SeqCst);

    let pid = s.pid().unwrap();
    let stopping = tokio::spawn(s.stop(Duration::from_secs(60)));
    // Shutdown has begun once the server no longer says ready.
    let start = Instant::now();
    loop {
        match request(addr, "GET", "/v2/health/ready", b"").await {
            Ok(r) if r.status == 200 => {}
            _ => break,
        }
        assert!(start.elapsed() < Duration::from_secs(60), "still ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rest = &body[body.len() / 2..];
    for conn in pending {
        let r = finish(conn, rest)
            .await
            .expect("the request in flight is answered");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("predictions"), "{}", r.body);
    }
    stopping.await.unwrap();
    let failed = stream.await.unwrap();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(process_gone(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_kills_the_child() {
    let s = Supervised::start(lr_spec("drop")).await.unwrap();
    let pid = s.pid().unwrap();
    drop(s);
    wait_for("the child to die", Duration::from_secs(10), || {
        process_gone(pid)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_start_together_and_a_bad_one_stops_the_rest() {
    let replicas = start_replicas(&lr_spec("replicas"), 2).await.unwrap();
    assert_eq!(replicas.len(), 2);
    assert_ne!(replicas[0].addr(), replicas[1].addr());
    for r in &replicas {
        invoke(r.addr()).await;
    }
    for r in replicas {
        r.stop(Duration::from_secs(30)).await;
    }

    let unknown = repo_root().join("examples/models/invalid/unknown_op.onnx");
    let err = start_replicas(&spec(&unknown, "unknown_op", "replicas-unknown_op"), 2)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NoSuchOp"), "{err}");
    assert!(
        start_replicas(&lr_spec("replicas"), 0)
            .await
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_killed_parent_leaves_no_orphan() {
    let stderr = log_path("spawn_and_wait");
    let mut parent = Command::new(example_bin("spawn_and_wait"))
        .arg(model("breast_cancer_lr"))
        .args(["--runtime", "tract", "--workers", "1"])
        .env("HOIST_SERVER_BIN", server_bin())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(parent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: u32 = line.trim().parse().unwrap_or_else(|_| {
        let _ = parent.kill();
        panic!(
            "no pid from spawn_and_wait ({line:?}); stderr: {}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    });
    assert!(!process_gone(pid), "the model server {pid} runs");
    parent.kill().unwrap(); // SIGKILL: no chance to clean up
    parent.wait().unwrap();
    hoist_testkit::wait_until(
        Duration::from_secs(30),
        format_args!("model server {pid} to die with its SIGKILLed parent (it outlived it)"),
        || process_gone(pid),
    );
}
