//! Reproducible layers: the same files give the same bytes, so the same digest.
//!
//! # Guarantees
//! - entries are sorted by path, and every parent directory is written first;
//! - every entry has the same mtime (the builder's, from `SOURCE_DATE_EPOCH`),
//!   uid/gid 0 and no user or group names; modes are 0755 (directories and files
//!   with an execute bit) or 0644;
//! - the gzip header has no time, no file name and the "unknown" OS byte.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::{Blob, Error, MEDIA_LAYER_GZIP, Result, hex};

/// Where an entry's content comes from.
#[derive(Debug, Clone)]
enum Source {
    /// A directory with its mode (0755, or 01777 for `/tmp`).
    Dir(u32),
    File {
        path: PathBuf,
        executable: bool,
    },
    Bytes {
        bytes: Vec<u8>,
        executable: bool,
    },
    Symlink(String),
}

/// Collects files under their paths in the image, then writes one gzipped tar.
#[derive(Debug, Clone)]
pub struct LayerBuilder {
    /// Path in the image (no leading `/`) → content. A map, so sorted.
    entries: BTreeMap<String, Source>,
    /// The mtime of every entry (seconds since the epoch).
    mtime: u64,
    /// The media type the layer is stored under.
    media_type: String,
}

/// A finished layer: the compressed blob and the digest of the uncompressed tar
/// (the `diff_id` the image config lists).
#[derive(Debug, Clone)]
pub struct Layer {
    pub blob: Blob,
    pub diff_id: String,
}

impl LayerBuilder {
    pub fn new(mtime: u64) -> LayerBuilder {
        LayerBuilder {
            entries: BTreeMap::new(),
            mtime,
            media_type: MEDIA_LAYER_GZIP.to_string(),
        }
    }

    /// Stores the layer under another media type (a model artifact's layer).
    pub fn media_type(mut self, media_type: &str) -> LayerBuilder {
        self.media_type = media_type.to_string();
        self
    }

