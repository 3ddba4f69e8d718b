//! Holding in the kernel: `dbward run --hold-unmediated` stops a session that bypasses the
//! shim before a risky statement is parsed, asks an approver, and resumes, neutralises or
//! terminates the backend. Real cluster, real psql clients, real `dbward approvals`.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use dbward_e2e::agent::{Agent, dbward_bin};
use dbward_e2e::metrics::{scrape, value};
use dbward_e2e::pg::{Cluster, PG_BIN};
use dbward_e2e::{free_port, wait_for};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

const POLICY: &str = r#"
identities:
  - name: hold-bot
    kind: ai_agent
    match:
      application_name: hold-bot
  - name: dba
    kind: human
    match:
      application_name: dba-console
rules:
  - name: bot-ddl-needs-approval
    match:
      kind: ai_agent
      class: ddl
    outcome:
      require_approval:
        approvers: [root]
        timeout: 120s
    unmediated: hold
  - name: bot-deletes-need-approval
    match:
      kind: ai_agent
      class: delete
    outcome:
      require_approval:
        approvers: [root]
        timeout: 120s
    unmediated: hold
  - name: bot-privilege-ends-the-session
    match:
      kind: ai_agent
      class: privilege
    outcome:
      deny:
        message: no grants from bots
    unmediated: terminate
"#;

/// A policy directory with [`POLICY`].
fn policy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("policy dir");
    std::fs::write(dir.path().join("10-hold.yaml"), POLICY).expect("write policy");
    dir
}

fn start_agent(cluster: &Cluster, policy: &Path, state: &Path) -> Agent {
    start_agent_with_config(cluster, "", policy, state)
}

fn start_agent_with_config(cluster: &Cluster, config: &str, policy: &Path, state: &Path) -> Agent {
    start_agent_with_points(cluster, config, policy, state, "auto")
}

/// [`start_agent_with_config`] with `--statement-points points`.
fn start_agent_with_points(
    cluster: &Cluster,
    config: &str,
    policy: &Path,
    state: &Path,
    points: &str,
) -> Agent {
    let state = state.display().to_string();
    Agent::start_with_policy(
        Some(cluster.pid),
        config,
        policy,
        &[
            "--hold-unmediated",
            "--held-state",
            &state,
            "--statement-points",
            points,
        ],
    )
}

/// `psql` as the OS user `postgres` (not root: root approves), straight to the server.
fn spawn_psql(cluster: &Cluster, sql: &str) -> Child {
    spawn_psql_to(cluster.port, sql)
}

/// `psql` as the OS user `postgres` to `port` on 127.0.0.1 with `-c sql`.
fn spawn_psql_to(port: u16, sql: &str) -> Child {
    psql_command(port, "hold-bot")
        .args(["-c", sql])
        .spawn()
        .expect("spawn psql")
}

/// `psql` as the OS user `postgres` (not root: root approves) to `port` on 127.0.0.1 as
/// `application_name`, output captured.
fn psql_command(port: u16, application_name: &str) -> Command {
    let mut command = as_postgres(&format!("{PG_BIN}/psql"));
    command
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(conninfo(port, application_name));
    command
}

/// `program` run as the OS user `postgres` (not root: root approves), output captured.
fn as_postgres(program: &str) -> Command {
    use std::os::unix::process::CommandExt as _;
    let user = nix::unistd::User::from_name("postgres")
        .expect("look up the postgres user")
        .expect("the postgres OS user exists");
    let mut command = Command::new(program);
    command
        .uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .current_dir("/")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A libpq connection string to `port` on 127.0.0.1 as `application_name`.
fn conninfo(port: u16, application_name: &str) -> String {
    format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres application_name={application_name}"
    )
}

fn finish(child: Child, within: Duration) -> (bool, String) {
    let pid = child.id();
    let done = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.0.send(child.wait_with_output());
    });
    let out: Output = done
        .1
        .recv_timeout(within)
        .unwrap_or_else(|_| panic!("psql {pid} did not finish within {within:?}"))
        .expect("psql output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn hold_event(agent: &Agent, marker: &str) -> Value {
    let events = agent.wait_events(&format!("a hold event for {marker}"), WAIT, |events| {
        events.iter().any(|e| is_hold(e, marker))
    });
    events.into_iter().find(|e| is_hold(e, marker)).unwrap()
}

