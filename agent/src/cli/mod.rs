//! Command-line interface: one file per subcommand, `anyhow` at this edge only.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod approvals;
pub mod audit;
pub mod config;
pub mod held;
pub mod policy;
pub mod run;
pub mod status;
pub mod tail;

/// dbward: a human in the loop of risky automated database actions.
#[derive(Debug, Parser)]
#[command(name = "dbward", version, about)]
pub struct Cli {
    /// More log output (-v debug, -vv trace). `RUST_LOG` overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: attach to PostgreSQL, correlate, serve the control socket.
    Run(run::RunArgs),
    /// Follow the running agent's live event stream.
    Tail(tail::TailArgs),
    /// Show what the running agent is attached to and doing.
    Status(status::StatusArgs),
    /// Check, test and explain policy files.
    Policy(policy::PolicyArgs),
    /// Verify the local audit log.
    Audit(audit::AuditArgs),
    /// Validate the agent's configuration file (agent.toml).
    Config(config::ConfigArgs),
    /// Act on approval requests of a dbward-approver server (people, CI/CD).
    Approvals(approvals::ApprovalsArgs),
    /// End backends a stopped agent left held in the kernel (the unit's ExecStopPost).
    Held(held::HeldArgs),
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Tail(args) => tail::run(args),
        Command::Status(args) => status::run(args),
        Command::Policy(args) => policy::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Approvals(args) => approvals::run(args),
        Command::Config(args) => config::run(args),
        Command::Held(args) => held::run(args),
    }
}
