//! hoist release