/// Every hold event so far of the statement naming `marker`, once there are `count`.
fn hold_events(agent: &Agent, marker: &str, count: usize) -> Vec<Value> {
    let events = agent.wait_events(
        &format!("{count} hold events for {marker}"),
        WAIT,
        |events| events.iter().filter(|e| is_hold(e, marker)).count() >= count,
    );
    events.into_iter().filter(|e| is_hold(e, marker)).collect()
}

fn is_hold(e: &Value, marker: &str) -> bool {
    e["type"] == "hold" && e["sql"].as_str().is_some_and(|s| s.contains(marker))
}

/// The `decision` event of request `id`, once the agent has published it.
fn decision_event(agent: &Agent, id: &str) -> Value {
    let is_it = |e: &Value| e["type"] == "decision" && e["request_id"] == id;
    let events = agent.wait_events(&format!("the decision of {id}"), WAIT, |events| {
        events.iter().any(is_it)
    });
    events.into_iter().find(is_it).unwrap()
}

/// The process state letter of `pid` (`T` = stopped), or `None` once it is gone.
fn proc_state(pid: u64) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

fn approvals(agent: &Agent, verb: &str, id: &str, extra: &[&str]) -> String {
    let out = Command::new(dbward_bin())
        .args(["approvals", verb, id, "--socket"])
        .arg(&agent.socket)
        .args(extra)
        .output()
        .expect("run dbward approvals");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dbward approvals {verb} {id}: {text}");
    text
}

/// The held `DROP TABLE <table>` of `client` (backend `pid`) was ended without running:
/// the client got the FATAL, the table is still there, the backend is gone.
fn assert_ended_without_running(cluster: &Cluster, client: Child, pid: u64, table: &str) {
    let (ok, out) = finish(client, WAIT);
    assert!(!ok, "DROP held across an agent crash succeeded: {out}");
    assert!(
        out.contains("terminating connection due to administrator command"),
        "{out}"
    );
    assert!(table_exists(cluster, table), "DROP TABLE {table} ran");
    assert!(
        wait_for(WAIT, || proc_state(pid).is_none().then_some(())).is_some(),
        "backend {pid} still exists"
    );
}

fn table_exists(cluster: &Cluster, table: &str) -> bool {
    cluster
        .admin(&format!("SELECT to_regclass('{table}') IS NOT NULL"))
        .trim()
        == "t"
}

/// Waits for the hold of the statement naming `marker`, checks its backend is stopped and
/// denies it with `reason`; the hold event.
fn deny_hold(agent: &Agent, marker: &str, reason: &str) -> Value {
    let hold = hold_event(agent, marker);
    stopped_backend(&hold);
    let id = hold["request_id"].as_str().expect("request_id");
    approvals(agent, "deny", id, &["--reason", reason]);
    hold
}

/// The held backend's pid, after checking the kernel really stopped it.
fn stopped_backend(hold: &Value) -> u64 {
    let pid = hold["backend_pid"]
        .as_u64()
        .expect("hold event has backend_pid");
    assert_eq!(
        proc_state(pid),
        Some('T'),
        "backend {pid} is not stopped while held"
    );
    pid
}

#[test]
fn approved_statement_runs_after_the_hold() {
    let cluster = Cluster::start();
    cluster.admin("CREATE TABLE held_approve(x int)");
    let policy = policy_dir();
    let state = tempfile::tempdir().expect("state dir");
    let agent = start_agent(&cluster, policy.path(), &state.path().join("held.json"));

    let client = spawn_psql(&cluster, "DROP TABLE held_approve");
    let hold = hold_event(&agent, "held_approve");
    stopped_backend(&hold);
    assert!(table_exists(&cluster, "held_approve"), "dropped while held");
    let id = hold["request_id"].as_str().expect("request_id");
    approvals(&agent, "approve", id, &[]);

    let (ok, out) = finish(client, WAIT);
    assert!(ok, "approved DROP failed: {out}");
    assert!(!table_exists(&cluster, "held_approve"));
    assert_eq!(decision_event(&agent, id)["outcome"], "approved");
}

