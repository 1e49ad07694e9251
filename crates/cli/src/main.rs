//! The `hoist` binary: parses the command line and hands it to [`hoist_cli::run`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
