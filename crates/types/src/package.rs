//! A model package is closed: every file it names resolves inside it.
//!
//! [`check_package`] is the one rule every entry point applies (hoist-server load and
//! reload, `hoist model register`, every registry fetch):
//!
//! - Every path the `MLmodel` names (`flavors.*.data`, `model_path`, `code`, `env`,
//!   `pickled_model`, `python_model`, `artifacts.*.path`, …, and
//!   `saved_input_example_info.artifact_path` / `serving_input_path`) and every
//!   external-data `location` inside the served `.onnx` file must be a relative path
//!   without `..`, and must resolve (after following symlinks) inside the package
//!   directory. Absolute paths, `..` and symlinks that leave the package are refused.
//! - The tree itself holds only directories, regular files, and symlinks to regular
//!   files inside the package (followed: the link's name is hashed with the target's
//!   content). A symlink to a directory, a dangling symlink, a symlink leaving the
//!   package, a FIFO, socket or device is refused (see [`crate::collect_files`]), so
//!   the digest covers exactly the files a runtime can read.
//! - A bare `.onnx` file is a package of one file: it may not use external data.

use std::path::{Component, Path, PathBuf};

use crate::onnx::{self, ScanError};

/// The files of a checked package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFiles {
    /// The package directory, canonical (for a bare `.onnx` file, the file itself).
    pub root: PathBuf,
    /// The `.onnx` file to serve: the onnx flavor's `data` under [`root`](Self::root),
    /// or the bare file. Runtimes resolve external data next to this path, exactly
    /// as it was checked. `None` for a directory without an onnx flavor.
    pub onnx: Option<PathBuf>,
    /// `saved_input_example_info.artifact_path` under [`root`](Self::root), if the
    /// `MLmodel` has that section (inside the package if it exists; it may not).
    pub input_example: Option<PathBuf>,
    /// The external-data files of the checked `.onnx` files, canonical, deduplicated.
    pub external_data: Vec<PathBuf>,
    /// `.onnx` files that are not protobuf at all ([`ScanError::Malformed`]), with
    /// the reason. They name no file because no runtime can read them: the registry
    /// stores them like any bytes, and hoist-server refuses to serve them.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Why a package is refused: the file at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageError {
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for PackageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for PackageError {}

fn err<T>(path: &Path, message: impl Into<String>) -> Result<T, PackageError> {
    Err(PackageError {
        path: path.to_path_buf(),
        message: message.into(),
    })
}

/// Keys of a flavor whose values name files or directories of the package.
const FILE_KEYS: &[&str] = &[
    "data",
    "model_path",
    "model_data",
    "model_file",
    "pickled_model",
    "python_model",
    "code",
    "env",
    "conda_env",
    "saved_model_dir",
];

/// Checks that the package at `path` (an MLflow model directory, any directory of
/// files, or a single file) is closed; see the module documentation.
///
/// A directory without an `MLmodel` (the registry accepts those) has every `.onnx`
/// file in it scanned for external data.
pub fn check_package(path: &Path) -> Result<PackageFiles, PackageError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return err(path, "does not exist");
        }
        Err(e) => return err(path, e.to_string()),
    };
    let root = path.canonicalize().or_else(|e| err(path, e.to_string()))?;
    if !meta.is_dir() {
        if !meta.is_file() {
            return err(path, "is neither a directory nor a regular file");
        }
        let mut files = PackageFiles {
            root: root.clone(),
            onnx: None,
            input_example: None,
            external_data: Vec::new(),
            unreadable: Vec::new(),
        };
        if root.extension().and_then(|e| e.to_str()) == Some("onnx") {
            let locations = scan(&root, &mut files)?;
            if let Some(loc) = locations.first() {
                return err(
                    path,
                    format!(
                        "the model keeps tensor data in the external file '{loc}', but a \
                         single .onnx file is a package of one file: package the model \
                         and its external data as a directory"
                    ),
                );
            }
            files.onnx = Some(root);
        }
        return Ok(files);
    }

    // The tree: only files, directories and symlinks to files inside it.
    let mut rels = Vec::new();
    crate::collect_files(&root, &root, &mut rels).or_else(|e| err(path, e.to_string()))?;

    let mut files = PackageFiles {
        root: root.clone(),
        onnx: None,
        input_example: None,
        external_data: Vec::new(),
        unreadable: Vec::new(),
    };
    let mlmodel = root.join("MLmodel");
    if mlmodel.is_file() {
        check_mlmodel(&root, &mlmodel, &mut files)?;
        if let Some(onnx) = files.onnx.clone() {
            check_external_data(&root, &onnx, &mut files)?;
        }
    } else {
        rels.sort();
        for rel in rels.iter().filter(|r| r.ends_with(".onnx")) {
            check_external_data(&root, &root.join(rel), &mut files)?;
        }
    }
    files.external_data.sort();
    files.external_data.dedup();
    Ok(files)
}

/// The external-data locations of `onnx`; an unreadable file is recorded and has none.
fn scan(onnx: &Path, files: &mut PackageFiles) -> Result<Vec<String>, PackageError> {
    match onnx::external_data_locations(onnx) {
        Ok(locations) => Ok(locations),
        Err(ScanError::Io(e)) => err(onnx, format!("reading: {e}")),
        Err(e @ ScanError::Malformed(_)) => {
            files.unreadable.push((onnx.to_path_buf(), e.to_string()));
            Ok(Vec::new())
        }
        Err(e) => err(onnx, e.to_string()),
    }
}

