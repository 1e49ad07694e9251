//! The rendered manifests: golden files, a round trip through the k8s-openapi types,
//! the properties a reviewer checks, and `kubectl kustomize` on the written directory.
//!
//! `HOIST_UPDATE_GOLDEN=1 cargo test -p hoist-targets --test kubernetes_render`
//! rewrites the golden files after an intended change; review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

use hoist_targets::kubernetes::crds::{HttpRoute, ServiceMonitor};
use hoist_targets::kubernetes::render::{self, Object};
use hoist_targets::kubernetes::{
    AppSpec, ControllerSpec, Error, GatewayRef, Manifests, ModelPin, ModelSource, Variant,
    render_controller,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

const IMAGE: &str = "registry.example.com/hoist/hoist@sha256:0f4e3d2c1b0a99887766554433221100ffeeddccbbaa99887766554433221100";

fn pin(version: &str, fill: char) -> ModelPin {
    ModelPin {
        name: "fraud".into(),
        version: version.into(),
        digest: format!("sha256:{}", fill.to_string().repeat(64)),
        artifact: None,
    }
}

/// Production mid-canary behind a Gateway: model fetched from MLflow, admin token,
/// autoscaler, and the in-cluster controller.
fn gateway_canary() -> AppSpec {
    let mut s = AppSpec::new(
        "fraud",
        "production",
        "hoist-production",
        IMAGE,
        pin("3", 'a'),
        ModelSource::Registry {
            url: "http://mlflow.mlflow.svc:5000".into(),
            credentials_secret: Some("mlflow-credentials".into()),
        },
    );
    s.candidate = Some(pin("4", 'b'));
    s.candidate_weight = 10;
    s.admin_token_secret = Some("hoist-admin-token".into());
    s.gateway = Some(GatewayRef {
        name: "public".into(),
        namespace: Some("gateway-system".into()),
        section_name: Some("https".into()),
    });
    s.hostnames = vec!["fraud.example.com".into()];
    s.runtime = "onnxruntime".into();
    s.server_args = vec!["--workers".into(), "2".into()];
    s.controller = Some(controller());
    s
}

fn controller() -> ControllerSpec {
    ControllerSpec {
        namespace: "hoist-system".into(),
        image: IMAGE.into(),
        replicas: 2,
        config_toml: "target = \"kubernetes\"\n[model]\nname = \"fraud\"\n".into(),
        journal_claim: None,
        secret_env: vec![
            (
                "HOIST_WEBHOOK_SECRET".into(),
                "mlflow-webhook".into(),
                "secret".into(),
            ),
            ("NOTIFY_SECRET".into(), "notify".into(), "signing".into()),
        ],
        webhook_port: Some(9000),
    }
}

/// Staging without a Gateway (replica-ratio split), the model baked into the image,
/// a fixed replica count, no candidate yet.
fn baked_replica_ratio() -> AppSpec {
    let mut s = AppSpec::new(
        "fraud",
        "staging",
        "hoist-staging",
        IMAGE,
        pin("3", 'a'),
        ModelSource::Baked {
            path: "/opt/model".into(),
        },
    );
    s.autoscale = None;
    s.replicas = 2;
    s.ingress_namespaces = vec!["ingress-nginx".into()];
    s
}

const ARTIFACTS: &str = "registry.example.com/team/model-artifacts";

/// Production mid-canary with the model pulled from its OCI artifact (by digest) and
/// a pull secret for both the image and the artifact.
fn oci_pull_secret() -> AppSpec {
    let with_artifact = |version: &str, fill: char, art: char| ModelPin {
        artifact: Some(format!("{ARTIFACTS}@sha256:{}", art.to_string().repeat(64))),
        ..pin(version, fill)
    };
    let mut s = AppSpec::new(
        "fraud",
        "production",
        "hoist-production",
        IMAGE,
        with_artifact("3", 'a', 'c'),
        ModelSource::Oci,
    );
    s.candidate = Some(with_artifact("4", 'b', 'd'));
    s.candidate_weight = 10;
    s.pull_secret = Some("registry-credentials".into());
    s.controller = Some(controller());
    s
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.yaml"))
}

fn check_golden(name: &str, text: &str) {
    let path = golden(name);
    if std::env::var_os("HOIST_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with HOIST_UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if want != text {
        let first = want
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(text.lines().count()));
        panic!(
            "{} differs from the render at line {}:\n  golden:   {:?}\n  rendered: {:?}\n\
             (HOIST_UPDATE_GOLDEN=1 rewrites it after an intended change)",
            path.display(),
            first + 1,
            want.lines().nth(first),
            text.lines().nth(first)
        );
    }
}

