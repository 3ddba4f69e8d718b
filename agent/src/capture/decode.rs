//! Ring-buffer records → typed [`KernelEvent`]s. Pure: no I/O, validated once here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use agent_common::{
    AcceptEvent, BlockedEvent, ConnectEvent, EventHeader, EventKind, ExecEvent, ForkEvent,
    HELD_AT_EXECUTE, HELD_FIXED, LoginEvent, MYSQL_NAME_LEN, MYSQL_SESSION_START,
    MYSQL_STATEMENT_FIXED, MysqlSessionEvent, NameEvent, RawSockAddr, RemoteBlockedEvent,
    STATEMENT_FIXED, STMT_LEN_LOWER_BOUND, STMT_TRUNCATED,
};

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than its kind's fixed part.
    #[error("{kind} record of {len} bytes is shorter than its {need}-byte fixed part")]
    Short {
        /// Kind name.
        kind: &'static str,
        /// Bytes received.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Unknown `kind` field.
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    /// The statement's `text_len` points past the record.
    #[error("statement text_len {text_len} exceeds the {available} bytes in the record")]
    BadTextLen {
        /// Claimed length.
        text_len: usize,
        /// Bytes present.
        available: usize,
    },
}

/// Where a socket points.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SockAddr {
    /// TCP over IPv4 or IPv6.
    Tcp {
        /// Address.
        ip: IpAddr,
        /// Port.
        port: u16,
    },
    /// A unix-domain socket (path empty when unnamed, as for an accepted client).
    Unix {
        /// Socket path.
        path: String,
    },
    /// Not captured (family unknown or address unreadable).
    Unknown,
}

impl SockAddr {
    fn from_raw(raw: &RawSockAddr) -> Self {
        match raw.family as i32 {
            libc::AF_INET => {
                let [a, b, c, d, ..] = raw.addr;
                SockAddr::Tcp {
                    ip: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
                    port: raw.port,
                }
            }
            libc::AF_INET6 => {
                let ip = Ipv6Addr::from(raw.addr);
                let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
                SockAddr::Tcp { ip, port: raw.port }
            }
            libc::AF_UNIX => SockAddr::Unix {
                path: c_string(&raw.path),
            },
            _ => SockAddr::Unknown,
        }
    }
}

/// Common fields of every event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Process id (host namespace).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real uid.
    pub uid: u32,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ktime_ns: u64,
}

