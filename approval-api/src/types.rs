//! JSON bodies of the approver's `/api/v1` endpoints (see `docs/approver.md`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decision::SignedDecision;
use crate::timefmt::serde_rfc3339;

/// What kind of actor a principal is. Only humans may ever approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A person.
    Human,
    /// An AI agent acting on someone's behalf.
    AiAgent,
    /// A service, bot or scheduled job.
    Service,
}

impl PrincipalKind {
    /// The wire name (`human`, `ai_agent`, `service`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::AiAgent => "ai_agent",
            Self::Service => "service",
        }
    }
}

/// Who is behind the held statement, as the agent resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    /// Principal name (e.g. `claude-bot`, `alice`).
    pub principal: String,
    /// Kind of principal.
    pub kind: PrincipalKind,
    /// The human accountable for a non-human principal.
    #[serde(default)]
    pub owner: Option<String>,
    /// Groups of the principal.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Database role used.
    #[serde(default)]
    pub db_user: Option<String>,
    /// OS user of the client process.
    #[serde(default)]
    pub client_user: Option<String>,
    /// Executable of the client process.
    #[serde(default)]
    pub exe: Option<String>,
    /// systemd unit of the client process.
    #[serde(default)]
    pub unit: Option<String>,
}

/// `POST /api/v1/requests`: a statement held for human approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// Agent-generated id; filing is idempotent on it.
    pub request_id: Uuid,
    /// The database host that holds the statement.
    pub host: String,
    /// Session id on that host.
    pub session_id: String,
    /// Who issued the statement.
    pub requester: Requester,
    /// Database name.
    #[serde(default)]
    pub database: Option<String>,
    /// The exact statement text.
    pub statement: String,
    /// Hex SHA-256 of the exact statement bytes.
    pub statement_sha256: String,
    /// Statement class (`write`, `ddl`, `privilege`, …).
    pub class: String,
    /// Tables the statement touches.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Name of the policy rule that held it.
    pub rule: String,
    /// The requester's justification.
    #[serde(default)]
    pub reason: Option<String>,
    /// Approver groups of the rule.
    pub approvers: Vec<String>,
    /// Number of distinct humans that must approve.
    pub quorum: u32,
    /// When the request lapses.
    #[serde(with = "serde_rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Emergency group whose members may self-authorise with a reason.
    #[serde(default)]
    pub break_glass_group: Option<String>,
}

/// State of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for votes.
    Pending,
    /// Quorum reached (or break-glass).
    Approved,
    /// Someone denied.
    Denied,
    /// Nobody decided in time.
    Expired,
}

impl RequestStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "approved" => Some(Self::Approved),
            "denied" => Some(Self::Denied),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// `201` answer to filing a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiledRequest {
    /// The request id.
    pub request_id: Uuid,
    /// Its current status (`pending` unless a refiling found it decided).
    pub status: RequestStatus,
}

/// An approver's vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vote {
    /// Approve.
    Approve,
    /// Deny (ends the request at once).
    Deny,
}

impl Vote {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
        }
    }
}

/// `POST /api/v1/requests/{id}/votes` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteBody {
    /// The vote.
    pub vote: Vote,
    /// Comment; a deny's comment reaches the client's error message.
    #[serde(default)]
    pub comment: Option<String>,
}

/// `POST /api/v1/requests/{id}/break-glass` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassBody {
    /// Mandatory reason; flagged, alerted and queued for review.
    pub reason: String,
}

/// One recorded vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRecord {
    /// Principal who voted.
    pub principal: String,
    /// The vote.
    pub vote: Vote,
    /// Comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// Channel it came from (`api`, `slack`, `teams`, `web`).
    pub channel: String,
    /// When.
    #[serde(with = "serde_rfc3339")]
    pub at: OffsetDateTime,
}

/// A request with its state, votes and decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    /// The request as filed.
    pub request: ApprovalRequest,
    /// Current status.
    pub status: RequestStatus,
    /// Votes so far.
    pub votes: Vec<VoteRecord>,
    /// The signed decision once decided.
    #[serde(default)]
    pub decision: Option<SignedDecision>,
    /// True when approved by break-glass.
    #[serde(default)]
    pub break_glass: bool,
    /// When it was filed.
    #[serde(with = "serde_rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Answer to a vote or break-glass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteOutcome {
    /// The request id.
    pub request_id: Uuid,
    /// Status after the vote.
    pub status: RequestStatus,
    /// Distinct human approvals so far.
    pub approvals: u32,
    /// Approvals needed.
    pub quorum: u32,
}

/// `GET /api/v1/requests` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestList {
    /// Matching requests, newest first.
    pub requests: Vec<RequestView>,
}

/// `POST /api/v1/events` body: a batch of the agent's audit records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// Sending host.
    pub host: String,
    /// Audit records; each must carry a string `id`, stored once.
    pub events: Vec<serde_json::Value>,
}

/// `POST /api/v1/events` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestResult {
    /// Events stored now.
    pub accepted: u64,
    /// Events whose id was already stored.
    pub duplicates: u64,
}

/// Error body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable machine code (`self_approval`, `not_in_approver_group`, …).
    pub code: String,
    /// What was wrong and what to do.
    pub error: String,
}
