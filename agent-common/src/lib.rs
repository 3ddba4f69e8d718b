//! `#[repr(C)]` event types shared by dbward's kernel programs and the agent.
//!
//! Every record in the ring buffer starts with an [`EventHeader`]; its `kind` says which
//! of the event structs follows. Sizes are asserted at compile time so the kernel and user
//! sides can never disagree about a layout.
#![no_std]

/// Bytes of statement text captured per event (the rest is counted, not copied).
pub const MAX_STATEMENT: usize = 16 * 1024;
/// Longest statement the kernel measures exactly; longer ones set [`STMT_LEN_LOWER_BOUND`].
pub const MAX_MEASURED_STATEMENT: usize = 64 * MAX_STATEMENT;
/// PostgreSQL's NAMEDATALEN: the longest database, role or application name plus NUL.
pub const NAME_LEN: usize = 64;
/// `sizeof(sun_path)` on Linux.
pub const UNIX_PATH_LEN: usize = 108;
/// The kernel's TASK_COMM_LEN.
pub const COMM_LEN: usize = 16;
/// Size of the ring buffer shared by all programs (a power-of-two number of pages).
pub const RING_BYTES: u32 = 16 * 1024 * 1024;

/// What follows the [`EventHeader`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// [`StatementEvent`]: a statement about to execute in a backend.
    Statement = 1,
    /// [`LoginEvent`]: `InitPostgres` entered with the database and role names.
    Login = 2,
    /// [`NameEvent`]: `application_name` was set.
    AppName = 3,
    /// [`AcceptEvent`]: a watched postmaster accepted a client connection.
    Accept = 4,
    /// [`ForkEvent`]: a watched postmaster forked a child (a backend for the last accept).
    Fork = 5,
    /// [`ExitEvent`]: a watched postmaster or backend exited.
    Exit = 6,
    /// [`ConnectEvent`]: a local client connected to a watched port or socket.
    Connect = 7,
    /// [`ExecEvent`]: a process exec'd a binary named like a PostgreSQL server.
    Exec = 8,
    /// [`EventHeader`] only: `InitPostgres` returned; the session is ready for queries.
    Ready = 9,
    /// [`HeldEvent`]: a flagged backend was stopped (SIGSTOP) before parsing a statement.
    Held = 10,
    /// [`BlockedEvent`]: a connect to a protected server port or socket was refused.
    Blocked = 11,
    /// [`RemoteBlockedEvent`]: a connection from another host to a protected server port
    /// was refused (`sk_lookup`).
    RemoteBlocked = 12,
    /// [`MysqlStatementEvent`]: a MariaDB connection thread is about to run a command that
    /// carries SQL (`COM_QUERY`, `COM_STMT_PREPARE`).
    MysqlStatement = 13,
    /// [`MysqlSessionEvent`]: a MariaDB connection logged in, or ended.
    MysqlSession = 14,
}

impl EventKind {
    /// Every kind, in numeric order (index = kind - 1), for drop counters.
    pub const ALL: [EventKind; 14] = [
        EventKind::Statement,
        EventKind::Login,
        EventKind::AppName,
        EventKind::Accept,
        EventKind::Fork,
        EventKind::Exit,
        EventKind::Connect,
        EventKind::Exec,
        EventKind::Ready,
        EventKind::Held,
        EventKind::Blocked,
        EventKind::RemoteBlocked,
        EventKind::MysqlStatement,
        EventKind::MysqlSession,
    ];

    /// Decodes a raw kind.
    pub fn from_u32(raw: u32) -> Option<Self> {
        Self::ALL.get((raw as usize).wrapping_sub(1)).copied()
    }

    /// Stable lower-case name, used in metrics and drop reports.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Statement => "statement",
            EventKind::Login => "login",
            EventKind::AppName => "app_name",
            EventKind::Accept => "accept",
            EventKind::Fork => "fork",
            EventKind::Exit => "exit",
            EventKind::Connect => "connect",
            EventKind::Exec => "exec",
            EventKind::Ready => "ready",
            EventKind::Held => "held",
            EventKind::Blocked => "blocked",
            EventKind::RemoteBlocked => "remote_blocked",
            EventKind::MysqlStatement => "mysql_statement",
            EventKind::MysqlSession => "mysql_session",
        }
    }
}

/// Number of per-kind drop counters in the `DROPS` map.
pub const DROP_SLOTS: u32 = EventKind::ALL.len() as u32;

/// Fixed header at the start of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// An [`EventKind`] as `u32`.
    pub kind: u32,
    /// Process id (tgid) of the process the event happened in (host pid namespace).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real uid of the process.
    pub uid: u32,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) at the event.
    pub ktime_ns: u64,
}

