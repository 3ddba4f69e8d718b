use std::collections::HashMap;

use super::*;

/// A host whose processes and sockets are given by the test.
#[derive(Default)]
struct FakeHost {
    exes: HashMap<u32, &'static str>,
    local_ports: HashMap<(u32, i32), u16>,
    unix_peers: HashMap<(u32, i32), (u32, u32, u32)>,
}

impl Inspector for FakeHost {
    fn describe_process(&self, client: &mut Client, pid: u32) {
        client.exe = self.exes.get(&pid).map(|e| (*e).to_owned());
    }
    fn tcp_local_port(&self, pid: u32, fd: i32) -> Option<u16> {
        self.local_ports.get(&(pid, fd)).copied()
    }
    fn unix_peer(&self, pid: u32, fd: i32) -> Option<(u32, u32, u32)> {
        self.unix_peers.get(&(pid, fd)).copied()
    }
}

const POSTMASTER: u32 = 100;

fn origin(pid: u32, t: u64) -> Origin {
    Origin {
        pid,
        tid: pid,
        uid: 1000,
        ktime_ns: t,
    }
}

fn correlator(host: FakeHost) -> Correlator<FakeHost> {
    let mut c = Correlator::new("db1".into(), Clock::with_offset(0), host);
    c.add_postmaster(POSTMASTER, Some(5432), Some("/run/pg/.s.PGSQL.5432".into()));
    c
}

fn tcp(port: u16) -> SockAddr {
    SockAddr::Tcp {
        ip: "127.0.0.1".parse().unwrap(),
        port,
    }
}

fn unix() -> SockAddr {
    SockAddr::Unix {
        path: "/run/pg/.s.PGSQL.5432".into(),
    }
}

fn statement(pid: u32, t: u64, sql: &[u8]) -> KernelEvent {
    KernelEvent::Statement {
        origin: origin(pid, t),
        message: b'Q',
        text: sql.to_vec(),
        truncated: false,
        full_len: sql.len() as u32,
        len_is_lower_bound: false,
    }
}

/// Plays a whole server-side session: accept, fork, login, app name, ready.
fn open(c: &mut Correlator<FakeHost>, backend: u32, fd: i32, peer: SockAddr, t: u64) -> Event {
    assert!(
        c.handle(KernelEvent::Accept {
            origin: origin(POSTMASTER, t),
            fd,
            peer
        })
        .is_none()
    );
    assert!(
        c.handle(KernelEvent::Fork {
            origin: origin(POSTMASTER, t + 1),
            child: backend
        })
        .is_none()
    );
    assert!(
        c.handle(KernelEvent::Login {
            origin: origin(backend, t + 2),
            database: "shop".into(),
            user: "alice".into(),
        })
        .is_none()
    );
    c.handle(KernelEvent::AppName {
        origin: origin(backend, t + 3),
        name: "report".into(),
    });
    c.handle(KernelEvent::Ready {
        origin: origin(backend, t + 4),
    })
    .expect("session_start")
}

#[test]
fn loopback_tcp_client_is_identified_by_its_port() {
    let mut host = FakeHost::default();
    host.exes.insert(500, "/usr/bin/python3");
    host.local_ports.insert((500, 3), 40000);
    let mut c = correlator(host);
    c.handle(KernelEvent::Connect {
        origin: origin(500, 1),
        gid: 1000,
        fd: 3,
        cgroup_id: 9,
        comm: "python3".into(),
        server: tcp(5432),
    });
    let start = open(&mut c, 200, 7, tcp(40000), 10);
    assert_eq!(start.kind, Some(EventType::SessionStart));
    let client = start.client.as_ref().unwrap();
    assert_eq!(client.pid, Some(500));
    assert_eq!(client.exe.as_deref(), Some("/usr/bin/python3"));
    assert_eq!(client.port, Some(40000));
    assert_eq!(client.identified_by.as_deref(), Some("socket_tuple"));
    assert_eq!(start.db_user.as_deref(), Some("alice"));
    assert_eq!(start.application_name.as_deref(), Some("report"));

    let stmt = c.handle(statement(200, 20, b"DELETE FROM t")).unwrap();
    assert_eq!(stmt.session_id, start.session_id);
    assert_eq!(stmt.sql.as_deref(), Some("DELETE FROM t"));
    assert_eq!(stmt.client.unwrap().pid, Some(500));
}

