//! The PostgreSQL socket shim: listens where clients expect the server, evaluates every
//! statement through a [`StatementGate`], forwards, refuses or holds it for approval, and
//! reports [`ShimEvent`]s. One task per connection; a held session delays no other.
//!
//! Layout: [`config`] (the `[shim]` section), [`connection`] (framed reads),
//! [`startup`] (TLS negotiation, cancel routing, auth relay), [`session`] (per-connection
//! task), `relay` (forward/refuse), `hold` (approval wait), [`responses`] (messages the shim
//! writes itself), [`gate`], [`events`], [`identity`], [`reason`], [`cancel`], [`tls`],
//! [`upstream`].

pub mod cancel;
pub mod config;
pub mod connection;
pub mod events;
pub mod gate;
mod hold;
pub mod identity;
pub mod policy_gate;
pub mod reason;
mod relay;
pub mod responses;
mod session;
mod startup;
mod statements;
pub mod tls;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

pub use config::{ClientCert, ShimConfig, ShimConfigError, UnixListen, UpstreamTls};
pub use events::{EventSink, ShimEvent, StatementEvent};
pub use gate::{
    AllowAll, ApprovalRule, GateError, GateVerdict, PreparedStatements, Principal, SessionFacts,
    StatementGate,
};
pub use identity::{NoPeerIdentity, PeerFacts, PeerIdentity};

use crate::approval::ApprovalChannel;
use cancel::CancelRegistry;
use connection::BoxStream;
use session::Accepted;
use upstream::Upstream;

/// Why the shim could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The `[shim]` section has problems (all of them are listed).
    #[error("invalid [shim] configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<ShimConfigError>),
    /// TLS certificate or key unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A listener could not be opened.
    #[error("shim: cannot listen on {addr}: {source}")]
    Bind {
        /// Address or path.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The shim's own thread could not be started.
    #[error("shim: cannot start its thread: {0}")]
    Thread(std::io::Error),
}

/// Everything a connection task shares.
pub(crate) struct Ctx {
    config: ShimConfig,
    upstream: Upstream,
    tls: Option<TlsAcceptor>,
    gate: Arc<dyn StatementGate>,
    approvals: Arc<dyn ApprovalChannel>,
    events: EventSink,
    cancels: CancelRegistry,
    host: String,
    identity: Arc<dyn PeerIdentity>,
}

/// The shim, configured but not yet listening.
pub struct Shim {
    ctx: Ctx,
}

/// The shim with its listeners open.
pub struct BoundShim {
    ctx: Arc<Ctx>,
    tcp: Vec<TcpListener>,
    unix: Vec<(UnixListener, PathBuf)>,
}

impl Shim {
    /// Validates `config` and loads TLS material (both directions). `gate` decides each statement,
    /// `approvals` takes held statements, `events` receives [`ShimEvent`]s (never awaited:
    /// a full channel drops and counts).
    pub fn new(
        config: ShimConfig,
        gate: Arc<dyn StatementGate>,
        approvals: Arc<dyn ApprovalChannel>,
        events: mpsc::Sender<ShimEvent>,
    ) -> Result<Self, ShimError> {
        let errors = config.check();
        if !errors.is_empty() {
            return Err(ShimError::Config(errors));
        }
        let upstream = Upstream::new(&config)?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(
                cert,
                key,
                config
                    .tls_client_ca
                    .as_deref()
                    .map(|ca| (ca, config.tls_client_cert)),
            )?),
            _ => None,
        };
        let host = config
            .host_name
            .clone()
            .unwrap_or_else(crate::config::system_host_name);
        Ok(Self {
            ctx: Ctx {
                upstream,
                config,
                tls,
                gate,
                approvals,
                events: EventSink::new(events),
                cancels: CancelRegistry::default(),
                host,
                identity: Arc::new(NoPeerIdentity),
            },
        })
    }

    /// Uses `identity` to identify loopback TCP clients (eBPF connect records).
    #[must_use]
    pub fn with_peer_identity(mut self, identity: Arc<dyn PeerIdentity>) -> Self {
        self.ctx.identity = identity;
        self
    }

    /// The event sink (its [`EventSink::dropped`] counts events lost to a full channel).
    pub fn events(&self) -> EventSink {
        self.ctx.events.clone()
    }

    /// Opens every listener (a stale unix socket file is replaced).
    pub async fn bind(self) -> Result<BoundShim, ShimError> {
        let mut tcp = Vec::new();
        for addr in &self.ctx.config.listen_tcp {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ShimError::Bind {
                    addr: addr.to_string(),
                    source,
                })?;
            tcp.push(l);
        }
        let mut unix = Vec::new();
        for u in &self.ctx.config.listen_unix {
            let bind_err = |source| ShimError::Bind {
                addr: u.path.display().to_string(),
                source,
            };
            if std::fs::symlink_metadata(&u.path).is_ok_and(|m| m.file_type().is_socket()) {
                std::fs::remove_file(&u.path).map_err(bind_err)?;
            }
            let l = UnixListener::bind(&u.path).map_err(bind_err)?;
            let mode = u.mode_bits().unwrap_or(0o777);
            std::fs::set_permissions(&u.path, std::fs::Permissions::from_mode(mode))
                .map_err(bind_err)?;
            unix.push((l, u.path.clone()));
        }
        Ok(BoundShim {
            ctx: Arc::new(self.ctx),
            tcp,
            unix,
        })
    }

    /// Binds and serves until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ShimError> {
        self.bind().await?.serve(shutdown).await;
        Ok(())
    }

    /// Binds and serves until `shutdown` resolves, on a thread of its own with a
    /// single-threaded runtime (PgBouncer's model). Relaying is mostly socket calls; on a
    /// multi-threaded runtime, waking idle workers to share them cost more CPU than the
    /// relaying itself (shim CPU per pgbench `-S` transaction: 36 µs there, 15 µs here).
    /// Returns once the listeners are open.
    pub async fn start_on_own_thread(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<ShimThread, ShimError> {
        let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
        let (finished_tx, finished) = tokio::sync::oneshot::channel();
        let events = self.events();
        std::thread::Builder::new()
            .name("dbward-shim".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = bound_tx.send(Err(ShimError::Thread(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match self.bind().await {
                        Ok(bound) => {
                            let _ = bound_tx.send(Ok(bound.tcp_addrs()));
                            bound.serve(shutdown).await;
                        }
                        Err(e) => {
                            let _ = bound_tx.send(Err(e));
                        }
                    }
                });
                let _ = finished_tx.send(());
            })
            .map_err(ShimError::Thread)?;
        let tcp_addrs = bound_rx.await.map_err(|_| {
            ShimError::Thread(std::io::Error::other(
                "the shim thread ended before listening",
            ))
        })??;
        Ok(ShimThread {
            tcp_addrs,
            events,
            finished,
        })
    }
}