#[test]
fn denied_statement_never_runs_and_the_session_ends() {
    denied_drop_never_runs("auto");
}

#[test]
fn denied_statement_never_runs_with_the_classic_statement_points() {
    denied_drop_never_runs("classic");
}

/// A held `DROP TABLE` (a `Query`) is denied under `--statement-points points`: it never
/// runs and the session ends.
fn denied_drop_never_runs(points: &str) {
    let cluster = Cluster::start();
    cluster.admin("CREATE TABLE held_deny(x int)");
    let policy = policy_dir();
    let state = tempfile::tempdir().expect("state dir");
    let agent = start_agent_with_points(
        &cluster,
        "",
        policy.path(),
        &state.path().join("held.json"),
        points,
    );

    let client = spawn_psql(&cluster, "DROP TABLE held_deny");
    let hold = deny_hold(&agent, "held_deny", "not during business hours");
    let id = hold["request_id"].as_str().expect("request_id");

    let (ok, out) = finish(client, WAIT);
    assert!(!ok, "denied DROP succeeded: {out}");
    assert!(
        out.contains("terminating connection due to administrator command"),
        "{out}"
    );
    assert!(table_exists(&cluster, "held_deny"), "denied DROP ran");
    let decision = decision_event(&agent, id);
    assert_eq!(decision["outcome"], "denied");
    assert_eq!(decision["action"], "terminated");
}

#[test]
fn a_backend_held_when_the_agent_dies_is_ended_by_the_next_agent_without_running() {
    let cluster = Cluster::start();
    cluster.admin("CREATE TABLE held_crash(x int)");
    let policy = policy_dir();
    let state_dir = tempfile::tempdir().expect("state dir");
    let state = state_dir.path().join("held.json");
    let agent = start_agent(&cluster, policy.path(), &state);

    let client = spawn_psql(&cluster, "DROP TABLE held_crash");
    let pid = stopped_backend(&hold_event(&agent, "held_crash"));
    agent.kill();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        proc_state(pid),
        Some('T'),
        "backend {pid} should stay stopped while no agent runs"
    );

    let _next = start_agent(&cluster, policy.path(), &state);
    assert_ended_without_running(&cluster, client, pid, "held_crash");
}

#[test]
fn unflagged_statements_are_never_stopped() {
    let cluster = Cluster::start();
    cluster.admin("CREATE TABLE held_read(x int); INSERT INTO held_read VALUES (7)");
    let policy = policy_dir();
    let state = tempfile::tempdir().expect("state dir");
    let agent = start_agent(&cluster, policy.path(), &state.path().join("held.json"));

    let client = spawn_psql(&cluster, "SELECT x AS read_marker FROM held_read");
    let (ok, out) = finish(client, Duration::from_secs(10));
    assert!(ok && out.contains('7'), "{out}");
    let events = agent.wait_events("the read's statement event", WAIT, |events| {
        events.iter().any(|e| {
            e["type"] == "statement" && e["sql"].as_str().is_some_and(|s| s.contains("read_marker"))
        })
    });
    assert!(
        !events.iter().any(|e| is_hold(e, "read_marker")),
        "a SELECT was held"
    );
}

#[test]
fn a_held_backend_whose_client_disconnects_is_ended_without_running() {
    let cluster = Cluster::start();
    cluster.admin("CREATE TABLE held_gone(x int)");
    let policy = policy_dir();
    let state = tempfile::tempdir().expect("state dir");
    let agent = start_agent(&cluster, policy.path(), &state.path().join("held.json"));

    let mut client = spawn_psql(&cluster, "DROP TABLE held_gone");
    let hold = hold_event(&agent, "held_gone");
    let pid = stopped_backend(&hold);
    let id = hold["request_id"].as_str().expect("request_id");
    client.kill().expect("kill psql");
    let _ = client.wait();

    let decision = decision_event(&agent, id);
    assert_eq!(decision["outcome"], "cancelled", "{decision}");
    assert!(
        wait_for(WAIT, || proc_state(pid).is_none().then_some(())).is_some(),
        "backend {pid} still exists"
    );
    assert!(
        table_exists(&cluster, "held_gone"),
        "DROP ran after the client left"
    );
}

