//! MariaDB end to end: a real `mariadbd`, the real agent with its BPF programs, and the
//! `mariadb` client over TCP and the unix socket.

use std::time::{Duration, Instant};

use dbward_e2e::agent::{Agent, statements_containing};
use dbward_e2e::mariadb::MariaServer;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn create_app_user(server: &MariaServer) {
    server.admin(
        "CREATE DATABASE shop; CREATE USER app@'127.0.0.1' IDENTIFIED BY 'pw'; \
         GRANT ALL ON shop.* TO app@'127.0.0.1'",
    );
}

#[test]
fn mariadb_statements_are_captured_once_with_their_session_identity() {
    let server = MariaServer::start();
    create_app_user(&server);
    let agent = Agent::start(Some(server.pid), &[]);
    let attached = agent
        .events()
        .into_iter()
        .find(|e| e["type"] == "cluster_attached")
        .expect("cluster_attached");
    assert_eq!(attached["server"], "mariadb", "{attached:#}");
    assert_eq!(
        attached["cluster"]["port"],
        server.port.to_string(),
        "{attached:#}"
    );

    let tcp = server
        .tcp_client("app", "pw", "shop")
        .args([
            "-e",
            "SELECT 'maria-tcp'; CREATE TABLE t (a int); DROP TABLE t",
        ])
        .output()
        .expect("mariadb");
    assert!(
        tcp.status.success(),
        "{}",
        String::from_utf8_lossy(&tcp.stderr)
    );
    server.admin("SELECT 'maria-unix'");
    let concurrent: Vec<_> = (0..10)
        .map(|i| {
            server
                .tcp_client("app", "pw", "shop")
                .args(["-e", &format!("SELECT 'maria-conc-{i}', SLEEP(0.2)")])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("mariadb")
        })
        .collect();
    for mut child in concurrent {
        assert!(child.wait().expect("wait").success());
    }

    let events = agent.wait_events("the MariaDB statements", WAIT, |events| {
        ["maria-tcp", "maria-unix", "DROP TABLE t", "maria-conc-9"]
            .iter()
            .all(|m| !statements_containing(events, m).is_empty())
            && events.iter().filter(|e| e["type"] == "session_end").count() >= 12
    });
    let tcp_stmt = statements_containing(&events, "maria-tcp");
    assert_eq!(tcp_stmt.len(), 1, "{tcp_stmt:#?}");
    let tcp_stmt = tcp_stmt[0];
    assert_eq!(tcp_stmt["server"], "mariadb");
    assert_eq!(tcp_stmt["server_pid"], server.pid);
    assert_eq!(tcp_stmt["db_user"], "app");
    assert_eq!(tcp_stmt["database"], "shop");
    assert_eq!(tcp_stmt["client"]["transport"], "tcp");
    assert_eq!(tcp_stmt["client"]["addr"], "127.0.0.1");
    assert_eq!(tcp_stmt["unmediated"], true);
    assert_eq!(tcp_stmt["protocol"], "simple");
    let session = tcp_stmt["session_id"].as_str().expect("session id");
    let drop = statements_containing(&events, "DROP TABLE t");
    assert_eq!(drop.len(), 1);
    assert_eq!(drop[0]["session_id"], session);
    assert_eq!(drop[0]["class"], "ddl");
    let same_session: Vec<&Value> = events
        .iter()
        .filter(|e| e["session_id"] == session)
        .collect();
    assert_eq!(
        same_session.first().map(|e| &e["type"]),
        Some(&"session_start".into())
    );
    let end = same_session.last().expect("events of the session");
    assert_eq!(end["type"], "session_end", "{same_session:#?}");
    assert_eq!(end["statements"], 3);

    let unix = statements_containing(&events, "maria-unix");
    assert_eq!(unix.len(), 1);
    assert_eq!(unix[0]["db_user"], "root");
    assert_eq!(unix[0]["client"]["transport"], "unix");

    let mut connections = std::collections::HashSet::new();
    for i in 0..10 {
        let found = statements_containing(&events, &format!("maria-conc-{i}'"));
        assert_eq!(found.len(), 1, "maria-conc-{i}: {found:#?}");
        assert!(connections.insert(found[0]["connection_id"].as_u64().expect("connection id")));
    }
}

