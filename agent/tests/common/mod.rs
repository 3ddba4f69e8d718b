//! Shared helpers for the shim integration tests: a real PostgreSQL ([`pg`]), a private CA
//! ([`certs`]), the shim started in-process, a small prefix-rule test gate, and psql/pgbench runners.
#![allow(dead_code)]

pub mod certs;
pub mod pg;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dbward_agent::approval::{ApprovalChannel, LocalApprovals};
use dbward_agent::shim::{
    ApprovalRule, GateError, GateVerdict, PreparedStatements, SessionFacts, Shim, ShimConfig,
    ShimEvent, StatementGate, UnixListen,
};
use tokio::sync::{mpsc, oneshot};

pub use pg::Pg;

/// Test policy: the first rule whose prefix starts the (trimmed, lower-cased) statement wins;
/// everything else is forwarded.
#[derive(Default)]
pub struct PrefixGate {
    /// (prefix, verdict) pairs.
    pub rules: Vec<(String, GateVerdict)>,
    /// When set, every evaluation fails (policy engine down).
    pub broken: bool,
    /// Every statement the gate saw, with the session's facts.
    pub seen: Mutex<Vec<(SessionFacts, String)>>,
}

impl PrefixGate {
    /// Adds a deny rule.
    pub fn deny(mut self, prefix: &str, message: &str) -> Self {
        self.rules.push((
            prefix.to_lowercase(),
            GateVerdict::Deny {
                message: message.into(),
                rule: Some(format!("deny-{prefix}")),
                class: None,
            },
        ));
        self
    }

    /// Adds a require-approval rule with `timeout` for group `dba`.
    pub fn hold(mut self, prefix: &str, timeout: Duration, reason_required: bool) -> Self {
        self.rules.push((
            prefix.to_lowercase(),
            GateVerdict::RequireApproval(ApprovalRule {
                rule: format!("hold-{prefix}"),
                class: Some("delete".into()),
                tables: vec![],
                approvers: vec!["root".into(), "postgres".into()],
                quorum: 1,
                timeout,
                reason_required,
                break_glass_group: None,
                principal: None,
            }),
        ));
        self
    }
}

impl StatementGate for PrefixGate {
    fn evaluate(
        &self,
        session: &SessionFacts,
        sql: &str,
        prepared: &dyn PreparedStatements,
    ) -> Result<GateVerdict, GateError> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((session.clone(), sql.to_owned()));
        }
        if self.broken {
            return Err(GateError("test gate is broken".into()));
        }
        let mut text = sql.trim_start().to_lowercase();
        // SQL `EXECUTE name` is judged as the statement prepared under that name.
        if let Some(name) = text.strip_prefix("execute ")
            && let Some(body) = prepared.prepared_sql(name.trim().trim_end_matches(';'))
        {
            text = body.trim_start().to_lowercase();
        }
        let text = match text.strip_prefix("/*") {
            Some(rest) => rest
                .split_once("*/")
                .map_or("", |(_, s)| s)
                .trim_start()
                .to_owned(),
            None => text,
        };
        Ok(self
            .rules
            .iter()
            .find(|(p, _)| text.starts_with(p.as_str()))
            .map(|(_, v)| v.clone())
            .unwrap_or(GateVerdict::Forward {
                audit: true,
                rule: None,
                class: None,
            }))
    }
}

/// A shim running in the test's runtime.
pub struct RunningShim {
    /// TCP address clients connect to.
    pub addr: std::net::SocketAddr,
    /// Unix socket directory (socket `.s.PGSQL.<port>` inside, port = `addr.port()`).
    pub socket_dir: PathBuf,
    /// Events the shim emitted.
    pub events: mpsc::Receiver<ShimEvent>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningShim {
    /// Port of the TCP listener (also names the unix socket).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Drains the events received so far.
    pub fn drain_events(&mut self) -> Vec<ShimEvent> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }

    /// Stops the shim and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// Options for [`start_shim`].
pub struct ShimOptions {
    /// Statement gate.
    pub gate: Arc<dyn StatementGate>,
    /// Approval channel.
    pub approvals: Arc<dyn ApprovalChannel>,
    /// Adjusts the config before start.
    pub tweak: Box<dyn FnOnce(&mut ShimConfig)>,
}

impl ShimOptions {
    /// Allow-and-audit everything, local approvals.
    pub fn new(gate: Arc<dyn StatementGate>) -> Self {
        Self {
            gate,
            approvals: Arc::new(LocalApprovals::default()),
            tweak: Box::new(|_| {}),
        }
    }
}

/// Starts the shim on a free port (TCP) and a unix socket in a fresh dir, in front of `pg`.
pub async fn start_shim(pg: &Pg, opts: ShimOptions) -> RunningShim {
    let port = pg::free_port();
    let socket_dir = tempfile::Builder::new()
        .prefix("dbward-shim-")
        .tempdir()
        .expect("socket dir")
        .keep();
    let mut config = ShimConfig::new(pg.addr());
    config.listen_tcp = vec![format!("127.0.0.1:{port}").parse().expect("addr")];
    config.listen_unix = vec![UnixListen {
        path: socket_dir.join(format!(".s.PGSQL.{port}")),
        mode: "0777".into(),
    }];
    (opts.tweak)(&mut config);
    let (tx, events) = mpsc::channel(10_000);
    let shim = Shim::new(config, opts.gate, opts.approvals, tx).expect("valid shim config");
    let bound = shim.bind().await.expect("shim listens");
    let addr = bound.tcp_addrs()[0];
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        bound
            .serve(async {
                let _ = stop_rx.await;
            })
            .await;
    });
    RunningShim {
        addr,
        socket_dir,
        events,
        stop: Some(stop_tx),
        task: Some(task),
    }
}

/// Runs psql (blocking; call from `spawn_blocking` in async tests) with `args`.
pub fn psql(
    host: &str,
    port: u16,
    user: &str,
    extra_env: &[(&str, &str)],
    args: &[&str],
) -> Output {
    Command::new("/usr/lib/postgresql/15/bin/psql")
        .args([
            "-X", "-A", "-t", "-h", host, "-U", user, "-d", "postgres", "-p",
        ])
        .arg(port.to_string())
        .args(args)
        .envs(extra_env.iter().copied())
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql runs")
}

/// psql's stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// psql's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Path to a file under the workspace's `tests/clients`.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients")
}

/// The statement events (forwarded or denied) among `events`.
pub fn statements(events: &[ShimEvent]) -> Vec<dbward_agent::shim::StatementEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            ShimEvent::Statement(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}
