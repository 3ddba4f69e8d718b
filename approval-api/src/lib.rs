//! # dbward approval API
//!
//! What the agent and the approver service share:
//!
//! - [`types`] — the JSON bodies of the `/api/v1` endpoints.
//! - [`timefmt`] — the one RFC 3339 form used on the wire and in signatures.
//! - [`decision`] — [`SignedDecision`]: canonical bytes, ed25519 sign and verify.
//! - [`verifier`] — [`DecisionVerifier`]: the agent's one-call check of a decision
//!   (signature, binding to request/session/statement/host, expiry, single use).
//! - [`client`] — [`ApproverClient`], the async HTTP client of the service.
//! - [`pem`] — certificate, key and CA files for TLS set-up.
#![deny(missing_docs)]

pub mod client;
pub mod decision;
pub mod pem;
pub mod timefmt;
pub mod types;
pub mod verifier;

pub use client::{ApproverClient, ClientError};
pub use decision::{
    DecisionError, KeyError, Outcome, SignedDecision, parse_signing_key, parse_verifying_key,
    signing_key_to_base64, verifying_key_to_base64,
};
pub use types::*;
pub use verifier::{Binding, DecisionVerifier, VerifiedDecision};

/// Hex SHA-256 of the exact statement bytes, as carried in `statement_sha256`.
pub fn statement_sha256(statement: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(statement.as_bytes()))
}
