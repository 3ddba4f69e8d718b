//! The approval rules, as pure functions: who may vote on a request, and what the votes
//! so far decide.
//!
//! No self-approval (neither the requester nor its owner, administrators included); only
//! members of the rule's approver groups; only humans; one vote per person; quorum counts
//! distinct humans; the first deny ends the request; break-glass only for members of
//! the rule's emergency group, with a reason.

use dbward_approval_api::{ApprovalRequest, PrincipalKind, Vote};

use crate::config::PrincipalEntry;
use crate::directory::Directory;

/// Why a principal may not vote (each maps to an API error code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleViolation {
    /// AI agents and services can never approve.
    #[error("{principal} is a {kind}; only humans may vote on approval requests")]
    NotHuman {
        /// Voter.
        principal: String,
        /// Its kind.
        kind: &'static str,
    },
    /// The voter is the requester.
    #[error(
        "{principal} filed this request and cannot approve it (no self-approval, administrators included)"
    )]
    SelfApproval {
        /// Voter.
        principal: String,
    },
    /// The voter owns the requester.
    #[error("{principal} owns requester {requester} and cannot approve its requests")]
    OwnerApproval {
        /// Voter.
        principal: String,
        /// Requester.
        requester: String,
    },
    /// Not in any approver group of the rule.
    #[error("{principal} is not in any approver group of rule {rule} ({groups})")]
    NotInApproverGroup {
        /// Voter.
        principal: String,
        /// Rule.
        rule: String,
        /// The rule's groups, comma-separated.
        groups: String,
    },
    /// Already voted on this request.
    #[error("{principal} already voted on this request; each person votes once")]
    DoubleVote {
        /// Voter.
        principal: String,
    },
    /// The rule has no emergency group.
    #[error("rule {rule} allows no break-glass")]
    NoBreakGlass {
        /// Rule.
        rule: String,
    },
    /// Not in the emergency group.
    #[error("{principal} is not in emergency group {group}")]
    NotInEmergencyGroup {
        /// Voter.
        principal: String,
        /// Group.
        group: String,
    },
    /// Break-glass without a reason.
    #[error("break-glass needs a reason; say why this cannot wait for approval")]
    ReasonRequired,
}

impl RuleViolation {
    /// Stable API error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotHuman { .. } => "not_human",
            Self::SelfApproval { .. } => "self_approval",
            Self::OwnerApproval { .. } => "owner_approval",
            Self::NotInApproverGroup { .. } => "not_in_approver_group",
            Self::DoubleVote { .. } => "double_vote",
            Self::NoBreakGlass { .. } => "no_break_glass",
            Self::NotInEmergencyGroup { .. } => "not_in_emergency_group",
            Self::ReasonRequired => "reason_required",
        }
    }
}

/// A prior vote, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CastVote {
    /// Who.
    pub principal: String,
    /// What.
    pub vote: Vote,
}

/// What the votes decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tally {
    /// Still pending, with this many distinct human approvals.
    Pending {
        /// Distinct approvers so far.
        approvals: u32,
    },
    /// Quorum reached by these approvers (in vote order).
    Approved {
        /// Approvers.
        approvers: Vec<String>,
    },
    /// Denied by this principal (the first deny).
    Denied {
        /// Denier.
        by: String,
    },
}

fn requester_owners<'a>(req: &'a ApprovalRequest, dir: &'a Directory) -> Vec<&'a str> {
    let mut owners: Vec<&str> = req.requester.owner.as_deref().into_iter().collect();
    if let Some(owner) = dir
        .get(&req.requester.principal)
        .and_then(|p| p.owner.as_deref())
    {
        owners.push(owner);
    }
    owners
}

fn check_identity(
    req: &ApprovalRequest,
    voter: &PrincipalEntry,
    dir: &Directory,
) -> Result<(), RuleViolation> {
    if voter.kind != PrincipalKind::Human {
        return Err(RuleViolation::NotHuman {
            principal: voter.name.clone(),
            kind: voter.kind.as_str(),
        });
    }
    if voter.name == req.requester.principal {
        return Err(RuleViolation::SelfApproval {
            principal: voter.name.clone(),
        });
    }
    if requester_owners(req, dir).contains(&voter.name.as_str()) {
        return Err(RuleViolation::OwnerApproval {
            principal: voter.name.clone(),
            requester: req.requester.principal.clone(),
        });
    }
    Ok(())
}

