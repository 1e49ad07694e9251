//! `hoist runtime install|list`: the inference runtimes hoist-server can use.
//!
//! tract is built in. ONNX Runtime is one shared library, `libonnxruntime.so.<V>`,
//! taken from the official `onnxruntime` wheel on the Python package index (the
//! same file `pip install onnxruntime` puts on disk) and kept under
//! `HOIST_HOME/lib`, where hoist-server looks for it (`--runtime auto` prefers it).
//!
//! `install` downloads the wheel with the machine's own pip (so pip's index and
//! proxy settings apply and hoist names no host), checks the wheel's sha256 and the
//! library's against the pins below when the version is pinned (pip itself checks
//! the index's published hash of any wheel it downloads), extracts the one file,
//! checks that it loads, and moves it into place atomically: an interrupted install
//! leaves nothing behind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use crate::{CliError, Context, stdout_err};

/// A version of ONNX Runtime whose wheel and library hoist knows by digest.
struct Pin {
    version: &'static str,
    wheel: &'static str,
    wheel_sha256: &'static str,
    lib_sha256: &'static str,
}

/// The pinned releases, newest first. The first is the default and the one the
/// test command fetches (tools/fetch-onnxruntime.sh pins the same file; keep them
/// equal, see docs/runtimes.md for how to move the pin).
const PINS: &[Pin] = &[
    Pin {
        version: "1.32.0",
        wheel: "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        wheel_sha256: "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
        lib_sha256: "6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f",
    },
    Pin {
        version: "1.31.1",
        wheel: "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl",
        wheel_sha256: "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f",
        lib_sha256: "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
    },
];

/// The wheel's platform and Python tags: the library inside is the same for every
/// CPython build of one release, so one pair keeps the pinned digest stable.
const PLATFORM: &str = "manylinux_2_28_x86_64";
const PYTHON_VERSION: &str = "3.11";

/// The tract version built into hoist-server.
const TRACT_VERSION: &str = "0.23.9";

#[derive(Debug, Subcommand)]
pub enum RuntimeCmd {
    /// Install an inference runtime for hoist-server (today: ONNX Runtime)
    ///
    /// Downloads the official `onnxruntime` wheel from the Python package index with
    /// this machine's pip (its index and proxy settings apply; nothing is installed
    /// into Python), checks the wheel's and the library's sha256 against hoist's pins
    /// (for an unpinned --version, pip checks the index's published hash and hoist
    /// prints the digests it got), extracts libonnxruntime.so.<VERSION> into
    /// HOIST_HOME/lib (default ~/.hoist/lib), checks that it loads, and moves it into
    /// place atomically. Nothing is downloaded when that file is already there with
    /// the pinned digest. hoist-server (and `hoist up`'s servers) then prefer it under
    /// `--runtime auto`; ORT_DYLIB_PATH still overrides.
    Install(InstallArgs),
    /// The runtimes hoist-server can use here, and which one serves by default
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeName {
    /// ONNX Runtime's shared library, from the official wheel
    Onnxruntime,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The runtime to install
    pub runtime: RuntimeName,
    /// The release to install [default: the pinned one, see `hoist runtime list`]
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
    /// Where to put the library [default: HOIST_HOME/lib, else ~/.hoist/lib]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Download and check again even if the library is already there
    #[arg(long)]
    pub force: bool,
    /// The Python that runs pip [default: $HOIST_PYTHON, else python3]
    #[arg(long, value_name = "PYTHON")]
    pub python: Option<String>,
}

pub(crate) fn run(ctx: &Context, cmd: RuntimeCmd, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        RuntimeCmd::Install(a) => install(ctx, a, out),
        RuntimeCmd::List => list(ctx, out),
    }
}

/// What `install` did, for `--json`.
#[derive(Debug, Serialize)]
struct Installed {
    runtime: &'static str,
    version: String,
    path: PathBuf,
    sha256: String,
    wheel: Option<String>,
    wheel_sha256: Option<String>,
    /// Whether both digests were checked against hoist's pins.
    pinned: bool,
    /// False when the library was already in place and nothing was downloaded.
    downloaded: bool,
    /// Whether `--runtime auto` picks this library now (ORT_DYLIB_PATH may win).
    default: bool,
}

fn lib_dir(ctx: &Context, dir: Option<PathBuf>) -> Result<PathBuf, CliError> {
    match dir {
        Some(d) => Ok(d),
        None => Ok(ctx.home()?.join("lib")),
    }
}

