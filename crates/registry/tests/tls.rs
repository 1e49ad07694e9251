//! The MLflow client over https: a real TLS server on 127.0.0.1 (Python's standard
//! library with a self-signed certificate made by `openssl`) answering MLflow's
//! `registered-models/search` as a tracking server does. The certificate is trusted
//! only through `MLFLOW_TRACKING_SERVER_CERT_PATH`, as MLflow's own client is told.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use hoist_registry::Registry;
use hoist_registry::mlflow::MlflowRegistry;

const SERVER: &str = r#"
import http.server, json, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/api/2.0/mlflow/registered-models/search"):
            body = json.dumps({"registered_models": [{"name": "tls-model",
                "aliases": [{"alias": "champion", "version": "3"}],
                "latest_versions": [{"name": "tls-model", "version": "3"}]}]}).encode()
            self.send_response(200)
        else:
            body = json.dumps({"error_code": "ENDPOINT_NOT_FOUND", "message": self.path}).encode()
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn https_tracking_servers_are_verified_against_the_configured_ca() {
    let dir = hoist_testkit::Scratch::new("tls");
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    let ext = dir.join("leaf.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let p = |x: &std::path::Path| x.to_string_lossy().into_owned();
    let ca_key = p(&dir.join("ca.key"));
    let csr = p(&dir.join("leaf.csr"));
    // A test CA, and a server certificate for 127.0.0.1 signed by it.
    let steps: [Vec<String>; 3] = [
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=hoist test CA",
            "-keyout",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([ca_key.clone(), "-out".into(), p(&ca)])
        .collect(),
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([p(&key), "-out".into(), csr.clone()])
        .collect(),
        ["x509", "-req", "-days", "2", "-CAcreateserial", "-in"]
            .iter()
            .map(|s| s.to_string())
            .chain([
                csr,
                "-CA".into(),
                p(&ca),
                "-CAkey".into(),
                ca_key,
                "-extfile".into(),
                p(&ext),
                "-out".into(),
                p(&cert),
            ])
            .collect(),
    ];
    for args in steps {
        let status = Command::new("openssl")
            .args(&args)
            .stderr(Stdio::null())
            .status()
            .expect("openssl (Debian package openssl) is needed to make test certificates");
        assert!(status.success(), "openssl {args:?}");
    }
    let mut child = Command::new("python3")
        .args(["-c", SERVER])
        .arg(&cert)
        .arg(&key)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let _server = Server(child);
    let uri = format!("https://127.0.0.1:{}", port.trim());
    let cache = dir.join("cache").to_string_lossy().into_owned();
    let cert_path = ca.to_string_lossy().into_owned();

    // Trusted through MLFLOW_TRACKING_SERVER_CERT_PATH: the registry answers.
    let vars = |extra: Option<(&'static str, String)>| {
        let (uri, cache) = (uri.clone(), cache.clone());
        move |k: &str| match k {
            "MLFLOW_TRACKING_URI" => Some(uri.clone()),
            "HOIST_HOME" => Some(cache.clone()),
            _ => extra
                .as_ref()
                .filter(|(name, _)| *name == k)
                .map(|(_, v)| v.clone()),
        }
    };
    let trusted =
        MlflowRegistry::from_vars(vars(Some(("MLFLOW_TRACKING_SERVER_CERT_PATH", cert_path))))
            .unwrap();
    let models = trusted.list_models().unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].name, "tls-model");
    assert_eq!(
        models[0].aliases.get("champion").map(String::as_str),
        Some("3")
    );

    // Not trusted by the system's roots: refused, naming the server.
    let untrusted = MlflowRegistry::from_vars(vars(None)).unwrap();
    let err = untrusted.list_models().unwrap_err().to_string();
    assert!(err.contains(&uri), "{err}");

    // Verification off, as MLFLOW_TRACKING_INSECURE_TLS asks.
    let insecure =
        MlflowRegistry::from_vars(vars(Some(("MLFLOW_TRACKING_INSECURE_TLS", "true".into()))))
            .unwrap();
    assert_eq!(insecure.list_models().unwrap()[0].name, "tls-model");
}
