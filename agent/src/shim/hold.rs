//! Holding a statement for approval: file the request, tell the client at once, keep
//! relaying server traffic while waiting, then forward (approved) or refuse (denied,
//! expired, cancelled, or approval path unavailable: fail closed).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::events::ShimEvent;
use super::gate::ApprovalRule;
use super::relay::{Flow, Meta, Mode, Session};
use super::responses::{self, Refusal};
use super::startup::SessionError;
use crate::approval::{ApprovalError, ApprovalRequest, Decision, Requester, statement_sha256};

/// Stop reading a held client once this much is buffered (its later messages wait).
const HELD_CLIENT_BUFFER: usize = 1 << 20;
/// How long filing a request may take before the shim gives up (fail closed).
const FILE_TIMEOUT: Duration = Duration::from_secs(15);
/// Extra wait past the rule's timeout before the shim itself calls it expired.
const DECISION_GRACE: Duration = Duration::from_secs(5);

enum Outcome {
    Decided(Result<Decision, ApprovalError>),
    Cancelled,
    ClientGone,
    Shutdown,
}

impl Session {
    fn approval_request(
        &self,
        sql: &str,
        meta: &Meta,
        rule: &ApprovalRule,
        id: Uuid,
    ) -> ApprovalRequest {
        let principal = rule.principal.clone().unwrap_or_default();
        ApprovalRequest {
            request_id: id,
            host: self.facts.host.clone().unwrap_or_default(),
            session_id: self.facts.session_id.clone(),
            requester: Requester {
                principal: (!principal.name.is_empty()).then_some(principal.name),
                kind: (!principal.kind.is_empty()).then_some(principal.kind),
                owner: principal.owner,
                groups: principal.groups,
                db_user: self.facts.db_user.clone(),
                client_user: self.facts.client_user.clone(),
                exe: self.facts.exe.clone(),
                unit: self.facts.unit.clone(),
            },
            database: self.facts.database.clone(),
            statement: sql.to_owned(),
            statement_sha256: statement_sha256(sql),
            class: rule.class.clone(),
            tables: rule.tables.clone(),
            rule: rule.rule.clone(),
            reason: meta.reason.clone(),
            approvers: rule.approvers.clone(),
            quorum: rule.quorum.max(1),
            break_glass_group: rule.break_glass_group.clone(),
            filed_at: SystemTime::now(),
            timeout: rule.timeout,
        }
    }

    fn emit_decision(&self, id: Uuid, outcome: &str, by: Vec<String>, reason: Option<String>) {
        self.ctx.events.emit(ShimEvent::Decision {
            session_id: self.facts.session_id.clone(),
            request_id: id,
            outcome: outcome.to_owned(),
            by,
            reason,
        });
    }

