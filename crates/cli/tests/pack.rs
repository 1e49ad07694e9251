//! `[server] pack = true`: three models of one daemon served by two shared
//! hoist-server processes per environment (real `hoist up`, real hoist-server
//! processes, real HTTP). Stable versions share one process, candidates the other;
//! releases of all three run at once under traffic with no failed request, the
//! promoted ones leave their old pack, and a restarted daemon packs the live
//! versions again.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::Value;

const MODELS: [&str; 3] = ["fraud", "churn", "risk"];

fn config() -> String {
    models_config(
        &MODELS,
        "pack = true\n",
        "steps = [{ weight = 50, pause = \"4s\" }]",
    )
}

/// The (pid, address) of the server of `m`'s `variant` in production.
fn server_of(d: &Daemon, m: &str, variant: &str) -> Option<(u64, String)> {
    let s = d.get(&format!("/api/v1/models/{m}/status"));
    let srv = &s["environments"][0][variant]["servers"][0];
    Some((srv["pid"].as_u64()?, srv["addr"].as_str()?.to_string()))
}

/// What a shared server holds: its repository index, by model name.
fn index(addr: &str) -> Vec<(String, String)> {
    let r = reqwest::blocking::Client::new()
        .post(format!("http://{addr}/v2/repository/index"))
        .json(&serde_json::json!({}))
        .send()
        .unwrap();
    let rows: Value = r.json().unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn ready_in(addr: &str) -> BTreeSet<String> {
    index(addr)
        .into_iter()
        .filter(|(_, s)| s == "READY")
        .map(|(n, _)| n)
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn packed_models_share_two_servers_and_release_at_once_under_traffic() {
    let home = temp_home("pack");
    let config = config();
    let d = Daemon::start(&home, &config);
    for m in MODELS {
        register_as(&home, "breast_cancer_gbt", m);
    }
    for m in MODELS {
        let r = model_release_done(&d, m, "1");
        assert_eq!(r["outcome"]["outcome"], "succeeded", "{m}: {r}");
    }
    // Every stable in one process.
    let stables: Vec<(u64, String)> = MODELS
        .iter()
        .map(|m| server_of(&d, m, "stable").unwrap_or_else(|| panic!("{m}: no server")))
        .collect();
    assert!(stables.iter().all(|s| *s == stables[0]), "{stables:?}");
    let (pack0_pid, pack0) = stables[0].clone();
    hoist_testkit::poll(Duration::from_secs(10), || {
        (ready_in(&pack0) == set(&MODELS)).then_some(())
    })
    .unwrap_or_else(|| panic!("pack 0 holds {:?}", index(&pack0)));

    // Traffic to each model, by its MLflow path and by the Open Inference Protocol.
    let gw = d.env("production");
    let traffic: Vec<(&str, Traffic)> = MODELS
        .iter()
        .map(|m| (*m, Traffic::start(&format!("{gw}/models/{m}"), 1)))
        .collect();
    // churn and risk get a healthy v2, fraud one that fails one-row requests: all
    // three candidates load into the other shared process at once.
    register_as(&home, "breast_cancer_lr", "churn");
    register_as(&home, "breast_cancer_lr", "risk");
    register_as(&home, "breast_cancer_batch2", "fraud");
    // Each candidate as first seen (fraud's may be gone again once it failed).
    let mut seen: Vec<Option<(u64, String)>> = vec![None; MODELS.len()];
    let candidates: Vec<(u64, String)> = hoist_testkit::poll(Duration::from_secs(60), || {
        for (m, s) in MODELS.iter().zip(seen.iter_mut()) {
            if s.is_none() {
                *s = server_of(&d, m, "candidate");
            }
        }
        seen.iter().cloned().collect::<Option<Vec<_>>>()
    })
    .expect("three candidates running");
    assert!(
        candidates.iter().all(|c| *c == candidates[0]),
        "{candidates:?}"
    );
    let (pack1_pid, pack1) = candidates[0].clone();
    assert_ne!(pack1_pid, pack0_pid, "stable and candidate share a process");
    let ended: Vec<(&str, Value)> = MODELS
        .iter()
        .map(|m| (*m, model_release_done(&d, m, "2")))
        .collect();
    let counts: Vec<_> = traffic.into_iter().map(|(m, t)| (m, t.finish())).collect();
    for (m, r) in &ended {
        let want = if *m == "fraud" { "failed" } else { "succeeded" };
        assert_eq!(r["outcome"]["outcome"], want, "{m}: {r}");
    }
    for (m, c) in &counts {
        assert_eq!(failed(c, "stable"), 0, "{m}: {c:?}");
        assert_eq!(failed(c, "transport"), 0, "{m}: {c:?}");
        assert_eq!(failed(c, "none"), 0, "{m}: {c:?}");
        assert!(served(c, "stable/v1") > 0, "{m}: {c:?}");
        if *m != "fraud" {
            assert_eq!(failed(c, "candidate"), 0, "{m}: {c:?}");
            assert!(served(c, "candidate/v2") > 0, "{m}: {c:?}");
        }
    }
    // The promoted models now live in pack 1; fraud's v1 stays in pack 0, and the
    // others' v1 and fraud's failed v2 leave their packs.
    for (m, pack) in [("fraud", &pack0), ("churn", &pack1), ("risk", &pack1)] {
        assert_eq!(
            server_of(&d, m, "stable").map(|s| s.1).as_ref(),
            Some(pack),
            "{m}"
        );
    }
    hoist_testkit::poll(Duration::from_secs(10), || {
        (ready_in(&pack0) == set(&["fraud"]) && ready_in(&pack1) == set(&["churn", "risk"]))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("pack 0: {:?}; pack 1: {:?}", index(&pack0), index(&pack1)));
    // Each model answers with its own live version, on both protocols.
    let http = reqwest::blocking::Client::new();
    let example =
        std::fs::read_to_string(model("breast_cancer_lr").join("input_example.json")).unwrap();
    let rows: Value = serde_json::from_str(&example).unwrap();
    let body = serde_json::json!({ "inputs": [rows[0]] }).to_string();
    let answers = |gw: &str, m: &str, want: &str| {
        let r = http
            .post(format!("{gw}/models/{m}/invocations"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{m}");
        assert_eq!(r.headers()["x-hoist-version"], want, "{m}");
    };
    for (m, want) in [("fraud", "1"), ("churn", "2"), ("risk", "2")] {
        answers(&gw, m, want);
        let r = http
            .get(format!("{gw}/v2/models/{m}/ready"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{m}");
    }

    // A restarted daemon packs the live versions again, in one process.
    d.stop();
    let d = Daemon::start(&home, &config);
    let again: Vec<(u64, String)> = hoist_testkit::poll(Duration::from_secs(60), || {
        MODELS
            .iter()
            .map(|m| server_of(&d, m, "stable"))
            .collect::<Option<Vec<_>>>()
    })
    .expect("every model serving again");
    assert!(again.iter().all(|s| *s == again[0]), "{again:?}");
    for (m, want) in [("fraud", "1"), ("churn", "2"), ("risk", "2")] {
        answers(&d.env("production"), m, want);
    }
}

#[test]
fn pack_is_refused_with_replicas_and_names_it_cannot_hold() {
    let home = temp_home("pack-bad");
    let bad = config().replace("steps = [", "replicas = 2\nsteps = [");
    let path = home.join("hoist.toml");
    std::fs::write(&path, bad).unwrap();
    let out = hoist(&home, &["up", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.pack: environment production has replicas = 2"),
        "{err}"
    );
}
