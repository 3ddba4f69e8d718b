//! The local on-host approval store: pending requests in memory with a timeout, decided by
//! `dbward approvals approve|deny ID` on the host (no self-approval, approver groups enforced).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::watch;
use uuid::Uuid;

use super::{
    ApprovalChannel, ApprovalError, ApprovalRequest, BoxFuture, Decision, GroupLookup, OsGroups,
    Ticket,
};

/// Who is deciding: the OS user calling the CLI (from the control socket's peer credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverIdentity {
    /// OS user name.
    pub user: String,
}

/// What an approve vote achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vote {
    /// Counted; more approvals are needed.
    Recorded {
        /// Distinct approvals so far.
        have: u32,
        /// Quorum.
        need: u32,
    },
    /// Quorum reached: the statement is released.
    Approved,
}

/// A pending request as listed to approvers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingApproval {
    /// The request.
    pub request: ApprovalRequest,
    /// Approvers who said yes so far.
    pub approved_by: Vec<String>,
}

struct Entry {
    request: ApprovalRequest,
    approved_by: Vec<String>,
    decided: watch::Sender<Option<Decision>>,
}

#[derive(Default)]
struct State {
    pending: HashMap<Uuid, Entry>,
}

/// In-memory approvals decided on this host.
#[derive(Clone)]
pub struct LocalApprovals {
    state: Arc<Mutex<State>>,
    groups: Arc<dyn GroupLookup>,
}

impl std::fmt::Debug for LocalApprovals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalApprovals").finish_non_exhaustive()
    }
}

impl Default for LocalApprovals {
    fn default() -> Self {
        Self::new(Arc::new(OsGroups))
    }
}

impl LocalApprovals {
    /// A store that checks approver groups with `groups`.
    pub fn new(groups: Arc<dyn GroupLookup>) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            groups,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Pending requests, oldest first; expired ones are dropped on the way.
    pub fn list(&self) -> Vec<PendingApproval> {
        let now = SystemTime::now();
        let mut state = self.lock();
        state.pending.retain(|_, e| {
            let live = e.request.expires_at() > now;
            if !live {
                e.decided.send_replace(Some(Decision::Expired));
            }
            live
        });
        let mut out: Vec<_> = state
            .pending
            .values()
            .map(|e| PendingApproval {
                request: e.request.clone(),
                approved_by: e.approved_by.clone(),
            })
            .collect();
        out.sort_by_key(|p| p.request.filed_at);
        out
    }

    fn check_approver(
        &self,
        request: &ApprovalRequest,
        approver: &ApproverIdentity,
    ) -> Result<(), ApprovalError> {
        let r = &request.requester;
        let own = [&r.client_user, &r.principal, &r.owner]
            .into_iter()
            .flatten()
            .any(|u| *u == approver.user);
        if own {
            return Err(ApprovalError::SelfApproval {
                user: approver.user.clone(),
                id: request.request_id,
            });
        }
        let groups = self.groups.groups_of(&approver.user)?;
        if !request.approvers.iter().any(|g| groups.contains(g)) {
            return Err(ApprovalError::NotAnApprover {
                user: approver.user.clone(),
                id: request.request_id,
                groups: request.approvers.join(", "),
            });
        }
        Ok(())
    }

    /// Records an approval by `approver`; releases the statement once the quorum is reached.
    pub fn approve(
        &self,
        id: Uuid,
        approver: &ApproverIdentity,
        comment: Option<String>,
    ) -> Result<Vote, ApprovalError> {
        let request = self.live_request(id)?;
        self.check_approver(&request, approver)?;
        let mut state = self.lock();
        let entry = state
            .pending
            .get_mut(&id)
            .ok_or(ApprovalError::NotFound { id })?;
        if !entry.approved_by.contains(&approver.user) {
            entry.approved_by.push(approver.user.clone());
        }
        let have = u32::try_from(entry.approved_by.len()).unwrap_or(u32::MAX);
        let need = entry.request.quorum.max(1);
        if have < need {
            return Ok(Vote::Recorded { have, need });
        }
        if let Some(entry) = state.pending.remove(&id) {
            entry.decided.send_replace(Some(Decision::Approved {
                approvers: entry.approved_by,
                comment,
            }));
        }
        Ok(Vote::Approved)
    }

