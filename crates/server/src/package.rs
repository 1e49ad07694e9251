//! Model packages: an MLflow model directory (`MLmodel` with the `onnx` flavor) or a
//! bare `.onnx` file, read into what the server needs to know about it.
//!
//! A package is identified by name, version and a sha256 digest of its files. This
//! module reads files and nothing else: it neither loads the model into a runtime
//! nor serves anything.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// What a package says about itself.
#[derive(Debug, Clone)]
pub struct Package {
    /// The name clients use in `/v2/models/{name}`.
    pub name: String,
    /// The version clients see; `/v2/models/{name}/versions/{version}`.
    pub version: String,
    /// The path the package was loaded from (directory or file), watched for changes.
    pub source: PathBuf,
    /// The `.onnx` file inside the package.
    pub onnx_path: PathBuf,
    /// `sha256:<hex>` over the package's files (see [`digest_path`]).
    pub digest: String,
    /// The MLflow input example, if the package has one; checked on every (re)load.
    pub input_example: Option<Value>,
    /// Column names of a column-based MLflow signature, used for dataframe inputs.
    pub columns: Option<Vec<String>>,
    /// The MLflow signature's inputs are tensor specs: MLflow then turns every request
    /// into tensors, so a dataframe request is answered like any other (not as records).
    pub tensor_signature: bool,
    /// Class names, from `metadata.hoist.labels` in `MLmodel`.
    pub labels: Option<Vec<String>>,
    /// Image preprocessing, from `metadata.hoist.image` in `MLmodel`.
    pub image: Option<ImageSpec>,
}

/// How `/predict-image` turns pixels into the model's input.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSpec {
    /// `NCHW` (channels first, as PyTorch exports) or `NHWC`.
    pub channels_first: bool,
    /// Multiplied with each 0–255 pixel value before mean and std.
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            channels_first: true,
            scale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }
}

