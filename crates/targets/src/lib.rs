//! hoist targets
