//! MariaDB sessions: one per (server pid, connection id), since `mariadbd` serves every
//! session as a thread of one process (and reuses threads for later connections).
//!
//! The kernel reports a login (`prepare_new_connection_state`) with the user, host, IP and
//! database, each statement with the connection id, current database and user, and the
//! end (`end_connection`). A statement of a connection that logged in before the agent
//! started opens its session from the statement's own identity (`discovered`).

use std::collections::HashMap;
use std::time::SystemTime;

use super::Clock;
use crate::capture::decode::KernelEvent;
use crate::event::{Client, Event, EventType, escape_sql, format_ts};

/// The server name events carry.
pub const SERVER: &str = "mariadb";

#[derive(Debug)]
struct Session {
    id: String,
    start_ktime: u64,
    user: Option<String>,
    database: Option<String>,
    client: Client,
    discovered: bool,
    statements: u64,
}

/// Live MariaDB sessions by (server pid, connection id).
#[derive(Debug)]
pub struct MariadbSessions {
    host: String,
    clock: Clock,
    sessions: HashMap<(u32, u64), Session>,
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl MariadbSessions {
    /// Sessions of the servers on `host`.
    pub fn new(host: String, clock: Clock) -> Self {
        Self {
            host,
            clock,
            sessions: HashMap::new(),
        }
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The event for a MariaDB kernel event (`None` for other events, and for the end of a
    /// connection that never logged in).
    pub fn handle(&mut self, event: KernelEvent) -> Option<Event> {
        match event {
            KernelEvent::MysqlSession {
                origin,
                conn_id,
                start: true,
                user,
                host: _,
                ip,
                database,
            } => {
                let client = Client {
                    transport: if ip.is_empty() { "unix" } else { "tcp" }.into(),
                    addr: non_empty(ip),
                    ..Client::default()
                };
                let session = Session {
                    id: session_id(origin.pid, conn_id, self.clock.wall(origin.ktime_ns)),
                    start_ktime: origin.ktime_ns,
                    user: non_empty(user),
                    database: non_empty(database),
                    client,
                    discovered: false,
                    statements: 0,
                };
                let event = self.event(
                    EventType::SessionStart,
                    &session,
                    origin.pid,
                    conn_id,
                    origin.ktime_ns,
                );
                self.sessions.insert((origin.pid, conn_id), session);
                Some(event)
            }
            KernelEvent::MysqlSession {
                origin,
                conn_id,
                start: false,
                ..
            } => {
                let session = self.sessions.remove(&(origin.pid, conn_id))?;
                Some(self.end(session, origin.pid, conn_id, origin.ktime_ns))
            }
            KernelEvent::MysqlStatement {
                origin,
                conn_id,
                command,
                database,
                user,
                text,
                truncated,
                full_len,
            } => {
                let clock = self.clock;
                let session = self
                    .sessions
                    .entry((origin.pid, conn_id))
                    .or_insert_with(|| Session {
                        id: session_id(origin.pid, conn_id, clock.wall(origin.ktime_ns)),
                        start_ktime: origin.ktime_ns,
                        user: None,
                        database: None,
                        client: Client {
                            transport: "unknown".into(),
                            ..Client::default()
                        },
                        discovered: true,
                        statements: 0,
                    });
                session.statements += 1;
                // `USE` and `COM_CHANGE_USER` change these within a session.
                session.database = non_empty(database);
                session.user = non_empty(user).or(session.user.take());
                let session = &self.sessions[&(origin.pid, conn_id)];
                let mut event = self.event(
                    EventType::Statement,
                    session,
                    origin.pid,
                    conn_id,
                    origin.ktime_ns,
                );
                event.discovered = session.discovered.then_some(true);
                let (sql, escaped) = escape_sql(&text);
                event.sql = Some(sql);
                event.sql_escaped = escaped.then_some(true);
                event.sql_truncated = Some(truncated);
                event.sql_length = Some(full_len);
                event.protocol = Some(
                    if command == agent_common::COM_STMT_PREPARE {
                        "prepare"
                    } else {
                        "simple"
                    }
                    .into(),
                );
                Some(event)
            }
            _ => None,
        }
    }

    /// Ends every session of a server that exited.
    pub fn server_exited(&mut self, pid: u32, ktime: u64) -> Vec<Event> {
        let ids: Vec<(u32, u64)> = self
            .sessions
            .keys()
            .filter(|(server, _)| *server == pid)
            .copied()
            .collect();
        ids.into_iter()
            .filter_map(|key| {
                let session = self.sessions.remove(&key)?;
                let mut event = self.end(session, key.0, key.1, ktime);
                event.error = Some("the server exited".into());
                Some(event)
            })
            .collect()
    }

    fn end(&self, session: Session, pid: u32, conn_id: u64, ktime: u64) -> Event {
        let mut event = self.event(EventType::SessionEnd, &session, pid, conn_id, ktime);
        event.duration_ms = Some(ktime.saturating_sub(session.start_ktime) as f64 / 1e6);
        event.statements = Some(session.statements);
        event
    }

    fn event(
        &self,
        kind: EventType,
        session: &Session,
        pid: u32,
        conn_id: u64,
        ktime: u64,
    ) -> Event {
        Event {
            kind: Some(kind),
            ts: format_ts(self.clock.wall(ktime)),
            host: self.host.clone(),
            session_id: Some(session.id.clone()),
            server: Some(SERVER.into()),
            server_pid: Some(pid),
            connection_id: Some(conn_id),
            database: session.database.clone(),
            db_user: session.user.clone(),
            client: Some(session.client.clone()),
            ..Event::default()
        }
    }
}

/// A session id unique on the host: a PostgreSQL-style id of the server process and start
/// time, and the connection id.
fn session_id(pid: u32, conn_id: u64, start: SystemTime) -> String {
    format!("{}-c{conn_id}", super::session_id(pid, start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::decode::Origin;

    fn origin(ktime_ns: u64) -> Origin {
        Origin {
            pid: 900,
            tid: 901,
            uid: 105,
            ktime_ns,
        }
    }

    fn login(conn_id: u64, ip: &str) -> KernelEvent {
        KernelEvent::MysqlSession {
            origin: origin(1_000_000),
            conn_id,
            start: true,
            user: "app".into(),
            host: "localhost".into(),
            ip: ip.into(),
            database: "shop".into(),
        }
    }

    fn statement(conn_id: u64, sql: &str, database: &str, user: &str) -> KernelEvent {
        KernelEvent::MysqlStatement {
            origin: origin(2_000_000),
            conn_id,
            command: agent_common::COM_QUERY,
            database: database.into(),
            user: user.into(),
            text: sql.as_bytes().to_vec(),
            truncated: false,
            full_len: sql.len() as u32,
        }
    }

    fn sessions() -> MariadbSessions {
        MariadbSessions::new("db1".into(), Clock::with_offset(0))
    }

    #[test]
    fn a_session_carries_its_identity_into_statements_and_end() {
        let mut s = sessions();
        let start = s.handle(login(7, "127.0.0.1")).unwrap();
        assert_eq!(start.kind, Some(EventType::SessionStart));
        assert_eq!(start.server.as_deref(), Some("mariadb"));
        assert_eq!(
            (start.server_pid, start.connection_id),
            (Some(900), Some(7))
        );
        assert_eq!(start.db_user.as_deref(), Some("app"));
        let client = start.client.clone().unwrap();
        assert_eq!(
            (client.transport.as_str(), client.addr.as_deref()),
            ("tcp", Some("127.0.0.1"))
        );
        let stmt = s.handle(statement(7, "USE other", "other", "app")).unwrap();
        assert_eq!(stmt.session_id, start.session_id);
        assert_eq!(stmt.database.as_deref(), Some("other"));
        assert_eq!(stmt.sql.as_deref(), Some("USE other"));
        assert_eq!(stmt.discovered, None);
        let end = s
            .handle(KernelEvent::MysqlSession {
                origin: origin(3_000_000),
                conn_id: 7,
                start: false,
                user: String::new(),
                host: String::new(),
                ip: String::new(),
                database: String::new(),
            })
            .unwrap();
        assert_eq!(end.kind, Some(EventType::SessionEnd));
        assert_eq!(end.statements, Some(1));
        assert_eq!(end.duration_ms, Some(2.0));
        assert!(s.is_empty());
    }

    #[test]
    fn connections_are_told_apart_by_id_and_unix_clients_have_no_address() {
        let mut s = sessions();
        let a = s.handle(login(1, "")).unwrap();
        let b = s.handle(login(2, "10.0.0.5")).unwrap();
        assert_ne!(a.session_id, b.session_id);
        assert_eq!(a.client.unwrap().transport, "unix");
        let stmt = s.handle(statement(2, "SELECT 1", "shop", "app")).unwrap();
        assert_eq!(stmt.session_id, b.session_id);
        assert_eq!(s.len(), 2);
        let ends = s.server_exited(900, 5_000_000);
        assert_eq!(ends.len(), 2);
        assert!(
            ends.iter()
                .all(|e| e.error.as_deref() == Some("the server exited"))
        );
        assert!(s.is_empty());
    }

    #[test]
    fn a_connection_older_than_the_agent_is_discovered_from_its_statement() {
        let mut s = sessions();
        let stmt = s
            .handle(statement(42, "DROP TABLE t", "shop", "root"))
            .unwrap();
        assert_eq!(stmt.discovered, Some(true));
        assert_eq!(stmt.db_user.as_deref(), Some("root"));
        assert_eq!(stmt.client.unwrap().transport, "unknown");
        // an end of a connection the agent never saw is no event
        assert!(
            s.handle(KernelEvent::MysqlSession {
                origin: origin(1),
                conn_id: 99,
                start: false,
                user: String::new(),
                host: String::new(),
                ip: String::new(),
                database: String::new(),
            })
            .is_none()
        );
    }
}
