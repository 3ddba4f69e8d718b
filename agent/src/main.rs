//! `dbward`: the host agent daemon and its command-line tools.

use std::process::ExitCode;

use clap::Parser;
use dbward_agent::cli::Cli;

/// The agent allocates and frees small buffers for every statement it records; mimalloc's
/// thread-local free lists cost a fraction of glibc malloc's there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    dbward_agent::cli::init_tracing(cli.verbose);
    match dbward_agent::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("dbward: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
