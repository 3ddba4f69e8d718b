//! The approval service core: files requests, applies the rules to votes inside one
//! transaction per request, signs decisions, expires stale requests, wakes long-polls
//! and hands events to the channels. Transport-free: the HTTP API, Slack, Teams and the
//! web UI all call into it.

use std::sync::Arc;
use std::time::Duration;

use dbward_approval_api::{
    ApprovalRequest, FiledRequest, Outcome, RequestStatus, RequestView, SignedDecision, Vote,
    VoteOutcome, statement_sha256,
};
use ed25519_dalek::SigningKey;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::channels::Notifier;
use crate::config::PrincipalEntry;
use crate::directory::Directory;
use crate::rules::{self, RuleViolation, Tally};
use crate::store::{AuditRecord, Filed, Store, StoreError, StoredRequest};
use crate::waiters::Waiters;

/// How long after its decision a decision stays usable at least (the agent is
/// long-polling, so it uses it within milliseconds; this covers clock skew).
const DECISION_GRACE: time::Duration = time::Duration::seconds(60);

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No such request.
    #[error("no approval request {0}; check the id (`dbward approvals list`)")]
    UnknownRequest(Uuid),
    /// Already decided.
    #[error("request {id} is already {}; nothing changed", status.as_str())]
    NotPending {
        /// Request.
        id: Uuid,
        /// Its status.
        status: RequestStatus,
    },
    /// Expired before the vote.
    #[error("request {0} expired before this vote; the agent must file it again")]
    Expired(Uuid),
    /// A rule forbids it.
    #[error(transparent)]
    Rule(#[from] RuleViolation),
    /// The authenticated principal is not in the directory.
    #[error("principal {0:?} is not in the approver's directory ([[principals]])")]
    UnknownPrincipal(String),
    /// Same id filed with other content.
    #[error("request {0} was already filed with different content; use a new request_id")]
    Conflict(Uuid),
    /// The request body is inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    /// Stable API error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownRequest(_) => "unknown_request",
            Self::NotPending { .. } => "not_pending",
            Self::Expired(_) => "expired",
            Self::Rule(r) => r.code(),
            Self::UnknownPrincipal(_) => "unknown_principal",
            Self::Conflict(_) => "conflict",
            Self::Invalid(_) => "invalid_request",
            Self::Store(_) => "storage",
        }
    }
}

/// The service; shared as `Arc<Service>`.
pub struct Service {
    /// Storage.
    pub store: Store,
    /// The principal directory.
    pub directory: Directory,
    key: SigningKey,
    waiters: Waiters,
    /// This process's id, recorded with each decision it makes, so other replicas know
    /// which decisions to wake their long-polls for.
    replica: String,
    notifier: Notifier,
}

