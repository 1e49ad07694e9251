//! The daemon (`hoist up`): one gateway per environment, supervised model servers
//! (or a Kubernetes cluster), the release engine, registry triggers, and the HTTP API
//! the CLI talks to.
//!
//! State lives under `HOIST_HOME/daemon/`: `journal.db` (every release and
//! transition), `api` (the API's URL, for the CLI), `token` (the API token when none
//! was given, mode 0600) and `logs/` (each model server's output).
//!
//! # Layout
//!
//! | module | what it owns |
//! |---|---|
//! | [`run`] | `run(listeners, shutdown, options)`: starts every server, stops them on one future |
//! | [`engine`] | the release driver: machine events in, journaled actions out |
//! | [`cmd`] | the engine's inbox (requests and results of long actions) |
//! | [`target`] | where environments run: [`target::EnvTarget`], local and Kubernetes |
//! | [`live`] | live metrics ([`live::LiveMetrics`]: gateway, Prometheus) and the analysis loop |
//! | [`gates`] | the I/O of gates (their verdicts are `hoist_release`'s) |
//! | [`prometheus`] | PromQL over Prometheus's HTTP API |
//! | [`trigger`] | registry promotions become releases |
//! | [`notify`] | release events to Slack and webhooks |
//! | [`clock`], [`failpoint`] | what "now" is, and where tests kill the engine |
//! | [`shutdown`], [`log`], [`artifact`] | the one stop signal, progress lines, fetching a version |
//! | [`api`], [`views`] | the HTTP API and its types |
//! | [`dashboard`], [`events`] | the web dashboard at `GET /`, the live stream `GET /api/v1/events` |

pub mod api;
pub mod artifact;
pub mod clock;
pub mod cmd;
pub mod dashboard;
pub mod engine;
pub mod events;
pub mod failpoint;
pub mod gates;
pub mod live;
pub mod log;
pub mod notify;
pub mod policy;
pub mod prometheus;
pub mod run;
pub mod shutdown;
pub mod target;
pub mod trigger;
pub mod views;

pub use cmd::EngineClient;
pub use run::{Daemon, Listeners, ModelHandle, Options, run, start, state_dir};
