//! `split = "hoist"`: hoist's gateway rendered in front of both variants — its
//! Deployment and Service, the app Service selecting its pods, the model servers'
//! policy admitting it, and an admin port only the controller's namespace reaches.
//! (Accepted by a real API server: `crates/cli/tests/cluster.rs`.)

use std::collections::BTreeMap;

use hoist_targets::kubernetes::render::{Object, render};
use hoist_targets::kubernetes::{
    AppSpec, ControllerSpec, Error, GatewayRef, HoistGateway, ModelPin, ModelSource,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;

const IMAGE: &str = "registry.example.com/hoist/hoist@sha256:0f4e3d2c1b0a99887766554433221100ffeeddccbbaa99887766554433221100";

fn spec() -> AppSpec {
    let mut s = AppSpec::new(
        "fraud",
        "production",
        "hoist-production",
        IMAGE,
        ModelPin {
            name: "fraud".into(),
            version: "3".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            artifact: None,
        },
        ModelSource::Baked {
            path: "/models/fraud".into(),
        },
    );
    s.admin_token_secret = Some("hoist-admin-token".into());
    s.hoist_gateway = Some(HoistGateway {
        args: vec!["--sticky-header".into(), "x-user".into()],
        feedback_token_secret: None,
    });
    s.controller = Some(ControllerSpec {
        namespace: "hoist-system".into(),
        image: IMAGE.into(),
        replicas: 2,
        config_toml: String::new(),
        journal_claim: None,
        secret_env: Vec::new(),
        webhook_port: None,
    });
    s
}

fn find<'a>(objects: &'a [Object], kind: &str, name: &str) -> &'a Object {
    objects
        .iter()
        .find(|o| o.kind() == kind && o.name() == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn service(objects: &[Object], name: &str) -> Service {
    match find(objects, "Service", name) {
        Object::Service(s) => s.clone(),
        _ => unreachable!(),
    }
}

fn policy(objects: &[Object], name: &str) -> NetworkPolicy {
    match find(objects, "NetworkPolicy", name) {
        Object::NetworkPolicy(p) => p.clone(),
        _ => unreachable!(),
    }
}

fn deployment(objects: &[Object], name: &str) -> Deployment {
    match find(objects, "Deployment", name) {
        Object::Deployment(d) => (**d).clone(),
        _ => unreachable!(),
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_gateway_runs_in_front_of_both_variants_services() {
    let m = render(&spec()).unwrap();
    let d = deployment(&m.objects, "fraud-gateway");
    let ds = d.spec.unwrap();
    assert_eq!(ds.replicas, Some(1));
    let gw_selector = map(&[
        ("app.kubernetes.io/name", "fraud"),
        ("hoist.dev/variant", "gateway"),
    ]);
    assert_eq!(ds.selector.match_labels.as_ref(), Some(&gw_selector));
    let pod = ds.template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    let c = &pod.containers[0];
    assert_eq!(c.command.as_deref(), Some(&["hoist".to_string()][..]));
    let args = c.args.clone().unwrap().join(" ");
    for want in [
        "gateway --listen 0.0.0.0:8080 --admin-listen 0.0.0.0:9090 --name production",
        "--stable http://fraud-stable.hoist-production.svc:80",
        "--candidate http://fraud-candidate.hoist-production.svc:80",
        "--admin-token-file /var/run/secrets/hoist/admin/token",
        "--force-header x-hoist-variant",
        "--sticky-header x-user",
    ] {
        assert!(args.contains(want), "{want}: {args}");
    }
    // The admin token Secret is mounted as a directory (rotation reaches the file).
    let mount = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "admin-token")
        .unwrap();
    assert_eq!(mount.mount_path, "/var/run/secrets/hoist/admin");
    assert!(mount.sub_path.is_none());
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_non_root, Some(true));

    // The app Service is the way in: it selects the gateway's pods, not the servers'.
    let app = service(&m.objects, "fraud");
    assert_eq!(app.spec.unwrap().selector, Some(gw_selector.clone()));
    // The variants' Services stay; the gateway's has the traffic and admin ports.
    for v in ["fraud-stable", "fraud-candidate"] {
        service(&m.objects, v);
    }
    let gs = service(&m.objects, "fraud-gateway").spec.unwrap();
    let ports: Vec<(String, i32)> = gs
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.port))
        .collect();
    assert_eq!(
        ports,
        vec![("http".to_string(), 80), ("admin".to_string(), 9090)]
    );
    assert_eq!(gs.selector, Some(gw_selector));
    // No HTTPRoute: the gateway is the split.
    assert!(m.objects.iter().all(|o| o.kind() != "HTTPRoute"));
}

