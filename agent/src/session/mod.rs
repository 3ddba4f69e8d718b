//! Correlation: turns kernel events into sessions with a full identity, and emits one
//! [`Event`] per session start, statement and session end.
//!
//! The server side (accept → fork → `InitPostgres` → ready → statements → exit) is matched
//! to the client side (`connect` records) by socket tuple for loopback TCP and by peer
//! credentials for unix sockets. Reading `/proc` and foreign descriptors goes through the
//! [`Inspector`] trait so the state machine itself is pure and unit-tested.

pub mod identity;
pub mod mariadb;
pub mod tcp_clients;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::capture::decode::{KernelEvent, Origin, SockAddr};
use crate::capture::discover::ExistingBackend;
use crate::event::{Client, Event, EventType, Target, escape_sql, format_ts};

/// How long a client `connect` record waits for its server-side session.
const CLIENT_RECORD_TTL: Duration = Duration::from_secs(120);

/// Process facts the correlator needs from the host.
pub trait Inspector {
    /// Fills exe, comm, user, unit, container, cgroup of `pid` into `client`.
    fn describe_process(&self, client: &mut Client, pid: u32);
    /// Local TCP port of descriptor `fd` of process `pid`.
    fn tcp_local_port(&self, pid: u32, fd: i32) -> Option<u16>;
    /// Peer (pid, uid, gid) of unix socket `fd` of process `pid`.
    fn unix_peer(&self, pid: u32, fd: i32) -> Option<(u32, u32, u32)>;
}

/// The real host, through `/proc` and `pidfd_getfd`.
pub struct HostInspector;

impl Inspector for HostInspector {
    fn describe_process(&self, client: &mut Client, pid: u32) {
        identity::fill_from_proc(client, pid);
    }

    fn tcp_local_port(&self, pid: u32, fd: i32) -> Option<u16> {
        identity::local_port(&identity::steal_fd(pid, fd).ok()?)
    }

    fn unix_peer(&self, pid: u32, fd: i32) -> Option<(u32, u32, u32)> {
        identity::peer_credentials(&identity::steal_fd(pid, fd).ok()?)
    }
}

/// Converts the kernel's CLOCK_MONOTONIC nanoseconds to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset_ns: i128,
}

/// CLOCK_MONOTONIC now, in nanoseconds: the kernel events' time base.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

impl Clock {
    /// Measures the offset between the two clocks now.
    pub fn now() -> Self {
        let mono = i128::from(monotonic_ns());
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        Self {
            offset_ns: wall - mono,
        }
    }

    /// A clock with a fixed offset (tests).
    pub fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Wall-clock time of a kernel timestamp.
    pub fn wall(&self, ktime_ns: u64) -> SystemTime {
        let ns = (ktime_ns as i128 + self.offset_ns).max(0) as u64;
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)
    }
}

#[derive(Debug, Default)]
struct PostmasterState {
    port: Option<u16>,
    socket: Option<String>,
    last_accept: Option<(i32, SockAddr)>,
}

#[derive(Debug)]
struct Session {
    id: String,
    pid: u32,
    postmaster: u32,
    start_ktime: u64,
    peer: SockAddr,
    fd: Option<i32>,
    /// Unix peer credentials, read as early as possible (at fork).
    creds: Option<(u32, u32, u32)>,
    database: Option<String>,
    user: Option<String>,
    application_name: Option<String>,
    client: Client,
    ready: bool,
    discovered: bool,
    statements: u64,
}

/// The correlation state machine.
pub struct Correlator<I> {
    host: String,
    clock: Clock,
    inspector: I,
    postmasters: HashMap<u32, PostmasterState>,
    sessions: HashMap<u32, Session>,
    clients_by_port: HashMap<u16, (Client, u64)>,
    clients_by_pid: HashMap<u32, (Client, u64)>,
    latest_by_socket: HashMap<String, (Client, u64)>,
    unresolved_tcp: HashMap<u16, (Client, u64)>,
    /// Loopback clients of the agent's own listeners, shared with the shim.
    own_listeners: Option<(Vec<u16>, Arc<tcp_clients::TcpClients>)>,
    /// Sessions of MariaDB servers.
    mariadb: mariadb::MariadbSessions,
}

