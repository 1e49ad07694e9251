//! [`Envtest`]: the real Kubernetes control plane of `tools/envtest.sh` (kube-apiserver,
//! kube-controller-manager, kube-scheduler, etcd and kwok's fake nodes, built from their
//! Go modules and run on 127.0.0.1 with RBAC on), for tests that need a real API server:
//! server-side apply and field ownership, validation, admission and defaulting, RBAC,
//! the Deployment and ReplicaSet controllers, scheduling, Leases.
//!
//! Pods run nothing (kwok reports them Running and Ready); a pod whose template carries
//! the annotation [`FAIL_ANNOTATION`] = `<reason>` never gets ready and its containers
//! wait with that reason instead (`CrashLoopBackOff`, `ImagePullBackOff`, ...), as a
//! kubelet reports it.
//!
//! Where the control plane comes from, in order: `HOIST_ENVTEST_KUBECONFIG` (what
//! `tools/test.sh` exports after `tools/envtest.sh up`); else `tools/envtest.sh up`,
//! when its binaries are already built or `HOIST_REQUIRE_ENVTEST` is set (it then
//! builds them). Otherwise [`Envtest::get`] says why on stderr and returns `None`, and
//! the test returns early: only when `HOIST_REQUIRE_ENVTEST` is unset. The test command
//! sets it, so there a missing control plane fails the test. `HOIST_ENVTEST_LATER=1`
//! (without `HOIST_REQUIRE_ENVTEST`) returns early at once: the test command's
//! workspace run sets it, and runs these tests afterwards against the control plane.
//!
//! Tests share one control plane: each works in namespaces of its own
//! ([`Envtest::namespace`]) and deletes them when done.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A pod template annotation that makes kwok fail the pods with its value as reason.
pub const FAIL_ANNOTATION: &str = "envtest.hoist.dev/fail";

/// The test control plane, through its admin kubeconfig.
#[derive(Debug, Clone)]
pub struct Envtest {
    pub kubeconfig: PathBuf,
}

fn require() -> bool {
    std::env::var_os("HOIST_REQUIRE_ENVTEST").is_some_and(|v| !v.is_empty() && v != "0")
}

fn find() -> Result<PathBuf, String> {
    if let Some(k) = std::env::var_os("HOIST_ENVTEST_KUBECONFIG").filter(|k| !k.is_empty()) {
        let k = PathBuf::from(k);
        return if k.is_file() {
            Ok(k)
        } else {
            Err(format!(
                "HOIST_ENVTEST_KUBECONFIG={} is no file",
                k.display()
            ))
        };
    }
    if !require() && std::env::var_os("HOIST_ENVTEST_LATER").is_some_and(|v| v == "1") {
        return Err(
            "HOIST_ENVTEST_LATER=1: tools/test.sh runs this test against the control \
                    plane once its build is done"
                .into(),
        );
    }
    let script = crate::repo_root().join("tools/envtest.sh");
    if !require() {
        let built = Command::new("bash")
            .arg(&script)
            .arg("built")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !built {
            return Err(
                "the control plane is not built (run `bash tools/envtest.sh up`, \
                        or set HOIST_REQUIRE_ENVTEST=1 to build it from the tests)"
                    .into(),
            );
        }
    }
    let out = Command::new("bash")
        .arg(&script)
        .arg("up")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last() {
        Some(k) if out.status.success() && Path::new(k).is_file() => Ok(PathBuf::from(k)),
        _ => Err(format!("`tools/envtest.sh up` failed: {stdout}")),
    }
}

impl Envtest {
    /// The shared control plane, started once per test process; `None` (after saying
    /// why) when there is none and `HOIST_REQUIRE_ENVTEST` is unset.
    ///
    /// # Panics
    /// When `HOIST_REQUIRE_ENVTEST` is set and the control plane cannot be had.
    pub fn get() -> Option<Envtest> {
        static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        match FOUND.get_or_init(find) {
            Ok(k) => Some(Envtest {
                kubeconfig: k.clone(),
            }),
            Err(why) if require() => panic!("HOIST_REQUIRE_ENVTEST is set, but {why}"),
            Err(why) => {
                eprintln!("SKIPPED: no Kubernetes test control plane: {why}");
                None
            }
        }
    }

    /// The CA certificate the API server's serving certificate is signed by.
    pub fn ca_file(&self) -> PathBuf {
        self.kubeconfig.with_file_name("ca.crt")
    }

    /// The API server's URL.
    pub fn server(&self) -> String {
        let text = std::fs::read_to_string(&self.kubeconfig).expect("read kubeconfig");
        text.lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .expect("server in kubeconfig")
            .to_string()
    }

