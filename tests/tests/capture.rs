//! Kernel capture end to end: a real PostgreSQL cluster, the real agent with its BPF
//! programs, and real clients (psql over TCP, unix socket and TLS; tokio-postgres with the
//! extended protocol).

use std::process::Command;
use std::time::Duration;

use dbward_e2e::agent::{Agent, dbward_bin, statements_containing};
use dbward_e2e::pg::{Cluster, PG_BIN};

const WAIT: Duration = Duration::from_secs(30);

/// Runs psql and returns its pid, so the client identity can be checked.
fn psql_pid(conninfo: &str, sql: &str) -> u32 {
    let mut child = Command::new(format!("{PG_BIN}/psql"))
        .args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            conninfo,
            "-c",
            sql,
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn psql");
    let pid = child.id();
    let status = child.wait().expect("wait psql");
    assert!(status.success(), "psql -c {sql:?} failed");
    pid
}

async fn connect(conninfo: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {conninfo}: {e}"));
    tokio::spawn(connection);
    client
}

#[test]
fn every_statement_is_captured_once_with_its_session_identity() {
    // Debian's PostgreSQL 15 carries the USDT note, so `auto` finds direct points.
    every_statement_is_captured_once("auto", "direct");
}

#[test]
fn the_classic_statement_points_capture_every_statement_once_too() {
    every_statement_is_captured_once("classic", "classic");
}

/// Runs every kind of client against a cluster watched by an agent with
/// `--statement-points points` (which must attach `attached` points) and checks that each
/// statement is reported exactly once with its identity.
fn every_statement_is_captured_once(points: &str, attached: &str) {
    let cluster = Cluster::start();
    let agent = Agent::start(Some(cluster.pid), &["--statement-points", points]);
    let cluster_event = agent
        .events()
        .into_iter()
        .find(|e| e["type"] == "cluster_attached")
        .expect("cluster_attached");
    assert_eq!(
        cluster_event["cluster"]["statement_points"], attached,
        "{cluster_event:#}"
    );

    let tcp = format!(
        "{} application_name=e2e-tcp",
        cluster.tcp_url("postgres", "postgres")
    );
    let tcp_pid = psql_pid(&tcp, "SELECT 'tcp-marker'");
    let multi_pid = psql_pid(&tcp, "SELECT 'multi-a-marker'; SELECT 'multi-b-marker'");
    let unix = format!(
        "{} application_name=e2e-unix",
        cluster.unix_url("postgres", "postgres")
    );
    let unix_pid = psql_pid(&unix, "SELECT 'unix-marker'");
    // A walsender: a replication command, and SQL on a logical replication connection
    // (which PostgreSQL first offers to the replication grammar).
    let replication = format!(
        "{} replication=database application_name=e2e-walsender",
        cluster.unix_url("postgres", "postgres")
    );
    let identified = cluster.psql(&replication, &["-c", "IDENTIFY_SYSTEM"]);
    assert!(!identified.is_empty(), "IDENTIFY_SYSTEM answered nothing");
    cluster.psql(&replication, &["-c", "SELECT 'walsender-sql-marker'"]);
    let tls = format!(
        "{} sslmode=require application_name=e2e-tls",
        cluster.tcp_url("postgres", "postgres")
    );
    let tls_out = cluster.psql(
        &tls,
        &[
            "-c",
            "SELECT ssl, 'tls-marker' FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ],
    );
    assert!(
        tls_out.starts_with("t|"),
        "the TLS session is not encrypted: {tls_out}"
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let url = format!(
            "{} application_name=e2e-extended",
            cluster.tcp_url("postgres", "postgres")
        );
        let client = connect(&url).await;
        let stmt = client
            .prepare("SELECT $1::int + 1 AS prepared_marker")
            .await
            .expect("prepare");
        for i in 0..100 {
            let row = client.query_one(&stmt, &[&i]).await.expect("execute");
            assert_eq!(row.get::<_, i32>(0), i + 1);
        }
        let mut tasks = Vec::new();
        for i in 0..50 {
            let url = format!(
                "{} application_name=e2e-concurrent-{i}",
                cluster.unix_url("postgres", "postgres")
            );
            tasks.push(tokio::spawn(async move {
                let client = connect(&url).await;
                client
                    .simple_query(&format!("SELECT 'concurrent-marker-{i}'"))
                    .await
                    .expect("concurrent query");
            }));
        }
        for t in tasks {
            t.await.expect("concurrent session");
        }
    });

    let expected: Vec<(String, usize)> = [
        ("tcp-marker".to_owned(), 1),
        ("multi-a-marker".to_owned(), 1),
        ("unix-marker".to_owned(), 1),
        ("tls-marker".to_owned(), 1),
        ("IDENTIFY_SYSTEM".to_owned(), 1),
        ("walsender-sql-marker".to_owned(), 1),
        ("prepared_marker".to_owned(), 100),
    ]
    .into_iter()
    .chain((0..50).map(|i| (format!("'concurrent-marker-{i}'"), 1)))
    .collect();
    agent.wait_events("all statements", WAIT, |events| {
        expected
            .iter()
            .all(|(m, n)| statements_containing(events, m).len() >= *n)
    });
    // Let any duplicate arrive before counting exactly.
    std::thread::sleep(Duration::from_secs(1));
    let events = agent.events();
    for (marker, n) in &expected {
        let found = statements_containing(&events, marker);
        assert_eq!(found.len(), *n, "statement {marker}: {found:#?}");
    }

    let one = |marker: &str| statements_containing(&events, marker)[0].clone();
    let tcp_event = one("tcp-marker");
    assert_eq!(tcp_event["db_user"], "postgres");
    assert_eq!(tcp_event["database"], "postgres");
    assert_eq!(tcp_event["application_name"], "e2e-tcp");
    assert_eq!(tcp_event["protocol"], "simple");
    assert_eq!(tcp_event["client"]["transport"], "tcp");
    assert_eq!(tcp_event["client"]["addr"], "127.0.0.1");
    assert_eq!(tcp_event["client"]["pid"], tcp_pid, "{tcp_event:#}");
    assert_eq!(tcp_event["client"]["uid"], 0);
    assert_eq!(tcp_event["client"]["user"], "root");
    assert!(
        tcp_event["client"]["exe"]
            .as_str()
            .is_some_and(|e| e.ends_with("/psql")),
        "{tcp_event:#}"
    );

    let multi = one("multi-a-marker");
    assert!(
        multi["sql"]
            .as_str()
            .is_some_and(|s| s.contains("multi-b-marker"))
    );
    assert_eq!(multi["client"]["pid"], multi_pid);

    let unix_event = one("unix-marker");
    assert_eq!(unix_event["client"]["transport"], "unix");
    assert_eq!(unix_event["client"]["pid"], unix_pid, "{unix_event:#}");
    assert_eq!(unix_event["application_name"], "e2e-unix");
    assert_eq!(one("tls-marker")["application_name"], "e2e-tls");

    let prepared = statements_containing(&events, "prepared_marker");
    assert!(prepared.iter().all(|e| e["protocol"] == "extended"));
    let me = std::process::id();
    for e in &prepared {
        assert_eq!(e["client"]["pid"], me, "{e:#}");
    }
    let session_ids: std::collections::HashSet<_> =
        prepared.iter().map(|e| e["session_id"].clone()).collect();
    assert_eq!(
        session_ids.len(),
        1,
        "one session ran the prepared statement"
    );

    for i in 0..50 {
        let e = one(&format!("'concurrent-marker-{i}'"));
        assert_eq!(e["application_name"], format!("e2e-concurrent-{i}"));
        assert_eq!(e["client"]["pid"], me);
    }

    let ended = agent.wait_events("session_end of the psql sessions", WAIT, |events| {
        events
            .iter()
            .any(|e| e["type"] == "session_end" && e["client"]["pid"] == tcp_pid)
    });
    let end = ended
        .iter()
        .find(|e| e["type"] == "session_end" && e["client"]["pid"] == tcp_pid)
        .expect("session_end");
    assert_eq!(end["statements"], 1);
    assert_eq!(end["authenticated"], true);
    assert!(end["duration_ms"].as_f64().is_some_and(|d| d > 0.0));
    assert_eq!(end["session_id"], tcp_event["session_id"]);
}

