//! The per-connection task: startup, session facts, the relay, and the session's end.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use uuid::Uuid;

use super::Ctx;
use super::connection::BoxStream;
use super::events::ShimEvent;
use super::gate::SessionFacts;
use super::identity::PeerFacts;
use super::relay::Session;
use super::startup::{self, SessionError};
use crate::protocol::postgres::StartupPacket;

/// A freshly accepted client connection and what is known about its peer.
pub struct Accepted {
    /// The byte stream.
    pub stream: BoxStream,
    /// Process facts (unix peer credentials or the TCP identity lookup).
    pub peer: PeerFacts,
    /// Client IP for TCP connections.
    pub source_addr: Option<IpAddr>,
    /// Human-readable peer for logs.
    pub peer_label: String,
}

fn facts(
    ctx: &Ctx,
    peer: &PeerFacts,
    source_addr: Option<IpAddr>,
    startup: &StartupPacket,
    tls_subject: Option<String>,
) -> SessionFacts {
    let db_user = startup.param("user").map(str::to_owned);
    SessionFacts {
        database: startup
            .param("database")
            .map(str::to_owned)
            .or_else(|| db_user.clone()),
        db_user,
        application_name: startup.param("application_name").map(str::to_owned),
        client_uid: peer.uid,
        client_user: peer.user.clone(),
        client_pid: peer.pid,
        exe: peer.exe.clone(),
        unit: peer.unit.clone(),
        container: peer.container.clone(),
        source_addr,
        tls_subject,
        host: Some(ctx.host.clone()),
        unmediated: false,
        session_id: Uuid::new_v4().to_string(),
    }
}

/// Serves one client connection to its end.
pub async fn serve_connection(ctx: Arc<Ctx>, accepted: Accepted, shutdown: watch::Receiver<bool>) {
    let Accepted {
        stream,
        peer,
        source_addr,
        peer_label,
    } = accepted;
    let limit = ctx.config.stall_timeout();
    let established = match tokio::time::timeout(limit, startup::establish(&ctx, stream)).await {
        Ok(Ok(Some(e))) => e,
        Ok(Ok(None)) => return,
        Ok(Err(e @ SessionError::Upstream(_))) => {
            tracing::warn!(peer = %peer_label, error = %e, "client refused: the database server could not be reached");
            return;
        }
        Ok(Err(e)) => {
            tracing::info!(peer = %peer_label, error = %e, "connection closed during startup");
            return;
        }
        Err(_) => {
            let e = SessionError::StartupTimeout(limit.as_secs());
            tracing::info!(peer = %peer_label, error = %e, "connection closed during startup");
            return;
        }
    };
    let started = Instant::now();
    let facts = facts(
        &ctx,
        &peer,
        source_addr,
        &established.startup,
        established.tls_subject.clone(),
    );
    let session_id = facts.session_id.clone();
    let client_key = established.client_key;
    tracing::debug!(peer = %peer_label, session = %session_id, db_user = facts.db_user.as_deref().unwrap_or(""), "session started");
    ctx.events.emit(ShimEvent::SessionStart {
        facts: facts.clone(),
    });
    let mut session = Session::new(Arc::clone(&ctx), facts, established, shutdown);
    let result = session.run().await;
    if let Some(key) = client_key {
        ctx.cancels.remove(key);
    }
    let error = result.err().map(|e| e.to_string());
    if let Some(e) = &error {
        tracing::info!(peer = %peer_label, session = %session_id, error = %e, "session ended with an error");
    }
    ctx.events.emit(ShimEvent::SessionEnd {
        session_id,
        duration: started.elapsed(),
        error,
    });
}
