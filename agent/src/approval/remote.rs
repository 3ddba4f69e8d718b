//! The remote approval channel: files held statements with the central `dbward-approver`,
//! long-polls for the signed decision and accepts it only after verifying it against the
//! pinned approver key (signature, binding, expiry, single use).
//!
//! A decision that fails verification is a denial whose reason names the problem, and is
//! reported as [`ShimEvent::DecisionRejected`] so the audit trail records it.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use dbward_approval_api as api;
use dbward_approval_api::{
    ApproverClient, Binding, ClientError, DecisionError, DecisionVerifier, Outcome, PrincipalKind,
    SignedDecision,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use super::{ApprovalChannel, ApprovalError, ApprovalRequest, BoxFuture, Decision, Ticket};
use crate::shim::events::{EventSink, ShimEvent};

/// Name in `Decision::Denied::by` when the agent itself refused an approver's decision.
pub const REJECTED_BY: &str = "dbward-agent";
/// Consecutive failed polls (transport or server errors) before the channel gives up.
const MAX_POLL_FAILURES: u32 = 3;
/// Pause between polls after a failure.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// How long past the request's expiry a still-pending answer is tolerated before the
/// agent calls the request expired on its own.
const EXPIRY_GRACE: Duration = Duration::from_secs(30);

fn default_poll_wait_secs() -> u64 {
    30
}

/// `[approval.remote]` of agent.toml: where the central approver is and how to trust it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// Base URL of the dbward-approver service, e.g. `https://approver.example.com:8443`.
    pub url: String,
    /// This host's token (`[[hosts]] token` in approver.toml). Prefer `token_file`.
    #[serde(default)]
    pub token: Option<String>,
    /// File holding this host's token (surrounding whitespace ignored); keep it mode 0600.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The approver's decision-signing public key, base64 (`dbward-approver pubkey`).
    #[serde(default)]
    pub public_key: Option<String>,
    /// File holding the approver's public key (base64, surrounding whitespace ignored).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// Longest single decision long-poll in seconds (the approver caps it at its
    /// `max_wait_secs`); default 30.
    #[serde(default = "default_poll_wait_secs")]
    pub poll_wait_secs: u64,
}

impl fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("public_key", &self.public_key)
            .field("public_key_file", &self.public_key_file)
            .field("poll_wait_secs", &self.poll_wait_secs)
            .finish()
    }
}

/// Why the remote channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The configuration has problems (all of them are listed).
    #[error("[approval.remote] is not usable:\n  - {}", .0.join("\n  - "))]
    Config(Vec<String>),
}

fn read_secret(path: &Path, what: &str) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Ok(_) => Err(format!("{what} file {} is empty", path.display())),
        Err(e) => Err(format!("cannot read {what} file {}: {e}", path.display())),
    }
}

/// Exactly one of an inline value and a file must be given.
fn one_of(
    inline: Option<&String>,
    file: Option<&PathBuf>,
    what: &str,
    keys: (&str, &str),
) -> Result<String, String> {
    match (inline, file) {
        (Some(v), None) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        (Some(_), None) => Err(format!("`{}` is empty", keys.0)),
        (None, Some(path)) => read_secret(path, what),
        (Some(_), Some(_)) => Err(format!("set either `{}` or `{}`, not both", keys.0, keys.1)),
        (None, None) => Err(format!("{what} missing: set `{}` or `{}`", keys.0, keys.1)),
    }
}

impl RemoteConfig {
    /// Resolves token and key (reading their files) into a client and a verifier, or
    /// every problem found.
    fn resolve(&self) -> Result<(ApproverClient, DecisionVerifier), RemoteError> {
        let mut problems = Vec::new();
        let token = one_of(
            self.token.as_ref(),
            self.token_file.as_ref(),
            "host token",
            ("token", "token_file"),
        )
        .map_err(|e| problems.push(e))
        .ok();
        let verifier = one_of(
            self.public_key.as_ref(),
            self.public_key_file.as_ref(),
            "approver public key",
            ("public_key", "public_key_file"),
        )
        .and_then(|k| {
            DecisionVerifier::from_base64(&k).map_err(|e| {
                format!("approver public key: {e} (copy it from `dbward-approver pubkey`)")
            })
        })
        .map_err(|e| problems.push(e))
        .ok();
        if self.poll_wait_secs == 0 {
            problems.push("`poll_wait_secs` must be at least 1".into());
        }
        let client = match token {
            Some(token) => ApproverClient::new(&self.url, token)
                .map_err(|e| problems.push(format!("`url`: {e}")))
                .ok(),
            None => None,
        };
        match (client, verifier) {
            (Some(c), Some(v)) if problems.is_empty() => Ok((c, v)),
            _ => Err(RemoteError::Config(problems)),
        }
    }
}