#[test]
fn a_terminate_rule_ends_the_session_before_the_statement_runs() {
    let cluster = Cluster::start();
    cluster.admin("CREATE TABLE held_grant(x int)");
    let policy = policy_dir();
    let state = tempfile::tempdir().expect("state dir");
    let agent = start_agent(&cluster, policy.path(), &state.path().join("held.json"));

    // The kernel's pre-screen skips comments and ignores case.
    let client = spawn_psql(
        &cluster,
        "/* from the bot */ -- a note\n  grant select on held_grant to public",
    );
    let (ok, out) = finish(client, WAIT);
    assert!(!ok, "terminated GRANT succeeded: {out}");
    assert!(
        out.contains("terminating connection due to administrator command"),
        "{out}"
    );
    let acl = cluster.admin("SELECT relacl IS NULL FROM pg_class WHERE relname = 'held_grant'");
    assert_eq!(acl.trim(), "t", "the GRANT ran");
    let events = agent.wait_events("the termination", WAIT, |events| {
        events
            .iter()
            .any(|e| e["type"] == "decision" && e["action"] == "terminated")
    });
    let decision = events
        .iter()
        .find(|e| e["type"] == "decision" && e["action"] == "terminated")
        .unwrap();
    assert_eq!(decision["outcome"], "deny");
    assert_eq!(decision["rule"], "bot-privilege-ends-the-session");
}

#[test]
fn statements_through_the_shim_are_decided_by_the_shim_not_stopped_in_the_kernel() {
    let cluster = Cluster::start();
    let policy = policy_dir();
    let state = tempfile::tempdir().expect("state dir");
    let shim_port = dbward_e2e::free_port();
    let config = format!(
        "[shim]\nlisten_tcp = [\"127.0.0.1:{shim_port}\"]\nupstream = \"127.0.0.1:{}\"\n",
        cluster.port
    );
    let agent = start_agent_with_config(
        &cluster,
        &config,
        policy.path(),
        &state.path().join("held.json"),
    );

    let client = spawn_psql_to(shim_port, "CREATE TABLE via_shim(x int)");
    let hold = hold_event(&agent, "via_shim");
    assert_eq!(hold["source"], "shim", "{hold}");
    let id = hold["request_id"].as_str().expect("request_id");
    approvals(&agent, "approve", id, &[]);
    let (ok, out) = finish(client, WAIT);
    assert!(ok, "approved CREATE through the shim failed: {out}");
    assert!(table_exists(&cluster, "via_shim"));
    assert!(
        !agent
            .events()
            .iter()
            .any(|e| e["type"] == "hold" && e["source"] == "kernel"),
        "the shim's upstream session was held in the kernel"
    );
}

#[test]
fn stopping_the_agent_ends_held_backends_without_running_their_statements() {
    let cluster = Cluster::start();
    cluster.admin("CREATE TABLE held_stop(x int)");
    let policy = policy_dir();
    let state = tempfile::tempdir().expect("state dir");
    let mut agent = start_agent(&cluster, policy.path(), &state.path().join("held.json"));

    let client = spawn_psql(&cluster, "DROP TABLE held_stop");
    let hold = hold_event(&agent, "held_stop");
    stopped_backend(&hold);
    agent.stop_cleanly();
    agent.wait_events(
        "the decision for the backend ended at shutdown",
        WAIT,
        |events| {
            events.iter().any(|e| {
                e["type"] == "decision"
                    && e["request_id"] == hold["request_id"]
                    && e["outcome"] == "cancelled"
                    && e["action"] == "terminated"
            })
        },
    );

    let (ok, out) = finish(client, WAIT);
    assert!(!ok, "DROP held at agent shutdown succeeded: {out}");
    assert!(
        out.contains("terminating connection due to administrator command"),
        "{out}"
    );
    assert!(
        table_exists(&cluster, "held_stop"),
        "DROP ran at agent shutdown"
    );
}