/// May `voter` cast a vote on `req`, given the votes already cast?
pub fn check_vote(
    req: &ApprovalRequest,
    voter: &PrincipalEntry,
    dir: &Directory,
    prior: &[CastVote],
) -> Result<(), RuleViolation> {
    check_identity(req, voter, dir)?;
    if !voter.groups.iter().any(|g| req.approvers.contains(g)) {
        return Err(RuleViolation::NotInApproverGroup {
            principal: voter.name.clone(),
            rule: req.rule.clone(),
            groups: req.approvers.join(","),
        });
    }
    if prior.iter().any(|v| v.principal == voter.name) {
        return Err(RuleViolation::DoubleVote {
            principal: voter.name.clone(),
        });
    }
    Ok(())
}

/// May `voter` break the glass on `req` with `reason`? Unlike a vote, the emergency
/// group's member may be the requester or its owner (self-authorisation is the point),
/// but must be human and must give a reason.
pub fn check_break_glass(
    req: &ApprovalRequest,
    voter: &PrincipalEntry,
    reason: &str,
) -> Result<(), RuleViolation> {
    if voter.kind != PrincipalKind::Human {
        return Err(RuleViolation::NotHuman {
            principal: voter.name.clone(),
            kind: voter.kind.as_str(),
        });
    }
    let Some(group) = &req.break_glass_group else {
        return Err(RuleViolation::NoBreakGlass {
            rule: req.rule.clone(),
        });
    };
    if !voter.groups.contains(group) {
        return Err(RuleViolation::NotInEmergencyGroup {
            principal: voter.name.clone(),
            group: group.clone(),
        });
    }
    if reason.trim().is_empty() {
        return Err(RuleViolation::ReasonRequired);
    }
    Ok(())
}