#[test]
fn long_and_non_utf8_statements_are_reported_losslessly() {
    let cluster = Cluster::start();
    cluster.admin("CREATE DATABASE rawbytes ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'");
    let agent = Agent::start(Some(cluster.pid), &[]);

    let long = format!("SELECT length('{}') AS long_marker", "x".repeat(40_000));
    cluster.psql(&cluster.unix_url("postgres", "postgres"), &["-c", &long]);

    let raw: &[u8] = b"SELECT 'caf\xe9 \\ raw_marker'";
    let file = cluster.dir.join("raw.sql");
    std::fs::write(&file, raw).expect("write raw.sql");
    cluster.psql(
        &format!(
            "{} client_encoding=SQL_ASCII",
            cluster.unix_url("postgres", "rawbytes")
        ),
        &["-f", file.to_str().expect("utf-8")],
    );

    let events = agent.wait_events("long and raw statements", WAIT, |events| {
        !statements_containing(events, "SELECT length('xxx").is_empty()
            && !statements_containing(events, "raw_marker").is_empty()
    });
    let long_event = statements_containing(&events, "SELECT length('xxx")[0];
    assert_eq!(long_event["sql_truncated"], true);
    assert_eq!(long_event["sql_length"], long.len());
    let captured = long_event["sql"].as_str().expect("sql");
    assert!(
        captured.len() >= 16 * 1024 - 1,
        "captured {} bytes",
        captured.len()
    );
    assert!(long.starts_with(captured));

    let raw_event = statements_containing(&events, "raw_marker")[0];
    assert_eq!(raw_event["sql_escaped"], true, "{raw_event:#}");
    let text = raw_event["sql"].as_str().expect("sql");
    assert_eq!(dbward_agent::event::unescape_sql(text), raw);
    assert_eq!(raw_event["sql_truncated"], false);
    assert_eq!(raw_event["database"], "rawbytes");
}