#[test]
fn a_statement_policy_ends_is_killed_on_the_server_while_others_run_on() {
    let server = MariaServer::start();
    create_app_user(&server);
    // The shipped policy requires approval of DDL by unidentified callers; a MariaDB session
    // cannot be held, so with holds on the agent ends it (fail closed).
    let agent = Agent::start(Some(server.pid), &["--hold-unmediated"]);
    let started = Instant::now();
    let killed = server
        .tcp_client("app", "pw", "shop")
        .args([
            "-e",
            "CREATE TABLE t (a int); SELECT SLEEP(20); SELECT 'maria-after'",
        ])
        .output()
        .expect("mariadb");
    assert!(!killed.status.success(), "the session was not ended");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the session ran on for {:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&killed.stderr);
    assert!(
        stderr.contains("Lost connection") || stderr.contains("2013"),
        "{stderr}"
    );
    // Everyone else is served: a read by root over the socket still works.
    assert_eq!(
        server.admin("SELECT 'maria-still-up'").trim(),
        "maria-still-up"
    );

    let events = agent.wait_events("the decision", WAIT, |events| {
        events.iter().any(|e| e["type"] == "decision")
            && !statements_containing(events, "maria-still-up").is_empty()
    });
    let create = statements_containing(&events, "CREATE TABLE t");
    assert_eq!(create.len(), 1);
    assert_eq!(create[0]["outcome"], "require_approval");
    let decisions: Vec<&Value> = events.iter().filter(|e| e["type"] == "decision").collect();
    assert_eq!(decisions.len(), 1, "{decisions:#?}");
    assert_eq!(decisions[0]["action"], "terminated", "{:#}", decisions[0]);
    assert_eq!(decisions[0]["session_id"], create[0]["session_id"]);
    assert_eq!(decisions[0]["connection_id"], create[0]["connection_id"]);
    assert!(statements_containing(&events, "maria-after").is_empty());
    // The agent's own KILL is recorded, not judged (judging it would end more sessions).
    let kill = statements_containing(&events, "KILL CONNECTION");
    assert_eq!(kill.len(), 1, "{kill:#?}");
    assert_eq!(kill[0]["unmediated"], false);
    assert!(kill[0]["outcome"].is_null(), "{:#}", kill[0]);
    let reads = statements_containing(&events, "maria-still-up");
    assert_eq!(reads[0]["outcome"], "audit");
}

#[test]
fn block_refuses_direct_connections_to_a_mariadb_server_except_allowed_uids() {
    use std::os::unix::process::CommandExt as _;
    let server = MariaServer::start();
    create_app_user(&server);
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("look up nobody")
        .expect("the nobody user exists")
        .uid
        .as_raw();
    let config = format!("[block]\nenabled = true\nallow_uids = [{nobody}]\n");
    let agent = Agent::start_with_config(Some(server.pid), &config, &[]);

    let refused = server
        .tcp_client("app", "pw", "shop")
        .args(["-e", "SELECT 'maria-refused'"])
        .output()
        .expect("mariadb");
    assert!(
        !refused.status.success(),
        "a direct TCP connection was not refused"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("(111") || stderr.contains("refused"),
        "{stderr}"
    );
    let over_socket = std::process::Command::new("mariadb")
        .args(["--no-defaults", "-u", "root", "--socket"])
        .arg(&server.socket)
        .args(["-e", "SELECT 'maria-refused-unix'"])
        .output()
        .expect("mariadb");
    assert!(
        !over_socket.status.success(),
        "a direct unix-socket connection was not refused"
    );

    let allowed = server
        .tcp_client("app", "pw", "shop")
        .args(["-e", "SELECT 'maria-allowed'"])
        .uid(nobody)
        .output()
        .expect("mariadb");
    assert!(
        allowed.status.success(),
        "allowed uid {nobody} refused: {}",
        String::from_utf8_lossy(&allowed.stderr)
    );

    let events = agent.wait_events("the refusals and the allowed statement", WAIT, |events| {
        events
            .iter()
            .filter(|e| e["type"] == "connection_blocked")
            .count()
            >= 2
            && !statements_containing(events, "maria-allowed").is_empty()
    });
    let blocked: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "connection_blocked")
        .collect();
    assert!(
        blocked
            .iter()
            .any(|e| e["target"]["port"] == u64::from(server.port)),
        "{blocked:#?}"
    );
    assert!(
        blocked
            .iter()
            .any(|e| e["target"]["socket"] == server.socket.display().to_string()),
        "{blocked:#?}"
    );
    assert!(statements_containing(&events, "maria-refused").is_empty());
}