    fn key(dest: &str) -> Result<String> {
        let key = dest.trim_start_matches('/').trim_end_matches('/');
        if key.is_empty()
            || key
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Error::Invalid(format!("invalid path in a layer: '{dest}'")));
        }
        Ok(key.to_string())
    }

    /// Adds the file at `src` (symlinks followed) as `dest`.
    pub fn file(&mut self, dest: &str, src: &Path) -> Result<&mut Self> {
        let meta =
            std::fs::metadata(src).map_err(Error::io(format!("reading {}", src.display())))?;
        if !meta.is_file() {
            return Err(Error::Invalid(format!("{} is not a file", src.display())));
        }
        use std::os::unix::fs::PermissionsExt;
        let executable = meta.permissions().mode() & 0o111 != 0;
        self.entries.insert(
            Self::key(dest)?,
            Source::File {
                path: src.to_path_buf(),
                executable,
            },
        );
        Ok(self)
    }

    /// Adds `bytes` as the file `dest`.
    pub fn bytes(&mut self, dest: &str, bytes: Vec<u8>, executable: bool) -> Result<&mut Self> {
        self.entries
            .insert(Self::key(dest)?, Source::Bytes { bytes, executable });
        Ok(self)
    }

    /// Adds an empty directory `dest`.
    pub fn dir(&mut self, dest: &str) -> Result<&mut Self> {
        self.entries.insert(Self::key(dest)?, Source::Dir(0o755));
        Ok(self)
    }

    /// Adds an empty directory `dest` with `mode` (e.g. 0o1777 for `/tmp`).
    pub fn dir_mode(&mut self, dest: &str, mode: u32) -> Result<&mut Self> {
        self.entries.insert(Self::key(dest)?, Source::Dir(mode));
        Ok(self)
    }

    /// Adds a symbolic link `dest` → `target`.
    pub fn symlink(&mut self, dest: &str, target: &str) -> Result<&mut Self> {
        self.entries
            .insert(Self::key(dest)?, Source::Symlink(target.to_string()));
        Ok(self)
    }

    /// Adds every file under the directory `src` below `dest` (symlinks followed,
    /// so the layer holds what the tree reads as).
    pub fn tree(&mut self, dest: &str, src: &Path) -> Result<&mut Self> {
        let base = Self::key(dest)?;
        self.entries.insert(base.clone(), Source::Dir(0o755));
        let mut stack = vec![(src.to_path_buf(), base)];
        while let Some((dir, at)) = stack.pop() {
            let rd =
                std::fs::read_dir(&dir).map_err(Error::io(format!("reading {}", dir.display())))?;
            for e in rd {
                let e = e.map_err(Error::io(format!("reading {}", dir.display())))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let path = e.path();
                let dest = format!("{at}/{name}");
                if std::fs::metadata(&path)
                    .map_err(Error::io(format!("reading {}", path.display())))?
                    .is_dir()
                {
                    self.entries.insert(dest.clone(), Source::Dir(0o755));
                    stack.push((path, dest));
                } else {
                    self.file(&dest, &path)?;
                }
            }
        }
        Ok(self)
    }

    /// How many bytes of file content the layer holds (before compression).
    pub fn content_size(&self) -> u64 {
        self.entries
            .values()
            .map(|s| match s {
                Source::File { path, .. } => std::fs::metadata(path).map_or(0, |m| m.len()),
                Source::Bytes { bytes, .. } => bytes.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// Writes the tar, gzipped.
    pub fn build(&self) -> Result<Layer> {
        // Every parent directory, then every entry, in path order.
        let mut all: BTreeMap<&str, Option<&Source>> = BTreeMap::new();
        for (k, v) in &self.entries {
            let mut end = 0;
            while let Some(i) = k[end..].find('/') {
                end += i;
                all.entry(&k[..end]).or_insert(None);
                end += 1;
            }
            all.insert(k, Some(v));
        }
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(Vec::new(), flate2::Compression::new(6));
        let mut hashing = HashingWriter {
            inner: gz,
            hash: Sha256::new(),
        };
        {
            let mut tar = tar::Builder::new(&mut hashing);
            tar.mode(tar::HeaderMode::Deterministic);
            for (path, source) in &all {
                let mut h = tar::Header::new_gnu();
                h.set_mtime(self.mtime);
                h.set_uid(0);
                h.set_gid(0);
                let io = Error::io(format!("writing {path} into a layer"));
                match source.unwrap_or(&Source::Dir(0o755)) {
                    Source::Dir(mode) => {
                        h.set_entry_type(tar::EntryType::Directory);
                        h.set_mode(*mode);
                        h.set_size(0);
                        tar.append_data(&mut h, format!("{path}/"), std::io::empty())
                            .map_err(io)?;
                    }
                    Source::File {
                        path: src,
                        executable,
                    } => {
                        let f = std::fs::File::open(src)
                            .map_err(Error::io(format!("reading {}", src.display())))?;
                        let len = f
                            .metadata()
                            .map_err(Error::io(format!("reading {}", src.display())))?
                            .len();
                        h.set_entry_type(tar::EntryType::Regular);
                        h.set_mode(if *executable { 0o755 } else { 0o644 });
                        h.set_size(len);
                        tar.append_data(&mut h, path, f).map_err(io)?;
                    }
                    Source::Bytes { bytes, executable } => {
                        h.set_entry_type(tar::EntryType::Regular);
                        h.set_mode(if *executable { 0o755 } else { 0o644 });
                        h.set_size(bytes.len() as u64);
                        tar.append_data(&mut h, path, bytes.as_slice())
                            .map_err(io)?;
                    }
                    Source::Symlink(target) => {
                        h.set_entry_type(tar::EntryType::Symlink);
                        h.set_mode(0o777);
                        h.set_size(0);
                        tar.append_link(&mut h, path, target).map_err(io)?;
                    }
                }
            }
            tar.finish().map_err(Error::io("finishing a layer"))?;
        }
        let diff_id = format!("sha256:{}", hex(&hashing.hash.finalize()));
        let bytes = hashing
            .inner
            .finish()
            .map_err(Error::io("compressing a layer"))?;
        Ok(Layer {
            blob: Blob::new(&self.media_type, bytes),
            diff_id,
        })
    }
}

/// Passes writes through while hashing them (the uncompressed tar's digest).
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_files_give_the_same_digest_whatever_the_order_and_times() {
        let dir = std::env::temp_dir().join(format!("hoist-oci-layer-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/a.txt"), b"a").unwrap();
        std::fs::write(dir.join("b.bin"), b"bb").unwrap();
        let mut one = LayerBuilder::new(1_700_000_000);
        one.tree("model", &dir).unwrap();
        one.bytes("etc/x", b"x".to_vec(), false).unwrap();
        let first = one.build().unwrap();
        // Touch the files (new mtimes) and add the entries in another order.
        std::fs::write(dir.join("b.bin"), b"bb").unwrap();
        let mut two = LayerBuilder::new(1_700_000_000);
        two.bytes("etc/x", b"x".to_vec(), false).unwrap();
        two.tree("/model/", &dir).unwrap();
        let second = two.build().unwrap();
        assert_eq!(first.blob.digest, second.blob.digest);
        assert_eq!(first.diff_id, second.diff_id);

        // The tar reads back sorted, parents first, owned by root, at the fixed time.
        let gz = flate2::read::GzDecoder::new(first.blob.bytes.as_slice());
        let mut ar = tar::Archive::new(gz);
        let mut seen = vec![];
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.mtime().unwrap(), 1_700_000_000);
            seen.push(e.path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(
            seen,
            [
                "etc/",
                "etc/x",
                "model/",
                "model/b.bin",
                "model/sub/",
                "model/sub/a.txt"
            ]
        );
        // Another time is another layer.
        let mut three = LayerBuilder::new(1);
        three.bytes("etc/x", b"x".to_vec(), false).unwrap();
        three.tree("model", &dir).unwrap();
        assert_ne!(three.build().unwrap().blob.digest, first.blob.digest);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(LayerBuilder::new(0).dir("a/../b").is_err());
    }
}
