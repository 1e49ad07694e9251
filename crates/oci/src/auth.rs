//! Registry credentials and the `WWW-Authenticate` challenge.
//!
//! Credentials come from, in order: `HOIST_REGISTRY_USERNAME` and
//! `HOIST_REGISTRY_PASSWORD`; the file `REGISTRY_AUTH_FILE` names (podman, skopeo,
//! buildah); `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` (docker
//! login). Both files have the same shape: `{"auths": {"HOST[:PORT]": {"auth":
//! base64("user:password")}}}`. Credential helpers (`credsStore`) are not run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;

use crate::{Error, Result};

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

impl Credentials {
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The credentials for `registry` (`host[:port]`), if any are configured. A file
/// that exists but cannot be read or parsed is an error, never silently skipped.
pub fn credentials_for(
    registry: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Credentials>> {
    if let (Some(username), Some(password)) = (
        env("HOIST_REGISTRY_USERNAME"),
        env("HOIST_REGISTRY_PASSWORD"),
    ) {
        return Ok(Some(Credentials { username, password }));
    }
    let mut files: Vec<PathBuf> = vec![];
    if let Some(f) = env("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
        files.push(f.into());
    }
    if let Some(d) = env("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        files.push(PathBuf::from(d).join("config.json"));
    } else if let Some(h) = env("HOME") {
        files.push(PathBuf::from(h).join(".docker/config.json"));
    }
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("reading {}", file.display()))(e)),
        };
        if let Some(c) = from_auth_file(&text, registry)
            .map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?
        {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// The entry for `registry` in a docker `config.json` / containers `auth.json`.
fn from_auth_file(text: &str, registry: &str) -> std::result::Result<Option<Credentials>, String> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
    }
    let f: File = serde_json::from_str(text).map_err(|e| format!("not a credentials file: {e}"))?;
    let keys = [
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
        format!("https://{registry}/v2/"),
    ];
    let hub = registry == "registry-1.docker.io";
    let entry = keys.iter().find_map(|k| f.auths.get(k)).or_else(|| {
        hub.then(|| {
            f.auths
                .get("https://index.docker.io/v1/")
                .or_else(|| f.auths.get("docker.io"))
        })
        .flatten()
    });
    let Some(e) = entry else { return Ok(None) };
    if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| format!("the auth of {registry} is not base64"))?;
        let raw =
            String::from_utf8(raw).map_err(|_| format!("the auth of {registry} is not UTF-8"))?;
        let (u, p) = raw
            .split_once(':')
            .ok_or_else(|| format!("the auth of {registry} is not user:password"))?;
        return Ok(Some(Credentials {
            username: u.into(),
            password: p.into(),
        }));
    }
    Ok(match (&e.username, &e.password) {
        (Some(u), Some(p)) => Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        }),
        _ => None,
    })
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// `basic` or `bearer` (lowercased).
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parses `Bearer realm="…",service="…",scope="…"` (quoted values may hold commas).
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_commas_inside_quotes() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        assert_eq!(
            parse_challenge(r#"Basic realm="x""#).unwrap().scheme,
            "basic"
        );
    }

    #[test]
    fn credentials_come_from_env_then_auth_files() {
        let dir = std::env::temp_dir().join(format!("hoist-oci-auth-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".docker")).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode("ann:pw1");
        std::fs::write(
            dir.join(".docker/config.json"),
            format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{b64}"}}}}}}"#),
        )
        .unwrap();
        std::fs::write(
            dir.join("auth.json"),
            r#"{"auths":{"https://reg.example":{"username":"bob","password":"pw2"}}}"#,
        )
        .unwrap();
        let home = dir.to_string_lossy().into_owned();
        let auth_file = dir.join("auth.json").to_string_lossy().into_owned();
        let env = |k: &str| match k {
            "HOME" => Some(home.clone()),
            "REGISTRY_AUTH_FILE" => Some(auth_file.clone()),
            _ => None,
        };
        let c = credentials_for("127.0.0.1:5000", &env).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("ann", "pw1"));
        let c = credentials_for("reg.example", &env).unwrap().unwrap();
        assert_eq!(c.username, "bob");
        assert!(credentials_for("other:1", &env).unwrap().is_none());
        let with_vars = |k: &str| match k {
            "HOIST_REGISTRY_USERNAME" => Some("env".to_string()),
            "HOIST_REGISTRY_PASSWORD" => Some("pw3".to_string()),
            _ => env(k),
        };
        assert_eq!(
            credentials_for("127.0.0.1:5000", &with_vars)
                .unwrap()
                .unwrap()
                .username,
            "env"
        );
        std::fs::write(dir.join("auth.json"), "not json").unwrap();
        assert!(credentials_for("reg.example", &env).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
