//! `xtask-man OUT_DIR`: writes the man pages of `dbward` and `dbward-approver` (one per
//! command and subcommand, gzipped) from their clap definitions into `OUT_DIR/dbward/` and
//! `OUT_DIR/dbward-approver/`, where the packages' assets pick them up. Run by
//! `cargo xtask deb`.

use std::path::Path;

use anyhow::{Context as _, bail};
use clap::CommandFactory as _;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        bail!("usage: xtask-man OUT_DIR");
    };
    let out = Path::new(&out);
    write_pages(dbward_agent::cli::Cli::command(), &out.join("dbward"))?;
    write_pages(
        dbward_approver::cli::Cli::command(),
        &out.join("dbward-approver"),
    )?;
    Ok(())
}

/// Writes `<name>.1.gz` for `cmd` and `<name>-<sub>.1.gz` for each of its subcommands into
/// `dir` (emptied first, so no stale page of a removed subcommand is packaged).
fn write_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    let plain = dir.join("plain");
    std::fs::create_dir_all(&plain).with_context(|| format!("creating {}", plain.display()))?;
    clap_mangen::generate_to(cmd, &plain)
        .with_context(|| format!("writing man pages to {}", plain.display()))?;
    for entry in std::fs::read_dir(&plain)? {
        let page = entry?.path();
        let name = page
            .file_name()
            .and_then(|n| n.to_str())
            .context("man page name is not UTF-8")?;
        let text = std::fs::read(&page)?;
        let gz = dir.join(format!("{name}.gz"));
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).with_context(|| format!("creating {}", gz.display()))?,
            flate2::Compression::best(),
        );
        std::io::Write::write_all(&mut encoder, &text)?;
        encoder.finish()?;
        eprintln!("xtask-man: wrote {}", gz.display());
    }
    std::fs::remove_dir_all(&plain)?;
    Ok(())
}
