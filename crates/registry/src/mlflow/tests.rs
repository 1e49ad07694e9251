use super::register::Package;
use super::*;
use std::collections::HashMap;

#[test]
fn artifact_uris_map_to_the_proxy() {
    assert_eq!(
        proxied_path("mlflow-artifacts:/1/models/m-abc/artifacts").as_deref(),
        Some("1/models/m-abc/artifacts")
    );
    assert_eq!(
        proxied_path("mlflow-artifacts://host:5000/1/x").as_deref(),
        Some("1/x")
    );
    assert_eq!(
        proxied_path("http://h:5000/api/2.0/mlflow-artifacts/artifacts/1/x").as_deref(),
        Some("1/x")
    );
    assert_eq!(proxied_path("file:///tmp/x"), None);
    assert_eq!(proxied_path("s3://b/x"), None);
    assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
}

#[test]
fn configuration_comes_from_mlflow_variables() {
    let vars = |pairs: &[(&str, &str)]| {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    };
    let r = MlflowRegistry::from_vars(vars(&[
        ("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000/"),
        ("MLFLOW_TRACKING_USERNAME", "u"),
        ("MLFLOW_TRACKING_PASSWORD", "p"),
        ("HOIST_HOME", "/tmp/h"),
    ]))
    .unwrap();
    assert_eq!(r.id(), "http://127.0.0.1:5000");
    assert!(matches!(r.auth, Auth::Basic { .. }));
    assert_eq!(r.cache_dir, PathBuf::from("/tmp/h/artifacts"));
    assert_eq!(format!("{:?}", r.auth), "Basic(***)");
    assert_eq!(r.experiment, DEFAULT_EXPERIMENT);
    let r = MlflowRegistry::from_vars(vars(&[
        ("MLFLOW_TRACKING_URI", "http://h"),
        ("MLFLOW_EXPERIMENT_NAME", "models"),
    ]))
    .unwrap();
    assert_eq!(r.experiment, "models");
    let r = MlflowRegistry::from_vars(vars(&[
        ("MLFLOW_TRACKING_URI", "http://h"),
        ("MLFLOW_TRACKING_TOKEN", "t"),
    ]))
    .unwrap();
    assert!(matches!(r.auth, Auth::Bearer(_)));
    assert!(format!("{:?}", r.auth).contains("***"));
    let err = MlflowRegistry::from_vars(vars(&[])).unwrap_err();
    assert!(err.to_string().contains("MLFLOW_TRACKING_URI"), "{err}");
    let err = MlflowRegistry::new("ftp://mlflow.example").unwrap_err();
    assert!(err.to_string().contains("https://"), "{err}");
    let err = MlflowRegistry::from_vars(vars(&[
        ("MLFLOW_TRACKING_URI", "https://h"),
        ("MLFLOW_TRACKING_SERVER_CERT_PATH", "/nonexistent/ca.pem"),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[test]
fn an_unreachable_server_is_named_in_the_error() {
    // Port 9 (discard) on loopback: nothing listens there.
    let r = MlflowRegistry::new("http://127.0.0.1:9").unwrap();
    let err = r.list_models().unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("http://127.0.0.1:9"), "{err}");
}

/// A canned HTTP server on loopback: `answer(request line, call number)` gives
/// (status, body) for each request.
fn canned(
    answer: impl Fn(&str, usize) -> (u16, String) + Send + 'static,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut len = 0;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if h == "\r\n" || h.is_empty() {
                    break;
                }
            }
            let mut body = vec![0; len];
            std::io::Read::read_exact(&mut reader, &mut body).unwrap();
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let (status, text) = answer(&request_line, n);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (uri, calls)
}

fn version_json(status: &str) -> String {
    json!({"model_version": {"name": "m", "version": "1", "status": status,
        "source": "mlflow-artifacts:/x"}})
    .to_string()
}

#[test]
fn fetch_waits_for_ready_and_stops_at_failed_registration() {
    let (uri, _) = canned(|_, _| (200, version_json("FAILED_REGISTRATION")));
    let r = MlflowRegistry::new(&uri).unwrap();
    let e = r.wait_ready("m", "1").unwrap_err();
    assert!(matches!(e, Error::NotReady { .. }), "{e}");
    assert!(e.to_string().contains("FAILED_REGISTRATION"), "{e}");

    let (uri, calls) = canned(|_, n| {
        let status = if n < 2 {
            "PENDING_REGISTRATION"
        } else {
            "READY"
        };
        (200, version_json(status))
    });
    let r = MlflowRegistry::new(&uri).unwrap();
    assert_eq!(r.wait_ready("m", "1").unwrap().status, VersionStatus::Ready);
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let (uri, _) = canned(|_, _| (200, version_json("PENDING_REGISTRATION")));
    let r = MlflowRegistry::new(&uri)
        .unwrap()
        .with_ready_timeout(Duration::from_millis(300));
    let e = r.wait_ready("m", "1").unwrap_err();
    assert!(e.to_string().contains("still PENDING_REGISTRATION"), "{e}");
}

#[test]
fn file_uris_are_copied_digested_and_tagged() {
    let tmp = std::env::temp_dir().join(format!("hoist-mlflow-file-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let src = tmp.join("model");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("MLmodel"), "flavors: {}\n").unwrap();
    std::fs::write(src.join("sub/model.onnx"), b"weights").unwrap();
    let want = hoist_types::digest_path(&src).unwrap();
    let uri = format!("file://{}", src.display());
    let tagged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = tagged.clone();
    let (base, _) = canned(move |line, _| {
        if line.contains("get-download-uri") {
            (200, json!({"artifact_uri": uri}).to_string())
        } else if line.contains("set-tag") {
            seen.lock().unwrap().push(line.to_string());
            (200, "{}".into())
        } else {
            (200, version_json("READY"))
        }
    });
    let r = MlflowRegistry::new(&base)
        .unwrap()
        .with_cache_dir(tmp.join("store"));
    let v = r.get_version("m", "1").unwrap();
    let f = r.fetch(&v).unwrap();
    assert_eq!(f.digest, want);
    assert_eq!(f.version.digest.as_deref(), Some(want.as_str()));
    assert_eq!(
        std::fs::read(f.dir.join("sub/model.onnx")).unwrap(),
        b"weights"
    );
    assert!(f.dir.starts_with(tmp.join("store")));
    assert_eq!(
        tagged.lock().unwrap().len(),
        1,
        "the digest tag is recorded"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn mlflow_errors_become_hoist_errors() {
    let (uri, _) = canned(|line, _| {
        if line.contains("registered-models/search") {
            (401, "<html>Unauthorized</html>".into())
        } else if line.contains("model-versions/get") {
            (
                404,
                json!({"error_code": "RESOURCE_DOES_NOT_EXIST",
                    "message": "Model Version (name=m, version=9) not found"})
                .to_string(),
            )
        } else if line.contains("registered-models/get?") {
            (
                404,
                json!({"error_code": "RESOURCE_DOES_NOT_EXIST",
                    "message": "Registered Model with name=m not found"})
                .to_string(),
            )
        } else {
            (
                500,
                json!({"error_code": "INTERNAL_ERROR", "message": "boom"}).to_string(),
            )
        }
    });
    let r = MlflowRegistry::new(&uri).unwrap();
    let e = r.list_models().unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    assert!(
        e.to_string().contains(&uri),
        "the URL is in the message: {e}"
    );
    assert!(e.to_string().contains("MLFLOW_TRACKING_TOKEN"), "{e}");
    let e = r.get_version("m", "9").unwrap_err();
    assert!(matches!(e, Error::VersionNotFound { .. }), "{e}");
    let e = r
        .resolve(&ModelRef::parse("m/Production").unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::Remote { status: 500, .. }), "{e}");
    assert!(e.to_string().contains("INTERNAL_ERROR: boom"), "{e}");
}

#[test]
fn a_single_file_package_digests_as_the_directory_mlflow_holds() {
    let tmp = std::env::temp_dir().join(format!("hoist-mlflow-pkg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("dir")).unwrap();
    std::fs::write(tmp.join("m.onnx"), b"weights").unwrap();
    std::fs::write(tmp.join("dir/m.onnx"), b"weights").unwrap();
    let p = Package::read(&tmp.join("m.onnx")).unwrap();
    assert_eq!(
        p.digest,
        hoist_types::digest_path(&tmp.join("dir")).unwrap()
    );
    assert_eq!(p.files, vec![("m.onnx".to_string(), tmp.join("m.onnx"))]);
    std::fs::create_dir_all(tmp.join("dir/sub")).unwrap();
    std::fs::write(tmp.join("dir/sub/b"), b"b").unwrap();
    let p = Package::read(&tmp.join("dir")).unwrap();
    let rels: Vec<&str> = p.files.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(rels, ["m.onnx", "sub/b"]);
    assert_eq!(
        p.digest,
        hoist_types::digest_path(&tmp.join("dir")).unwrap()
    );
    std::fs::create_dir_all(tmp.join("empty")).unwrap();
    let e = Package::read(&tmp.join("empty")).err().unwrap();
    assert!(e.to_string().contains("no files"), "{e}");
    let e = Package::read(&tmp.join("missing")).err().unwrap();
    assert!(e.to_string().contains("does not exist"), "{e}");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A package directory for the registration tests below.
fn package(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hoist-mlflow-reg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("MLmodel"), "flavors: {}\n").unwrap();
    std::fs::write(dir.join("model.onnx"), b"weights").unwrap();
    dir
}

fn experiment_json(location: &str) -> String {
    json!({"experiment": {"experiment_id": "7", "name": "hoist",
        "artifact_location": location, "lifecycle_stage": "active"}})
    .to_string()
}

#[test]
fn registering_needs_the_artifact_proxy_and_says_so() {
    let empty_versions = || (200, json!({"model_versions": []}).to_string());
    // --no-serve-artifacts: the experiment's artifacts are a path on the server.
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = lines.clone();
    let (uri, _) = canned(move |line, _| {
        seen.lock().unwrap().push(line.to_string());
        if line.contains("model-versions/search") {
            empty_versions()
        } else if line.contains("experiments/get-by-name") {
            (200, experiment_json("/srv/mlruns/7"))
        } else {
            (200, "{}".into())
        }
    });
    let dir = package("noproxy");
    let r = MlflowRegistry::new(&uri).unwrap();
    let e = r.register(&dir, "m", &BTreeMap::new(), None).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    let msg = e.to_string();
    for want in [
        uri.as_str(),
        "does not serve artifacts",
        "--serve-artifacts",
        "/srv/mlruns/7",
    ] {
        assert!(msg.contains(want), "{want} in {msg}");
    }
    assert!(
        !lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("runs/create") || l.contains("registered-models/create")),
        "neither a model nor a run is created for files that cannot be uploaded"
    );

    // The proxy route refuses uploads (503): said so, and the run ends FAILED.
    let updates = std::sync::Arc::new(std::sync::Mutex::new(0));
    let counted = updates.clone();
    let (uri, _) = canned(move |line, _| {
        if line.contains("model-versions/search") {
            empty_versions()
        } else if line.contains("experiments/get-by-name") {
            (200, experiment_json("mlflow-artifacts:/7"))
        } else if line.contains("runs/create") {
            (
                200,
                json!({"run": {"info": {"run_id": "r1",
                "artifact_uri": "mlflow-artifacts:/7/r1/artifacts"}}})
                .to_string(),
            )
        } else if line.starts_with("PUT ") {
            assert!(
                line.contains("/api/2.0/mlflow-artifacts/artifacts/7/r1/artifacts/model/"),
                "{line}"
            );
            (503, r#"{"detail":"Artifact serving is disabled."}"#.into())
        } else if line.contains("runs/update") {
            *counted.lock().unwrap() += 1;
            (200, "{}".into())
        } else if line.contains("model-versions/create") {
            panic!("no version without its files");
        } else {
            (200, "{}".into())
        }
    });
    let r = MlflowRegistry::new(&uri).unwrap();
    let e = r.register(&dir, "m", &BTreeMap::new(), None).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("does not serve artifacts") && msg.contains("503"),
        "{msg}"
    );
    assert_eq!(*updates.lock().unwrap(), 1, "the run is ended");

    // Credentials refused at the first call.
    let (uri, calls) = canned(|_, _| (403, "forbidden".into()));
    let r = MlflowRegistry::new(&uri).unwrap();
    let e = r.register(&dir, "m", &BTreeMap::new(), None).unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Bad names, aliases and tags are refused before any request.
    let (uri, calls) = canned(|_, _| (500, "{}".into()));
    let r = MlflowRegistry::new(&uri).unwrap();
    let tags = |k: &str| BTreeMap::from([(k.to_string(), "x".to_string())]);
    for e in [
        r.register(&dir, "a/b", &BTreeMap::new(), None).unwrap_err(),
        r.register(&dir, "m", &BTreeMap::new(), Some("latest"))
            .unwrap_err(),
        r.register(&dir, "m", &tags(DIGEST_TAG), None).unwrap_err(),
        r.register(dir.join("missing"), "m", &BTreeMap::new(), None)
            .unwrap_err(),
    ] {
        assert!(matches!(e, Error::Invalid(_)), "{e}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn versions_parse_from_mlflow_json() {
    let v: MvJson = serde_json::from_value(json!({
        "name": "m", "version": "2", "creation_timestamp": 1700000000000i64,
        "current_stage": "None", "source": "models:/m-1", "run_id": "r",
        "status": "READY", "tags": [{"key": "hoist.digest", "value": "sha256:00"}],
        "aliases": ["champion"]
    }))
    .unwrap();
    let v = v.into_version();
    assert_eq!(v.digest.as_deref(), Some("sha256:00"));
    assert_eq!(v.status, VersionStatus::Ready);
    assert_eq!(v.aliases, vec!["champion".to_string()]);
    assert_eq!(v.created_at_ms, 1_700_000_000_000);
    assert!(version_key("10") > version_key("9"));
}

/// Credentials given as files (`MLFLOW_TRACKING_*_FILE`, a mounted Secret) are read
/// again at the next call after the file is rotated: no restart. The loopback server
/// records each request's `Authorization` header.
#[test]
fn credential_files_are_read_again_when_rotated() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut auth = String::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("authorization")
                {
                    auth = v.trim().to_string();
                }
                if h == "\r\n" || h.is_empty() {
                    break;
                }
            }
            record.lock().unwrap().push(auth);
            let body = r#"{"registered_models": []}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let dir = std::env::temp_dir().join(format!("hoist-mlflow-creds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "first\n").unwrap();
    let m: HashMap<String, String> = [
        ("MLFLOW_TRACKING_URI", uri.as_str()),
        ("MLFLOW_TRACKING_TOKEN_FILE", token.to_str().unwrap()),
        // A mounted Secret with only a token: the other two files do not exist.
        ("MLFLOW_TRACKING_USERNAME_FILE", "/nonexistent/username"),
        ("MLFLOW_TRACKING_PASSWORD_FILE", "/nonexistent/password"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let r = MlflowRegistry::from_vars(|k| m.get(k).cloned()).unwrap();
    assert!(matches!(r.auth, Auth::Bearer(_)), "{:?}", r.auth);
    r.list_models().unwrap();
    // Rotated as the kubelet does: a new file renamed over the old one.
    std::fs::write(dir.join("token.new"), "second").unwrap();
    std::fs::rename(dir.join("token.new"), &token).unwrap();
    r.list_models().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.first().map(String::as_str),
        Some("Bearer first"),
        "{seen:?}"
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("Bearer second"),
        "{seen:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
