//! Ending MariaDB sessions that policy does not let run unmediated.
//!
//! `mariadbd` serves every session as a thread of one process, so a session cannot be
//! stopped while a human decides (a stop signal would freeze the whole server). A statement
//! whose decision is not `audit` for unmediated sessions (`terminate`, `block`, and `hold`,
//! which fails closed to `terminate`) ends its session with `KILL CONNECTION <id>`, sent
//! through an administrative connection to the server's own unix socket. The kernel reports
//! the statement as it starts, so it may have run (or run partly: `KILL` interrupts a
//! running statement and rolls back its open transaction) before the session ends; the
//! decision event says so.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mysql_async::prelude::Queryable as _;
use tokio::sync::mpsc;
use tracing::{error, info};

use crate::event::{Event, EventType, format_ts};
use crate::policy::Unmediated;

/// Why a session was ended, for the decision event.
fn reason(unmediated: Unmediated) -> &'static str {
    if unmediated == Unmediated::Hold {
        "MariaDB sessions cannot be held (one process serves them all): the session was ended instead; the statement may have run"
    } else {
        "policy ends unmediated sessions running this statement; the statement may have run"
    }
}

/// Longest wait for the administrative connection and the `KILL`.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a session could not be ended.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    /// The server's socket is not known.
    #[error("no unix socket of MariaDB server {0} is known")]
    NoSocket(u32),
    /// Connecting or running `KILL` failed.
    #[error("KILL CONNECTION {conn_id} through {socket}: {source}")]
    Server {
        /// The connection id.
        conn_id: u64,
        /// The socket used.
        socket: PathBuf,
        /// The cause.
        #[source]
        source: mysql_async::Error,
    },
    /// The server did not answer in time.
    #[error("KILL CONNECTION {conn_id} through {socket}: no answer within {KILL_TIMEOUT:?}")]
    Timeout {
        /// The connection id.
        conn_id: u64,
        /// The socket used.
        socket: PathBuf,
    },
}

/// The agent's own administrative connections, by (server pid, connection id): their
/// statements are the agent's, never judged (judging its `KILL`s would end more sessions).
#[derive(Debug, Default)]
pub struct OwnConnections(std::sync::Mutex<HashSet<(u32, u64)>>);

impl OwnConnections {
    /// Whether (server pid, connection id) is one of the agent's.
    pub fn contains(&self, pid: u32, conn_id: u64) -> bool {
        self.0.lock().is_ok_and(|own| own.contains(&(pid, conn_id)))
    }

    fn insert(&self, pid: u32, conn_id: u64) {
        if let Ok(mut own) = self.0.lock() {
            own.insert((pid, conn_id));
        }
    }

    fn remove(&self, pid: u32, conn_id: u64) {
        if let Ok(mut own) = self.0.lock() {
            own.remove(&(pid, conn_id));
        }
    }
}

/// One request to end a session.
struct Request {
    pid: u32,
    conn_id: u64,
    socket: Option<PathBuf>,
    decision: Event,
}

/// Ends MariaDB sessions, one at a time, through one administrative connection per
/// server (kept open, and known in [`OwnConnections`] from the moment it exists), and
/// reports each ending as a `decision` event.
#[derive(Clone)]
pub struct Terminator {
    requests: mpsc::UnboundedSender<Request>,
    own: Arc<OwnConnections>,
}

impl Terminator {
    /// Starts the terminator: it connects as `user` and sends its events to `events`.
    pub fn start(events: mpsc::Sender<Event>, user: String) -> Self {
        let (requests, rx) = mpsc::unbounded_channel();
        let own = Arc::new(OwnConnections::default());
        tokio::spawn(serve(rx, events, user, Arc::clone(&own)));
        Self { requests, own }
    }

    /// The agent's own connections.
    pub fn own(&self) -> &OwnConnections {
        &self.own
    }