#[test]
fn only_the_controllers_namespace_reaches_the_admin_port_and_the_gateway_reaches_the_servers() {
    let m = render(&spec()).unwrap();
    let admin = policy(&m.objects, "fraud-gateway-admin").spec.unwrap();
    let rules = admin.ingress.unwrap();
    assert_eq!(rules.len(), 1);
    let from = rules[0].from.clone().unwrap();
    assert_eq!(from.len(), 1);
    assert_eq!(
        from[0]
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["kubernetes.io/metadata.name"],
        "hoist-system"
    );
    let ports = rules[0].ports.clone().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(
        ports[0].port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9090))
    );

    // The servers' policy admits the gateway's pods on the serving port.
    let servers = policy(&m.objects, "fraud").spec.unwrap();
    let peers = servers.ingress.unwrap()[0].from.clone().unwrap();
    assert!(
        peers.iter().any(|p| p
            .pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .is_some_and(|l| l.get("hoist.dev/variant").map(String::as_str) == Some("gateway"))),
        "{peers:?}"
    );

    // Without an in-cluster controller nobody may reach the admin port (a controller
    // outside the cluster uses a port-forward).
    let mut s = spec();
    s.controller = None;
    let m = render(&s).unwrap();
    let admin = policy(&m.objects, "fraud-gateway-admin").spec.unwrap();
    assert_eq!(admin.ingress, Some(Vec::new()));
}

#[test]
fn the_gateway_needs_the_admin_token_and_excludes_a_gateway_api_route() {
    let mut s = spec();
    s.admin_token_secret = None;
    let Err(Error::Invalid(e)) = render(&s) else {
        panic!("rendered without an admin token")
    };
    assert!(
        e.contains("hoist_gateway") && e.contains("admin_token_secret"),
        "{e}"
    );
    let mut s = spec();
    s.gateway = Some(GatewayRef {
        name: "public".into(),
        namespace: None,
        section_name: None,
    });
    let Err(Error::Invalid(e)) = render(&s) else {
        panic!("rendered two splits")
    };
    assert!(e.contains("choose one"), "{e}");
}

#[test]
fn the_feedback_token_secret_is_mounted_as_a_file_the_gateway_rereads() {
    let plain = render(&spec()).unwrap().objects;
    let args = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .args
            .clone()
            .unwrap()
    };
    assert!(
        !args(&deployment(&plain, "fraud-gateway")).contains(&"--feedback-token-file".into()),
        "no feedback token without the Secret"
    );

    let mut s = spec();
    s.hoist_gateway.as_mut().unwrap().feedback_token_secret = Some("fraud-labels".into());
    let objects = render(&s).unwrap().objects;
    let d = deployment(&objects, "fraud-gateway");
    let a = args(&d);
    let i = a
        .iter()
        .position(|x| x == "--feedback-token-file")
        .expect("--feedback-token-file");
    assert_eq!(a[i + 1], "/var/run/secrets/hoist/feedback/token");
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    // The whole Secret as a directory (not a subPath), so a rotation reaches the file.
    let vol = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("fraud-labels"))
        .expect("a volume of the Secret");
    let m = pod.containers[0]
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == vol.name)
        .expect("mounted");
    assert_eq!(m.mount_path, "/var/run/secrets/hoist/feedback");
    assert_eq!(m.read_only, Some(true));
    assert!(m.sub_path.is_none());
    // The gateway's identity may read it (and the admin token), nothing else.
    let role = match find(&objects, "Role", "fraud-server") {
        Object::Role(r) => r.clone(),
        _ => unreachable!(),
    };
    let names = role.rules.unwrap()[0].resource_names.clone().unwrap();
    assert_eq!(
        names,
        vec!["hoist-admin-token".to_string(), "fraud-labels".into()]
    );
}
