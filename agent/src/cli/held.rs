//! `dbward held resume`: ends the backends a stopped agent left held in the kernel, from its
//! state file, fail closed (the statement is overwritten so it never runs, then the session
//! is terminated), exactly as the next agent would at start. The systemd unit runs it as
//! `ExecStopPost=`, so a crashed or killed agent never leaves a backend stopped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::config::DEFAULT_CONTROL_SOCKET;
use crate::enforce::state::{DEFAULT_HELD_STATE, StateFile};

/// `dbward held …`
#[derive(Debug, Args)]
pub struct HeldArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: HeldCommand,
}

/// Tools for backends held in the kernel (`dbward run --hold-unmediated`).
#[derive(Debug, Subcommand)]
pub enum HeldCommand {
    /// End every backend the state file lists that is still the process recorded: its
    /// statement is overwritten (it never runs), then its session is terminated. Refused
    /// while an agent answers on the control socket (a running agent ends its own).
    Resume {
        /// State file of held backends (`dbward run --held-state`).
        #[arg(long, default_value = DEFAULT_HELD_STATE)]
        state: PathBuf,
        /// Control socket of the agent that must not be running.
        #[arg(long, default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
    },
}

/// Runs a `held` subcommand.
pub fn run(args: HeldArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        HeldCommand::Resume { state, socket } => resume(&state, &socket),
    }
}

fn resume(state: &Path, socket: &Path) -> anyhow::Result<ExitCode> {
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        bail!(
            "an agent is running (it answers on {}); it ends the backends it holds when it stops: stop it first",
            socket.display()
        );
    }
    let ended = crate::enforce::end_recorded(&StateFile::new(state))?;
    println!(
        "{}: ended {ended} held backend(s) without running their statements",
        state.display()
    );
    Ok(ExitCode::SUCCESS)
}
