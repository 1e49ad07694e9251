//! Everything that can go wrong starting or supervising a model server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a model server could not be found, started or made ready.
///
/// The variants that follow a child's death carry the tail of its stderr (the last
/// ~4 KiB), which is where `hoist-server` says why it stopped (for example
/// `Error: cannot load the model: ... NoSuchOp`); the message shows it too.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No program to run: [`crate::ServerProgram::locate`] tried every place.
    #[error(
        "cannot find the model server program (hoist-server): tried {tried}; \
         install hoist-server next to hoist or set HOIST_SERVER_BIN to its path"
    )]
    ProgramNotFound {
        /// What was tried, in order.
        tried: String,
    },

    /// The program could not be executed (missing, not executable, ...).
    #[error("cannot start the model server program {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The log file named in the spec cannot be opened for appending.
    #[error("cannot open the model server log file {}: {source}", path.display())]
    LogFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The child died before it printed `listening on http://ADDR`.
    #[error(
        "model server {model} exited ({status}) before it printed its address{}",
        tail_suffix(stderr)
    )]
    ExitedBeforeListening {
        model: String,
        status: ExitStatus,
        stderr: String,
    },

    /// The child printed its address, then died before `/v2/health/ready` said 200
    /// (typically: the model failed to load or failed its input example).
    #[error(
        "model server {model} on {addr} exited ({status}) before it was ready{}",
        tail_suffix(stderr)
    )]
    ExitedBeforeReady {
        model: String,
        addr: SocketAddr,
        status: ExitStatus,
        stderr: String,
    },

    /// `ready_timeout` passed; the child was killed.
    #[error(
        "model server {model} was not ready within {waited:?} ({}){}",
        match addr {
            Some(a) => format!("listening on {a}"),
            None => "it never printed its address".to_string(),
        },
        tail_suffix(stderr)
    )]
    NotReady {
        model: String,
        addr: Option<SocketAddr>,
        waited: Duration,
        stderr: String,
    },

    /// Waiting on the child or reading its output failed.
    #[error("supervising model server {model}: {source}")]
    Io {
        model: String,
        #[source]
        source: std::io::Error,
    },

    /// The supervisor task ended without reporting (it panicked or the runtime is
    /// shutting down).
    #[error("the supervisor of model server {model} ended unexpectedly")]
    SupervisorGone { model: String },
}

impl Error {
    /// The tail of the child's stderr, for errors that follow a child's death or
    /// timeout.
    pub fn stderr_tail(&self) -> Option<&str> {
        match self {
            Error::ExitedBeforeListening { stderr, .. }
            | Error::ExitedBeforeReady { stderr, .. }
            | Error::NotReady { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}

/// `; its stderr ended with:` and the tail, indented, or nothing when it is empty.
fn tail_suffix(stderr: &str) -> String {
    let tail = stderr.trim_end();
    if tail.is_empty() {
        return "; it wrote nothing on stderr".to_string();
    }
    let mut s = String::from("; its stderr ended with:");
    for line in tail.lines() {
        s.push_str("\n    ");
        s.push_str(line);
    }
    s
}
