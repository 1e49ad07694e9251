//! `hoist-server`: the allocator, then the command line in [`hoist_server::cli`].

/// Requests allocate many small buffers; mimalloc serves them with far less
/// contention than glibc's allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hoist_server::cli::main_with_args(std::env::args_os())
}