/// One decoded kernel event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    /// A backend is about to execute a statement.
    Statement {
        /// Where and when.
        origin: Origin,
        /// `b'Q'` or `b'E'`.
        message: u8,
        /// Captured bytes (may be cut, see `truncated`).
        text: Vec<u8>,
        /// The capture was cut at the size limit.
        truncated: bool,
        /// Full statement length in the server.
        full_len: u32,
        /// `full_len` is only a lower bound.
        len_is_lower_bound: bool,
    },
    /// A flagged backend was stopped before a risky statement: before parsing a `Query`
    /// message's statement, or before running an `Execute` message's portal.
    Held {
        /// Where and when (pid = the stopped backend).
        origin: Origin,
        /// Stopped at an `Execute` (the statement was parsed and planned earlier; its text
        /// no longer decides what runs).
        at_execute: bool,
        /// Address of the statement buffer in the backend.
        buf_addr: u64,
        /// Captured bytes (may be cut, see `truncated`).
        text: Vec<u8>,
        /// The capture was cut at the size limit.
        truncated: bool,
        /// Full statement length in the server.
        full_len: u32,
        /// `full_len` is only a lower bound.
        len_is_lower_bound: bool,
    },
    /// `InitPostgres` entered.
    Login {
        /// Where and when.
        origin: Origin,
        /// Database name.
        database: String,
        /// Role name.
        user: String,
    },
    /// `InitPostgres` returned.
    Ready {
        /// Where and when.
        origin: Origin,
    },
    /// `application_name` set.
    AppName {
        /// Where and when.
        origin: Origin,
        /// The new name.
        name: String,
    },
    /// A watched postmaster accepted a client.
    Accept {
        /// Where and when (pid = postmaster).
        origin: Origin,
        /// Accepted descriptor.
        fd: i32,
        /// Client address.
        peer: SockAddr,
    },
    /// A watched postmaster forked.
    Fork {
        /// Where and when (pid = postmaster).
        origin: Origin,
        /// The child.
        child: u32,
    },
    /// A watched process exited.
    Exit {
        /// Where and when.
        origin: Origin,
    },
    /// A local client connected to a watched server.
    Connect {
        /// Where and when (pid/uid = client).
        origin: Origin,
        /// Client gid.
        gid: u32,
        /// Client socket descriptor.
        fd: i32,
        /// Client cgroup v2 id.
        cgroup_id: u64,
        /// Client comm.
        comm: String,
        /// Server address it connected to.
        server: SockAddr,
    },
    /// The kernel refused a connect to a protected server (`[block]`).
    Blocked {
        /// Where and when (pid/uid = the refused client).
        origin: Origin,
        /// Client gid.
        gid: u32,
        /// Client cgroup v2 id.
        cgroup_id: u64,
        /// Client comm.
        comm: String,
        /// The server address it tried.
        server: SockAddr,
    },
    /// The kernel refused a connection from another host to a protected server port
    /// (`[block]`, `sk_lookup`): no process (the origin's pid and uid are 0).
    RemoteBlocked {
        /// When.
        origin: Origin,
        /// The server address and port it tried.
        server: SockAddr,
        /// The client's address and port.
        peer: SockAddr,
    },
    /// A MariaDB connection thread is about to run a command carrying SQL.
    MysqlStatement {
        /// Where and when (pid = the server, tid = the connection's thread).
        origin: Origin,
        /// The connection id (what `KILL` takes).
        conn_id: u64,
        /// `COM_QUERY` or `COM_STMT_PREPARE`.
        command: u8,
        /// The current database (empty: none).
        database: String,
        /// The session's user now.
        user: String,
        /// Captured bytes (may be cut, see `truncated`).
        text: Vec<u8>,
        /// The capture was cut at the size limit (or at a NUL inside the packet).
        truncated: bool,
        /// Length of the statement in the packet.
        full_len: u32,
    },
    /// A MariaDB connection logged in (`start`) or ended.
    MysqlSession {
        /// Where and when (pid = the server, tid = the connection's thread).
        origin: Origin,
        /// The connection id.
        conn_id: u64,
        /// Logged in (true) or ended.
        start: bool,
        /// The authenticated user (start only).
        user: String,
        /// The client's host name as the server knows it (start only).
        host: String,
        /// The client's IP address (start only; empty for a unix socket).
        ip: String,
        /// The database chosen at login (start only).
        database: String,
    },
    /// A PostgreSQL- or MariaDB-named binary was exec'd.
    Exec {
        /// Where and when.
        origin: Origin,
        /// New comm.
        comm: String,
    },
}

impl KernelEvent {
    /// The event's origin.
    pub fn origin(&self) -> &Origin {
        match self {
            KernelEvent::Statement { origin, .. }
            | KernelEvent::Held { origin, .. }
            | KernelEvent::Login { origin, .. }
            | KernelEvent::Ready { origin }
            | KernelEvent::AppName { origin, .. }
            | KernelEvent::Accept { origin, .. }
            | KernelEvent::Fork { origin, .. }
            | KernelEvent::Exit { origin }
            | KernelEvent::Connect { origin, .. }
            | KernelEvent::Blocked { origin, .. }
            | KernelEvent::RemoteBlocked { origin, .. }
            | KernelEvent::MysqlStatement { origin, .. }
            | KernelEvent::MysqlSession { origin, .. }
            | KernelEvent::Exec { origin, .. } => origin,
        }
    }
}

