//! A standalone hoist gateway for `bench/gateway.sh` and for trying the split by hand.
//!
//! Usage:
//! `gateway --listen 127.0.0.1:8080 --stable ADDR[,ADDR] [--candidate ADDR[,ADDR]] [--weight N]
//!  [--shadow N] [--feedback] [--name ENV] [--sticky-header NAME] [--sticky-cookie NAME]
//!  [--threads N] [--models N]`
//!
//! `--models N` serves a [`hoist_gateway::Router`] of N models named `m0` ..
//! `m{N-1}` instead of one gateway: each model its own `Gateway` with the same
//! routes (its own split counter, pools and metrics), reached at
//! `/models/m{i}/invocations` or `/v2/models/m{i}/...` (`bench/router.sh`).
//!
//! `--shadow N` mirrors N% of stable's requests to the candidate and compares the
//! answers; `--feedback` remembers each answer's predictions for `POST /feedback`.
//!
//! Once it accepts connections it prints `listening on http://ADDR`. Ctrl-C (or
//! SIGTERM) stops accepting and lets requests in flight finish.

use std::io::Write;
use std::net::SocketAddr;

use hoist_gateway::{Gateway, GatewayConfig, Router, Routes, Upstream};

struct Args {
    listen: SocketAddr,
    routes: Routes,
    config: GatewayConfig,
    threads: Option<usize>,
    models: Option<usize>,
}

fn addrs(list: &str) -> Result<Vec<SocketAddr>, String> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|e| format!("bad address {s:?}: {e}")))
        .collect()
}

fn parse_args() -> Result<Args, String> {
    let mut listen: SocketAddr = "127.0.0.1:8080".parse().expect("literal address");
    let mut routes = Routes::default();
    let mut config = GatewayConfig::default();
    let mut threads = None;
    let mut models = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--listen" => {
                let v = value()?;
                listen = v.parse().map_err(|e| format!("--listen {v:?}: {e}"))?;
            }
            "--stable" => {
                routes.stable = Some(Upstream {
                    version: "stable".into(),
                    model: None,
                    addrs: addrs(&value()?)?,
                })
            }
            "--candidate" => {
                routes.candidate = Some(Upstream {
                    version: "candidate".into(),
                    model: None,
                    addrs: addrs(&value()?)?,
                })
            }
            "--weight" => {
                let v = value()?;
                routes.candidate_weight = v.parse().map_err(|e| format!("--weight {v:?}: {e}"))?;
                if routes.candidate_weight > 100 {
                    return Err("--weight is a percentage (0..=100)".into());
                }
            }
            "--shadow" => {
                let v = value()?;
                routes.shadow_percent = v.parse().map_err(|e| format!("--shadow {v:?}: {e}"))?;
                if routes.shadow_percent > 100 {
                    return Err("--shadow is a percentage (0..=100)".into());
                }
            }
            "--feedback" => routes.feedback = true,
            "--name" => config.name = value()?,
            "--sticky-header" => config.sticky_header = Some(value()?),
            "--sticky-cookie" => config.sticky_cookie = Some(value()?),
            "--threads" => {
                let v = value()?;
                threads = Some(v.parse().map_err(|e| format!("--threads {v:?}: {e}"))?);
            }
            "--models" => {
                let v = value()?;
                let n: usize = v.parse().map_err(|e| format!("--models {v:?}: {e}"))?;
                if n == 0 {
                    return Err("--models needs at least 1".into());
                }
                models = Some(n);
            }
            "-h" | "--help" => {
                println!(
                    "usage: gateway --listen ADDR --stable ADDR[,ADDR] [--candidate ADDR[,ADDR]] \
                     [--weight N] [--shadow N] [--feedback] [--name ENV] [--sticky-header NAME] \
                     [--sticky-cookie NAME] [--threads N] [--models N]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        listen,
        routes,
        config,
        threads,
        models,
    })
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gateway: {e}");
            std::process::exit(64);
        }
    };
    // The gateway runs its own worker threads; this runtime only waits for signals.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("gateway: bind {}: {e}", args.listen);
                std::process::exit(1);
            }
        };
        let local = listener.local_addr().expect("bound socket has an address");
        let served = match args.models {
            None => {
                let gateway = Gateway::new(args.config);
                gateway.set_routes(args.routes);
                println!("listening on http://{local}");
                let _ = std::io::stdout().flush();
                gateway
                    .serve_with_threads(listener, threads, shutdown_signal())
                    .await
            }
            Some(n) => {
                let router = Router::new(args.config.name.clone());
                for i in 0..n {
                    let gateway = Gateway::new(args.config.clone());
                    gateway.set_routes(args.routes.clone());
                    router.insert(&format!("m{i}"), gateway);
                }
                println!("listening on http://{local}");
                let _ = std::io::stdout().flush();
                router
                    .serve_with_threads(listener, threads, shutdown_signal())
                    .await
            }
        };
        if let Err(e) = served {
            eprintln!("gateway: {e}");
            std::process::exit(1);
        }
    });
}
