//! The `hoist-server` command line: flags and startup, callable from any binary.
//!
//! The `hoist-server` binary's `main` is a thin wrapper around [`main_with_args`];
//! the `hoist` binary calls the same function from its hidden `hoist serve`
//! subcommand, so a user with only `hoist` can still run model servers. The global
//! allocator is the one thing this module cannot set: each binary declares its own.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::executor::BatchConfig;
use crate::http::admin::AdminTokens;
use crate::model::ModelOptions;
use crate::runtime::{LoadOptions, RuntimeChoice};

/// Serve ONNX models (MLflow model directories or bare .onnx files) over the Open
/// Inference Protocol v2 (KServe, Triton clients) and MLflow's /invocations: one
/// (--model PATH) or many (--model NAME=PATH, repeated, and/or --model-repository DIR).
///
/// Admin reload (POST /admin/reload) is on only when HOIST_ADMIN_TOKEN or
/// HOIST_ADMIN_TOKEN_FILE (one token per line, re-read on change) is set.
#[derive(Parser, Debug)]
#[command(name = "hoist-server", version, about, long_about)]
pub struct Args {
    /// MLflow model directory (MLmodel with the onnx flavor) or .onnx file: one
    /// model. Or NAME=PATH, repeatable: each a model under that name (many models
    /// per process, with --model-repository).
    #[arg(
        long,
        env = "HOIST_MODEL",
        value_name = "[NAME=]PATH",
        required_unless_present = "model_repository"
    )]
    pub model: Vec<String>,
    /// A directory of model packages, each subdirectory one model named after it;
    /// all are loaded at start, and the repository extension
    /// (/v2/repository/models/NAME/load, /unload) loads and unloads them by name.
    #[arg(long, value_name = "DIR")]
    pub model_repository: Option<PathBuf>,
    /// Name clients use (/v2/models/NAME) for a single --model PATH; default: the
    /// directory or file name.
    #[arg(long)]
    pub name: Option<String>,
    /// Version clients see; default 1.
    #[arg(long = "model-version")]
    pub model_version: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free one (printed on stdout).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Also serve the Open Inference Protocol over gRPC (KServe v2
    /// GRPCInferenceService) on this port of --host; 0 picks a free one (printed on stdout).
    #[arg(long, env = "HOIST_GRPC_PORT")]
    pub grpc_port: Option<u16>,
    /// Inference runtime: auto uses ONNX Runtime when its library is found and loads the model, else tract.
    #[arg(long, value_enum, default_value = "auto")]
    pub runtime: RuntimeChoice,
    /// Path to libonnxruntime.so (default: ORT_DYLIB_PATH, then $HOIST_HOME/lib, ~/.hoist/lib).
    #[arg(long = "onnxruntime")]
    pub onnxruntime: Option<PathBuf>,
    /// Inference worker threads (default: the number of CPUs).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Requests that may wait for a worker; beyond that the server answers 503.
    #[arg(long, default_value_t = 1024)]
    pub queue_size: usize,
    /// Most rows one model call may batch from concurrent requests; 1 turns batching off.
    #[arg(long, default_value_t = 32)]
    pub max_batch_size: usize,
    /// How long a batch may wait for more requests, in microseconds; 0 batches only
    /// what is already queued.
    #[arg(long, default_value_t = 0)]
    pub max_batch_delay_us: u64,
    /// Run requests of up to 16 rows on the I/O thread, skipping the hand-off to an
    /// inference worker, once the model's small calls average under this many
    /// microseconds (0: always use the workers). A model that batches (see
    /// --max-batch-size) runs inline under load only below 25 µs a call, where
    /// folding calls on a worker saves less than the hand-off costs, and only
    /// without --max-batch-delay-us; otherwise only while few connections are open.
    /// Under load such a model's requests that one HTTP thread reads together are
    /// folded into one call on that thread.
    #[arg(long, default_value_t = 50, value_name = "US")]
    pub inline_max_us: u64,
    /// Largest request body, in bytes; larger bodies get 413.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_body_bytes: usize,
    /// For a regressor (no label output; one number per row): count its answers in
    /// hoist_predictions_total by these ascending bin edges, e.g. 50,100,150, so that
    /// prediction drift can be judged on them (class i is bin i).
    #[arg(long, value_name = "EDGES", value_parser = parse_bins)]
    pub prediction_bins: Option<Bins>,
    /// Reload when the model path's content changes, checking this often (0: off).
    #[arg(long, env = "MODEL_AUTO_REFRESH_SECONDS", default_value_t = 0)]
    pub auto_refresh_seconds: u64,
    /// Log filter (RUST_LOG syntax).
    #[arg(long, env = "HOIST_LOG", default_value = "info")]
    pub log: String,
}

