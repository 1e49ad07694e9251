//! Admin endpoints (`POST /admin/reload`, and the repository extension's `load` and
//! `unload`), guarded by `X-Admin-Token`.
//!
//! # Guarantees
//! - Without a configured token the admin endpoints answer 404: off, never open.
//! - Tokens come from `HOIST_ADMIN_TOKEN` and/or the file `HOIST_ADMIN_TOKEN_FILE`,
//!   one token per line, so a rotation adds the new token beside the old one and
//!   removes the old one later, with no restart. The file is re-read when it changes.
//! - Comparison is constant-time (over sha256 digests, so the length leaks nothing)
//!   and checks every token; tokens are never logged.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Shared, json_error};

type TokenHash = [u8; 32];

/// A token file's tokens as of its modification time.
type FileTokens = Mutex<(Option<SystemTime>, Vec<TokenHash>)>;

/// The admin tokens in force.
pub struct AdminTokens {
    /// From `HOIST_ADMIN_TOKEN`.
    fixed: Vec<TokenHash>,
    /// `HOIST_ADMIN_TOKEN_FILE`, and its tokens as of its last modification time.
    file: Option<(PathBuf, FileTokens)>,
}

fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_tokens(text: &str) -> Vec<TokenHash> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(hash)
        .collect()
}

impl AdminTokens {
    /// Reads the token settings through `var` (the process environment in `main`).
    pub fn from_source(var: impl Fn(&str) -> Option<String>) -> AdminTokens {
        AdminTokens {
            fixed: var("HOIST_ADMIN_TOKEN")
                .map(|t| parse_tokens(&t))
                .unwrap_or_default(),
            file: var("HOIST_ADMIN_TOKEN_FILE")
                .filter(|p| !p.is_empty())
                .map(|p| (PathBuf::from(p), Mutex::new((None, Vec::new())))),
        }
    }

    /// Whether admin endpoints are on at all.
    pub fn configured(&self) -> bool {
        !self.fixed.is_empty() || self.file.is_some()
    }

    /// The tokens now, re-reading the file if it changed.
    fn current(&self) -> Vec<TokenHash> {
        let mut all = self.fixed.clone();
        if let Some((path, cache)) = &self.file {
            let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            let mut cache = cache.lock().expect("token cache lock");
            if cache.0 != mtime || mtime.is_none() {
                cache.1 = std::fs::read_to_string(path)
                    .map(|t| parse_tokens(&t))
                    .unwrap_or_else(|e| {
                        tracing::warn!(
                            "cannot read HOIST_ADMIN_TOKEN_FILE {}: {e}",
                            path.display()
                        );
                        Vec::new()
                    });
                cache.0 = mtime;
            }
            all.extend_from_slice(&cache.1);
        }
        all
    }

    /// Whether `presented` is one of the tokens, in constant time.
    pub fn verify(&self, presented: &str) -> bool {
        let p = hash(presented);
        let mut ok = subtle::Choice::from(0u8);
        for t in self.current() {
            ok |= t.ct_eq(&p);
        }
        bool::from(ok)
    }
}

/// Checks the admin token for `action` (`reload`, `load`, `unload`); `Err` is the
/// response to send.
pub fn authorize(state: &Shared, headers: &HeaderMap, action: &str) -> Result<(), Response> {
    if !state.admin.configured() {
        return Err(json_error(
            StatusCode::NOT_FOUND,
            &format!(
                "{action} is off: admin endpoints need HOIST_ADMIN_TOKEN or HOIST_ADMIN_TOKEN_FILE (no route for POST /admin/reload)"
            ),
        ));
    }
    let presented = headers
        .get("x-admin-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if presented.is_empty() || !state.admin.verify(presented) {
        return Err(json_error(
            StatusCode::UNAUTHORIZED,
            "missing or invalid X-Admin-Token",
        ));
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReloadRequest {
    /// The model to reload; needed when the server serves more than one.
    model: Option<String>,
    /// Load from this path instead of the current one.
    path: Option<PathBuf>,
    /// Serve under this version.
    version: Option<String>,
}

/// `POST /admin/reload [{"model": ..., "path": ..., "version": ...}]`: load, check, swap.
pub async fn reload(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&state, &headers, "reload") {
        return r;
    }
    let req: ReloadRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReloadRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "reload body must be empty or {{\"model\": ..., \"path\": ..., \"version\": ...}}: {e}"
                    ),
                );
            }
        }
    };
    let name = match req.model {
        Some(m) => m,
        None => {
            let entries = state.models.entries();
            match entries.as_slice() {
                [one] => one
                    .model()
                    .map_or(one.name.clone(), |m| m.package.name.clone()),
                many => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        &format!(
                            "this server serves {} models; name one with {{\"model\": ...}}: {}",
                            many.len(),
                            many.iter()
                                .map(|e| format!("'{}'", e.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
            }
        }
    };
    match state.models.load(&name, req.path, req.version).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(crate::repository::LoadFailure::NotFound(m)) => json_error(StatusCode::NOT_FOUND, &m),
        Err(crate::repository::LoadFailure::Failed(m)) => {
            json_error(StatusCode::UNPROCESSABLE_ENTITY, &m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_token_means_off() {
        let t = AdminTokens::from_source(|_| None);
        assert!(!t.configured());
        assert!(!t.verify(""));
    }

    #[test]
    fn several_tokens_and_file_rotation() {
        let dir = std::env::temp_dir().join(format!("hoist-admin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokens");
        std::fs::write(&file, "old\nnew\n").unwrap();
        let f = file.to_string_lossy().into_owned();
        let t = AdminTokens::from_source(|k| match k {
            "HOIST_ADMIN_TOKEN" => Some("env-token".into()),
            "HOIST_ADMIN_TOKEN_FILE" => Some(f.clone()),
            _ => None,
        });
        assert!(t.verify("env-token") && t.verify("old") && t.verify("new"));
        assert!(!t.verify("ol") && !t.verify("newer"));
        // Rotation: drop the old token; mtime granularity may hide a same-second write.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, "new\n").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(2);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(!t.verify("old"));
        assert!(t.verify("new"));
    }
}
