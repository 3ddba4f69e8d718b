//! `dbward-approver`: the central approval service.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use dbward_approver::cli::{Cli, Command};
use dbward_approver::config::Config;

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
