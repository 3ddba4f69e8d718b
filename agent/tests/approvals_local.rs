//! `dbward approvals` without `--server`: the real CLI binary talks to a control socket
//! served in-process over a `LocalApprovals` store with OS group lookups; the approver is
//! the caller's OS user from SO_PEERCRED (these tests run as root, one also as `postgres`);
//! `tail` keeps working on the same socket.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dbward_agent::approval::{
    ApprovalChannel, ApprovalRequest, Decision, LocalApprovals, OsGroups, Requester, Ticket,
    statement_sha256,
};
use dbward_agent::control::{self, ControlState, Notice};
use tokio::sync::broadcast;
use uuid::Uuid;

struct Agent {
    socket: PathBuf,
    store: Arc<LocalApprovals>,
    events: broadcast::Sender<Arc<dbward_agent::event::Event>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A control server like `dbward run` starts, with local approvals decided by OS groups.
fn agent() -> Agent {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let socket = dir.path().join("agent.sock");
    let listener = control::bind(&socket).expect("bind control socket");
    let store = Arc::new(LocalApprovals::new(Arc::new(OsGroups)));
    let (events, _) = broadcast::channel(16);
    let state = ControlState {
        events: events.clone(),
        approvals: Some(Arc::clone(&store)),
        status: Default::default(),
    };
    let task = tokio::spawn(control::serve(listener, state));
    Agent {
        socket,
        store,
        events,
        task,
        _dir: dir,
    }
}

fn request(client_user: &str, statement: &str, quorum: u32) -> ApprovalRequest {
    ApprovalRequest {
        request_id: Uuid::new_v4(),
        host: "db1".into(),
        session_id: "s1".into(),
        requester: Requester {
            principal: Some("nightly-export".into()),
            kind: Some("service".into()),
            client_user: Some(client_user.into()),
            db_user: Some("app".into()),
            ..Requester::default()
        },
        database: Some("shop".into()),
        statement: statement.into(),
        statement_sha256: statement_sha256(statement),
        class: Some("delete".into()),
        tables: vec!["orders".into()],
        rule: "mass-delete".into(),
        reason: Some("cleanup".into()),
        approvers: vec!["root".into()],
        quorum,
        break_glass_group: None,
        filed_at: SystemTime::now(),
        timeout: Duration::from_secs(120),
    }
}

async fn file(agent: &Agent, req: ApprovalRequest) -> Ticket {
    agent.store.file(req).await.expect("filed")
}

/// Runs `dbward approvals ARGS --socket S`, optionally as another OS user.
async fn dbward(socket: &Path, as_user: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let bin = env!("CARGO_BIN_EXE_dbward");
    let mut cmd = match as_user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--", bin]);
            c
        }
        None => Command::new(bin),
    };
    cmd.arg("approvals")
        .args(args)
        .arg("--socket")
        .arg(socket)
        .env_remove("DBWARD_APPROVER_URL");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run dbward");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approver_on_the_host_lists_approves_and_denies_through_the_cli() {
    let agent = agent();
    let approve_me = request("postgres", "DELETE FROM orders WHERE created < now()", 1);
    let deny_me = request("postgres", "DELETE FROM customers", 1);
    let approve_ticket = file(&agent, approve_me.clone()).await;
    let deny_ticket = file(&agent, deny_me.clone()).await;
    let approved = tokio::spawn(agent.store.decision(&approve_ticket));
    let denied = tokio::spawn(agent.store.decision(&deny_ticket));

    let (ok, out, err) = dbward(&agent.socket, None, &["list"]).await;
    assert!(ok, "list failed: {err}");
    for r in [&approve_me, &deny_me] {
        assert!(
            out.contains(&r.request_id.to_string()) && out.contains(&r.statement),
            "{out}"
        );
    }
    let (ok, out, err) = dbward(&agent.socket, None, &["list", "--json"]).await;
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("json list");
    assert_eq!(json["requests"].as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(json["requests"][0]["client_user"], "postgres");
    let (ok, out, err) = dbward(&agent.socket, None, &["list", "--search", "CUSTOMERS"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&deny_me.request_id.to_string())
            && !out.contains(&approve_me.request_id.to_string()),
        "{out}"
    );

    let id = approve_me.request_id.to_string();
    let (ok, out, err) = dbward(
        &agent.socket,
        None,
        &["approve", &id, "--comment", "ticket 42"],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("{id}: approved by root"));
    assert_eq!(
        approved.await.expect("join"),
        Ok(Decision::Approved {
            approvers: vec!["root".into()],
            comment: Some("ticket 42".into())
        })
    );

    let id = deny_me.request_id.to_string();
    let (ok, out, err) = dbward(
        &agent.socket,
        None,
        &["deny", &id, "--reason", "not on a Friday"],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("{id}: denied by root"));
    assert_eq!(
        denied.await.expect("join"),
        Ok(Decision::Denied {
            by: "root".into(),
            reason: Some("not on a Friday".into())
        })
    );
    let (ok, out, _) = dbward(&agent.socket, None, &["list"]).await;
    assert!(ok && out.trim() == "no requests", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_cannot_approve_their_own_statement() {
    let agent = agent();
    let own = request("root", "DROP TABLE orders", 1);
    file(&agent, own.clone()).await;
    let id = own.request_id.to_string();
    for action in [
        ["approve", id.as_str(), "--comment", "mine"],
        ["deny", id.as_str(), "--reason", "x"],
    ] {
        let (ok, _, err) = dbward(&agent.socket, None, &action).await;
        assert!(!ok, "self-{} must fail", action[0]);
        assert!(
            err.contains("root cannot approve request") && err.contains("(self_approval)"),
            "{err}"
        );
    }
    assert_eq!(
        agent.store.list().len(),
        1,
        "refused votes leave it pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approver_identity_is_the_callers_os_user() {
    let agent = agent();
    std::fs::set_permissions(&agent.socket, std::fs::Permissions::from_mode(0o666))
        .expect("chmod socket");
    let by_postgres = request("postgres", "DELETE FROM orders", 1);
    let by_deploy = request("deploy", "DELETE FROM orders", 1);
    file(&agent, by_postgres.clone()).await;
    file(&agent, by_deploy.clone()).await;

    let id = by_postgres.request_id.to_string();
    let (ok, _, err) = dbward(&agent.socket, Some("postgres"), &["approve", &id]).await;
    assert!(
        !ok && err.contains("postgres cannot approve") && err.contains("self_approval"),
        "{err}"
    );

    let id = by_deploy.request_id.to_string();
    let (ok, _, err) = dbward(&agent.socket, Some("postgres"), &["approve", &id]).await;
    assert!(
        !ok && err.contains("postgres is not in any approver group") && err.contains("root"),
        "{err}"
    );
    assert_eq!(agent.store.list().len(), 2);

    let forged = format!("{{\"op\":\"approvals_approve\",\"id\":\"{id}\",\"user\":\"alice\"}}\n");
    let reply = raw(&agent.socket, &forged).await;
    let notice: Notice = serde_json::from_str(&reply).expect("notice");
    assert!(
        matches!(&notice, Notice::Error { message } if message.contains("unknown field `user`")),
        "{notice:?}"
    );
    assert_eq!(agent.store.list().len(), 2, "nothing was approved");
}

async fn raw(socket: &Path, line: &str) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    stream.write_all(line.as_bytes()).await.expect("write");
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .await
        .expect("read");
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_id_and_quorum_progress_are_reported() {
    let agent = agent();
    let unknown = Uuid::new_v4().to_string();
    let (ok, _, err) = dbward(&agent.socket, None, &["approve", &unknown]).await;
    assert!(
        !ok && err.contains(&format!("no pending approval request {unknown}"))
            && err.contains("(not_found)"),
        "{err}"
    );
    let two = request("postgres", "DELETE FROM orders", 2);
    file(&agent, two.clone()).await;
    let id = two.request_id.to_string();
    let (ok, out, err) = dbward(&agent.socket, None, &["approve", &id]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("{id}: pending (1/2 approvals)"));
    let (ok, out, err) = dbward(&agent.socket, None, &["show", &id, "--json"]).await;
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("json show");
    assert_eq!(json["requests"][0]["approved_by"][0], "root", "{out}");
    let (ok, out, _) = dbward(&agent.socket, None, &["show", &id]).await;
    assert!(
        ok && out.contains("approved by: root") && out.contains("reason: cleanup"),
        "{out}"
    );
    let (ok, _, err) = dbward(&agent.socket, None, &["list", "--status", "denied"]).await;
    assert!(!ok && err.contains("use --server URL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_without_local_approvals_points_to_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("agent.sock");
    let listener = control::bind(&socket).expect("bind");
    let (events, _) = broadcast::channel(4);
    let task = tokio::spawn(control::serve(
        listener,
        ControlState {
            events,
            approvals: None,
            status: Default::default(),
        },
    ));
    let (ok, _, err) = dbward(&socket, None, &["list"]).await;
    assert!(
        !ok && err.contains("--server URL") && err.contains("no_local_approvals"),
        "{err}"
    );
    task.abort();
    let (ok, _, err) = dbward(&dir.path().join("missing.sock"), None, &["list"]).await;
    assert!(
        !ok && err.contains("cannot reach the dbward agent"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_still_streams_events_beside_approvals() {
    let agent = agent();
    let mut lines = control::request(&agent.socket, &control::Request::Tail)
        .await
        .expect("tail");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let event = dbward_agent::event::Event {
        host: "db1".into(),
        sql: Some("SELECT 1".into()),
        ..Default::default()
    };
    let line = loop {
        let _ = agent.events.send(Arc::new(event.clone()));
        match tokio::time::timeout(Duration::from_millis(100), lines.next_line()).await {
            Ok(line) => break line.expect("read").expect("a line"),
            Err(_) => assert!(std::time::Instant::now() < deadline, "tail got nothing"),
        }
    };
    let got: dbward_agent::event::Event = serde_json::from_str(&line).expect("event json");
    assert_eq!(got.sql.as_deref(), Some("SELECT 1"));
}
