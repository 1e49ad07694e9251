//! The digest that identifies a model package: `sha256:<hex>`.
//!
//! For a file, the sha256 of its bytes. For a directory, the sha256 of one line per
//! regular file, in byte order of the relative path (`/`-separated):
//! `<relative path>\0<sha256 hex of the file>\n`. Any change to any file's content or
//! name changes it; the order files were written in does not. A digest never changes
//! meaning: the server, the registry and the release engine all compute it here.

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
pub fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let p = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(root, &p, out)?;
        } else if p.is_file() {
            let rel = p.strip_prefix(root).expect("under root");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_changes_with_content_and_names_not_with_write_order() {
        let base = std::env::temp_dir().join(format!("hoist-digest-{}", std::process::id()));
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