    /// `kubectl` as the cluster admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(&self.kubeconfig, args, None)
    }

    /// `kubectl` with another kubeconfig, `stdin` fed to it.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = c
            .spawn()
            .expect("kubectl (tools/debian-tools.sh installs it)");
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        child.wait_with_output().expect("kubectl")
    }

    /// `kubectl` as the admin; panics with its stderr unless it succeeds; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            o.status.success(),
            "kubectl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `kubectl apply --server-side -f -` of `yaml` as the admin.
    pub fn apply(&self, yaml: &str) -> String {
        let o = self.kubectl_as(
            &self.kubeconfig,
            &[
                "apply",
                "--server-side",
                "--field-manager",
                "envtest",
                "-f",
                "-",
            ],
            Some(yaml),
        );
        assert!(
            o.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// One object as JSON, or `None` when it does not exist.
    pub fn get_json(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let o = self.kubectl(&[
            "get",
            kind,
            "-n",
            namespace,
            name,
            "-o",
            "json",
            "--show-managed-fields",
        ]);
        if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("NotFound"), "kubectl get {kind} {name}: {err}");
            return None;
        }
        Some(serde_json::from_slice(&o.stdout).expect("kubectl -o json"))
    }

    /// A new namespace named `{prefix}-{unique}` (at most 63 characters), created.
    pub fn namespace(&self, prefix: &str) -> String {
        let ns = unique(prefix);
        self.kubectl_ok(&["create", "namespace", &ns]);
        ns
    }

    /// Deletes namespaces without waiting for their finalization.
    pub fn delete_namespaces(&self, namespaces: &[&str]) {
        let mut args = vec!["delete", "namespace", "--wait=false", "--ignore-not-found"];
        args.extend(namespaces);
        let _ = self.kubectl(&args);
    }

    /// A kubeconfig in `dir` that authenticates as ServiceAccount `namespace/name`,
    /// with a token the API server mints for it (TokenRequest, one hour).
    pub fn service_account_kubeconfig(&self, dir: &Path, namespace: &str, name: &str) -> PathBuf {
        let token =
            self.kubectl_ok(&["create", "token", name, "-n", namespace, "--duration", "1h"]);
        let path = dir.join(format!("{namespace}-{name}.kubeconfig"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    server: {}\n    certificate-authority: {}\ncontexts:\n- name: sa\n  context: {{cluster: envtest, user: sa, namespace: {namespace}}}\ncurrent-context: sa\nusers:\n- name: sa\n  user: {{token: {}}}\n",
            self.server(),
            self.ca_file().display(),
            token.trim()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// What ServiceAccount `namespace/name` asked of the API server, from the API
    /// server's audit log (`tools/envtest.sh` audits service accounts' requests at the
    /// Metadata level): `(verb, resource[/subresource], namespace, name, code)`, one per
    /// request, in order.
    pub fn audited(
        &self,
        namespace: &str,
        name: &str,
    ) -> Vec<(String, String, String, String, i64)> {
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let log = self.kubeconfig.with_file_name("logs").join("audit.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["user"]["username"] == user.as_str() && e["stage"] == "ResponseComplete")
            .map(|e| {
                let o = &e["objectRef"];
                let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
                let mut resource = s(&o["resource"]);
                if let Some(sub) = o["subresource"].as_str() {
                    resource = format!("{resource}/{sub}");
                }
                (
                    s(&e["verb"]),
                    resource,
                    s(&o["namespace"]),
                    s(&o["name"]),
                    e["responseStatus"]["code"].as_i64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// `kubectl diff --server-side -k DIR` finds nothing to change. Controllers keep
    /// writing status (a PodDisruptionBudget's conditions, a Deployment's replicas)
    /// between diff's read of the live object and its dry run, which shows as a
    /// difference that is gone on the next read; a difference that stays for 10 s
    /// is real and fails.
    pub fn assert_no_diff(&self, dir: &Path) {
        let mut last = String::new();
        for _ in 0..10 {
            let diff = self.kubectl(&["diff", "--server-side", "-k", &dir.to_string_lossy()]);
            if diff.status.code() == Some(0) {
                return;
            }
            last = format!(
                "exit {:?}\n{}{}",
                diff.status.code(),
                String::from_utf8_lossy(&diff.stdout),
                String::from_utf8_lossy(&diff.stderr)
            );
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!("kubectl diff: {last}");
    }

    /// Waits (bounded by `timeout`) until `f` holds, panicking with `what` after.
    pub fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `prefix-<pid><counter><time>` cut to a valid namespace name (not created).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 100_000)
        .unwrap_or(0);
    let mut s = format!(
        "{prefix}-{}{}{t}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    s.truncate(55);
    s
}

/// The manifests under `dir` (recursively), in order: every `.yaml` but kustomize's
/// own `kustomization.yaml`.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(yaml_files(&p));
        } else if p.extension().is_some_and(|x| x == "yaml")
            && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        {
            out.push(p);
        }
    }
    out.sort();
    out
}
