//! The content-addressed artifact store: model packages kept by their digest, and
//! checked against it every time they are used.
//!
//! Layout under the store's directory:
//! - `sha256/<hex>/` — one entry per package, holding exactly the package's files. A
//!   directory package keeps its tree; a single-file package (a bare `.onnx`) is the one
//!   file inside the entry, under its original name.
//! - `tmp/` — copies in progress. An entry appears under `sha256/` only by a `rename`
//!   of a complete, hashed copy, so a reader never sees half an entry, and a writer
//!   killed mid-copy leaves only litter in `tmp/` (swept by [`ArtifactStore::open`]
//!   once it is old).
//!
//! This module owns storing and verifying bytes. It knows nothing of model names or
//! versions (the registries do), and it never repairs: an entry whose files no longer
//! match its digest is a [`Error::DigestMismatch`], never a silent re-copy or re-download.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::{Error, Result};

/// How old a `tmp/` leftover must be before `open` removes it: old enough that no
/// live writer (in any process) can still be copying into it.
const STALE_TMP: Duration = Duration::from_secs(24 * 3600);

/// A content-addressed store of model packages on the local disk.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    /// The store's directory; entries live in `root/sha256/<hex>`.
    root: PathBuf,
}

impl ArtifactStore {
    /// Opens (creating if needed) the store at `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<ArtifactStore> {
        let root = dir.as_ref().to_path_buf();
        for sub in ["sha256", "tmp"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_err(format!("creating {}", p.display())))?;
        }
        let store = ArtifactStore { root };
        store.sweep_tmp();
        Ok(store)
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stores the package at `src` (a directory or a single file) and returns its
    /// digest (`sha256:<hex>`, as [`hoist_types::digest_path`] computes it).
    ///
    /// # Guarantees
    /// - The digest is computed over the *copy* in the store, so what is stored is
    ///   exactly what the digest names, even if `src` changes while being copied.
    /// - The entry appears atomically (a rename) and its files are synced first.
    /// - Idempotent: if the entry already exists it is verified and kept; if it no
    ///   longer matches its digest the call fails with [`Error::DigestMismatch`]
    ///   rather than overwrite evidence of corruption.
    pub fn put_dir(&self, src: impl AsRef<Path>) -> Result<String> {
        let src = src.as_ref();
        let meta = fs::metadata(src).map_err(io_err(format!("reading {}", src.display())))?;
        let tmp = self.new_tmp_dir()?;
        let result = (|| {
            // Hash what was copied, as the kind of package the source is.
            let hashed = if meta.is_dir() {
                let n = copy_tree(src, &tmp, true)?;
                if n == 0 {
                    return Err(Error::Invalid(format!(
                        "{} contains no files: a model package needs at least one",
                        src.display()
                    )));
                }
                tmp.clone()
            } else {
                let file_name = src
                    .file_name()
                    .ok_or_else(|| Error::Invalid(format!("{} has no file name", src.display())))?;
                let to = tmp.join(file_name);
                copy_file(src, &to, true)?;
                to
            };
            let digest = hoist_types::digest_path(&hashed)
                .map_err(io_err(format!("hashing {}", hashed.display())))?;
            let dest = self.entry_path(&digest)?;
            sync_dir(&tmp);
            match fs::rename(&tmp, &dest) {
                Ok(()) => {
                    sync_dir(&self.root.join("sha256"));
                    tracing::debug!(%digest, "stored artifact");
                    Ok(digest)
                }
                // Another writer stored the same package first (rename onto a
                // non-empty directory fails): keep theirs, after checking it.
                Err(_) if dest.is_dir() => {
                    verify_entry(&dest, &digest)?;
                    Ok(digest)
                }
                Err(e) => Err(Error::Io {
                    context: format!("moving artifact into {}", dest.display()),
                    source: e,
                }),
            }
        })();
        if tmp.exists() {
            let _ = remove_tree(&tmp);
        }
        result
    }

    /// Stores `src` like [`put_dir`](Self::put_dir) and fails with
    /// [`Error::DigestMismatch`] unless its digest is `expected`: for files fetched
    /// from elsewhere whose digest was recorded at registration.
    pub fn put_dir_expecting(&self, src: impl AsRef<Path>, expected: &str) -> Result<String> {
        let src = src.as_ref();
        let found = self.put_dir(src)?;
        if found != expected {
            return Err(Error::DigestMismatch {
                what: src.display().to_string(),
                expected: expected.to_string(),
                found,
            });
        }
        Ok(found)
    }

    /// Whether an entry for `digest` exists (not verified).
    pub fn contains(&self, digest: &str) -> bool {
        self.entry_path(digest).is_ok_and(|p| p.is_dir())
    }

    /// The directory holding the package `digest`, after checking that its files
    /// still hash to `digest`. Called on every use, so corruption on disk is found
    /// before a model is served, never after.
    pub fn get(&self, digest: &str) -> Result<PathBuf> {
        let dir = self.entry_path(digest)?;
        if !dir.is_dir() {
            return Err(Error::Store(format!(
                "artifact {digest} is not in the store at {}",
                self.root.display()
            )));
        }
        verify_entry(&dir, digest)?;
        Ok(dir)
    }

    /// Where the entry for `digest` is or would be, unverified. For diagnostics and
    /// tests; use [`get`](Self::get) to read a package.
    pub fn entry_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                Error::Invalid(format!("'{digest}' is not a digest (sha256:<64 hex>)"))
            })?;
        Ok(self.root.join("sha256").join(hex.to_ascii_lowercase()))
    }

    /// A fresh, uniquely named directory under `tmp/` (unique across threads and
    /// processes sharing the store).
    fn new_tmp_dir(&self) -> Result<PathBuf> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = self
            .root
            .join("tmp")
            .join(format!("{}-{n}-{nanos}", std::process::id()));
        fs::create_dir(&p).map_err(io_err(format!("creating {}", p.display())))?;
        Ok(p)
    }

    /// Removes `tmp/` leftovers of writers that died long ago. Best effort: a
    /// failure here never stops the store from opening.
    fn sweep_tmp(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_TMP);
            if old {
                let _ = remove_tree(&e.path());
            }
        }
    }
}

