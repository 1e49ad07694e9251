//! `hoist-server`: flags, bind, run. Everything else lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use hoist_server::executor::BatchConfig;
use hoist_server::http::admin::AdminTokens;
use hoist_server::model::ModelOptions;
use hoist_server::runtime::{LoadOptions, RuntimeChoice};

/// Requests allocate many small buffers; mimalloc serves them with far less
/// contention than glibc's allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serve one ONNX model (an MLflow model directory or a bare .onnx file) over the
/// Open Inference Protocol v2 (KServe, Triton clients) and MLflow's /invocations.
///
/// Admin reload (POST /admin/reload) is on only when HOIST_ADMIN_TOKEN or
/// HOIST_ADMIN_TOKEN_FILE (one token per line, re-read on change) is set.
#[derive(Parser, Debug)]
#[command(name = "hoist-server", version, about, long_about)]
struct Args {
    /// MLflow model directory (MLmodel with the onnx flavor) or .onnx file.
    #[arg(long, env = "HOIST_MODEL")]
    model: PathBuf,
    /// Name clients use (/v2/models/NAME); default: the directory or file name.
    #[arg(long)]
    name: Option<String>,
    /// Version clients see; default 1.
    #[arg(long = "model-version")]
    model_version: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one (printed on stdout).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Inference runtime: auto uses ONNX Runtime when its library is found, else tract.
    #[arg(long, value_enum, default_value = "auto")]
    runtime: RuntimeChoice,
    /// Path to libonnxruntime.so (default: ORT_DYLIB_PATH, then $HOIST_HOME/lib, ~/.hoist/lib).
    #[arg(long = "onnxruntime")]
    onnxruntime: Option<PathBuf>,
    /// Inference worker threads (default: the number of CPUs).
    #[arg(long)]
    workers: Option<usize>,
    /// Requests that may wait for a worker; beyond that the server answers 503.
    #[arg(long, default_value_t = 1024)]
    queue_size: usize,
    /// Most rows one model call may batch from concurrent requests; 1 turns batching off.
    #[arg(long, default_value_t = 32)]
    max_batch_size: usize,
    /// How long a batch may wait for more requests, in microseconds; 0 batches only
    /// what is already queued.
    #[arg(long, default_value_t = 0)]
    max_batch_delay_us: u64,
    /// Largest request body, in bytes; larger bodies get 413.
    #[arg(long, default_value_t = 64 << 20)]
    max_body_bytes: usize,
    /// Reload when the model path's content changes, checking this often (0: off).
    #[arg(long, env = "MODEL_AUTO_REFRESH_SECONDS", default_value_t = 0)]
    auto_refresh_seconds: u64,
    /// Log filter (RUST_LOG syntax).
    #[arg(long, env = "HOIST_LOG", default_value = "info")]
    log: String,
}

fn main() -> anyhow::Result<()> {
    // Transparent huge pages would turn each of the allocator's small arenas into 2 MiB
    // of resident memory; a model server is mostly idle memory, so keep it small.
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag on this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let config = hoist_server::Config {
        model_path: args.model,
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
            },
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
        println!("listening on http://{}", listener.local_addr()?);
        hoist_server::run(
            listener,
            config,
            admin,
            hoist_server::server::shutdown_signal(),
        )
        .await
        .map_err(anyhow::Error::from)
    })
}
