//! The OCI distribution API, as a push (and a pull to check) needs it.
//!
//! # Expected flow of a push
//! 1. `GET /v2/` picks the scheme (HTTPS; plain HTTP only for a loopback registry or
//!    `insecure`) and answers the authentication challenge (basic, or the bearer
//!    token flow with scope `repository:NAME:pull,push`).
//! 2. Each layer and the config: `HEAD /v2/NAME/blobs/DIGEST`; only a blob the
//!    registry lacks is uploaded (`POST …/blobs/uploads/`, then one `PUT ?digest=`,
//!    or `PATCH` chunks with `Content-Range` and a closing `PUT`).
//! 3. Only then the manifest: by digest, then once per tag.
//!
//! # Guarantees
//! A push that fails before step 3 leaves no tag: a registry never names an image
//! whose blobs are not all there.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};

use crate::auth::{Credentials, parse_challenge};
use crate::image::{MEDIA_MANIFEST, Manifest};
use crate::{Blob, Error, Reference, Result, sha256_digest};

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Plain HTTP allowed, and TLS certificates not checked (`--insecure`).
    pub insecure: bool,
    /// Extra trusted roots (PEM), besides the system's.
    pub ca_file: Option<PathBuf>,
    pub credentials: Option<Credentials>,
    /// Blobs larger than this go up in `PATCH` chunks of this size.
    pub chunk_size: usize,
    /// Print a progress line on stderr (a terminal).
    pub progress: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: false,
            ca_file: None,
            credentials: None,
            chunk_size: 16 << 20,
            progress: false,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushReport {
    /// The manifest's digest, `sha256:…`.
    pub digest: String,
    /// Blobs uploaded, and blobs the registry already had.
    pub uploaded: usize,
    pub skipped: usize,
    pub bytes_uploaded: u64,
}

/// A connection to one repository of one registry.
pub struct Client {
    http: Http,
    /// `scheme://host[:port]`.
    base: String,
    reference: Reference,
    options: ClientOptions,
    /// The `Authorization` header the challenge asked for, once answered.
    auth: Mutex<Option<String>>,
}

impl Client {
    /// Connects to `reference`'s registry: picks the scheme and authenticates.
    pub fn connect(reference: &Reference, options: ClientOptions) -> Result<Client> {
        let mut b = Http::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")));
        if let Some(f) = &options.ca_file {
            let pem =
                std::fs::read(f).map_err(Error::io(format!("reading CA file {}", f.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Invalid(format!(
                    "CA file {} holds no PEM certificate: {e}",
                    f.display()
                ))
            })?;
            b = b.tls_certs_merge(certs);
        }
        if options.insecure {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        let http = b
            .build()
            .map_err(|e| Error::Invalid(format!("cannot build the HTTP client: {e}")))?;
        let registry = reference.registry.clone();
        let unreachable = |e: reqwest::Error| Error::Unreachable {
            registry: registry.clone(),
            reason: error_chain(&e),
        };
        let https = format!("https://{registry}");
        let (base, probe) = match http.get(format!("{https}/v2/")).send() {
            Ok(r) => (https, r),
            Err(e) if options.insecure || reference.is_loopback() => {
                let plain = format!("http://{registry}");
                match http.get(format!("{plain}/v2/")).send() {
                    // A TLS server answers plain HTTP with 400: it wants HTTPS.
                    Ok(r) if r.status() != StatusCode::BAD_REQUEST => (plain, r),
                    _ => return Err(unreachable(e)),
                }
            }
            Err(e) => return Err(unreachable(e)),
        };
        let client = Client {
            http,
            base,
            reference: reference.clone(),
            options,
            auth: Mutex::new(None),
        };
        if probe.status() == StatusCode::UNAUTHORIZED {
            client.answer_challenge(&probe)?;
            let r = client.send(
                || client.http.get(format!("{}/v2/", client.base)),
                "GET /v2/",
            )?;
            client.check(r, "GET /v2/")?;
        } else if !probe.status().is_success() {
            return Err(client.error(probe, "GET /v2/"));
        }
        Ok(client)
    }

    /// `http` or `https`, as chosen.
    pub fn scheme(&self) -> &str {
        self.base.split(':').next().unwrap_or("https")
    }

    fn repo_url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, self.reference.repository)
    }

