//! Secrets that rotate without a restart.
//!
//! hoist reads each of its secrets (the daemon's API token, MLflow credentials, the
//! webhook secret, notification signing secrets, feedback tokens) from an environment
//! variable `VAR`, or from the file `VAR_FILE` names: the convention of container
//! images for mounted secrets. A file is read again whenever it changes (its
//! modification time, size or inode), so a Kubernetes Secret mounted as a volume is
//! rotated in place: the kubelet swaps the file, and the next request uses the new
//! value, with no restart. A file that becomes unreadable or empty keeps the last
//! value read (a secret never silently becomes "no secret").

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A secret value: fixed, or read from a file and re-read when the file changes.
/// Cloning shares the cache. `Debug` never shows the value.
#[derive(Clone)]
pub struct Secret(Arc<Source>);

enum Source {
    Value(String),
    File {
        path: PathBuf,
        cached: Mutex<Cached>,
    },
}

struct Cached {
    stamp: Option<Stamp>,
    value: String,
}

/// What identifies one version of a file: a rotated file differs in at least one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    // `metadata` follows symlinks: a mounted Secret's file is a link into the
    // directory the kubelet swaps atomically.
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode,
    })
}

/// Why a secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    /// `VAR_FILE` names a file that does not exist.
    NoFile { var: String, path: PathBuf },
    /// The file exists but cannot be read, or holds nothing.
    Unreadable {
        what: String,
        path: PathBuf,
        reason: String,
    },
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::NoFile { var, path } => {
                write!(
                    f,
                    "{var}_FILE names {}, which does not exist",
                    path.display()
                )
            }
            SecretError::Unreadable { what, path, reason } => {
                write!(f, "{what} {}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for SecretError {}

/// A file's contents as a secret: without the line ending an editor or `echo` adds.
fn read_secret(path: &Path) -> Result<String, String> {
    let raw = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let v = raw.trim_end_matches(['\n', '\r']);
    if v.is_empty() {
        return Err("the file is empty".into());
    }
    Ok(v.to_string())
}

impl Secret {
    /// A fixed value.
    pub fn value(v: impl Into<String>) -> Secret {
        Secret(Arc::new(Source::Value(v.into())))
    }

    /// The contents of `path` (a trailing line ending removed), read now and again
    /// whenever the file changes. Refused: a file that cannot be read or is empty.
    pub fn file(path: impl Into<PathBuf>) -> Result<Secret, SecretError> {
        let path = path.into();
        let st = stamp(&path);
        let value = read_secret(&path).map_err(|reason| SecretError::Unreadable {
            what: "secret file".into(),
            path: path.clone(),
            reason,
        })?;
        Ok(Secret(Arc::new(Source::File {
            path,
            cached: Mutex::new(Cached { stamp: st, value }),
        })))
    }

    /// The secret in `var` (a non-empty value), else in the file `{var}_FILE` names;
    /// `None` when neither is set. `env` reads the environment (tests pass a map).
    pub fn from_env(
        var: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, SecretError> {
        let value = env(var).filter(|v| !v.is_empty());
        let file_var = format!("{var}_FILE");
        let file = env(&file_var).filter(|v| !v.is_empty());
        match (value, file) {
            // The value wins, as it always did for hoist's own variables.
            (Some(v), _) => Ok(Some(Secret::value(v))),
            (None, None) => Ok(None),
            (None, Some(p)) => {
                let path = PathBuf::from(p);
                if !path.exists() {
                    return Err(SecretError::NoFile {
                        var: var.into(),
                        path,
                    });
                }
                Secret::file(&path).map(Some).map_err(|e| match e {
                    SecretError::Unreadable { path, reason, .. } => SecretError::Unreadable {
                        what: file_var,
                        path,
                        reason,
                    },
                    other => other,
                })
            }
        }
    }

    /// The current value: a file's is read again when the file has changed since
    /// the last read (one `stat` otherwise).
    pub fn get(&self) -> String {
        match &*self.0 {
            Source::Value(v) => v.clone(),
            Source::File { path, cached } => {
                let mut c = cached.lock().unwrap_or_else(|p| p.into_inner());
                let now = stamp(path);
                if now.is_some() && now != c.stamp {
                    // Unreadable or empty in passing (mid-swap, a bad edit): keep
                    // the last value; the next change is read again.
                    if let Ok(v) = read_secret(path) {
                        c.value = v;
                        c.stamp = now;
                    }
                }
                c.value.clone()
            }
        }
    }

    /// The file this secret is read from, if any.
    pub fn path(&self) -> Option<&Path> {
        match &*self.0 {
            Source::Value(_) => None,
            Source::File { path, .. } => Some(path),
        }
    }
}

impl From<String> for Secret {
    fn from(v: String) -> Secret {
        Secret::value(v)
    }
}

impl From<&str> for Secret {
    fn from(v: &str) -> Secret {
        Secret::value(v)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Source::Value(_) => write!(f, "Secret(***)"),
            Source::File { path, .. } => write!(f, "Secret(file {}, ***)", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    /// A fresh directory for one test, removed when dropped.
    struct Dir(PathBuf);
    impl Dir {
        fn new(name: &str) -> Dir {
            let d =
                std::env::temp_dir().join(format!("hoist-secret-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Replaces a file the way the kubelet does: a new file renamed over the old,
    /// so the inode changes even within one second.
    fn rotate(path: &Path, value: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, value).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn a_value_in_the_environment() {
        let s = Secret::from_env("T", &env(&[("T", "abc")]))
            .unwrap()
            .unwrap();
        assert_eq!(s.get(), "abc");
        assert_eq!(s.path(), None);
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }

    #[test]
    fn neither_set_is_none_and_an_empty_value_is_unset() {
        assert!(Secret::from_env("T", &env(&[])).unwrap().is_none());
        assert!(Secret::from_env("T", &env(&[("T", "")])).unwrap().is_none());
    }

    #[test]
    fn a_file_is_read_again_when_it_is_rotated() {
        let dir = Dir::new("rotated");
        let p = dir.path().join("token");
        std::fs::write(&p, "first\n").unwrap();
        let s = Secret::from_env("T", &env(&[("T_FILE", p.to_str().unwrap())]))
            .unwrap()
            .unwrap();
        assert_eq!(s.get(), "first", "the trailing newline is not part of it");
        let shared = s.clone();
        rotate(&p, "second");
        assert_eq!(s.get(), "second");
        assert_eq!(shared.get(), "second");
        assert!(!format!("{s:?}").contains("second"));
    }

    #[test]
    fn a_file_emptied_or_removed_keeps_the_last_value() {
        let dir = Dir::new("removed");
        let p = dir.path().join("token");
        std::fs::write(&p, "kept").unwrap();
        let s = Secret::file(&p).unwrap();
        rotate(&p, "");
        assert_eq!(s.get(), "kept");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(s.get(), "kept");
        rotate(&p, "back");
        assert_eq!(s.get(), "back");
    }

    #[test]
    fn refusals_name_the_variable_and_the_file() {
        let dir = Dir::new("refusals");
        let missing = dir.path().join("nope");
        let e = Secret::from_env("T", &env(&[("T_FILE", missing.to_str().unwrap())])).unwrap_err();
        assert!(matches!(e, SecretError::NoFile { .. }));
        assert!(e.to_string().contains("T_FILE names"), "{e}");
        assert!(e.to_string().contains("nope"), "{e}");

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = Secret::from_env("T", &env(&[("T_FILE", empty.to_str().unwrap())])).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("T_FILE {}: the file is empty", empty.display())
        );

        // Both set: the value wins (the file is not read).
        let s = Secret::from_env("T", &env(&[("T", "x"), ("T_FILE", "/nonexistent")]))
            .unwrap()
            .unwrap();
        assert_eq!(s.get(), "x");
    }
}
