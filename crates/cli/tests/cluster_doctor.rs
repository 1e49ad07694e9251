//! `hoist doctor` against the real Kubernetes control plane of `tools/envtest.sh`
//! (see `hoist_testkit::kube_api::envtest`), a REAL OCI registry on loopback for the
//! image, and closed ports for what must be unreachable. Every check passes on a
//! prepared cluster; then each failure is provoked once and named with its fix:
//! a missing namespace and Secrets, a Secret without its key, an image not in the
//! registry, Prometheus and MLflow unreachable, the controller's permissions denied
//! (its Role not applied), the API server unreachable. Not provoked: a missing CRD
//! (the control plane is shared by the tests running beside this one, which need the
//! CRDs).
//!
//! Skipped (with a message) only when there is no control plane and
//! `HOIST_REQUIRE_ENVTEST` is unset; `tools/test.sh` sets it.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use hoist_testkit::kube_api::envtest::{Envtest, unique};
use serde_json::Value;

fn config(ns: &str, ctl: &str, image: &str, extra_kubernetes: &str, registry: &str) -> String {
    format!(
        r#"target = "kubernetes"

[registry]
url = "{registry}"

[model]
name = "m"

[analysis]
enabled = false

[kubernetes]
namespace = "{ns}"
image = "{image}"
registry_url = "http://mlflow.mlflow.svc:5000"
registry_secret = "mlflow-credentials"
admin_token_secret = "hoist-admin-token"
gateway = {{ name = "public", namespace = "gateways" }}
{extra_kubernetes}

[kubernetes.controller]
enabled = true
namespace = "{ctl}"

[[environments]]
name = "production"
"#
    )
}

