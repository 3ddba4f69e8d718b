//! Decisions on the statements of sessions that bypass the shim, remembered per session and
//! classification: a session runs the same few statement shapes over and over (with other
//! literals), and its facts rarely change, so most statements need no rule matching.
//!
//! A remembered [`Judgement`] is reused only when it cannot differ from a fresh evaluation:
//! the same policy set, equal facts, the very classification the classifier's cache handed
//! out before (the same `Arc`: equal fingerprint, a classification that does not depend on
//! literal values), and a decision no time window took part in (see
//! [`PolicySet::decided_regardless_of_time`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::classify::NoPrepared;
use super::{Classification, Decision, Facts, Outcome, PolicySet, Unmediated};

/// Most sessions remembered; beyond it (ends that were missed) the memo starts afresh.
const MAX_SESSIONS: usize = 4096;

/// Most classifications remembered per session; the oldest entry makes room.
const MAX_PER_SESSION: usize = 32;

/// What the agent records of a decision on a statement it observed in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// The policy's outcome (`allow`, `audit`, …).
    pub outcome: &'static str,
    /// The deciding rule.
    pub rule: Option<String>,
    /// The statement's class.
    pub class: &'static str,
    /// The principal's name.
    pub principal: String,
    /// The principal's kind.
    pub principal_kind: &'static str,
    /// What the decision means for a session that bypassed the shim: `Audit` when the
    /// statement may run (the outcome is allow or audit, or the rule says `unmediated:
    /// audit`), else the rule's `hold`, `terminate` or `block`.
    pub unmediated: Unmediated,
}

impl Judgement {
    /// The recorded parts of `decision`.
    pub fn of(decision: &Decision) -> Self {
        Self {
            outcome: decision.outcome.name(),
            rule: decision.rule.clone(),
            class: decision.classification.class.name(),
            principal: decision.principal.name.clone(),
            principal_kind: decision.principal.kind.name(),
            unmediated: match decision.outcome {
                Outcome::Allow | Outcome::Audit => Unmediated::Audit,
                _ => decision.unmediated,
            },
        }
    }
}

/// One session's facts and the judgements of its statements by classification.
struct Session {
    facts: Facts,
    judged: Vec<(Arc<Classification>, Judgement)>,
    /// Where the next entry goes once `judged` is full.
    next: usize,
}

/// Judgements remembered per session (by `session_id`) for one policy set.
#[derive(Default)]
pub struct DecisionMemo {
    policy: Option<Arc<PolicySet>>,
    sessions: HashMap<String, Session>,
}

impl DecisionMemo {
    /// An empty memo.
    pub fn new() -> Self {
        Self::default()
    }

    /// What `policy` decides for `sql` run with `facts` at `now` (as
    /// [`PolicySet::evaluate`]), remembered when that is safe.
    pub fn judge(
        &mut self,
        policy: &Arc<PolicySet>,
        facts: Facts,
        sql: &str,
        now: SystemTime,
    ) -> Judgement {
        if self
            .policy
            .as_ref()
            .is_none_or(|known| !Arc::ptr_eq(known, policy))
        {
            self.policy = Some(Arc::clone(policy));
            self.sessions.clear();
        }
        let classification = policy.classifier().classify(sql, &NoPrepared);
        let reusable = classification.cacheable && classification.parse_error.is_none();
        if reusable
            && let Some(id) = facts.session_id.as_deref()
            && let Some(session) = self.sessions.get(id)
            && session.facts == facts
            && let Some((_, judged)) = session
                .judged
                .iter()
                .find(|(c, _)| Arc::ptr_eq(c, &classification))
        {
            return judged.clone();
        }
        let decision = policy.decide(&facts, Arc::clone(&classification), now);
        let judged = Judgement::of(&decision);
        if reusable
            && policy.decided_regardless_of_time(&decision)
            && let Some(id) = facts.session_id.clone()
        {
            self.remember(id, facts, classification, judged.clone());
        }
        judged
    }

    fn remember(
        &mut self,
        id: String,
        facts: Facts,
        classification: Arc<Classification>,
        judged: Judgement,
    ) {
        if self.sessions.len() >= MAX_SESSIONS && !self.sessions.contains_key(&id) {
            self.sessions.clear();
        }
        let session = self.sessions.entry(id).or_insert_with(|| Session {
            facts: facts.clone(),
            judged: Vec::new(),
            next: 0,
        });
        if session.facts != facts {
            *session = Session {
                facts,
                judged: Vec::new(),
                next: 0,
            };
        }
        if session.judged.len() < MAX_PER_SESSION {
            session.judged.push((classification, judged));
        } else {
            session.judged[session.next] = (classification, judged);
            session.next = (session.next + 1) % MAX_PER_SESSION;
        }
    }

