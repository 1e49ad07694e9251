//! Owned by the embedded-registry work (in progress).
