//! Command-line interface: one file per subcommand, `anyhow` at this edge only.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod approvals;

/// dbward: a human in the loop of risky automated database actions.
#[derive(Debug, Parser)]
#[command(name = "dbward", version, about)]
pub struct Cli {
    /// More log output (-v debug, -vv trace). `RUST_LOG` overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Act on approval requests of a dbward-approver server (people, CI/CD).
    Approvals(approvals::ApprovalsArgs),
}

/// Initialises tracing on stderr.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Approvals(args) => approvals::run(args),
    }
}