/// Checks every external-data location of `onnx` (relative to its directory, as
/// runtimes resolve them) and records the files.
fn check_external_data(
    root: &Path,
    onnx: &Path,
    files: &mut PackageFiles,
) -> Result<(), PackageError> {
    let base = onnx.parent().unwrap_or(root);
    for loc in scan(onnx, files)? {
        let what = format!("the external data location '{loc}' of a tensor");
        match resolve(root, base, &loc, true) {
            Ok(p) => files.external_data.extend(p),
            Err(why) => return err(onnx, format!("{what} is {why}")),
        }
    }
    Ok(())
}

fn check_mlmodel(
    root: &Path,
    mlmodel: &Path,
    files: &mut PackageFiles,
) -> Result<(), PackageError> {
    let text = std::fs::read_to_string(mlmodel).or_else(|e| err(mlmodel, e.to_string()))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).or_else(|e| err(mlmodel, format!("not valid YAML: {e}")))?;
    let named =
        |field: &str, value: &str, required: bool| -> Result<Option<PathBuf>, PackageError> {
            resolve(root, root, value, required)
                .or_else(|why| err(mlmodel, format!("{field} '{value}' is {why}")))
        };

    if let Some(flavors) = doc.get("flavors").and_then(|f| f.as_mapping()) {
        for (fname, flavor) in flavors {
            let fname = fname.as_str().unwrap_or("?");
            for key in FILE_KEYS {
                for (field, value) in
                    strings_under(flavor.get(*key), &format!("flavors.{fname}.{key}"))
                {
                    named(&field, &value, false)?;
                }
            }
            if let Some(artifacts) = flavor.get("artifacts").and_then(|a| a.as_mapping()) {
                for (aname, a) in artifacts {
                    let aname = aname.as_str().unwrap_or("?");
                    if let Some(p) = a.get("path").and_then(|p| p.as_str()) {
                        named(&format!("flavors.{fname}.artifacts.{aname}.path"), p, false)?;
                    }
                }
            }
        }
    }
    if let Some(onnx) = doc.get("flavors").and_then(|f| f.get("onnx")) {
        let data = match onnx.get("data") {
            None | Some(serde_yaml::Value::Null) => "model.onnx",
            Some(d) => d
                .as_str()
                .ok_or(())
                .or_else(|()| err(mlmodel, "flavors.onnx.data must be a path (a string)"))?,
        };
        named("flavors.onnx.data", data, true)?;
        // Runtimes get the path as named (no symlink resolved), so a symlinked model
        // file resolves its external data where a copy of the package would.
        files.onnx = Some(root.join(data));
    }
    if let Some(info) = doc.get("saved_input_example_info") {
        let example = info
            .get("artifact_path")
            .and_then(|p| p.as_str())
            .unwrap_or("input_example.json");
        // Checked to be inside if it exists; reading it (and its absence) is the
        // server's business.
        named("saved_input_example_info.artifact_path", example, false)?;
        files.input_example = Some(root.join(example));
        if let Some(p) = info.get("serving_input_path").and_then(|p| p.as_str()) {
            named("saved_input_example_info.serving_input_path", p, false)?;
        }
    }
    Ok(())
}

/// The strings in `v` (a string, a list or a mapping of strings), with the field
/// each came from.
fn strings_under(v: Option<&serde_yaml::Value>, field: &str) -> Vec<(String, String)> {
    use serde_yaml::Value as Y;
    match v {
        Some(Y::String(s)) => vec![(field.to_string(), s.clone())],
        Some(Y::Sequence(xs)) => xs
            .iter()
            .enumerate()
            .filter_map(|(i, x)| x.as_str().map(|s| (format!("{field}[{i}]"), s.to_string())))
            .collect(),
        Some(Y::Mapping(m)) => m
            .iter()
            .filter_map(|(k, x)| {
                let s = x.as_str()?;
                Some((
                    format!("{field}.{}", k.as_str().unwrap_or("?")),
                    s.to_string(),
                ))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Resolves `name` (as a package file names it) against `base`, a directory inside
/// `root`: `Ok(Some(canonical path))` if it is inside `root`, `Ok(None)` if it does
/// not exist and `required` is false, else `Err(why)`, phrased to follow "'x' is ".
pub fn resolve(
    root: &Path,
    base: &Path,
    name: &str,
    required: bool,
) -> Result<Option<PathBuf>, String> {
    const RULE: &str = "every file a model package names must be inside the package directory";
    if name.is_empty() {
        return Err("an empty path".into());
    }
    if name.contains('\0') {
        return Err("a path with a NUL byte".into());
    }
    let p = Path::new(name);
    let drive =
        name.len() >= 2 && name.as_bytes()[1] == b':' && name.as_bytes()[0].is_ascii_alphabetic();
    if p.is_absolute() || name.starts_with('/') || name.starts_with('\\') || drive {
        return Err(format!("an absolute path: {RULE}"));
    }
    if name.split(['/', '\\']).any(|c| c == "..")
        || p.components().any(|c| c == Component::ParentDir)
    {
        return Err(format!("a path that climbs out with '..': {RULE}"));
    }
    let joined = base.join(p);
    let canonical = match joined.canonicalize() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A dangling symlink is as bad as one that leaves: say where it points.
            if let Ok(target) = std::fs::read_link(&joined) {
                return Err(format!(
                    "a symlink to {}, which does not resolve: {RULE}",
                    target.display()
                ));
            }
            return if required {
                Err("not in the package".into())
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(format!("not resolvable: {e}")),
    };
    if !canonical.starts_with(root) {
        return Err(format!(
            "a path that resolves through a symlink to {}, outside the package directory {}: {RULE}",
            canonical.display(),
            root.display()
        ));
    }
    if required && !canonical.is_file() {
        return Err("not a regular file".into());
    }
    Ok(Some(canonical))
}
