//! Kernel capture: loads and attaches the programs, discovers PostgreSQL clusters (at start
//! and when they start later), and reads the ring buffer into [`decode::KernelEvent`]s.

pub mod decode;
pub mod discover;
pub mod loader;
pub mod mariadb;
pub mod points;
pub mod preflight;
pub mod unix_connect;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::{info, warn};

use decode::KernelEvent;
use discover::Postmaster;
use loader::{AttachedPoints, LoadError, Loader, StatementPoints};

/// How often the ring is drained when the kernel did not wake us.
const DRAIN_INTERVAL: Duration = Duration::from_millis(5);

/// Most messages in one [`CaptureBatch`]. The channel to the correlator holds batches, so
/// its capacity times this bounds what is queued.
pub const MAX_BATCH: usize = 1024;

/// Messages handed to the correlator together: one channel send (and at most one wake-up of
/// the receiver) for everything a drain of the ring found, instead of one per record.
pub type CaptureBatch = Vec<CaptureMessage>;

/// Reads every record currently in the ring (the ring must be drained completely).
fn drain_ring(ring: &mut RingBuf<MapData>) -> Vec<Result<KernelEvent, String>> {
    let mut batch = Vec::new();
    while let Some(item) = ring.next() {
        batch.push(decode::decode(&item).map_err(|e| e.to_string()));
    }
    batch
}

/// What the capture tells the correlator besides kernel events.
#[derive(Debug)]
pub enum CaptureMessage {
    /// A decoded kernel event.
    Kernel(KernelEvent),
    /// A cluster was found and attached.
    Cluster(Postmaster, AttachedPoints),
    /// A MariaDB server was found and its sessions are captured.
    Mariadb(discover::MariadbServer),
    /// A backend that existed before the agent started.
    Existing(discover::ExistingBackend),
    /// Current kernel drop counts by event kind.
    Drops(BTreeMap<String, u64>),
    /// A ring-buffer record could not be decoded.
    Undecodable(String),
}

/// Which clusters to attach to.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    /// Only these postmaster pids (empty: every cluster on the host).
    pub pids: Vec<u32>,
    /// Also attach the uprobes to these server binaries.
    pub binaries: Vec<PathBuf>,
    /// Attach the hold probe (`pg_parse_query`) to binaries with classic statement points:
    /// only when the kernel may stop backends (`--hold-unmediated`); otherwise statements do
    /// not pay for its trap.
    pub holds: bool,
    /// Which statement points to attach.
    pub points: StatementPoints,
}

/// The running capture.
pub struct Capture {
    loader: Loader,
    ring: AsyncFd<RingBuf<MapData>>,
    targets: Targets,
    /// Postmasters whose `postmaster.pid` is not complete yet (just started).
    pending: Vec<(u32, u32)>,
    /// MariaDB servers that just started and do not listen yet.
    pending_mariadb: Vec<(u32, u32)>,
    /// `[block]`: adopted clusters' ports and sockets are protected too.
    protect: bool,
}