/// Checks that the files in `dir` are the package `expected`, with the store's rule
/// for single-file packages: a directory that holds exactly one regular file at its
/// top level matches if that file's digest is `expected`. Both checks are sha256
/// comparisons, so neither can pass for the wrong bytes.
///
/// Used by the store on every [`ArtifactStore::get`], and by callers that copy a
/// package out of the store and want to check the copy.
pub fn verify_dir(dir: &Path, expected: &str) -> Result<()> {
    verify_entry(dir, expected)
}

/// The digest of a package held in `dir` (see [`verify_dir`] for single files).
fn package_digest(dir: &Path) -> Result<String> {
    if let Some(file) = single_file(dir)? {
        return hoist_types::digest_path(&file)
            .map_err(io_err(format!("hashing {}", file.display())));
    }
    hoist_types::digest_path(dir).map_err(io_err(format!("hashing {}", dir.display())))
}

fn verify_entry(dir: &Path, expected: &str) -> Result<()> {
    let found = package_digest(dir)?;
    if found == expected {
        return Ok(());
    }
    // A directory package that happens to hold one file was hashed as a single
    // file above; hash it as a directory before calling it corrupt.
    if single_file(dir)?.is_some() {
        let as_dir =
            hoist_types::digest_path(dir).map_err(io_err(format!("hashing {}", dir.display())))?;
        if as_dir == expected {
            return Ok(());
        }
    }
    Err(Error::DigestMismatch {
        what: dir.display().to_string(),
        expected: expected.to_string(),
        found,
    })
}

/// The path of the only entry in `dir` if it is a regular file.
fn single_file(dir: &Path) -> Result<Option<PathBuf>> {
    let mut entries = fs::read_dir(dir).map_err(io_err(format!("reading {}", dir.display())))?;
    let first = match entries.next() {
        Some(e) => e.map_err(io_err(format!("reading {}", dir.display())))?,
        None => return Ok(None),
    };
    if entries.next().is_some() {
        return Ok(None);
    }
    let p = first.path();
    Ok(p.is_file().then_some(p))
}

/// Copies the regular files under `src` into `dst` (created if missing), following the
/// same rules as [`hoist_types::digest_path`] (symlinked files are followed, symlinked
/// directories are not), so the copy hashes like the source. Returns the file count.
/// With `sync`, each file is flushed to disk before returning.
pub fn copy_tree(src: &Path, dst: &Path, sync: bool) -> Result<usize> {
    let mut files = Vec::new();
    hoist_types::collect_files(src, src, &mut files)
        .map_err(io_err(format!("reading {}", src.display())))?;
    for rel in &files {
        copy_file(&src.join(rel), &dst.join(rel), sync)?;
    }
    Ok(files.len())
}

/// Copies one file's bytes (not its permissions: store entries are read-only, copies
/// handed to users should not be), creating parent directories.
fn copy_file(from: &Path, to: &Path, sync: bool) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(io_err(format!("creating {}", parent.display())))?;
    }
    let ctx = || format!("copying {} to {}", from.display(), to.display());
    let mut r = fs::File::open(from).map_err(io_err(ctx()))?;
    let mut w = fs::File::create(to).map_err(io_err(ctx()))?;
    io::copy(&mut r, &mut w).map_err(io_err(ctx()))?;
    if sync {
        w.sync_all().map_err(io_err(ctx()))?;
        // Entries are immutable: read-only files make an accidental edit fail loudly
        // (a deliberate one is still caught by verification).
        let mut perm = w.metadata().map_err(io_err(ctx()))?.permissions();
        perm.set_readonly(true);
        fs::set_permissions(to, perm).map_err(io_err(ctx()))?;
    }
    Ok(())
}