fn deployment<'a>(m: &'a Manifests, name: &str) -> &'a Deployment {
    m.objects
        .iter()
        .find_map(|o| match o {
            Object::Deployment(d) if o.name() == name => Some(d.as_ref()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Deployment {name}"))
}

fn route(m: &Manifests) -> &HttpRoute {
    m.objects
        .iter()
        .find_map(|o| match o {
            Object::HttpRoute(r) => Some(r),
            _ => None,
        })
        .expect("an HTTPRoute")
}

#[test]
fn golden_gateway_canary() {
    let m = render::render(&gateway_canary()).unwrap();
    check_golden("gateway-canary", &m.to_yaml());
    let c = render_controller(&controller(), &gateway_canary()).unwrap();
    check_golden("controller", &c.to_yaml());
}

#[test]
fn golden_oci_pull_secret() {
    let m = render::render(&oci_pull_secret()).unwrap();
    check_golden("oci-pull-secret", &m.to_yaml());
    let c = render_controller(&controller(), &oci_pull_secret()).unwrap();
    let yaml = c.to_yaml();
    assert!(
        yaml.contains("imagePullSecrets:\n      - name: registry-credentials"),
        "the controller pulls its image with the secret too:\n{yaml}"
    );
}

#[test]
fn an_oci_model_is_pulled_by_digest_into_the_servers_volume() {
    let m = render::render(&oci_pull_secret()).unwrap();
    for (name, art) in [("fraud-stable", 'c'), ("fraud-candidate", 'd')] {
        let d = deployment(&m, name);
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let secrets = pod.image_pull_secrets.as_ref().unwrap();
        assert_eq!(secrets[0].name, "registry-credentials");
        let init = &pod.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.name, "pull-model");
        assert_eq!(init.image.as_deref(), Some(IMAGE));
        let reference = format!("{ARTIFACTS}@sha256:{}", art.to_string().repeat(64));
        assert_eq!(
            init.args.as_ref().unwrap(),
            &["model", "pull", &reference, "--out", "/models/model"]
        );
        let env = init.env.as_ref().unwrap();
        assert_eq!(env[0].name, "REGISTRY_AUTH_FILE");
        let server = &pod.containers[0];
        assert_eq!(server.args.as_ref().unwrap()[1], "/models/model");
        let mounts = server.volume_mounts.as_ref().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m.name == "model" && m.read_only == Some(true)),
            "the server reads what the init container pulled"
        );
        assert!(
            !mounts.iter().any(|m| m.name == "registry-auth"),
            "only the init container sees the registry credentials"
        );
        let ann = d.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann["hoist.dev/artifact"], reference);
    }
}

#[test]
fn an_oci_model_needs_an_artifact_pinned_by_digest() {
    let mut s = oci_pull_secret();
    s.candidate.as_mut().unwrap().artifact = None;
    let e = render::render(&s).unwrap_err().to_string();
    assert!(
        e.contains("candidate.artifact") && e.contains("hoist.artifact"),
        "{e}"
    );
    let mut s = oci_pull_secret();
    s.stable.artifact = Some(format!("{ARTIFACTS}:fraud-v3"));
    let e = render::render(&s).unwrap_err().to_string();
    assert!(
        e.contains("stable.artifact") && e.contains("not pinned by digest"),
        "{e}"
    );
}

#[test]
fn golden_baked_replica_ratio() {
    let m = render::render(&baked_replica_ratio()).unwrap();
    check_golden("baked-replica-ratio", &m.to_yaml());
}