    /// Answers a 401's `WWW-Authenticate`: basic credentials, or a bearer token.
    fn answer_challenge(&self, r: &Response) -> Result<()> {
        let registry = self.reference.registry.clone();
        let header = r
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        let creds = self.options.credentials.as_ref();
        let unauthorized = |detail: &str| Error::Unauthorized {
            registry: registry.clone(),
            detail: detail.to_string(),
        };
        let value = match header {
            Some(c) if c.scheme == "basic" => match creds {
                Some(c) => c.basic_header(),
                None => {
                    return Err(unauthorized(
                        ": the registry wants a user name and password",
                    ));
                }
            },
            Some(c) if c.scheme == "bearer" => {
                let realm = c
                    .params
                    .get("realm")
                    .ok_or_else(|| unauthorized(": a bearer challenge without a realm"))?;
                let scope = format!("repository:{}:pull,push", self.reference.repository);
                let mut url = format!(
                    "{realm}{}scope={}",
                    if realm.contains('?') { '&' } else { '?' },
                    query_escape(&scope)
                );
                if let Some(s) = c.params.get("service") {
                    url.push_str(&format!("&service={}", query_escape(s)));
                }
                let mut req = self.http.get(&url);
                if let Some(c) = creds {
                    req = req.header(AUTHORIZATION, c.basic_header());
                }
                let tr = req.send().map_err(|e| Error::Unreachable {
                    registry: format!("{registry} (token service {realm})"),
                    reason: error_chain(&e),
                })?;
                if tr.status() == StatusCode::UNAUTHORIZED {
                    return Err(unauthorized(": the token service refused the credentials"));
                }
                let tr = self.check(tr, "GET token")?;
                let v: serde_json::Value = tr.json().map_err(|e| Error::Remote {
                    status: 200,
                    what: "the token request".into(),
                    message: format!("not JSON: {e}"),
                })?;
                let token = v["token"]
                    .as_str()
                    .or(v["access_token"].as_str())
                    .ok_or_else(|| unauthorized(": the token service sent no token"))?;
                format!("Bearer {token}")
            }
            _ => return Err(unauthorized(": no usable WWW-Authenticate challenge")),
        };
        *self.auth.lock().expect("auth lock") = Some(value);
        Ok(())
    }