/// Removes a directory tree (read-only files go with it: only the directory's own
/// permissions matter on Unix).
fn remove_tree(p: &Path) -> io::Result<()> {
    fs::remove_dir_all(p)
}

/// Flushes a directory's entries (a rename is durable only once its directory is).
/// Best effort: not every platform can open a directory for syncing.
fn sync_dir(p: &Path) {
    if let Ok(d) = fs::File::open(p) {
        let _ = d.sync_all();
    }
}

fn io_err(context: String) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io { context, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("hoist-cas-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn a_stored_package_has_the_digest_of_its_source_and_is_stored_once() {
        let base = scratch("put");
        let src = base.join("pkg");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("model.onnx"), b"abc").unwrap();
        fs::write(src.join("sub/x"), b"1").unwrap();
        let store = ArtifactStore::open(base.join("store")).unwrap();
        let d = store.put_dir(&src).unwrap();
        assert_eq!(d, hoist_types::digest_path(&src).unwrap());
        assert_eq!(store.put_dir(&src).unwrap(), d);
        let dir = store.get(&d).unwrap();
        assert_eq!(fs::read(dir.join("sub/x")).unwrap(), b"1");
        assert_eq!(fs::read_dir(base.join("store/tmp")).unwrap().count(), 0);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_single_file_keeps_its_own_digest_and_a_one_file_dir_keeps_its_own() {
        let base = scratch("single");
        let file = base.join("m.onnx");
        fs::write(&file, b"onnx bytes").unwrap();
        let one = base.join("one");
        fs::create_dir_all(&one).unwrap();
        fs::write(one.join("m.onnx"), b"onnx bytes").unwrap();
        let store = ArtifactStore::open(base.join("store")).unwrap();
        let df = store.put_dir(&file).unwrap();
        let dd = store.put_dir(&one).unwrap();
        assert_eq!(df, hoist_types::digest_path(&file).unwrap());
        assert_eq!(dd, hoist_types::digest_path(&one).unwrap());
        assert_ne!(df, dd);
        assert!(store.get(&df).unwrap().join("m.onnx").is_file());
        assert!(store.get(&dd).unwrap().join("m.onnx").is_file());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn writers_storing_the_same_package_at_once_all_succeed() {
        let base = scratch("race");
        let src = base.join("pkg");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("model.onnx"), vec![7u8; 1 << 16]).unwrap();
        let store = ArtifactStore::open(base.join("store")).unwrap();
        let digests: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..6)
                .map(|_| s.spawn(|| store.put_dir(&src).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(digests.iter().all(|d| *d == digests[0]));
        store.get(&digests[0]).unwrap();
        assert_eq!(fs::read_dir(base.join("store/sha256")).unwrap().count(), 1);
        assert_eq!(fs::read_dir(base.join("store/tmp")).unwrap().count(), 0);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn corruption_is_reported_not_repaired() {
        let base = scratch("corrupt");
        let file = base.join("m.onnx");
        fs::write(&file, b"good").unwrap();
        let store = ArtifactStore::open(base.join("store")).unwrap();
        let d = store.put_dir(&file).unwrap();
        let stored = store.entry_path(&d).unwrap().join("m.onnx");
        let mut perm = fs::metadata(&stored).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        fs::set_permissions(&stored, perm).unwrap();
        fs::write(&stored, b"evil").unwrap();
        assert!(matches!(store.get(&d), Err(Error::DigestMismatch { .. })));
        // Putting the good bytes again does not paper over the corruption either.
        assert!(matches!(
            store.put_dir(&file),
            Err(Error::DigestMismatch { .. })
        ));
        assert_eq!(fs::read(&stored).unwrap(), b"evil");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn empty_packages_and_bad_digests_are_refused() {
        let base = scratch("refuse");
        fs::create_dir_all(base.join("empty")).unwrap();
        let store = ArtifactStore::open(base.join("store")).unwrap();
        assert!(matches!(
            store.put_dir(base.join("empty")),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(store.get("sha256:xyz"), Err(Error::Invalid(_))));
        assert!(matches!(
            store.get(&format!("sha256:{}", "0".repeat(64))),
            Err(Error::Store(_))
        ));
        fs::remove_dir_all(&base).unwrap();
    }
}