/// The statement text was cut at [`MAX_STATEMENT`] bytes.
pub const STMT_TRUNCATED: u8 = 1;
/// `full_len` is a lower bound: the statement is longer than [`MAX_MEASURED_STATEMENT`].
pub const STMT_LEN_LOWER_BOUND: u8 = 2;

/// A statement that a backend is about to execute: one per simple-protocol `Query`
/// message and one per extended-protocol `Execute` message.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StatementEvent {
    /// Common header.
    pub header: EventHeader,
    /// Frontend message that triggered the execution: `b'Q'` (simple), `b'E'` (extended),
    /// or 0 (unknown: the backend was mid-read when the probes were attached).
    pub message: u8,
    /// [`STMT_TRUNCATED`] | [`STMT_LEN_LOWER_BOUND`].
    pub flags: u8,
    /// Padding.
    pub _pad: [u8; 2],
    /// Bytes of `text` that are valid (without the NUL).
    pub text_len: u32,
    /// Full length of the statement in the server (see [`STMT_LEN_LOWER_BOUND`]).
    pub full_len: u32,
    /// Padding.
    pub _pad2: u32,
    /// The statement text, `text_len` bytes valid; only that prefix is sent.
    pub text: [u8; MAX_STATEMENT],
}

/// Bytes of a [`StatementEvent`] before `text`.
pub const STATEMENT_FIXED: usize = core::mem::size_of::<StatementEvent>() - MAX_STATEMENT;

/// A backend flagged in `HOLD_SESSIONS` entered `pg_parse_query` with a statement that may
/// not run without a decision (not plain, or its first keyword is not in `PASS_KEYWORDS`):
/// the kernel sent it SIGSTOP before the statement was parsed. The agent decides, then
/// resumes, neutralises or terminates it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HeldEvent {
    /// Common header (pid = the stopped backend).
    pub header: EventHeader,
    /// User-space address of the statement buffer in the backend (`query_string`).
    pub buf_addr: u64,
    /// [`STMT_TRUNCATED`] | [`STMT_LEN_LOWER_BOUND`].
    pub flags: u8,
    /// Where the backend stopped: [`HELD_AT_EXECUTE`] (an `Execute` message, about to run a
    /// statement parsed earlier) or [`HELD_AT_PARSE`] (before `pg_parse_query`).
    pub at: u8,
    /// Padding.
    pub _pad: [u8; 2],
    /// Bytes of `text` that are valid (without the NUL).
    pub text_len: u32,
    /// Full length of the statement in the server (see [`STMT_LEN_LOWER_BOUND`]).
    pub full_len: u32,
    /// Padding.
    pub _pad2: u32,
    /// The statement text, `text_len` bytes valid; only that prefix is sent.
    pub text: [u8; MAX_STATEMENT],
}

/// [`HeldEvent::at`]: stopped before `pg_parse_query` (a `Query` message); the statement
/// buffer is the query string the parser is about to read.
pub const HELD_AT_PARSE: u8 = 0;
/// [`HeldEvent::at`]: stopped in `exec_execute_message` before the portal runs (an `Execute`
/// message of the extended protocol); the statement was parsed and planned earlier, so it is
/// ended by the pending-interrupt check PostgreSQL makes before running the portal, not by
/// rewriting its text.
pub const HELD_AT_EXECUTE: u8 = 1;

/// Attach cookie of the `report_site` program: the `call pgstat_report_activity` in
/// `exec_simple_query` (a `Query` message, before it is parsed).
pub const SITE_QUERY: u64 = 1;
/// Attach cookie of the `report_site` program: the call in `exec_execute_message` (an
/// `Execute` message, before its portal runs).
pub const SITE_EXECUTE: u64 = 2;
/// Attach cookie of the `report_site` program: the call in `exec_replication_command` (a
/// replication command, already parsed: recorded as a `Query`, never held).
pub const SITE_REPLICATION: u64 = 3;

/// Bytes of a [`HeldEvent`] before `text`.
pub const HELD_FIXED: usize = core::mem::size_of::<HeldEvent>() - MAX_STATEMENT;

/// `HOLD_SESSIONS` value bit: the shim's own upstream session, never stopped (the shim
/// decides for it).
pub const HOLD_EXEMPT: u32 = 1 << 31;
/// `HOLD_SESSIONS` value bit: policy could stop nothing of this session's principal.
pub const HOLD_PASS_ALL: u32 = 1 << 30;
/// `HOLD_SESSIONS` value bits: the plain kinds (bits of `PASS_KEYWORDS` values) this session
/// runs without a stop.
pub const HOLD_PASS_MASK: u32 = 0xffff;

