//! hoist gateway
