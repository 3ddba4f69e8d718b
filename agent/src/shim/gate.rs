//! The statement gate: the shim's question to policy ("what do I do with this statement?")
//! and the facts it asks with. The real policy engine implements [`StatementGate`].

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

pub use crate::policy::classify::PreparedStatements;

/// What the agent knows about a session (see contracts.md, "Session facts").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionFacts {
    /// Database role from the startup packet.
    pub db_user: Option<String>,
    /// Database name from the startup packet (defaults to the role, as PostgreSQL does).
    pub database: Option<String>,
    /// `application_name` from the startup packet.
    pub application_name: Option<String>,
    /// OS uid of the client process.
    pub client_uid: Option<u32>,
    /// OS user name of the client process.
    pub client_user: Option<String>,
    /// Client process id.
    pub client_pid: Option<u32>,
    /// Client executable path.
    pub exe: Option<String>,
    /// systemd unit of the client (e.g. `cron.service`).
    pub unit: Option<String>,
    /// Container id of the client.
    pub container: Option<String>,
    /// Client IP for TCP sessions.
    pub source_addr: Option<IpAddr>,
    /// Client certificate subject, when one was presented.
    pub tls_subject: Option<String>,
    /// This DB host's name.
    pub host: Option<String>,
    /// True when the session did not come through the shim (never for shim sessions).
    pub unmediated: bool,
    /// Unique id of the session on this host.
    pub session_id: String,
}

/// A policy principal (who, in policy terms, is behind the session).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Principal name.
    pub name: String,
    /// `human`, `ai_agent` or `service`.
    pub kind: String,
    /// The human responsible for it, if any.
    pub owner: Option<String>,
    /// Its groups.
    pub groups: Vec<String>,
}

/// What a `require_approval` rule asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    /// Rule name.
    pub rule: String,
    /// Statement class.
    pub class: Option<String>,
    /// Tables touched.
    pub tables: Vec<String>,
    /// Groups whose members may approve.
    pub approvers: Vec<String>,
    /// Distinct approvals needed.
    pub quorum: u32,
    /// How long the statement may stay held.
    pub timeout: Duration,
    /// Deny when the requester gave no justification.
    pub reason_required: bool,
    /// Group that may break glass.
    pub break_glass_group: Option<String>,
    /// Principal policy resolved for the session.
    pub principal: Option<Principal>,
}

/// The gate's answer for one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    /// Forward to the server (`allow`, or `audit` when `audit` is true).
    Forward {
        /// The rule asked for an audit record.
        audit: bool,
        /// Matched rule.
        rule: Option<String>,
        /// Statement class.
        class: Option<String>,
    },
    /// Never forward; the client gets SQLSTATE 42501 with `message`.
    Deny {
        /// Text for the client.
        message: String,
        /// Matched rule.
        rule: Option<String>,
        /// Statement class.
        class: Option<String>,
    },
    /// Hold until a human decides.
    RequireApproval(ApprovalRule),
}

/// The gate could not decide (policy engine unavailable, …): the shim fails closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy unavailable: {0}")]
pub struct GateError(pub String);

/// Decides what to do with each statement of a session.
pub trait StatementGate: Send + Sync {
    /// The verdict for `sql` (one Query message's text, or one prepared statement's text at
    /// Execute) in the session described by `session`, whose prepared statements are
    /// `prepared` (for SQL `EXECUTE name`).
    fn evaluate(
        &self,
        session: &SessionFacts,
        sql: &str,
        prepared: &dyn PreparedStatements,
    ) -> Result<GateVerdict, GateError>;
}

/// A gate that forwards everything without audit (benchmarks, standalone runs).
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl StatementGate for AllowAll {
    fn evaluate(
        &self,
        _session: &SessionFacts,
        _sql: &str,
        _prepared: &dyn PreparedStatements,
    ) -> Result<GateVerdict, GateError> {
        Ok(GateVerdict::Forward {
            audit: false,
            rule: None,
            class: None,
        })
    }
}
