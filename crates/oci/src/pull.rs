//! Model artifacts back out of a registry: what `hoist model pull` (a pod's init
//! container) and the daemon's deploy policy read.
//!
//! # Guarantees
//! - the manifest and the layer are checked against their digests (a tag is
//!   resolved once, and everything after is fetched by that digest);
//! - the manifest must be a hoist model artifact (`artifactType`
//!   [`MODEL_ARTIFACT_TYPE`], one [`MODEL_LAYER_MEDIA`] layer);
//! - unpacking accepts only directories and regular files under `model/`: an absolute
//!   path, a `..`, a symlink, a hard link or a device is refused and nothing is left;
//! - the files are unpacked into a temporary directory beside the destination, their
//!   package digest checked against the artifact's `dev.hoist.model.digest`
//!   annotation, and only then renamed into place: a reader never sees half a model.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::image::{MODEL_ARTIFACT_TYPE, MODEL_LAYER_MEDIA};
use crate::{Client, Error, Reference, Result};

/// The annotation holding the package digest of the model inside an artifact.
pub const ANNOTATION_MODEL_DIGEST: &str = "dev.hoist.model.digest";

/// A model artifact fetched from a registry (not unpacked yet).
#[derive(Debug, Clone)]
pub struct ModelArtifact {
    /// `REPOSITORY@sha256:…`: the artifact by digest.
    pub reference: String,
    /// The manifest's digest.
    pub digest: String,
    /// The manifest's annotations (model name, version, package digest, …).
    pub annotations: BTreeMap<String, String>,
    /// The gzipped tar layer, checked against its digest.
    pub layer: Vec<u8>,
}

impl ModelArtifact {
    /// The package digest the artifact says it holds.
    pub fn model_digest(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_MODEL_DIGEST)
            .map(String::as_str)
    }
}

/// Fetches the model artifact `reference` names (a tag is resolved to its digest).
pub fn fetch_model(client: &Client, reference: &Reference) -> Result<ModelArtifact> {
    let manifest = client.get_manifest(reference.manifest_ref())?;
    let v: Value = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| Error::Invalid(format!("{reference}: the manifest is not JSON: {e}")))?;
    if v["artifactType"] != MODEL_ARTIFACT_TYPE {
        return Err(Error::Invalid(format!(
            "{reference} is not a hoist model artifact (artifactType {}, not {MODEL_ARTIFACT_TYPE}); \
             push one with `hoist model push`",
            v["artifactType"]
        )));
    }
    let layers: Vec<&Value> = v["layers"].as_array().into_iter().flatten().collect();
    let [layer] = layers.as_slice() else {
        return Err(Error::Invalid(format!(
            "{reference}: a model artifact has one layer, not {}",
            layers.len()
        )));
    };
    if layer["mediaType"] != MODEL_LAYER_MEDIA {
        return Err(Error::Invalid(format!(
            "{reference}: the layer's media type is {}, not {MODEL_LAYER_MEDIA}",
            layer["mediaType"]
        )));
    }
    let digest = layer["digest"].as_str().unwrap_or_default();
    if !digest.starts_with("sha256:") {
        return Err(Error::Invalid(format!(
            "{reference}: the layer has no sha256 digest"
        )));
    }
    let bytes = client.get_blob(digest)?;
    let annotations = v["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect();
    Ok(ModelArtifact {
        reference: format!("{}@{}", reference.name(), manifest.digest),
        digest: manifest.digest,
        annotations,
        layer: bytes,
    })
}

