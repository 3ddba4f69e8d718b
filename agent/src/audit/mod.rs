//! The local tamper-evident audit log: typed events, hash-chained JSON-lines records,
//! signed checkpoints, rotation/retention, crash resume and verification.
//!
//! - [`event`] — the `AuditEvent` types callers append.
//! - [`canonical`] — canonical JSON written straight from `Serialize` types (`Payload`).
//! - [`shaped`] — records written straight from a struct, and what the writer seals.
//! - [`record`] — canonical JSON, sealing and checking records, the chain tip (pure).
//! - [`checkpoint`] — what checkpoints sign, making and verifying them (pure).
//! - [`key`] — the host's ed25519 key files.
//! - [`files`] — file naming, listing, retention choice.
//! - [`resume`] — finding the chain's end after a crash, truncating a torn tail.
//! - [`log`] — `AuditLog`: append (seq assignment), flush, close.
//! - `writer` — the writer thread: sealing, batching, fsync, rotation, retention.
//! - [`verify`] — `verify_path`: find the first bad record.
//! - [`config`] — the `[audit]` section of agent.toml.

pub mod canonical;
pub mod checkpoint;
pub mod config;
pub mod event;
pub mod files;
pub mod key;
pub mod log;
pub mod record;
pub mod resume;
pub mod shaped;
pub mod verify;
mod writer;

use std::path::PathBuf;

pub use canonical::Payload;
pub use config::AuditConfig;
pub use event::AuditEvent;
pub use log::{AuditLog, AuditOptions, OpenReport};
pub use verify::{Summary, verify_path};
pub use writer::format_ts;

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Invalid `[audit]` settings.
    #[error("invalid [audit] settings: {0}")]
    Config(String),
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another process has the log open.
    #[error("{0}: the audit log is open in another process (another dbward agent?); stop it first")]
    Locked(PathBuf),
    /// The host key could not be loaded or written.
    #[error(transparent)]
    Key(#[from] key::KeyError),
    /// The end of the chain could not be found.
    #[error(transparent)]
    Resume(#[from] resume::ResumeError),
    /// The writer received records out of order (a bug).
    #[error("internal error: audit writer expected seq {expected}, got {found}")]
    Sequence {
        /// The seq the chain needs next.
        expected: u64,
        /// The seq received.
        found: u64,
    },
    /// An event could not be encoded.
    #[error("cannot encode audit event: {0}")]
    Encode(String),
    /// Callers may not append this type.
    #[error("`{0}` records are written by the audit log itself")]
    ReservedType(&'static str),
    /// The writer thread has stopped (closed, or failed: see the earlier error in the log).
    #[error("the audit writer has stopped; see the earlier error in the agent log")]
    WriterStopped,
}