impl<I: Inspector> Correlator<I> {
    /// A correlator for `host`.
    pub fn new(host: String, clock: Clock, inspector: I) -> Self {
        Self {
            mariadb: mariadb::MariadbSessions::new(host.clone(), clock),
            host,
            clock,
            inspector,
            postmasters: HashMap::new(),
            sessions: HashMap::new(),
            clients_by_port: HashMap::new(),
            clients_by_pid: HashMap::new(),
            latest_by_socket: HashMap::new(),
            unresolved_tcp: HashMap::new(),
            own_listeners: None,
        }
    }

    /// Shares the clients that connect to the agent's own TCP `ports` (the shim's listeners)
    /// with `clients`, where the shim looks them up.
    pub fn share_own_listener_clients(
        &mut self,
        ports: Vec<u16>,
        clients: Arc<tcp_clients::TcpClients>,
    ) {
        self.own_listeners = Some((ports, clients));
    }

    /// Registers a cluster's postmaster, its port and socket path.
    pub fn add_postmaster(&mut self, pid: u32, port: Option<u16>, socket: Option<String>) {
        let pm = self.postmasters.entry(pid).or_default();
        pm.port = port.or(pm.port);
        pm.socket = socket.or(pm.socket.take());
    }

    /// Live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len() + self.mariadb.len()
    }

    /// Ends the sessions of a MariaDB server that exited.
    pub fn mariadb_server_exited(&mut self, pid: u32, ktime: u64) -> Vec<Event> {
        self.mariadb.server_exited(pid, ktime)
    }

    /// Registers a backend that existed before the agent, and announces it.
    pub fn add_existing(&mut self, backend: &ExistingBackend, now_ktime: u64) -> Option<Event> {
        let title = backend.title.as_ref()?;
        let mut client = Client {
            transport: "unknown".into(),
            ..Client::default()
        };
        if title.client == "[local]" {
            client.transport = "unix".into();
        } else if let Some((addr, port)) = title.client.trim_end_matches(')').split_once('(') {
            client.transport = "tcp".into();
            client.addr = Some(addr.to_owned());
            client.port = port.parse().ok();
        }
        let session = Session {
            id: session_id(backend.pid, self.clock.wall(now_ktime)),
            pid: backend.pid,
            postmaster: backend.postmaster,
            start_ktime: now_ktime,
            peer: SockAddr::Unknown,
            fd: None,
            creds: None,
            database: Some(title.database.clone()),
            user: Some(title.user.clone()),
            application_name: None,
            client,
            ready: true,
            discovered: true,
            statements: 0,
        };
        let mut event = self.session_event(EventType::SessionStart, &session, now_ktime);
        event.discovered = Some(true);
        self.sessions.insert(backend.pid, session);
        Some(event)
    }

    /// Processes one kernel event; returns the events it completes.
    pub fn handle(&mut self, event: KernelEvent) -> Option<Event> {
        match event {
            mysql @ (KernelEvent::MysqlStatement { .. } | KernelEvent::MysqlSession { .. }) => {
                self.mariadb.handle(mysql)
            }
            KernelEvent::Accept { origin, fd, peer } => {
                self.postmasters.entry(origin.pid).or_default().last_accept = Some((fd, peer));
                None
            }
            KernelEvent::Fork { origin, child } => {
                let (fd, peer) = self
                    .postmasters
                    .get_mut(&origin.pid)
                    .and_then(|pm| pm.last_accept.take())?;
                let creds = matches!(peer, SockAddr::Unix { .. })
                    .then(|| self.inspector.unix_peer(child, fd))
                    .flatten();
                let session = Session {
                    id: session_id(child, self.clock.wall(origin.ktime_ns)),
                    pid: child,
                    postmaster: origin.pid,
                    start_ktime: origin.ktime_ns,
                    peer,
                    fd: Some(fd),
                    creds,
                    database: None,
                    user: None,
                    application_name: None,
                    client: Client::default(),
                    ready: false,
                    discovered: false,
                    statements: 0,
                };
                self.sessions.insert(child, session);
                None
            }
            KernelEvent::Login {
                origin,
                database,
                user,
            } => {
                let client = self.resolve_client(origin.pid)?;
                let session = self.sessions.get_mut(&origin.pid)?;
                session.database = Some(database).filter(|d| !d.is_empty());
                session.user = Some(user).filter(|u| !u.is_empty());
                session.client = client;
                None
            }
            KernelEvent::AppName { origin, name } => {
                let session = self.sessions.get_mut(&origin.pid)?;
                session.application_name = Some(name);
                None
            }
            KernelEvent::Ready { origin } => {
                let session = self.sessions.get_mut(&origin.pid)?;
                session.ready = true;
                let session = self.sessions.get(&origin.pid)?;
                Some(self.session_event(EventType::SessionStart, session, origin.ktime_ns))
            }
            KernelEvent::Statement {
                origin,
                message,
                text,
                truncated,
                full_len,
                len_is_lower_bound,
            } => {
                if let Some(s) = self.sessions.get_mut(&origin.pid) {
                    s.statements += 1;
                }
                let mut event = match self.sessions.get(&origin.pid) {
                    Some(session) => {
                        self.session_event(EventType::Statement, session, origin.ktime_ns)
                    }
                    None => self.bare_event(EventType::Statement, &origin),
                };
                let (sql, escaped) = escape_sql(&text);
                event.sql = Some(sql);
                event.sql_escaped = escaped.then_some(true);
                event.sql_truncated = Some(truncated);
                event.sql_length = Some(full_len);
                event.sql_length_is_lower_bound = len_is_lower_bound.then_some(true);
                event.protocol = Some(
                    match message {
                        b'Q' => "simple",
                        b'E' => "extended",
                        _ => "unknown",
                    }
                    .into(),
                );
                Some(event)
            }
            KernelEvent::Held {
                origin,
                at_execute,
                text,
                truncated,
                full_len,
                len_is_lower_bound,
                ..
            } => {
                let mut event = match self.sessions.get(&origin.pid) {
                    Some(session) => self.session_event(EventType::Hold, session, origin.ktime_ns),
                    None => self.bare_event(EventType::Hold, &origin),
                };
                let (sql, escaped) = escape_sql(&text);
                event.sql = Some(sql);
                event.sql_escaped = escaped.then_some(true);
                event.sql_truncated = Some(truncated);
                event.sql_length = Some(full_len);
                event.sql_length_is_lower_bound = len_is_lower_bound.then_some(true);
                event.protocol = Some(if at_execute { "extended" } else { "simple" }.into());
                Some(event)
            }
            KernelEvent::Exit { origin } => {
                if self.postmasters.remove(&origin.pid).is_some() {
                    return None;
                }
                let session = self.sessions.remove(&origin.pid)?;
                let mut event =
                    self.session_event(EventType::SessionEnd, &session, origin.ktime_ns);
                let ms = origin.ktime_ns.saturating_sub(session.start_ktime) as f64 / 1e6;
                event.duration_ms = Some(if session.discovered { 0.0 } else { ms });
                event.statements = Some(session.statements);
                event.authenticated = Some(session.ready);
                Some(event)
            }
            KernelEvent::Connect {
                origin,
                gid,
                fd,
                cgroup_id,
                comm,
                server,
            } => {
                self.record_client(origin, gid, fd, cgroup_id, comm, server);
                None
            }
            KernelEvent::Blocked {
                origin,
                gid,
                cgroup_id,
                comm,
                server,
            } => Some(self.blocked_event(origin, Some((gid, cgroup_id, comm)), server)),
            KernelEvent::RemoteBlocked {
                origin,
                server,
                peer,
            } => {
                let mut event = self.blocked_event(origin, None, server);
                if let (Some(client), SockAddr::Tcp { ip, port }) = (event.client.as_mut(), peer) {
                    client.addr = Some(ip.to_string());
                    client.port = Some(port);
                }
                Some(event)
            }
            KernelEvent::Exec { .. } => None,
        }
    }

    /// A `connection_blocked` event: who was refused (a local process, identified like a
    /// local client from its `(gid, cgroup id, comm)`; `None` for a client on another host,
    /// whose address the caller fills in) and which cluster it tried to reach.
    fn blocked_event(
        &self,
        origin: Origin,
        local: Option<(u32, u64, String)>,
        server: SockAddr,
    ) -> Event {
        let postmaster_where = |matches: &dyn Fn(&PostmasterState) -> bool| {
            self.postmasters
                .iter()
                .find(|(_, pm)| matches(pm))
                .map(|(pid, _)| *pid)
        };
        let (target, postmaster) = match server {
            SockAddr::Tcp { ip, port } => (
                Target {
                    transport: "tcp".into(),
                    addr: Some(ip.to_string()),
                    port: Some(port),
                    socket: None,
                },
                postmaster_where(&|pm| pm.port == Some(port)),
            ),
            SockAddr::Unix { path } => (
                Target {
                    transport: "unix".into(),
                    socket: Some(path.clone()),
                    ..Target::default()
                },
                postmaster_where(&|pm| pm.socket.as_deref() == Some(path.as_str())),
            ),
            SockAddr::Unknown => (
                Target {
                    transport: "unknown".into(),
                    ..Target::default()
                },
                None,
            ),
        };
        let client = Client {
            transport: target.transport.clone(),
            ..local
                .map(|(gid, cgroup_id, comm)| self.local_client(origin, gid, cgroup_id, comm))
                .unwrap_or_default()
        };
        Event {
            kind: Some(EventType::ConnectionBlocked),
            ts: format_ts(self.clock.wall(origin.ktime_ns)),
            host: self.host.clone(),
            postmaster_pid: postmaster,
            client: Some(client),
            target: Some(target),
            action: Some("refused".into()),
            ..Event::default()
        }
    }

    /// The local process behind a kernel record, described from /proc.
    fn local_client(&self, origin: Origin, gid: u32, cgroup_id: u64, comm: String) -> Client {
        let mut client = Client {
            pid: Some(origin.pid),
            uid: Some(origin.uid),
            gid: Some(gid),
            comm: Some(comm),
            cgroup_id: Some(cgroup_id),
            ..Client::default()
        };
        self.inspector.describe_process(&mut client, origin.pid);
        client
    }

    fn record_client(
        &mut self,
        origin: Origin,
        gid: u32,
        fd: i32,
        cgroup_id: u64,
        comm: String,
        server: SockAddr,
    ) {
        self.expire_clients(origin.ktime_ns);
        let client = self.local_client(origin, gid, cgroup_id, comm);
        match server {
            SockAddr::Tcp {
                port: server_port, ..
            } => {
                match self.inspector.tcp_local_port(origin.pid, fd) {
                    Some(port) => match &self.own_listeners {
                        Some((ports, shared)) if ports.contains(&server_port) => {
                            shared.record(port, server_port, client);
                        }
                        _ => {
                            self.clients_by_port.insert(port, (client, origin.ktime_ns));
                        }
                    },
                    // The client was gone (or its socket closed) before we could read its
                    // port: keep it as the newest unresolved connect to that server port.
                    None => {
                        self.unresolved_tcp
                            .insert(server_port, (client, origin.ktime_ns));
                    }
                }
            }
            SockAddr::Unix { path } => {
                self.latest_by_socket
                    .insert(path, (client.clone(), origin.ktime_ns));
                self.clients_by_pid
                    .insert(origin.pid, (client, origin.ktime_ns));
            }
            SockAddr::Unknown => {}
        }
    }

    fn expire_clients(&mut self, now: u64) {
        let ttl = CLIENT_RECORD_TTL.as_nanos() as u64;
        self.clients_by_port
            .retain(|_, (_, t)| now.saturating_sub(*t) < ttl);
        self.clients_by_pid
            .retain(|_, (_, t)| now.saturating_sub(*t) < ttl);
        self.latest_by_socket
            .retain(|_, (_, t)| now.saturating_sub(*t) < ttl);
        self.unresolved_tcp
            .retain(|_, (_, t)| now.saturating_sub(*t) < ttl);
    }

    /// The client of a session: its address, and for local clients who they are.
    fn resolve_client(&mut self, backend: u32) -> Option<Client> {
        let session = self.sessions.get(&backend)?;
        let mut client = match &session.peer {
            SockAddr::Tcp { ip, port } => {
                let local = is_local(ip);
                let found = local
                    .then(|| self.clients_by_port.remove(port).map(|(c, _)| c))
                    .flatten();
                let server_port = self
                    .postmasters
                    .get(&session.postmaster)
                    .and_then(|pm| pm.port);
                let mut c = match found {
                    Some(mut c) => {
                        c.identified_by = Some("socket_tuple".into());
                        c
                    }
                    None => local
                        .then(|| server_port.and_then(|p| self.unresolved_tcp.remove(&p)))
                        .flatten()
                        .map(|(mut c, _)| {
                            c.identified_by = Some("latest_connect".into());
                            c
                        })
                        .unwrap_or_default(),
                };
                c.addr = Some(ip.to_string());
                c.port = Some(*port);
                c.transport = "tcp".into();
                c
            }
            SockAddr::Unix { .. } => {
                let socket = self
                    .postmasters
                    .get(&session.postmaster)
                    .and_then(|pm| pm.socket.clone());
                let creds = session.creds.or_else(|| {
                    session
                        .fd
                        .and_then(|fd| self.inspector.unix_peer(backend, fd))
                });
                let mut c = match creds {
                    Some((pid, uid, gid)) => {
                        let mut c = self
                            .clients_by_pid
                            .get(&pid)
                            .map(|(c, _)| c.clone())
                            .unwrap_or_else(|| {
                                let mut c = Client::default();
                                self.inspector.describe_process(&mut c, pid);
                                c
                            });
                        c.pid = Some(pid);
                        c.uid = Some(uid);
                        c.gid = Some(gid);
                        c.identified_by = Some("peer_credentials".into());
                        c
                    }
                    None => socket
                        .as_ref()
                        .and_then(|s| self.latest_by_socket.get(s))
                        .map(|(c, _)| {
                            let mut c = c.clone();
                            c.identified_by = Some("latest_connect".into());
                            c
                        })
                        .unwrap_or_default(),
                };
                c.transport = "unix".into();
                c.socket = socket;
                c
            }
            SockAddr::Unknown => Client {
                transport: "unknown".into(),
                ..Client::default()
            },
        };
        if client.user.is_none() {
            client.user = client.uid.and_then(identity::user_name);
        }
        Some(client)
    }

    fn bare_event(&self, kind: EventType, origin: &Origin) -> Event {
        Event {
            kind: Some(kind),
            ts: format_ts(self.clock.wall(origin.ktime_ns)),
            host: self.host.clone(),
            backend_pid: Some(origin.pid),
            ..Event::default()
        }
    }

    fn session_event(&self, kind: EventType, session: &Session, ktime: u64) -> Event {
        Event {
            kind: Some(kind),
            ts: format_ts(self.clock.wall(ktime)),
            host: self.host.clone(),
            session_id: Some(session.id.clone()),
            backend_pid: Some(session.pid),
            postmaster_pid: Some(session.postmaster),
            database: session.database.clone(),
            db_user: session.user.clone(),
            application_name: session.application_name.clone(),
            client: Some(session.client.clone()),
            ..Event::default()
        }
    }

    /// A `kernel_drops` event for the given per-kind counts.
    pub fn drops_event(&self, drops: BTreeMap<String, u64>) -> Event {
        Event {
            kind: Some(EventType::KernelDrops),
            ts: format_ts(SystemTime::now()),
            host: self.host.clone(),
            drops: Some(drops),
            ..Event::default()
        }
    }
}

fn is_local(ip: &IpAddr) -> bool {
    ip.is_loopback()
        || nix::ifaddrs::getifaddrs().is_ok_and(|mut addrs| {
            addrs.any(|a| {
                a.address.is_some_and(|s| {
                    s.as_sockaddr_in().map(|v| IpAddr::V4(v.ip())) == Some(*ip)
                        || s.as_sockaddr_in6().map(|v| IpAddr::V6(v.ip())) == Some(*ip)
                })
            })
        })
}

/// A session id unique on this host: start time (µs since the epoch) and backend pid.
fn session_id(pid: u32, start: SystemTime) -> String {
    let micros = start
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!("{micros:x}-{pid}")
}

#[cfg(test)]
mod tests;
