//! # dbward agent
//!
//! One statement's life, and the module that owns each step:
//!
//! - [`cli`] — one file per subcommand; the only place that uses `anyhow`.
//! - [`policy`] — policy files, statement classification, and the decision for a statement.
pub mod cli;
pub mod policy;