/// Every document parses back into its k8s-openapi (or CRD) type and equals the
/// object it was rendered from: nothing is lost or misspelt on the way to YAML.
#[test]
fn yaml_parses_back_into_the_typed_objects() {
    for m in [
        render::render(&gateway_canary()).unwrap(),
        render::render(&baked_replica_ratio()).unwrap(),
        render_controller(&controller(), &gateway_canary()).unwrap(),
    ] {
        let yaml = m.to_yaml();
        let docs: Vec<&str> = yaml.split("\n---\n").skip(1).collect();
        assert_eq!(docs.len(), m.objects.len(), "one document per object");
        for (doc, obj) in docs.iter().zip(&m.objects) {
            let back = parse(doc);
            assert_eq!(&back, obj, "round trip of {} {}", obj.kind(), obj.name());
        }
    }
}

fn parse(doc: &str) -> Object {
    let v: serde_yaml::Value = serde_yaml::from_str(doc).unwrap();
    let kind = v["kind"]
        .as_str()
        .expect("every document has a kind")
        .to_string();
    macro_rules! as_ {
        ($t:ty) => {
            serde_yaml::from_value::<$t>(v).unwrap_or_else(|e| panic!("{kind}: {e}"))
        };
    }
    match kind.as_str() {
        "Namespace" => Object::Namespace(as_!(Namespace)),
        "ServiceAccount" => Object::ServiceAccount(as_!(ServiceAccount)),
        "Role" => Object::Role(as_!(Role)),
        "RoleBinding" => Object::RoleBinding(as_!(RoleBinding)),
        "ConfigMap" => Object::ConfigMap(as_!(ConfigMap)),
        "Lease" => Object::Lease(as_!(Lease)),
        "Deployment" => Object::Deployment(Box::new(as_!(Deployment))),
        "Service" => Object::Service(as_!(Service)),
        "HorizontalPodAutoscaler" => Object::HorizontalPodAutoscaler(as_!(HorizontalPodAutoscaler)),
        "PodDisruptionBudget" => Object::PodDisruptionBudget(as_!(PodDisruptionBudget)),
        "NetworkPolicy" => Object::NetworkPolicy(as_!(NetworkPolicy)),
        "ServiceMonitor" => Object::ServiceMonitor(as_!(ServiceMonitor)),
        "HTTPRoute" => Object::HttpRoute(as_!(HttpRoute)),
        other => panic!("unexpected kind {other}"),
    }
}