impl Capture {
    /// Loads the programs and attaches the tracepoints.
    pub fn start(targets: Targets) -> Result<Self, LoadError> {
        let mut loader = Loader::load(targets.holds, targets.points)?;
        for binary in &targets.binaries {
            loader.attach_server_binary(binary)?;
        }
        let ring = loader.take_events()?;
        // SAFETY: the AsyncFd owns the ring buffer, so its descriptor stays open for as long
        // as it is registered.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| {
                LoadError::Missing(preflight::MissingFeature {
                    feature: "ring buffer",
                    detail: format!("cannot poll the ring buffer: {}", e.into_parts().1),
                })
            })?;
        Ok(Self {
            loader,
            ring,
            targets,
            pending: Vec::new(),
            pending_mariadb: Vec::new(),
            protect: false,
        })
    }

    fn wanted(&self, pid: u32) -> bool {
        self.targets.pids.is_empty() || self.targets.pids.contains(&pid)
    }

    /// Watches a postmaster: follows its accepts/forks, attaches to its binary, and watches
    /// its port and socket for client connects.
    fn adopt(&mut self, pm: &Postmaster) -> Result<AttachedPoints, LoadError> {
        self.loader.watch_postmaster(pm.pid)?;
        let points = self.loader.attach_server_binary(&pm.exe_link)?;
        self.watch_listeners(pm.port.as_slice(), pm.socket.as_slice())?;
        info!(pid = pm.pid, exe = %pm.exe.display(), port = ?pm.port, socket = ?pm.socket, "watching PostgreSQL cluster");
        Ok(points)
    }

    /// Captures a MariaDB server's sessions (its binary is probed once) and watches its
    /// ports and sockets as for a PostgreSQL cluster.
    fn adopt_mariadb(&mut self, server: &discover::MariadbServer) -> Result<(), LoadError> {
        self.probe_mariadb(server)?;
        self.watch_listeners(&server.ports, &server.sockets)?;
        info!(pid = server.pid, exe = %server.exe.display(), ports = ?server.ports, sockets = ?server.sockets, "watching MariaDB server");
        Ok(())
    }

    /// Probes a MariaDB server's binary (once per binary) and reports its sessions.
    fn probe_mariadb(&mut self, server: &discover::MariadbServer) -> Result<(), LoadError> {
        self.loader.attach_mariadb_binary(&server.exe_link)?;
        self.loader.watch_mariadb(server.pid)
    }

    /// Watches a server's listeners for client connects and, with `[block]`, protects them.
    fn watch_listeners(&mut self, ports: &[u16], sockets: &[PathBuf]) -> Result<(), LoadError> {
        for &port in ports {
            self.loader.watch_port(port)?;
            if self.protect {
                self.loader.protect_port(port)?;
            }
        }
        for socket in sockets {
            self.loader.watch_socket(socket)?;
            if self.protect {
                self.loader.protect_socket(socket)?;
            }
        }
        Ok(())
    }

    /// Watches an additional TCP port (e.g. the shim's listener) for client identity.
    pub fn watch_port(&mut self, port: u16) -> Result<(), LoadError> {
        self.loader.watch_port(port)
    }

    /// Watches an additional unix socket path (e.g. the shim's listener).
    pub fn watch_socket(&mut self, path: &std::path::Path) -> Result<(), LoadError> {
        self.loader.watch_socket(path)
    }

    /// Refuses direct connections to every cluster adopted from now on (call before
    /// [`Capture::run`]); see [`Loader::enable_block`]. Returns the maps the agent keeps
    /// current.
    pub fn enable_block(
        &mut self,
        agent_pid: u32,
        allow_uids: &[u32],
        allow_remote: &[([u8; 16], u32)],
        cgroup_root: &std::path::Path,
    ) -> Result<loader::BlockMaps, LoadError> {
        self.loader
            .enable_block(agent_pid, allow_uids, allow_remote, cgroup_root)?;
        self.protect = true;
        self.loader.take_block_maps()
    }

    /// Takes the kernel's hold switches (once, before [`Capture::run`]).
    pub fn take_hold_flags(&mut self) -> Result<loader::HoldFlags, LoadError> {
        self.loader.take_hold_flags()
    }

    /// Discovers the clusters running now, then reads events until `tx` closes or `stop`
    /// turns true; on `stop` it drains what the kernel has buffered first, so that a clean
    /// shutdown loses no statement. Messages are sent in order, in batches of at most
    /// [`MAX_BATCH`].
    pub async fn run(
        mut self,
        tx: mpsc::Sender<CaptureBatch>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), LoadError> {
        let (postmasters, backends) = discover::scan();
        if postmasters.is_empty() {
            warn!("no PostgreSQL cluster is running; watching for one to start");
        }
        for pm in &postmasters {
            if !self.wanted(pm.pid) {
                continue;
            }
            let points = self.adopt(pm)?;
            if tx
                .send(vec![CaptureMessage::Cluster(pm.clone(), points)])
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        for server in discover::scan_mariadb() {
            if !self.wanted(server.pid) {
                continue;
            }
            match self.adopt_mariadb(&server) {
                Ok(()) => {
                    if tx
                        .send(vec![CaptureMessage::Mariadb(server)])
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                Err(e) => warn!(pid = server.pid, error = %e, "cannot capture MariaDB server"),
            }
        }
        for backend in backends {
            if !self.wanted(backend.postmaster) {
                continue;
            }
            self.loader.watch_backend(backend.pid, backend.postmaster)?;
            if tx
                .send(vec![CaptureMessage::Existing(backend)])
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        // Statements are written without waking us (see the kernel's `wakeup`): drain often.
        let mut drain = tokio::time::interval(DRAIN_INTERVAL);
        drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_drops = BTreeMap::new();
        loop {
            tokio::select! {
                guard = self.ring.readable_mut() => {
                    let mut guard = guard.map_err(|e| LoadError::Missing(preflight::MissingFeature {
                        feature: "ring buffer",
                        detail: format!("polling failed: {e}"),
                    }))?;
                    let batch = drain_ring(guard.get_inner_mut());
                    guard.clear_ready();
                    if !self.forward(batch, &tx).await {
                        return Ok(());
                    }
                }
                _ = drain.tick() => {
                    let batch = drain_ring(self.ring.get_mut());
                    if !self.forward(batch, &tx).await {
                        return Ok(());
                    }
                }
                _ = tick.tick() => {
                    for (pm, points) in self.poll_pending() {
                        if tx.send(vec![CaptureMessage::Cluster(pm, points)]).await.is_err() {
                            return Ok(());
                        }
                    }
                    for server in self.poll_pending_mariadb() {
                        if tx.send(vec![CaptureMessage::Mariadb(server)]).await.is_err() {
                            return Ok(());
                        }
                    }
                    let drops: BTreeMap<String, u64> = self.loader.drops()?
                        .into_iter()
                        .filter(|(_, n)| *n > 0)
                        .map(|(k, n)| (k.name().to_owned(), n))
                        .collect();
                    if drops != last_drops {
                        last_drops = drops.clone();
                        if tx.send(vec![CaptureMessage::Drops(drops)]).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                _ = tx.closed() => return Ok(()),
                _ = stop.changed() => {
                    let batch = drain_ring(self.ring.get_mut());
                    self.forward(batch, &tx).await;
                    return Ok(());
                }
            }
        }
    }

    /// Sends decoded records on, in batches; `false` when the receiver is gone.
    async fn forward(
        &mut self,
        batch: Vec<Result<KernelEvent, String>>,
        tx: &mpsc::Sender<CaptureBatch>,
    ) -> bool {
        let mut items = batch.into_iter().peekable();
        while items.peek().is_some() {
            let messages: CaptureBatch = items
                .by_ref()
                .take(MAX_BATCH)
                .map(|item| match item {
                    Ok(event) => {
                        self.observe(&event);
                        CaptureMessage::Kernel(event)
                    }
                    Err(e) => CaptureMessage::Undecodable(e),
                })
                .collect();
            if tx.send(messages).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Reacts to lifecycle events the capture itself must follow.
    fn observe(&mut self, event: &KernelEvent) {
        match event {
            KernelEvent::Exec { origin, .. } if self.wanted(origin.pid) => {
                if let Some(server) = discover::mariadb_server(origin.pid) {
                    // Its statements are reported from now on; its listeners come later.
                    match self.probe_mariadb(&server) {
                        Ok(()) => self.pending_mariadb.push((origin.pid, 0)),
                        Err(e) => {
                            warn!(pid = origin.pid, error = %e, "cannot capture new MariaDB server")
                        }
                    }
                } else if let Some(pm) = discover::postmaster(origin.pid) {
                    // Follow it at once; its port and socket appear once it is up.
                    if let Err(e) = self.adopt(&pm) {
                        warn!(pid = origin.pid, error = %e, "cannot watch new PostgreSQL server");
                    }
                    self.pending.push((origin.pid, 0));
                }
            }
            KernelEvent::Exit { origin } => {
                self.loader.unwatch_postmaster(origin.pid);
                self.loader.unwatch_mariadb(origin.pid);
                self.pending.retain(|(pid, _)| *pid != origin.pid);
                self.pending_mariadb.retain(|(pid, _)| *pid != origin.pid);
            }
            _ => {}
        }
    }

    /// Looks for the listeners of MariaDB servers that just started, until they listen;
    /// returns those now listening.
    fn poll_pending_mariadb(&mut self) -> Vec<discover::MariadbServer> {
        let mut ready = Vec::new();
        let mut still = Vec::new();
        for (pid, tries) in std::mem::take(&mut self.pending_mariadb) {
            match discover::mariadb_server(pid) {
                Some(server) if !server.ports.is_empty() || !server.sockets.is_empty() => {
                    match self.watch_listeners(&server.ports, &server.sockets) {
                        Ok(()) => ready.push(server),
                        Err(e) => warn!(pid, error = %e, "cannot watch MariaDB server"),
                    }
                }
                Some(_) if tries < 240 => still.push((pid, tries + 1)),
                _ => {}
            }
        }
        self.pending_mariadb = still;
        ready
    }

    /// Re-reads `postmaster.pid` of clusters that just started, until it is complete;
    /// returns those now watched.
    fn poll_pending(&mut self) -> Vec<(Postmaster, AttachedPoints)> {
        let mut ready = Vec::new();
        let mut still = Vec::new();
        for (pid, tries) in std::mem::take(&mut self.pending) {
            match discover::postmaster(pid) {
                Some(pm) if pm.port.is_some() => match self.adopt(&pm) {
                    Ok(points) => ready.push((pm, points)),
                    Err(e) => warn!(pid, error = %e, "cannot watch PostgreSQL cluster"),
                },
                Some(_) if tries < 240 => still.push((pid, tries + 1)),
                _ => {}
            }
        }
        self.pending = still;
        ready
    }
}