#[test]
fn a_client_on_another_port_is_not_mistaken_for_this_one() {
    let mut host = FakeHost::default();
    host.local_ports.insert((500, 3), 40001);
    let mut c = correlator(host);
    c.handle(KernelEvent::Connect {
        origin: origin(500, 1),
        gid: 0,
        fd: 3,
        cgroup_id: 0,
        comm: "x".into(),
        server: tcp(5432),
    });
    let start = open(&mut c, 200, 7, tcp(40000), 10);
    let client = start.client.unwrap();
    assert_eq!(client.pid, None);
    assert_eq!(client.identified_by, None);
    assert_eq!(client.addr.as_deref(), Some("127.0.0.1"));
}

#[test]
fn unix_client_is_identified_by_peer_credentials_even_among_many() {
    let mut host = FakeHost::default();
    host.exes.insert(601, "/usr/bin/psql");
    host.exes.insert(602, "/usr/local/bin/agent");
    host.unix_peers.insert((201, 9), (601, 1001, 1001));
    host.unix_peers.insert((202, 9), (602, 1002, 1002));
    let mut c = correlator(host);
    for pid in [601, 602] {
        c.handle(KernelEvent::Connect {
            origin: origin(pid, 1),
            gid: 0,
            fd: 4,
            cgroup_id: 0,
            comm: "c".into(),
            server: unix(),
        });
    }
    let a = open(&mut c, 201, 9, unix(), 10);
    let b = open(&mut c, 202, 9, unix(), 20);
    let (a, b) = (a.client.unwrap(), b.client.unwrap());
    assert_eq!((a.pid, a.uid), (Some(601), Some(1001)));
    assert_eq!((b.pid, b.uid), (Some(602), Some(1002)));
    assert_eq!(b.exe.as_deref(), Some("/usr/local/bin/agent"));
    assert_eq!(a.identified_by.as_deref(), Some("peer_credentials"));
    assert_eq!(a.socket.as_deref(), Some("/run/pg/.s.PGSQL.5432"));
}

#[test]
fn session_end_reports_duration_and_statement_count() {
    let mut c = correlator(FakeHost::default());
    open(&mut c, 200, 7, tcp(40000), 1_000_000);
    c.handle(statement(200, 2_000_000, b"SELECT 1"));
    c.handle(statement(200, 3_000_000, b"SELECT 2"));
    let end = c
        .handle(KernelEvent::Exit {
            origin: origin(200, 5_000_001),
        })
        .unwrap();
    assert_eq!(end.kind, Some(EventType::SessionEnd));
    assert_eq!(end.statements, Some(2));
    assert_eq!(end.authenticated, Some(true));
    assert_eq!(end.duration_ms, Some(4.0));
    assert_eq!(c.session_count(), 0);
    // A statement after the end (a reused pid) is not attributed to the old session.
    let stray = c.handle(statement(200, 6_000_000, b"SELECT 3")).unwrap();
    assert_eq!(stray.session_id, None);
}

#[test]
fn a_failed_login_ends_unauthenticated_and_forks_without_accept_are_not_sessions() {
    let mut c = correlator(FakeHost::default());
    c.handle(KernelEvent::Accept {
        origin: origin(POSTMASTER, 1),
        fd: 7,
        peer: tcp(1),
    });
    c.handle(KernelEvent::Fork {
        origin: origin(POSTMASTER, 2),
        child: 300,
    });
    let end = c
        .handle(KernelEvent::Exit {
            origin: origin(300, 3),
        })
        .unwrap();
    assert_eq!(end.authenticated, Some(false));
    // An autovacuum worker: forked with no pending accept.
    c.handle(KernelEvent::Fork {
        origin: origin(POSTMASTER, 4),
        child: 301,
    });
    assert_eq!(c.session_count(), 0);
    assert!(
        c.handle(KernelEvent::Exit {
            origin: origin(301, 5)
        })
        .is_none()
    );
}