    /// Holds `sql` until a decision; other sessions are never affected.
    pub(super) async fn hold(
        &mut self,
        mode: Mode,
        sql: Arc<str>,
        frame: Bytes,
        mut meta: Meta,
        rule: ApprovalRule,
    ) -> Result<Flow, SessionError> {
        self.server_wr.flush().await?;
        let id = Uuid::new_v4();
        meta.request_id = Some(id);
        let request = self.approval_request(&sql, &meta, &rule, id);
        let rule_line = format!("dbward rule: {}, request {id}", rule.rule);
        let filed = tokio::time::timeout(FILE_TIMEOUT, self.ctx.approvals.file(request))
            .await
            .unwrap_or_else(|_| {
                Err(ApprovalError::Unavailable(format!(
                    "filing took longer than {}s",
                    FILE_TIMEOUT.as_secs()
                )))
            });
        let ticket = match filed {
            Ok(t) => t,
            Err(e) => {
                self.emit_decision(id, "unavailable", vec![], Some(e.to_string()));
                let refusal = Refusal::denied(format!(
                    "dbward: statement needs approval but the approval path is unavailable ({e})"
                ))
                .detail(rule_line);
                self.refuse_statement(mode, &sql, meta, refusal).await?;
                return Ok(Flow::Continue);
            }
        };
        tracing::info!(session = %self.facts.session_id, request = %id, rule = %rule.rule, "statement held for approval");
        self.ctx.events.emit(ShimEvent::Hold {
            session_id: self.facts.session_id.clone(),
            request_id: id,
            rule: rule.rule.clone(),
            statement: sql.to_string(),
            reason: meta.reason.clone(),
        });
        let decision = self.ctx.approvals.decision(&ticket);
        let notice = responses::hold_notice(id, &rule.rule, &ticket.how_to_approve, rule.timeout);
        self.client_wr.write_all(&notice).await?;
        self.client_wr.flush().await?;

        let deadline = tokio::time::sleep(rule.timeout + DECISION_GRACE);
        tokio::pin!(decision, deadline);
        let outcome = loop {
            let can_read = self.client_rd.buffered() < HELD_CLIENT_BUFFER;
            tokio::select! {
                d = &mut decision => break Outcome::Decided(d),
                () = &mut deadline => break Outcome::Decided(Ok(Decision::Expired)),
                () = self.cancel.notified() => break Outcome::Cancelled,
                _ = self.shutdown.changed() => break Outcome::Shutdown,
                n = self.client_rd.fill(), if can_read => {
                    if !matches!(n, Ok(k) if k > 0) {
                        break Outcome::ClientGone;
                    }
                }
                frame = self.server_rd.read_frame() => {
                    let Some(frame) = frame.map_err(SessionError::Server)? else {
                        self.ctx.approvals.cancel(&ticket);
                        return Ok(Flow::ServerGone);
                    };
                    self.on_server_frame(frame).await?;
                    if !self.server_rd.has_frame() {
                        self.client_wr.flush().await?;
                    }
                }
            }
        };
        let refusal = match outcome {
            Outcome::Decided(Ok(Decision::Approved { approvers, comment })) => {
                self.emit_decision(id, "approved", approvers, comment);
                self.forward(mode, sql, frame, meta).await?;
                return Ok(Flow::Continue);
            }
            Outcome::Decided(Ok(Decision::Denied { by, reason })) => {
                let why = reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                let msg = format!("dbward: request {id} was denied by {by}{why}");
                self.emit_decision(id, "denied", vec![by], reason);
                Refusal::denied(msg)
            }
            Outcome::Decided(Ok(Decision::Expired)) => {
                self.ctx.approvals.cancel(&ticket);
                self.emit_decision(id, "expired", vec![], None);
                Refusal::denied(format!(
                    "dbward: request {id} expired after {}s without a decision",
                    rule.timeout.as_secs()
                ))
            }
            Outcome::Decided(Ok(Decision::Cancelled)) => {
                self.emit_decision(id, "cancelled", vec![], None);
                Refusal::denied(format!("dbward: request {id} was cancelled"))
            }
            Outcome::Decided(Err(e)) => {
                self.ctx.approvals.cancel(&ticket);
                self.emit_decision(id, "unavailable", vec![], Some(e.to_string()));
                Refusal::denied(format!(
                    "dbward: request {id} could not be decided, the approval path is unavailable ({e})"
                ))
            }
            Outcome::Cancelled => {
                self.ctx.approvals.cancel(&ticket);
                self.emit_decision(
                    id,
                    "cancelled",
                    vec![],
                    Some("client cancel request".into()),
                );
                Refusal {
                    code: responses::CANCELED,
                    message: "canceling statement due to user request".into(),
                    detail: None,
                    hint: None,
                }
            }
            Outcome::ClientGone => {
                self.ctx.approvals.cancel(&ticket);
                self.emit_decision(id, "cancelled", vec![], Some("client disconnected".into()));
                return Ok(Flow::ClientGone);
            }
            Outcome::Shutdown => {
                self.ctx.approvals.cancel(&ticket);
                self.emit_decision(id, "cancelled", vec![], Some("agent shutting down".into()));
                return Ok(Flow::Shutdown);
            }
        };
        let refusal = refusal.detail(rule_line);
        self.refuse_statement(mode, &sql, meta, refusal).await?;
        Ok(Flow::Continue)
    }
}
