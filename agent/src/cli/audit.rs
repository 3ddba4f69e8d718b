//! `dbward audit`: verify the local audit log (and a hidden load generator used by the crash
//! tests).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::audit::event::{Extra, Statement};
use crate::audit::key::{VERIFYING_KEY_FILE, read_verifying_key};
use crate::audit::verify::VerifyError;
use crate::audit::{AuditConfig, AuditEvent, AuditLog, AuditOptions, verify_path};

/// `dbward audit ...`
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check every record's hash, the chain across files and checkpoint signatures; report
    /// the first bad record and exit 1.
    Verify {
        /// An audit file or the audit directory.
        #[arg(default_value = "/var/lib/dbward/audit")]
        path: PathBuf,
        /// Verifying key (hex); defaults to `audit.pub` next to the log.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Append synthetic statement events as fast as possible (crash and load tests).
    #[command(hide = true)]
    StressWriter {
        /// Audit directory.
        #[arg(long)]
        dir: PathBuf,
        /// Signing key file.
        #[arg(long)]
        key_file: PathBuf,
        /// Host name for record ids.
        #[arg(long, default_value = "stress")]
        host: String,
        /// Stop after this many events (default: run until killed).
        #[arg(long)]
        count: Option<u64>,
        /// fsync interval in milliseconds.
        #[arg(long, default_value_t = 200)]
        fsync_interval_ms: u64,
        /// Rotate files at this size in bytes.
        #[arg(long, default_value_t = 64 * 1024 * 1024)]
        rotate_max_bytes: u64,
    },
}

/// Runs `dbward audit`.
pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AuditCommand::Verify { path, key } => verify(&path, key.as_deref()),
        AuditCommand::StressWriter {
            dir,
            key_file,
            host,
            count,
            fsync_interval_ms,
            rotate_max_bytes,
        } => {
            let config = AuditConfig {
                dir,
                key_file,
                fsync_interval_ms,
                rotate_max_bytes,
                ..AuditConfig::default()
            };
            stress_writer(config, host, count)
        }
    }
}

fn verify(path: &Path, key: Option<&Path>) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        path.exists(),
        "{}: no such audit file or directory",
        path.display()
    );
    let key_path = match key {
        Some(k) => k.to_owned(),
        None => {
            let dir = if path.is_dir() {
                path
            } else {
                path.parent().unwrap_or(Path::new("."))
            };
            dir.join(VERIFYING_KEY_FILE)
        }
    };
    let key = read_verifying_key(&key_path)
        .with_context(|| format!("cannot read the verifying key; give it with --key (it is `{VERIFYING_KEY_FILE}` in the audit directory)"))?;
    match verify_path(path, &key) {
        Ok(s) => {
            println!(
                "OK: {} record(s) in {} file(s), seq {}..{}, {} signed checkpoint(s) verified with {}",
                s.records,
                s.files,
                s.first_seq,
                s.last_seq,
                s.checkpoints,
                key_path.display()
            );
            if !s.from_genesis {
                println!(
                    "note: the chain starts at seq {} (older files removed by retention, or a single file given); it was checked from that record's prev_hash",
                    s.first_seq
                );
            }
            if s.empty_last_file {
                println!(
                    "note: the newest file is empty (a crash right after rotation); the agent continues in it"
                );
            }
            if s.unsigned_tail > 0 {
                println!(
                    "note: the last {} record(s) follow the last checkpoint and are not yet covered by a signature",
                    s.unsigned_tail
                );
            }
            println!("last hash: {}", s.last_hash);
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Bad(finding)) => {
            println!("FAILED: {finding}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

fn stress_writer(
    config: AuditConfig,
    host: String,
    count: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let log = AuditLog::open(AuditOptions { config, host })?;
    let report = log.open_report();
    println!(
        "resumed_after={} truncated_bytes={}",
        report.resumed_after, report.truncated_bytes
    );
    let mut n = 0u64;
    while count.is_none_or(|c| n < c) {
        n += 1;
        log.append(&AuditEvent::Statement(Statement {
            session_id: format!("s{}", n % 17),
            statement: format!(
                "UPDATE accounts SET balance = balance + {n} WHERE id = {}",
                n % 1000
            ),
            outcome: "audit".into(),
            rule: Some("stress".into()),
            class: Some("write".into()),
            extra: Extra::new(),
        }))?;
    }
    log.close()?;
    Ok(ExitCode::SUCCESS)
}