/// Unpacks `artifact` into `out` (which must not exist, or be an empty directory),
/// atomically, after checking the files' package digest against the artifact's.
/// Returns that digest.
pub fn unpack_model(artifact: &ModelArtifact, out: &Path) -> Result<String> {
    let expected = artifact.model_digest().ok_or_else(|| {
        Error::Invalid(format!(
            "{} names no model digest (annotation {ANNOTATION_MODEL_DIGEST})",
            artifact.reference
        ))
    })?;
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(Error::Invalid(format!(
                "{} exists and is not an empty directory",
                out.display()
            )));
        }
    }
    let name = out
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{} is not a directory name", out.display())))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(Error::io(format!("creating {}", parent.display())))?;
    let tmp = parent.join(format!(
        ".{}.pull-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = unpack_into(&artifact.layer, &tmp).and_then(|()| {
        let found = package_digest(&tmp)?;
        if found != expected {
            return Err(Error::DigestMismatch {
                what: format!("the model in {}", artifact.reference),
                expected: expected.to_string(),
                found,
            });
        }
        if out.exists() {
            std::fs::remove_dir(out).map_err(Error::io(format!("replacing {}", out.display())))?;
        }
        std::fs::rename(&tmp, out).map_err(Error::io(format!(
            "moving the model into {}",
            out.display()
        )))?;
        Ok(found)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// The package digest of an unpacked directory; a package registered as a bare
/// `.onnx` file is identified by that file's digest.
fn package_digest(dir: &Path) -> Result<String> {
    let d = hoist_types::digest::digest_path(dir)
        .map_err(Error::io(format!("hashing {}", dir.display())))?;
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(format!("reading {}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    if let [only] = entries.as_slice()
        && only.is_file()
        && only.extension().is_some_and(|e| e == "onnx")
    {
        let file = hoist_types::digest::digest_path(only)
            .map_err(Error::io(format!("hashing {}", only.display())))?;
        return Ok(file);
    }
    Ok(d)
}

/// The entries of the layer under `model/`, written below `dir` (created). Anything
/// but a plain directory or file, or a path leaving `model/`, is refused.
fn unpack_into(layer: &[u8], dir: &Path) -> Result<()> {
    let invalid = |why: String| Error::Invalid(format!("the model layer is refused: {why}"));
    std::fs::create_dir(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    let entries = archive
        .entries()
        .map_err(|e| invalid(format!("not a tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(format!("not a tar: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| invalid(format!("a path is not valid: {e}")))?
            .into_owned();
        let mut rel = PathBuf::new();
        for (i, c) in raw.components().enumerate() {
            match c {
                Component::Normal(s) if i == 0 && s == "model" => {}
                Component::Normal(s) if i > 0 => rel.push(s),
                Component::CurDir if i > 0 => {}
                _ => {
                    return Err(invalid(format!(
                        "`{}` is not a relative path under model/",
                        raw.display()
                    )));
                }
            }
        }
        let kind = entry.header().entry_type();
        let dest = dir.join(&rel);
        if kind.is_dir() {
            std::fs::create_dir_all(&dest)
                .map_err(Error::io(format!("creating {}", dest.display())))?;
        } else if kind.is_file() {
            if rel.as_os_str().is_empty() {
                return Err(invalid("model/ is a file".into()));
            }
            if let Some(p) = dest.parent() {
                std::fs::create_dir_all(p)
                    .map_err(Error::io(format!("creating {}", p.display())))?;
            }
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| invalid(format!("reading `{}`: {e}", raw.display())))?;
            write_new(&dest, &bytes, entry.header().mode().unwrap_or(0o644))?;
        } else {
            return Err(invalid(format!(
                "`{}` is a {:?}, not a file or directory (links are not allowed)",
                raw.display(),
                kind
            )));
        }
    }
    Ok(())
}

/// Writes a new file (never through an existing one or a link) with `mode`'s
/// execute bit kept.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(Error::io(format!("writing {}", path.display())))?;
    f.write_all(bytes)
        .map_err(Error::io(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let raw = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        gz.finish().unwrap()
    }

    fn header(path: &str, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        // set_path refuses `..` and absolute paths: write the raw name, as an
        // attacker's tar would.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    fn artifact(layer: Vec<u8>, digest: &str) -> ModelArtifact {
        ModelArtifact {
            reference: "127.0.0.1:5000/m@sha256:00".into(),
            digest: "sha256:00".into(),
            annotations: BTreeMap::from([(ANNOTATION_MODEL_DIGEST.into(), digest.into())]),
            layer,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hoist-oci-pull-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_model_layer_unpacks_atomically_and_its_digest_is_checked() {
        let mut l = crate::LayerBuilder::new(5).media_type(MODEL_LAYER_MEDIA);
        l.bytes("model/MLmodel", b"flavors: {}\n".to_vec(), false)
            .unwrap();
        l.bytes("model/sub/x.bin", vec![1, 2, 3], false).unwrap();
        let layer = l.build().unwrap().blob.bytes;
        let d = scratch("ok");
        let src = d.join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("MLmodel"), b"flavors: {}\n").unwrap();
        std::fs::write(src.join("sub/x.bin"), [1, 2, 3]).unwrap();
        let want = hoist_types::digest::digest_path(&src).unwrap();

        let out = d.join("out");
        assert_eq!(
            unpack_model(&artifact(layer.clone(), &want), &out).unwrap(),
            want
        );
        assert_eq!(std::fs::read(out.join("sub/x.bin")).unwrap(), [1, 2, 3]);
        // Not again over a model.
        let e = unpack_model(&artifact(layer.clone(), &want), &out).unwrap_err();
        assert!(e.to_string().contains("not an empty directory"), "{e}");

        let other = d.join("other");
        let e = unpack_model(
            &artifact(layer, &format!("sha256:{}", "0".repeat(64))),
            &other,
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 4, "{e}");
        assert!(!other.exists());
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert_eq!(left.len(), 2, "no temporary directory is left: {left:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn traversal_absolute_paths_and_links_are_refused_and_nothing_is_left() {
        let d = scratch("bad");
        for (path, kind) in [
            ("model/../../escape", tar::EntryType::Regular),
            ("/etc/passwd", tar::EntryType::Regular),
            ("other/file", tar::EntryType::Regular),
            ("model/link", tar::EntryType::Symlink),
            ("model/hard", tar::EntryType::Link),
            ("model/dev", tar::EntryType::Char),
        ] {
            let layer = tar_gz(|b| {
                let h = header(path, kind, if kind.is_file() { 1 } else { 0 });
                let data: &[u8] = if kind.is_file() { b"x" } else { b"" };
                b.append(&h, data).unwrap();
            });
            let out = d.join("out");
            let e = unpack_model(&artifact(layer, "sha256:0"), &out).unwrap_err();
            assert!(e.to_string().contains("refused"), "{path}: {e}");
            assert!(!out.exists(), "{path}");
            assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "{path}");
        }
        assert!(!d.parent().unwrap().join("escape").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
