//! The README's first command, as a user runs it: `hoist quickstart` with nothing
//! set up. One daemon delivers two models (`[[models]]`): both first versions go
//! live, breast-cancer v2 goes live through a canary, then diabetes v2 goes live
//! while breast-cancer v3 is rolled back by the canary analysis, the two releases
//! at the same time; no failed request on either model's stable, and nothing left
//! running.

use std::process::Command;

use serde_json::Value;

#[test]
fn quickstart_runs_two_models_one_goes_live_while_the_other_rolls_back() {
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

    // Every release, in the order the story registered them, with its outcome.
    let releases = summary["releases"].as_array().unwrap();
    let outcomes: Vec<(&str, &str, &str)> = releases
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap(),
                r["version"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("breast-cancer", "1", "succeeded"),
            ("diabetes", "1", "succeeded"),
            ("breast-cancer", "2", "succeeded"),
            ("diabetes", "2", "succeeded"),
            ("breast-cancer", "3", "rolled back"),
        ],
        "{summary}"
    );
    let slow = &releases[4];
    let reason = slow["reason"].as_str().unwrap();
    // Caught on latency: the p99 bound when requests queue behind it, else the
    // comparison with stable's median.
    assert!(
        reason.contains("production") && reason.contains("latency"),
        "{reason}"
    );

    // diabetes v2 and breast-cancer v3 overlapped: each started before the other
    // ended (the journal's times, as the summary reports them).
    let good = &releases[3];
    let t = |r: &Value, k: &str| r[k].as_f64().unwrap();
    assert!(
        t(good, "started_s") < t(slow, "ended_s") && t(slow, "started_s") < t(good, "ended_s"),
        "the two releases did not overlap: {good} {slow}"
    );
    assert_eq!(summary["overlapped"], true, "{summary}");

    // Each model: the version that should be live is, and its stable failed nothing.
    let models = summary["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["breast-cancer", "diabetes"], "{summary}");
    for m in models {
        assert_eq!(m["live_in_production"], "2", "{m}");
        assert_eq!(m["stable_failed"], 0, "{m}");
        assert_eq!(m["gateway_failures"], 0, "{m}");
        assert!(m["served"].as_u64().unwrap() > 100, "{m}");
    }

    // The traffic reached both models through the one production gateway, and each
    // candidate really answered some of it.
    let traffic = summary["traffic"].as_array().unwrap();
    let served = |model: &str, variant: &str, version: &str| -> u64 {
        traffic
            .iter()
            .filter(|t| t["model"] == model && t["variant"] == variant && t["version"] == version)
            .map(|t| t["served"].as_u64().unwrap())
            .sum()
    };
    assert!(served("breast-cancer", "candidate", "3") > 0, "{summary}");
    assert!(served("diabetes", "candidate", "2") > 0, "{summary}");
    assert!(served("diabetes", "stable", "2") > 0, "{summary}");
    let stable_failed: u64 = traffic
        .iter()
        .filter(|t| t["variant"] == "stable")
        .map(|t| t["failed"].as_u64().unwrap())
        .sum();
    assert_eq!(stable_failed, 0, "{summary}");

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