/// A shim serving on its own thread ([`Shim::start_on_own_thread`]).
pub struct ShimThread {
    /// The TCP addresses bound.
    pub tcp_addrs: Vec<SocketAddr>,
    /// The event sink (drop counter).
    pub events: EventSink,
    finished: tokio::sync::oneshot::Receiver<()>,
}

impl ShimThread {
    /// Resolves when the shim has shut down (every session finished).
    pub async fn finished(self) {
        let _ = self.finished.await;
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl BoundShim {
    /// The TCP addresses actually bound (useful with port 0).
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The event sink (drop counter).
    pub fn events(&self) -> EventSink {
        self.ctx.events.clone()
    }

    /// Serves clients until `shutdown` resolves, then tells every session to finish
    /// (held requests are cancelled, clients get 57P01) and waits for them.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let limit = Arc::new(Semaphore::new(self.ctx.config.max_connections));
        let paths: Vec<PathBuf> = self.unix.iter().map(|(_, p)| p.clone()).collect();
        let listeners = self
            .tcp
            .into_iter()
            .map(Listener::Tcp)
            .chain(self.unix.into_iter().map(|(l, _)| Listener::Unix(l)));
        let mut loops = tokio::task::JoinSet::new();
        for l in listeners {
            loops.spawn(accept_loop(
                Arc::clone(&self.ctx),
                l,
                Arc::clone(&limit),
                stop_rx.clone(),
                done_tx.clone(),
            ));
        }
        shutdown.await;
        tracing::info!("shim shutting down: no new connections, ending sessions");
        stop_tx.send_replace(true);
        loops.shutdown().await;
        drop(done_tx);
        done_rx.recv().await;
        for p in paths {
            std::fs::remove_file(&p).ok();
        }
    }
}

async fn accept_one(l: &Listener) -> std::io::Result<(BoxStream, Option<SocketAddr>, PeerSource)> {
    match l {
        Listener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            s.set_nodelay(true).ok();
            let local = s.local_addr().ok();
            Ok((Box::new(s), Some(peer), PeerSource::Tcp(peer, local)))
        }
        Listener::Unix(l) => {
            let (s, _) = l.accept().await?;
            let cred = s.peer_cred().ok().map(|c| (c.pid(), c.uid()));
            Ok((Box::new(s), None, PeerSource::Unix(cred)))
        }
    }
}

enum PeerSource {
    Tcp(SocketAddr, Option<SocketAddr>),
    Unix(Option<(Option<i32>, u32)>),
}

async fn accept_loop(
    ctx: Arc<Ctx>,
    listener: Listener,
    limit: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    loop {
        let (mut stream, peer_addr, source) = match accept_one(&listener).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "shim accept failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            tracing::warn!(
                max = ctx.config.max_connections,
                "shim connection limit reached"
            );
            tokio::spawn(async move {
                let msg = "sorry, too many clients already (dbward shim.max_connections)";
                stream
                    .write_all(&responses::fatal(responses::TOO_MANY_CONNECTIONS, msg))
                    .await
                    .ok();
                stream.shutdown().await.ok();
            });
            continue;
        };
        let ctx = Arc::clone(&ctx);
        let stop = stop.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let (peer, label) = match source {
                PeerSource::Tcp(peer, local) => (
                    match local {
                        Some(local) => ctx.identity.lookup_tcp(peer, local).await,
                        None => None,
                    }
                    .unwrap_or_default(),
                    peer.to_string(),
                ),
                PeerSource::Unix(cred) => match cred {
                    Some((pid, uid)) => (
                        identity::unix_peer_facts(pid, uid),
                        format!("unix pid {}", pid.unwrap_or(0)),
                    ),
                    None => (PeerFacts::default(), "unix".into()),
                },
            };
            let accepted = Accepted {
                stream,
                peer,
                source_addr: peer_addr.map(|a| a.ip()),
                peer_label: label,
            };
            session::serve_connection(ctx, accepted, stop).await;
            drop(permit);
            drop(done);
        });
    }
}
