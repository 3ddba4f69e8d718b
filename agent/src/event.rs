//! The agent's output event: one JSON object per session start, statement and session end,
//! carrying the session's full identity. Documented in `docs/events.md`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// What an [`Event`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A client session authenticated and is ready for queries.
    SessionStart,
    /// A statement is about to execute.
    Statement,
    /// A session ended.
    SessionEnd,
    /// The kernel could not deliver some events (counts since the agent started).
    KernelDrops,
    /// The agent found and attached to a PostgreSQL cluster.
    ClusterAttached,
    /// The shim held a statement for a human decision.
    Hold,
    /// A held statement was decided (approved, denied, expired, cancelled).
    Decision,
    /// A policy was (re)loaded, or a reload was refused.
    PolicyReload,
    /// The kernel refused a connection to a protected server (`[block]`).
    ConnectionBlocked,
}

/// How the client reached the server, and who it is when it is local.
///
/// Fields are declared in the order of their JSON names: audit records are written with keys
/// sorted, and members that arrive sorted are not sorted again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// Client IP address (TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// cgroup v2 path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// cgroup v2 id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_id: Option<u64>,
    /// Client `comm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// Container id, when the client runs in a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Client executable path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// Client gid (local clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// How the local process was tied to the session: `socket_tuple` (loopback TCP port),
    /// `peer_credentials` (SO_PEERCRED of the unix socket), or `latest_connect` (the client
    /// or backend was gone before its socket could be read; the newest such connect to the
    /// same server port or socket is assumed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identified_by: Option<String>,
    /// Client process id (local clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Client port (TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Server socket path the client connected to (unix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// Subject of the client's verified TLS certificate (sessions through the shim with
    /// `tls_client_ca`), e.g. `CN=ai-reporting, O=Example`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_subject: Option<String>,
    /// `tcp`, `unix` or `unknown`.
    pub transport: String,
    /// Client uid (local clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// systemd unit the client runs in (e.g. `cron.service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// User name of `uid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// Where a refused client tried to connect (`connection_blocked`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// `tcp` or `unix`.
    pub transport: String,
    /// Server IP address (TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Server port (TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Server socket path (unix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
}

/// One event of the live stream (`dbward tail --json` prints exactly this).
///
/// Fields are declared in the order of their JSON names (see [`Client`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What was done: `forwarded`, `denied`, `held`, `recorded` (unmediated sessions: the
    /// statement ran; the outcome is what policy would have required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `application_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    /// Who decided (decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Vec<String>>,
    /// The session passed authentication (session_end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticated: Option<bool>,
    /// Server process serving the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_pid: Option<u32>,
    /// Statement class (read, write, delete, ddl, privilege, export, admin, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Client>,
    /// Server binary, port and data directory (cluster_attached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<BTreeMap<String, String>>,
    /// CommandComplete tags the server reported (`DELETE 10`, `COPY 1234`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_tags: Option<Vec<String>>,
    /// The server's connection id (MariaDB: what `KILL` takes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<u64>,
    /// Database name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Database role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_user: Option<String>,
    /// The session existed before the agent started; identity comes from its process title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered: Option<bool>,
    /// Kernel drop counts by event kind (kernel_drops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drops: Option<BTreeMap<String, u64>>,
    /// Session length (session_end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// Error the server or the shim reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// This host's name.
    pub host: String,
    /// Policy outcome: `allow`, `audit`, `deny` or `require_approval` (statement), or the
    /// decision: `approved`, `denied`, `expired`, `cancelled` (decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Policy content hash (policy_reload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_sha256: Option<String>,
    /// The cluster's postmaster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postmaster_pid: Option<u32>,
    /// Policy principal behind the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Its kind: `human`, `ai_agent`, `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_kind: Option<String>,
    /// `simple` (Query message), `extended` (Execute message), or `unknown` (the first
    /// statement of a session that was waiting for input when the agent attached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The requester's justification (statement, hold) or the approver's comment (decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Approval request id (hold, decision, held statements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Rows affected or returned, from the tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// The rule that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The database server when it is not PostgreSQL: `mariadb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The server process (MariaDB: `mariadbd`, which serves every session as a thread).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_pid: Option<u32>,
    /// Unique id of the session on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Who saw it: `kernel` (the capture) or `shim` (the socket shim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Statement text (see `sql_escaped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// `sql` had bytes that are not UTF-8: each is written `\xNN` and each backslash doubled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_escaped: Option<bool>,
    /// Full statement length in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_length: Option<u32>,
    /// `sql_length` is a lower bound (statement longer than the kernel measures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_length_is_lower_bound: Option<bool>,
    /// `sql` is only the first bytes of the statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_truncated: Option<bool>,
    /// Statements seen in the session (session_end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statements: Option<u64>,
    /// The server address a refused client tried (connection_blocked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// When, RFC 3339 with nanoseconds, UTC.
    pub ts: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: Option<EventType>,
    /// The session did not come through the shim (kernel events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmediated: Option<bool>,
}

/// RFC 3339 UTC with nanoseconds.
pub fn format_ts(t: SystemTime) -> String {
    let t: time::OffsetDateTime = t.into();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Statement bytes as a JSON string, losslessly: valid UTF-8 is kept as is; otherwise each
/// invalid byte becomes `\xNN` and each backslash is doubled (the `bool` says which).
pub fn escape_sql(bytes: &[u8]) -> (String, bool) {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return (s.to_owned(), false);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    for chunk in bytes.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    (out, true)
}

/// Inverse of [`escape_sql`] for escaped text.
pub fn unescape_sql(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if bytes[i] == b'\\'
            && bytes.get(i + 1) == Some(&b'x')
            && let Some(v) = text
                .get(i + 2..i + 4)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_sql_is_kept_verbatim() {
        assert_eq!(
            escape_sql("SELECT '\\x41' -- é".as_bytes()),
            ("SELECT '\\x41' -- é".to_owned(), false)
        );
    }

    #[test]
    fn non_utf8_sql_round_trips() {
        for raw in [
            &b"SELECT '\xff\xfe'"[..],
            b"\\x41 \x80",
            b"\xc3",
            b"a\\\\b\xff",
        ] {
            let (text, escaped) = escape_sql(raw);
            assert!(escaped);
            assert_eq!(unescape_sql(&text), raw, "{text}");
        }
    }
}