fn doctor(home: &Path, config: &str, kubeconfig: &Path, json: bool) -> Output {
    let cfg = home.join("hoist.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut args = vec!["doctor", "--config", cfg.to_str().unwrap()];
    if json {
        args.insert(0, "--json");
    }
    std::process::Command::new(env!("CARGO_BIN_EXE_hoist"))
        .arg("--home")
        .arg(home)
        .args(&args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("MLFLOW_TRACKING_URI")
        .env("DOCKER_CONFIG", home.join("no-docker-config"))
        .output()
        .unwrap()
}

/// The checks of a `--json` run, by name.
fn checks(o: &Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    v["checks"].as_array().unwrap().clone()
}

fn find<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:#?}"))
}

/// A signed-off image pushed to a REAL registry on loopback: its reference by digest.
fn pushed_image(reg: &hoist_testkit::registry::Registry) -> String {
    use hoist_oci::{Client, ClientOptions, ImageSpec, LayerBuilder, Reference};
    let repo = format!("{}/team/hoist", reg.addr);
    let mut l = LayerBuilder::new(5);
    l.bytes("usr/local/bin/hoist", b"#!".to_vec(), true)
        .unwrap();
    let img = ImageSpec::default().build(vec![l.build().unwrap()]);
    let c = Client::connect(&Reference::parse(&repo).unwrap(), ClientOptions::default()).unwrap();
    let d = c.push(&img, &[]).unwrap().digest;
    format!("{repo}@{d}")
}

#[test]
fn doctor_passes_on_a_prepared_cluster_and_names_each_failure_with_its_fix() {
    let Some(k) = Envtest::get() else { return };
    let reg = hoist_testkit::registry::Registry::start();
    let image = pushed_image(&reg);
    let home = temp_home("doctor");
    let (ns, ctl) = (unique("doctor-app"), unique("doctor-ctl"));
    let good = config(&ns, &ctl, &image, "", "embedded");

    // Prepared: the rendered objects applied, the Secrets created with their keys.
    let cfg = home.join("render.toml");
    std::fs::write(&cfg, &good).unwrap();
    let dir = home.join("k8s");
    ok(&hoist(
        &home,
        &[
            "render",
            "k8s",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
            "--version",
            "1",
            "--digest",
            &format!("sha256:{}", "7".repeat(64)),
        ],
    ));
    k.kubectl_ok(&["apply", "--server-side", "-k", dir.to_str().unwrap()]);
    k.kubectl_ok(&[
        "-n",
        &ns,
        "create",
        "secret",
        "generic",
        "mlflow-credentials",
        "--from-literal=username=hoist",
        "--from-literal=password=pw",
    ]);
    k.kubectl_ok(&[
        "-n",
        &ns,
        "create",
        "secret",
        "generic",
        "hoist-admin-token",
        "--from-literal=token=abc",
    ]);

    // As the admin: every check passes, exit 0; one line per check.
    let o = doctor(&home, &good, &k.kubeconfig, false);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains("ok    api server: reachable, Kubernetes v1.37.2"),
        "{text}"
    );
    for line in [
        "ok    crd httproutes.gateway.networking.k8s.io: gateway.networking.k8s.io/v1 served",
        "ok    crd servicemonitors.monitoring.coreos.com: monitoring.coreos.com/v1 served",
        &format!("ok    namespace {ns}: exists"),
        &format!("ok    secret {ns}/hoist-admin-token: keys token"),
        &format!("ok    secret {ns}/mlflow-credentials: keys password, username"),
        &format!("ok    access {ns}: patch apps/deployments/scale: allowed"),
        &format!("ok    access {ctl}: update coordination.k8s.io/leases/hoist-controller: allowed"),
        "ok    prometheus: not needed: [analysis] enabled = false",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    assert!(
        text.contains(&format!("ok    image {image}: manifest pullable")),
        "{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");
    println!("{text}");

    // As the rendered controller's ServiceAccount: its Role suffices for every verb;
    // it may not read Secrets (by design), and says who should check them.
    let sa = k.service_account_kubeconfig(&home, &ctl, "hoist-controller");
    let o = doctor(&home, &good, &sa, true);
    assert_eq!(o.status.code(), Some(1));
    let c = checks(&o);
    for x in &c {
        let name = x["name"].as_str().unwrap();
        if name.starts_with("access ") {
            assert_eq!(x["ok"], true, "{x}");
        }
        if name.starts_with("secret ") {
            assert_eq!(x["ok"], false, "{x}");
            assert!(
                x["fix"].as_str().unwrap().contains("may get Secrets"),
                "{x}"
            );
        }
    }

    // Each failure provoked: a Secret without its key, a namespace that does not exist
    // (so no Secrets there either), an image not in the registry, Prometheus and
    // MLflow on closed ports.
    k.kubectl_ok(&["-n", &ns, "delete", "secret", "hoist-admin-token"]);
    k.kubectl_ok(&[
        "-n",
        &ns,
        "create",
        "secret",
        "generic",
        "hoist-admin-token",
        "--from-literal=tok=abc",
    ]);
    let o = doctor(&home, &good, &k.kubeconfig, true);
    assert_eq!(o.status.code(), Some(1));
    let c = checks(&o);
    let bad = find(&c, &format!("secret {ns}/hoist-admin-token"));
    assert_eq!(bad["ok"], false);
    assert_eq!(
        bad["detail"],
        "has no key token (kubernetes.admin_token_secret)"
    );
    assert_eq!(
        bad["fix"],
        format!("add token to Secret {ns}/hoist-admin-token")
    );
    assert_eq!(c.iter().filter(|x| x["ok"] == false).count(), 1, "{c:#?}");

    let closed = hoist_testkit::free_port();
    let missing_image = format!("{}/team/hoist@sha256:{}", reg.addr, "5".repeat(64));
    let gone = unique("doctor-gone");
    let broken = config(
        &gone,
        &ctl,
        &missing_image,
        &format!("prometheus_url = \"http://127.0.0.1:{closed}\""),
        &format!("http://127.0.0.1:{closed}"),
    )
    .replace("enabled = false", "enabled = true");
    let o = doctor(&home, &broken, &k.kubeconfig, true);
    assert_eq!(o.status.code(), Some(1));
    let c = checks(&o);
    let failed = |name: &str| {
        let x = find(&c, name);
        assert_eq!(x["ok"], false, "{x}");
        assert!(x["fix"].as_str().is_some_and(|f| !f.is_empty()), "{x}");
        x["detail"].as_str().unwrap().to_string()
    };
    assert_eq!(failed(&format!("namespace {gone}")), "does not exist");
    assert!(failed(&format!("secret {gone}/mlflow-credentials")).starts_with("does not exist"));
    assert!(failed(&format!("image {missing_image}")).contains("manifest not pullable"));
    assert!(failed("prometheus production: requests query").contains(&closed.to_string()));
    assert!(failed(&format!("mlflow http://127.0.0.1:{closed}")).starts_with("unreachable"));
    assert_eq!(find(&c, "api server")["ok"], true);

    // The controller's permissions denied: a ServiceAccount without the Role.
    let other = unique("doctor-norole");
    k.kubectl_ok(&["create", "namespace", &other]);
    k.kubectl_ok(&["-n", &other, "create", "serviceaccount", "hoist-controller"]);
    let norole = k.service_account_kubeconfig(&home, &other, "hoist-controller");
    let o = doctor(&home, &good, &norole, true);
    assert_eq!(o.status.code(), Some(1));
    let c = checks(&o);
    let x = find(&c, &format!("access {ns}: patch apps/deployments"));
    assert_eq!(x["ok"], false, "{x}");
    assert!(x["detail"].as_str().unwrap().starts_with("denied"), "{x}");
    assert!(
        x["fix"].as_str().unwrap().contains("hoist-controller"),
        "{x}"
    );

    // The API server unreachable: one failed check, nothing else asked of it.
    let dead = home.join("dead.kubeconfig");
    let text = std::fs::read_to_string(&k.kubeconfig)
        .unwrap()
        .replace(&k.server(), &format!("https://127.0.0.1:{closed}"));
    std::fs::write(&dead, text).unwrap();
    let o = doctor(&home, &good, &dead, false);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("FAIL  api server: unreachable"), "{text}");
    assert!(text.contains("      fix: check KUBECONFIG"), "{text}");
    assert!(!text.contains("namespace "), "{text}");

    k.delete_namespaces(&[&ns, &ctl, &other]);
    let _ = std::fs::remove_dir_all(&home);
}
