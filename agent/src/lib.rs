//! # dbward agent
//!
//! One statement's life, and the module that owns each step:
//!
//! - [`cli`] — one file per subcommand; the only place that uses `anyhow`.
//! - [`audit`] — the hash-chained local audit log, checkpoints, verify.
//! - [`stream`] — lossless streaming of audit records to the central approver.
pub mod audit;
pub mod cli;
pub mod stream;