/// Why a package could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("model path {0} does not exist")]
    Missing(PathBuf),
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn invalid(path: &Path, message: impl Into<String>) -> PackageError {
    PackageError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
    move |source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Package {
    /// Reads the package at `path`. `name` and `version` override what the path implies
    /// (the directory or file name, and version `1`).
    pub fn read(
        path: &Path,
        name: Option<&str>,
        version: Option<&str>,
    ) -> Result<Package, PackageError> {
        if !path.exists() {
            return Err(PackageError::Missing(path.to_path_buf()));
        }
        // The package is closed: every file it names, and every external-data file of
        // its model, is inside it (symlinks followed). The runtime is handed the
        // `.onnx` path exactly as checked here.
        let files = hoist_types::check_package(path).map_err(|e| PackageError::Invalid {
            path: e.path,
            message: e.message,
        })?;
        // A model file that is not protobuf names no file, but neither could we tell
        // which files a runtime's parser would read from it: never handed to one.
        if let Some((p, why)) = files.unreadable.first() {
            return Err(invalid(p, why.clone()));
        }
        let default_name = path
            .canonicalize()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into());
        let mut pkg = Package {
            name: name.map(str::to_string).unwrap_or(default_name),
            version: version.unwrap_or("1").to_string(),
            source: path.to_path_buf(),
            onnx_path: path.to_path_buf(),
            digest: digest_path(path)?,
            input_example: None,
            columns: None,
            tensor_signature: false,
            labels: None,
            image: None,
        };
        if path.is_dir() {
            pkg.read_mlmodel(path, &files)?;
        } else if path.extension().and_then(|e| e.to_str()) != Some("onnx") {
            return Err(invalid(
                path,
                "expected an MLflow model directory (with an MLmodel file) or a .onnx file",
            ));
        }
        Ok(pkg)
    }

    fn read_mlmodel(
        &mut self,
        dir: &Path,
        files: &hoist_types::PackageFiles,
    ) -> Result<(), PackageError> {
        let mlmodel_path = dir.join("MLmodel");
        let text = std::fs::read_to_string(&mlmodel_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                invalid(dir, "not an MLflow model directory: no MLmodel file")
            } else {
                io(&mlmodel_path)(e)
            }
        })?;
        let doc: serde_yaml::Value = serde_yaml::from_str(&text)
            .map_err(|e| invalid(&mlmodel_path, format!("not valid YAML: {e}")))?;
        doc.get("flavors")
            .and_then(|f| f.get("onnx"))
            .ok_or_else(|| {
                let flavors: Vec<String> = doc
                    .get("flavors")
                    .and_then(|f| f.as_mapping())
                    .map(|m| {
                        m.keys()
                            .filter_map(|k| k.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                invalid(
                    &mlmodel_path,
                    format!(
                        "hoist-server serves the onnx flavor; this model has flavors [{}]",
                        flavors.join(", ")
                    ),
                )
            })?;
        // check_package found the onnx flavor's file, inside the package.
        self.onnx_path = files
            .onnx
            .clone()
            .ok_or_else(|| invalid(&mlmodel_path, "the onnx flavor names no model file"))?;

        if let Some(p) = &files.input_example {
            let text = std::fs::read_to_string(p).map_err(io(p))?;
            let example: Value = serde_json::from_str(&text)
                .map_err(|e| invalid(p, format!("input example is not JSON: {e}")))?;
            self.input_example = Some(example);
        }

        if let Some(inputs) = doc
            .get("signature")
            .and_then(|s| s.get("inputs"))
            .and_then(|s| s.as_str())
        {
            let specs: Vec<Value> = serde_json::from_str(inputs).map_err(|e| {
                invalid(&mlmodel_path, format!("signature inputs are not JSON: {e}"))
            })?;
            let column_based = specs
                .iter()
                .all(|s| s.get("type").and_then(Value::as_str) != Some("tensor"));
            self.tensor_signature = !specs.is_empty() && !column_based;
            if column_based {
                let names: Option<Vec<String>> = specs
                    .iter()
                    .map(|s| s.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect();
                self.columns = names;
            }
        }

        if let Some(hoist) = doc.get("metadata").and_then(|m| m.get("hoist")) {
            let hoist: Value = serde_json::to_value(hoist)
                .map_err(|e| invalid(&mlmodel_path, format!("metadata.hoist: {e}")))?;
            if let Some(labels) = hoist.get("labels") {
                let labels: Vec<String> = serde_json::from_value(labels.clone()).map_err(|_| {
                    invalid(
                        &mlmodel_path,
                        "metadata.hoist.labels must be a list of strings",
                    )
                })?;
                self.labels = Some(labels);
            }
            if let Some(image) = hoist.get("image") {
                self.image =
                    Some(parse_image_spec(image).map_err(|m| {
                        invalid(&mlmodel_path, format!("metadata.hoist.image: {m}"))
                    })?);
            }
        }
        Ok(())
    }
}

fn parse_image_spec(v: &Value) -> Result<ImageSpec, String> {
    let mut spec = ImageSpec::default();
    if let Some(layout) = v.get("layout") {
        spec.channels_first = match layout.as_str() {
            Some("NCHW") => true,
            Some("NHWC") => false,
            _ => return Err(format!("layout must be NCHW or NHWC, not {layout}")),
        };
    }
    if let Some(scale) = v.get("scale") {
        spec.scale = scale.as_f64().ok_or("scale must be a number")? as f32;
    }
    let triple = |key: &str| -> Result<Option<[f32; 3]>, String> {
        match v.get(key) {
            None => Ok(None),
            Some(x) => {
                let xs: Vec<f32> = serde_json::from_value(x.clone())
                    .map_err(|_| format!("{key} must be three numbers"))?;
                let arr: [f32; 3] = xs
                    .try_into()
                    .map_err(|_| format!("{key} must be three numbers"))?;
                Ok(Some(arr))
            }
        }
    };
    if let Some(mean) = triple("mean")? {
        spec.mean = mean;
    }
    if let Some(std) = triple("std")? {
        if std.contains(&0.0) {
            return Err("std must not contain 0".into());
        }
        spec.std = std;
    }
    Ok(spec)
}

/// The package digest (`sha256:<hex>`, see [`hoist_types`]).
pub fn digest_path(path: &Path) -> Result<String, PackageError> {
    hoist_types::digest_path(path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hoist-pkg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_directory_without_mlmodel_is_refused_clearly() {
        let d = tmpdir("nomlmodel");
        let err = Package::read(&d, None, None).unwrap_err().to_string();
        assert!(err.contains("no MLmodel file"), "{err}");
        let err = Package::read(&d.join("nope"), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn a_non_onnx_flavor_is_named_in_the_error() {
        let d = tmpdir("sklearn");
        std::fs::write(
            d.join("MLmodel"),
            "flavors:\n  sklearn: {pickled_model: m.pkl}\n",
        )
        .unwrap();
        let err = Package::read(&d, None, None).unwrap_err().to_string();
        assert!(err.contains("flavors [sklearn]"), "{err}");
    }

    #[test]
    fn image_metadata_is_validated() {
        let spec = parse_image_spec(&serde_json::json!({"layout": "NHWC", "std": [0.5, 0.5, 0.5]}))
            .unwrap();
        assert!(!spec.channels_first);
        assert_eq!(spec.std, [0.5; 3]);
        assert!(parse_image_spec(&serde_json::json!({"layout": "CHW"})).is_err());
        assert!(parse_image_spec(&serde_json::json!({"std": [1, 0, 1]})).is_err());
    }
}
