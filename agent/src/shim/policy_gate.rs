//! The shim's [`StatementGate`] backed by the policy engine: session facts → policy facts,
//! policy decision → shim verdict. Always evaluates against the currently active policy.

use std::sync::Arc;
use std::time::SystemTime;

use super::gate::{
    ApprovalRule, GateError, GateVerdict, PreparedStatements, Principal, SessionFacts,
    StatementGate,
};
use crate::policy::store::PolicyStore;
use crate::policy::{Decision, Facts, Outcome};

/// Decides statements with the active policy of a [`PolicyStore`].
pub struct PolicyGate {
    store: Arc<PolicyStore>,
}

impl PolicyGate {
    /// A gate over `store` (reloads are picked up per statement).
    pub fn new(store: Arc<PolicyStore>) -> Self {
        Self { store }
    }
}

/// The policy facts of a shim session.
pub fn facts_of(session: &SessionFacts) -> Facts {
    Facts {
        db_user: session.db_user.clone(),
        database: session.database.clone(),
        application_name: session.application_name.clone(),
        client_uid: session.client_uid,
        client_user: session.client_user.clone(),
        client_pid: session.client_pid,
        exe: session.exe.clone(),
        unit: session.unit.clone(),
        container: session.container.clone(),
        source_addr: session.source_addr,
        tls_subject: session.tls_subject.clone(),
        host: session.host.clone(),
        unmediated: session.unmediated,
        session_id: Some(session.session_id.clone()),
        ..Facts::default()
    }
}

/// Converts a policy decision into the shim's verdict.
pub fn verdict_of(decision: &Decision) -> GateVerdict {
    let class = Some(decision.classification.class.name().to_owned());
    let rule = decision.rule.clone();
    match &decision.outcome {
        Outcome::Allow => GateVerdict::Forward {
            audit: false,
            rule,
            class,
        },
        Outcome::Audit => GateVerdict::Forward {
            audit: true,
            rule,
            class,
        },
        Outcome::Deny { message } => GateVerdict::Deny {
            message: message.clone(),
            rule,
            class,
        },
        Outcome::RequireApproval {
            approvers,
            quorum,
            timeout,
            reason_required,
            break_glass_group,
        } => GateVerdict::RequireApproval(ApprovalRule {
            rule: rule.unwrap_or_else(|| "unmatched".into()),
            class,
            tables: decision.classification.tables.clone(),
            approvers: approvers.clone(),
            quorum: *quorum,
            timeout: *timeout,
            reason_required: *reason_required,
            break_glass_group: break_glass_group.clone(),
            principal: Some(Principal {
                name: decision.principal.name.clone(),
                kind: decision.principal.kind.name().to_owned(),
                owner: decision.principal.owner.clone(),
                groups: decision.principal.groups.clone(),
            }),
        }),
    }
}

impl StatementGate for PolicyGate {
    fn evaluate(
        &self,
        session: &SessionFacts,
        sql: &str,
        prepared: &dyn PreparedStatements,
    ) -> Result<GateVerdict, GateError> {
        let policy = self.store.current();
        let decision = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            policy.evaluate_with(&facts_of(session), sql, SystemTime::now(), prepared)
        }))
        .map_err(|_| GateError("the policy engine failed on this statement".into()))?;
        Ok(verdict_of(&decision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::classify::NoPrepared;

    const POLICY: &str = r#"
identities:
  - name: reporter
    kind: ai_agent
    owner: alice
    match:
      application_name: ai-reporting
rules:
  - name: no-program
    match:
      command: [COPY TO PROGRAM]
    outcome:
      deny:
        message: exports are forbidden
  - name: ai-ddl
    match:
      kind: ai_agent
      class: ddl
    outcome:
      require_approval:
        approvers: [dba]
        timeout: 10m
"#;

    fn store() -> Arc<PolicyStore> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.yaml"), POLICY).unwrap();
        let store = PolicyStore::open(dir.path()).unwrap();
        std::mem::forget(dir);
        Arc::new(store)
    }

    fn session(app: &str) -> SessionFacts {
        SessionFacts {
            application_name: Some(app.into()),
            session_id: "s1".into(),
            ..SessionFacts::default()
        }
    }

    #[test]
    fn policy_outcomes_become_shim_verdicts() {
        let gate = PolicyGate::new(store());
        let v = gate
            .evaluate(&session("psql"), "COPY t TO PROGRAM 'curl x'", &NoPrepared)
            .unwrap();
        assert!(matches!(v, GateVerdict::Deny { ref message, ref rule, .. }
            if message == "exports are forbidden" && rule.as_deref() == Some("no-program")));
        let v = gate
            .evaluate(
                &session("ai-reporting"),
                "DROP TABLE customers",
                &NoPrepared,
            )
            .unwrap();
        let GateVerdict::RequireApproval(rule) = v else {
            panic!("{v:?}")
        };
        assert_eq!(rule.rule, "ai-ddl");
        assert_eq!(rule.approvers, vec!["dba".to_owned()]);
        assert_eq!(rule.timeout, std::time::Duration::from_secs(600));
        let principal = rule.principal.unwrap();
        assert_eq!(
            (principal.name.as_str(), principal.kind.as_str()),
            ("reporter", "ai_agent")
        );
        assert_eq!(principal.owner.as_deref(), Some("alice"));
        let v = gate
            .evaluate(&session("psql"), "SELECT 1", &NoPrepared)
            .unwrap();
        assert!(matches!(v, GateVerdict::Forward { .. }), "{v:?}");
    }

    #[test]
    fn sql_execute_is_judged_by_the_statement_it_runs() {
        let gate = PolicyGate::new(store());
        let prepared: std::collections::HashMap<String, String> =
            [("tidy".to_owned(), "DROP TABLE customers".to_owned())].into();
        let v = gate
            .evaluate(&session("ai-reporting"), "EXECUTE tidy", &prepared)
            .unwrap();
        let GateVerdict::RequireApproval(rule) = v else {
            panic!("{v:?}")
        };
        assert_eq!(rule.rule, "ai-ddl");
        assert_eq!(rule.class.as_deref(), Some("ddl"));
    }
}
