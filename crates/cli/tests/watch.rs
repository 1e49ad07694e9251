//! `hoist watch` on the embedded registry, run as a real process: it sees an alias
//! moved by a concurrent `hoist model alias`, once.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hoist_testkit::{Scratch, example_model, wait_for};
use serde_json::Value;

fn hoist(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hoist"));
    c.args(args)
        .env("HOIST_HOME", home)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("HOIST_TEST_FAIL_AT")
        .stdin(Stdio::null());
    c
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = hoist(home, args).output().unwrap();
    assert!(
        out.status.success(),
        "hoist {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Kills the child if the test fails before it exits.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn watch_prints_one_event_for_an_alias_set_concurrently() {
    let dir = Scratch::new("cli-watch");
    let home = dir.join("home");
    let example = example_model("breast_cancer_lr").join("model.onnx");
    for i in 0..2 {
        let pkg: PathBuf = dir.join(format!("v{i}"));
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::copy(&example, pkg.join("model.onnx")).unwrap();
        std::fs::write(pkg.join("variant.txt"), i.to_string()).unwrap();
        ok(
            &home,
            &[
                "model",
                "register",
                pkg.to_str().unwrap(),
                "--name",
                "cancer",
            ],
        );
    }
    // An alias that exists before the watch starts is history, not an event.
    ok(&home, &["model", "alias", "cancer", "1", "old"]);

    let mut watch = Reaped(
        hoist(
            &home,
            &[
                "watch",
                "--max-events",
                "1",
                "--json",
                "--poll-interval",
                "0.1",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    // Wait for "watching …": from then on every move is reported.
    let mut stderr = BufReader::new(watch.0.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("watching embedded:"), "{line}");

    // A tag is not a promotion; the alias is.
    ok(
        &home,
        &["model", "tag", "cancer", "2", "hoist.staging=passed"],
    );
    ok(&home, &["model", "alias", "cancer", "2", "champion"]);

    let status = wait_for(
        Duration::from_secs(20),
        "hoist watch to exit after one event",
        || watch.0.try_wait().unwrap(),
    );
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    let mut out = String::new();
    watch
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one event: {out}");
    let e: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(e["model"], "cancer", "{e}");
    assert_eq!(e["version"], "2", "{e}");
    assert_eq!(e["alias"], "champion", "{e}");
    assert_eq!(e["kind"], "alias_set", "{e}");
    assert_eq!(e["via"], "poll", "{e}");
    assert!(
        e["registry"].as_str().unwrap().starts_with("embedded:"),
        "{e}"
    );
    drop(watch);
}

#[test]
fn watch_refuses_a_webhook_listener_without_a_secret_or_for_the_embedded_registry() {
    let home = Scratch::new("cli-watch-usage");
    let out = hoist(&home, &["watch", "--webhook-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("secret"));
    let out = hoist(
        &home,
        &[
            "watch",
            "--webhook-listen",
            "127.0.0.1:0",
            "--webhook-secret",
            "s",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MLflow"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
