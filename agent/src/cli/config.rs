//! `dbward config check`: validates `agent.toml` before a restart or reload, with every
//! problem at `file:line:column`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::{AgentConfig, DEFAULT_CONFIG};

/// `dbward config …`
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// The configuration tools.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate agent.toml: unknown keys, wrong types and bad values, at file:line:column;
    /// exit 1 on problems.
    Check {
        /// Configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

/// Runs a config subcommand: exit code 0 when the file is valid, 1 otherwise.
pub fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ConfigCommand::Check { config } => check(&config),
    }
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match AgentConfig::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let problems = config.check();
    for problem in &problems {
        match locate(&text, problem) {
            Some((line, column)) => eprintln!("{}:{line}:{column}: {problem}", path.display()),
            None => eprintln!("{}: {problem}", path.display()),
        }
    }
    if !problems.is_empty() {
        eprintln!("{}: {} problem(s)", path.display(), problems.len());
        return Ok(ExitCode::FAILURE);
    }
    if text.is_empty() && !path.exists() {
        println!(
            "{}: not found; the defaults apply (policy {}, audit {})",
            path.display(),
            config.policy.dir.display(),
            config.audit.dir.display()
        );
    } else {
        println!("{}: config OK", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a `check()` problem such as `[audit] audit.rotate_max_bytes must be …` points in the
/// file: the line of the key inside its section, else the section's header.
fn locate(text: &str, problem: &str) -> Option<(usize, usize)> {
    let section = problem.strip_prefix('[')?.split_once(']')?.0;
    let key = problem
        .split_once(&format!("{section}."))
        .map(|(_, rest)| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("")
        })
        .filter(|key| !key.is_empty());
    let mut current: Option<&str> = None;
    let mut header = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let column = line.len() - trimmed.len() + 1;
        if let Some(name) = trimmed.strip_prefix('[') {
            let name = name.trim_start_matches('[').split(']').next().unwrap_or("");
            current = Some(name.trim());
            if current == Some(section) && header.is_none() {
                header = Some((index + 1, column));
            }
            continue;
        }
        if current != Some(section) {
            continue;
        }
        if let Some(key) = key
            && let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return Some((index + 1, column));
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "host = \"db1\"\n[audit]\ndir = \"/x\"\n  rotate_max_bytes = 10\n[shim]\nlisten_tcp = []\n[[shim.listen_unix]]\npath = \"/s\"\n";

    #[test]
    fn problems_point_at_their_key_or_section() {
        let cases = [
            (
                "[audit] audit.rotate_max_bytes must be at least 4096",
                Some((4, 3)),
            ),
            (
                "[audit] audit.queue_capacity must be at least 1",
                Some((2, 1)),
            ),
            (
                "[shim] shim: no listeners; set listen_tcp and/or listen_unix",
                Some((5, 1)),
            ),
            ("[stream] stream.batch_max_events must be at least 1", None),
            ("no section at all", None),
        ];
        for (problem, expected) in cases {
            assert_eq!(locate(FILE, problem), expected, "{problem}");
        }
    }
}
