//! Local approvals over the control socket: the replies of the `approvals_*` operations and
//! how they are answered. The approver is always the caller's OS user (SO_PEERCRED), never
//! anything the request says.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::approval::{
    ApprovalError, ApproverIdentity, LocalApprovals, PendingApproval, Vote, statement_sha256,
};

/// A pending local request as shown to approvers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingView {
    /// Request id.
    pub request_id: Uuid,
    /// This host.
    pub host: String,
    /// Session holding the statement.
    pub session_id: String,
    /// Principal from policy.
    pub principal: Option<String>,
    /// Principal kind.
    pub kind: Option<String>,
    /// Owner of the principal.
    pub owner: Option<String>,
    /// OS user of the client.
    pub client_user: Option<String>,
    /// Database role.
    pub db_user: Option<String>,
    /// Client executable.
    pub exe: Option<String>,
    /// Client systemd unit.
    pub unit: Option<String>,
    /// Database.
    pub database: Option<String>,
    /// The held statement.
    pub statement: String,
    /// Hex SHA-256 of the statement.
    pub statement_sha256: String,
    /// Statement class.
    pub class: Option<String>,
    /// Tables touched.
    pub tables: Vec<String>,
    /// Rule that held it.
    pub rule: String,
    /// Requester's justification.
    pub reason: Option<String>,
    /// Groups whose members may approve.
    pub approvers: Vec<String>,
    /// Approvals needed.
    pub quorum: u32,
    /// Who approved so far.
    pub approved_by: Vec<String>,
    /// When it was filed (RFC 3339).
    pub filed_at: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
}

fn rfc3339(t: std::time::SystemTime) -> String {
    dbward_approval_api::timefmt::format(time::OffsetDateTime::from(t))
}

impl From<PendingApproval> for PendingView {
    fn from(p: PendingApproval) -> Self {
        let r = p.request;
        Self {
            request_id: r.request_id,
            filed_at: rfc3339(r.filed_at),
            expires_at: rfc3339(r.expires_at()),
            host: r.host,
            session_id: r.session_id,
            principal: r.requester.principal,
            kind: r.requester.kind,
            owner: r.requester.owner,
            client_user: r.requester.client_user,
            db_user: r.requester.db_user,
            exe: r.requester.exe,
            unit: r.requester.unit,
            database: r.database,
            statement_sha256: statement_sha256(&r.statement),
            statement: r.statement,
            class: r.class,
            tables: r.tables,
            rule: r.rule,
            reason: r.reason,
            approvers: r.approvers,
            quorum: r.quorum,
            approved_by: p.approved_by,
        }
    }
}

/// The agent's answer to an `approvals_*` operation (one JSON line).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApprovalReply {
    /// Pending requests, oldest first.
    Pending {
        /// The requests.
        requests: Vec<PendingView>,
    },
    /// The approval was counted; more are needed.
    Recorded {
        /// Request id.
        request_id: Uuid,
        /// Distinct approvals so far.
        have: u32,
        /// Quorum.
        need: u32,
    },
    /// Quorum reached: the statement was released.
    Approved {
        /// Request id.
        request_id: Uuid,
        /// The approver (the caller).
        by: String,
    },
    /// The request was denied; the held statement fails with the comment.
    Denied {
        /// Request id.
        request_id: Uuid,
        /// The approver (the caller).
        by: String,
    },
    /// The operation was refused.
    Refused {
        /// Stable code: `self_approval`, `not_an_approver`, `not_found`, `group_lookup`,
        /// `unavailable`, `unknown_caller`, `no_local_approvals`.
        code: String,
        /// What was wrong and what to do.
        message: String,
    },
}

/// An `approvals_*` operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// List pending requests.
    List,
    /// Approve as the caller.
    Approve {
        /// Request id.
        id: Uuid,
        /// Comment.
        comment: Option<String>,
    },
    /// Deny as the caller.
    Deny {
        /// Request id.
        id: Uuid,
        /// Reason given to the requester.
        comment: Option<String>,
    },
}

fn refused(code: &str, message: impl Into<String>) -> ApprovalReply {
    ApprovalReply::Refused {
        code: code.to_owned(),
        message: message.into(),
    }
}

fn refusal(e: &ApprovalError) -> ApprovalReply {
    let code = match e {
        ApprovalError::NotFound { .. } => "not_found",
        ApprovalError::SelfApproval { .. } => "self_approval",
        ApprovalError::NotAnApprover { .. } => "not_an_approver",
        ApprovalError::GroupLookup { .. } => "group_lookup",
        ApprovalError::Unavailable(_) => "unavailable",
    };
    refused(code, e.to_string())
}