    /// Denies the request; the held statement fails with `comment` as the reason.
    pub fn deny(
        &self,
        id: Uuid,
        approver: &ApproverIdentity,
        comment: Option<String>,
    ) -> Result<(), ApprovalError> {
        let request = self.live_request(id)?;
        self.check_approver(&request, approver)?;
        if let Some(entry) = self.lock().pending.remove(&id) {
            entry.decided.send_replace(Some(Decision::Denied {
                by: approver.user.clone(),
                reason: comment,
            }));
        }
        Ok(())
    }

    fn live_request(&self, id: Uuid) -> Result<ApprovalRequest, ApprovalError> {
        let mut state = self.lock();
        let entry = state
            .pending
            .get(&id)
            .ok_or(ApprovalError::NotFound { id })?;
        if entry.request.expires_at() <= SystemTime::now() {
            if let Some(e) = state.pending.remove(&id) {
                e.decided.send_replace(Some(Decision::Expired));
            }
            return Err(ApprovalError::NotFound { id });
        }
        Ok(entry.request.clone())
    }
}

impl ApprovalChannel for LocalApprovals {
    fn file(&self, request: ApprovalRequest) -> BoxFuture<'_, Result<Ticket, ApprovalError>> {
        Box::pin(async move {
            let id = request.request_id;
            let ticket = Ticket {
                request_id: id,
                expires_at: request.expires_at(),
                how_to_approve: format!(
                    "an approver on this host runs `dbward approvals approve {id}` (or `dbward approvals deny {id}`)"
                ),
            };
            let (decided, _) = watch::channel(None);
            self.lock().pending.insert(
                id,
                Entry {
                    request,
                    approved_by: Vec::new(),
                    decided,
                },
            );
            Ok(ticket)
        })
    }

    fn decision(&self, ticket: &Ticket) -> BoxFuture<'static, Result<Decision, ApprovalError>> {
        let id = ticket.request_id;
        let expires_at = ticket.expires_at;
        let rx = self.lock().pending.get(&id).map(|e| e.decided.subscribe());
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            let Some(mut rx) = rx else {
                return Err(ApprovalError::NotFound { id });
            };
            let left = expires_at
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            match tokio::time::timeout(left, rx.wait_for(Option::is_some)).await {
                Ok(Ok(decision)) => Ok(decision.clone().unwrap_or(Decision::Expired)),
                Ok(Err(_)) => Err(ApprovalError::Unavailable(format!(
                    "request {id} was dropped by the local store"
                ))),
                Err(_) => {
                    state
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .pending
                        .remove(&id);
                    Ok(Decision::Expired)
                }
            }
        })
    }

    fn cancel(&self, ticket: &Ticket) {
        if let Some(e) = self.lock().pending.remove(&ticket.request_id) {
            e.decided.send_replace(Some(Decision::Cancelled));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Requester, statement_sha256};
    use super::*;

    struct FixedGroups;

    impl GroupLookup for FixedGroups {
        fn groups_of(&self, user: &str) -> Result<Vec<String>, ApprovalError> {
            Ok(match user {
                "alice" | "bob" | "carol" => vec!["dba".into()],
                "eve" => vec!["dev".into()],
                _ => vec![],
            })
        }
    }

    fn request(quorum: u32, timeout: Duration) -> ApprovalRequest {
        let statement = "DELETE FROM orders".to_owned();
        ApprovalRequest {
            request_id: Uuid::new_v4(),
            host: "db1".into(),
            session_id: "s1".into(),
            requester: Requester {
                principal: Some("billing-bot".into()),
                owner: Some("carol".into()),
                client_user: Some("bob".into()),
                ..Requester::default()
            },
            database: Some("shop".into()),
            statement_sha256: statement_sha256(&statement),
            statement,
            class: Some("delete".into()),
            tables: vec!["orders".into()],
            rule: "mass-delete".into(),
            reason: None,
            approvers: vec!["dba".into()],
            quorum,
            break_glass_group: None,
            filed_at: SystemTime::now(),
            timeout,
        }
    }

    fn who(user: &str) -> ApproverIdentity {
        ApproverIdentity { user: user.into() }
    }

    #[tokio::test]
    async fn approval_by_a_group_member_releases_the_statement() {
        let store = LocalApprovals::new(Arc::new(FixedGroups));
        let req = request(1, Duration::from_secs(60));
        let id = req.request_id;
        let ticket = store.file(req).await.expect("filed");
        let waiting = store.decision(&ticket);
        assert_eq!(store.list().len(), 1);
        assert_eq!(store.approve(id, &who("alice"), None), Ok(Vote::Approved));
        assert!(matches!(waiting.await, Ok(Decision::Approved { .. })));
        assert!(store.list().is_empty());
    }

    #[tokio::test]
    async fn requester_client_user_principal_and_owner_cannot_approve() {
        let store = LocalApprovals::new(Arc::new(FixedGroups));
        let req = request(1, Duration::from_secs(60));
        let id = req.request_id;
        store.file(req).await.expect("filed");
        for user in ["bob", "carol", "billing-bot"] {
            assert!(
                matches!(
                    store.approve(id, &who(user), None),
                    Err(ApprovalError::SelfApproval { .. })
                ),
                "{user}"
            );
        }
    }

    #[tokio::test]
    async fn approvers_outside_the_rules_groups_are_refused() {
        let store = LocalApprovals::new(Arc::new(FixedGroups));
        let req = request(1, Duration::from_secs(60));
        let id = req.request_id;
        store.file(req).await.expect("filed");
        assert!(matches!(
            store.deny(id, &who("eve"), None),
            Err(ApprovalError::NotAnApprover { .. })
        ));
    }

    #[tokio::test]
    async fn quorum_needs_distinct_approvers() {
        let store = LocalApprovals::new(Arc::new(FixedGroups));
        let req = request(2, Duration::from_secs(60));
        let id = req.request_id;
        store.file(req).await.expect("filed");
        let first = Vote::Recorded { have: 1, need: 2 };
        assert_eq!(store.approve(id, &who("alice"), None), Ok(first.clone()));
        assert_eq!(store.approve(id, &who("alice"), None), Ok(first));
        let other = ApproverIdentity {
            user: "dave".into(),
        };
        assert!(store.approve(id, &other, None).is_err());
    }

    #[tokio::test]
    async fn deny_carries_the_approvers_reason() {
        let store = LocalApprovals::new(Arc::new(FixedGroups));
        let req = request(1, Duration::from_secs(60));
        let id = req.request_id;
        let ticket = store.file(req).await.expect("filed");
        let waiting = store.decision(&ticket);
        store
            .deny(id, &who("alice"), Some("not during business hours".into()))
            .expect("denied");
        assert_eq!(
            waiting.await,
            Ok(Decision::Denied {
                by: "alice".into(),
                reason: Some("not during business hours".into())
            })
        );
    }

    #[tokio::test]
    async fn undecided_request_expires_and_disappears() {
        let store = LocalApprovals::new(Arc::new(FixedGroups));
        let req = request(1, Duration::from_millis(50));
        let id = req.request_id;
        let ticket = store.file(req).await.expect("filed");
        assert_eq!(store.decision(&ticket).await, Ok(Decision::Expired));
        assert!(matches!(
            store.approve(id, &who("alice"), None),
            Err(ApprovalError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn cancel_resolves_the_waiter_and_removes_the_request() {
        let store = LocalApprovals::new(Arc::new(FixedGroups));
        let ticket = store
            .file(request(1, Duration::from_secs(60)))
            .await
            .expect("filed");
        let waiting = store.decision(&ticket);
        store.cancel(&ticket);
        assert_eq!(waiting.await, Ok(Decision::Cancelled));
        assert!(store.list().is_empty());
    }
}
