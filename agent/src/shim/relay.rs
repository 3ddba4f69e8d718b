//! The per-session relay after startup: decodes the SQL-carrying client messages, asks the
//! gate, forwards / refuses / holds, and streams server messages back, reading only the
//! headers it needs (CommandComplete, ErrorResponse, ReadyForQuery).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufWriter, ReadHalf, WriteHalf};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use super::Ctx;
use super::connection::{BoxStream, FrameReader};
use super::events::{Action, ShimEvent, StatementEvent, Verdict};
use super::gate::{GateVerdict, SessionFacts};
use super::reason::{leading_reason, session_reason_change};
use super::responses::{self, Refusal};
use super::startup::{Established, SessionError};
use super::statements::{Definition, MAX_DEFINITIONS, Statements};
use crate::policy::classify::postgres::prepared::{PreparedChanges, prepared_changes};
use crate::protocol::postgres::{CommandComplete, ErrorResponse, FromBytes, FrontendMessage};

/// How the statement arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// A Query message (answered up to ReadyForQuery).
    Simple,
    /// An Execute message (answered by CommandComplete/ErrorResponse; Sync ends the batch).
    Extended,
}

/// Why the relay loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// Keep going.
    Continue,
    /// Client said Terminate or went away.
    ClientGone,
    /// Server closed.
    ServerGone,
    /// The agent is shutting down.
    Shutdown,
}

/// What the gate and the requester said about a statement, carried to its event.
#[derive(Debug, Clone)]
pub(super) struct Meta {
    pub verdict: Verdict,
    pub rule: Option<String>,
    pub class: Option<String>,
    pub reason: Option<String>,
    pub request_id: Option<Uuid>,
}

struct Inflight {
    sql: Arc<str>,
    meta: Meta,
    mode: Mode,
    sync_seq: u64,
    started: Instant,
    tags: Vec<String>,
    rows: Option<u64>,
    error: Option<String>,
    /// What a Query does to the session's prepared statements once the server ran it.
    prepared: PreparedChanges,
}

/// A refused Execute: client messages are dropped until Sync, as PostgreSQL does after an
/// error in an extended-protocol batch.
enum Discard {
    /// The refusal waits for the client's Flush or Sync to be injected.
    Pending(Bytes),
    /// Injected at a Flush; the Sync still has to be forwarded.
    Injected,
}

struct Injection {
    marker: String,
    error: Bytes,
    sync_seq: u64,
    /// ParseComplete/BindComplete the injected messages produce (0 simple, 2 extended).
    own_completions: usize,
}

/// One client session between startup and its end.
pub(super) struct Session {
    pub ctx: Arc<Ctx>,
    pub facts: SessionFacts,
    pub client_rd: FrameReader<ReadHalf<BoxStream>>,
    pub client_wr: BufWriter<WriteHalf<BoxStream>>,
    pub server_rd: FrameReader<ReadHalf<BoxStream>>,
    pub server_wr: BufWriter<WriteHalf<BoxStream>>,
    pub cancel: Arc<Notify>,
    pub shutdown: watch::Receiver<bool>,
    statements: Statements,
    /// Portal → its statement's definition; `None` when bound to a statement the shim never
    /// saw parsed (e.g. one made with SQL `PREPARE`).
    portals: HashMap<String, Option<Definition>>,
    reason: Option<String>,
    inflight: VecDeque<Inflight>,
    syncs_sent: u64,
    syncs_done: u64,
    discard: Option<Discard>,
    injections: Vec<Injection>,
    stash: Vec<Bytes>,
    nonce: String,
    refusals: u64,
    /// What the Query being handled does to the prepared statements, read once when it
    /// arrives; [`Session::forward`] takes it into the Query's [`Inflight`].
    query_prepared: PreparedChanges,
}