/// What a reviewer of the manifests looks for in a model server's pod.
#[test]
fn model_servers_are_pinned_hardened_and_probed() {
    let spec = gateway_canary();
    let m = render::render(&spec).unwrap();
    for (name, p) in [
        ("fraud-stable", pin("3", 'a')),
        ("fraud-candidate", pin("4", 'b')),
    ] {
        let d = deployment(&m, name);
        let ann = d.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann["hoist.dev/model"], "fraud");
        assert_eq!(ann["hoist.dev/version"], p.version);
        assert_eq!(ann["hoist.dev/digest"], p.digest);
        let ds = d.spec.as_ref().unwrap();
        let ru = ds
            .strategy
            .as_ref()
            .unwrap()
            .rolling_update
            .as_ref()
            .unwrap();
        assert_eq!(
            ru.max_unavailable,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
        );
        let tpl = ds.template.metadata.as_ref().unwrap();
        assert_eq!(
            tpl.annotations.as_ref().unwrap()["hoist.dev/digest"],
            p.digest,
            "a new digest changes the pod template, so it rolls"
        );
        let pod = ds.template.spec.as_ref().unwrap();
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.topology_spread_constraints.as_ref().unwrap().len(), 2);
        assert!(pod.affinity.as_ref().unwrap().pod_anti_affinity.is_some());
        let all = pod.init_containers.iter().flatten().chain(&pod.containers);
        for c in all {
            assert_eq!(c.image.as_deref(), Some(IMAGE), "{}", c.name);
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(
                sc.capabilities.as_ref().unwrap().drop.as_deref(),
                Some(&["ALL".to_string()][..])
            );
        }
        let server = &pod.containers[0];
        let args = server.args.as_ref().unwrap();
        let flag = |f: &str| args[args.iter().position(|a| a == f).unwrap() + 1].clone();
        assert_eq!(flag("--model"), "/models/model");
        assert_eq!(flag("--model-version"), p.version);
        assert_eq!(flag("--name"), "fraud");
        assert_eq!(flag("--host"), "0.0.0.0");
        assert_eq!(flag("--runtime"), "onnxruntime");
        assert!(args.ends_with(&["--workers".into(), "2".into()]));
        let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            p.as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .clone()
                .unwrap()
        };
        assert_eq!(path(&server.startup_probe), "/v2/health/ready");
        assert_eq!(path(&server.readiness_probe), "/v2/health/ready");
        assert_eq!(path(&server.liveness_probe), "/v2/health/live");
        let pre_stop = server
            .lifecycle
            .as_ref()
            .unwrap()
            .pre_stop
            .as_ref()
            .unwrap();
        assert_eq!(pre_stop.sleep.as_ref().unwrap().seconds, 5);
        let res = server.resources.as_ref().unwrap();
        assert!(res.requests.as_ref().unwrap().contains_key("cpu"));
        assert!(res.limits.as_ref().unwrap().contains_key("memory"));
        // Admin token: a mounted Secret directory (no subPath, so rotation reaches it).
        let env = server.env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == "HOIST_ADMIN_TOKEN_FILE"
            && e.value.as_deref() == Some("/var/run/secrets/hoist/admin/token")));
        let m = server
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "admin-token")
            .unwrap();
        assert_eq!(m.sub_path, None);
        // The init container fetches exactly this version, credentials from the Secret.
        let init = &pod.init_containers.as_ref().unwrap()[0];
        let iargs = init.args.as_ref().unwrap();
        assert_eq!(
            &iargs[..3],
            &["model", "fetch", &format!("fraud/{}", p.version)]
        );
        assert!(
            iargs
                .windows(2)
                .any(|w| w == ["--registry", "http://mlflow.mlflow.svc:5000"])
        );
        // ... and refuses any other package than the digest hoist resolved.
        assert!(
            iargs
                .windows(2)
                .any(|w| w == ["--digest", p.digest.as_str()]),
            "{iargs:?}"
        );
        let ienv = init.env.as_ref().unwrap();
        let user = ienv
            .iter()
            .find(|e| e.name == "MLFLOW_TRACKING_USERNAME")
            .unwrap();
        let sk = user
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(sk.name, "mlflow-credentials");
    }
    // The autoscaler owns the stable count: the Deployment does not set it.
    assert_eq!(
        deployment(&m, "fraud-stable")
            .spec
            .as_ref()
            .unwrap()
            .replicas,
        None
    );
}

#[test]
fn the_autoscaler_scales_on_memory_too_when_asked() {
    let hpa = |spec: &AppSpec| {
        let m = render::render(spec).unwrap();
        let Some(Object::HorizontalPodAutoscaler(h)) = m
            .objects
            .into_iter()
            .find(|o| matches!(o, Object::HorizontalPodAutoscaler(_)))
        else {
            panic!("no autoscaler rendered");
        };
        h.spec
            .unwrap()
            .metrics
            .unwrap()
            .into_iter()
            .map(|m| {
                let r = m.resource.unwrap();
                (r.name, r.target.average_utilization.unwrap())
            })
            .collect::<Vec<_>>()
    };
    let mut spec = gateway_canary();
    assert_eq!(hpa(&spec), vec![("cpu".to_string(), 70)]);
    spec.autoscale.as_mut().unwrap().memory_percent = Some(80);
    assert_eq!(
        hpa(&spec),
        vec![("cpu".to_string(), 70), ("memory".to_string(), 80)]
    );
    spec.autoscale.as_mut().unwrap().memory_percent = Some(0);
    assert!(render::render(&spec).is_err(), "0% is refused");
}

