//! The typed audit events other modules append, one variant per record `type`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Extra fields a module attaches to an event beyond the typed ones; flattened into the record.
pub type Extra = Map<String, Value>;

/// One thing worth recording. Serialised with `type` as the tag and the payload flattened
/// into the record next to `seq`, `id`, `ts`, `prev_hash` and `hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditEvent {
    /// The agent started.
    AgentStart(AgentStart),
    /// The agent is stopping.
    AgentStop(AgentStop),
    /// A database session was seen opening.
    SessionStart(SessionStart),
    /// A database session ended.
    SessionEnd(SessionEnd),
    /// A statement and what policy did with it.
    Statement(Statement),
    /// A statement is held until a human decides.
    Hold(Hold),
    /// A decision on a held statement arrived.
    Decision(Decision),
    /// The policy was (re)loaded.
    PolicyReload(PolicyReload),
    /// The kernel reported dropped events.
    KernelDrops(KernelDrops),
    /// The kernel refused a connection to a protected server (`[block]`).
    ConnectionBlocked(ConnectionBlocked),
    /// A signed checkpoint; written by the log itself, never appended by callers.
    Checkpoint(Checkpoint),
}

impl AuditEvent {
    /// The record `type` this event is stored under.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AgentStart(_) => "agent_start",
            Self::AgentStop(_) => "agent_stop",
            Self::SessionStart(_) => "session_start",
            Self::SessionEnd(_) => "session_end",
            Self::Statement(_) => "statement",
            Self::Hold(_) => "hold",
            Self::Decision(_) => "decision",
            Self::PolicyReload(_) => "policy_reload",
            Self::KernelDrops(_) => "kernel_drops",
            Self::ConnectionBlocked(_) => "connection_blocked",
            Self::Checkpoint(_) => "checkpoint",
        }
    }
}

/// Payload of `agent_start`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentStart {
    /// Agent version.
    pub version: String,
    /// Process id of the agent.
    pub pid: u32,
    /// Further fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Payload of `agent_stop`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentStop {
    /// Why the agent stops (signal, error, ...).
    pub reason: String,
    /// Further fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Payload of `session_start`: the session facts of contracts.md go into `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionStart {
    /// Session id, unique per session on this host.
    pub session_id: String,
    /// Session facts (db_user, database, client_uid, exe, unit, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Payload of `session_end`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionEnd {
    /// Session id.
    pub session_id: String,
    /// Further fields (duration, statements seen, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Payload of `statement`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// Session id.
    pub session_id: String,
    /// The statement text.
    pub statement: String,
    /// What happened: allow, audit, deny, held, approved, denied, expired, ...
    pub outcome: String,
    /// Name of the matched policy rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Statement class (read, write, delete, ddl, privilege, export, admin, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Further fields (principal, tables, message, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Payload of `hold`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    /// Session id.
    pub session_id: String,
    /// Approval request id.
    pub request_id: String,
    /// Name of the rule that asked for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Further fields (approvers, quorum, expires_at, statement_sha256, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Payload of `decision`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Approval request id.
    pub request_id: String,
    /// approved, denied or expired.
    pub outcome: String,
    /// Who decided.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// The decision's signature (base64), as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Further fields (reason, decided_at, session_id, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Payload of `policy_reload`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyReload {
    /// Hex sha256 of the loaded policy content.
    pub content_sha256: String,
    /// Further fields (files, rule count, errors, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Payload of `kernel_drops`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelDrops {
    /// Events the kernel dropped since the previous report.
    pub count: u64,
    /// Further fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Payload of `connection_blocked`: the refused client (`client`), where it tried to
/// connect (`target`) and the cluster (`postmaster_pid`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionBlocked {
    /// All fields of the stream event.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Payload of `checkpoint`: a signature over the previous record's `(seq, hash)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Why it was written: start, resume, periodic, stop.
    pub reason: String,
    /// Seq of the record it signs (the one just before it); 0 when the log is empty.
    pub signed_seq: u64,
    /// Hash of that record (the genesis hash when the log is empty).
    pub signed_hash: String,
    /// Hex sha256 of the verifying key, to tell which key signed.
    pub key_id: String,
    /// Base64 ed25519 signature over [`crate::audit::checkpoint::signing_bytes`].
    pub signature: String,
    /// Further fields (e.g. `truncated_bytes` on resume after a crash).
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_variant_serialises_under_its_kind_and_round_trips() {
        let mut extra = Extra::new();
        extra.insert("db_user".into(), json!("app"));
        let events = [
            AuditEvent::AgentStart(AgentStart {
                version: "0.1.0".into(),
                pid: 7,
                extra: extra.clone(),
            }),
            AuditEvent::AgentStop(AgentStop {
                reason: "SIGTERM".into(),
                extra: Extra::new(),
            }),
            AuditEvent::SessionStart(SessionStart {
                session_id: "s1".into(),
                extra: extra.clone(),
            }),
            AuditEvent::SessionEnd(SessionEnd {
                session_id: "s1".into(),
                extra: Extra::new(),
            }),
            AuditEvent::Statement(Statement {
                session_id: "s1".into(),
                statement: "select 1".into(),
                outcome: "allow".into(),
                rule: None,
                class: Some("read".into()),
                extra: extra.clone(),
            }),
            AuditEvent::Hold(Hold {
                session_id: "s1".into(),
                request_id: "r1".into(),
                rule: Some("ddl".into()),
                extra: Extra::new(),
            }),
            AuditEvent::Decision(Decision {
                request_id: "r1".into(),
                outcome: "approved".into(),
                approvers: vec!["alice".into()],
                signature: Some("c2ln".into()),
                extra: Extra::new(),
            }),
            AuditEvent::PolicyReload(PolicyReload {
                content_sha256: "ab".repeat(32),
                extra: Extra::new(),
            }),
            AuditEvent::KernelDrops(KernelDrops {
                count: 3,
                extra: Extra::new(),
            }),
            AuditEvent::Checkpoint(Checkpoint::default()),
        ];
        for event in events {
            let value = serde_json::to_value(&event).expect("serialise");
            assert_eq!(value["type"], event.kind(), "{event:?}");
            let back: AuditEvent = serde_json::from_value(value.clone()).expect("deserialise");
            assert_eq!(back, event, "{value}");
        }
    }

    #[test]
    fn statement_extra_fields_are_flattened_into_the_record() {
        let value = serde_json::to_value(AuditEvent::Statement(Statement {
            session_id: "s9".into(),
            statement: "drop table t".into(),
            outcome: "deny".into(),
            rule: Some("no-ddl".into()),
            class: Some("ddl".into()),
            extra: [(
                "principal".to_owned(),
                json!({"name": "bot", "kind": "ai_agent"}),
            )]
            .into_iter()
            .collect(),
        }))
        .expect("serialise");
        assert_eq!(value["principal"]["kind"], "ai_agent");
        assert_eq!(value["rule"], "no-ddl");
        assert!(value.get("extra").is_none());
    }
}
