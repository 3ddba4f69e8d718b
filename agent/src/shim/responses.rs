//! Messages the shim writes itself: denials, hold notices, cancellations, fatal errors, and
//! the server-side statement that fails a transaction exactly where a denied one stood.

use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use crate::protocol::postgres::{
    Bind, ErrorFields, ErrorResponse, Execute, NoticeResponse, Parse, Query, ToBytes,
};

/// SQLSTATE insufficient_privilege: every denial.
pub const DENIED: &str = "42501";
/// SQLSTATE query_canceled.
pub const CANCELED: &str = "57014";
/// SQLSTATE protocol_violation.
pub const PROTOCOL_VIOLATION: &str = "08P01";
/// SQLSTATE too_many_connections.
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// SQLSTATE admin_shutdown.
pub const ADMIN_SHUTDOWN: &str = "57P01";
/// SQLSTATE connection_failure.
pub const CONNECTION_FAILURE: &str = "08006";
/// SQLSTATE idle_session_timeout.
pub const IDLE_TIMEOUT: &str = "57P05";

/// Why a statement did not run, as the client will read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// SQLSTATE.
    pub code: &'static str,
    /// Primary message.
    pub message: String,
    /// DETAIL (rule, request id).
    pub detail: Option<String>,
    /// HINT (what to do).
    pub hint: Option<String>,
}

impl Refusal {
    /// A policy denial (42501).
    pub fn denied(message: impl Into<String>) -> Self {
        Self {
            code: DENIED,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// Adds a DETAIL line.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a HINT line.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The ErrorResponse frame.
    pub fn to_error(&self) -> Bytes {
        let mut f = ErrorFields::new("ERROR", self.code, &self.message);
        if let Some(d) = &self.detail {
            f = f.with(b'D', d.clone());
        }
        if let Some(h) = &self.hint {
            f = f.with(b'H', h.clone());
        }
        ErrorResponse(f).to_bytes()
    }
}

/// A FATAL ErrorResponse sent before the shim closes a connection.
pub fn fatal(code: &str, message: &str) -> Bytes {
    ErrorResponse(ErrorFields::new("FATAL", code, message)).to_bytes()
}

/// The NOTICE a client gets the moment its statement is held.
pub fn hold_notice(request_id: Uuid, rule: &str, how: &str, timeout: Duration) -> Bytes {
    let f = ErrorFields::new(
        "NOTICE",
        "00000",
        &format!("dbward: statement held for approval, request {request_id}"),
    )
    .with(
        b'D',
        format!(
            "rule \"{rule}\" requires a human decision; it expires in {}s",
            timeout.as_secs()
        ),
    )
    .with(b'H', format!("{how}; this session waits until then"));
    NoticeResponse(f).to_bytes()
}

/// A statement that makes the server raise an error carrying `marker` as its message: sent
/// in place of a refused statement so the server fails the transaction (and skips to Sync)
/// exactly as it would have; the shim swaps the error for its own [`Refusal`].
pub fn raise_statement(marker: &str) -> String {
    format!(
        "DO $dbward$BEGIN RAISE EXCEPTION USING ERRCODE = '{DENIED}', MESSAGE = '{marker}'; END$dbward$"
    )
}

/// Simple protocol: the Query that replaces a refused Query.
pub fn raise_query(marker: &str) -> Bytes {
    Query {
        sql: raise_statement(marker),
    }
    .to_bytes()
}

/// Extended protocol: the messages injected for a refused Execute (Parse, Bind and Execute
/// of the unnamed statement), followed by the client's Flush or Sync `end`.
pub fn raise_extended(marker: &str, end: &Bytes) -> Vec<Bytes> {
    vec![
        Parse {
            name: String::new(),
            sql: raise_statement(marker),
            param_types: vec![],
        }
        .to_bytes(),
        Bind {
            portal: String::new(),
            statement: String::new(),
            param_formats: vec![],
            params: vec![],
            result_formats: vec![],
        }
        .to_bytes(),
        Execute {
            portal: String::new(),
            max_rows: 0,
        }
        .to_bytes(),
        end.clone(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::postgres::FromBytes;

    #[test]
    fn refusal_carries_code_message_detail_and_hint() {
        let bytes = Refusal::denied("no mass deletes")
            .detail("rule: mass-delete")
            .hint("ask a DBA")
            .to_error();
        let e = ErrorResponse::from_bytes(&bytes[5..]).expect("valid");
        assert_eq!(e.0.code(), Some("42501"));
        assert_eq!(e.0.message(), Some("no mass deletes"));
        assert_eq!(e.0.get(b'D'), Some("rule: mass-delete"));
        assert_eq!(e.0.get(b'H'), Some("ask a DBA"));
    }

    #[test]
    fn hold_notice_names_the_request() {
        let id = Uuid::new_v4();
        let bytes = hold_notice(id, "r", "run it", Duration::from_secs(60));
        let n = NoticeResponse::from_bytes(&bytes[5..]).expect("valid");
        assert!(n.0.message().is_some_and(|m| m.contains(&id.to_string())));
    }

    #[test]
    fn raise_statement_embeds_only_the_marker() {
        let s = raise_statement("dbward-refusal-7-abc");
        assert!(s.contains("MESSAGE = 'dbward-refusal-7-abc'"));
        assert!(s.starts_with("DO $dbward$"));
    }
}
