//! `cargo xtask deb`: the `dbward` (agent + CLI) and `dbward-approver` Debian packages, built
//! with cargo-deb from `[package.metadata.deb]` and the files under `packaging/`, with man
//! pages generated from the clap definitions (`xtask/man`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{cargo, root, run};

/// cargo-deb release that builds with the workspace's rustc.
const CARGO_DEB_VERSION: &str = "3.8.0";

/// The crates packaged, each giving one `.deb`.
const PACKAGES: &[&str] = &["dbward-agent", "dbward-approver"];

/// Where the man pages are written (`assets` of both packages point here).
pub fn man_dir() -> PathBuf {
    root().join("target/man")
}

/// Where the release packages are written.
pub fn output_dir() -> PathBuf {
    root().join("target/debian")
}

/// Where the test suite's packages (dev profile) are written.
pub fn test_output_dir() -> PathBuf {
    root().join("target/debian-test")
}

/// Builds both release packages (the agent's embeds the kernel programs) and prints their
/// paths.
pub fn run_all() -> anyhow::Result<()> {
    build("release", &output_dir())
}

/// Builds both packages from the dev-profile binaries the test suite builds anyway: the
/// packaging tests exercise the package, not the optimiser, and a release build of both
/// crates would add many minutes to every CI run.
pub fn for_tests() -> anyhow::Result<()> {
    build("dev", &test_output_dir())
}

fn build(profile: &str, out: &std::path::Path) -> anyhow::Result<()> {
    install_cargo_deb()?;
    // The packages' assets take the man pages from here.
    run(cargo()
        .args(["run", "--quiet", "--locked", "--profile", profile])
        .args(["-p", "xtask-man", "--"])
        .arg(man_dir()))?;
    for package in PACKAGES {
        run(cargo()
            .args([
                "deb",
                "--locked",
                "--profile",
                profile,
                "-p",
                package,
                "--output",
            ])
            .arg(out))?;
    }
    let mut built: Vec<PathBuf> = std::fs::read_dir(out)
        .with_context(|| format!("reading {}", out.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .collect();
    built.sort();
    if built.is_empty() {
        bail!("cargo deb wrote no package to {}", out.display());
    }
    for path in built {
        eprintln!("xtask: built {}", path.display());
    }
    Ok(())
}

fn install_cargo_deb() -> anyhow::Result<()> {
    let installed = cargo()
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    run(Command::new("cargo").args([
        "install",
        "--locked",
        "cargo-deb",
        "--version",
        CARGO_DEB_VERSION,
    ]))
}