/// What the votes (in order) decide: the first deny ends it; otherwise approved once
/// `quorum` distinct principals approved.
pub fn tally(quorum: u32, votes: &[CastVote]) -> Tally {
    let mut approvers: Vec<String> = Vec::new();
    for v in votes {
        match v.vote {
            Vote::Deny => {
                return Tally::Denied {
                    by: v.principal.clone(),
                };
            }
            Vote::Approve => {
                if !approvers.contains(&v.principal) {
                    approvers.push(v.principal.clone());
                }
            }
        }
    }
    if approvers.len() as u32 >= quorum.max(1) {
        Tally::Approved { approvers }
    } else {
        Tally::Pending {
            approvals: approvers.len() as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbward_approval_api::Requester;
    use uuid::Uuid;

    fn person(
        name: &str,
        kind: PrincipalKind,
        groups: &[&str],
        owner: Option<&str>,
    ) -> PrincipalEntry {
        PrincipalEntry {
            name: name.into(),
            kind,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            owner: owner.map(str::to_string),
            slack_user_id: None,
            teams_user_id: None,
            email: None,
            oidc_subject: None,
        }
    }

    fn directory() -> Directory {
        Directory::new(&[
            person(
                "claude-bot",
                PrincipalKind::AiAgent,
                &["dba"],
                Some("olivia"),
            ),
            person("olivia", PrincipalKind::Human, &["dba", "admins"], None),
            person("alice", PrincipalKind::Human, &["dba"], None),
            person("bob", PrincipalKind::Human, &["dba", "security"], None),
            person("root-admin", PrincipalKind::Human, &["admins", "dba"], None),
            person("deploybot", PrincipalKind::Service, &["dba"], None),
            person("eve", PrincipalKind::Human, &["marketing"], None),
            person("oncall", PrincipalKind::Human, &["sre-emergency"], None),
        ])
    }

    fn request(requester: &str, owner: Option<&str>) -> ApprovalRequest {
        ApprovalRequest {
            request_id: Uuid::from_u128(1),
            host: "db1".into(),
            session_id: "s".into(),
            requester: Requester {
                principal: requester.into(),
                kind: PrincipalKind::AiAgent,
                owner: owner.map(str::to_string),
                groups: vec![],
                db_user: None,
                client_user: None,
                exe: None,
                unit: None,
            },
            database: None,
            statement: "DROP TABLE t".into(),
            statement_sha256: String::new(),
            class: "ddl".into(),
            tables: vec![],
            rule: "ddl-needs-dba".into(),
            reason: None,
            approvers: vec!["dba".into(), "security".into()],
            quorum: 2,
            expires_at: time::OffsetDateTime::UNIX_EPOCH,
            break_glass_group: Some("sre-emergency".into()),
        }
    }

    #[test]
    fn vote_eligibility_follows_the_rules() {
        let dir = directory();
        let prior = vec![CastVote {
            principal: "alice".into(),
            vote: Vote::Approve,
        }];
        // (voter, requester, owner named in request, expected code or None)
        let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
            ("bob", "claude-bot", None, None),
            ("claude-bot", "claude-bot", None, Some("not_human")),
            ("deploybot", "claude-bot", None, Some("not_human")),
            ("root-admin", "root-admin", None, Some("self_approval")),
            ("olivia", "claude-bot", None, Some("owner_approval")),
            ("bob", "claude-bot", Some("bob"), Some("owner_approval")),
            ("eve", "claude-bot", None, Some("not_in_approver_group")),
            ("alice", "claude-bot", None, Some("double_vote")),
            ("root-admin", "claude-bot", None, None),
        ];
        for (voter, requester, owner, want) in cases {
            let req = request(requester, *owner);
            let got = check_vote(&req, dir.get(voter).expect(voter), &dir, &prior)
                .err()
                .map(|e| e.code());
            assert_eq!(got, *want, "voter {voter} on request of {requester}");
        }
    }

    #[test]
    fn break_glass_needs_emergency_membership_a_human_and_a_reason() {
        let dir = directory();
        let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
            (
                "oncall",
                "disk full, vacuum now",
                Some("sre-emergency"),
                None,
            ),
            (
                "oncall",
                "  ",
                Some("sre-emergency"),
                Some("reason_required"),
            ),
            (
                "alice",
                "outage",
                Some("sre-emergency"),
                Some("not_in_emergency_group"),
            ),
            (
                "deploybot",
                "outage",
                Some("sre-emergency"),
                Some("not_human"),
            ),
            ("oncall", "outage", None, Some("no_break_glass")),
        ];
        for (voter, reason, group, want) in cases {
            let mut req = request("oncall", None);
            req.break_glass_group = group.map(str::to_string);
            let got = check_break_glass(&req, dir.get(voter).expect(voter), reason)
                .err()
                .map(|e| e.code());
            assert_eq!(
                got, *want,
                "voter {voter} reason {reason:?} group {group:?}"
            );
        }
    }

    #[test]
    fn tally_counts_distinct_people_and_the_first_deny_wins() {
        let v = |p: &str, vote| CastVote {
            principal: p.into(),
            vote,
        };
        use Vote::{Approve as A, Deny as D};
        let cases: Vec<(u32, Vec<CastVote>, Tally)> = vec![
            (2, vec![], Tally::Pending { approvals: 0 }),
            (2, vec![v("a", A)], Tally::Pending { approvals: 1 }),
            (
                2,
                vec![v("a", A), v("a", A)],
                Tally::Pending { approvals: 1 },
            ),
            (
                2,
                vec![v("a", A), v("b", A)],
                Tally::Approved {
                    approvers: vec!["a".into(), "b".into()],
                },
            ),
            (
                1,
                vec![v("a", D), v("b", A)],
                Tally::Denied { by: "a".into() },
            ),
            (
                3,
                vec![v("a", A), v("b", A), v("c", D)],
                Tally::Denied { by: "c".into() },
            ),
            (
                0,
                vec![v("a", A)],
                Tally::Approved {
                    approvers: vec!["a".into()],
                },
            ),
        ];
        for (quorum, votes, want) in cases {
            assert_eq!(
                tally(quorum, &votes),
                want,
                "quorum {quorum} votes {votes:?}"
            );
        }
    }
}