    /// Forgets a session that ended.
    pub fn forget(&mut self, session_id: &str) {
        self.sessions.remove(session_id);
    }

    /// Sessions remembered.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    const POLICY: &str = r#"
identities:
  - name: reporter
    kind: ai_agent
    match: {application_name: ai-reporting}
rules:
  - name: reads-are-fine
    match: {class: read}
    outcome: allow
  - name: ai-ddl
    match: {kind: ai_agent, class: ddl}
    outcome: {deny: {message: "no"}}
"#;

    const NIGHT: &str = r#"
rules:
  - name: night-ddl
    match: {class: ddl, time: {between: "22:00-06:00"}}
    outcome: {deny: {message: "no DDL at night"}}
"#;

    fn policy(source: &str) -> Arc<PolicySet> {
        Arc::new(
            PolicySet::from_sources(&[(PathBuf::from("p.yaml"), source.into())]).expect("valid"),
        )
    }

    fn facts(session: &str, app: &str) -> Facts {
        Facts {
            session_id: Some(session.into()),
            application_name: Some(app.into()),
            db_user: Some("app".into()),
            unmediated: true,
            ..Facts::default()
        }
    }

    fn at(hour: u64) -> SystemTime {
        // 2026-01-05 00:00 UTC, a Monday.
        UNIX_EPOCH + Duration::from_secs(1_767_571_200 + hour * 3600)
    }

    fn fresh(policy: &PolicySet, facts: &Facts, sql: &str, now: SystemTime) -> Judgement {
        Judgement::of(&policy.evaluate(facts, sql, now))
    }

    #[test]
    fn remembered_judgements_equal_fresh_evaluations() {
        let p = policy(POLICY);
        let mut memo = DecisionMemo::new();
        let cases = [
            ("s1", "ai-reporting", "DROP TABLE t1"),
            ("s1", "ai-reporting", "DROP TABLE t1"),
            ("s1", "ai-reporting", "SELECT * FROM t WHERE id = 1"),
            ("s1", "ai-reporting", "SELECT * FROM t WHERE id = 2"),
            ("s2", "psql", "DROP TABLE t1"),
            ("s2", "psql", "DROP TABLE t1"),
            ("s1", "ai-reporting", "DROP TABLE t1"),
        ];
        for (session, app, sql) in cases {
            let f = facts(session, app);
            assert_eq!(
                memo.judge(&p, f.clone(), sql, at(12)),
                fresh(&p, &f, sql, at(12)),
                "{session} {sql}"
            );
        }
        assert_eq!(memo.sessions(), 2);
        memo.forget("s1");
        assert_eq!(memo.sessions(), 1);
    }

    #[test]
    fn changed_facts_are_judged_afresh() {
        let p = policy(POLICY);
        let mut memo = DecisionMemo::new();
        let sql = "DROP TABLE t1";
        let first = memo.judge(&p, facts("s1", "ai-reporting"), sql, at(12));
        assert_eq!(
            (first.outcome, first.principal.as_str()),
            ("deny", "reporter")
        );
        // The session changed its application_name.
        let then = memo.judge(&p, facts("s1", "psql"), sql, at(12));
        assert_eq!(then, fresh(&p, &facts("s1", "psql"), sql, at(12)));
        assert_ne!(then.principal, "reporter");
    }

    #[test]
    fn a_new_policy_is_asked_afresh() {
        let mut memo = DecisionMemo::new();
        let sql = "DROP TABLE t1";
        let before = memo.judge(&policy(POLICY), facts("s1", "ai-reporting"), sql, at(12));
        assert_eq!(before.rule.as_deref(), Some("ai-ddl"));
        let reloaded = policy(NIGHT);
        let after = memo.judge(&reloaded, facts("s1", "ai-reporting"), sql, at(23));
        assert_eq!(after.rule.as_deref(), Some("night-ddl"));
    }

    #[test]
    fn time_windows_are_judged_at_each_statement() {
        let p = policy(NIGHT);
        let mut memo = DecisionMemo::new();
        let f = facts("s1", "psql");
        let sql = "DROP TABLE t1";
        assert_eq!(memo.judge(&p, f.clone(), sql, at(23)).outcome, "deny");
        assert_ne!(memo.judge(&p, f.clone(), sql, at(12)).outcome, "deny");
        assert_eq!(memo.judge(&p, f.clone(), sql, at(1)).outcome, "deny");
        assert_eq!(
            memo.sessions(),
            0,
            "nothing a time window decided is remembered"
        );
        // The window's rule cannot match a read at any time: reads are remembered.
        let read = "SELECT * FROM t WHERE id = 1";
        assert_eq!(
            memo.judge(&p, f.clone(), read, at(23)),
            fresh(&p, &f, read, at(23))
        );
        assert_eq!(memo.sessions(), 1);
    }
}