#[test]
fn baked_model_needs_no_init_container() {
    let m = render::render(&baked_replica_ratio()).unwrap();
    let d = deployment(&m, "fraud-stable");
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert!(pod.init_containers.is_none());
    let args = pod.containers[0].args.as_ref().unwrap();
    assert_eq!(args[1], "/opt/model");
    assert_eq!(
        d.spec.as_ref().unwrap().replicas,
        Some(2),
        "no autoscaler: a fixed count"
    );
    assert!(
        !m.objects
            .iter()
            .any(|o| matches!(o, Object::HttpRoute(_) | Object::HorizontalPodAutoscaler(_))),
        "no Gateway, no autoscaler configured"
    );
    assert!(
        !m.objects
            .iter()
            .any(|o| o.name() == "fraud-candidate" && o.kind() == "Deployment")
    );
}

#[test]
fn http_route_carries_the_canary_split() {
    let spec = gateway_canary();
    let m = render::render(&spec).unwrap();
    let r = route(&m);
    assert_eq!(r.spec.parent_refs[0].name, "public");
    assert_eq!(
        r.spec.parent_refs[0].namespace.as_deref(),
        Some("gateway-system")
    );
    assert_eq!(r.spec.hostnames, ["fraud.example.com"]);
    let main = r.spec.rules.last().unwrap();
    let weights: Vec<(String, Option<i32>)> = main
        .backend_refs
        .iter()
        .map(|b| (b.name.clone(), b.weight))
        .collect();
    assert_eq!(
        weights,
        [
            ("fraud-stable".to_string(), Some(90)),
            ("fraud-candidate".to_string(), Some(10))
        ]
    );
    assert_eq!(render::route_weight(r, &spec), Some(10));
    // The force header pins a variant whatever the weights.
    let forced = &r.spec.rules[0];
    assert_eq!(forced.matches[0].headers[0].name, "x-hoist-variant");
    assert_eq!(forced.matches[0].headers[0].value, "candidate");
    assert_eq!(forced.backend_refs[0].name, "fraud-candidate");
}

#[test]
fn network_policy_admits_only_gateway_prometheus_and_controller() {
    let m = render::render(&gateway_canary()).unwrap();
    let np = m
        .objects
        .iter()
        .find_map(|o| match o {
            Object::NetworkPolicy(n) => Some(n),
            _ => None,
        })
        .unwrap();
    let spec = np.spec.as_ref().unwrap();
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_string()][..])
    );
    let rules = spec.ingress.as_ref().unwrap();
    let namespaces: Vec<String> = rules[0]
        .from
        .iter()
        .flatten()
        .map(|p| {
            p.namespace_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["kubernetes.io/metadata.name"]
                .clone()
        })
        .collect();
    assert_eq!(namespaces, ["gateway-system", "hoist-system", "monitoring"]);
}