    /// Sends the request `build` makes, with the Authorization header; a 401 is
    /// answered once (a token may expire mid-push) and the request sent again.
    fn send(&self, build: impl Fn() -> RequestBuilder, what: &str) -> Result<Response> {
        for attempt in 0..2 {
            let mut req = build();
            if let Some(a) = self.auth.lock().expect("auth lock").clone() {
                req = req.header(AUTHORIZATION, a);
            }
            let r = req.send().map_err(|e| Error::Unreachable {
                registry: self.reference.registry.clone(),
                reason: format!("{what}: {}", error_chain(&e)),
            })?;
            if r.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                let had = self.auth.lock().expect("auth lock").is_some();
                if had && self.options.credentials.is_none() {
                    return Ok(r);
                }
                self.answer_challenge(&r)?;
                continue;
            }
            return Ok(r);
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// `r` if it succeeded, else its error.
    fn check(&self, r: Response, what: &str) -> Result<Response> {
        if r.status().is_success() {
            Ok(r)
        } else {
            Err(self.error(r, what))
        }
    }

    /// The error an unsuccessful answer means (the distribution spec's
    /// `{"errors": [{"code", "message"}]}` when there is one).
    fn error(&self, r: Response, what: &str) -> Error {
        let status = r.status();
        let body = r.text().unwrap_or_default();
        let (code, message) = match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(v) => (
                v["errors"][0]["code"].as_str().unwrap_or("").to_string(),
                v["errors"][0]["message"].as_str().unwrap_or("").to_string(),
            ),
            Err(_) => (String::new(), body.chars().take(200).collect()),
        };
        let detail = if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        };
        match status.as_u16() {
            401 => Error::Unauthorized {
                registry: self.reference.registry.clone(),
                detail,
            },
            403 => Error::Forbidden {
                registry: self.reference.registry.clone(),
                repository: self.reference.repository.clone(),
                detail,
            },
            404 if code == "MANIFEST_UNKNOWN" || what.starts_with("GET manifest") => {
                Error::ManifestUnknown {
                    reference: self.reference.to_string(),
                }
            }
            404 => Error::NotFound {
                what: format!("{} ({what})", self.reference.name()),
                detail: if code.is_empty() {
                    detail
                } else {
                    format!(": {code}{detail}")
                },
            },
            s => Error::Remote {
                status: s,
                what: what.to_string(),
                message: if code.is_empty() {
                    message
                } else {
                    format!("{code}: {message}")
                },
            },
        }
    }

    /// Whether the repository already has the blob `digest`.
    pub fn has_blob(&self, digest: &str) -> Result<bool> {
        let url = self.repo_url(&format!("blobs/{digest}"));
        let r = self.send(|| self.http.head(&url), "HEAD blob")?;
        match r.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.error(r, "HEAD blob")),
        }
    }

    /// Uploads `blob` (monolithic, or in chunks when larger than the chunk size).
    pub fn upload_blob(&self, blob: &Blob, label: &str) -> Result<()> {
        let start = self.repo_url("blobs/uploads/");
        let r = self.send(
            || self.http.post(&start).header(CONTENT_LENGTH, 0),
            "POST blob upload",
        )?;
        let r = self.check(r, "POST blob upload")?;
        let mut location = self.location(&r)?;
        let total = blob.bytes.len();
        let chunk = self.options.chunk_size.max(1);
        if total > chunk {
            let mut offset = 0;
            while offset < total {
                let end = (offset + chunk).min(total);
                let part = &blob.bytes[offset..end];
                let loc = location.clone();
                let r = self.send(
                    || {
                        self.http
                            .patch(&loc)
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header("Content-Range", format!("{offset}-{}", end - 1))
                            .header(CONTENT_LENGTH, part.len())
                            .body(part.to_vec())
                    },
                    "PATCH blob chunk",
                )?;
                let r = self.check(r, "PATCH blob chunk")?;
                location = self.location(&r)?;
                offset = end;
                self.progress(label, offset, total);
            }
            let url = with_digest(&location, &blob.digest);
            let r = self.send(|| self.http.put(&url).header(CONTENT_LENGTH, 0), "PUT blob")?;
            self.check(r, "PUT blob")?;
        } else {
            let url = with_digest(&location, &blob.digest);
            let r = self.send(
                || {
                    self.http
                        .put(&url)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, total)
                        .body(blob.bytes.clone())
                },
                "PUT blob",
            )?;
            self.check(r, "PUT blob")?;
            self.progress(label, total, total);
        }
        Ok(())
    }

    fn progress(&self, label: &str, done: usize, total: usize) {
        if self.options.progress {
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            let mut e = std::io::stderr();
            let _ = write!(e, "\r{label}: {pct:>3}% of {:.1} MB", total as f64 / 1e6);
            if done >= total {
                let _ = writeln!(e);
            }
        }
    }

    /// The upload URL a `Location` header names (absolute, or relative to the registry).
    fn location(&self, r: &Response) -> Result<String> {
        let loc = r
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Remote {
                status: r.status().as_u16(),
                what: "a blob upload".into(),
                message: "no Location header".into(),
            })?;
        Ok(
            if loc.starts_with("http://") || loc.starts_with("https://") {
                loc.to_string()
            } else {
                format!("{}{loc}", self.base)
            },
        )
    }

    /// Puts a manifest under `reference` (a digest or a tag); checks the registry
    /// computed the same digest.
    pub fn put_manifest(&self, manifest: &Blob, reference: &str) -> Result<()> {
        let url = self.repo_url(&format!("manifests/{reference}"));
        let r = self.send(
            || {
                self.http
                    .put(&url)
                    .header(CONTENT_TYPE, manifest.media_type.as_str())
                    .body(manifest.bytes.clone())
            },
            "PUT manifest",
        )?;
        let r = self.check(r, "PUT manifest")?;
        if let Some(d) = r
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            && d != manifest.digest
        {
            return Err(Error::DigestMismatch {
                what: format!("the manifest stored as {reference}"),
                expected: manifest.digest.clone(),
                found: d.to_string(),
            });
        }
        Ok(())
    }

    /// Pushes an image: missing blobs, then the manifest by digest, then each tag.
    pub fn push(&self, image: &Manifest, tags: &[String]) -> Result<PushReport> {
        let mut report = PushReport {
            digest: image.manifest.digest.clone(),
            ..Default::default()
        };
        let n = image.layers.len() + 1;
        for (i, blob) in image.layers.iter().chain([&image.config]).enumerate() {
            if self.has_blob(&blob.digest)? {
                report.skipped += 1;
                continue;
            }
            let short = &blob.digest[7..19];
            self.upload_blob(blob, &format!("blob {}/{n} {short}", i + 1))?;
            report.uploaded += 1;
            report.bytes_uploaded += blob.bytes.len() as u64;
        }
        self.put_manifest(&image.manifest, &image.manifest.digest)?;
        for t in tags {
            self.put_manifest(&image.manifest, t)?;
        }
        Ok(report)
    }

    /// The manifest `reference` names (a tag or digest): its bytes and digest,
    /// checked against the digest when the reference pins one.
    pub fn get_manifest(&self, reference: &str) -> Result<Blob> {
        let url = self.repo_url(&format!("manifests/{reference}"));
        let accept = format!(
            "{MEDIA_MANIFEST}, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json"
        );
        let r = self.send(
            || {
                self.http
                    .get(&url)
                    .header(reqwest::header::ACCEPT, accept.as_str())
            },
            "GET manifest",
        )?;
        let r = self.check(r, "GET manifest")?;
        let media = r
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(MEDIA_MANIFEST)
            .to_string();
        let bytes = r.bytes().map_err(|e| Error::Unreachable {
            registry: self.reference.registry.clone(),
            reason: error_chain(&e),
        })?;
        let blob = Blob::new(&media, bytes.to_vec());
        if reference.starts_with("sha256:") && blob.digest != reference {
            return Err(Error::DigestMismatch {
                what: format!("manifest {reference}"),
                expected: reference.to_string(),
                found: blob.digest,
            });
        }
        Ok(blob)
    }

    /// The blob `digest`, checked against it.
    pub fn get_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let url = self.repo_url(&format!("blobs/{digest}"));
        let r = self.send(|| self.http.get(&url), "GET blob")?;
        let r = self.check(r, "GET blob")?;
        let bytes = r.bytes().map_err(|e| Error::Unreachable {
            registry: self.reference.registry.clone(),
            reason: error_chain(&e),
        })?;
        let found = sha256_digest(&bytes);
        if found != digest {
            return Err(Error::DigestMismatch {
                what: format!("blob {digest}"),
                expected: digest.to_string(),
                found,
            });
        }
        Ok(bytes.to_vec())
    }
}

/// `url` with `digest=` added to its query.
fn with_digest(url: &str, digest: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={}", digest.replace(':', "%3A"))
}

/// `s` percent-encoded for a query string (RFC 3986 unreserved kept).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An error and its causes, `: `-joined (reqwest's own message names no cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
