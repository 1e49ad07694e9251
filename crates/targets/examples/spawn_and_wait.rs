//! Starts one supervised model server, prints its pid on stdout, then waits forever.
//!
//! `spawn_and_wait MODEL [HOIST-SERVER FLAGS...]`; the server program comes from
//! [`ServerProgram::locate`] (set HOIST_SERVER_BIN). The no-orphan test SIGKILLs this
//! process and checks that the model server goes too.

use std::io::Write;

use hoist_targets::{ServerProgram, ServerSpec, Supervised};

#[tokio::main]
async fn main() -> Result<(), hoist_targets::Error> {
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .expect("usage: spawn_and_wait MODEL [HOIST-SERVER FLAGS...]");
    let mut spec = ServerSpec::new(ServerProgram::locate()?, &model, "model", "1");
    spec.extra_args = args.collect();
    spec.ready_timeout = std::time::Duration::from_secs(120);
    let server = Supervised::start(spec).await?;
    let pid = server.pid().expect("a ready server has a pid");
    let mut out = std::io::stdout();
    writeln!(out, "{pid}")
        .and_then(|()| out.flush())
        .expect("stdout");
    std::future::pending::<()>().await;
    drop(server);
    Ok(())
}
