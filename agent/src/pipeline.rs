//! The joins between stages: shim events → stream events, policy decisions for sessions
//! that bypassed the shim, and stream events → audit records. Pure: no I/O.

use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use crate::audit::Payload;
use crate::audit::canonical::CanonicalError;
use crate::audit::shaped::{Body, Shape};
use crate::event::{Event, EventType, format_ts};
use crate::policy::memo::DecisionMemo;
use crate::policy::{Facts, PolicySet, Unmediated};
use crate::shim::events::{Action, ShimEvent, Verdict};

/// The stream event for a shim event.
pub fn from_shim(event: ShimEvent, host: &str) -> Event {
    let mut out = Event {
        ts: format_ts(SystemTime::now()),
        host: host.to_owned(),
        source: Some("shim".into()),
        ..Event::default()
    };
    match event {
        ShimEvent::SessionStart { facts } => {
            out.kind = Some(EventType::SessionStart);
            out.session_id = Some(facts.session_id.clone());
            out.database = facts.database;
            out.db_user = facts.db_user;
            out.application_name = facts.application_name;
            out.client = Some(crate::event::Client {
                transport: if facts.source_addr.is_some() {
                    "tcp"
                } else {
                    "unix"
                }
                .into(),
                addr: facts.source_addr.map(|a| a.to_string()),
                pid: facts.client_pid,
                uid: facts.client_uid,
                user: facts.client_user,
                exe: facts.exe,
                unit: facts.unit,
                container: facts.container,
                tls_subject: facts.tls_subject,
                ..crate::event::Client::default()
            });
        }
        ShimEvent::SessionEnd {
            session_id,
            duration,
            error,
        } => {
            out.kind = Some(EventType::SessionEnd);
            out.session_id = Some(session_id);
            out.duration_ms = Some(duration.as_secs_f64() * 1e3);
            out.error = error;
        }
        ShimEvent::Statement(s) => {
            out.kind = Some(EventType::Statement);
            out.session_id = Some(s.session_id);
            out.sql = Some(s.statement);
            out.outcome = Some(verdict_name(s.verdict).into());
            out.rule = s.rule;
            out.class = s.class;
            out.reason = s.reason;
            out.request_id = s.request_id.map(|id| id.to_string());
            out.action = Some(
                match &s.action {
                    Action::Forwarded => "forwarded",
                    Action::Denied { .. } => "denied",
                }
                .into(),
            );
            if let Action::Denied { message } = s.action {
                out.error = Some(message);
            } else {
                out.error = s.error;
            }
            out.command_tags = Some(s.command_tags);
            out.rows = s.rows;
            out.duration_ms = Some(s.duration.as_secs_f64() * 1e3);
        }
        ShimEvent::Hold {
            session_id,
            request_id,
            rule,
            statement,
            reason,
        } => {
            out.kind = Some(EventType::Hold);
            out.session_id = Some(session_id);
            out.request_id = Some(request_id.to_string());
            out.rule = Some(rule);
            out.sql = Some(statement);
            out.reason = reason;
            out.action = Some("held".into());
        }
        ShimEvent::Decision {
            session_id,
            request_id,
            outcome,
            by,
            reason,
        } => {
            out.kind = Some(EventType::Decision);
            out.session_id = Some(session_id);
            out.request_id = Some(request_id.to_string());
            out.outcome = Some(outcome);
            out.approvers = Some(by);
            out.reason = reason;
        }
        ShimEvent::DecisionRejected {
            session_id,
            request_id,
            problem,
            detail,
        } => {
            out.kind = Some(EventType::Decision);
            out.session_id = Some(session_id);
            out.request_id = Some(request_id.to_string());
            out.outcome = Some("rejected".into());
            out.error = Some(format!("{problem}: {detail}"));
        }
    }
    out
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allow",
        Verdict::Audit => "audit",
        Verdict::Deny => "deny",
        Verdict::RequireApproval => "require_approval",
    }
}

/// Policy facts of a kernel-observed session.
pub fn facts_of(event: &Event) -> Facts {
    let client = event.client.clone().unwrap_or_default();
    Facts {
        db_user: event.db_user.clone(),
        database: event.database.clone(),
        application_name: event.application_name.clone(),
        client_uid: client.uid,
        client_user: client.user,
        client_pid: client.pid,
        exe: client.exe,
        unit: client.unit,
        container: client.container,
        source_addr: client.addr.and_then(|a| a.parse().ok()),
        host: Some(event.host.clone()),
        unmediated: true,
        session_id: event.session_id.clone(),
        ..Facts::default()
    }
}

