//! Python environments for MLflow's scoring server: a virtualenv made once from a
//! model's `requirements.txt` and reused by every model with the same requirements.
//!
//! # Expected flow
//! 1. [`requirements`] reads the model's pip requirements: `requirements.txt`, the
//!    file MLflow writes beside `MLmodel` (and names from `python_env.yaml`).
//! 2. [`ensure_env`] looks for `ENVS/<sha256 of those requirements>/`, complete (it
//!    holds [`READY_MARK`]); if it is there, its `bin/python` is the answer.
//! 3. Otherwise it builds one in `ENVS/.tmp-<sha>-<pid>-<n>/`: `python -m venv`,
//!    `pip install -r requirements.txt`, a check that `mlflow` imports, the marker,
//!    then one `rename` to the final name.
//!
//! # Guarantees
//! - Atomic: a directory under the final name is always complete. A failed or
//!   interrupted build leaves at most a `.tmp-*` directory (removed on failure),
//!   never a half-installed environment that a later start would trust.
//! - One build at a time in this process (two environments releasing the same new
//!   model wait for one build); two processes may build the same one at once, and
//!   the second `rename` loses harmlessly.
//! - A failed `pip install` is an error that carries pip's last lines.
//!
//! # Caveats
//! Console scripts (`bin/uvicorn`, which MLflow starts by name) carry the absolute
//! path of the venv's python in their `#!` line: they are rewritten to the final
//! path before the rename. The base Python is `python3` on `PATH` unless given; the
//! `python:` version in `python_env.yaml` is not installed (no pyenv): a different
//! one is only reported.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The file written last into a complete environment.
pub const READY_MARK: &str = ".hoist-env-ready";
/// Lines of pip's output an error keeps.
const PIP_TAIL_LINES: usize = 15;

/// Why no Python environment could be made for a model.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The model names no requirements.
    #[error(
        "{}: no requirements.txt (nor dependencies in python_env.yaml): hoist cannot make a Python \
         environment for this model; set [server] python in hoist.toml to a Python with mlflow \
         and the model's libraries installed",
        dir.display()
    )]
    NoRequirements { dir: PathBuf },
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A step of the build failed; `output` is the end of what it printed.
    #[error("making the Python environment for {}: {step} failed ({status}); its output ended with:\n{output}", model.display())]
    Step {
        model: PathBuf,
        step: String,
        status: String,
        output: String,
    },
}

/// The pip requirements of the MLflow model in `dir`, as text (one per line).
pub fn requirements(dir: &Path) -> Result<String, EnvError> {
    let req = dir.join("requirements.txt");
    match std::fs::read_to_string(&req) {
        Ok(text) => return Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(EnvError::Io { path: req, source }),
    }
    // No requirements.txt: the names listed in python_env.yaml, if any.
    let env = dir.join("python_env.yaml");
    let text = match std::fs::read_to_string(&env) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(EnvError::NoRequirements {
                dir: dir.to_path_buf(),
            });
        }
        Err(source) => return Err(EnvError::Io { path: env, source }),
    };
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_default();
    let names: Vec<&str> = doc
        .get("dependencies")
        .and_then(|d| d.as_sequence())
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str())
        .filter(|d| !d.starts_with("-r"))
        .collect();
    if names.is_empty() {
        return Err(EnvError::NoRequirements {
            dir: dir.to_path_buf(),
        });
    }
    Ok(names.join("\n") + "\n")
}

