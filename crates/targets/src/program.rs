//! Which program runs a model server: `hoist-server`, `hoist serve`, or MLflow's own
//! scoring server (`python -m mlflow models serve`) for models without an onnx flavor.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Which model server a program is: how it is told its model and port, and how it
/// says it is ready.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerKind {
    /// `hoist-server` (or `hoist serve`): `--model P --name N --model-version V --host
    /// 127.0.0.1 --port PORT`; it prints `listening on http://ADDR` and answers
    /// `GET /v2/health/ready` 200 once its model answered its input example.
    #[default]
    Hoist,
    /// MLflow's scoring server: `-m DIR --env-manager local -h 127.0.0.1 -p PORT`
    /// after the leading `-m mlflow models serve`. It cannot be given port 0, so
    /// hoist picks a free port first; it is ready when `GET /ping` answers 200 (the
    /// model is loaded before the server listens). It runs uvicorn as its own child,
    /// so it gets a process group of its own and stops are sent to the whole group.
    Mlflow,
}

impl ServerKind {
    /// The server a model package needs, by its `MLmodel`: [`ServerKind::Mlflow`]
    /// when it has a `python_function` flavor and no `onnx` one; hoist-server for
    /// everything else (an onnx flavor, a bare `.onnx` file, a directory without
    /// `MLmodel`, and an `MLmodel` hoist-server will say is wrong).
    pub fn of_model(path: &Path) -> ServerKind {
        let Ok(text) = std::fs::read_to_string(path.join("MLmodel")) else {
            return ServerKind::Hoist;
        };
        let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
            return ServerKind::Hoist;
        };
        let flavors = doc.get("flavors");
        let has = |name: &str| flavors.and_then(|f| f.get(name)).is_some();
        if !has("onnx") && has("python_function") {
            ServerKind::Mlflow
        } else {
            ServerKind::Hoist
        }
    }
}

/// How to start a model server: the `hoist-server` binary, the `hoist` binary with
/// a leading `serve` argument, or a Python with MLflow ([`ServerProgram::mlflow`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerProgram {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the server's own flags (`["serve"]` for the `hoist` binary).
    pub leading_args: Vec<OsString>,
    /// Which server it is: the flags it takes and its readiness path.
    pub kind: ServerKind,
}

impl ServerProgram {
    /// The `hoist-server` binary at `program`, no leading arguments.
    pub fn binary(program: impl Into<PathBuf>) -> ServerProgram {
        ServerProgram {
            program: program.into(),
            leading_args: Vec::new(),
            kind: ServerKind::Hoist,
        }
    }

    /// MLflow's scoring server run by `python` (which must have `mlflow` installed):
    /// `python -m mlflow models serve`. The directory of `python` is put first on
    /// the child's `PATH`, because MLflow starts `uvicorn` by name.
    pub fn mlflow(python: impl Into<PathBuf>) -> ServerProgram {
        ServerProgram {
            program: python.into(),
            leading_args: ["-m", "mlflow", "models", "serve"]
                .map(OsString::from)
                .to_vec(),
            kind: ServerKind::Mlflow,
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
                    kind: ServerKind::Hoist,
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
    fn the_mlmodel_picks_the_server() {
        let d = tempdir("kind");
        // No MLmodel (a directory of .onnx files, or a bare file): hoist-server.
        assert_eq!(ServerKind::of_model(&d), ServerKind::Hoist);
        assert_eq!(ServerKind::of_model(&d.join("m.onnx")), ServerKind::Hoist);
        let mlmodel = d.join("MLmodel");
        std::fs::write(
            &mlmodel,
            "flavors:\n  onnx: {data: model.onnx}\n  python_function: {loader_module: mlflow.onnx}\n",
        )
        .unwrap();
        assert_eq!(ServerKind::of_model(&d), ServerKind::Hoist);
        std::fs::write(
            &mlmodel,
            "flavors:\n  python_function: {loader_module: mlflow.sklearn}\n  sklearn: {pickled_model: model.pkl}\n",
        )
        .unwrap();
        assert_eq!(ServerKind::of_model(&d), ServerKind::Mlflow);
        // Neither flavor, or not YAML: hoist-server, which reports the problem.
        std::fs::write(&mlmodel, "flavors:\n  crate: {}\n").unwrap();
        assert_eq!(ServerKind::of_model(&d), ServerKind::Hoist);
        std::fs::write(&mlmodel, "flavors: [").unwrap();
        assert_eq!(ServerKind::of_model(&d), ServerKind::Hoist);
        // MLflow's server is `python -m mlflow models serve`.
        let m = ServerProgram::mlflow("/venv/bin/python");
        assert_eq!(m.kind, ServerKind::Mlflow);
        assert_eq!(m.leading_args, ["-m", "mlflow", "models", "serve"]);
        std::fs::remove_dir_all(d).unwrap();
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
