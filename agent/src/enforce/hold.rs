//! The hold state machine for a backend the kernel stopped: the policy decision gives a
//! [`Plan`] (resume, ask a human, end the session); [`Enforcer`] carries it out and makes
//! sure no backend is ever left stopped (rule timeout, client gone, agent shutdown, and the
//! state file for agent crashes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tracing::{error, info, warn};
use uuid::Uuid;

use super::neutralise::{self, ProcessError};
use super::peer;
use super::state::{HeldRecord, StateError, StateFile};
use crate::approval::{ApprovalChannel, ApprovalRequest, Decision as Vote, Requester};
use crate::event::{Event, EventType, format_ts};
use crate::policy::classify::NoPrepared;
use crate::policy::{Class, Decision, Facts, Outcome, PolicySet, Unmediated};

/// First keywords whose *plain* statements (see the kernel's `plain_statement`: no
/// comment, quote, parenthesis, second statement, `INTO` or `FOR`) a flagged backend may run
/// without a stop, each with a statement that shows what such statements are to policy.
/// Every other statement of a flagged backend stops for the agent's decision.
pub const PLAIN_KINDS: &[(&str, &str)] = &[
    ("SELECT", "SELECT a FROM t WHERE b = 1"),
    ("SHOW", "SHOW work_mem"),
    ("BEGIN", "BEGIN"),
    ("START", "START TRANSACTION"),
    ("COMMIT", "COMMIT"),
    ("END", "END"),
    ("ROLLBACK", "ROLLBACK"),
    ("ABORT", "ABORT"),
    ("SAVEPOINT", "SAVEPOINT a"),
    ("RELEASE", "RELEASE SAVEPOINT a"),
];

/// The pass mask (bit `i` = `PLAIN_KINDS[i]`) of the plain kinds `policy` could never hold
/// or end in the session described by `facts` that bypasses the shim, or in any such session
/// (`None`).
pub fn pass_mask(policy: &PolicySet, facts: Option<&Facts>) -> u32 {
    PLAIN_KINDS
        .iter()
        .enumerate()
        .filter(|(_, (_, sample))| {
            let classification = policy.classifier().classify(sample, &NoPrepared);
            !classification.classes.contains(Class::Unknown)
                && !policy.may_stop_plain_unmediated(facts, &classification)
        })
        .fold(0, |mask, (i, _)| mask | 1 << i)
}

/// The kernel's `HOLD_SESSIONS` value for a session that bypasses the shim: `HOLD_PASS_ALL`
/// when policy could stop nothing of it, else its pass mask.
pub fn session_flags(policy: &PolicySet, facts: &Facts) -> u32 {
    if policy.stops_unmediated_for(facts) {
        pass_mask(policy, Some(facts))
    } else {
        agent_common::HOLD_PASS_ALL
    }
}

/// How often a held backend's client is checked for a disconnect.
const PEER_POLL: Duration = Duration::from_millis(500);
/// Extra wait past the rule's timeout before the hold itself calls it expired.
const DECISION_GRACE: Duration = Duration::from_secs(2);
/// How long filing a request may take (fail closed).
const FILE_TIMEOUT: Duration = Duration::from_secs(15);

/// What to do with a stopped backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Let the statement run (allow, audit, or `unmediated: audit`).
    Resume,
    /// Keep it stopped until approvers decide.
    Ask(Approval),
    /// Neutralise the statement and end the session.
    End,
}

/// Who may release a held backend, and how long it may wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Groups whose members may approve.
    pub approvers: Vec<String>,
    /// Distinct approvals needed.
    pub quorum: u32,
    /// How long the request stays open.
    pub timeout: Duration,
    /// A group that may approve alone.
    pub break_glass_group: Option<String>,
}

impl Plan {
    /// The plan for a policy decision on a stopped backend's statement.
    pub fn for_decision(decision: &Decision) -> Plan {
        match (&decision.outcome, decision.unmediated) {
            (Outcome::Allow | Outcome::Audit, _) | (_, Unmediated::Audit) => Plan::Resume,
            (
                Outcome::RequireApproval {
                    approvers,
                    quorum,
                    timeout,
                    break_glass_group,
                    ..
                },
                Unmediated::Hold,
            ) => Plan::Ask(Approval {
                approvers: approvers.clone(),
                quorum: *quorum,
                timeout: *timeout,
                break_glass_group: break_glass_group.clone(),
            }),
            _ => Plan::End,
        }
    }
}