#[test]
fn an_image_tag_is_refused_with_the_reason() {
    for image in [
        "registry.example.com/hoist/hoist:latest",
        "registry.example.com/hoist/hoist",
        "registry.example.com/hoist/hoist@sha256:short",
    ] {
        let mut s = gateway_canary();
        s.image = image.into();
        let e = render::render(&s).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)));
        let msg = e.to_string();
        assert!(msg.starts_with("image: "), "{msg}");
        assert!(msg.contains("digest"), "{msg}");
    }
    let mut s = gateway_canary();
    s.stable.digest = "md5:abc".into();
    assert!(
        render::render(&s)
            .unwrap_err()
            .to_string()
            .starts_with("stable.digest: ")
    );
    let mut s = gateway_canary();
    s.app = "Fraud_Model".into();
    assert!(
        render::render(&s)
            .unwrap_err()
            .to_string()
            .contains("DNS label")
    );
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hoist-k8s-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// kubectl (offline) builds the written directory and lists every object.
#[test]
fn kubectl_kustomize_accepts_the_directory() {
    let dir = temp_dir("kustomize");
    let mut m = render::render(&gateway_canary()).unwrap();
    m.objects.extend(
        render_controller(&controller(), &gateway_canary())
            .unwrap()
            .objects,
    );
    let written = m.write_dir(&dir).unwrap();
    assert_eq!(written.files.len(), m.objects.len() + 1);
    assert!(
        written
            .files
            .last()
            .unwrap()
            .ends_with("kustomization.yaml")
    );
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("kubectl is installed (tools/debian-tools.sh)");
    assert!(
        out.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = String::from_utf8(out.stdout).unwrap();
    let mut seen: Vec<(String, String, String)> = built
        .split("\n---\n")
        .map(|doc| {
            let v: serde_yaml::Value = serde_yaml::from_str(doc).unwrap();
            (
                v["kind"].as_str().unwrap().to_string(),
                v["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                v["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut want: Vec<(String, String, String)> = m
        .objects
        .iter()
        .map(|o| {
            (
                o.kind().to_string(),
                o.namespace().unwrap_or("").to_string(),
                o.name().to_string(),
            )
        })
        .collect();
    seen.sort();
    want.sort();
    assert_eq!(seen, want);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A second render into the same directory leaves exactly its own files: the
/// candidate's files go when there is no candidate any more; a file of the user's
/// stays.
#[test]
fn rewriting_a_directory_removes_stale_files_only() {
    let dir = temp_dir("rewrite");
    render::render(&gateway_canary())
        .unwrap()
        .write_dir(&dir)
        .unwrap();
    std::fs::write(dir.join("my-secret.yaml"), "kind: Secret\n").unwrap();
    let mut s = gateway_canary();
    s.candidate = None;
    s.candidate_weight = 0;
    let w = render::render(&s).unwrap().write_dir(&dir).unwrap();
    let removed: Vec<String> = w
        .removed
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        removed,
        ["30-deployment-hoist-production-fraud-candidate.yaml"]
    );
    assert!(dir.join("my-secret.yaml").exists());
    let k = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
    assert!(!k.contains("fraud-candidate.yaml\n- 30"), "{k}");
    assert!(!k.contains("deployment-hoist-production-fraud-candidate"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn names_follow_the_variant() {
    let s = gateway_canary();
    assert_eq!(s.name(Variant::Stable), "fraud-stable");
    assert_eq!(
        render::selector_string(&s, Variant::Candidate),
        "app.kubernetes.io/name=fraud,hoist.dev/variant=candidate"
    );
}

/// The controller gets every secret as a file from a mounted Secret (`VAR_FILE`), never
/// as a value in its environment, so hoist can read a rotated Secret again without a
/// restart; the webhook port is on its container and its Service.
#[test]
fn the_controller_reads_secrets_from_mounted_files_and_exposes_the_webhook() {
    use k8s_openapi::api::core::v1::Service;
    let m = render_controller(&controller(), &gateway_canary()).unwrap();
    let d = m
        .objects
        .iter()
        .find_map(|o| match o {
            Object::Deployment(d) => Some(d),
            _ => None,
        })
        .unwrap();
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let c = &pod.containers[0];
    let env = c.env.as_ref().unwrap();
    assert!(
        env.iter().all(|e| e
            .value_from
            .as_ref()
            .is_none_or(|v| v.secret_key_ref.is_none())),
        "no secret as a value: {env:?}"
    );
    let value = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| panic!("{name} not set: {env:?}"))
    };
    assert_eq!(
        value("MLFLOW_TRACKING_PASSWORD_FILE"),
        "/var/run/secrets/hoist/mlflow/password"
    );
    assert_eq!(
        value("MLFLOW_TRACKING_TOKEN_FILE"),
        "/var/run/secrets/hoist/mlflow/token"
    );
    assert_eq!(
        value("HOIST_WEBHOOK_SECRET_FILE"),
        "/var/run/secrets/hoist/env/mlflow-webhook/secret"
    );
    assert_eq!(
        value("NOTIFY_SECRET_FILE"),
        "/var/run/secrets/hoist/env/notify/signing"
    );
    let volumes = pod.volumes.as_ref().unwrap();
    let mounts = c.volume_mounts.as_ref().unwrap();
    for (secret, dir, keys) in [
        ("mlflow-credentials", "/var/run/secrets/hoist/mlflow", None),
        (
            "mlflow-webhook",
            "/var/run/secrets/hoist/env/mlflow-webhook",
            Some(vec!["secret"]),
        ),
        (
            "notify",
            "/var/run/secrets/hoist/env/notify",
            Some(vec!["signing"]),
        ),
    ] {
        let v = volumes
            .iter()
            .find(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some(secret))
            .unwrap_or_else(|| panic!("no volume of {secret}"));
        let items: Option<Vec<&str>> = v
            .secret
            .as_ref()
            .unwrap()
            .items
            .as_ref()
            .map(|i| i.iter().map(|k| k.key.as_str()).collect());
        assert_eq!(items, keys, "{secret}");
        let m = mounts.iter().find(|m| m.name == v.name).unwrap();
        assert_eq!(m.mount_path, dir);
        // A subPath mount would never see the kubelet's rotation.
        assert_eq!(m.sub_path, None);
        assert_eq!(m.read_only, Some(true));
    }
    let ports: Vec<(Option<&str>, i32)> = c
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.name.as_deref(), p.container_port))
        .collect();
    assert_eq!(ports, [(Some("api"), 7070), (Some("webhook"), 9000)]);
    let svc: &Service = m
        .objects
        .iter()
        .find_map(|o| match o {
            Object::Service(s) => Some(s),
            _ => None,
        })
        .unwrap();
    let sports: Vec<(Option<&str>, i32)> = svc
        .spec
        .as_ref()
        .unwrap()
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.name.as_deref(), p.port))
        .collect();
    assert_eq!(sports, [(Some("api"), 7070), (Some("webhook"), 9000)]);

    // Without a webhook, no such port.
    let mut plain = controller();
    plain.webhook_port = None;
    let yaml = render_controller(&plain, &gateway_canary())
        .unwrap()
        .to_yaml();
    assert!(!yaml.contains("name: webhook"), "{yaml}");
}

/// `hoist render k8s` with the controller: every variable hoist.toml names for it must
/// come from a Secret, and a webhook must listen beyond the pod's loopback.
#[test]
fn the_controller_needs_each_named_secret_from_a_secret() {
    use hoist_release::config::Config;
    use hoist_targets::kubernetes::config::check_controller_env;
    let cfg = |extra: &str| {
        let text = format!(
            "target = \"kubernetes\"\n{extra}\n[kubernetes]\nimage = \"{IMAGE}\"\nmodel_path = \"/m\"\n\
             [kubernetes.controller]\nenabled = true\n[[environments]]\nname = \"production\"\n"
        );
        Config::parse(&text, "hoist.toml").unwrap_or_else(|e| panic!("{text}: {e}"))
    };
    check_controller_env(&cfg("")).unwrap();
    let webhook = "[registry]\nurl = \"http://mlflow:5000\"\nwebhook_listen = \"0.0.0.0:9000\"\n";
    let err = check_controller_env(&cfg(webhook)).unwrap_err();
    assert!(
        err.contains("registry.webhook_secret_env")
            && err.contains("HOIST_WEBHOOK_SECRET = \"<Secret name>/<key>\"")
            && err.contains("[kubernetes.controller.secret_env]"),
        "{err}"
    );
    let err = check_controller_env(&cfg(&webhook.replace("0.0.0.0", "127.0.0.1"))).unwrap_err();
    assert!(err.contains("listen on 0.0.0.0:9000"), "{err}");
    let notify = "[[notifications]]\nurl = \"https://hooks.example.com/x\"\nsecret_env = \"NOTIFY_SECRET\"\n";
    let err = check_controller_env(&cfg(notify)).unwrap_err();
    assert!(
        err.contains("notifications[0].secret_env") && err.contains("NOTIFY_SECRET"),
        "{err}"
    );

    let text = format!(
        "target = \"kubernetes\"\n{webhook}{notify}[kubernetes]\nimage = \"{IMAGE}\"\nmodel_path = \"/m\"\n\
         [kubernetes.controller]\nenabled = true\n[kubernetes.controller.secret_env]\n\
         HOIST_WEBHOOK_SECRET = \"mlflow-webhook/secret\"\nNOTIFY_SECRET = \"notify/signing\"\n\
         [[environments]]\nname = \"production\"\n"
    );
    let c = Config::parse(&text, "hoist.toml").unwrap();
    check_controller_env(&c).unwrap();
}
