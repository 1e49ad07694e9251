//! A pyfunc model released with no `[server] python`: the daemon makes a Python
//! environment from the model's own `requirements.txt` (`python3 -m venv` and pip,
//! once, under `HOIST_HOME/envs/<sha256 of the requirements>`), serves the model with
//! `mlflow models serve` from it, and reuses it for the next version with the same
//! requirements. Real daemon, real pip (the package index), real MLflow server.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// The environments the daemon made, and anything half-made beside them.
fn envs(home: &Path) -> (Vec<String>, Vec<String>) {
    let names: Vec<String> = std::fs::read_dir(home.join("envs"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.into_iter().partition(|n| !n.starts_with('.'))
}

/// The command line of the live server of production.
fn live_cmdline(d: &Daemon) -> String {
    let s = d.get("/api/v1/status");
    let pid = s["environments"][0]["stable"]["servers"][0]["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no live server: {s}"));
    std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .replace('\0', " ")
}

#[test]
fn a_pyfunc_model_gets_an_environment_made_from_its_requirements_once() {
    let home = temp_home("pyenv");
    let d = Daemon::start(&home, &production("strategy = \"blue-green\""));
    let package = repo().join("examples/pyfunc/breast_cancer_sklearn");
    // Version 2: the same model and requirements, other files (a version with the
    // live version's digest starts no release).
    let second = home.join("breast_cancer_sklearn-2");
    std::fs::create_dir_all(&second).unwrap();
    for f in std::fs::read_dir(&package).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), second.join(f.file_name())).unwrap();
    }
    let mlmodel = second.join("MLmodel");
    let text = std::fs::read_to_string(&mlmodel).unwrap();
    std::fs::write(&mlmodel, format!("{text}# version 2\n")).unwrap();
    let register = |package: &Path| {
        ok(&hoist(
            &home,
            &[
                "model",
                "register",
                package.to_str().unwrap(),
                "--name",
                "m",
                "--alias",
                "champion",
            ],
        ))
    };
    register(&package);
    // pip installs MLflow and scikit-learn: minutes on a cold cache.
    let r = d.wait_done(1, Duration::from_secs(900));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    let (made, half) = envs(&home);
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(half.is_empty(), "left half-made: {half:?}");
    let env = &made[0];
    assert!(
        env.len() == 64 && env.chars().all(|c| c.is_ascii_hexdigit()),
        "{env}"
    );
    let python = home.join("envs").join(env).join("bin/python");
    assert!(python.exists(), "{}", python.display());
    let cmdline = live_cmdline(&d);
    assert!(
        cmdline.starts_with(&format!("{} -m mlflow models serve", python.display())),
        "{cmdline}"
    );
    // It answers through the gateway.
    let example = std::fs::read_to_string(package.join("input_example.json")).unwrap();
    let body = format!("{{\"inputs\": {example}}}");
    let answer = reqwest::blocking::Client::new()
        .post(format!("{}/invocations", d.env("production")))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-hoist-version"], "1");

    // The next version with the same requirements reuses the environment.
    register(&second);
    let r = d.wait_done(2, Duration::from_secs(300));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    assert_eq!(envs(&home), (made, Vec::new()));
    assert!(live_cmdline(&d).starts_with(&python.display().to_string()));
}