/// Length of the keys of the `PASS_KEYWORDS` map: an upper-case SQL keyword, NUL-padded.
pub const KEYWORD_LEN: usize = 16;

/// `InitPostgres(dbname, dboid, username, …)` entered in a backend.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LoginEvent {
    /// Common header.
    pub header: EventHeader,
    /// Database name, NUL-terminated (empty when connecting by OID).
    pub database: [u8; NAME_LEN],
    /// Role name, NUL-terminated.
    pub user: [u8; NAME_LEN],
}

/// A name reported by a backend (`application_name`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NameEvent {
    /// Common header.
    pub header: EventHeader,
    /// NUL-terminated name.
    pub name: [u8; NAME_LEN],
}

/// A socket address as captured in the kernel: IPv4, IPv6 or a unix socket path.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawSockAddr {
    /// `AF_INET`, `AF_INET6` or `AF_UNIX` (0 when unknown).
    pub family: u16,
    /// Port in host byte order (TCP only).
    pub port: u16,
    /// Padding.
    pub _pad: u32,
    /// IPv4 address in the first 4 bytes, or the IPv6 address (network byte order).
    pub addr: [u8; 16],
    /// Unix socket path, NUL-terminated (`AF_UNIX` only).
    pub path: [u8; UNIX_PATH_LEN],
    /// Padding to a multiple of 8.
    pub _pad2: [u8; 4],
}

/// A watched postmaster's `accept`/`accept4` returned a client connection.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AcceptEvent {
    /// Common header (pid = the postmaster).
    pub header: EventHeader,
    /// The accepted descriptor (inherited by the backend that is forked next).
    pub fd: i32,
    /// Padding.
    pub _pad: u32,
    /// The client's address.
    pub peer: RawSockAddr,
}

/// A watched postmaster forked a child process.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ForkEvent {
    /// Common header (pid = the postmaster).
    pub header: EventHeader,
    /// Pid of the new child.
    pub child: u32,
    /// Padding.
    pub _pad: u32,
}

/// A watched process (postmaster or backend) exited; the header's pid is the process.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExitEvent {
    /// Common header.
    pub header: EventHeader,
}

/// A local client connected to a watched server port or socket path.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ConnectEvent {
    /// Common header (pid/uid = the client).
    pub header: EventHeader,
    /// Real gid of the client.
    pub gid: u32,
    /// The client's socket descriptor.
    pub fd: i32,
    /// cgroup v2 id of the client.
    pub cgroup_id: u64,
    /// The client's `comm`.
    pub comm: [u8; COMM_LEN],
    /// Where it connected.
    pub server: RawSockAddr,
}

/// A process that is not allowed to reach a protected server port or socket tried to
/// connect; the kernel refused it (`ECONNREFUSED`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockedEvent {
    /// Common header (pid/uid = the refused client).
    pub header: EventHeader,
    /// Real gid of the client.
    pub gid: u32,
    /// Padding.
    pub _pad: u32,
    /// cgroup v2 id of the client.
    pub cgroup_id: u64,
    /// The client's `comm`.
    pub comm: [u8; COMM_LEN],
    /// Where it tried to connect.
    pub server: RawSockAddr,
}

/// A client on another host sent a connection request (TCP SYN) to a protected server
/// port and its address is not allowed: the kernel answered with a reset. Judged in the
/// network stack (`sk_lookup`), so there is no process: the header's pid, tid and uid are 0.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RemoteBlockedEvent {
    /// Common header (pid, tid and uid are 0).
    pub header: EventHeader,
    /// The local address and port it tried (TCP).
    pub server: RawSockAddr,
    /// The client's address and port (TCP).
    pub peer: RawSockAddr,
}

/// A process exec'd a binary whose name looks like a PostgreSQL server.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    /// Common header.
    pub header: EventHeader,
    /// The new `comm`.
    pub comm: [u8; COMM_LEN],
}

/// Bytes captured of a MariaDB user, host or database name (NUL-terminated; longer names
/// are cut).
pub const MYSQL_NAME_LEN: usize = 128;
/// Bytes of a MariaDB client's IP address text (`INET6_ADDRSTRLEN` and NUL).
pub const MYSQL_IP_LEN: usize = 48;
/// MariaDB's `COM_QUERY`: a statement in text.
pub const COM_QUERY: u8 = 3;
/// MariaDB's `COM_STMT_PREPARE`: a statement prepared for the binary protocol.
pub const COM_STMT_PREPARE: u8 = 22;
/// Slots of the `MYSQL_LAYOUTS` map (one per MariaDB server binary; the attach cookie of
/// its probes is the slot).
pub const MYSQL_LAYOUT_SLOTS: u32 = 16;