#[test]
fn dbward_held_resume_ends_a_backend_a_killed_agent_left_stopped() {
    let cluster = Cluster::start();
    cluster.admin("CREATE TABLE held_stop_post(x int)");
    let policy = policy_dir();
    let state_dir = tempfile::tempdir().expect("state dir");
    let state = state_dir.path().join("held.json");
    let agent = start_agent(&cluster, policy.path(), &state);
    let socket = agent.socket.clone();

    let client = spawn_psql(&cluster, "DROP TABLE held_stop_post");
    let pid = stopped_backend(&hold_event(&agent, "held_stop_post"));
    agent.kill();
    assert_eq!(
        proc_state(pid),
        Some('T'),
        "backend {pid} should stay stopped while no agent runs"
    );

    // What the unit's ExecStopPost= runs after the agent died.
    let out = Command::new(dbward_bin())
        .args(["held", "resume", "--state"])
        .arg(&state)
        .arg("--socket")
        .arg(&socket)
        .output()
        .expect("run dbward held resume");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("ended 1 held backend"),
        "dbward held resume: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ended_without_running(&cluster, client, pid, "held_stop_post");
    assert_eq!(
        std::fs::read_to_string(&state).expect("state file").trim(),
        "[]",
        "the state file still lists ended backends"
    );
}

/// Statements whose first keyword looks harmless but that PostgreSQL runs as DDL: the
/// kernel must stop each (it lets only *plain* statements pass), and denying it keeps the
/// table as it was.
#[test]
fn statements_that_hide_ddl_behind_a_harmless_start_are_stopped() {
    let cluster = Cluster::start();
    cluster.admin(
        "CREATE TABLE held_multi(x int); CREATE TABLE held_nested(x int); \
         CREATE TABLE held_long(x int); CREATE TABLE held_src(x int)",
    );
    let policy = policy_dir();
    let state = tempfile::tempdir().expect("state dir");
    let agent = start_agent(&cluster, policy.path(), &state.path().join("held.json"));

    let long_comment = format!("/* {} */ DROP TABLE held_long", "x".repeat(600));
    let attempts: [(&str, &str, bool); 4] = [
        // A second statement after a SELECT in one Query message.
        ("SELECT 1; DROP TABLE held_multi", "held_multi", true),
        // PostgreSQL nests block comments: this comment ends at the second `*/`.
        (
            "/* a /* b */ SELECT 1 */ DROP TABLE held_nested",
            "held_nested",
            true,
        ),
        // A leading comment longer than anything the kernel reads ahead.
        (&long_comment, "held_long", true),
        // SELECT … INTO creates a table.
        (
            "SELECT x INTO held_into_new FROM held_src",
            "held_into_new",
            false,
        ),
    ];
    for (sql, table, existed) in attempts {
        let client = spawn_psql(&cluster, sql);
        deny_hold(&agent, table, "hidden DDL");
        let (ok, out) = finish(client, WAIT);
        assert!(!ok, "denied {sql:?} succeeded: {out}");
        assert_eq!(
            table_exists(&cluster, table),
            existed,
            "{sql:?} changed {table}"
        );
    }
}

/// A psql session that reads its statements from stdin, one at a time.
struct Session {
    child: Child,
    stdin: std::process::ChildStdin,
}

impl Session {
    fn open(cluster: &Cluster, application_name: &str) -> Self {
        let mut child = psql_command(cluster.port, application_name)
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn psql");
        let stdin = child.stdin.take().expect("psql stdin");
        Session { child, stdin }
    }

    fn send(&mut self, sql: &str) {
        use std::io::Write as _;
        writeln!(self.stdin, "{sql};").expect("write to psql");
        self.stdin.flush().expect("flush psql stdin");
    }

    /// Ends the input and waits for psql: whether it succeeded.
    fn finish(self) -> bool {
        drop(self.stdin);
        let out = self.child.wait_with_output().expect("psql output");
        out.status.success()
    }
}