/// What a decision must match, kept from filing until the decision arrives.
struct Pending {
    host: String,
    session_id: String,
    statement_sha256: String,
    expires_at: SystemTime,
    cancelled: watch::Sender<bool>,
}

struct Inner {
    client: ApproverClient,
    verifier: DecisionVerifier,
    url: String,
    poll_wait: Duration,
    events: EventSink,
    pending: Mutex<HashMap<Uuid, Arc<Pending>>>,
}

/// Approvals decided on the central `dbward-approver`; cheap to clone.
#[derive(Clone)]
pub struct RemoteApprovals {
    inner: Arc<Inner>,
}

impl fmt::Debug for RemoteApprovals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteApprovals")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl RemoteApprovals {
    /// A channel to the approver described by `config`; rejected decisions are reported on
    /// `events` (give it a sink on the shim's event channel: `EventSink::new(tx.clone())`).
    pub fn new(config: &RemoteConfig, events: EventSink) -> Result<Self, RemoteError> {
        let (client, verifier) = config.resolve()?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                verifier,
                url: config.url.clone(),
                poll_wait: Duration::from_secs(config.poll_wait_secs),
                events,
                pending: Mutex::new(HashMap::new()),
            }),
        })
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<Pending>>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Long-polls until decided, expired, cancelled, or the approver stays unreachable.
    async fn wait(&self, id: Uuid, pending: &Pending) -> Result<Decision, ApprovalError> {
        let mut cancelled = pending.cancelled.subscribe();
        let mut failures = 0;
        loop {
            if *cancelled.borrow_and_update() {
                return Ok(Decision::Cancelled);
            }
            let polled = tokio::select! {
                r = self.client.wait_decision(id, self.poll_wait) => r,
                _ = cancelled.changed() => return Ok(Decision::Cancelled),
            };
            match polled {
                Ok(Some(decision)) => return Ok(self.judge(id, pending, &decision)),
                Ok(None) => {
                    failures = 0;
                    if SystemTime::now() > pending.expires_at + EXPIRY_GRACE {
                        tracing::warn!(request = %id, "approver still reports the request pending long after its expiry; treating it as expired");
                        return Ok(Decision::Expired);
                    }
                }
                Err(e) => {
                    failures += 1;
                    let permanent = matches!(&e, ClientError::Status { status, .. } if status.is_client_error())
                        || matches!(e, ClientError::BadUrl { .. });
                    if permanent || failures >= MAX_POLL_FAILURES {
                        return Err(ApprovalError::Unavailable(format!(
                            "waiting for the decision on request {id}: {e}"
                        )));
                    }
                    tracing::debug!(request = %id, error = %e, failures, "decision poll failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    /// Verifies `decision`; a rejected one becomes a denial and a `DecisionRejected` event.
    fn judge(&self, id: Uuid, pending: &Pending, decision: &SignedDecision) -> Decision {
        let binding = Binding {
            request_id: id,
            host: &pending.host,
            session_id: &pending.session_id,
            statement_sha256: &pending.statement_sha256,
        };
        match self
            .verifier
            .verify(decision, &binding, OffsetDateTime::now_utc())
        {
            Ok(v) => accepted(v),
            Err(e) => {
                tracing::warn!(request = %id, session = %pending.session_id, problem = problem_code(&e), error = %e, "rejected the approver's decision");
                self.events.emit(ShimEvent::DecisionRejected {
                    session_id: pending.session_id.clone(),
                    request_id: id,
                    problem: problem_code(&e).to_owned(),
                    detail: e.to_string(),
                });
                Decision::Denied {
                    by: REJECTED_BY.to_owned(),
                    reason: Some(format!("the approver's decision was rejected: {e}")),
                }
            }
        }
    }
}

fn accepted(v: api::VerifiedDecision) -> Decision {
    let comment = (!v.reason.is_empty()).then_some(v.reason);
    match v.outcome {
        Outcome::Approved => Decision::Approved {
            approvers: v.approvers,
            comment,
        },
        Outcome::Denied => Decision::Denied {
            by: if v.approvers.is_empty() {
                "approver".to_owned()
            } else {
                v.approvers.join(", ")
            },
            reason: comment,
        },
        Outcome::Expired => Decision::Expired,
    }
}

/// Stable code of a verification failure, as carried in the event.
pub fn problem_code(e: &DecisionError) -> &'static str {
    match e {
        DecisionError::MalformedSignature { .. } => "malformed_signature",
        DecisionError::ForgedSignature { .. } => "forged_signature",
        DecisionError::WrongRequest { .. } => "wrong_request",
        DecisionError::WrongHost { .. } => "wrong_host",
        DecisionError::WrongSession { .. } => "wrong_session",
        DecisionError::WrongStatement { .. } => "wrong_statement",
        DecisionError::Expired { .. } => "expired",
        DecisionError::Replayed { .. } => "replayed",
    }
}

fn principal_kind(kind: Option<&str>) -> PrincipalKind {
    match kind {
        Some("human") => PrincipalKind::Human,
        Some("ai_agent") => PrincipalKind::AiAgent,
        _ => PrincipalKind::Service,
    }
}

/// The wire form of a request. A requester without a resolved principal is named after
/// its OS user or database role; an unknown kind is `service` (never treated as human).
pub fn wire_request(r: &ApprovalRequest) -> api::ApprovalRequest {
    let q = &r.requester;
    let principal = [&q.principal, &q.client_user, &q.db_user]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| "unknown".to_owned());
    api::ApprovalRequest {
        request_id: r.request_id,
        host: r.host.clone(),
        session_id: r.session_id.clone(),
        requester: api::Requester {
            principal,
            kind: principal_kind(q.kind.as_deref()),
            owner: q.owner.clone(),
            groups: q.groups.clone(),
            db_user: q.db_user.clone(),
            client_user: q.client_user.clone(),
            exe: q.exe.clone(),
            unit: q.unit.clone(),
        },
        database: r.database.clone(),
        statement: r.statement.clone(),
        statement_sha256: r.statement_sha256.clone(),
        class: r.class.clone().unwrap_or_else(|| "unknown".to_owned()),
        tables: r.tables.clone(),
        rule: r.rule.clone(),
        reason: r.reason.clone(),
        approvers: r.approvers.clone(),
        quorum: r.quorum.max(1),
        expires_at: OffsetDateTime::from(r.expires_at()),
        break_glass_group: r.break_glass_group.clone(),
    }
}

impl ApprovalChannel for RemoteApprovals {
    fn file(&self, request: ApprovalRequest) -> BoxFuture<'_, Result<Ticket, ApprovalError>> {
        Box::pin(async move {
            let id = request.request_id;
            let filed = self
                .inner
                .client
                .file_request(&wire_request(&request))
                .await
                .map_err(|e| ApprovalError::Unavailable(format!("filing request {id}: {e}")))?;
            tracing::info!(request = %id, status = filed.status.as_str(), url = %self.inner.url, "approval request filed with the approver");
            let (cancelled, _) = watch::channel(false);
            self.inner.lock().insert(
                id,
                Arc::new(Pending {
                    host: request.host.clone(),
                    session_id: request.session_id.clone(),
                    statement_sha256: request.statement_sha256.clone(),
                    expires_at: request.expires_at(),
                    cancelled,
                }),
            );
            Ok(Ticket {
                request_id: id,
                expires_at: request.expires_at(),
                how_to_approve: format!(
                    "an approver decides it in dbward-approver at {} (web UI, chat, or `dbward approvals approve {id} --server {}`)",
                    self.inner.url, self.inner.url
                ),
            })
        })
    }

    fn decision(&self, ticket: &Ticket) -> BoxFuture<'static, Result<Decision, ApprovalError>> {
        let id = ticket.request_id;
        let inner = Arc::clone(&self.inner);
        let pending = inner.lock().get(&id).cloned();
        Box::pin(async move {
            let Some(pending) = pending else {
                return Err(ApprovalError::NotFound { id });
            };
            let outcome = inner.wait(id, &pending).await;
            inner.lock().remove(&id);
            outcome
        })
    }

    /// Stops waiting for the request. The approver has no withdraw call: the request stays
    /// in its inbox until someone decides it or it expires, and any decision is ignored.
    fn cancel(&self, ticket: &Ticket) {
        if let Some(p) = self.inner.lock().remove(&ticket.request_id) {
            p.cancelled.send_replace(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Requester, statement_sha256};
    use super::*;

    fn request(requester: Requester, class: Option<&str>) -> ApprovalRequest {
        ApprovalRequest {
            request_id: Uuid::from_u128(5),
            host: "db1".into(),
            session_id: "s1".into(),
            requester,
            database: Some("shop".into()),
            statement: "DROP TABLE t".into(),
            statement_sha256: statement_sha256("DROP TABLE t"),
            class: class.map(str::to_owned),
            tables: vec!["t".into()],
            rule: "ddl".into(),
            reason: None,
            approvers: vec!["dba".into()],
            quorum: 0,
            break_glass_group: None,
            filed_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            timeout: Duration::from_secs(300),
        }
    }

    #[test]
    fn requester_is_named_and_kinded_conservatively_on_the_wire() {
        let r = |principal: Option<&str>, kind: Option<&str>, client: Option<&str>| Requester {
            principal: principal.map(str::to_owned),
            kind: kind.map(str::to_owned),
            client_user: client.map(str::to_owned),
            db_user: Some("app".into()),
            ..Requester::default()
        };
        let cases = [
            (
                r(Some("alice"), Some("human"), Some("x")),
                "alice",
                PrincipalKind::Human,
            ),
            (
                r(Some("bot"), Some("ai_agent"), None),
                "bot",
                PrincipalKind::AiAgent,
            ),
            (
                r(Some("cron"), Some("service"), None),
                "cron",
                PrincipalKind::Service,
            ),
            (
                r(None, Some("robot"), Some("deploy")),
                "deploy",
                PrincipalKind::Service,
            ),
            (r(None, None, None), "app", PrincipalKind::Service),
            (r(Some(""), None, Some("")), "app", PrincipalKind::Service),
        ];
        for (requester, name, kind) in cases {
            let wire = wire_request(&request(requester.clone(), Some("ddl")));
            assert_eq!(
                (wire.requester.principal.as_str(), wire.requester.kind),
                (name, kind),
                "{requester:?}"
            );
        }
    }

    #[test]
    fn wire_request_carries_expiry_quorum_and_class() {
        let wire = wire_request(&request(Requester::default(), None));
        assert_eq!(wire.class, "unknown");
        assert_eq!(wire.quorum, 1);
        assert_eq!(
            api::timefmt::format(wire.expires_at),
            "2027-01-15T08:05:00Z"
        );
        assert_eq!(wire.statement_sha256, statement_sha256("DROP TABLE t"));
    }

    #[test]
    fn config_problems_are_all_reported_together() {
        let cfg = RemoteConfig {
            url: "not a url".into(),
            token: Some("t".repeat(20)),
            token_file: Some("/nonexistent/token".into()),
            public_key: Some("nope".into()),
            public_key_file: None,
            poll_wait_secs: 0,
        };
        let RemoteError::Config(problems) =
            RemoteApprovals::new(&cfg, EventSink::new(tokio::sync::mpsc::channel(1).0))
                .expect_err("bad config");
        let text = problems.join("\n");
        assert!(text.contains("either `token` or `token_file`"), "{text}");
        assert!(text.contains("approver public key"), "{text}");
        assert!(text.contains("poll_wait_secs"), "{text}");
    }

    #[test]
    fn config_reads_token_and_key_files_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        std::fs::write(dir.path().join("token"), "host-token-0123456789\n").expect("write");
        std::fs::write(
            dir.path().join("key"),
            format!("{}\n", api::verifying_key_to_base64(&key.verifying_key())),
        )
        .expect("write");
        let text = format!(
            "url = \"http://127.0.0.1:9\"\ntoken_file = \"{0}/token\"\npublic_key_file = \"{0}/key\"\n",
            dir.path().display()
        );
        let cfg: RemoteConfig = toml::from_str(&text).expect("parse");
        assert_eq!(cfg.poll_wait_secs, 30);
        let sink = EventSink::new(tokio::sync::mpsc::channel(1).0);
        RemoteApprovals::new(&cfg, sink).expect("usable");
        assert!(toml::from_str::<RemoteConfig>(&format!("{text}tokn = \"x\"\n")).is_err());
        assert!(
            !format!(
                "{:?}",
                RemoteConfig {
                    token: Some("secret-xyz".into()),
                    ..cfg
                }
            )
            .contains("secret-xyz")
        );
    }
}