#[test]
fn non_utf8_statements_are_escaped() {
    let mut c = correlator(FakeHost::default());
    open(&mut c, 200, 7, tcp(40000), 1);
    let e = c.handle(statement(200, 9, b"SELECT '\xff'")).unwrap();
    assert_eq!(e.sql.as_deref(), Some("SELECT '\\xff'"));
    assert_eq!(e.sql_escaped, Some(true));
}

#[test]
fn a_tcp_client_gone_before_its_port_was_read_is_the_latest_connect() {
    let mut host = FakeHost::default();
    host.exes.insert(700, "/usr/bin/psql");
    let mut c = correlator(host);
    c.handle(KernelEvent::Connect {
        origin: origin(700, 1),
        gid: 0,
        fd: 3,
        cgroup_id: 0,
        comm: "psql".into(),
        server: tcp(5432),
    });
    let start = open(&mut c, 200, 7, tcp(40000), 10);
    let client = start.client.unwrap();
    assert_eq!(client.pid, Some(700));
    assert_eq!(client.identified_by.as_deref(), Some("latest_connect"));
    // Used once: the next session without a record is not attributed to it.
    let next = open(&mut c, 201, 7, tcp(40001), 20).client.unwrap();
    assert_eq!(next.pid, None);
}

#[test]
fn a_refused_connect_names_the_client_the_target_and_the_cluster() {
    let mut host = FakeHost::default();
    host.exes.insert(77, "/usr/bin/psql");
    let mut c = correlator(host);
    let blocked = |server| KernelEvent::Blocked {
        origin: origin(77, 5),
        gid: 1000,
        cgroup_id: 4242,
        comm: "psql".into(),
        server,
    };
    let e = c.handle(blocked(tcp(5432))).expect("an event");
    assert_eq!(e.kind, Some(EventType::ConnectionBlocked));
    assert_eq!(e.postmaster_pid, Some(POSTMASTER));
    assert_eq!(e.action.as_deref(), Some("refused"));
    assert_eq!(e.session_id, None);
    let client = e.client.expect("client");
    assert_eq!(
        (client.pid, client.uid, client.gid, client.cgroup_id),
        (Some(77), Some(1000), Some(1000), Some(4242))
    );
    assert_eq!(client.comm.as_deref(), Some("psql"));
    assert_eq!(client.exe.as_deref(), Some("/usr/bin/psql"));
    let target = e.target.expect("target");
    assert_eq!(
        (
            target.transport.as_str(),
            target.addr.as_deref(),
            target.port
        ),
        ("tcp", Some("127.0.0.1"), Some(5432))
    );

    let e = c.handle(blocked(unix())).expect("an event");
    assert_eq!(e.postmaster_pid, Some(POSTMASTER));
    let target = e.target.expect("target");
    assert_eq!(target.transport, "unix");
    assert_eq!(target.socket.as_deref(), Some("/run/pg/.s.PGSQL.5432"));

    let e = c.handle(blocked(tcp(6000))).expect("an event");
    assert_eq!(e.postmaster_pid, None, "no watched cluster on port 6000");
    assert_eq!(c.session_count(), 0, "a refused connect is not a session");
}

#[test]
fn a_refused_remote_client_is_named_by_its_address_not_a_process() {
    let mut c = correlator(FakeHost::default());
    let e = c
        .handle(KernelEvent::RemoteBlocked {
            origin: origin(0, 0),
            server: SockAddr::Tcp {
                ip: "192.0.2.1".parse().unwrap(),
                port: 5432,
            },
            peer: SockAddr::Tcp {
                ip: "192.0.2.2".parse().unwrap(),
                port: 40000,
            },
        })
        .expect("an event");
    assert_eq!(e.kind, Some(EventType::ConnectionBlocked));
    assert_eq!(e.postmaster_pid, Some(POSTMASTER));
    assert_eq!(e.action.as_deref(), Some("refused"));
    let client = e.client.expect("client");
    assert_eq!(client.transport, "tcp");
    assert_eq!(
        (client.addr.as_deref(), client.port),
        (Some("192.0.2.2"), Some(40000))
    );
    assert_eq!((client.pid, client.uid, client.comm), (None, None, None));
    let target = e.target.expect("target");
    assert_eq!(
        (target.addr.as_deref(), target.port),
        (Some("192.0.2.1"), Some(5432))
    );
    assert_eq!(
        c.session_count(),
        0,
        "a refused connection is not a session"
    );
}