#[test]
fn a_binary_named_on_the_command_line_and_run_by_a_cluster_is_probed_once() {
    let cluster = Cluster::start();
    let binary = format!("{PG_BIN}/postgres");
    let agent = Agent::start(Some(cluster.pid), &["--binary", &binary]);
    cluster.psql(
        &cluster.unix_url("postgres", "postgres"),
        &["-c", "SELECT 'one-binary-marker'"],
    );
    agent.wait_events("the statement", WAIT, |events| {
        !statements_containing(events, "one-binary-marker").is_empty()
    });
    // Let a duplicate arrive before counting.
    std::thread::sleep(Duration::from_secs(1));
    let events = agent.events();
    let found = statements_containing(&events, "one-binary-marker");
    assert_eq!(found.len(), 1, "{found:#?}");
}

#[test]
fn a_restarted_server_is_followed_again() {
    let mut cluster = Cluster::start();
    let agent = Agent::start(None, &[]);
    let first_pid = cluster.pid;
    cluster.psql(
        &cluster.tcp_url("postgres", "postgres"),
        &["-c", "SELECT 'before-restart-marker'"],
    );
    cluster.stop_server();
    cluster.start_server();
    assert_ne!(cluster.pid, first_pid);
    agent.wait_events("the restarted cluster", WAIT, |events| {
        events
            .iter()
            .any(|e| e["type"] == "cluster_attached" && e["postmaster_pid"] == cluster.pid)
    });
    cluster.psql(
        &cluster.tcp_url("postgres", "postgres"),
        &["-c", "SELECT 'after-restart-marker'"],
    );
    let events = agent.wait_events("statement after restart", WAIT, |events| {
        !statements_containing(events, "after-restart-marker").is_empty()
    });
    let after = statements_containing(&events, "after-restart-marker");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["postmaster_pid"], cluster.pid);
    assert_eq!(after[0]["db_user"], "postgres");
    assert_eq!(
        statements_containing(&events, "before-restart-marker").len(),
        1
    );
}

#[test]
fn a_restarted_agent_knows_sessions_that_were_already_open() {
    let cluster = Cluster::start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let url = format!(
        "{} application_name=e2e-long-lived",
        cluster.tcp_url("postgres", "postgres")
    );
    let client = runtime.block_on(connect(&url));
    let backend: i32 = runtime
        .block_on(client.query_one("SELECT pg_backend_pid()", &[]))
        .expect("backend pid")
        .get(0);

    let first = Agent::start(Some(cluster.pid), &[]);
    runtime
        .block_on(client.simple_query("SELECT 'first-agent-marker'"))
        .expect("query");
    first.wait_events("first agent statement", WAIT, |e| {
        !statements_containing(e, "first-agent-marker").is_empty()
    });
    first.kill();

    let second = Agent::start(Some(cluster.pid), &[]);
    let events = second.wait_events("existing session", WAIT, |events| {
        events
            .iter()
            .any(|e| e["type"] == "session_start" && e["backend_pid"] == backend)
    });
    let start = events
        .iter()
        .find(|e| e["type"] == "session_start" && e["backend_pid"] == backend)
        .expect("session_start");
    assert_eq!(start["discovered"], true);
    assert_eq!(start["db_user"], "postgres");
    assert_eq!(start["database"], "postgres");
    runtime
        .block_on(client.simple_query("SELECT 'second-agent-marker'"))
        .expect("query");
    let events = second.wait_events("statement on the old session", WAIT, |e| {
        !statements_containing(e, "second-agent-marker").is_empty()
    });
    let stmt = statements_containing(&events, "second-agent-marker")[0];
    assert_eq!(stmt["backend_pid"], backend);
    assert_eq!(stmt["session_id"], start["session_id"]);
    assert!(
        statements_containing(&events, "first-agent-marker").is_empty(),
        "stale events replayed"
    );
}

#[test]
fn an_agent_without_bpf_privileges_fails_naming_them() {
    dbward_e2e::require_root();
    let dir = tempfile::tempdir().expect("temp dir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let run_as_nobody = |config: &str| {
        Command::new("runuser")
            .args(["-u", "nobody", "--"])
            .arg(dbward_bin())
            .args(["run", "--config", config, "--socket"])
            .arg(dir.path().join("s.sock"))
            .arg("--policy")
            .arg(dbward_e2e::agent::shipped_policies())
            .arg("--audit-dir")
            .arg(dir.path().join("audit"))
            .output()
            .expect("run dbward as nobody")
    };
    let out = run_as_nobody("/nonexistent/agent.toml");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/agent.toml"), "{stderr}");
    let out = run_as_nobody("/dev/null");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("privileges") && stderr.contains("CAP_BPF"),
        "{stderr}"
    );
}
