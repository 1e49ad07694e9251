//! The REST calls, MLflow's errors, and artifact downloads (proxy, `file:` URIs,
//! local paths).

use super::*;

impl MlflowRegistry {
    // ---- HTTP ----

    pub(super) fn url(&self, api_path: &str) -> String {
        format!("{}/api/2.0/mlflow/{api_path}", self.base)
    }

    pub(super) fn authed(
        &self,
        rb: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match &self.auth {
            Auth::None => rb,
            // Read at each call: a credentials file rotated in place takes effect at once.
            Auth::Basic { username, password } => {
                rb.basic_auth(username.get(), Some(password.get()))
            }
            Auth::Bearer(t) => rb.bearer_auth(t.get()),
        }
    }

    /// One REST call. `not_found` names what a `RESOURCE_DOES_NOT_EXIST` means here,
    /// given MLflow's message.
    pub(super) fn call(
        &self,
        method: &str,
        api_path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        not_found: &dyn Fn(&str) -> Error,
    ) -> Result<Value> {
        let url = with_query(&self.url(api_path), query);
        let rb = match method {
            "GET" => self.http.get(&url),
            "POST" => self.http.post(&url),
            "PATCH" => self.http.patch(&url),
            "DELETE" => self.http.delete(&url),
            other => unreachable!("HTTP method {other}"),
        };
        let mut rb = self.authed(rb);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().map_err(|e| self.unreachable(&url, &e))?;
        let status = resp.status();
        let text = resp.text().map_err(|e| self.unreachable(&url, &e))?;
        if status.is_success() {
            return serde_json::from_str(if text.trim().is_empty() { "{}" } else { &text })
                .map_err(|e| self.bad_answer(api_path, &format!("not JSON ({e})")));
        }
        Err(self.remote_error(&url, status.as_u16(), &text, not_found))
    }

    pub(super) fn remote_error(
        &self,
        url: &str,
        status: u16,
        text: &str,
        not_found: &dyn Fn(&str) -> Error,
    ) -> Error {
        if status == 401 || status == 403 {
            return Error::Unauthorized { url: url.into() };
        }
        let parsed: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let code = parsed["error_code"].as_str().unwrap_or("").to_string();
        let message = parsed["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(300).collect());
        // MLflow answers a missing alias with INVALID_PARAMETER_VALUE "… alias X not found.".
        let missing = code == "RESOURCE_DOES_NOT_EXIST"
            || (status == 404 && code.is_empty())
            || (code == "INVALID_PARAMETER_VALUE" && message.contains(" not found"));
        if missing {
            return not_found(&message);
        }
        Error::Remote {
            url: url.into(),
            status,
            code: if code.is_empty() {
                "(no error_code)".into()
            } else {
                code
            },
            message,
        }
    }

    pub(super) fn unreachable(&self, url: &str, e: &reqwest::Error) -> Error {
        let mut reason = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            reason = format!("{reason}: {s}");
            src = s.source();
        }
        Error::Unreachable {
            url: url.into(),
            reason,
        }
    }

    pub(super) fn bad_answer(&self, api_path: &str, what: &str) -> Error {
        Error::Remote {
            url: self.url(api_path),
            status: 200,
            code: "UNEXPECTED_ANSWER".into(),
            message: what.into(),
        }
    }

    pub(super) fn get_model_json(&self, name: &str) -> Result<Value> {
        self.call(
            "GET",
            "registered-models/get",
            &[("name", name)],
            None,
            &model_not_found(name),
        )
    }

    // ---- artifacts ----

    /// Downloads everything under the artifact URI `uri` into `dest`.
    pub(super) fn download(&self, uri: &str, dest: &Path) -> Result<()> {
        if let Some(proxied) = proxied_path(uri) {
            let n = self.download_proxied(&proxied, dest)?;
            if n == 0 {
                return Err(Error::Invalid(format!(
                    "{uri}: the tracking server lists no files there"
                )));
            }
            return Ok(());
        }
        let local = if let Some(rest) = uri.strip_prefix("file://") {
            PathBuf::from(rest)
        } else if let Some(rest) = uri.strip_prefix("file:") {
            PathBuf::from(rest)
        } else if uri.starts_with('/') {
            PathBuf::from(uri)
        } else {
            return Err(Error::Invalid(format!(
                "artifact URI '{uri}' is not supported: hoist reads mlflow-artifacts: (the \
                 tracking server's proxy; start `mlflow server` with artifact serving), \
                 file: URIs and local paths"
            )));
        };
        // Symlinks in a local artifact store must not pull files from elsewhere.
        crate::check_package(&local)?;
        copy_tree(&local, dest)
    }

