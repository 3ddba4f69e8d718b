//! Who is calling: host tokens (agents), approver tokens (CLI, pipelines) and web
//! sessions (cookie from the OIDC login). Tokens are looked up by their SHA-256, so the
//! lookup time does not depend on how much of a guessed token is right.

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};

use super::error::Failure;
use crate::config::Config;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An agent on this host.
    Host(String),
    /// A principal (approver token or web session).
    Approver(String),
}

/// Token table.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], Caller>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Builds the table from the config.
    pub fn new(config: &Config) -> Self {
        let mut by_hash = HashMap::new();
        for h in &config.hosts {
            by_hash.insert(digest(&h.token), Caller::Host(h.name.clone()));
        }
        for t in &config.approver_tokens {
            by_hash.insert(digest(&t.token), Caller::Approver(t.principal.clone()));
        }
        Self { by_hash }
    }

    /// The caller of a bearer token.
    pub fn lookup(&self, token: &str) -> Option<&Caller> {
        self.by_hash.get(&digest(token))
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The value of cookie `name`.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// 401 for a missing or unknown credential.
pub fn unauthenticated(what: &str) -> Failure {
    Failure::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        format!("{what}: send `Authorization: Bearer <token>` with a token from approver.toml"),
    )
}

/// 403 for a caller of the wrong kind.
pub fn wrong_kind(caller: &Caller, need: &str) -> Failure {
    let who = match caller {
        Caller::Host(h) => format!("host {h}"),
        Caller::Approver(p) => format!("principal {p}"),
    };
    Failure::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("{who} cannot call this endpoint; it needs {need}"),
    )
    .by(&who)
}