impl Service {
    /// A service over `store` that signs with `key`.
    pub fn new(
        store: Store,
        directory: Directory,
        key: SigningKey,
        notifier: Notifier,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            directory,
            key,
            waiters: Waiters::default(),
            replica: Uuid::new_v4().to_string(),
            notifier,
        })
    }

    /// The public key agents pin.
    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.verifying_key()
    }

    /// Number of requests with a long-poll waiting on this replica.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// Wakes the long-polls waiting for `id` (it was decided, possibly by another
    /// replica).
    pub fn wake(&self, id: Uuid) {
        self.waiters.wake(id);
    }

    /// Records an entry in the approver's audit table; storage failures are logged.
    pub async fn audit(
        &self,
        kind: &str,
        actor: Option<&str>,
        request_id: Option<Uuid>,
        status: u16,
        detail: &str,
    ) {
        let rec = AuditRecord {
            at: String::new(),
            kind: kind.to_string(),
            actor: actor.map(str::to_string),
            request_id: request_id.map(|i| i.to_string()),
            status: i64::from(status),
            detail: detail.to_string(),
        };
        if let Err(e) = self.store.audit(&rec, OffsetDateTime::now_utc()).await {
            tracing::error!(error = %e, kind, detail, "could not write approver audit record");
        }
    }

    /// Files a request after checking its consistency; idempotent on `request_id`.
    pub async fn file(
        self: &Arc<Self>,
        req: ApprovalRequest,
        now: OffsetDateTime,
    ) -> Result<FiledRequest, ServiceError> {
        if statement_sha256(&req.statement) != req.statement_sha256.to_ascii_lowercase() {
            return Err(ServiceError::Invalid(format!(
                "request {}: statement_sha256 is not the SHA-256 of the statement text",
                req.request_id
            )));
        }
        if req.expires_at <= now {
            return Err(ServiceError::Invalid(format!(
                "request {}: expires_at is in the past; check the agent's clock",
                req.request_id
            )));
        }
        if req.approvers.is_empty() || req.quorum == 0 {
            return Err(ServiceError::Invalid(format!(
                "request {}: a rule needs at least one approver group and a quorum of at least 1",
                req.request_id
            )));
        }
        let id = req.request_id;
        match self.store.insert_request(&req, now).await? {
            Filed::New => {
                tracing::info!(request = %id, host = %req.host, rule = %req.rule, "approval request filed");
                self.audit("filed", Some(&req.host), Some(id), 201, &req.rule)
                    .await;
                if let Some(view) = self.view(id).await? {
                    let this = Arc::clone(self);
                    tokio::spawn(async move { this.notifier.filed(&view).await });
                }
                Ok(FiledRequest {
                    request_id: id,
                    status: RequestStatus::Pending,
                })
            }
            Filed::Existing(status) => Ok(FiledRequest {
                request_id: id,
                status,
            }),
            Filed::Conflict => Err(ServiceError::Conflict(id)),
        }
    }

    /// The request with votes and decision.
    pub async fn view(&self, id: Uuid) -> Result<Option<RequestView>, ServiceError> {
        let Some(stored) = self.store.get_request(id).await? else {
            return Ok(None);
        };
        Ok(Some(self.to_view(stored).await?))
    }

    async fn to_view(&self, s: StoredRequest) -> Result<RequestView, ServiceError> {
        let votes = self.store.votes(s.request.request_id).await?;
        Ok(RequestView {
            request: s.request,
            status: s.status,
            votes,
            decision: s.decision,
            break_glass: s.break_glass,
            created_at: s.created_at,
        })
    }

    /// Requests by status and text, newest first.
    pub async fn list(
        &self,
        status: Option<RequestStatus>,
        q: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RequestView>, ServiceError> {
        let mut out = Vec::new();
        for s in self.store.list_requests(status, q, limit).await? {
            out.push(self.to_view(s).await?);
        }
        Ok(out)
    }

    /// Waits up to `wait` for the request's decision; expires it when its time passed.
    pub async fn wait_decision(
        self: &Arc<Self>,
        id: Uuid,
        wait: Duration,
    ) -> Result<Option<SignedDecision>, ServiceError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut waiter = self.waiters.subscribe(id);
        loop {
            let Some(stored) = self.store.get_request(id).await? else {
                return Err(ServiceError::UnknownRequest(id));
            };
            if let Some(d) = stored.decision {
                return Ok(Some(d));
            }
            let now = OffsetDateTime::now_utc();
            if stored.request.expires_at < now {
                self.expire(id, now).await?;
                continue;
            }
            let expiry = tokio::time::Instant::now()
                + Duration::try_from(stored.request.expires_at - now).unwrap_or_default();
            tokio::select! {
                changed = waiter.rx.changed() => {
                    if changed.is_err() {
                        return Ok(None);
                    }
                }
                () = tokio::time::sleep_until(deadline.min(expiry + Duration::from_millis(5))) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn principal(&self, name: &str) -> Result<&PrincipalEntry, ServiceError> {
        self.directory
            .get(name)
            .ok_or_else(|| ServiceError::UnknownPrincipal(name.to_string()))
    }

    fn decision(
        &self,
        req: &ApprovalRequest,
        outcome: Outcome,
        approvers: Vec<String>,
        reason: String,
        now: OffsetDateTime,
    ) -> SignedDecision {
        let mut d = SignedDecision::new(
            req.request_id,
            &req.host,
            &req.session_id,
            &req.statement_sha256,
            outcome,
            approvers,
            reason,
            now,
            req.expires_at.max(now + DECISION_GRACE),
        );
        d.sign(&self.key);
        d
    }

    /// Casts `voter`'s vote from `channel` (`api`, `slack`, `teams`, `web`).
    pub async fn vote(
        self: &Arc<Self>,
        id: Uuid,
        voter: &str,
        vote: Vote,
        comment: Option<&str>,
        channel: &str,
        now: OffsetDateTime,
    ) -> Result<VoteOutcome, ServiceError> {
        let principal = self.principal(voter)?;
        let Some(mut tx) = self.store.lock_request(id).await? else {
            return Err(ServiceError::UnknownRequest(id));
        };
        let status = tx.current.status;
        if status != RequestStatus::Pending {
            return Err(ServiceError::NotPending { id, status });
        }
        let req = tx.current.request.clone();
        if req.expires_at < now {
            tx.commit().await?;
            self.expire(id, now).await?;
            return Err(ServiceError::Expired(id));
        }
        rules::check_vote(&req, principal, &self.directory, &tx.votes)?;
        let comment = comment.map(str::trim).filter(|c| !c.is_empty());
        tx.insert_vote(voter, vote, comment, channel, now).await?;
        let (status, approvals) = match rules::tally(req.quorum, &tx.votes) {
            Tally::Pending { approvals } => (RequestStatus::Pending, approvals),
            Tally::Approved { approvers } => {
                let n = approvers.len() as u32;
                let d = self.decision(
                    &req,
                    Outcome::Approved,
                    approvers,
                    comment.unwrap_or("").to_string(),
                    now,
                );
                tx.decide(&d, RequestStatus::Approved, false, &self.replica)
                    .await?;
                (RequestStatus::Approved, n)
            }
            Tally::Denied { by } => {
                let reason = comment.map_or_else(|| format!("denied by {by}"), str::to_string);
                let d = self.decision(&req, Outcome::Denied, vec![by], reason, now);
                tx.decide(&d, RequestStatus::Denied, false, &self.replica)
                    .await?;
                (RequestStatus::Denied, 0)
            }
        };
        tx.commit().await?;
        tracing::info!(request = %id, voter, vote = vote.as_str(), channel, status = status.as_str(), "vote recorded");
        self.audit(
            "vote",
            Some(voter),
            Some(id),
            200,
            &format!("{} via {channel}: {}", vote.as_str(), comment.unwrap_or("")),
        )
        .await;
        if status != RequestStatus::Pending {
            self.after_decision(id, false).await?;
        }
        Ok(VoteOutcome {
            request_id: id,
            status,
            approvals,
            quorum: req.quorum,
        })
    }

    /// Break-glass: a member of the rule's emergency group self-authorises the request
    /// with a mandatory reason; flagged, alerted everywhere and queued for review.
    pub async fn break_glass(
        self: &Arc<Self>,
        id: Uuid,
        voter: &str,
        reason: &str,
        channel: &str,
        now: OffsetDateTime,
    ) -> Result<VoteOutcome, ServiceError> {
        let principal = self.principal(voter)?;
        let Some(mut tx) = self.store.lock_request(id).await? else {
            return Err(ServiceError::UnknownRequest(id));
        };
        let status = tx.current.status;
        if status != RequestStatus::Pending {
            return Err(ServiceError::NotPending { id, status });
        }
        let req = tx.current.request.clone();
        if req.expires_at < now {
            tx.commit().await?;
            self.expire(id, now).await?;
            return Err(ServiceError::Expired(id));
        }
        rules::check_break_glass(&req, principal, reason)?;
        let reason = format!("break-glass by {voter}: {}", reason.trim());
        tx.insert_vote(voter, Vote::Approve, Some(&reason), channel, now)
            .await?;
        let d = self.decision(
            &req,
            Outcome::Approved,
            vec![voter.to_string()],
            reason.clone(),
            now,
        );
        tx.decide(&d, RequestStatus::Approved, true, &self.replica)
            .await?;
        tx.commit().await?;
        tracing::warn!(request = %id, voter, %reason, "BREAK-GLASS approval");
        self.audit("break_glass", Some(voter), Some(id), 200, &reason)
            .await;
        self.after_decision(id, true).await?;
        Ok(VoteOutcome {
            request_id: id,
            status: RequestStatus::Approved,
            approvals: 1,
            quorum: req.quorum,
        })
    }

    /// Expires one pending request whose time passed (no-op otherwise).
    pub async fn expire(
        self: &Arc<Self>,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<(), ServiceError> {
        let Some(mut tx) = self.store.lock_request(id).await? else {
            return Ok(());
        };
        let req = tx.current.request.clone();
        if tx.current.status != RequestStatus::Pending || req.expires_at >= now {
            return Ok(tx.commit().await?);
        }
        let d = self.decision(
            &req,
            Outcome::Expired,
            vec![],
            "no decision before expiry".into(),
            now,
        );
        let changed = tx
            .decide(&d, RequestStatus::Expired, false, &self.replica)
            .await?;
        tx.commit().await?;
        if changed {
            tracing::info!(request = %id, "approval request expired");
            self.audit("expired", None, Some(id), 200, "no decision before expiry")
                .await;
            self.after_decision(id, false).await?;
        }
        Ok(())
    }

    /// Expires every pending request whose time passed; returns how many.
    pub async fn sweep(self: &Arc<Self>, now: OffsetDateTime) -> Result<usize, ServiceError> {
        let due = self.store.due_for_expiry(now).await?;
        for id in &due {
            self.expire(*id, now).await?;
        }
        Ok(due.len())
    }

    /// Wakes the waiting agents first, then notifies the channels in the background
    /// (the deciding caller does not wait for Slack or Teams).
    async fn after_decision(
        self: &Arc<Self>,
        id: Uuid,
        break_glass: bool,
    ) -> Result<(), ServiceError> {
        self.wake(id);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            match this.view(id).await {
                Ok(Some(view)) => {
                    if break_glass {
                        this.notifier.break_glass(&view).await;
                    }
                    this.notifier.decided(&view).await;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(request = %id, error = %e, "could not load the decided request for channel notifications")
                }
            }
        });
        Ok(())
    }

    /// "Ask for context": records the question and forwards it to the channels.
    pub async fn ask_context(
        self: &Arc<Self>,
        id: Uuid,
        by: &str,
        channel: &str,
    ) -> Result<(), ServiceError> {
        let view = self
            .view(id)
            .await?
            .ok_or(ServiceError::UnknownRequest(id))?;
        self.audit(
            "context_requested",
            Some(by),
            Some(id),
            200,
            &format!("via {channel}"),
        )
        .await;
        let this = Arc::clone(self);
        let by = by.to_string();
        tokio::spawn(async move { this.notifier.context_requested(&view, &by).await });
        Ok(())
    }

    /// Marks a break-glass approval reviewed by someone other than who broke the glass.
    pub async fn review(
        &self,
        id: Uuid,
        reviewer: &str,
        comment: &str,
    ) -> Result<(), ServiceError> {
        let principal = self.principal(reviewer)?;
        let view = self
            .view(id)
            .await?
            .ok_or(ServiceError::UnknownRequest(id))?;
        if principal.kind != dbward_approval_api::PrincipalKind::Human {
            return Err(RuleViolation::NotHuman {
                principal: reviewer.into(),
                kind: principal.kind.as_str(),
            }
            .into());
        }
        let broke = view
            .decision
            .as_ref()
            .is_some_and(|d| d.approvers.iter().any(|a| a == reviewer));
        if broke || view.request.requester.principal == reviewer {
            return Err(RuleViolation::SelfApproval {
                principal: reviewer.into(),
            }
            .into());
        }
        if !self.store.mark_reviewed(id, reviewer, comment).await? {
            return Err(ServiceError::Invalid(format!(
                "request {id} is not an unreviewed break-glass approval"
            )));
        }
        self.audit(
            "break_glass_reviewed",
            Some(reviewer),
            Some(id),
            200,
            comment,
        )
        .await;
        Ok(())
    }

    /// Background loops: expiry sweeps and the check for other replicas' decisions.
    pub fn spawn_background(self: &Arc<Self>, sweep_every: Duration, poll_every: Duration) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(sweep_every);
            loop {
                tick.tick().await;
                if let Err(e) = this.sweep(OffsetDateTime::now_utc()).await {
                    tracing::error!(error = %e, "expiry sweep failed");
                }
            }
        });
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll_every);
            // Decisions are stamped with the deciding replica's clock; look back far
            // enough to cover clock skew between replicas.
            let skew = time::Duration::seconds(10);
            let mut since = OffsetDateTime::now_utc() - skew;
            loop {
                tick.tick().await;
                if this.waiters.is_empty() {
                    since = OffsetDateTime::now_utc() - skew;
                    continue;
                }
                let now = OffsetDateTime::now_utc();
                match this.store.decided_elsewhere(since, &this.replica).await {
                    Ok(ids) => {
                        for id in ids {
                            this.wake(id);
                        }
                        since = now - skew;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "checking for decisions of other replicas failed")
                    }
                }
            }
        });
    }
}
