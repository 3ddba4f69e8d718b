//! Enforcement for sessions that bypass the shim: the kernel stops a flagged backend
//! (SIGSTOP) before a statement that needs a decision is parsed; this module decides what happens to it.
//!
//! - [`hold`] — the state machine: resume, ask a human, or end the session.
//! - [`mariadb`] — MariaDB sessions cannot be stopped (one process serves them all): the
//!   ones policy does not let run are ended with a server-side `KILL CONNECTION`.
//! - [`neutralise`] — overwrite a stopped backend's statement through `/proc/<pid>/mem`.
//! - [`peer`] — whether a stopped backend's client has gone away.
//! - [`state`] — the state file of stopped backends, resumed (fail closed) after a crash.
//! - [`switch`] — which backends the kernel stops, following the policy across reloads.

pub mod hold;
pub mod mariadb;
pub mod neutralise;
pub mod peer;
pub mod state;
pub mod switch;

pub use hold::{Approval, Enforcer, HeldBackend, Plan, end_recorded};