/// Reads a `T` from the start of `bytes` if it is long enough.
fn read<T: Copy>(bytes: &[u8], kind: EventKind) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            kind: kind.name(),
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: length checked; `T` is a plain `#[repr(C)]` struct of integers and byte arrays,
    // valid for any bit pattern; read_unaligned copes with the ring's 8-byte alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// A NUL-terminated byte array as a string (invalid UTF-8 replaced).
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    let header: EventHeader = read(bytes, EventKind::Statement)?;
    let kind = EventKind::from_u32(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    let origin = Origin {
        pid: header.pid,
        tid: header.tid,
        uid: header.uid,
        ktime_ns: header.ktime_ns,
    };
    Ok(match kind {
        EventKind::Statement => {
            if bytes.len() < STATEMENT_FIXED {
                return Err(DecodeError::Short {
                    kind: kind.name(),
                    len: bytes.len(),
                    need: STATEMENT_FIXED,
                });
            }
            let message = bytes[24];
            let flags = bytes[25];
            let text_len =
                u32::from_ne_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]) as usize;
            let full_len = u32::from_ne_bytes([bytes[32], bytes[33], bytes[34], bytes[35]]);
            let available = bytes.len() - STATEMENT_FIXED;
            if text_len > available {
                return Err(DecodeError::BadTextLen {
                    text_len,
                    available,
                });
            }
            KernelEvent::Statement {
                origin,
                message,
                text: bytes[STATEMENT_FIXED..STATEMENT_FIXED + text_len].to_vec(),
                truncated: flags & STMT_TRUNCATED != 0,
                full_len,
                len_is_lower_bound: flags & STMT_LEN_LOWER_BOUND != 0,
            }
        }
        EventKind::Held => {
            if bytes.len() < HELD_FIXED {
                return Err(DecodeError::Short {
                    kind: kind.name(),
                    len: bytes.len(),
                    need: HELD_FIXED,
                });
            }
            let word = |at: usize| {
                u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
            };
            let mut addr = [0u8; 8];
            addr.copy_from_slice(&bytes[24..32]);
            let flags = bytes[32];
            let text_len = word(36) as usize;
            let available = bytes.len() - HELD_FIXED;
            if text_len > available {
                return Err(DecodeError::BadTextLen {
                    text_len,
                    available,
                });
            }
            KernelEvent::Held {
                origin,
                at_execute: bytes[33] == HELD_AT_EXECUTE,
                buf_addr: u64::from_ne_bytes(addr),
                text: bytes[HELD_FIXED..HELD_FIXED + text_len].to_vec(),
                truncated: flags & STMT_TRUNCATED != 0,
                full_len: word(40),
                len_is_lower_bound: flags & STMT_LEN_LOWER_BOUND != 0,
            }
        }
        EventKind::Login => {
            let e: LoginEvent = read(bytes, kind)?;
            KernelEvent::Login {
                origin,
                database: c_string(&e.database),
                user: c_string(&e.user),
            }
        }
        EventKind::Ready => KernelEvent::Ready { origin },
        EventKind::AppName => {
            let e: NameEvent = read(bytes, kind)?;
            KernelEvent::AppName {
                origin,
                name: c_string(&e.name),
            }
        }
        EventKind::Accept => {
            let e: AcceptEvent = read(bytes, kind)?;
            KernelEvent::Accept {
                origin,
                fd: e.fd,
                peer: SockAddr::from_raw(&e.peer),
            }
        }
        EventKind::Fork => {
            let e: ForkEvent = read(bytes, kind)?;
            KernelEvent::Fork {
                origin,
                child: e.child,
            }
        }
        EventKind::Exit => KernelEvent::Exit { origin },
        EventKind::Connect => {
            let e: ConnectEvent = read(bytes, kind)?;
            KernelEvent::Connect {
                origin,
                gid: e.gid,
                fd: e.fd,
                cgroup_id: e.cgroup_id,
                comm: c_string(&e.comm),
                server: SockAddr::from_raw(&e.server),
            }
        }
        EventKind::Blocked => {
            let e: BlockedEvent = read(bytes, kind)?;
            KernelEvent::Blocked {
                origin,
                gid: e.gid,
                cgroup_id: e.cgroup_id,
                comm: c_string(&e.comm),
                server: SockAddr::from_raw(&e.server),
            }
        }
        EventKind::RemoteBlocked => {
            let e: RemoteBlockedEvent = read(bytes, kind)?;
            KernelEvent::RemoteBlocked {
                origin,
                server: SockAddr::from_raw(&e.server),
                peer: SockAddr::from_raw(&e.peer),
            }
        }
        EventKind::MysqlStatement => {
            if bytes.len() < MYSQL_STATEMENT_FIXED {
                return Err(DecodeError::Short {
                    kind: kind.name(),
                    len: bytes.len(),
                    need: MYSQL_STATEMENT_FIXED,
                });
            }
            let word = |at: usize| {
                u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
            };
            let mut conn_id = [0u8; 8];
            conn_id.copy_from_slice(&bytes[24..32]);
            let text_len = word(36) as usize;
            let available = bytes.len() - MYSQL_STATEMENT_FIXED;
            if text_len > available {
                return Err(DecodeError::BadTextLen {
                    text_len,
                    available,
                });
            }
            KernelEvent::MysqlStatement {
                origin,
                conn_id: u64::from_ne_bytes(conn_id),
                command: bytes[32],
                database: c_string(&bytes[48..48 + MYSQL_NAME_LEN]),
                user: c_string(&bytes[48 + MYSQL_NAME_LEN..MYSQL_STATEMENT_FIXED]),
                text: bytes[MYSQL_STATEMENT_FIXED..MYSQL_STATEMENT_FIXED + text_len].to_vec(),
                truncated: bytes[33] & STMT_TRUNCATED != 0,
                full_len: word(40),
            }
        }
        EventKind::MysqlSession => {
            let e: MysqlSessionEvent = read(bytes, kind)?;
            KernelEvent::MysqlSession {
                origin,
                conn_id: e.conn_id,
                start: e.phase == MYSQL_SESSION_START,
                user: c_string(&e.user),
                host: c_string(&e.host),
                ip: c_string(&e.ip),
                database: c_string(&e.db),
            }
        }
        EventKind::Exec => {
            let e: ExecEvent = read(bytes, kind)?;
            KernelEvent::Exec {
                origin,
                comm: c_string(&e.comm),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::{MAX_STATEMENT, StatementEvent};

    fn header(kind: EventKind) -> EventHeader {
        EventHeader {
            kind: kind as u32,
            pid: 42,
            tid: 42,
            uid: 1000,
            ktime_ns: 7,
        }
    }

    fn bytes_of<T>(value: &T) -> Vec<u8> {
        // SAFETY: test-only view of a plain struct as bytes.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    fn statement_record(text: &[u8], flags: u8, full_len: u32) -> Vec<u8> {
        let mut event = StatementEvent {
            header: header(EventKind::Statement),
            message: b'E',
            flags,
            _pad: [0; 2],
            text_len: text.len() as u32,
            full_len,
            _pad2: 0,
            text: [0; MAX_STATEMENT],
        };
        event.text[..text.len()].copy_from_slice(text);
        bytes_of(&event)[..STATEMENT_FIXED + text.len()].to_vec()
    }

    #[test]
    fn held_record_keeps_the_buffer_address_and_text() {
        let mut event = agent_common::HeldEvent {
            header: header(EventKind::Held),
            buf_addr: 0x5555_dead_beef,
            flags: STMT_TRUNCATED,
            at: HELD_AT_EXECUTE,
            _pad: [0; 2],
            text_len: 10,
            full_len: 20_000,
            _pad2: 0,
            text: [0; MAX_STATEMENT],
        };
        event.text[..10].copy_from_slice(b"DROP TABLE");
        let rec = bytes_of(&event)[..HELD_FIXED + 10].to_vec();
        let KernelEvent::Held {
            origin,
            at_execute,
            buf_addr,
            text,
            truncated,
            full_len,
            len_is_lower_bound,
        } = decode(&rec).unwrap()
        else {
            panic!("not a held event");
        };
        assert_eq!(origin.pid, 42);
        assert!(at_execute);
        assert_eq!(buf_addr, 0x5555_dead_beef);
        assert_eq!(text, b"DROP TABLE");
        assert!(truncated && !len_is_lower_bound);
        assert_eq!(full_len, 20_000);
        assert!(matches!(
            decode(&rec[..HELD_FIXED + 4]),
            Err(DecodeError::BadTextLen { .. })
        ));
    }

    #[test]
    fn statement_keeps_exact_bytes_and_flags() {
        let rec = statement_record(b"SELECT \xff1", STMT_TRUNCATED | STMT_LEN_LOWER_BOUND, 99);
        let KernelEvent::Statement {
            origin,
            message,
            text,
            truncated,
            full_len,
            len_is_lower_bound,
        } = decode(&rec).unwrap()
        else {
            panic!("not a statement");
        };
        assert_eq!(origin.pid, 42);
        assert_eq!(message, b'E');
        assert_eq!(text, b"SELECT \xff1");
        assert!(truncated && len_is_lower_bound);
        assert_eq!(full_len, 99);
    }

    #[test]
    fn statement_text_len_past_record_is_rejected() {
        let mut rec = statement_record(b"SELECT 1", 0, 8);
        rec.truncate(STATEMENT_FIXED + 3);
        assert_eq!(
            decode(&rec),
            Err(DecodeError::BadTextLen {
                text_len: 8,
                available: 3
            })
        );
    }

    #[test]
    fn short_and_unknown_records_are_errors_not_panics() {
        assert!(matches!(decode(&[1, 2, 3]), Err(DecodeError::Short { .. })));
        let mut h = header(EventKind::Login);
        h.kind = 77;
        assert_eq!(decode(&bytes_of(&h)), Err(DecodeError::UnknownKind(77)));
        let h = header(EventKind::Login);
        assert!(matches!(
            decode(&bytes_of(&h)),
            Err(DecodeError::Short { kind: "login", .. })
        ));
    }

    #[test]
    fn blocked_record_names_the_client_and_the_refused_socket() {
        let mut server = RawSockAddr {
            family: libc::AF_UNIX as u16,
            port: 0,
            _pad: 0,
            addr: [0; 16],
            path: [0; agent_common::UNIX_PATH_LEN],
            _pad2: [0; 4],
        };
        server.path[..20].copy_from_slice(b"/run/pg/.s.PGSQL.543");
        let mut comm = [0u8; agent_common::COMM_LEN];
        comm[..4].copy_from_slice(b"psql");
        let event = BlockedEvent {
            header: header(EventKind::Blocked),
            gid: 5,
            _pad: 0,
            cgroup_id: 1234,
            comm,
            server,
        };
        assert_eq!(
            decode(&bytes_of(&event)).unwrap(),
            KernelEvent::Blocked {
                origin: Origin {
                    pid: 42,
                    tid: 42,
                    uid: 1000,
                    ktime_ns: 7
                },
                gid: 5,
                cgroup_id: 1234,
                comm: "psql".into(),
                server: SockAddr::Unix {
                    path: "/run/pg/.s.PGSQL.543".into()
                },
            }
        );
        assert!(matches!(
            decode(&bytes_of(&event)[..60]),
            Err(DecodeError::Short {
                kind: "blocked",
                ..
            })
        ));
    }

    #[test]
    fn remote_blocked_record_names_the_peer_and_the_server() {
        let inet = |family: i32, port: u16, addr: &[u8]| {
            let mut raw = RawSockAddr {
                family: family as u16,
                port,
                _pad: 0,
                addr: [0; 16],
                path: [0; agent_common::UNIX_PATH_LEN],
                _pad2: [0; 4],
            };
            raw.addr[..addr.len()].copy_from_slice(addr);
            raw
        };
        let mut event = RemoteBlockedEvent {
            header: header(EventKind::RemoteBlocked),
            server: inet(libc::AF_INET, 5432, &[192, 0, 2, 1]),
            peer: inet(libc::AF_INET, 40000, &[192, 0, 2, 2]),
        };
        event.header.pid = 0;
        event.header.uid = 0;
        let KernelEvent::RemoteBlocked {
            origin,
            server,
            peer,
        } = decode(&bytes_of(&event)).unwrap()
        else {
            panic!("not a remote refusal");
        };
        assert_eq!((origin.pid, origin.ktime_ns), (0, 7));
        assert_eq!(
            server,
            SockAddr::Tcp {
                ip: "192.0.2.1".parse().unwrap(),
                port: 5432
            }
        );
        assert_eq!(
            peer,
            SockAddr::Tcp {
                ip: "192.0.2.2".parse().unwrap(),
                port: 40000
            }
        );
        let mut v6 = [0u8; 16];
        v6[..2].copy_from_slice(&[0x20, 0x01]);
        v6[15] = 9;
        event.peer = inet(libc::AF_INET6, 1, &v6);
        let KernelEvent::RemoteBlocked { peer, .. } = decode(&bytes_of(&event)).unwrap() else {
            panic!("not a remote refusal");
        };
        assert_eq!(
            peer,
            SockAddr::Tcp {
                ip: "2001::9".parse().unwrap(),
                port: 1
            }
        );
        assert!(matches!(
            decode(&bytes_of(&event)[..200]),
            Err(DecodeError::Short {
                kind: "remote_blocked",
                ..
            })
        ));
    }

    #[test]
    fn accept_decodes_ipv4_ipv6_mapped_and_unix() {
        let mut peer = RawSockAddr {
            family: libc::AF_INET as u16,
            port: 5555,
            _pad: 0,
            addr: [0; 16],
            path: [0; agent_common::UNIX_PATH_LEN],
            _pad2: [0; 4],
        };
        peer.addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let event = AcceptEvent {
            header: header(EventKind::Accept),
            fd: 9,
            _pad: 0,
            peer,
        };
        let expect_v4 = SockAddr::Tcp {
            ip: "127.0.0.1".parse().unwrap(),
            port: 5555,
        };
        assert!(
            matches!(decode(&bytes_of(&event)).unwrap(), KernelEvent::Accept { fd: 9, peer, .. } if peer == expect_v4)
        );
        let mut mapped = peer;
        mapped.family = libc::AF_INET6 as u16;
        mapped.addr = "::ffff:127.0.0.1".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(SockAddr::from_raw(&mapped), expect_v4);
        let mut unix = peer;
        unix.family = libc::AF_UNIX as u16;
        unix.path[..9].copy_from_slice(b"/tmp/.s.P");
        assert_eq!(
            SockAddr::from_raw(&unix),
            SockAddr::Unix {
                path: "/tmp/.s.P".into()
            }
        );
    }

    #[test]
    fn mariadb_statement_keeps_connection_database_and_text() {
        let mut event = agent_common::MysqlStatementEvent {
            header: header(EventKind::MysqlStatement),
            conn_id: 0x1_0000_0007,
            command: agent_common::COM_QUERY,
            flags: STMT_TRUNCATED,
            _pad: [0; 2],
            text_len: 12,
            full_len: 40_000,
            _pad2: 0,
            db: [0; agent_common::MYSQL_NAME_LEN],
            user: [0; agent_common::MYSQL_NAME_LEN],
            text: [0; MAX_STATEMENT],
        };
        event.db[..4].copy_from_slice(b"shop");
        event.user[..3].copy_from_slice(b"app");
        event.text[..12].copy_from_slice(b"DELETE FROM ");
        let rec = bytes_of(&event)[..MYSQL_STATEMENT_FIXED + 12].to_vec();
        let KernelEvent::MysqlStatement {
            origin,
            conn_id,
            command,
            database,
            user,
            text,
            truncated,
            full_len,
        } = decode(&rec).unwrap()
        else {
            panic!("not a MariaDB statement");
        };
        assert_eq!((origin.pid, conn_id, command), (42, 0x1_0000_0007, 3));
        assert_eq!((database.as_str(), user.as_str()), ("shop", "app"));
        assert_eq!(text, b"DELETE FROM ");
        assert!(truncated);
        assert_eq!(full_len, 40_000);
        assert!(matches!(
            decode(&rec[..MYSQL_STATEMENT_FIXED + 3]),
            Err(DecodeError::BadTextLen { .. })
        ));
        assert!(matches!(
            decode(&rec[..MYSQL_STATEMENT_FIXED - 1]),
            Err(DecodeError::Short { .. })
        ));
    }

    #[test]
    fn mariadb_session_start_carries_the_login_identity() {
        let name = |s: &[u8]| {
            let mut out = [0u8; agent_common::MYSQL_NAME_LEN];
            out[..s.len()].copy_from_slice(s);
            out
        };
        let mut ip = [0u8; agent_common::MYSQL_IP_LEN];
        ip[..9].copy_from_slice(b"127.0.0.1");
        let event = MysqlSessionEvent {
            header: header(EventKind::MysqlSession),
            conn_id: 5,
            phase: MYSQL_SESSION_START,
            _pad: 0,
            user: name(b"app"),
            host: name(b"localhost"),
            ip,
            db: name(b"shop"),
        };
        assert_eq!(
            decode(&bytes_of(&event)).unwrap(),
            KernelEvent::MysqlSession {
                origin: Origin {
                    pid: 42,
                    tid: 42,
                    uid: 1000,
                    ktime_ns: 7
                },
                conn_id: 5,
                start: true,
                user: "app".into(),
                host: "localhost".into(),
                ip: "127.0.0.1".into(),
                database: "shop".into(),
            }
        );
    }
}
