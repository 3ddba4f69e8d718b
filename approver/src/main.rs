//! `dbward-approver`: the central approval service.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dbward_approver::config::Config;

/// Central approval service for statements held by dbward agents.
#[derive(Debug, Parser)]
#[command(name = "dbward-approver", version, about)]
struct Cli {
    /// Configuration file.
    #[arg(
        short,
        long,
        default_value = "/etc/dbward/approver.toml",
        global = true
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API and web UI (the default).
    Run,
    /// Check the configuration and exit.
    Check,
    /// Print the decision-signing public key (base64) for agents to pin; creates the
    /// key when missing.
    Pubkey,
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(&cli.config)?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => {
            println!("{}: ok", cli.config.display());
        }
        Command::Pubkey => {
            let key = dbward_approver::keys::load_or_generate(&config.signing_key_path)?;
            println!(
                "{}",
                dbward_approval_api::verifying_key_to_base64(&key.verifying_key())
            );
        }
        Command::Run => {
            let running = dbward_approver::server::start(config)
                .await
                .context("starting dbward-approver")?;
            tokio::signal::ctrl_c()
                .await
                .context("waiting for Ctrl-C")?;
            tracing::info!("shutting down");
            running.stop().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dbward-approver: error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("dbward-approver: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