/// Holds follow policy reloads: a session opened while the policy stopped nothing is
/// stopped once a reloaded policy holds DDL, without reconnecting.
#[test]
fn a_reloaded_policy_that_holds_ddl_applies_to_open_sessions() {
    let cluster = Cluster::start();
    cluster.admin("CREATE TABLE held_reload(x int)");
    let policy = tempfile::tempdir().expect("policy dir");
    let file = policy.path().join("10-hold.yaml");
    std::fs::write(&file, "rules: []\n").expect("write policy");
    let state = tempfile::tempdir().expect("state dir");
    let agent = start_agent(&cluster, policy.path(), &state.path().join("held.json"));

    let mut session = Session::open(&cluster, "hold-bot");
    session.send("SELECT 'reload_marker_before'");
    agent.wait_events("the session's first statement", WAIT, |events| {
        events.iter().any(|e| {
            e["type"] == "statement"
                && e["sql"]
                    .as_str()
                    .is_some_and(|s| s.contains("reload_marker_before"))
        })
    });

    std::fs::write(&file, POLICY).expect("write the holding policy");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP the agent");
    agent.wait_events("the policy reload", WAIT, |events| {
        events
            .iter()
            .any(|e| e["type"] == "policy_reload" && e["outcome"] == "loaded")
    });

    session.send("DROP TABLE held_reload");
    deny_hold(&agent, "held_reload", "after the reload");
    assert!(!session.finish(), "denied DROP succeeded");
    assert!(table_exists(&cluster, "held_reload"), "denied DROP ran");
}

/// A session is judged by its principal: a human's DROP runs without a stop (no rule holds
/// humans), and once the same session calls itself `hold-bot` its next DROP is held (the
/// kernel falls back to the default mask the moment the name changes).
#[test]
fn a_session_that_changes_its_application_name_is_judged_again() {
    let cluster = Cluster::start();
    cluster.admin("CREATE TABLE held_human(x int); CREATE TABLE held_renamed(x int)");
    let policy = policy_dir();
    let state = tempfile::tempdir().expect("state dir");
    let agent = start_agent(&cluster, policy.path(), &state.path().join("held.json"));

    let mut session = Session::open(&cluster, "dba-console");
    session.send("DROP TABLE held_human");
    wait_for(WAIT, || {
        (!table_exists(&cluster, "held_human")).then_some(())
    })
    .expect("a human's DROP did not run");
    session.send("SET application_name = 'hold-bot'");
    session.send("DROP TABLE held_renamed");
    let hold = deny_hold(&agent, "held_renamed", "renamed");
    assert_eq!(hold["principal"], "hold-bot", "{hold}");
    assert!(!session.finish(), "denied DROP succeeded");
    assert!(table_exists(&cluster, "held_renamed"), "denied DROP ran");
    assert!(
        !agent.events().iter().any(|e| is_hold(e, "held_human")),
        "a human's DROP was held"
    );
}

/// A pgbench script for `-M prepared` (extended protocol: each command is parsed once, then
/// bound and executed in every transaction): each transaction reads the lowest id with a
/// plain SELECT, reads that row through a `$1` parameter, and deletes it.
const PREPARED_SCRIPT: &str = "\
SELECT id AS low FROM held_exec ORDER BY id LIMIT 1 \\gset
SELECT id FROM held_exec WHERE id = :low;
DELETE FROM held_exec WHERE id = :low;
";

/// A prepared statement is held at each execution, not once when it is parsed: approving
/// one execution runs exactly that one, the next is held again, and denying it ends the
/// session before it runs. Plain prepared SELECTs (`$1` parameters) are never stopped.
#[test]
fn each_execution_of_a_prepared_statement_is_held_on_its_own() {
    each_execution_is_held("auto");
}

#[test]
fn each_execution_is_held_with_the_classic_statement_points() {
    each_execution_is_held("classic");
}

