//! What policy decides for a statement: the outcome, the rule that decided it, and the
//! trace of every rule considered.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::classify::{ClassSet, Classification};
use super::identity::Principal;

/// What happens to a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Run it.
    Allow,
    /// Run it and record it prominently.
    Audit,
    /// Refuse it with a message for the client.
    Deny {
        /// Why, in words for the person or agent that sent it.
        message: String,
    },
    /// Hold it until enough approvers approve.
    RequireApproval {
        /// Groups whose members may approve.
        approvers: Vec<String>,
        /// Distinct approvals needed.
        quorum: u32,
        /// How long the request stays open.
        #[serde(with = "humantime_serde_secs")]
        timeout: Duration,
        /// Whether the requester must say why.
        reason_required: bool,
        /// A group that may approve alone in an emergency.
        break_glass_group: Option<String>,
    },
}

mod humantime_serde_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

impl Outcome {
    /// `allow`, `audit`, `deny` or `require_approval`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Audit => "audit",
            Outcome::Deny { .. } => "deny",
            Outcome::RequireApproval { .. } => "require_approval",
        }
    }

    /// How restrictive the outcome is: allow < audit < require_approval < deny.
    pub fn severity(&self) -> u8 {
        match self {
            Outcome::Allow => 0,
            Outcome::Audit => 1,
            Outcome::RequireApproval { .. } => 2,
            Outcome::Deny { .. } => 3,
        }
    }

    /// Whether the outcome lets the statement run without a human (allow, audit). Such
    /// rules must cover everything a statement touches to match it.
    pub fn is_permissive(&self) -> bool {
        self.severity() <= 1
    }
}

/// What to do with a statement on a session that bypassed the shim (seen only by the
/// kernel probes), where dbward cannot hold it before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmediated {
    /// Record it.
    Audit,
    /// Pause the backend until a human decides.
    Hold,
    /// Terminate the session.
    Terminate,
    /// Prevent it (where the platform allows).
    Block,
}

impl Unmediated {
    /// Every value.
    pub const ALL: [Unmediated; 4] = [
        Unmediated::Audit,
        Unmediated::Hold,
        Unmediated::Terminate,
        Unmediated::Block,
    ];

    /// The name used in policy files.
    pub fn name(self) -> &'static str {
        match self {
            Unmediated::Audit => "audit",
            Unmediated::Hold => "hold",
            Unmediated::Terminate => "terminate",
            Unmediated::Block => "block",
        }
    }

    /// Parses a name.
    pub fn from_name(name: &str) -> Option<Unmediated> {
        Unmediated::ALL.into_iter().find(|u| u.name() == name)
    }

    /// The default for an outcome when the rule does not say: allow/audit → audit,
    /// require_approval → hold, deny → terminate.
    pub fn for_outcome(outcome: &Outcome) -> Unmediated {
        match outcome {
            Outcome::Allow | Outcome::Audit => Unmediated::Audit,
            Outcome::RequireApproval { .. } => Unmediated::Hold,
            Outcome::Deny { .. } => Unmediated::Terminate,
        }
    }
}

/// The rule condition that did not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// `principal`
    Principal,
    /// `kind`
    Kind,
    /// `group`
    Group,
    /// `host`
    Host,
    /// `database`
    Database,
    /// `schema`
    Schema,
    /// `table`
    Table,
    /// `column`
    Column,
    /// `class`
    Class,
    /// `command`
    Command,
    /// `function`
    Function,
    /// `has_where`
    HasWhere,
    /// `has_limit`
    HasLimit,
    /// `time`
    Time,
}

impl Condition {
    /// The key in policy files.
    pub fn key(self) -> &'static str {
        match self {
            Condition::Principal => "principal",
            Condition::Kind => "kind",
            Condition::Group => "group",
            Condition::Host => "host",
            Condition::Database => "database",
            Condition::Schema => "schema",
            Condition::Table => "table",
            Condition::Column => "column",
            Condition::Class => "class",
            Condition::Command => "command",
            Condition::Function => "function",
            Condition::HasWhere => "has_where",
            Condition::HasLimit => "has_limit",
            Condition::Time => "time",
        }
    }

    /// Whether the condition is over a list of things the statement touches (where
    /// allow/audit rules must cover all of them and stricter rules any of them).
    pub fn is_statement_list(self) -> bool {
        matches!(
            self,
            Condition::Schema
                | Condition::Table
                | Condition::Column
                | Condition::Class
                | Condition::Command
                | Condition::Function
        )
    }
}

/// One rule's verdict on one statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleTrace {
    /// The rule's name.
    #[serde(serialize_with = "serialize_arc")]
    pub rule: Arc<str>,
    /// The rule's outcome name.
    pub outcome: &'static str,
    /// `None` when every condition held; otherwise the first that did not.
    pub failed: Option<Condition>,
}

impl RuleTrace {
    /// Whether the rule matched.
    pub fn matched(&self) -> bool {
        self.failed.is_none()
    }
}

impl fmt::Display for RuleTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.failed {
            None => write!(f, "{} ({}): matched", self.rule, self.outcome),
            Some(c) if c.is_statement_list() && self.outcome_is_permissive() => write!(
                f,
                "{} ({}): `{}` does not cover everything the statement touches",
                self.rule,
                self.outcome,
                c.key()
            ),
            Some(c) => write!(
                f,
                "{} ({}): `{}` does not match",
                self.rule,
                self.outcome,
                c.key()
            ),
        }
    }
}

impl RuleTrace {
    fn outcome_is_permissive(&self) -> bool {
        matches!(self.outcome, "allow" | "audit")
    }
}

/// The policy's decision for one statement.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// What happens to the statement.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The rule that decided (`None`: no rule matched, the `unmatched` default applied).
    pub rule: Option<String>,
    /// Who is behind the statement.
    #[serde(serialize_with = "serialize_arc")]
    pub principal: Arc<Principal>,
    /// What the statement is.
    #[serde(serialize_with = "serialize_arc")]
    pub classification: Arc<Classification>,
    /// The classes rules were matched against (parse errors and unknown statements mapped
    /// by `on_parse_error` / `on_unknown_statement`).
    pub effective_classes: ClassSet,
    /// What to do if the session bypassed the shim.
    pub unmediated: Unmediated,
    /// Every rule considered, in order.
    pub explanation: Vec<RuleTrace>,
    /// Adjustments made after the rules (e.g. an unknown statement raised from allow to
    /// audit).
    pub notes: Vec<&'static str>,
}

/// Serializes what an `Arc` points to (serde's `rc` feature is not enabled workspace-wide).
fn serialize_arc<T: Serialize + ?Sized, S: serde::Serializer>(
    value: &Arc<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    (**value).serialize(serializer)
}