    /// Ends the session of `statement` (a judged MariaDB statement event whose decision for
    /// unmediated sessions is `unmediated`) through `socket`, then emits the decision: action
    /// `terminated`, or `terminate_failed` with the error.
    pub fn end_session(&self, statement: &Event, unmediated: Unmediated, socket: Option<PathBuf>) {
        let (Some(pid), Some(conn_id)) = (statement.server_pid, statement.connection_id) else {
            return;
        };
        let decision = Event {
            kind: Some(EventType::Decision),
            host: statement.host.clone(),
            session_id: statement.session_id.clone(),
            server: statement.server.clone(),
            server_pid: statement.server_pid,
            connection_id: statement.connection_id,
            outcome: statement.outcome.clone(),
            rule: statement.rule.clone(),
            source: Some("kernel".into()),
            unmediated: Some(true),
            approvers: Some(Vec::new()),
            reason: Some(reason(unmediated).into()),
            ..Event::default()
        };
        let _ = self.requests.send(Request {
            pid,
            conn_id,
            socket,
            decision,
        });
    }
}

/// Serves the requests in order, keeping one administrative connection per server.
async fn serve(
    mut requests: mpsc::UnboundedReceiver<Request>,
    events: mpsc::Sender<Event>,
    user: String,
    own: Arc<OwnConnections>,
) {
    let mut admin: HashMap<u32, mysql_async::Conn> = HashMap::new();
    while let Some(Request {
        pid,
        conn_id,
        socket,
        mut decision,
    }) = requests.recv().await
    {
        if own.contains(pid, conn_id) {
            continue;
        }
        let result = match socket {
            Some(socket) => kill(&mut admin, &own, pid, &socket, &user, conn_id).await,
            None => Err(KillError::NoSocket(pid)),
        };
        decision.ts = format_ts(SystemTime::now());
        match result {
            Ok(()) => {
                info!(pid, conn_id, "MariaDB session ended by policy");
                decision.action = Some("terminated".into());
            }
            Err(e) => {
                error!(pid, conn_id, error = %e, "cannot end MariaDB session");
                decision.action = Some("terminate_failed".into());
                decision.error = Some(e.to_string());
            }
        }
        if events.send(decision).await.is_err() {
            return;
        }
    }
}

/// `KILL CONNECTION <conn_id>` on server `pid`, through its administrative connection
/// (opened on `socket` as `user` when there is none, or when it broke). The agent runs as
/// root, which MariaDB's default `unix_socket` authentication admits as its `root` account.
async fn kill(
    admin: &mut HashMap<u32, mysql_async::Conn>,
    own: &OwnConnections,
    pid: u32,
    socket: &Path,
    user: &str,
    conn_id: u64,
) -> Result<(), KillError> {
    let failed = |source| KillError::Server {
        conn_id,
        socket: socket.to_path_buf(),
        source,
    };
    let attempt = async {
        if let Some(conn) = admin.get_mut(&pid) {
            match conn.query_drop(format!("KILL CONNECTION {conn_id}")).await {
                Ok(()) => return Ok(()),
                // A killed target that already ended is an error from the server; anything
                // else may be a broken administrative connection: reconnect once.
                Err(mysql_async::Error::Server(e)) => {
                    return Err(failed(mysql_async::Error::Server(e)));
                }
                Err(_) => {
                    if let Some(old) = admin.remove(&pid) {
                        own.remove(pid, old.id().into());
                    }
                }
            }
        }
        let opts = mysql_async::OptsBuilder::default()
            .socket(Some(socket.display().to_string()))
            .prefer_socket(true)
            .user(Some(user));
        let mut conn = mysql_async::Conn::new(opts).await.map_err(failed)?;
        own.insert(pid, conn.id().into());
        let result = conn.query_drop(format!("KILL CONNECTION {conn_id}")).await;
        admin.insert(pid, conn);
        result.map_err(failed)
    };
    tokio::time::timeout(KILL_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(KillError::Timeout {
                conn_id,
                socket: socket.to_path_buf(),
            })
        })
}
