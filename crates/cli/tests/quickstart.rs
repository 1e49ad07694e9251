//! The README's first command, as a user runs it: `hoist quickstart` with nothing
//! set up. It must end with v1 and v2 live in turn, v3 rolled back by the canary
//! analysis, no failed request on stable, and nothing left running.

use std::process::Command;

use serde_json::Value;

#[test]
fn quickstart_runs_the_whole_story_and_leaves_nothing_behind() {
    let home = std::env::temp_dir().join(format!("hoist-quickstart-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let out = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(["--json", "quickstart"])
        .env("TMPDIR", &home)
        .env_remove("HOIST_HOME")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .expect("run hoist quickstart");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "quickstart failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["ok"], true, "{summary}");
    let outcomes: Vec<&str> = summary["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["succeeded", "succeeded", "rolled back"],
        "{summary}"
    );
    let reason = summary["releases"][2]["reason"].as_str().unwrap();
    assert!(reason.contains("production"), "{reason}");
    let traffic = summary["traffic"].as_array().unwrap();
    let stable_failed: u64 = traffic
        .iter()
        .filter(|t| t["variant"] == "stable")
        .map(|t| t["failed"].as_u64().unwrap())
        .sum();
    assert_eq!(stable_failed, 0, "{summary}");
    assert!(
        traffic
            .iter()
            .any(|t| t["variant"] == "candidate" && t["version"] == "3"),
        "{summary}"
    );
    // The temporary home is gone (no --keep).
    let left: Vec<_> = std::fs::read_dir(&home)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with("hoist-quickstart-")),
        "left behind: {left:?}"
    );
    let _ = std::fs::remove_dir_all(&home);
}
