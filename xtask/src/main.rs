//! `cargo xtask setup|build|test|bench|demo|deb`: everything a fresh machine needs, and the
//! project's gates, in one place.

mod bench;
mod deb;
mod demo;
mod setup;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "dbward's build, test and benchmark tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install everything the build and the tests need (idempotent; run as root).
    Setup,
    /// Build the kernel programs and the `dbward` binary (release).
    Build,
    /// The whole test suite: formatting, clippy, the Debian packages, unit and end-to-end
    /// tests (as root).
    Test,
    /// The seed scenario end to end on a throwaway cluster (as root).
    Demo {
        /// Wait for a person to approve instead of approving from the CLI.
        #[arg(long)]
        interactive: bool,
    },
    /// Debian packages `dbward` and `dbward-approver` (systemd units, default configuration)
    /// in target/debian.
    Deb,
    /// Benchmarks, each printing its ratio against a baseline measured in the same run.
    Bench {
        /// Which benchmark.
        #[arg(value_enum)]
        which: bench::Which,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run_all(),
        Task::Build => build_release(),
        Task::Test => test(),
        Task::Demo { interactive } => demo::run(interactive),
        Task::Bench { which } => bench::run(which),
        Task::Deb => deb::run_all(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs a command in the workspace root, failing with its name if it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: running {shown}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// `cargo`, as invoked by this xtask.
pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// `cargo xtask build`: the release binary with the kernel object embedded.
pub fn build_release() -> anyhow::Result<()> {
    run(cargo().args(["build", "--release", "-p", "dbward-agent"]))?;
    eprintln!(
        "xtask: built {}",
        root().join("target/release/dbward").display()
    );
    Ok(())
}

fn test() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the test suite loads BPF programs and starts PostgreSQL as the postgres user: run it as root"
        );
    }
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "agent-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args(["build", "--workspace", "--exclude", "agent-ebpf", "--bins"]))?;
    // The packaging tests install these (built from the dev binaries just built).
    deb::for_tests()?;
    run(cargo()
        .args(["test", "--workspace", "--exclude", "agent-ebpf"])
        .env("DBWARD_BIN", root().join("target/debug/dbward"))
        .env("DBWARD_DEB_DIR", deb::test_output_dir()))
}
