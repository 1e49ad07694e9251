//! A REAL OCI registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1,
//! plain or with TLS + htpasswd basic auth, for the image tests; and `skopeo`.
//!
//! Installed by `tools/oci-tools.sh` (which `tools/test.sh` runs). Without it the
//! tests using these FAIL with a message saying so; they do not skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{Scratch, free_port, wait_until};

/// The user and password of a registry started with [`Registry::start_tls`].
pub const USER: &str = "hoist";
pub const PASSWORD: &str = "s3cret-pass";

/// A running registry, killed on drop. Its access log counts the requests.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The registry's config, storage and log.
    pub dir: Scratch,
    /// The CA that signed a TLS registry's certificate (PEM).
    pub ca: Option<PathBuf>,
}

fn need(cmd: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(cmd);
        if p.exists() {
            return p;
        }
    }
    panic!("`{cmd}` is not installed: run `bash tools/oci-tools.sh` (tools/test.sh does)");
}

impl Registry {
    /// A plain-HTTP registry with no authentication.
    pub fn start() -> Registry {
        Self::start_with(false)
    }

    /// A registry over TLS (a self-signed certificate for 127.0.0.1, in [`Registry::ca`])
    /// requiring basic auth as [`USER`] / [`PASSWORD`] (bcrypt htpasswd).
    pub fn start_tls() -> Registry {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Registry {
        let bin = need("docker-registry");
        let dir = Scratch::new("registry");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let d = dir.path();
        let mut extra = String::new();
        let mut ca = None;
        if tls {
            // A CA, and a server certificate for 127.0.0.1 it signs (rustls refuses a
            // CA certificate used as the server's own).
            let openssl = |args: &[&str]| {
                let ok = Command::new(need("openssl"))
                    .current_dir(d)
                    .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                    .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
                    .args(args)
                    .stderr(Stdio::null())
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "openssl could not make a certificate: {args:?}");
            };
            openssl(&[
                "-subj",
                "/CN=hoist-test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ]);
            openssl(&[
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                "-addext",
                "extendedKeyUsage=serverAuth",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
            ]);
            let out = Command::new(need("htpasswd"))
                .args(["-Bbn", USER, PASSWORD])
                .output()
                .unwrap();
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(d.join("htpasswd"), out.stdout).unwrap();
            extra = format!(
                "  tls:\n    certificate: {0}/cert.pem\n    key: {0}/key.pem\nauth:\n  htpasswd:\n    realm: hoist-test\n    path: {0}/htpasswd\n",
                d.display()
            );
            ca = Some(d.join("ca.pem"));
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}/data\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: hoist-test-secret\n{extra}",
            d.display()
        );
        std::fs::write(d.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(d.join("registry.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let r = Registry {
            child,
            addr: addr.clone(),
            dir,
            ca,
        };
        wait_until(
            Duration::from_secs(20),
            format!("registry on {addr}"),
            || std::net::TcpStream::connect(&addr).is_ok(),
        );
        r
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many blob uploads finished (`PUT …/blobs/uploads/…` answered 201) so far.
    pub fn blob_puts(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                l.contains("\"PUT /v2/") && l.contains("/blobs/uploads/") && l.contains("\" 201 ")
            })
            .count()
    }

    /// How many chunk `PATCH`es the registry accepted so far.
    pub fn blob_patches(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"PATCH /v2/") && l.contains("\" 202 "))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `skopeo inspect --raw?` style commands: `skopeo ARGS…`, stdout on success,
/// a panic naming stderr on failure.
pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new(need("skopeo"))
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