/// Marks a kernel statement event: statements of the shim's own upstream sessions (client
/// pid = this agent) are mediated, their decision is in the shim's event; every other
/// statement bypassed the shim, so policy is evaluated here and its outcome recorded (the
/// statement already ran: the action is `recorded`). `memo` spares re-evaluating a
/// session's repeated statement shapes. Returns what the decision means for the unmediated
/// session (`None` for the shim's own sessions and statements without text).
pub fn judge_kernel_statement(
    event: &mut Event,
    policy: &Arc<PolicySet>,
    agent_pid: u32,
    memo: &mut DecisionMemo,
) -> Option<Unmediated> {
    event.source = Some("kernel".into());
    let mediated = event
        .client
        .as_ref()
        .is_some_and(|c| c.pid == Some(agent_pid));
    event.unmediated = Some(!mediated);
    if mediated {
        return None;
    }
    let sql = event.sql.as_deref()?;
    let judged = memo.judge(policy, facts_of(event), sql, SystemTime::now());
    event.outcome = Some(judged.outcome.into());
    event.rule = judged.rule;
    event.class = Some(judged.class.into());
    event.principal = Some(judged.principal);
    event.principal_kind = Some(judged.principal_kind.into());
    event.action = Some("recorded".into());
    Some(judged.unmediated)
}

/// How statement records are shaped from their event (see [`audit_payload`]).
static STATEMENT_SHAPE: LazyLock<Shape> = LazyLock::new(|| {
    Shape::new()
        .rename("sql", "statement")
        .default_member("session_id", "")
        .and_then(|s| s.default_member("statement", ""))
        .and_then(|s| s.default_member("outcome", "observed"))
        .unwrap_or_else(|_| unreachable!("strings always serialise"))
});

/// How session_start and session_end records are shaped from their event.
static SESSION_SHAPE: LazyLock<Shape> = LazyLock::new(|| {
    Shape::new()
        .default_member("session_id", "")
        .unwrap_or_else(|_| unreachable!("strings always serialise"))
});

/// The audit record for a stream event, as [`audit_payload`] builds it. Statements and
/// session starts and ends (nearly every record) are written here in their final form, less
/// the header the log adds; the rest go as a [`Payload`].
pub fn audit_record(event: &Event) -> Option<Result<Body, CanonicalError>> {
    let shape: &Shape = match event.kind? {
        EventType::Statement => &STATEMENT_SHAPE,
        EventType::SessionStart | EventType::SessionEnd => &SESSION_SHAPE,
        _ => return audit_payload(event).map(|p| p.map(Body::Payload)),
    };
    Some(Body::prepare(event, shape))
}