/// A backend the kernel stopped, and where its statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBackend {
    /// Backend pid.
    pub pid: u32,
    /// Address of the statement buffer in the backend.
    pub buf_addr: u64,
    /// Statement length in the server.
    pub len: usize,
    /// Stopped at an `Execute` of the extended protocol rather than before parsing a
    /// `Query`: ending it needs no rewrite of its text.
    pub at_execute: bool,
}

/// How a hold ended.
struct Ending {
    outcome: &'static str,
    approvers: Vec<String>,
    reason: Option<String>,
    resume: bool,
}

/// A backend waiting for a decision: its state-file record and its `decision` event so far.
struct Held {
    record: HeldRecord,
    decision: Event,
}

/// Carries out plans for stopped backends and reports `hold` / `decision` events.
#[derive(Clone)]
pub struct Enforcer {
    inner: Arc<Inner>,
}

struct Inner {
    approvals: Arc<dyn ApprovalChannel>,
    events: mpsc::Sender<Event>,
    state: StateFile,
    held: Mutex<HashMap<u32, Held>>,
    host: String,
}

impl Enforcer {
    /// An enforcer filing requests with `approvals` and sending events to `events`.
    pub fn new(
        approvals: Arc<dyn ApprovalChannel>,
        events: mpsc::Sender<Event>,
        state: StateFile,
        host: String,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                approvals,
                events,
                state,
                held: Mutex::new(HashMap::new()),
                host,
            }),
        }
    }

    /// Ends every backend a previous agent left stopped (state file): neutralised and
    /// terminated, never resumed as is. Returns how many were still stopped.
    pub fn recover(&self) -> Result<usize, StateError> {
        end_recorded(&self.inner.state)
    }

    /// Takes over a stopped backend: `event` is its correlated `hold` event (session,
    /// client, statement), `decision` the policy decision for the statement.
    pub fn on_held(&self, backend: HeldBackend, event: Event, decision: Decision) {
        let this = self.clone();
        tokio::spawn(async move { this.run(backend, event, decision).await });
    }

    /// Ends every backend still held (agent shutdown): neutralised and terminated, each with
    /// a `decision` event queued (outcome `cancelled`).
    pub fn shutdown(&self) {
        let held: Vec<Held> = self.lock().drain().map(|(_, h)| h).collect();
        for Held {
            record,
            mut decision,
        } in held
        {
            info!(pid = record.pid, "agent stopping: ending held backend");
            end_backend(&record);
            decision.outcome = Some("cancelled".into());
            decision.reason = Some("the agent stopped".into());
            decision.action = Some("terminated".into());
            if self.inner.events.try_send(decision).is_err() {
                warn!(
                    pid = record.pid,
                    "decision event for a held backend lost at shutdown"
                );
            }
        }
        self.save();
    }

    async fn run(&self, backend: HeldBackend, mut event: Event, decision: Decision) {
        let pid = backend.pid;
        event.source = Some("kernel".into());
        event.unmediated = Some(true);
        event.outcome = Some(decision.outcome.name().into());
        event.rule = decision.rule.clone();
        event.class = Some(decision.classification.class.name().into());
        event.principal = Some(decision.principal.name.clone());
        event.principal_kind = Some(decision.principal.kind.name().into());
        let plan = Plan::for_decision(&decision);
        let Some(start_time) = neutralise::start_time(pid) else {
            warn!(pid, "held backend is gone before a decision");
            return;
        };
        let record = HeldRecord {
            pid,
            start_time,
            buf_addr: backend.buf_addr,
            len: backend.len,
            at_execute: backend.at_execute,
        };
        match plan {
            Plan::Resume => {
                if let Err(e) = neutralise::resume(pid) {
                    error!(pid, error = %e, "cannot resume backend");
                }
            }
            Plan::End => {
                end_backend(&record);
                let mut out = decision_event(&event, None);
                out.outcome = Some(decision.outcome.name().into());
                out.action = Some("terminated".into());
                self.emit(out).await;
            }
            Plan::Ask(approval) => {
                let id = Uuid::new_v4();
                let held = Held {
                    record: record.clone(),
                    decision: decision_event(&event, Some(id)),
                };
                self.lock().insert(pid, held);
                self.save();
                let request = self.request(&event, &decision, id, approval);
                let mut hold = event.clone();
                hold.kind = Some(EventType::Hold);
                hold.request_id = Some(id.to_string());
                hold.action = Some("held".into());
                self.emit(hold).await;
                let ending = self.wait(request, pid).await;
                // Only whoever takes the record out acts on the backend (shutdown may have).
                let Some(Held {
                    record,
                    decision: mut out,
                }) = self.lock().remove(&pid)
                else {
                    return;
                };
                self.save();
                out.ts = format_ts(SystemTime::now());
                out.outcome = Some(ending.outcome.into());
                out.approvers = Some(ending.approvers);
                out.reason = ending.reason;
                if ending.resume {
                    out.action = Some("resumed".into());
                    if let Err(e) = neutralise::resume(pid) {
                        error!(pid, error = %e, "cannot resume approved backend");
                        out.error = Some(e.to_string());
                    }
                } else {
                    out.action = Some("terminated".into());
                    end_backend(&record);
                }
                info!(pid, request = %id, outcome = ending.outcome, "hold decided");
                self.emit(out).await;
            }
        }
    }

    fn request(
        &self,
        event: &Event,
        decision: &Decision,
        id: Uuid,
        approval: Approval,
    ) -> ApprovalRequest {
        let principal = &decision.principal;
        let client = event.client.clone().unwrap_or_default();
        let sql = event.sql.clone().unwrap_or_default();
        ApprovalRequest {
            request_id: id,
            host: self.inner.host.clone(),
            session_id: event.session_id.clone().unwrap_or_default(),
            requester: Requester {
                principal: Some(principal.name.clone()).filter(|n| !n.is_empty()),
                kind: Some(principal.kind.name().to_owned()),
                owner: principal.owner.clone(),
                groups: principal.groups.clone(),
                db_user: event.db_user.clone(),
                client_user: client.user,
                exe: client.exe,
                unit: client.unit,
            },
            database: event.database.clone(),
            statement_sha256: crate::approval::statement_sha256(&sql),
            statement: sql,
            class: event.class.clone(),
            tables: decision.classification.tables.clone(),
            rule: decision.rule.clone().unwrap_or_default(),
            reason: None,
            approvers: approval.approvers,
            quorum: approval.quorum.max(1),
            break_glass_group: approval.break_glass_group,
            filed_at: SystemTime::now(),
            timeout: approval.timeout,
        }
    }

    /// Files the request and waits for a decision, the timeout, or the client to leave.
    async fn wait(&self, request: ApprovalRequest, pid: u32) -> Ending {
        let refused = |outcome, reason: Option<String>| Ending {
            outcome,
            approvers: Vec::new(),
            reason,
            resume: false,
        };
        let limit = request.timeout + DECISION_GRACE;
        let channel = &self.inner.approvals;
        let ticket = match tokio::time::timeout(FILE_TIMEOUT, channel.file(request)).await {
            Ok(Ok(ticket)) => ticket,
            Ok(Err(e)) => return refused("unavailable", Some(e.to_string())),
            Err(_) => return refused("unavailable", Some("filing the request timed out".into())),
        };
        info!(pid, request = %ticket.request_id, how = %ticket.how_to_approve, "backend held for approval");
        let decision = channel.decision(&ticket);
        tokio::pin!(decision);
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        let mut poll = tokio::time::interval(PEER_POLL);
        loop {
            tokio::select! {
                vote = &mut decision => return match vote {
                    Ok(Vote::Approved { approvers, comment }) => Ending {
                        outcome: "approved",
                        approvers,
                        reason: comment,
                        resume: true,
                    },
                    Ok(Vote::Denied { by, reason }) => Ending {
                        outcome: "denied",
                        approvers: vec![by],
                        reason,
                        resume: false,
                    },
                    Ok(Vote::Expired) => refused("expired", None),
                    Ok(Vote::Cancelled) => refused("cancelled", None),
                    Err(e) => refused("unavailable", Some(e.to_string())),
                },
                () = &mut deadline => {
                    channel.cancel(&ticket);
                    return refused("expired", None);
                }
                _ = poll.tick() => {
                    if !self.lock().contains_key(&pid) {
                        channel.cancel(&ticket);
                        return refused("cancelled", Some("the agent is stopping".into()));
                    }
                    if peer::client_gone(pid) {
                        channel.cancel(&ticket);
                        return refused("cancelled", Some("the client disconnected while held".into()));
                    }
                }
            }
        }
    }

    async fn emit(&self, event: Event) {
        let _ = self.inner.events.send(event).await;
    }

    fn save(&self) {
        let records: Vec<HeldRecord> = self.lock().values().map(|h| h.record.clone()).collect();
        if let Err(e) = self.inner.state.store(&records) {
            error!(error = %e, "cannot record held backends");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Held>> {
        self.inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `decision` event for a hold (or a termination without a request).
fn decision_event(base: &Event, id: Option<Uuid>) -> Event {
    Event {
        kind: Some(EventType::Decision),
        ts: format_ts(SystemTime::now()),
        request_id: id.map(|id| id.to_string()),
        ..base.clone()
    }
}

/// Ends every backend recorded in `state` that is still the process recorded (same start
/// time, so a reused pid is left alone): neutralised and terminated, never resumed as is;
/// then empties the file. Returns how many were ended. Run at agent start and by
/// `dbward held resume` (the unit's `ExecStopPost=`).
pub fn end_recorded(state: &StateFile) -> Result<usize, StateError> {
    let records = state.load()?;
    let mut ended = 0;
    for record in &records {
        if neutralise::start_time(record.pid) != Some(record.start_time) {
            continue;
        }
        warn!(
            pid = record.pid,
            "backend left stopped by a previous agent: neutralising and terminating it"
        );
        end_backend(record);
        ended += 1;
    }
    state.store(&[])?;
    Ok(ended)
}

/// Ends a stopped backend's session so that its statement never runs; kills it when that
/// cannot be done. Before parsing, the statement is neutralised first (PostgreSQL parses
/// and runs a `Query` before it next checks for a termination). At an `Execute`, the
/// termination alone is enough: `exec_execute_message` checks for pending interrupts after
/// reporting the statement and before running the portal, so the pending SIGTERM ends the
/// session there ("terminating connection due to administrator command").
fn end_backend(record: &HeldRecord) {
    let pid = record.pid;
    let result: Result<(), ProcessError> = if record.at_execute {
        neutralise::terminate(pid)
    } else {
        neutralise::neutralise(pid, record.buf_addr, record.len)
            .and_then(|()| neutralise::terminate(pid))
    };
    if let Err(e) = result {
        error!(pid, error = %e, "cannot end the held backend cleanly: killing it");
        if let Err(e) = neutralise::kill_hard(pid) {
            error!(pid, error = %e, "cannot kill the held backend");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
identities:
  - name: bot
    kind: ai_agent
    match:
      application_name: bot
rules:
  - name: bot-ddl
    match:
      kind: ai_agent
      class: ddl
    outcome:
      require_approval:
        approvers: [dba]
        timeout: 30s
  - name: bot-delete
    match:
      kind: ai_agent
      class: delete
    outcome:
      deny:
        message: no deletes
  - name: bot-write
    match:
      kind: ai_agent
      class: write
    outcome:
      require_approval:
        approvers: [dba]
    unmediated: audit
  - name: bot-privilege
    match:
      kind: ai_agent
      class: privilege
    outcome:
      require_approval:
        approvers: [dba]
    unmediated: terminate
"#;

    #[test]
    fn plans_follow_the_outcome_and_the_rules_unmediated_setting() {
        let policy = PolicySet::from_sources(&[("p.yaml".into(), POLICY.into())]).unwrap();
        assert!(policy.stops_unmediated());
        let facts = Facts {
            application_name: Some("bot".into()),
            unmediated: true,
            ..Facts::default()
        };
        let ask = Plan::Ask(Approval {
            approvers: vec!["dba".into()],
            quorum: 1,
            timeout: Duration::from_secs(30),
            break_glass_group: None,
        });
        for (sql, want) in [
            ("DROP TABLE t", ask),
            ("SELECT 1", Plan::Resume),
            ("DELETE FROM t", Plan::End),
            ("UPDATE t SET a = 1", Plan::Resume),
            ("GRANT SELECT ON t TO x", Plan::End),
        ] {
            let decision = policy.evaluate(&facts, sql, SystemTime::now());
            assert_eq!(Plan::for_decision(&decision), want, "{sql}");
        }
    }

    #[test]
    fn plain_kinds_fit_the_kernel_key_and_start_their_sample() {
        for (word, sample) in PLAIN_KINDS {
            assert!(word.len() < agent_common::KEYWORD_LEN, "{word}");
            assert_eq!(*word, word.to_ascii_uppercase());
            assert!(sample.starts_with(word), "{sample}");
        }
    }

    fn policy(yaml: &str) -> PolicySet {
        PolicySet::from_sources(&[("p.yaml".into(), yaml.into())]).unwrap()
    }

    #[test]
    fn plain_kinds_pass_only_when_no_rule_could_stop_them() {
        let names = |mask: u32| -> Vec<&str> {
            PLAIN_KINDS
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, (k, _))| *k)
                .collect()
        };
        let all: Vec<&str> = PLAIN_KINDS.iter().map(|(k, _)| *k).collect();
        // Deletes, writes and privilege changes stop; reads, session and transaction
        // commands pass.
        assert_eq!(names(pass_mask(&policy(POLICY), None)), all);
        // A rule on a table (no class) could match any read of it: SELECTs stop.
        let tables = policy(
            "rules:\n  - name: payroll\n    match:\n      table: [payroll]\n    outcome:\n      require_approval:\n        approvers: [dba]\n",
        );
        assert!(!names(pass_mask(&tables, None)).contains(&"SELECT"));
        // A rule on reads by a command name stops SELECTs but not SHOW.
        let selects = policy(
            "rules:\n  - name: reads\n    match:\n      command: [SELECT]\n    outcome:\n      deny:\n        message: no\n",
        );
        let pass = names(pass_mask(&selects, None));
        assert!(!pass.contains(&"SELECT"));
        assert!(pass.contains(&"SHOW"));
        // A function rule cannot match a statement without parentheses, unless it names a
        // function SQL calls without them.
        let functions = policy(
            "rules:\n  - name: files\n    match:\n      function: [pg_read_file]\n    outcome:\n      deny:\n        message: no\n",
        );
        assert_eq!(names(pass_mask(&functions, None)), all);
        let who = policy(
            "rules:\n  - name: who\n    match:\n      function: [current_*]\n    outcome:\n      deny:\n        message: no\n",
        );
        assert!(!names(pass_mask(&who, None)).contains(&"SELECT"));
        // `unmediated: audit` on a read rule keeps reads passing.
        let audited = policy(
            "rules:\n  - name: reads\n    match:\n      class: read\n    outcome:\n      deny:\n        message: no\n    unmediated: audit\n",
        );
        assert!(names(pass_mask(&audited, None)).contains(&"SELECT"));
        // Unmatched statements held: nothing passes.
        let unmatched = policy(
            "defaults:\n  unmatched:\n    require_approval:\n      approvers: [dba]\nrules: []\n",
        );
        assert!(unmatched.stops_unmediated());
        assert_eq!(pass_mask(&unmatched, None), 0);
    }

    #[test]
    fn sessions_are_judged_by_their_principal() {
        // Reads of payroll stop for AI agents only.
        let policy = policy(
            "identities:\n  - name: bot\n    kind: ai_agent\n    match:\n      application_name: bot\n  - name: dba\n    kind: human\n    match:\n      application_name: psql\nrules:\n  - name: payroll\n    match:\n      kind: ai_agent\n      table: [payroll]\n    outcome:\n      deny:\n        message: no\n",
        );
        let select = 1
            << PLAIN_KINDS
                .iter()
                .position(|(k, _)| *k == "SELECT")
                .unwrap();
        let bot = Facts {
            application_name: Some("bot".into()),
            unmediated: true,
            ..Facts::default()
        };
        let human = Facts {
            application_name: Some("psql".into()),
            unmediated: true,
            ..Facts::default()
        };
        assert_eq!(pass_mask(&policy, None) & select, 0);
        assert_eq!(session_flags(&policy, &bot) & select, 0);
        assert_eq!(
            session_flags(&policy, &bot) & agent_common::HOLD_PASS_ALL,
            0,
            "the bot's statements can stop"
        );
        assert_eq!(session_flags(&policy, &human), agent_common::HOLD_PASS_ALL);
    }
}
