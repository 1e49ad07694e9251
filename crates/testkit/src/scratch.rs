//! Scratch directories that clean up after themselves.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Whether `HOIST_KEEP_SCRATCH` asks to keep every scratch directory.
pub fn keep_scratch() -> bool {
    std::env::var_os("HOIST_KEEP_SCRATCH").is_some_and(|v| !v.is_empty() && v != "0")
}

/// A fresh, empty directory under the system temp dir, unique in this process
/// (`hoist-TAG-PID-N`). Dropping it removes it, unless `HOIST_KEEP_SCRATCH` is set or
/// the thread is panicking (a failing test): then it stays and its path is printed.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `hoist-TAG-PID-N` under the temp dir (any leftover of that name removed).
    pub fn new(tag: &str) -> Scratch {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("hoist-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("create scratch dir {}: {e}", path.display()));
        Scratch { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory on disk (no clean-up on drop); returns its path.
    pub fn keep(self) -> PathBuf {
        let path = self.path.clone();
        std::mem::forget(self);
        path
    }
}

impl Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() || keep_scratch() {
            eprintln!("scratch dir kept: {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