/// pgbench `-M prepared` under `--statement-points points`: each execution of the prepared
/// DELETE is held and decided on its own.
fn each_execution_is_held(points: &str) {
    let cluster = Cluster::start();
    cluster.admin("CREATE TABLE held_exec(id int); INSERT INTO held_exec VALUES (1), (2), (3)");
    let ids = || cluster.admin("SELECT string_agg(id::text, ',' ORDER BY id) FROM held_exec");
    let policy = policy_dir();
    let state = tempfile::tempdir().expect("state dir");
    let metrics_port = free_port();
    let agent = start_agent_with_points(
        &cluster,
        &format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"),
        policy.path(),
        &state.path().join("held.json"),
        points,
    );

    let mut client = as_postgres(&format!("{PG_BIN}/pgbench"))
        .args([
            "-n",
            "-M",
            "prepared",
            "-t",
            "2",
            "-f",
            "-",
            "-h",
            "127.0.0.1",
            "-U",
        ])
        .args(["postgres", "-p", &cluster.port.to_string(), "postgres"])
        .env("PGAPPNAME", "hold-bot")
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn pgbench");
    {
        use std::io::Write as _;
        let mut stdin = client.stdin.take().expect("pgbench stdin");
        stdin
            .write_all(PREPARED_SCRIPT.as_bytes())
            .expect("write the pgbench script");
    }
    let marker = "DELETE FROM held_exec";
    let first = hold_events(&agent, marker, 1).remove(0);
    assert_eq!(first["protocol"], "extended", "{first}");
    stopped_backend(&first);
    assert_eq!(ids().trim(), "1,2,3", "a DELETE ran while held");
    let first_id = first["request_id"].as_str().expect("request_id").to_owned();
    approvals(&agent, "approve", &first_id, &[]);

    let second = hold_events(&agent, marker, 2).remove(1);
    let second_id = second["request_id"]
        .as_str()
        .expect("request_id")
        .to_owned();
    assert_ne!(first_id, second_id, "one request for two executions");
    stopped_backend(&second);
    assert_eq!(
        ids().trim(),
        "2,3",
        "the approved execution did not run alone"
    );
    approvals(&agent, "deny", &second_id, &["--reason", "one is enough"]);

    let (ok, out) = finish(client, WAIT);
    assert!(!ok, "the denied execution succeeded: {out}");
    assert!(
        out.contains("terminating connection due to administrator command"),
        "{out}"
    );
    assert_eq!(ids().trim(), "2,3", "the denied execution ran");

    let first = decision_event(&agent, &first_id);
    assert_eq!(
        (&first["outcome"], &first["action"]),
        (&"approved".into(), &"resumed".into())
    );
    let second = decision_event(&agent, &second_id);
    assert_eq!(
        (&second["outcome"], &second["action"]),
        (&"denied".into(), &"terminated".into())
    );
    let events = agent.events();
    // The DELETE's Parse was not held (no third request), and only its two executions
    // stopped: the four plain SELECT executions passed in the kernel.
    assert_eq!(events.iter().filter(|e| is_hold(e, marker)).count(), 2);
    let metrics = scrape(metrics_port);
    assert_eq!(
        value(&metrics, r#"dbward_kernel_stops_total{at="execute"}"#),
        2.0,
        "{metrics}"
    );
}

/// `[holds] unmediated = true` in agent.toml turns holds on as `--hold-unmediated` does (the
/// systemd unit runs `dbward run --config /etc/dbward/agent.toml` without the flag).
#[test]
fn holds_turned_on_in_agent_toml_hold_like_the_flag() {
    let cluster = Cluster::start();
    cluster.admin("CREATE TABLE held_by_config(x int)");
    let policy = policy_dir();
    let state = tempfile::tempdir().expect("state dir");
    let state = state.path().join("held.json").display().to_string();
    let agent = Agent::start_with_policy(
        Some(cluster.pid),
        "[holds]\nunmediated = true\n",
        policy.path(),
        &["--held-state", &state],
    );
    let client = spawn_psql(&cluster, "DROP TABLE held_by_config");
    deny_hold(&agent, "held_by_config", "config holds");
    let (ok, out) = finish(client, WAIT);
    assert!(!ok, "denied DROP succeeded: {out}");
    assert!(table_exists(&cluster, "held_by_config"), "denied DROP ran");
}
