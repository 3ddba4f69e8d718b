//! `dbward`: the host agent daemon and its command-line tools.

use std::process::ExitCode;

use clap::Parser;
use dbward_agent::cli::Cli;

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