/// `--prediction-bins`: one value holding every edge (a bare `Vec` would make clap
/// expect the flag once per edge).
#[derive(Clone, Debug)]
pub struct Bins(pub Vec<f64>);

fn parse_bins(s: &str) -> Result<Bins, String> {
    crate::model::parse_bins(s).map(Bins)
}

/// Parses `args` (`args[0]` is the program name, as clap expects) and runs the server
/// until SIGTERM or SIGINT. Bad flags print clap's message and exit the process with
/// code 2 (as `--help` and `--version` exit with 0); a startup or serving error is
/// printed as `Error: ...` on stderr and gives exit code 1.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    // Transparent huge pages would turn each of the allocator's small arenas into 2 MiB
    // of resident memory; a model server is mostly idle memory, so keep it small.
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag on this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let args = Args::parse_from(args);
    match run_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, the causes joined with ": " (no backtrace even when
            // RUST_BACKTRACE is set: this is a report for the operator).
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `NAME=PATH` when the part before the first `=` is a model name (no `/`); a bare
/// path otherwise, so `./a=b.onnx` stays a path.
fn split_named(value: &str) -> Option<(String, PathBuf)> {
    let (name, path) = value.split_once('=')?;
    (crate::repository::valid_name(name) && !path.is_empty())
        .then(|| (name.to_string(), PathBuf::from(path)))
}

/// The models the flags name: one bare `--model PATH` (today's meaning), or any
/// number of `--model NAME=PATH` and a `--model-repository`.
fn sources(
    models: &[String],
    repository: Option<PathBuf>,
    named_flag: bool,
) -> anyhow::Result<crate::repository::Sources> {
    use crate::repository::Sources;
    if let ([one], None) = (models, &repository)
        && (named_flag || split_named(one).is_none())
    {
        return Ok(Sources::Single(PathBuf::from(one)));
    }
    if named_flag {
        anyhow::bail!(
            "--name names the one model of a bare --model PATH; with several models use --model NAME=PATH"
        );
    }
    let named = models
        .iter()
        .map(|m| {
            split_named(m).ok_or_else(|| {
                anyhow::anyhow!(
                    "--model {m}: with several models (or --model-repository) each --model is NAME=PATH"
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Sources::Many {
        named,
        dir: repository,
    })
}

fn run_main(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A host binary may have set its own subscriber already; keep that one.
        .try_init()
        .ok();
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let sources = sources(
        &args.model,
        args.model_repository.clone(),
        args.name.is_some(),
    )?;
    let config = crate::Config {
        sources,
        model: ModelOptions {
            name: args.name,
            version: args.model_version,
            load: LoadOptions {
                choice: args.runtime,
                onnxruntime_lib: args.onnxruntime,
                parallelism: workers,
            },
            workers,
            queue: args.queue_size,
            batch: BatchConfig {
                max_batch_size: args.max_batch_size.max(1),
                max_batch_delay: Duration::from_micros(args.max_batch_delay_us),
                inline_max: Duration::from_micros(args.inline_max_us),
            },
            prediction_bins: args.prediction_bins.map(|b| b.0).unwrap_or_default(),
        },
        max_body: args.max_body_bytes,
        auto_refresh: (args.auto_refresh_seconds > 0)
            .then(|| Duration::from_secs(args.auto_refresh_seconds)),
    };
    let admin = AdminTokens::from_source(|k| std::env::var(k).ok());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let addr: SocketAddr = format!("{}:{}", args.host, args.port)
            .parse()
            .or_else(|_| {
                std::net::ToSocketAddrs::to_socket_addrs(&(args.host.as_str(), args.port))
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or(())
            })
            .map_err(|_| anyhow::anyhow!("cannot resolve --host {}", args.host))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let grpc = match args.grpc_port {
            Some(port) => {
                let addr = SocketAddr::new(addr.ip(), port);
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (--grpc-port)"))?;
                Some(l)
            }
            None => None,
        };
        // One write: a reader may stop reading after the first line.
        let mut hello = format!("listening on http://{}\n", listener.local_addr()?);
        if let Some(g) = &grpc {
            hello.push_str(&format!("grpc listening on {}\n", g.local_addr()?));
        }
        print!("{hello}");
        std::io::Write::flush(&mut std::io::stdout())?;
        crate::run_with_grpc(
            listener,
            grpc,
            config,
            admin,
            crate::server::shutdown_signal(),
        )
        .await
        .map_err(anyhow::Error::from)
    })
}
