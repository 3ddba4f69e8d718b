//! The local control socket: `dbward tail` and `dbward approvals` (without `--server`) talk
//! to the running agent here. Requests are one JSON line; replies are JSON lines.

pub mod approvals;
pub mod status;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;
use tracing::{debug, warn};

use crate::event::Event;
pub use approvals::{ApprovalReply, PendingView};

/// A request from the CLI. Unknown fields are refused: in particular nobody can name the
/// approver in a request, it is always the caller's OS user.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Follow the live event stream.
    Tail,
    /// The agent's live state (`dbward status`).
    Status,
    /// List the pending local approval requests.
    ApprovalsList,
    /// Approve a pending local request as the calling OS user.
    ApprovalsApprove {
        /// Request id.
        id: uuid::Uuid,
        /// Comment recorded with the approval.
        #[serde(default)]
        comment: Option<String>,
    },
    /// Deny a pending local request as the calling OS user.
    ApprovalsDeny {
        /// Request id.
        id: uuid::Uuid,
        /// Why; the held statement fails with it.
        #[serde(default)]
        comment: Option<String>,
    },
}

/// A notice in the stream that is not an event.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notice {
    /// This reader was too slow; `missed` events were skipped for it.
    Lagged {
        /// Events skipped.
        missed: u64,
    },
    /// The request could not be understood.
    Error {
        /// What was wrong.
        message: String,
    },
}

/// Binds the control socket (replacing a stale one) with mode 0660.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// What the control socket serves.
#[derive(Clone)]
pub struct ControlState {
    /// The live event stream (`tail`).
    pub events: broadcast::Sender<Arc<Event>>,
    /// Held statements waiting for a local decision (`approvals`), when the agent files
    /// requests on the host.
    pub approvals: Option<Arc<crate::approval::local::LocalApprovals>>,
    /// The agent's live state (`status`).
    pub status: status::SharedStatus,
}

/// Serves CLI connections until the task is dropped.
pub async fn serve(listener: UnixListener, state: ControlState) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let rx = state.events.subscribe();
                let approvals = state.approvals.clone();
                let status = state.status.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, rx, approvals, status).await {
                        debug!(error = %e, "control connection ended");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(
    stream: UnixStream,
    mut rx: broadcast::Receiver<Arc<Event>>,
    local: Option<Arc<crate::approval::local::LocalApprovals>>,
    status: status::SharedStatus,
) -> std::io::Result<()> {
    let caller_uid = stream.peer_cred().ok().map(|c| c.uid());
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let Some(line) = lines.next_line().await? else {
        return Ok(());
    };
    let request: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            let notice = Notice::Error {
                message: format!("bad request {line:?}: {e}"),
            };
            write.write_all(json_line(&notice).as_bytes()).await?;
            return Ok(());
        }
    };
    let op = match request {
        Request::Status => {
            let view = status.lock().map(|s| s.clone()).unwrap_or_default();
            write.write_all(json_line(&view).as_bytes()).await?;
            return Ok(());
        }
        Request::ApprovalsList => approvals::Op::List,
        Request::ApprovalsApprove { id, comment } => approvals::Op::Approve { id, comment },
        Request::ApprovalsDeny { id, comment } => approvals::Op::Deny { id, comment },
        Request::Tail => loop {
            let line = match rx.recv().await {
                Ok(event) => json_line(&*event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    json_line(&Notice::Lagged { missed })
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            };
            write.write_all(line.as_bytes()).await?;
        },
    };
    let reply = tokio::task::spawn_blocking(move || {
        approvals::answer(
            op,
            local.as_deref(),
            caller_uid,
            crate::session::identity::user_name,
        )
    })
    .await
    .unwrap_or_else(|e| ApprovalReply::Refused {
        code: "unavailable".into(),
        message: format!("the agent failed while answering: {e}"),
    });
    write.write_all(json_line(&reply).as_bytes()).await
}

fn json_line<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string(value)
        .unwrap_or_else(|e| format!("{{\"type\":\"error\",\"message\":\"{e}\"}}"));
    s.push('\n');
    s
}

/// Connects to the agent and sends a request; returns the reply stream.
pub async fn request(
    path: &Path,
    request: &Request,
) -> Result<tokio::io::Lines<BufReader<UnixStream>>, ControlError> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|source| ControlError::Connect {
            path: path.to_owned(),
            source,
        })?;
    stream
        .write_all(json_line(request).as_bytes())
        .await
        .map_err(|source| ControlError::Connect {
            path: path.to_owned(),
            source,
        })?;
    Ok(BufReader::new(stream).lines())
}

/// Errors talking to the running agent.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The agent's socket is not there or refused us.
    #[error(
        "cannot reach the dbward agent at {path}: {source} (is `dbward run` running? is --socket right?)"
    )]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
