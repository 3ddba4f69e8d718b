//! # dbward agent
//!
//! One statement's life, and the module that owns each step:
//!
//! - [`cli`] — one file per subcommand; the only place that uses `anyhow`.
//! - [`protocol`] — wire-protocol codecs (PostgreSQL v3), pure, no I/O.
//! - [`shim`] — the PostgreSQL socket shim: listeners, per-connection task, hold/forward.
//! - [`approval`] — approval requests for held statements, the local on-host store.
pub mod approval;
pub mod cli;
pub mod protocol;
pub mod shim;
