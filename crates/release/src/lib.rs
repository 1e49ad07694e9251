//! hoist's release engine core: the pipeline file ([`config`]), the pure release state
//! machine ([`machine`]), judging live traffic ([`analysis`]) and gates ([`gates`]) and the journal that
//! records every transition before its actions run ([`journal`]).
//!
//! Nothing here starts a process, opens a socket or sleeps: the daemon in `hoist-daemon`
//! drives it.

pub mod analysis;
pub mod config;
pub mod gates;
pub mod journal;
pub mod kubernetes;
pub mod machine;
pub mod stats;

pub use config::Config;
pub use machine::{Action, Event, Outcome, Phase, Plan, Release, ReleaseId, Verdict};
