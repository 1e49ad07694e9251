use super::reads::{parse_selector, selects};
use super::requests::parse_path;
use super::*;

#[test]
fn paths_parse_like_the_api_server_routes_them() {
    let t = parse_path("/apis/apps/v1/namespaces/p/deployments/x/scale").unwrap();
    assert_eq!(
        (
            t.api_version.as_str(),
            t.plural.as_str(),
            t.namespace.as_str()
        ),
        ("apps/v1", "deployments", "p")
    );
    assert_eq!(t.name.as_deref(), Some("x"));
    assert_eq!(t.subresource.as_deref(), Some("scale"));
    let t = parse_path("/api/v1/namespaces/hoist-prod").unwrap();
    assert_eq!(
        (t.plural.as_str(), t.namespace.as_str()),
        ("namespaces", "")
    );
    assert_eq!(t.name.as_deref(), Some("hoist-prod"));
    let t = parse_path("/api/v1/namespaces/p/pods").unwrap();
    assert_eq!((t.plural.as_str(), t.name.as_deref()), ("pods", None));
    assert!(parse_path("/healthz").is_none());
}

#[test]
fn selectors_are_equality_based() {
    let mut l = Map::new();
    l.insert("a".into(), json!("1"));
    let r = parse_selector("a=1,b!=2,!c").unwrap();
    assert!(selects(&r, Some(&l)));
    assert!(!selects(&parse_selector("a==2").unwrap(), Some(&l)));
    assert!(selects(&parse_selector("a").unwrap(), Some(&l)));
    assert!(parse_selector("a in (1,2)").is_err());
}

#[test]
fn inserted_deployments_roll_out_unless_their_pods_fail() {
    let api = FakeKubeApi::start();
    let d = api.insert(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "m-stable", "namespace": "p" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "m", "variant": "stable" } },
            "template": { "metadata": { "labels": { "app": "m", "variant": "stable" } } },
        },
    }));
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["status"]["availableReplicas"], 2);
    assert_eq!(api.deployment_replicas("p", "m-stable"), Some(2));
    api.fail_pods("variant=stable", "ImagePullBackOff");
    let d = api.object("deployments", "p", "m-stable").unwrap();
    assert!(d["status"]["availableReplicas"].is_null(), "{d}");
    api.heal_pods();
    let d = api.object("Deployment", "p", "m-stable").unwrap();
    assert_eq!(d["status"]["availableReplicas"], 2);
    assert_eq!(
        api.objects(),
        [(
            "Deployment".to_string(),
            "p".to_string(),
            "m-stable".to_string()
        )]
    );
}

#[test]
fn timestamps_are_rfc3339() {
    let t = now_rfc3339();
    assert_eq!(t.len(), 20, "{t}");
    assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
}