/// The directory name of an environment for `requirements`: its sha256, in hex.
pub fn env_key(requirements: &str) -> String {
    let digest = Sha256::digest(requirements.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Python of a complete environment for the model in `model_dir` under `envs`,
/// made first (with `base_python -m venv` and pip) when there is none. `progress`
/// hears each step and pip's `Collecting`/`Installing` lines.
pub async fn ensure_env(
    model_dir: &Path,
    envs: &Path,
    base_python: &Path,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<PathBuf, EnvError> {
    let reqs = requirements(model_dir)?;
    let key = env_key(&reqs);
    let done = envs.join(&key);
    let python = done.join("bin").join("python");
    if done.join(READY_MARK).is_file() {
        return Ok(python);
    }
    // One build at a time in this process; the one we waited for may be ours.
    static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = BUILDING.lock().await;
    if done.join(READY_MARK).is_file() {
        return Ok(python);
    }
    std::fs::create_dir_all(envs).map_err(|source| EnvError::Io {
        path: envs.to_path_buf(),
        source,
    })?;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = envs.join(format!(
        ".tmp-{key}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let built = build(model_dir, &tmp, &done, base_python, progress).await;
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match std::fs::rename(&tmp, &done) {
        Ok(()) => {}
        // Another process finished the same environment first: use that one.
        Err(_) if done.join(READY_MARK).is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(source) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(EnvError::Io { path: done, source });
        }
    }
    progress(format!("Python environment ready: {}", done.display()));
    Ok(python)
}

/// Makes the environment in `tmp`, ready to be renamed to `done`.
async fn build(
    model_dir: &Path,
    tmp: &Path,
    done: &Path,
    base_python: &Path,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<(), EnvError> {
    progress(format!(
        "making a Python environment for {} from its requirements.txt (once; kept in {})",
        model_dir.display(),
        done.display()
    ));
    let mut venv = Command::new(base_python);
    venv.arg("-m").arg("venv").arg(tmp);
    run(model_dir, "python -m venv", venv, progress).await?;
    let python = tmp.join("bin").join("python");
    let req = model_dir.join("requirements.txt");
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install", "--disable-pip-version-check"]);
    if req.is_file() {
        pip.arg("-r").arg(&req);
    } else {
        pip.args(
            requirements(model_dir)?
                .lines()
                .filter(|l| !l.trim().is_empty()),
        );
    }
    run(model_dir, "pip install -r requirements.txt", pip, progress).await?;
    let mut check = Command::new(&python);
    check.args(["-c", "import mlflow"]);
    run(
        model_dir,
        "importing mlflow (the requirements must install it: it serves the model)",
        check,
        progress,
    )
    .await?;
    fix_shebangs(tmp, done)?;
    let mark = tmp.join(READY_MARK);
    std::fs::write(&mark, b"").map_err(|source| EnvError::Io { path: mark, source })
}

/// Runs one step; its output lines go to `progress` (pip's `Collecting`,
/// `Installing` and `Successfully` lines) and the last [`PIP_TAIL_LINES`] into the
/// error when it fails.
async fn run(
    model_dir: &Path,
    step: &str,
    mut cmd: Command,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<(), EnvError> {
    let fail = |status: String, output: String| EnvError::Step {
        model: model_dir.to_path_buf(),
        step: step.to_string(),
        status,
        output,
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("PIP_NO_INPUT", "1")
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| fail("could not start".into(), e.to_string()))?;
    let mut out = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut err = BufReader::new(child.stderr.take().expect("piped")).lines();
    let mut tail = std::collections::VecDeque::new();
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        let line = tokio::select! {
            l = out.next_line(), if out_open => l.ok().flatten().or_else(|| { out_open = false; None }),
            l = err.next_line(), if err_open => l.ok().flatten().or_else(|| { err_open = false; None }),
        };
        let Some(line) = line else { continue };
        let trimmed = line.trim();
        if ["Collecting", "Installing", "Successfully"]
            .iter()
            .any(|p| trimmed.starts_with(p))
        {
            progress(format!("pip: {trimmed}"));
        }
        tail.push_back(line);
        if tail.len() > PIP_TAIL_LINES {
            tail.pop_front();
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| fail("could not be waited on".into(), e.to_string()))?;
    if status.success() {
        return Ok(());
    }
    let output: Vec<String> = tail.into_iter().map(|l| format!("    {l}")).collect();
    Err(fail(status.to_string(), output.join("\n")))
}

/// Points the `#!` lines of the scripts in `tmp/bin` at `done/bin` instead.
fn fix_shebangs(tmp: &Path, done: &Path) -> Result<(), EnvError> {
    let bin = tmp.join("bin");
    let (from, to) = (
        format!("#!{}/", bin.display()),
        format!("#!{}/", done.join("bin").display()),
    );
    let entries = std::fs::read_dir(&bin).map_err(|source| EnvError::Io {
        path: bin.clone(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if let Some(rest) = bytes.strip_prefix(from.as_bytes()) {
            let mut fixed = to.as_bytes().to_vec();
            fixed.extend_from_slice(rest);
            std::fs::write(&path, fixed).map_err(|source| EnvError::Io { path, source })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hoist-pyenv-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn requirements_come_from_requirements_txt_then_python_env_yaml() {
        let d = tempdir("reqs");
        let err = requirements(&d).unwrap_err();
        assert!(err.to_string().contains("[server] python"), "{err}");
        std::fs::write(
            d.join("python_env.yaml"),
            "python: 3.11.7\ndependencies:\n- -r requirements.txt\n- numpy==2.4.6\n",
        )
        .unwrap();
        assert_eq!(requirements(&d).unwrap(), "numpy==2.4.6\n");
        std::fs::write(d.join("requirements.txt"), "mlflow==3.17.2\n").unwrap();
        assert_eq!(requirements(&d).unwrap(), "mlflow==3.17.2\n");
        // The key is the requirements' sha256.
        assert_eq!(
            env_key(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn shebangs_follow_the_rename() {
        let d = tempdir("shebang");
        let (tmp, done) = (d.join(".tmp-x"), d.join("x"));
        std::fs::create_dir_all(tmp.join("bin")).unwrap();
        let script = format!("#!{}/bin/python\nimport sys\n", tmp.display());
        std::fs::write(tmp.join("bin/uvicorn"), script).unwrap();
        std::fs::write(tmp.join("bin/other"), "#!/bin/sh\n").unwrap();
        fix_shebangs(&tmp, &done).unwrap();
        assert_eq!(
            std::fs::read_to_string(tmp.join("bin/uvicorn")).unwrap(),
            format!("#!{}/bin/python\nimport sys\n", done.display())
        );
        assert_eq!(
            std::fs::read_to_string(tmp.join("bin/other")).unwrap(),
            "#!/bin/sh\n"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[tokio::test]
    async fn a_failed_build_names_pips_last_lines_and_leaves_nothing_behind() {
        // Real `python3 -m venv` and pip, offline: a requirement that is a missing
        // local file fails in pip, and an empty list installs no mlflow.
        let d = tempdir("build");
        let (model, envs) = (d.join("model"), d.join("envs"));
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(
            model.join("requirements.txt"),
            "./no-such-wheel-1.0-py3-none-any.whl\n",
        )
        .unwrap();
        let heard = std::sync::Mutex::new(Vec::new());
        let progress = |m: String| heard.lock().unwrap().push(m);
        let err = ensure_env(&model, &envs, Path::new("python3"), &progress)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("pip install -r requirements.txt failed"),
            "{msg}"
        );
        assert!(msg.contains("no-such-wheel"), "{msg}");
        assert!(heard.lock().unwrap()[0].contains("making a Python environment"));
        // Nothing under the final name, no temporary directory left.
        assert_eq!(std::fs::read_dir(&envs).unwrap().count(), 0);

        std::fs::write(model.join("requirements.txt"), "# nothing\n").unwrap();
        let err = ensure_env(&model, &envs, Path::new("python3"), &progress)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("importing mlflow"), "{err}");
        assert!(
            err.to_string().contains("No module named 'mlflow'"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&envs).unwrap().count(), 0);
        std::fs::remove_dir_all(d).unwrap();
    }
}
