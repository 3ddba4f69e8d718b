//! # dbward agent
//!
//! One statement's life, and the module that owns each step:
//!
//! - [`cli`] — one file per subcommand; the only place that uses `anyhow`.
pub mod cli;