impl Session {
    /// A session over the connections `established` set up.
    pub fn new(
        ctx: Arc<Ctx>,
        facts: SessionFacts,
        established: Established,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            ctx,
            facts,
            client_rd: established.client_rd,
            client_wr: established.client_wr,
            server_rd: established.server_rd,
            server_wr: established.server_wr,
            cancel: established.cancel,
            shutdown,
            statements: Statements::default(),
            portals: HashMap::new(),
            reason: None,
            inflight: VecDeque::new(),
            syncs_sent: 0,
            syncs_done: 0,
            discard: None,
            injections: Vec::new(),
            stash: Vec::new(),
            nonce: Uuid::new_v4().simple().to_string(),
            refusals: 0,
            query_prepared: PreparedChanges::None,
        }
    }

    fn idle(&self) -> bool {
        self.inflight.is_empty() && self.syncs_done == self.syncs_sent
    }

    /// Relays until the client or server leaves, or shutdown.
    pub async fn run(&mut self) -> Result<Flow, SessionError> {
        let idle_limit = self.ctx.config.idle_timeout();
        let mut stop_rx = self.shutdown.clone();
        let stop = async move {
            let _ = stop_rx.changed().await;
        };
        tokio::pin!(stop);
        loop {
            let idle_now = self.idle();
            let idle_timer = async {
                match idle_limit {
                    Some(d) if idle_now => tokio::time::sleep(d).await,
                    _ => std::future::pending().await,
                }
            };
            let flow = tokio::select! {
                frame = self.server_rd.read_frame() => {
                    let Some(frame) = frame.map_err(SessionError::Server)? else {
                        self.client_wr.flush().await?;
                        return Ok(Flow::ServerGone);
                    };
                    self.on_server_frame(frame).await?;
                    Flow::Continue
                }
                frame = self.client_rd.read_frame() => {
                    match frame {
                        Ok(Some(frame)) => self.on_client_frame(frame).await?,
                        Ok(None) => Flow::ClientGone,
                        Err(e) => {
                            let msg = format!("dbward shim: {e}");
                            self.close_client(responses::PROTOCOL_VIOLATION, &msg).await;
                            return Err(SessionError::Client(e));
                        }
                    }
                }
                () = idle_timer => {
                    self.close_client(
                        responses::IDLE_TIMEOUT,
                        "terminating connection due to idle timeout (shim.idle_timeout_secs)",
                    )
                    .await;
                    Flow::ClientGone
                }
                () = &mut stop => Flow::Shutdown,
            };
            if flow == Flow::Shutdown {
                self.close_client(
                    responses::ADMIN_SHUTDOWN,
                    "terminating connection because the dbward agent is shutting down",
                )
                .await;
            }
            if flow != Flow::Continue {
                self.server_wr.write_all(b"X\0\0\0\x04").await.ok();
                self.server_wr.flush().await.ok();
                return Ok(flow);
            }
            if !self.server_rd.has_frame() {
                self.client_wr.flush().await?;
            }
            if !self.client_rd.has_frame() {
                self.server_wr.flush().await?;
            }
        }
    }

    /// Sends a FATAL error to the client (best effort).
    pub async fn close_client(&mut self, code: &str, message: &str) {
        self.client_wr
            .write_all(&responses::fatal(code, message))
            .await
            .ok();
        self.client_wr.flush().await.ok();
    }

    async fn on_client_frame(&mut self, frame: Bytes) -> Result<Flow, SessionError> {
        let msg = match FrontendMessage::decode(&frame) {
            Ok(m) => m,
            Err(e) => {
                let msg = format!("dbward shim: invalid message from client: {e}");
                self.close_client(responses::PROTOCOL_VIOLATION, &msg).await;
                return Err(SessionError::Protocol(e.to_string()));
            }
        };
        if let Some(state) = self.discard.take() {
            match (msg, state) {
                (FrontendMessage::Sync, Discard::Pending(error)) => {
                    self.syncs_sent += 1;
                    self.inject_extended_refusal(error, &frame, self.syncs_sent)
                        .await?;
                }
                (FrontendMessage::Sync, Discard::Injected) => {
                    self.syncs_sent += 1;
                    self.server_wr.write_all(&frame).await?;
                }
                (FrontendMessage::Flush, Discard::Pending(error)) => {
                    self.inject_extended_refusal(error, &frame, self.syncs_sent + 1)
                        .await?;
                    self.discard = Some(Discard::Injected);
                }
                (_, state) => self.discard = Some(state),
            }
            return Ok(Flow::Continue);
        }
        match msg {
            FrontendMessage::Query(q) => {
                // Names it drops are forgotten before it is judged (`EXECUTE` of a name the
                // same query deallocates is then of unknown class).
                self.query_prepared = prepared_changes(&q.sql);
                self.statements.query_sent(&self.query_prepared);
                let sql: Arc<str> = Arc::from(q.sql);
                return self.on_statement(Mode::Simple, sql, frame).await;
            }
            FrontendMessage::Parse(p) => {
                self.statements.parse(p.name, Arc::from(p.sql));
            }
            FrontendMessage::Bind(b) => {
                let sql = self.statements.get(&b.statement);
                self.portals.insert(b.portal, sql);
            }
            FrontendMessage::Execute(e) => match self.portals.get(&e.portal).cloned() {
                Some(Some(Definition::Text(sql))) => {
                    return self.on_statement(Mode::Extended, sql, frame).await;
                }
                Some(definition) => {
                    let refusal = match definition {
                        None => Refusal::denied(
                            "dbward: Execute of a prepared statement the shim did not see parsed (made with SQL PREPARE?) is refused",
                        )
                        .hint("prepare it with the protocol's Parse message, or run EXECUTE in a query"),
                        Some(_) => Refusal::denied(format!(
                            "dbward: Execute of a prepared statement whose name was parsed with more than {MAX_DEFINITIONS} different texts is refused: the shim cannot tell which one the server holds"
                        ))
                        .hint("Close the statement before parsing its name again"),
                    };
                    let meta = Meta {
                        verdict: Verdict::Deny,
                        rule: None,
                        class: None,
                        reason: None,
                        request_id: None,
                    };
                    let label = format!("Execute of portal {:?}", e.portal);
                    self.refuse_statement(Mode::Extended, &label, meta, refusal)
                        .await?;
                    return Ok(Flow::Continue);
                }
                None => {}
            },
            FrontendMessage::Close(c) => match c.target {
                crate::protocol::postgres::Target::Statement => {
                    self.statements.close(&c.name);
                }
                crate::protocol::postgres::Target::Portal => {
                    self.portals.remove(&c.name);
                }
            },
            FrontendMessage::Sync => self.syncs_sent += 1,
            FrontendMessage::FunctionCall => {
                self.refuse(
                    Mode::Simple,
                    Refusal::denied(
                        "dbward: FunctionCall messages are not allowed through the shim; call the function in SQL",
                    ),
                )
                .await?;
                return Ok(Flow::Continue);
            }
            FrontendMessage::Terminate => {
                self.server_wr.write_all(&frame).await?;
                self.server_wr.flush().await?;
                return Ok(Flow::ClientGone);
            }
            FrontendMessage::Describe(_)
            | FrontendMessage::Flush
            | FrontendMessage::Passthrough(_) => {}
        }
        self.server_wr.write_all(&frame).await?;
        Ok(Flow::Continue)
    }

    async fn on_statement(
        &mut self,
        mode: Mode,
        sql: Arc<str>,
        frame: Bytes,
    ) -> Result<Flow, SessionError> {
        let reason = leading_reason(&sql).or_else(|| self.reason.clone());
        let verdict = self.ctx.gate.evaluate(&self.facts, &sql, &self.statements);
        let mut meta = Meta {
            verdict: Verdict::Deny,
            rule: None,
            class: None,
            reason,
            request_id: None,
        };
        match verdict {
            Err(e) => {
                let refusal = Refusal::denied(format!(
                    "dbward: statement refused because policy could not be evaluated ({e})"
                ))
                .hint("the dbward agent fails closed; check `dbward status` on the database host");
                self.refuse_statement(mode, &sql, meta, refusal).await?;
            }
            Ok(GateVerdict::Forward { audit, rule, class }) => {
                meta.verdict = if audit {
                    Verdict::Audit
                } else {
                    Verdict::Allow
                };
                meta.rule = rule;
                meta.class = class;
                if let Some(change) = session_reason_change(&sql) {
                    self.reason = change;
                }
                self.forward(mode, sql, frame, meta).await?;
            }
            Ok(GateVerdict::Deny {
                message,
                rule,
                class,
            }) => {
                let mut refusal = Refusal::denied(message);
                if let Some(r) = &rule {
                    refusal = refusal.detail(format!("dbward rule: {r}"));
                }
                meta.rule = rule;
                meta.class = class;
                self.refuse_statement(mode, &sql, meta, refusal).await?;
            }
            Ok(GateVerdict::RequireApproval(rule)) => {
                meta.verdict = Verdict::RequireApproval;
                meta.rule = Some(rule.rule.clone());
                meta.class = rule.class.clone();
                if rule.reason_required && meta.reason.is_none() {
                    let refusal = Refusal::denied(format!(
                        "dbward: rule \"{}\" requires a justification for this statement",
                        rule.rule
                    ))
                    .hint(
                        "start the statement with /* dbward-reason: why */ or run SET dbward.reason = 'why' first",
                    );
                    self.refuse_statement(mode, &sql, meta, refusal).await?;
                } else {
                    return self.hold(mode, sql, frame, meta, rule).await;
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// Sends a statement the gate (or an approver) let through.
    pub(super) async fn forward(
        &mut self,
        mode: Mode,
        sql: Arc<str>,
        frame: Bytes,
        meta: Meta,
    ) -> Result<(), SessionError> {
        let (sync_seq, prepared) = match mode {
            Mode::Simple => {
                self.syncs_sent += 1;
                (self.syncs_sent, std::mem::take(&mut self.query_prepared))
            }
            Mode::Extended => (self.syncs_sent + 1, PreparedChanges::None),
        };
        self.inflight.push_back(Inflight {
            sql,
            meta,
            mode,
            sync_seq,
            started: Instant::now(),
            tags: Vec::new(),
            rows: None,
            error: None,
            prepared,
        });
        self.server_wr.write_all(&frame).await?;
        Ok(())
    }

    /// Refuses a statement and records it.
    pub(super) async fn refuse_statement(
        &mut self,
        mode: Mode,
        sql: &str,
        meta: Meta,
        refusal: Refusal,
    ) -> Result<(), SessionError> {
        tracing::info!(
            session = %self.facts.session_id,
            rule = meta.rule.as_deref().unwrap_or(""),
            "statement refused"
        );
        self.ctx.events.emit(ShimEvent::Statement(StatementEvent {
            session_id: self.facts.session_id.clone(),
            statement: sql.to_owned(),
            verdict: meta.verdict,
            rule: meta.rule,
            class: meta.class,
            reason: meta.reason,
            request_id: meta.request_id,
            action: Action::Denied {
                message: refusal.message.clone(),
            },
            command_tags: Vec::new(),
            rows: None,
            error: None,
            duration: Duration::ZERO,
        }));
        self.refuse(mode, refusal).await
    }

    /// Makes the server fail where the refused statement stood (so transactions and
    /// pipelines fail as PostgreSQL fails them) and swaps its error for `refusal`.
    async fn refuse(&mut self, mode: Mode, refusal: Refusal) -> Result<(), SessionError> {
        match mode {
            Mode::Simple => {
                self.syncs_sent += 1;
                let marker = self.next_marker(refusal.to_error(), 0, self.syncs_sent);
                self.statements.close("");
                self.portals.remove("");
                self.server_wr
                    .write_all(&responses::raise_query(&marker))
                    .await?;
            }
            Mode::Extended => self.discard = Some(Discard::Pending(refusal.to_error())),
        }
        Ok(())
    }

    fn next_marker(&mut self, error: Bytes, own_completions: usize, sync_seq: u64) -> String {
        self.refusals += 1;
        let marker = format!("dbward-refusal-{}-{}", self.nonce, self.refusals);
        self.injections.push(Injection {
            marker: marker.clone(),
            error,
            sync_seq,
            own_completions,
        });
        marker
    }

    /// Sends the failing statement in place of the refused Execute, ending with the
    /// client's Flush or Sync (`end`), whose batch is number `sync_seq`.
    async fn inject_extended_refusal(
        &mut self,
        error: Bytes,
        end: &Bytes,
        sync_seq: u64,
    ) -> Result<(), SessionError> {
        let marker = self.next_marker(error, 2, sync_seq);
        self.statements.close("");
        self.portals.remove("");
        for m in responses::raise_extended(&marker, end) {
            self.server_wr.write_all(&m).await?;
        }
        Ok(())
    }

    /// Relays one server message, noting outcomes and swapping injected errors.
    pub(super) async fn on_server_frame(&mut self, frame: Bytes) -> Result<(), SessionError> {
        let tag = frame[0];
        if !self.injections.is_empty() && (tag == b'1' || tag == b'2') {
            self.stash.push(frame);
            return Ok(());
        }
        if tag == b'E'
            && !self.injections.is_empty()
            && let Ok(e) = ErrorResponse::from_bytes(&frame[5..])
        {
            let message = e.0.message().unwrap_or_default();
            if let Some(i) = self.injections.iter().position(|i| i.marker == message) {
                let inj = self.injections.remove(i);
                let keep = self.stash.len().saturating_sub(inj.own_completions);
                self.stash.truncate(keep);
                for s in std::mem::take(&mut self.stash) {
                    self.client_wr.write_all(&s).await?;
                }
                self.client_wr.write_all(&inj.error).await?;
                return Ok(());
            }
        }
        for s in std::mem::take(&mut self.stash) {
            self.client_wr.write_all(&s).await?;
        }
        match tag {
            b'C' | b'I' | b's' => {
                let tag_text = (tag == b'C')
                    .then(|| CommandComplete::from_bytes(&frame[5..]).ok())
                    .flatten();
                self.note_completion(tag_text, None);
            }
            b'E' => {
                let message = ErrorResponse::from_bytes(&frame[5..])
                    .ok()
                    .and_then(|e| e.0.message().map(str::to_owned))
                    .unwrap_or_else(|| "server error".into());
                self.note_completion(None, Some(message));
            }
            b'Z' => {
                self.syncs_done += 1;
                let done = self.syncs_done;
                self.injections.retain(|i| i.sync_seq > done);
                while self.inflight.front().is_some_and(|f| f.sync_seq <= done) {
                    if let Some(f) = self.inflight.pop_front() {
                        let prepares = f.tags.iter().filter(|t| *t == "PREPARE").count();
                        self.statements.query_done(&f.prepared, prepares);
                        self.emit_forwarded(f);
                    }
                }
            }
            _ => {}
        }
        self.client_wr.write_all(&frame).await?;
        Ok(())
    }

    fn note_completion(&mut self, tag: Option<CommandComplete>, error: Option<String>) {
        let batch = self.syncs_done + 1;
        let Some(front) = self.inflight.front_mut() else {
            return;
        };
        if front.sync_seq != batch {
            return;
        }
        if let Some(t) = tag {
            if let Some(r) = t.rows() {
                front.rows = Some(front.rows.unwrap_or(0) + r);
            }
            front.tags.push(t.tag);
        }
        if error.is_some() {
            front.error = error;
        }
        if front.mode == Mode::Extended
            && let Some(f) = self.inflight.pop_front()
        {
            self.emit_forwarded(f);
        }
    }

    fn emit_forwarded(&self, f: Inflight) {
        self.ctx.events.emit(ShimEvent::Statement(StatementEvent {
            session_id: self.facts.session_id.clone(),
            statement: f.sql.to_string(),
            verdict: f.meta.verdict,
            rule: f.meta.rule,
            class: f.meta.class,
            reason: f.meta.reason,
            request_id: f.meta.request_id,
            action: Action::Forwarded,
            command_tags: f.tags,
            rows: f.rows,
            error: f.error,
            duration: f.started.elapsed(),
        }));
    }
}
