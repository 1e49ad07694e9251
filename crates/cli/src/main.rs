//! The `hoist` binary: parses the command line and hands it to [`hoist_cli::run`].

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // `hoist serve …` is hoist-server itself, flags and all; so is `hoist` called by
    // the name `hoist-server` (the link in hoist's images).
    let mut args = std::env::args_os();
    let program = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&program)
        .file_name()
        .is_some_and(|n| n == "hoist-server")
    {
        return hoist_server::cli::main_with_args(std::env::args_os());
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "serve") {
        let program = args.next().unwrap_or_default();
        let rest = args.skip(1);
        return hoist_server::cli::main_with_args(std::iter::once(program).chain(rest));
    }
    let cli = hoist_cli::Cli::parse();
    let json = cli.json;
    let env = |k: &str| std::env::var(k).ok();
    match hoist_cli::run(cli, &env, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            hoist_cli::report(&e, json, &mut std::io::stderr().lock());
            ExitCode::from(e.exit_code())
        }
    }
}