fn valid_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    (2..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
    let context = context.into();
    move |source| CliError::Io { context, source }
}

fn install(ctx: &Context, a: InstallArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let RuntimeName::Onnxruntime = a.runtime;
    let version = a.version.unwrap_or_else(|| PINS[0].version.to_string());
    if !valid_version(&version) {
        return Err(CliError::Usage(format!(
            "--version '{version}' is not a release number like {}",
            PINS[0].version
        )));
    }
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        return Err(CliError::Unsupported(
            "hoist installs ONNX Runtime on Linux x86_64 only; elsewhere set ORT_DYLIB_PATH \
             to your libonnxruntime, or serve with --runtime tract"
                .into(),
        ));
    }
    let pin = PINS.iter().find(|p| p.version == version);
    let dir = lib_dir(ctx, a.dir)?;
    let lib_name = format!("libonnxruntime.so.{version}");
    let target = dir.join(&lib_name);

    if !a.force
        && let Some(pin) = pin
        && target.is_file()
        && hoist_types::digest::hash_file(&target).map_err(io(target.display().to_string()))?
            == pin.lib_sha256
    {
        return report(
            ctx,
            out,
            Installed {
                runtime: "onnxruntime",
                version,
                sha256: pin.lib_sha256.into(),
                wheel: None,
                wheel_sha256: None,
                pinned: true,
                downloaded: false,
                default: is_default(&target),
                path: target,
            },
        );
    }

    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let staging = Staging::new(&dir)?;
    let python = a
        .python
        .or_else(|| (ctx.env)("HOIST_PYTHON"))
        .unwrap_or_else(|| "python3".into());
    check_pip(&python)?;
    if !ctx.json {
        let mut err = std::io::stderr();
        let _ = writeln!(
            err,
            "downloading the onnxruntime {version} wheel ({PLATFORM}, Python {PYTHON_VERSION}) with {python} -m pip"
        );
    }
    pip_download(&python, &version, &staging.path, ctx.json)?;
    let wheel = find_wheel(&staging.path, &version)?;
    let wheel_name = file_name(&wheel);
    let wheel_sha256 =
        hoist_types::digest::hash_file(&wheel).map_err(io(format!("reading {wheel_name}")))?;
    if let Some(pin) = pin {
        if wheel_name != pin.wheel {
            return Err(CliError::PinMismatch(format!(
                "pip downloaded {wheel_name}, but hoist pins {} for onnxruntime {version}",
                pin.wheel
            )));
        }
        if wheel_sha256 != pin.wheel_sha256 {
            return Err(CliError::PinMismatch(format!(
                "{wheel_name} has sha256 {wheel_sha256}, but hoist pins {}: the index served \
                 a different file; nothing was installed",
                pin.wheel_sha256
            )));
        }
    }
    let extracted = staging.path.join(&lib_name);
    extract(
        &python,
        &wheel,
        &format!("onnxruntime/capi/{lib_name}"),
        &extracted,
    )?;
    let sha256 = hoist_types::digest::hash_file(&extracted)
        .map_err(io(format!("reading {}", extracted.display())))?;
    if let Some(pin) = pin
        && sha256 != pin.lib_sha256
    {
        return Err(CliError::PinMismatch(format!(
            "{lib_name} in {wheel_name} has sha256 {sha256}, but hoist pins {}; nothing was \
             installed",
            pin.lib_sha256
        )));
    }
    set_executable(&extracted)?;
    hoist_server::runtime::onnxruntime::check_library(&extracted).map_err(|e| {
        CliError::Unsupported(format!(
            "{lib_name} does not load on this machine ({e}); serve with --runtime tract"
        ))
    })?;
    std::fs::rename(&extracted, &target)
        .map_err(io(format!("moving {lib_name} into {}", dir.display())))?;
    drop(staging);
    report(
        ctx,
        out,
        Installed {
            runtime: "onnxruntime",
            version,
            sha256,
            wheel: Some(wheel_name),
            wheel_sha256: Some(wheel_sha256),
            pinned: pin.is_some(),
            downloaded: true,
            default: is_default(&target),
            path: target,
        },
    )
}

