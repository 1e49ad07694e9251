//! Several models, one daemon (`[[models]]`): real `hoist up`, real hoist-server
//! processes, real HTTP through one gateway per environment routing by model.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const MODELS: [&str; 3] = ["fraud", "churn", "risk"];

fn config() -> String {
    models_config(&MODELS, "", "steps = [{ weight = 50, pause = \"4s\" }]")
}

#[test]
fn three_models_release_at_once_under_traffic_one_rolls_back_the_others_promote() {
    let home = temp_home("models3");
    let d = Daemon::start(&home, &config());
    for m in MODELS {
        register_as(&home, "breast_cancer_gbt", m);
    }
    for m in MODELS {
        let r = model_release_done(&d, m, "1");
        assert_eq!(r["outcome"]["outcome"], "succeeded", "{m}: {r}");
    }
    let models = d.get("/api/v1/models");
    let names: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, MODELS);
    for m in models["models"].as_array().unwrap() {
        assert_eq!(m["environments"][0]["live"], "1", "{m}");
        assert_eq!(m["trigger"], "alias:champion", "{m}");
    }
    // The old single-model paths name the models when they cannot choose.
    let status = d.get("/api/v1/status");
    let msg = status["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("fraud, churn, risk"), "{status}");

    // Traffic to every model through the one production gateway, by model path.
    let gw = d.env("production");
    let traffic: Vec<(&str, Traffic)> = MODELS
        .iter()
        .map(|m| (*m, Traffic::start(&format!("{gw}/models/{m}"), 1)))
        .collect();
    // fraud's v2 fails one-row requests (its batch size is fixed): it must roll
    // back; churn's and risk's v2 are healthy and must go live; all three at once
    // (fraud's last: the others pause 4 s at 50%, so all three overlap).
    register_as(&home, "breast_cancer_lr", "churn");
    register_as(&home, "breast_cancer_lr", "risk");
    register_as(&home, "breast_cancer_batch2", "fraud");
    let done: Vec<(&str, Value)> = MODELS
        .iter()
        .map(|m| (*m, model_release_done(&d, m, "2")))
        .collect();
    let counts: Vec<_> = traffic.into_iter().map(|(m, t)| (m, t.finish())).collect();
    for (m, r) in &done {
        let want = if *m == "fraud" { "failed" } else { "succeeded" };
        assert_eq!(r["outcome"]["outcome"], want, "{m}: {r}");
    }
    // The three rollouts overlapped: each started before any other finished.
    let started = |r: &Value| r["created_ms"].as_u64().unwrap();
    let ended = |r: &Value| r["updated_ms"].as_u64().unwrap();
    let first_end = done.iter().map(|(_, r)| ended(r)).min().unwrap();
    for (m, r) in &done {
        assert!(started(r) < first_end, "{m} started after another ended");
    }
    for (m, c) in &counts {
        assert_eq!(failed(c, "stable"), 0, "{m}: {c:?}");
        assert_eq!(failed(c, "transport"), 0, "{m}: {c:?}");
        assert!(served(c, "stable/v1") > 0, "{m}: {c:?}");
        if *m != "fraud" {
            assert_eq!(failed(c, "candidate"), 0, "{m}: {c:?}");
        }
    }
    let models = d.get("/api/v1/models");
    for m in models["models"].as_array().unwrap() {
        let want = if m["name"] == "fraud" { "1" } else { "2" };
        assert_eq!(m["environments"][0]["live"], want, "{m}");
        assert!(m["active"].as_array().unwrap().is_empty(), "{m}");
    }
    // Each model answers with its own live version through the router.
    let http = reqwest::blocking::Client::new();
    for (m, want) in [("fraud", "1"), ("churn", "2"), ("risk", "2")] {
        let r = http
            .get(format!("{gw}/v2/models/{m}/ready"))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{m}: {}", r.status());
        let s = d.get(&format!("/api/v1/models/{m}/status"));
        assert_eq!(
            Daemon::stable_version(&s, "production").as_deref(),
            Some(want),
            "{s}"
        );
    }
    // The CLI: status and history of every model, or of one with --model.
    let all: Value = serde_json::from_str(&ok(&hoist(&home, &["--json", "status"]))).unwrap();
    let shown: Vec<&str> = all["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["model"].as_str().unwrap())
        .collect();
    assert_eq!(shown, MODELS, "{all}");
    let text = ok(&hoist(&home, &["status"]));
    for m in MODELS {
        assert!(text.contains(m), "{text}");
    }
    let one: Value = serde_json::from_str(&ok(&hoist(
        &home,
        &["--json", "status", "--model", "churn"],
    )))
    .unwrap();
    assert_eq!(one["model"], "churn", "{one}");
    let h: Value = serde_json::from_str(&ok(&hoist(
        &home,
        &["--json", "history", "--model", "fraud"],
    )))
    .unwrap();
    let versions: Vec<&str> = h["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["model"], "fraud", "{r}");
            r["version"].as_str().unwrap()
        })
        .collect();
    assert_eq!(versions, ["2", "1"]);
    let text = ok(&hoist(&home, &["history"]));
    assert!(text.contains("MODEL"), "{text}");
    // Rollback needs --model with several models, and names them without it.
    let out = hoist(&home, &["rollback"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fraud, churn, risk"), "{err}");
    ok(&hoist(&home, &["rollback", "--model", "churn"]));
    for (m, want) in [("fraud", "1"), ("churn", "1"), ("risk", "2")] {
        let s = d.get(&format!("/api/v1/models/{m}/status"));
        assert_eq!(
            Daemon::stable_version(&s, "production").as_deref(),
            Some(want),
            "{m}: {s}"
        );
    }

    let v = d.get("/api/v1/versions?model=churn");
    assert_eq!(v["model"], "churn", "{v}");
    assert_eq!(v["versions"][0]["version"], "2", "{v}");

    // An unknown model is a 404 naming the models, on the API and the gateway.
    let v = d.get("/api/v1/versions?model=nope");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|e| e.contains("fraud, churn, risk")),
        "{v}"
    );
    let s = d.get("/api/v1/models/nope/status");
    assert!(
        s["error"]["message"]
            .as_str()
            .is_some_and(|e| e.contains("fraud, churn, risk")),
        "{s}"
    );
    let r = http
        .post(format!("{gw}/models/nope/invocations"))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    d.stop();
}

