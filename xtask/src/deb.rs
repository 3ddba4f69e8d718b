//! `cargo xtask deb`: the `dbward` (agent + CLI) and `dbward-approver` Debian packages, built
//! with cargo-deb from `[package.metadata.deb]` and the files under `packaging/`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{cargo, root, run};

/// cargo-deb release that builds with the workspace's rustc.
const CARGO_DEB_VERSION: &str = "3.8.0";

/// The crates packaged, each giving one `.deb`.
const PACKAGES: &[&str] = &["dbward-agent", "dbward-approver"];

/// Where the packages are written.
pub fn output_dir() -> PathBuf {
    root().join("target/debian")
}

/// Builds both packages (release builds; the agent's embeds the kernel programs) and prints
/// their paths.
pub fn run_all() -> anyhow::Result<()> {
    install_cargo_deb()?;
    for package in PACKAGES {
        run(cargo()
            .args(["deb", "--locked", "-p", package, "--output"])
            .arg(output_dir()))?;
    }
    let mut built: Vec<PathBuf> = std::fs::read_dir(output_dir())
        .with_context(|| format!("reading {}", output_dir().display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .collect();
    built.sort();
    if built.is_empty() {
        bail!("cargo deb wrote no package to {}", output_dir().display());
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
