//! Which program runs a model server: `hoist-server`, or `hoist serve`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// How to start a model server: the `hoist-server` binary, or the `hoist` binary
/// with a leading `serve` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerProgram {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the server's own flags (`["serve"]` for the `hoist` binary).
    pub leading_args: Vec<OsString>,
}

impl ServerProgram {
    /// The `hoist-server` binary at `program`, no leading arguments.
    pub fn binary(program: impl Into<PathBuf>) -> ServerProgram {
        ServerProgram {
            program: program.into(),
            leading_args: Vec::new(),
        }
    }

    /// Finds the model server program, in this order:
    /// 1. `HOIST_SERVER_BIN` if set (it must name an existing file);
    /// 2. a `hoist-server` file next to [`std::env::current_exe`];
    /// 3. when the current executable's file name starts with `hoist`: the current
    ///    executable with the leading argument `serve`;
    /// 4. `hoist-server` on `PATH`.
    ///
    /// The error names every place that was tried.
    pub fn locate() -> Result<ServerProgram> {
        locate_with(|k| std::env::var_os(k), std::env::current_exe().ok())
    }
}

/// [`ServerProgram::locate`] with the environment and the current executable given,
/// so tests need no `set_var`.
pub(crate) fn locate_with(
    env: impl Fn(&str) -> Option<OsString>,
    current_exe: Option<PathBuf>,
) -> Result<ServerProgram> {
    let mut tried = Vec::new();
    if let Some(bin) = env("HOIST_SERVER_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(ServerProgram::binary(bin));
        }
        // Fail closed: an explicit setting that points nowhere is a mistake to
        // report, not a reason to run some other binary.
        return Err(Error::ProgramNotFound {
            tried: format!("HOIST_SERVER_BIN={} (no such file)", bin.display()),
        });
    }
    tried.push("HOIST_SERVER_BIN (not set)".to_string());

    match &current_exe {
        Some(exe) => {
            if let Some(dir) = exe.parent() {
                let sibling = dir.join("hoist-server");
                if is_executable(&sibling) {
                    return Ok(ServerProgram::binary(sibling));
                }
                tried.push(format!("{} (no such file)", sibling.display()));
            }
            let name = exe
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with("hoist") {
                return Ok(ServerProgram {
                    program: exe.clone(),
                    leading_args: vec![OsString::from("serve")],
                });
            }
            tried.push(format!(
                "{} serve (the current program is not hoist)",
                exe.display()
            ));
        }
        None => tried.push("the current executable (unknown)".to_string()),
    }

    let path = env("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("hoist-server");
        if is_executable(&candidate) {
            return Ok(ServerProgram::binary(candidate));
        }
    }
    tried.push("hoist-server on PATH (not found)".to_string());
    Err(Error::ProgramNotFound {
        tried: tried.join(", "),
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hoist-targets-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn executable(p: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn env(vars: &[(&str, &Path)]) -> impl Fn(&str) -> Option<OsString> {
        let m: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn the_environment_variable_wins_and_must_name_a_file() {
        let d = tempdir("env");
        let bin = d.join("my-server");
        executable(&bin);
        let got = locate_with(env(&[("HOIST_SERVER_BIN", &bin)]), None).unwrap();
        assert_eq!(got, ServerProgram::binary(&bin));
        let missing = d.join("missing");
        let err = locate_with(env(&[("HOIST_SERVER_BIN", &missing)]), None).unwrap_err();
        assert!(err.to_string().contains("HOIST_SERVER_BIN="), "{err}");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_sibling_then_hoist_serve_then_path() {
        let d = tempdir("order");
        let exe = d.join("hoist");
        executable(&exe);
        let empty = d.join("empty-path");
        std::fs::create_dir_all(&empty).unwrap();
        // No sibling: hoist runs servers itself with `serve`.
        let got = locate_with(env(&[("PATH", &empty)]), Some(exe.clone())).unwrap();
        assert_eq!(got.program, exe);
        assert_eq!(got.leading_args, vec![OsString::from("serve")]);
        // A sibling hoist-server is preferred.
        let sibling = d.join("hoist-server");
        executable(&sibling);
        let got = locate_with(env(&[("PATH", &empty)]), Some(exe.clone())).unwrap();
        assert_eq!(got, ServerProgram::binary(&sibling));
        // Another program falls back to PATH.
        let other = tempdir("other");
        let got = locate_with(env(&[("PATH", &d)]), Some(other.join("release-engine"))).unwrap();
        assert_eq!(got, ServerProgram::binary(&sibling));
        std::fs::remove_dir_all(d).unwrap();
        std::fs::remove_dir_all(other).unwrap();
    }

    #[test]
    fn not_found_names_what_was_tried() {
        let d = tempdir("none");
        let err = locate_with(env(&[("PATH", &d)]), Some(d.join("engine"))).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("HOIST_SERVER_BIN"), "{msg}");
        assert!(
            msg.contains(&d.join("hoist-server").display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("PATH"), "{msg}");
        std::fs::remove_dir_all(d).unwrap();
    }
}
