//! The command line of `dbward-approver` (also the source of its man page).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Central approval service for statements held by dbward agents.
#[derive(Debug, Parser)]
#[command(name = "dbward-approver", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        short,
        long,
        default_value = "/etc/dbward/approver.toml",
        global = true
    )]
    pub config: PathBuf,
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API and web UI (the default).
    Run,
    /// Check the configuration and exit.
    Check,
    /// Print the decision-signing public key (base64) for agents to pin; creates the
    /// key when missing.
    Pubkey,
}