#[test]
fn bad_models_configs_are_refused_with_the_line() {
    let home = temp_home("models-bad");
    let cases = [
        (
            "[model]\nname = \"a\"\n\n[[models]]\nname = \"b\"\n",
            "cannot both be set",
        ),
        (
            "[[models]]\nname = \"a\"\n\n[[models]]\nname = \"a\"\n",
            "`a` is declared twice",
        ),
        ("[[models]]\nname = \"a\"\ntriger = \"manual\"\n", "triger"),
        (
            "[[models]]\nname = \"a\"\nenvironments = [\"qa\"]\n",
            "`qa` is not an environment",
        ),
    ];
    for (text, want) in cases {
        let cfg = home.join("hoist.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = hoist(&home, &["up", "--config", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(err.contains(want), "{text}: {err}");
        assert!(err.contains("line "), "{text}: {err}");
    }
    std::fs::remove_dir_all(&home).ok();
}

/// Two models, production only, whose canary pauses at 50% until `hoist promote`.
fn two_models(extra_a: &str) -> String {
    let base = BASE.replace(
        "[model]\nname = \"m\"\ntrigger = { alias = \"champion\" }\n",
        "",
    );
    format!(
        "{base}\n[[models]]\nname = \"a\"\n{extra_a}\n\n[[models]]\nname = \"b\"\n\n\
         [[environments]]\nname = \"production\"\nlisten = \"127.0.0.1:0\"\n\
         steps = [{{ weight = 50, pause = true }}]\n"
    )
}

#[test]
fn a_model_stuck_in_its_gate_does_not_hold_up_another() {
    let home = temp_home("models-gate");
    // a's gate does not answer for a minute; b has none.
    let d = Daemon::start(
        &home,
        &two_models(
            "gates = [{ kind = \"command\", run = [\"sleep\", \"60\"], timeout = \"2m\" }]",
        ),
    );
    register_as(&home, "breast_cancer_gbt", "a");
    register_as(&home, "breast_cancer_gbt", "b");
    let b = model_release_done(&d, "b", "1");
    assert_eq!(b["outcome"]["outcome"], "succeeded", "{b}");
    // a is still at its gate: unfinished, nothing live.
    let models = d.get("/api/v1/models");
    let a = &models["models"][0];
    assert_eq!(a["name"], "a");
    assert_eq!(a["active"].as_array().map(Vec::len), Some(1), "{a}");
    assert!(a["environments"][0]["live"].is_null(), "{a}");
    assert_eq!(models["models"][1]["environments"][0]["live"], "1");
    d.stop();
}

#[test]
fn a_daemon_killed_during_two_models_releases_resumes_both() {
    let home = temp_home("models-kill");
    let config = two_models("");
    let d = Daemon::start(&home, &config);
    for m in ["a", "b"] {
        register_as(&home, "breast_cancer_gbt", m);
    }
    for m in ["a", "b"] {
        assert_eq!(
            model_release_done(&d, m, "1")["outcome"]["outcome"],
            "succeeded"
        );
    }
    for m in ["a", "b"] {
        register_as(&home, "breast_cancer_lr", m);
    }
    // Both v2 wait at 50% for `hoist promote`.
    let mut ids = Vec::new();
    for m in ["a", "b"] {
        let mut last = Value::Null;
        let s = hoist_testkit::poll(Duration::from_secs(60), || {
            let s = d.get(&format!("/api/v1/models/{m}/status"));
            let at_50 = s["environments"][0]["weight"] == 50;
            last = s.clone();
            at_50.then_some(s)
        })
        .unwrap_or_else(|| panic!("{m} did not reach 50%: {last}"));
        ids.push(s["active"][0]["id"].as_u64().unwrap());
    }
    // SIGKILL: no cleanup at all.
    let mut d = d;
    let _ = d.child.kill();
    let _ = d.child.wait();
    std::mem::forget(d);
    let d = Daemon::start(&home, &config);
    for (m, id) in ["a", "b"].iter().zip(&ids) {
        let mut last = Value::Null;
        hoist_testkit::poll(Duration::from_secs(60), || {
            let s = d.get(&format!("/api/v1/models/{m}/status"));
            let back = s["environments"][0]["weight"] == 50
                && s["environments"][0]["candidate"]["version"] == "2";
            last = s;
            back.then_some(())
        })
        .unwrap_or_else(|| panic!("{m} did not resume at 50%: {last}"));
        ok(&hoist(&home, &["promote", &id.to_string(), "--model", m]));
    }
    for m in ["a", "b"] {
        let r = model_release_done(&d, m, "2");
        assert_eq!(r["outcome"]["outcome"], "succeeded", "{m}: {r}");
        assert_eq!(
            weights(&d.get(&format!("/api/v1/models/{m}/releases/{}", r["id"]))),
            [50, 100]
        );
    }
    // --model is checked against the release's model.
    let out = hoist(&home, &["abort", &ids[0].to_string(), "--model", "b"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("of model `b`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.stop();
}