    /// Downloads the proxied artifact directory `path` into `dest`; returns the number of files.
    pub(super) fn download_proxied(&self, path: &str, dest: &Path) -> Result<usize> {
        let list_url = format!("{}/api/2.0/mlflow-artifacts/artifacts", self.base);
        let resp = self
            .authed(self.http.get(with_query(&list_url, &[("path", path)])))
            .send()
            .map_err(|e| self.unreachable(&list_url, &e))?;
        let status = resp.status().as_u16();
        let text = resp.text().map_err(|e| self.unreachable(&list_url, &e))?;
        if status != 200 {
            return Err(self.remote_error(&list_url, status, &text, &|m| {
                Error::Invalid(format!("artifacts at '{path}': {m}"))
            }));
        }
        #[derive(Deserialize)]
        struct Listing {
            #[serde(default)]
            files: Vec<FileInfo>,
        }
        #[derive(Deserialize)]
        struct FileInfo {
            path: String,
            #[serde(default)]
            is_dir: bool,
        }
        let listing: Listing = serde_json::from_str(&text)
            .map_err(|e| self.bad_answer("mlflow-artifacts/artifacts", &e.to_string()))?;
        std::fs::create_dir_all(dest).map_err(io_err(dest))?;
        let mut count = 0;
        for f in listing.files {
            // The proxy lists base names; older servers list paths relative to the root.
            let base = f.path.rsplit('/').next().unwrap_or("").to_string();
            if base.is_empty() || base == "." || base == ".." || base.contains('\\') {
                return Err(self.bad_answer(
                    "mlflow-artifacts/artifacts",
                    &format!("unsafe artifact name '{}'", f.path),
                ));
            }
            let child = format!("{}/{base}", path.trim_end_matches('/'));
            let target = dest.join(&base);
            if f.is_dir {
                count += self.download_proxied(&child, &target)?;
            } else {
                self.download_file(&child, &target)?;
                count += 1;
            }
        }
        Ok(count)
    }

    pub(super) fn download_file(&self, path: &str, target: &Path) -> Result<()> {
        let encoded: Vec<String> = path.split('/').map(percent_encode).collect();
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}",
            self.base,
            encoded.join("/")
        );
        let mut resp = self
            .authed(self.http.get(&url))
            .send()
            .map_err(|e| self.unreachable(&url, &e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let mut text = String::new();
            let _ = resp.read_to_string(&mut text);
            return Err(self.remote_error(&url, status, &text, &|m| {
                Error::Invalid(format!("artifact '{path}': {m}"))
            }));
        }
        let mut out = std::fs::File::create(target).map_err(io_err(target))?;
        std::io::copy(&mut resp, &mut out).map_err(|e| Error::Io {
            context: format!("downloading {url} to {}", target.display()),
            source: e,
        })?;
        Ok(())
    }
}

// ---- helpers ----

pub(super) fn default_cache_dir(var: impl Fn(&str) -> Option<String>) -> PathBuf {
    let home = var("HOIST_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(var("HOME").unwrap_or_else(|| ".".into())).join(".hoist"));
    home.join("artifacts")
}

pub(super) fn model_not_found(name: &str) -> impl Fn(&str) -> Error + '_ {
    move |_| Error::ModelNotFound(name.into())
}

pub(super) fn version_not_found<'a>(
    name: &'a str,
    version: &'a str,
) -> impl Fn(&str) -> Error + 'a {
    move |m| {
        if mentions_model_missing(m) {
            Error::ModelNotFound(name.into())
        } else {
            Error::VersionNotFound {
                name: name.into(),
                version: version.into(),
            }
        }
    }
}

/// MLflow says "Registered Model with name=m not found" when the model itself is missing.
pub(super) fn mentions_model_missing(message: &str) -> bool {
    message.starts_with("Registered Model with name=")
}

/// Numeric versions order numerically; anything else after them, by text.
pub(super) fn version_key(v: &str) -> (u64, String) {
    (v.parse().unwrap_or(0), v.to_string())
}

/// The path under the tracking server's artifact proxy, for URIs that go through it.
pub(super) fn proxied_path(uri: &str) -> Option<String> {
    if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
        // `mlflow-artifacts:/p` or `mlflow-artifacts://host:port/p`.
        let p = match rest.strip_prefix("//") {
            Some(hostful) => hostful.split_once('/').map(|(_, p)| p).unwrap_or(""),
            None => rest,
        };
        return Some(p.trim_start_matches('/').to_string());
    }
    let anchor = "/api/2.0/mlflow-artifacts/artifacts/";
    if uri.starts_with("http://")
        && let Some(i) = uri.find(anchor)
    {
        return Some(uri[i + anchor.len()..].to_string());
    }
    None
}

/// `url?k=v&…` with keys and values percent-encoded (reqwest's `query` needs a feature
/// this crate does not enable).
pub(super) fn with_query(url: &str, query: &[(&str, &str)]) -> String {
    if query.is_empty() {
        return url.to_string();
    }
    let pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    format!("{url}?{}", pairs.join("&"))
}

pub(super) fn percent_encode(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    let meta = std::fs::metadata(src).map_err(io_err(src))?;
    if meta.is_file() {
        std::fs::create_dir_all(dest).map_err(io_err(dest))?;
        let name = src.file_name().unwrap_or_default();
        std::fs::copy(src, dest.join(name)).map_err(io_err(src))?;
        return Ok(());
    }
    std::fs::create_dir_all(dest).map_err(io_err(dest))?;
    for entry in std::fs::read_dir(src).map_err(io_err(src))? {
        let entry = entry.map_err(io_err(src))?;
        let p = entry.path();
        let target = dest.join(entry.file_name());
        if entry.file_type().map_err(io_err(&p))?.is_dir() {
            copy_tree(&p, &target)?;
        } else if p.is_file() {
            std::fs::copy(&p, &target).map_err(io_err(&p))?;
        }
    }
    Ok(())
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        context: path.display().to_string(),
        source,
    }
}
