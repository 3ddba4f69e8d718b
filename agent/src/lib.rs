//! # dbward agent
//!
//! One statement's life, and the module that owns each step:
//!
//! - [`capture`] — load/attach the kernel programs, discover clusters, decode ring records.
//! - [`session`] — correlate kernel events into sessions with a client identity.
//! - [`event`] — the JSON event every later stage consumes (`docs/events.md`).
//! - [`policy`] — policy files, statement classification, and the decision for a statement.
//! - [`pipeline`] — joins between stages: shim events, unmediated decisions, audit records.
//! - [`audit`] — the hash-chained local audit log, checkpoints, verify.
//! - [`stream`] — lossless streaming of audit records to the central approver.
//! - [`control`] — the local control socket (`dbward tail`).
//! - [`metrics`] — Prometheus metrics of all of the above (`[metrics] listen`).
//! - [`config`] — `agent.toml`.
//! - [`cli`] — one file per subcommand; the only place that uses `anyhow`.
//! - [`protocol`] — wire-protocol codecs (PostgreSQL v3), pure, no I/O.
//! - [`shim`] — the PostgreSQL socket shim: listeners, per-connection task, hold/forward.
//! - [`approval`] — approval requests for held statements, the local on-host store.
//! - [`enforce`] — backends the kernel stopped: decide, resume, neutralise or terminate.
//! - [`block`] — refusing direct connections to the servers (`[block]`, cgroup connect hooks).
#![deny(missing_docs)]

pub mod approval;
pub mod audit;
pub mod block;
pub mod capture;
pub mod cli;
pub mod config;
pub mod control;
pub mod enforce;
pub mod event;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod protocol;
pub mod session;
pub mod shim;
pub mod stream;
