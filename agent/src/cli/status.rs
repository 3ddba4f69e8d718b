//! `dbward status`: what the running agent is attached to and doing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::config::DEFAULT_CONTROL_SOCKET;
use crate::control::status::{StatusView, render};
use crate::control::{Request, request};

/// Arguments of `dbward status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The agent's control socket.
    #[arg(long, default_value = DEFAULT_CONTROL_SOCKET)]
    pub socket: PathBuf,
    /// Print the status as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Prints the agent's status.
pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut lines = request(&args.socket, &Request::Status).await?;
        let line = lines
            .next_line()
            .await?
            .context("the agent closed the connection without a status")?;
        let view: StatusView = serde_json::from_str(&line).with_context(|| {
            format!("the agent answered something that is not a status: {line}")
        })?;
        if args.json {
            println!("{line}");
        } else {
            print!("{}", render(&view));
        }
        Ok(ExitCode::SUCCESS)
    })
}