/// Where a MariaDB server binary keeps what the probes read, as byte offsets found by the
/// agent in the server's own plugin-API accessors (`thd_get_thread_id`, `thd_user_name`,
/// `thd_client_host`, `thd_client_ip`, `thd_current_db`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MysqlLayout {
    /// `THD::thread_id` (the connection id `KILL` takes), a `u64`.
    pub thread_id: u32,
    /// `THD::security_ctx`, a pointer to the `Security_context`.
    pub security_ctx: u32,
    /// `Security_context::user` (`char *`).
    pub user: u32,
    /// `Security_context::host` (`char *`).
    pub host: u32,
    /// `Security_context::ip` (`char *`).
    pub ip: u32,
    /// `THD::db.str` (`char *`, the current database).
    pub db: u32,
}

/// [`MysqlSessionEvent::phase`]: the connection logged in (`prepare_new_connection_state`).
pub const MYSQL_SESSION_START: u32 = 1;
/// [`MysqlSessionEvent::phase`]: the connection ended (`end_connection`).
pub const MYSQL_SESSION_END: u32 = 2;

/// A MariaDB connection logged in or ended, in the server's connection thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MysqlSessionEvent {
    /// Common header (pid = the server, tid = the connection's thread).
    pub header: EventHeader,
    /// The connection id (`THD::thread_id`).
    pub conn_id: u64,
    /// [`MYSQL_SESSION_START`] or [`MYSQL_SESSION_END`].
    pub phase: u32,
    /// Padding.
    pub _pad: u32,
    /// The authenticated user (start only), NUL-terminated.
    pub user: [u8; MYSQL_NAME_LEN],
    /// The client's host name as the server resolved it (start only).
    pub host: [u8; MYSQL_NAME_LEN],
    /// The client's IP address (start only; empty for a unix socket).
    pub ip: [u8; MYSQL_IP_LEN],
    /// The database chosen at login (start only).
    pub db: [u8; MYSQL_NAME_LEN],
}

/// A MariaDB connection thread entered `dispatch_command` with a command carrying SQL.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MysqlStatementEvent {
    /// Common header (pid = the server, tid = the connection's thread).
    pub header: EventHeader,
    /// The connection id (`THD::thread_id`).
    pub conn_id: u64,
    /// [`COM_QUERY`] or [`COM_STMT_PREPARE`].
    pub command: u8,
    /// [`STMT_TRUNCATED`].
    pub flags: u8,
    /// Padding.
    pub _pad: [u8; 2],
    /// Bytes of `text` that are valid.
    pub text_len: u32,
    /// Length of the statement in the packet.
    pub full_len: u32,
    /// Padding.
    pub _pad2: u32,
    /// The current database, NUL-terminated.
    pub db: [u8; MYSQL_NAME_LEN],
    /// The session's user now (`COM_CHANGE_USER` changes it), NUL-terminated.
    pub user: [u8; MYSQL_NAME_LEN],
    /// The statement text, `text_len` bytes valid; only that prefix is sent.
    pub text: [u8; MAX_STATEMENT],
}

/// Bytes of a [`MysqlStatementEvent`] before `text`.
pub const MYSQL_STATEMENT_FIXED: usize =
    core::mem::size_of::<MysqlStatementEvent>() - MAX_STATEMENT;

/// Keys of the `CONFIG` array map, set by the agent before attaching.
pub mod config {
    /// The agent's own tgid: always allowed to connect to protected servers (the shim).
    pub const AGENT_PID: u32 = 0;
    /// Number of slots.
    pub const SLOTS: u32 = 1;
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 24);
const _: () = assert!(STATEMENT_FIXED == 40);
const _: () = assert!(core::mem::size_of::<RawSockAddr>() == 136);
const _: () = assert!(core::mem::size_of::<LoginEvent>() == 24 + 2 * NAME_LEN);
const _: () = assert!(core::mem::size_of::<AcceptEvent>() == 24 + 8 + 136);
const _: () = assert!(core::mem::size_of::<ConnectEvent>() == 24 + 8 + 8 + 16 + 136);
const _: () = assert!(core::mem::size_of::<BlockedEvent>() == 24 + 8 + 8 + 16 + 136);
const _: () = assert!(core::mem::size_of::<RemoteBlockedEvent>() == 24 + 2 * 136);
const _: () = assert!(MAX_STATEMENT.is_power_of_two());
const _: () = assert!(HELD_FIXED == 48);
const _: () = assert!(MYSQL_STATEMENT_FIXED == 24 + 8 + 16 + 2 * MYSQL_NAME_LEN);
const _: () = assert!(
    core::mem::size_of::<MysqlSessionEvent>() == 24 + 16 + 3 * MYSQL_NAME_LEN + MYSQL_IP_LEN
);
