//! Lossless streaming of audit records to the central approver (`POST /api/v1/events`).
//!
//! The audit files are the spool: a persisted cursor (last acknowledged seq) says where to
//! resume, so an unreachable endpoint only grows the backlog, bounded by audit retention.
//!
//! - [`config`] — the `[stream]` section of agent.toml.
//! - [`filter`] — exclusions and read sampling (pure).
//! - [`cursor`] — the persisted last acknowledged seq.
//! - [`reader`] — reading records back from the audit files in order.
//! - [`sender`] — one HTTP request: body, gzip, token, backoff.
//! - [`metrics`] — counters.
//! - [`streamer`] — the loop tying them together.

pub mod config;
pub mod cursor;
pub mod filter;
pub mod metrics;
pub mod reader;
pub mod sender;
pub mod streamer;

pub use config::StreamConfig;
pub use metrics::{StreamMetrics, StreamStats};
pub use streamer::{StreamError, StreamOptions, Streamer};
