//! # dbward-approver
//!
//! The central approval service: a held statement reaches a human where they work, and
//! their signed decision goes back to the one host, session and statement it was made
//! for. Data flows top to bottom:
//!
//! - [`cli`] — the command line.
//! - [`config`] — `approver.toml` model and checks.
//! - [`keys`] — the ed25519 signing key (generated 0600 when absent).
//! - [`directory`] — principals by name, Slack id, Teams id, OIDC identity.
//! - [`rules`] — who may vote, quorum of distinct humans, first deny, break-glass (pure).
//! - [`store`] — SQLite / PostgreSQL persistence (sqlx `Any`).
//! - [`service`] — filing, votes in one transaction, signing, expiry.
//! - [`waiters`] — per-request long-poll wake-ups.
//! - [`channels`] — Slack, Teams, webhooks (outbound messages, callback signatures).
//! - [`api`] — the HTTP API, callbacks, OpenAPI, rejection auditing.
//! - [`web`] — the web UI and OIDC login.
//! - [`tls`] — optional TLS and client certificates (mTLS) on the listener.
//! - [`server`] — wiring and the listener.
//! - [`bench`] — the approval latency harness.
#![deny(missing_docs)]

pub mod api;
pub mod bench;
pub mod channels;
pub mod cli;
pub mod config;
pub mod directory;
pub mod keys;
pub mod rules;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;
pub mod waiters;
pub mod web;
