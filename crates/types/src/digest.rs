//! The digest that identifies a model package: `sha256:<hex>`.
//!
//! For a file, the sha256 of its bytes. For a directory, the sha256 of one line per
//! regular file, in byte order of the relative path (`/`-separated):
//! `<relative path>\0<sha256 hex of the file>\n`. Any change to any file's content or
//! name changes it; the order files were written in does not. A digest never changes
//! meaning: the server, the registry and the release engine all compute it here.
//!
//! Symlinks: a symlink to a regular file inside the directory is followed (hashed
//! under the link's name with the target's content, and copied as a file by the
//! registry); any other symlink (to a directory, dangling, or resolving outside the
//! directory) and any FIFO, socket or device is an error, so the digest covers
//! exactly the bytes a reader of the package can reach. [`check_package`](crate::check_package) adds the
//! rule for the files a package *names* (see [`crate::package`]).

use std::path::Path;

use sha2::{Digest, Sha256};

/// The digest of the file or directory at `path`.
pub fn digest_path(path: &Path) -> std::io::Result<String> {
    if path.is_file() {
        return Ok(format!("sha256:{}", hash_file(path)?));
    }
    let mut files = Vec::new();
    collect_files(path, path, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for rel in files {
        let file_hex = hash_file(&path.join(&rel))?;
        h.update(rel.as_bytes());
        h.update([0]);
        h.update(file_hex.as_bytes());
        h.update(b"\n");
    }
    Ok(format!("sha256:{}", hex(&h.finalize())))
}

/// The sha256 of a file's bytes, as lowercase hex.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex(&h.finalize()))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Relative paths (`/`-separated) of the regular files under `dir`, unsorted.
///
/// Symlinks to regular files inside `root` are listed like files; any other symlink,
/// and anything that is neither a file nor a directory, is an error of kind
/// `InvalidData` that names it (see the crate documentation).
pub fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let p = entry.path();
        let rel = || {
            p.strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .replace('\\', "/")
        };
        let ft = entry.file_type()?;
        if ft.is_dir() {
            collect_files(root, &p, out)?;
        } else if ft.is_file() {
            out.push(rel());
        } else if ft.is_symlink() {
            check_symlink(root, &p, &rel())?;
            out.push(rel());
        } else {
            return Err(refused(format!(
                "{} is not a regular file or directory (a FIFO, socket or device): a model \
                 package holds only files",
                rel()
            )));
        }
    }
    Ok(())
}

/// A symlink at `p` (named `rel`) is allowed if it resolves to a regular file inside `root`.
fn check_symlink(root: &Path, p: &Path, rel: &str) -> std::io::Result<()> {
    let target = std::fs::read_link(p)?;
    let outside = |what: &str| {
        refused(format!(
            "symlink {rel} -> {} {what}: a model package may hold symlinks only to \
             regular files inside the package directory",
            target.display()
        ))
    };
    let resolved = match p.canonicalize() {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(outside("does not resolve"));
        }
        Err(e) => return Err(e),
    };
    let root = root.canonicalize()?;
    if !resolved.starts_with(&root) {
        return Err(outside(&format!(
            "resolves to {}, outside the package directory {}",
            resolved.display(),
            root.display()
        )));
    }
    if !std::fs::metadata(&resolved)?.is_file() {
        return Err(outside("is not a regular file"));
    }
    Ok(())
}

fn refused(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_changes_with_content_and_names_not_with_write_order() {
        let base = std::env::temp_dir().join(format!("hoist-types-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        for d in [&a, &b] {
            let _ = std::fs::remove_dir_all(d);
            std::fs::create_dir_all(d.join("sub")).unwrap();
        }
        std::fs::write(a.join("x"), b"1").unwrap();
        std::fs::write(a.join("sub/y"), b"2").unwrap();
        std::fs::write(b.join("sub/y"), b"2").unwrap();
        std::fs::write(b.join("x"), b"1").unwrap();
        let da = digest_path(&a).unwrap();
        assert_eq!(da, digest_path(&b).unwrap());
        assert!(da.starts_with("sha256:") && da.len() == 7 + 64);
        std::fs::write(b.join("x"), b"3").unwrap();
        assert_ne!(da, digest_path(&b).unwrap());
        std::fs::rename(a.join("x"), a.join("z")).unwrap();
        assert_ne!(da, digest_path(&a).unwrap());
        // A file's digest is the sha256 of its bytes.
        assert_eq!(
            digest_path(&a.join("sub/y")).unwrap(),
            "sha256:d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35"
        );
    }
}
