//! Where an environment's versions run: the engine performs every action that touches
//! servers or traffic through one [`EnvTarget`] per environment, and never asks which
//! kind it is.
//!
//! | target | candidate | split | metrics |
//! |---|---|---|---|
//! | [`local`] | supervised `hoist-server` processes | hoist's gateway | the gateway's counters |
//! | [`kube`] | a Deployment on the cluster | HTTPRoute weights, a replica ratio, or hoist's gateway ([`gateway_admin`]) | Prometheus, or hoist's gateway's counters |
//!
//! Long operations report back to the engine as [`Cmd`](crate::cmd::Cmd)s, so a
//! target's methods return at once.

pub mod gateway_admin;
pub mod kube;
pub mod local;
pub mod pack;
pub mod smoke;

use futures_util::future::BoxFuture;
use hoist_release::journal::Live;
use hoist_release::machine::ReleaseId;

use crate::cmd::Started;
use crate::live::{LiveMetrics, StepShape};
use crate::views::{ServerView, WindowView};

/// A candidate to start: which release, and the version's verified files.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: ReleaseId,
    pub version: String,
    pub digest: String,
    /// The verified files on this machine (`None`: never fetched).
    pub path: Option<String>,
    /// The model artifact by digest (`REPOSITORY@sha256:…`), when pods pull it.
    pub artifact: Option<String>,
}

/// A version that serves in an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    pub version: String,
    pub digest: String,
    /// The release that brought it (0: found on the target, not in the journal).
    pub release_id: ReleaseId,
}

/// One environment's mechanism: start a candidate, set the split, promote, roll back,
/// stop, the URLs and the live metrics.
pub trait EnvTarget: Send {
    /// `local` or `kubernetes` (shown by `hoist status`).
    fn kind(&self) -> &'static str;
    /// Where the environment takes predictions.
    fn url(&self) -> String;
    /// How the split is made, when that needs saying (a cluster's replica ratio).
    fn split_note(&self) -> Option<String> {
        None
    }
    /// After a restart: make the journal's `live` version serve again, or without a
    /// record adopt what the target serves. Returns what serves.
    fn restore(&mut self, live: Option<Live>) -> BoxFuture<'_, Option<Serving>>;
    /// Start the candidate at 0% of traffic; the result arrives as
    /// `Cmd::CandidateStarted`.
    fn start_candidate(&mut self, c: Candidate);
    /// The current release's candidate started. `known`: the engine already holds this
    /// candidate (started again after a restart). Returns whether a new candidate
    /// deployment begins here.
    fn take_candidate(&mut self, version: &str, started: Started, known: bool) -> bool;
    /// A started candidate no release wants any more.
    fn discard(&mut self, started: Started);
    /// The candidate's share of traffic, atomically.
    fn set_weight(&mut self, id: ReleaseId, weight: u32);
    /// Mirror `percent` of stable's requests to the candidate (0: stop).
    fn mirror(&mut self, percent: u32);
    /// The candidate becomes stable (all traffic); the old stable stops.
    fn promote(&mut self, id: ReleaseId);
    /// All traffic to stable at once; the candidate stops.
    fn roll_back(&mut self, id: ReleaseId);
    /// Stop what runs here (the daemon stops).
    fn stop(&mut self) -> BoxFuture<'_, ()>;
    /// Where gates reach a variant's servers.
    fn variant_url(&self, candidate: bool) -> Option<String>;
    /// Send the input example (at `path`'s package) to the candidate, once per replica.
    fn smoke_test(&self, path: Option<String>) -> BoxFuture<'static, Result<(), String>>;
    /// The live numbers of a step that begins now.
    fn live_metrics(&self, shape: StepShape) -> Box<dyn LiveMetrics>;
    /// A variant's servers, for `hoist status`.
    fn servers(&self, candidate: bool) -> Vec<ServerView>;
    /// Stable's and the candidate's traffic since the candidate arrived.
    fn windows(&self) -> (WindowView, WindowView);
}
