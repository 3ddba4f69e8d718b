//! The whole loop on one host: `dbward run` with the shipped policies, the socket shim in
//! front of a real cluster, the kernel capture beside it, and the audit trail behind both.

use std::process::Command;
use std::time::Duration;

use dbward_e2e::agent::{Agent, assert_audit_verifies, audit_records, dbward_bin};
use dbward_e2e::free_port;
use dbward_e2e::pg::{Cluster, PG_BIN};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn psql(port: u16, app: &str, sql: &str) -> (bool, String) {
    let out = Command::new(format!("{PG_BIN}/psql"))
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!(
            "host=127.0.0.1 port={port} user=postgres dbname=postgres application_name={app}"
        ))
        .args(["-c", sql])
        .output()
        .expect("run psql");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn find<'a>(events: &'a [Value], kind: &str, source: &str, marker: &str) -> Option<&'a Value> {
    events.iter().find(|e| {
        e["type"] == kind
            && e["source"] == source
            && e["sql"].as_str().is_some_and(|s| s.contains(marker))
    })
}

#[test]
fn policy_decides_through_the_shim_and_unmediated_sessions_are_judged_and_audited() {
    let cluster = Cluster::start();
    cluster.admin("CREATE TABLE customers(id int, email text); INSERT INTO customers VALUES (1, 'a@example.com')");
    let shim_port = free_port();
    let config = format!(
        "[shim]\nlisten_tcp = [\"127.0.0.1:{shim_port}\"]\nupstream = \"127.0.0.1:{}\"\n",
        cluster.port
    );
    let agent = Agent::start_with_config(Some(cluster.pid), &config, &[]);

    // Through the shim: a human-looking read is allowed and returns the data.
    let (ok, out) = psql(
        shim_port,
        "psql",
        "SELECT email AS read_marker FROM customers",
    );
    assert!(ok && out.contains("a@example.com"), "{out}");
    // COPY … TO PROGRAM is denied for everyone, with the rule's message and SQLSTATE 42501.
    let (ok, out) = psql(
        shim_port,
        "claude-code",
        "COPY customers TO PROGRAM 'cat > /tmp/x'",
    );
    assert!(
        !ok && out.contains("COPY … PROGRAM is not allowed"),
        "{out}"
    );
    // Bypassing the shim: the statement runs, and the agent records what policy says of it.
    let (ok, out) = psql(
        cluster.port,
        "claude-code",
        "CREATE TABLE bypass_marker(x int)",
    );
    assert!(ok, "{out}");

    let events = agent.wait_events("shim and kernel statements", WAIT, |events| {
        find(events, "statement", "shim", "read_marker").is_some()
            && find(events, "statement", "shim", "TO PROGRAM").is_some()
            && find(events, "statement", "kernel", "bypass_marker").is_some()
    });
    let read = find(&events, "statement", "shim", "read_marker").unwrap();
    assert_eq!(read["action"], "forwarded");
    assert_eq!(read["rows"], 1, "{read:#}");
    let denied = find(&events, "statement", "shim", "TO PROGRAM").unwrap();
    assert_eq!(denied["outcome"], "deny");
    assert_eq!(denied["rule"], "deny-copy-program");
    assert_eq!(denied["action"], "denied");
    // The denied statement never reached the server: the kernel saw no such statement.
    assert!(find(&events, "statement", "kernel", "TO PROGRAM").is_none());
    // The shim knows which local process is behind a loopback TCP session (from the
    // kernel's connect record): psql, run by this (root) test.
    let shim_start = events
        .iter()
        .find(|e| {
            e["type"] == "session_start" && e["source"] == "shim" && e["application_name"] == "psql"
        })
        .expect("the shim's session start");
    let client = &shim_start["client"];
    assert_eq!(client["transport"], "tcp", "{shim_start:#}");
    assert!(
        client["exe"].as_str().is_some_and(|e| e.ends_with("/psql")),
        "{shim_start:#}"
    );
    assert_eq!(client["uid"], 0, "{shim_start:#}");
    assert!(
        client["pid"].as_u64().is_some_and(|p| p > 0),
        "{shim_start:#}"
    );
    // The shim's own upstream session is mediated.
    let mediated =
        find(&events, "statement", "kernel", "read_marker").expect("kernel saw the read");
    assert_eq!(mediated["unmediated"], false);
    let bypass = find(&events, "statement", "kernel", "bypass_marker").unwrap();
    assert_eq!(bypass["unmediated"], true);
    assert_eq!(bypass["outcome"], "require_approval");
    assert_eq!(bypass["rule"], "ai-ddl-needs-approval");
    assert_eq!(bypass["principal"], "claude-code");
    assert_eq!(bypass["principal_kind"], "ai_agent");
    assert_eq!(bypass["action"], "recorded");

    // SREs: `dbward status` and `dbward tail` talk to the running agent.
    let out = Command::new(dbward_bin())
        .args(["status", "--json", "--socket"])
        .arg(&agent.socket)
        .output()
        .expect("dbward status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
    assert!(
        status["clusters"][cluster.pid.to_string()].is_string(),
        "{status:#}"
    );
    assert_eq!(
        status["policy_sha256"].as_str().map(str::len),
        Some(64),
        "{status:#}"
    );
    let mut tail = Command::new(dbward_bin())
        .args(["tail", "--json", "--class", "ddl", "--socket"])
        .arg(&agent.socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dbward tail");
    std::thread::sleep(Duration::from_millis(500));
    let (ok, out) = psql(
        cluster.port,
        "claude-code",
        "SELECT 'not ddl'; CREATE TABLE tail_marker(x int)",
    );
    assert!(ok, "{out}");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(tail.stdout.take().expect("tail stdout")),
        &mut line,
    )
    .expect("read tail");
    let _ = tail.kill();
    let _ = tail.wait();
    let tailed: Value = serde_json::from_str(&line).expect("tail line is JSON");
    assert!(
        tailed["sql"]
            .as_str()
            .is_some_and(|s| s.contains("tail_marker")),
        "{tailed:#}"
    );
    assert_eq!(tailed["class"], "ddl");

    // The audit trail holds the same story and verifies.
    let mut agent = agent;
    let audit_dir = agent.audit_dir();
    agent.stop_cleanly();
    assert_audit_verifies(&audit_dir);
    let records = audit_records(&audit_dir);
    let denied = records
        .iter()
        .find(|r| {
            r["type"] == "statement"
                && r["statement"]
                    .as_str()
                    .is_some_and(|s| s.contains("TO PROGRAM"))
        })
        .expect("denied statement audited");
    assert_eq!(denied["outcome"], "deny");
    assert!(records.iter().any(|r| r["type"] == "agent_start"));
    assert!(records.iter().any(|r| r["type"] == "agent_stop"));
    assert!(records.iter().any(|r| {
        r["type"] == "statement"
            && r["statement"]
                .as_str()
                .is_some_and(|s| s.contains("bypass_marker"))
            && r["unmediated"] == true
    }));
}