/// Answers `op` for the caller whose uid the socket reported (`None` when the kernel gave
/// no credentials). `user_name` maps the uid to an OS user name.
pub fn answer(
    op: Op,
    store: Option<&LocalApprovals>,
    caller_uid: Option<u32>,
    user_name: impl Fn(u32) -> Option<String>,
) -> ApprovalReply {
    let Some(store) = store else {
        return refused(
            "no_local_approvals",
            "this agent does not decide approvals on the host (it files them with the central approver): use `dbward approvals --server URL`",
        );
    };
    let caller = || {
        let uid = caller_uid.ok_or_else(|| {
            refused(
                "unknown_caller",
                "the control socket reported no peer credentials; cannot tell who is deciding",
            )
        })?;
        user_name(uid)
            .map(|user| ApproverIdentity { user })
            .ok_or_else(|| {
                refused(
                    "unknown_caller",
                    format!("uid {uid} has no user name in the passwd database; approvers must be named OS users"),
                )
            })
    };
    match op {
        Op::List => ApprovalReply::Pending {
            requests: store.list().into_iter().map(PendingView::from).collect(),
        },
        Op::Approve { id, comment } => {
            let who = match caller() {
                Ok(w) => w,
                Err(r) => return r,
            };
            match store.approve(id, &who, comment) {
                Ok(Vote::Approved) => {
                    tracing::info!(request = %id, approver = %who.user, "local approval released the statement");
                    ApprovalReply::Approved {
                        request_id: id,
                        by: who.user,
                    }
                }
                Ok(Vote::Recorded { have, need }) => ApprovalReply::Recorded {
                    request_id: id,
                    have,
                    need,
                },
                Err(e) => {
                    tracing::warn!(request = %id, approver = %who.user, error = %e, "local approval refused");
                    refusal(&e)
                }
            }
        }
        Op::Deny { id, comment } => {
            let who = match caller() {
                Ok(w) => w,
                Err(r) => return r,
            };
            match store.deny(id, &who, comment) {
                Ok(()) => {
                    tracing::info!(request = %id, approver = %who.user, "local approval denied");
                    ApprovalReply::Denied {
                        request_id: id,
                        by: who.user,
                    }
                }
                Err(e) => {
                    tracing::warn!(request = %id, approver = %who.user, error = %e, "local denial refused");
                    refusal(&e)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::approval::{ApprovalChannel, ApprovalRequest, GroupLookup, Requester};

    struct Groups;

    impl GroupLookup for Groups {
        fn groups_of(&self, user: &str) -> Result<Vec<String>, ApprovalError> {
            Ok(if user == "alice" {
                vec!["dba".into()]
            } else {
                vec![]
            })
        }
    }

    fn names(uid: u32) -> Option<String> {
        match uid {
            1 => Some("alice".into()),
            2 => Some("bob".into()),
            3 => Some("eve".into()),
            _ => None,
        }
    }

    async fn store_with_request() -> (LocalApprovals, Uuid) {
        let store = LocalApprovals::new(Arc::new(Groups));
        let id = Uuid::new_v4();
        store
            .file(ApprovalRequest {
                request_id: id,
                host: "db1".into(),
                session_id: "s1".into(),
                requester: Requester {
                    client_user: Some("bob".into()),
                    ..Requester::default()
                },
                database: None,
                statement: "DROP TABLE t".into(),
                statement_sha256: statement_sha256("DROP TABLE t"),
                class: Some("ddl".into()),
                tables: vec![],
                rule: "ddl".into(),
                reason: None,
                approvers: vec!["dba".into()],
                quorum: 1,
                break_glass_group: None,
                filed_at: SystemTime::now(),
                timeout: Duration::from_secs(60),
            })
            .await
            .expect("filed");
        (store, id)
    }

    fn code(reply: &ApprovalReply) -> &str {
        match reply {
            ApprovalReply::Refused { code, .. } => code,
            _ => "ok",
        }
    }

    #[tokio::test]
    async fn caller_identity_decides_who_may_vote() {
        let cases: [(Option<u32>, &str); 5] = [
            (None, "unknown_caller"),
            (Some(99), "unknown_caller"),
            (Some(2), "self_approval"),
            (Some(3), "not_an_approver"),
            (Some(1), "ok"),
        ];
        for (uid, want) in cases {
            let (store, id) = store_with_request().await;
            let op = Op::Approve { id, comment: None };
            let reply = answer(op, Some(&store), uid, names);
            assert_eq!(code(&reply), want, "uid {uid:?}: {reply:?}");
        }
    }

    #[tokio::test]
    async fn list_and_missing_store_and_unknown_id() {
        let (store, id) = store_with_request().await;
        let ApprovalReply::Pending { requests } = answer(Op::List, Some(&store), None, names)
        else {
            panic!("list")
        };
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].request_id, id);
        assert_eq!(requests[0].client_user.as_deref(), Some("bob"));
        let reply = answer(Op::List, None, Some(1), names);
        assert_eq!(code(&reply), "no_local_approvals");
        let op = Op::Deny {
            id: Uuid::new_v4(),
            comment: None,
        };
        assert_eq!(code(&answer(op, Some(&store), Some(1), names)), "not_found");
    }
}