fn report(ctx: &Context, out: &mut dyn Write, done: Installed) -> Result<(), CliError> {
    if ctx.json {
        return ctx.print_json(out, &done);
    }
    let what = if done.downloaded {
        "installed"
    } else {
        "already installed"
    };
    let checked = if done.pinned {
        "matches hoist's pin"
    } else {
        "not pinned by this hoist: pip checked the index's published hash"
    };
    writeln!(
        out,
        "ONNX Runtime {} {what}: {}\n  sha256 {} ({checked})",
        done.version,
        done.path.display(),
        done.sha256
    )
    .map_err(stdout_err)?;
    let note = if done.default {
        "hoist-server uses it under --runtime auto (the default)".to_string()
    } else {
        match hoist_server::runtime::onnxruntime::find_library(None) {
            Ok(p) => format!(
                "hoist-server uses {} by default (ORT_DYLIB_PATH or an earlier directory wins); \
                 pass --onnxruntime {} to use this one",
                p.display(),
                done.path.display()
            ),
            Err(_) => format!(
                "hoist-server does not look in {}: set ORT_DYLIB_PATH={} or HOIST_HOME",
                done.path.parent().unwrap_or(Path::new("")).display(),
                done.path.display()
            ),
        }
    };
    writeln!(out, "  {note}").map_err(stdout_err)
}

