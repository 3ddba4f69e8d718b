//! Typed events the shim emits (sessions, statements, holds, decisions) on a bounded
//! channel; a full channel never blocks forwarding, every dropped event is counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::gate::SessionFacts;

/// What the gate said about a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Forwarded without audit request.
    Allow,
    /// Forwarded with an audit record requested.
    Audit,
    /// Refused by policy.
    Deny,
    /// Held for a human.
    RequireApproval,
}

/// What finally happened to a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Sent to the server; the server's outcome is in the event.
    Forwarded,
    /// Never reached the server.
    Denied {
        /// Message the client got.
        message: String,
    },
}

/// One statement's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementEvent {
    /// Session it ran in.
    pub session_id: String,
    /// The statement text.
    pub statement: String,
    /// The gate's verdict.
    pub verdict: Verdict,
    /// Matched rule.
    pub rule: Option<String>,
    /// Statement class.
    pub class: Option<String>,
    /// Requester's justification.
    pub reason: Option<String>,
    /// Approval request, when it was held.
    pub request_id: Option<Uuid>,
    /// Forwarded or denied.
    pub action: Action,
    /// CommandComplete tags the server reported (e.g. `DELETE 10`, `COPY 1234`).
    pub command_tags: Vec<String>,
    /// Rows affected or returned, summed over the tags.
    pub rows: Option<u64>,
    /// The server's error message, if it failed there.
    pub error: Option<String>,
    /// From forwarding to the server's answer (or to the denial).
    pub duration: Duration,
}

/// Everything the shim reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ShimEvent {
    /// A client finished startup and authentication.
    SessionStart {
        /// Facts about the session.
        facts: SessionFacts,
    },
    /// The session ended.
    SessionEnd {
        /// Session id.
        session_id: String,
        /// How long it lasted.
        duration: Duration,
        /// Why it ended abnormally, if it did.
        error: Option<String>,
    },
    /// A statement was forwarded or denied.
    Statement(StatementEvent),
    /// A statement was held for approval.
    Hold {
        /// Session id.
        session_id: String,
        /// Approval request id.
        request_id: Uuid,
        /// Rule that required approval.
        rule: String,
        /// The statement.
        statement: String,
        /// Requester's justification.
        reason: Option<String>,
    },
    /// A held statement was decided.
    Decision {
        /// Session id.
        session_id: String,
        /// Approval request id.
        request_id: Uuid,
        /// `approved`, `denied`, `expired`, `cancelled` or `unavailable`.
        outcome: String,
        /// Who decided.
        by: Vec<String>,
        /// Approver's comment or failure reason.
        reason: Option<String>,
    },
    /// A decision from the approver failed verification (forged, replayed, expired or
    /// bound to another request, host, session or statement) and was treated as a denial.
    DecisionRejected {
        /// Session holding the statement.
        session_id: String,
        /// Approval request the agent was waiting for.
        request_id: Uuid,
        /// Stable code of the problem (`forged_signature`, `replayed`, `wrong_request`, …).
        problem: String,
        /// What exactly was wrong.
        detail: String,
    },
}

/// Sends events without ever waiting; counts what it had to drop.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<ShimEvent>,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    /// Wraps the channel the shim was given.
    pub fn new(tx: mpsc::Sender<ShimEvent>) -> Self {
        Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sends `event`, or counts it as dropped when the channel is full or closed.
    pub fn emit(&self, event: ShimEvent) {
        if self.tx.try_send(event).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "shim event channel full or closed; events dropped"
                );
            }
        }
    }

    /// Events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end() -> ShimEvent {
        ShimEvent::SessionEnd {
            session_id: "s".into(),
            duration: Duration::ZERO,
            error: None,
        }
    }

    #[test]
    fn full_channel_counts_drops_instead_of_blocking() {
        let (tx, mut rx) = mpsc::channel(1);
        let sink = EventSink::new(tx);
        sink.emit(end());
        sink.emit(end());
        sink.emit(end());
        assert_eq!(sink.dropped(), 2);
        assert_eq!(rx.try_recv(), Ok(end()));
    }

    #[test]
    fn closed_channel_counts_drops() {
        let (tx, rx) = mpsc::channel(4);
        drop(rx);
        let sink = EventSink::new(tx);
        sink.emit(end());
        assert_eq!(sink.dropped(), 1);
    }
}
