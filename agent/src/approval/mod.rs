//! Approval requests for held statements and the channels that decide them: the trait the
//! shim files through, the local on-host store ([`local::LocalApprovals`]) and the central
//! approver ([`remote::RemoteApprovals`], decisions verified against the pinned key).
//!
//! Every error on the approval path is a denial for the held statement (fail closed).

pub mod groups;
pub mod local;
pub mod remote;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use groups::{GroupLookup, OsGroups};
pub use local::{ApproverIdentity, LocalApprovals, PendingApproval, Vote};
pub use remote::{RemoteApprovals, RemoteConfig, RemoteError};

/// A boxed, sendable future (keeps [`ApprovalChannel`] object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who asked: the principal policy resolved plus the session's client identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requester {
    /// Principal name from policy (e.g. `billing-bot`).
    pub principal: Option<String>,
    /// Principal kind: `human`, `ai_agent` or `service`.
    pub kind: Option<String>,
    /// Owner of the principal (a human responsible for a bot).
    pub owner: Option<String>,
    /// Groups of the principal.
    pub groups: Vec<String>,
    /// Database role of the session.
    pub db_user: Option<String>,
    /// OS user of the client process.
    pub client_user: Option<String>,
    /// Client executable.
    pub exe: Option<String>,
    /// Client systemd unit.
    pub unit: Option<String>,
}

/// A request for a human decision on one held statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// Agent-generated id, the handle approvers use.
    pub request_id: Uuid,
    /// This DB host's name.
    pub host: String,
    /// Session the statement belongs to.
    pub session_id: String,
    /// Who asked.
    pub requester: Requester,
    /// Database the session is connected to.
    pub database: Option<String>,
    /// The exact statement text.
    pub statement: String,
    /// Hex SHA-256 of the statement bytes.
    pub statement_sha256: String,
    /// Statement class from policy (`delete`, `ddl`, …).
    pub class: Option<String>,
    /// Tables the statement touches.
    pub tables: Vec<String>,
    /// Rule that required approval.
    pub rule: String,
    /// The requester's justification.
    pub reason: Option<String>,
    /// Groups whose members may approve.
    pub approvers: Vec<String>,
    /// Distinct approvals needed.
    pub quorum: u32,
    /// Group that may break glass, if the rule names one.
    pub break_glass_group: Option<String>,
    /// When the request was filed.
    pub filed_at: SystemTime,
    /// How long it may stay pending.
    pub timeout: Duration,
}

impl ApprovalRequest {
    /// When the request expires.
    pub fn expires_at(&self) -> SystemTime {
        self.filed_at + self.timeout
    }
}

/// Hex SHA-256 of a statement, as carried in requests and decisions.
pub fn statement_sha256(statement: &str) -> String {
    hex::encode(Sha256::digest(statement.as_bytes()))
}

/// Receipt for a filed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The request id.
    pub request_id: Uuid,
    /// When it expires.
    pub expires_at: SystemTime,
    /// One line telling the requester how an approver decides it.
    pub how_to_approve: String,
}

/// The outcome of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Enough approvers said yes: the statement may run.
    Approved {
        /// Who approved.
        approvers: Vec<String>,
        /// Their comment, if any.
        comment: Option<String>,
    },
    /// An approver said no.
    Denied {
        /// Who denied.
        by: String,
        /// Their reason, if any.
        reason: Option<String>,
    },
    /// Nobody decided before the timeout.
    Expired,
    /// The requester went away (disconnect or cancel).
    Cancelled,
}

/// Why the approval path could not file or decide a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// No pending request has this id.
    #[error("no pending approval request {id} (it was decided, expired or cancelled)")]
    NotFound {
        /// The id asked for.
        id: Uuid,
    },
    /// The approver is the requester.
    #[error(
        "{user} cannot approve request {id}: it is their own statement (client user, principal or owner); ask another approver"
    )]
    SelfApproval {
        /// The approver.
        user: String,
        /// The request.
        id: Uuid,
    },
    /// The approver is in none of the rule's approver groups.
    #[error("{user} is not in any approver group of request {id} (needs one of: {groups})")]
    NotAnApprover {
        /// The approver.
        user: String,
        /// The request.
        id: Uuid,
        /// The rule's groups, comma-separated.
        groups: String,
    },
    /// Group membership could not be looked up.
    #[error("cannot look up the groups of {user}: {detail}")]
    GroupLookup {
        /// The user.
        user: String,
        /// What failed.
        detail: String,
    },
    /// The channel cannot take or decide requests right now.
    #[error("approval channel unavailable: {0}")]
    Unavailable(String),
}

/// A way to file approval requests and learn their decisions (local store, central approver).
pub trait ApprovalChannel: Send + Sync {
    /// Files a request; the returned ticket says how to approve it.
    fn file(&self, request: ApprovalRequest) -> BoxFuture<'_, Result<Ticket, ApprovalError>>;

    /// Resolves once the request is decided, expired or cancelled.
    fn decision(&self, ticket: &Ticket) -> BoxFuture<'static, Result<Decision, ApprovalError>>;

    /// Withdraws a pending request (client gone); a no-op when already decided.
    fn cancel(&self, ticket: &Ticket);
}

/// A channel that refuses every request: what the shim uses when no approval path is
/// configured, so `require_approval` fails closed.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoApprovals;

impl ApprovalChannel for NoApprovals {
    fn file(&self, _request: ApprovalRequest) -> BoxFuture<'_, Result<Ticket, ApprovalError>> {
        Box::pin(async {
            Err(ApprovalError::Unavailable(
                "no approval channel is configured on this agent".into(),
            ))
        })
    }

    fn decision(&self, ticket: &Ticket) -> BoxFuture<'static, Result<Decision, ApprovalError>> {
        let id = ticket.request_id;
        Box::pin(async move { Err(ApprovalError::NotFound { id }) })
    }

    fn cancel(&self, _ticket: &Ticket) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_hash_is_hex_sha256_of_exact_bytes() {
        assert_eq!(
            statement_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(statement_sha256("abc "), statement_sha256("abc"));
    }
}