/// Whether `--runtime auto` would load `lib`.
fn is_default(lib: &Path) -> bool {
    match hoist_server::runtime::onnxruntime::find_library(None) {
        Ok(p) => same_file(&p, lib),
        Err(_) => false,
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A scratch directory beside the destination (so the final rename is atomic),
/// removed on drop whatever happened.
struct Staging {
    path: PathBuf,
}

impl Staging {
    fn new(dir: &Path) -> Result<Self, CliError> {
        let path = dir.join(format!(".install-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).map_err(io(format!("creating {}", path.display())))?;
        Ok(Staging { path })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn check_pip(python: &str) -> Result<(), CliError> {
    let ok = Command::new(python)
        .args(["-m", "pip", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success());
    match ok {
        Ok(true) => Ok(()),
        Ok(false) => Err(CliError::Unsupported(format!(
            "{python} has no pip (on Debian: apt-get install python3-pip); hoist uses it only to \
             download the onnxruntime wheel, or set ORT_DYLIB_PATH to a libonnxruntime you have"
        ))),
        Err(e) => Err(CliError::Unsupported(format!(
            "cannot run {python} ({e}): Python with pip is needed to download the onnxruntime \
             wheel (--python or HOIST_PYTHON names another), or set ORT_DYLIB_PATH to a \
             libonnxruntime you have"
        ))),
    }
}

/// Downloads exactly one wheel. pip's own progress goes to stderr (a bar on a
/// terminal), never to stdout, which stays for the result.
fn pip_download(python: &str, version: &str, dest: &Path, quiet: bool) -> Result<(), CliError> {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args([
            "--disable-pip-version-check",
            "--python-version",
            PYTHON_VERSION,
        ])
        .args(["--platform", PLATFORM, "-d"])
        .arg(dest)
        .arg(format!("onnxruntime=={version}"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    if quiet {
        cmd.arg("--quiet").stdout(Stdio::null());
    } else {
        cmd.stdout(std::io::stderr());
    }
    let output = cmd
        .spawn()
        .and_then(|c| c.wait_with_output())
        .map_err(io(format!("running {python} -m pip download")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(4)..].join("\n  ");
    if stderr.contains("No matching distribution") || stderr.contains("Could not find a version") {
        return Err(CliError::NotFound(format!(
            "the package index has no onnxruntime {version} wheel for {PLATFORM} (see `{python} \
             -m pip index versions onnxruntime`):\n  {tail}"
        )));
    }
    Err(CliError::Download(format!(
        "pip could not download onnxruntime=={version}:\n  {tail}"
    )))
}

fn find_wheel(dir: &Path, version: &str) -> Result<PathBuf, CliError> {
    let prefix = format!("onnxruntime-{version}-");
    let mut wheels: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(format!("reading {}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = file_name(p);
            n.starts_with(&prefix) && n.ends_with(".whl")
        })
        .collect();
    match wheels.len() {
        1 => Ok(wheels.remove(0)),
        n => Err(CliError::Download(format!(
            "expected one onnxruntime {version} wheel from pip, got {n}"
        ))),
    }
}

/// Extracts one member of the wheel (a zip file) with Python's zipfile: the Python
/// that ran pip is there anyway, and hoist needs no zip reader of its own.
fn extract(python: &str, wheel: &Path, member: &str, to: &Path) -> Result<(), CliError> {
    const SCRIPT: &str = "import shutil, sys, zipfile\n\
        with zipfile.ZipFile(sys.argv[1]) as z:\n\
        \x20   names = set(z.namelist())\n\
        \x20   if sys.argv[2] not in names:\n\
        \x20       sys.exit('the wheel has no ' + sys.argv[2])\n\
        \x20   with z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n\
        \x20       shutil.copyfileobj(src, dst)\n";
    let output = Command::new(python)
        .args(["-c", SCRIPT])
        .arg(wheel)
        .arg(member)
        .arg(to)
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("running {python} to extract {member}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(CliError::Download(format!(
            "could not extract {member} from {}: {}",
            file_name(wheel),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

fn set_executable(p: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
        .map_err(io(format!("setting the mode of {}", p.display())))
}

/// One row of `hoist runtime list`.
#[derive(Debug, Serialize)]
struct Listed {
    runtime: &'static str,
    version: String,
    /// `built in` for tract, else where the library is.
    path: Option<PathBuf>,
    /// Whether `--runtime auto` serves with it.
    default: bool,
    /// Whether hoist pins this version's digests (and the file matches them).
    pinned: bool,
}

fn list(ctx: &Context, out: &mut dyn Write) -> Result<(), CliError> {
    let found = hoist_server::runtime::onnxruntime::find_library(None).ok();
    let mut rows = Vec::new();
    let mut seen = Vec::new();
    let mut add = |path: PathBuf, rows: &mut Vec<Listed>| {
        if seen.iter().any(|s: &PathBuf| same_file(s, &path)) {
            return;
        }
        let name = file_name(&path);
        let version = name
            .strip_prefix("libonnxruntime.so.")
            .unwrap_or("unknown")
            .to_string();
        let pinned = PINS.iter().any(|p| {
            p.version == version
                && hoist_types::digest::hash_file(&path).is_ok_and(|h| h == p.lib_sha256)
        });
        let default = found.as_deref().is_some_and(|f| same_file(f, &path));
        seen.push(path.clone());
        rows.push(Listed {
            runtime: "onnxruntime",
            version,
            path: Some(path),
            default,
            pinned,
        });
    };
    if let Some(f) = &found {
        add(f.clone(), &mut rows);
    }
    let dir = ctx.home()?.join("lib");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut libs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| file_name(p).starts_with("libonnxruntime.so") && p.is_file())
            .collect();
        libs.sort();
        for p in libs {
            add(p, &mut rows);
        }
    }
    rows.push(Listed {
        runtime: "tract",
        version: TRACT_VERSION.into(),
        path: None,
        default: found.is_none(),
        pinned: true,
    });
    if ctx.json {
        return ctx.print_json(out, &rows);
    }
    writeln!(
        out,
        "{:<12} {:<9} {:<8} PATH",
        "RUNTIME", "VERSION", "DEFAULT"
    )
    .map_err(stdout_err)?;
    for r in &rows {
        let path = r
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built in (pure Rust)".into());
        let default = if r.default { "yes" } else { "" };
        writeln!(
            out,
            "{:<12} {:<9} {:<8} {path}",
            r.runtime, r.version, default
        )
        .map_err(stdout_err)?;
    }
    if found.is_none() {
        writeln!(
            out,
            "\nNo ONNX Runtime library found: hoist-server serves with tract. `hoist runtime \
             install onnxruntime` installs ONNX Runtime {} (for models tract cannot load).",
            PINS[0].version
        )
        .map_err(stdout_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_release_numbers() {
        assert!(valid_version("1.31.1"));
        assert!(valid_version("1.20"));
        for bad in [
            "",
            "1",
            "1..2",
            "1.x.0",
            "1.2.3.4.5",
            "==1.2",
            "1.2; rm",
            "1.2 ",
        ] {
            assert!(!valid_version(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_default_pin_matches_the_test_commands_script() {
        let script = include_str!("../../../tools/fetch-onnxruntime.sh");
        let pin = &PINS[0];
        assert!(script.contains(&format!("VERSION={}\n", pin.version)));
        assert!(script.contains(&format!("WHEEL={}\n", pin.wheel)));
        assert!(script.contains(&format!("WHEEL_SHA256={}\n", pin.wheel_sha256)));
        assert!(script.contains(&format!("LIB_SHA256={}\n", pin.lib_sha256)));
    }

    #[test]
    fn the_tract_version_is_the_one_built_in() {
        let manifest = include_str!("../../../Cargo.toml");
        assert!(manifest.contains(&format!("tract-onnx = \"{TRACT_VERSION}\"")));
    }
}
