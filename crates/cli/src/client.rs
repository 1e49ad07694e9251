//! A typed client of the daemon's API: one method per call, each answering with the
//! API's own types (`hoist_types::api`), the same the daemon sends. A refusal comes
//! back as [`CliError::Api`] with the daemon's [`ErrorCode`], which gives the exit code.

use std::time::Duration;

use hoist_types::ErrorCode;
use hoist_types::api::{
    Abort, CreateRelease, Promote, Release, ReleaseDetail, ReleaseList, Rollback, StatusView, paths,
};
use hoist_types::error::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{CliError, Context};

/// A client of the daemon's API.
pub(crate) struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl Client {
    /// The daemon `--api`, `HOIST_API` or `HOIST_HOME/daemon/api` names (else
    /// 127.0.0.1:7070), with the token of `HOIST_ADMIN_TOKEN`,
    /// `HOIST_ADMIN_TOKEN_FILE` or `HOIST_HOME/daemon/token`.
    pub(crate) fn new(ctx: &Context<'_>) -> Result<Client, CliError> {
        let home = ctx.home().ok();
        let from_file = |name: &str| {
            home.as_ref()
                .and_then(|h| std::fs::read_to_string(hoist_daemon::state_dir(h).join(name)).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let base = ctx
            .api
            .clone()
            .or_else(|| (ctx.env)("HOIST_API"))
            .or_else(|| from_file("api"))
            .unwrap_or_else(|| "http://127.0.0.1:7070".into());
        let token = (ctx.env)("HOIST_ADMIN_TOKEN")
            .or_else(|| {
                (ctx.env)("HOIST_ADMIN_TOKEN_FILE")
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .map(|s| s.trim().to_string())
            })
            .or_else(|| from_file("token"));
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| CliError::Usage(format!("http client: {e}")))?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    /// `GET /api/v1/status`, or `/api/v1/models/{model}/status`.
    pub(crate) fn status(&self, model: Option<&str>) -> Result<StatusView, CliError> {
        match model {
            Some(m) => self.get(&format!("{}/status", model_path(m))),
            None => self.get(paths::STATUS),
        }
    }

    /// The names of the daemon's models (`GET /api/v1/models`); one empty name from
    /// a daemon older than that call (it delivers one model).
    pub(crate) fn models(&self) -> Result<Vec<String>, CliError> {
        match self.get::<serde_json::Value>("/api/v1/models") {
            Ok(v) => Ok(v["models"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["name"].as_str().map(str::to_string))
                .collect()),
            Err(CliError::Api {
                code: ErrorCode::NotFound,
                ..
            }) => Ok(vec![String::new()]),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/v1/releases?limit=&env=` (every model's), or
    /// `/api/v1/models/{model}/releases?...`.
    pub(crate) fn releases(
        &self,
        model: Option<&str>,
        env: Option<&str>,
        limit: usize,
    ) -> Result<ReleaseList, CliError> {
        let base = match model {
            Some(m) => format!("{}/releases", model_path(m)),
            None => paths::RELEASES.to_string(),
        };
        let mut path = format!("{base}?limit={limit}");
        if let Some(e) = env {
            path.push_str(&format!("&env={e}"));
        }
        self.get(&path)
    }

    /// `GET /api/v1/releases/{id}`.
    pub(crate) fn release(&self, id: u64) -> Result<ReleaseDetail, CliError> {
        self.get(&paths::release(id))
    }

    /// `POST /api/v1/releases`.
    pub(crate) fn create(&self, body: &CreateRelease) -> Result<Release, CliError> {
        self.post(paths::RELEASES, body)
    }

    /// `POST /api/v1/releases/{id}/promote` (with `model`, under its path: the
    /// daemon checks the release is that model's).
    pub(crate) fn promote(
        &self,
        model: Option<&str>,
        id: u64,
        body: &Promote,
    ) -> Result<Release, CliError> {
        self.post(&release_op(model, id, "promote"), body)
    }

    /// `POST /api/v1/releases/{id}/approve`.
    pub(crate) fn approve(&self, model: Option<&str>, id: u64) -> Result<Release, CliError> {
        self.post(&release_op(model, id, "approve"), &serde_json::json!({}))
    }

    /// `POST /api/v1/releases/{id}/abort`.
    pub(crate) fn abort(
        &self,
        model: Option<&str>,
        id: u64,
        body: &Abort,
    ) -> Result<Release, CliError> {
        self.post(&release_op(model, id, "abort"), body)
    }

    /// `POST /api/v1/rollback` (the daemon's only model), or
    /// `/api/v1/models/{model}/rollback`.
    pub(crate) fn rollback(
        &self,
        model: Option<&str>,
        body: &Rollback,
    ) -> Result<Release, CliError> {
        match model {
            Some(m) => self.post(&format!("{}/rollback", model_path(m)), body),
            None => self.post(paths::ROLLBACK, body),
        }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        self.send(self.http.get(format!("{}{path}", self.base)), path)
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, CliError> {
        self.send(
            self.http.post(format!("{}{path}", self.base)).json(body),
            path,
        )
    }

    fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::blocking::RequestBuilder,
        path: &str,
    ) -> Result<T, CliError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().map_err(|e| CliError::Daemon {
            message: format!(
                "no hoist daemon answers at {} ({}); start one with `hoist up`, or point --api / HOIST_API at it",
                self.base,
                if e.is_connect() { "connection refused".to_string() } else { e.to_string() }
            ),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        if status >= 400 {
            return Err(refusal(status, &text));
        }
        serde_json::from_str(&text).map_err(|e| CliError::Daemon {
            message: format!(
                "the daemon at {} answered {path} with what this hoist cannot read ({e}): is it another version?",
                self.base
            ),
        })
    }
}

/// `/api/v1/models/{m}`, the name percent-encoded.
fn model_path(m: &str) -> String {
    let mut enc = String::new();
    for b in m.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!("/api/v1/models/{enc}")
}

fn release_op(model: Option<&str>, id: u64, op: &str) -> String {
    match model {
        Some(m) => format!("{}/releases/{id}/{op}", model_path(m)),
        None => paths::release_op(id, op),
    }
}

/// The error an answer with `status` and body `text` means: the daemon's code and
/// message, or (a body that is not the API's error, from a proxy say) the status's.
fn refusal(status: u16, text: &str) -> CliError {
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(ErrorBody { error }) => CliError::Api {
            code: error.code,
            message: error.message,
        },
        Err(_) => CliError::Api {
            code: ErrorCode::from_status(status),
            message: format!("HTTP {status}: {text}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_keeps_the_daemons_code_and_message() {
        let e = refusal(
            409,
            r#"{"error":{"code":"conflict","message":"release 3 is mid-rollout"}}"#,
        );
        assert_eq!((e.exit_code(), e.code()), (6, "conflict"));
        assert_eq!(e.to_string(), "release 3 is mid-rollout");
        let e = refusal(502, "Bad Gateway");
        assert_eq!((e.exit_code(), e.code()), (1, "registry_unavailable"));
        assert_eq!(e.to_string(), "HTTP 502: Bad Gateway");
        let e = refusal(
            404,
            r#"{"error":{"code":"not_found","message":"no release 9"}}"#,
        );
        assert_eq!(e.exit_code(), 3);
    }
}