/// The audit record payload for a stream event (`None` for events that are not audited:
/// `cluster_attached` is part of the agent's own log). The record carries every field of the
/// event under the same names, except `sql` (stored as `statement`) and `policy_sha256`
/// (`content_sha256`), with the members [`crate::audit::event`]'s types require defaulted.
/// Built without an intermediate `serde_json::Value`: this runs for every statement.
pub fn audit_payload(event: &Event) -> Option<Result<Payload, CanonicalError>> {
    let kind = event.kind?;
    if kind == EventType::ClusterAttached {
        return None;
    }
    Some(Payload::from_serialize(event).and_then(|mut p| {
        // The log stamps its own `ts`.
        p.remove("ts");
        match kind {
            EventType::SessionStart | EventType::SessionEnd => {
                p.insert_default("session_id", "")?;
            }
            EventType::Statement => {
                p.insert_default("session_id", "")?;
                p.rename("sql", "statement");
                p.insert_default("statement", "")?;
                p.insert_default("outcome", "observed")?;
            }
            EventType::Hold => {
                p.insert_default("session_id", "")?;
                p.insert_default("request_id", "")?;
            }
            EventType::Decision => {
                p.insert_default("request_id", "")?;
                p.insert_default("outcome", "")?;
                p.insert_default("approvers", &[] as &[String])?;
            }
            EventType::KernelDrops => {
                let count: u64 = event.drops.as_ref().map_or(0, |d| d.values().sum());
                p.insert("count", &count)?;
            }
            EventType::PolicyReload => {
                p.rename("policy_sha256", "content_sha256");
                p.insert_default("content_sha256", "")?;
            }
            // Everything the event says: client, target, postmaster, action.
            EventType::ConnectionBlocked | EventType::ClusterAttached => {}
        }
        Ok(p)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditEvent;
    use crate::audit::event as audit;
    use crate::event::Client;
    use serde_json::{Map, Value};

    const POLICY: &str = r#"
identities:
  - name: reporter
    kind: ai_agent
    match:
      application_name: ai-reporting
rules:
  - name: ai-ddl
    match:
      kind: ai_agent
      class: ddl
    outcome:
      require_approval:
        approvers: [dba]
"#;

    fn statement(pid: u32, app: &str, sql: &str) -> Event {
        Event {
            kind: Some(EventType::Statement),
            host: "db1".into(),
            session_id: Some("s1".into()),
            application_name: Some(app.into()),
            client: Some(Client {
                pid: Some(pid),
                ..Client::default()
            }),
            sql: Some(sql.into()),
            ..Event::default()
        }
    }

    fn policy() -> Arc<PolicySet> {
        Arc::new(PolicySet::from_sources(&[("p.yaml".into(), POLICY.into())]).unwrap())
    }

    #[test]
    fn unmediated_statements_get_the_policy_outcome_recorded() {
        let mut e = statement(77, "ai-reporting", "DROP TABLE customers");
        judge_kernel_statement(&mut e, &policy(), 1, &mut DecisionMemo::new());
        assert_eq!(e.unmediated, Some(true));
        assert_eq!(e.outcome.as_deref(), Some("require_approval"));
        assert_eq!(e.rule.as_deref(), Some("ai-ddl"));
        assert_eq!(e.principal.as_deref(), Some("reporter"));
        assert_eq!(e.action.as_deref(), Some("recorded"));
    }

    #[test]
    fn the_shims_own_upstream_sessions_are_mediated() {
        let mut e = statement(1, "ai-reporting", "DROP TABLE customers");
        judge_kernel_statement(&mut e, &policy(), 1, &mut DecisionMemo::new());
        assert_eq!(e.unmediated, Some(false));
        assert_eq!(e.outcome, None);
    }

    /// The typed records the payloads must equal byte for byte (the audit log's contract
    /// before records were built without `serde_json::Value`).
    fn typed_record(event: &Event) -> Option<AuditEvent> {
        fn extra(event: &Event, skip: &[&str]) -> Map<String, Value> {
            let Ok(Value::Object(mut map)) = serde_json::to_value(event) else {
                return Map::new();
            };
            for key in ["type", "ts"].iter().chain(skip) {
                map.remove(*key);
            }
            map
        }
        let session_id = event.session_id.clone().unwrap_or_default();
        Some(match event.kind? {
            EventType::SessionStart => AuditEvent::SessionStart(audit::SessionStart {
                session_id,
                extra: extra(event, &["session_id"]),
            }),
            EventType::SessionEnd => AuditEvent::SessionEnd(audit::SessionEnd {
                session_id,
                extra: extra(event, &["session_id"]),
            }),
            EventType::Statement => AuditEvent::Statement(audit::Statement {
                session_id,
                statement: event.sql.clone().unwrap_or_default(),
                outcome: event.outcome.clone().unwrap_or_else(|| "observed".into()),
                rule: event.rule.clone(),
                class: event.class.clone(),
                extra: extra(event, &["session_id", "sql", "outcome", "rule", "class"]),
            }),
            EventType::Hold => AuditEvent::Hold(audit::Hold {
                session_id,
                request_id: event.request_id.clone().unwrap_or_default(),
                rule: event.rule.clone(),
                extra: extra(event, &["session_id", "request_id", "rule"]),
            }),
            EventType::Decision => AuditEvent::Decision(audit::Decision {
                request_id: event.request_id.clone().unwrap_or_default(),
                outcome: event.outcome.clone().unwrap_or_default(),
                approvers: event.approvers.clone().unwrap_or_default(),
                signature: None,
                extra: extra(event, &["request_id", "outcome", "approvers"]),
            }),
            EventType::KernelDrops => AuditEvent::KernelDrops(audit::KernelDrops {
                count: event.drops.as_ref().map_or(0, |d| d.values().sum()),
                extra: extra(event, &[]),
            }),
            EventType::PolicyReload => AuditEvent::PolicyReload(audit::PolicyReload {
                content_sha256: event.policy_sha256.clone().unwrap_or_default(),
                extra: extra(event, &["policy_sha256"]),
            }),
            EventType::ConnectionBlocked => {
                AuditEvent::ConnectionBlocked(audit::ConnectionBlocked {
                    extra: extra(event, &[]),
                })
            }
            EventType::ClusterAttached => return None,
        })
    }

    fn canonical_of_payload(event: &Event) -> Option<String> {
        let mut out = Vec::new();
        audit_payload(event)?.expect("payload").write(&mut out);
        Some(String::from_utf8(out).expect("utf8"))
    }

    fn canonical_of_typed(event: &Event) -> Option<String> {
        let mut out = Vec::new();
        crate::audit::record::write_canonical(
            &serde_json::to_value(typed_record(event)?).expect("to_value"),
            &mut out,
        );
        Some(String::from_utf8(out).expect("utf8"))
    }

    const ALL_KINDS: [EventType; 9] = [
        EventType::ConnectionBlocked,
        EventType::SessionStart,
        EventType::Statement,
        EventType::SessionEnd,
        EventType::KernelDrops,
        EventType::ClusterAttached,
        EventType::Hold,
        EventType::Decision,
        EventType::PolicyReload,
    ];

    #[test]
    fn payloads_equal_the_typed_records_for_every_event_type() {
        let kinds = ALL_KINDS;
        let full = Event {
            ts: "2026-11-24T00:00:00.000000001Z".into(),
            backend_pid: Some(4242),
            database: Some("shop".into()),
            db_user: Some("app".into()),
            sql_escaped: Some(true),
            outcome: Some("deny".into()),
            rule: Some("no-ddl".into()),
            class: Some("ddl".into()),
            request_id: Some("r-1".into()),
            approvers: Some(vec!["alice".into(), "bob".into()]),
            rows: Some(10),
            reason: Some("ticket \"42\" \u{e9}".into()),
            policy_sha256: Some("ab".repeat(32)),
            drops: Some([("statement".to_owned(), 3), ("login".to_owned(), 4)].into()),
            unmediated: Some(true),
            ..statement(77, "psql", "DROP TABLE t -- é")
        };
        let sparse = Event {
            session_id: None,
            sql: None,
            client: None,
            ..Event::default()
        };
        for kind in kinds {
            for base in [&full, &sparse] {
                let event = Event {
                    kind: Some(kind),
                    ..base.clone()
                };
                assert_eq!(
                    canonical_of_payload(&event),
                    canonical_of_typed(&event),
                    "{kind:?}"
                );
            }
        }
    }

    /// Both ways of building a record, sealed under the same header.
    fn sealed_both_ways(event: &Event) -> Option<(String, String)> {
        use crate::audit::record::{Header, seal_into};
        let header = Header {
            seq: 9,
            host: "db1",
            ts: "2026-11-25T00:00:00.000000001Z",
            prev_hash: crate::audit::record::GENESIS_HASH,
        };
        let seal = |body: Body| {
            let mut line = Vec::new();
            seal_into(&header, body, &mut line).expect("seals");
            String::from_utf8(line).expect("utf8")
        };
        let record = audit_record(event)?.expect("record");
        let payload = audit_payload(event)?.expect("payload");
        Some((seal(record), seal(Body::Payload(payload))))
    }

    #[test]
    fn records_written_by_the_audit_writer_equal_the_payloads() {
        let kinds = ALL_KINDS;
        let mut full = statement(77, "psql", "DROP TABLE t -- \"é\"\n");
        full.outcome = Some("deny".into());
        full.rule = Some("no-ddl".into());
        full.statements = Some(4);
        full.sql_length = Some(20);
        full.command_tags = Some(vec!["DROP TABLE".into()]);
        full.unmediated = Some(true);
        let sparse = Event::default();
        for kind in kinds {
            for base in [&full, &sparse] {
                let event = Event {
                    kind: Some(kind),
                    ..base.clone()
                };
                let both = sealed_both_ways(&event);
                if let Some((record, payload)) = &both {
                    assert_eq!(record, payload, "{kind:?}");
                }
                assert_eq!(both.is_none(), kind == EventType::ClusterAttached);
            }
        }
        // The statement's record is written in the single pass, not through a Payload.
        let statement = Event {
            kind: Some(EventType::Statement),
            ..full
        };
        assert!(crate::audit::shaped::is_streamed(
            &statement,
            &STATEMENT_SHAPE
        ));
    }

    #[test]
    fn statements_become_statement_records_with_their_identity() {
        let mut e = statement(77, "psql", "SELECT 1");
        e.outcome = Some("audit".into());
        let record: Value =
            serde_json::from_str(&canonical_of_payload(&e).expect("audited")).expect("json");
        assert_eq!(record["type"], "statement");
        assert_eq!(
            (record["session_id"].as_str(), record["statement"].as_str()),
            (Some("s1"), Some("SELECT 1"))
        );
        assert_eq!(record["outcome"], "audit");
        assert_eq!(record["application_name"], "psql");
        assert_eq!(record["client"]["pid"], 77);
        assert!(record.get("sql").is_none() && record.get("ts").is_none());
    }

    #[test]
    fn refused_connections_become_connection_blocked_records() {
        let e = Event {
            kind: Some(EventType::ConnectionBlocked),
            host: "db1".into(),
            client: Some(Client {
                pid: Some(77),
                comm: Some("psql".into()),
                ..Client::default()
            }),
            target: Some(crate::event::Target {
                transport: "tcp".into(),
                addr: Some("127.0.0.1".into()),
                port: Some(5432),
                socket: None,
            }),
            action: Some("refused".into()),
            ..Event::default()
        };
        assert_eq!(canonical_of_payload(&e), canonical_of_typed(&e));
        let record: Value =
            serde_json::from_str(&canonical_of_payload(&e).expect("audited")).expect("json");
        assert_eq!(record["type"], "connection_blocked");
        assert_eq!(record["client"]["pid"], 77);
        assert_eq!(record["target"]["port"], 5432);
        assert_eq!(record["action"], "refused");
    }
}
