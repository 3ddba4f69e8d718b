//! Decisions at the shim with psql and raw protocol: deny (simple, in a transaction,
//! extended pipeline), hold → approve / deny / timeout, justification, fail closed.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Pg, PrefixGate, ShimOptions, psql, start_shim, statements, stderr, stdout};
use dbward_agent::approval::local::ApproverIdentity;
use dbward_agent::approval::{LocalApprovals, NoApprovals, PendingApproval};
use dbward_agent::shim::events::{Action, Verdict};
use dbward_agent::shim::{ShimEvent, StatementGate};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

fn sql_file(pg: &Pg, name: &str, sql: &str) -> String {
    let path = pg.scratch().join(name);
    let mut f = std::fs::File::create(&path).expect("sql file");
    f.write_all(sql.as_bytes()).expect("write sql");
    path.display().to_string()
}

fn approver(user: &str) -> ApproverIdentity {
    ApproverIdentity { user: user.into() }
}

async fn wait_pending(store: &LocalApprovals) -> PendingApproval {
    let start = Instant::now();
    loop {
        if let Some(p) = store.list().into_iter().next() {
            return p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no request was filed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn setup(pg: &Pg) {
    pg.psql_direct("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2), (3);");
}

fn count(pg: &Pg) -> String {
    pg.psql_direct("SELECT count(*) FROM t").trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_statement_never_reaches_server_and_session_goes_on() {
    let pg = Pg::start();
    setup(&pg);
    let gate = PrefixGate::default().deny("delete", "no deletes on t");
    let mut shim = start_shim(&pg, ShimOptions::new(Arc::new(gate))).await;
    let port = shim.port();
    let file = sql_file(&pg, "deny.sql", "DELETE FROM t;\nSELECT 'still here';\n");
    let out = blocking(move || psql("127.0.0.1", port, "postgres", &[], &["-f", &file])).await;
    assert!(
        stderr(&out).contains("ERROR:  no deletes on t"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out).trim(), "still here");
    assert_eq!(count(&pg), "3", "the DELETE never ran");
    let verbose = blocking(move || {
        psql(
            "127.0.0.1",
            port,
            "postgres",
            &[("PGOPTIONS", "")],
            &["-v", "VERBOSITY=verbose", "-c", "DELETE FROM t"],
        )
    })
    .await;
    assert!(stderr(&verbose).contains("42501"), "{}", stderr(&verbose));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let denied: Vec<_> = statements(&shim.drain_events())
        .into_iter()
        .filter(|s| matches!(s.action, Action::Denied { .. }))
        .collect();
    assert_eq!(denied.len(), 2);
    assert_eq!(denied[0].verdict, Verdict::Deny);
    assert_eq!(denied[0].rule.as_deref(), Some("deny-delete"));
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_inside_a_transaction_fails_it_like_postgres() {
    let pg = Pg::start();
    setup(&pg);
    let gate = PrefixGate::default().deny("delete", "no deletes on t");
    let shim = start_shim(&pg, ShimOptions::new(Arc::new(gate))).await;
    let port = shim.port();
    let file = sql_file(
        &pg,
        "tx.sql",
        "BEGIN;\nINSERT INTO t VALUES (4);\nDELETE FROM t;\nSELECT 1;\nCOMMIT;\n",
    );
    let out = blocking(move || psql("127.0.0.1", port, "postgres", &[], &["-f", &file])).await;
    let err = stderr(&out);
    assert!(err.contains("no deletes on t"), "{err}");
    assert!(
        err.contains("current transaction is aborted"),
        "later statements fail as in PostgreSQL: {err}"
    );
    assert!(stdout(&out).contains("ROLLBACK") || !stdout(&out).contains("COMMIT"));
    assert_eq!(
        count(&pg),
        "3",
        "the INSERT was rolled back with the transaction"
    );
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_failure_fails_closed() {
    let pg = Pg::start();
    setup(&pg);
    let gate = PrefixGate {
        broken: true,
        ..PrefixGate::default()
    };
    let shim = start_shim(&pg, ShimOptions::new(Arc::new(gate))).await;
    let port = shim.port();
    let out =
        blocking(move || psql("127.0.0.1", port, "postgres", &[], &["-c", "DELETE FROM t"])).await;
    assert!(
        stderr(&out).contains("policy could not be evaluated"),
        "{}",
        stderr(&out)
    );
    assert_eq!(count(&pg), "3");
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_approval_without_approval_path_is_denied_with_reason() {
    let pg = Pg::start();
    setup(&pg);
    let gate = PrefixGate::default().hold("delete", Duration::from_secs(30), false);
    let mut opts = ShimOptions::new(Arc::new(gate));
    opts.approvals = Arc::new(NoApprovals);
    let shim = start_shim(&pg, opts).await;
    let port = shim.port();
    let out =
        blocking(move || psql("127.0.0.1", port, "postgres", &[], &["-c", "DELETE FROM t"])).await;
    assert!(
        stderr(&out).contains("approval path is unavailable"),
        "{}",
        stderr(&out)
    );
    assert_eq!(count(&pg), "3");
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_statement_runs_after_approval_and_others_are_not_delayed() {
    let pg = Pg::start();
    setup(&pg);
    let store = Arc::new(LocalApprovals::default());
    let gate = PrefixGate::default().hold("delete", Duration::from_secs(60), false);
    let mut opts = ShimOptions::new(Arc::new(gate));
    opts.approvals = store.clone();
    let mut shim = start_shim(&pg, opts).await;
    let port = shim.port();
    let held = tokio::task::spawn_blocking(move || {
        psql(
            "127.0.0.1",
            port,
            "postgres",
            &[],
            &[
                "-c",
                "/* dbward-reason: INC-7 cleanup */ DELETE FROM t WHERE id > 1",
            ],
        )
    });
    let pending = wait_pending(&store).await;
    assert_eq!(pending.request.reason.as_deref(), Some("INC-7 cleanup"));
    assert_eq!(pending.request.rule, "hold-delete");
    let started = Instant::now();
    let other = blocking(move || {
        psql(
            "127.0.0.1",
            port,
            "postgres",
            &[],
            &["-c", "SELECT count(*) FROM t"],
        )
    })
    .await;
    assert_eq!(stdout(&other).trim(), "3", "{}", stderr(&other));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "other session not delayed"
    );
    assert_eq!(count(&pg), "3", "held statement has not run yet");
    store
        .approve(pending.request.request_id, &approver("postgres"), None)
        .expect("approve");
    let out = held.await.expect("psql");
    let id = pending.request.request_id.to_string();
    assert!(
        stderr(&out).contains(&format!(
            "NOTICE:  dbward: statement held for approval, request {id}"
        )),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("DELETE 2"), "{}", stdout(&out));
    assert_eq!(count(&pg), "1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = shim.drain_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ShimEvent::Decision { outcome, .. } if outcome == "approved"))
    );
    let forwarded = statements(&events)
        .into_iter()
        .find(|s| s.request_id == Some(pending.request.request_id))
        .expect("statement event for the approved request");
    assert_eq!(forwarded.command_tags, vec!["DELETE 2".to_owned()]);
    assert_eq!(forwarded.rows, Some(2));
    assert_eq!(forwarded.reason.as_deref(), Some("INC-7 cleanup"));
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_statement_denied_or_expired_returns_error_with_request_id() {
    let pg = Pg::start();
    setup(&pg);
    let store = Arc::new(LocalApprovals::default());
    let gate = PrefixGate::default()
        .hold("delete", Duration::from_secs(60), false)
        .hold("update", Duration::from_secs(1), false);
    let mut opts = ShimOptions::new(Arc::new(gate));
    opts.approvals = store.clone();
    let shim = start_shim(&pg, opts).await;
    let port = shim.port();
    let file = sql_file(&pg, "held.sql", "DELETE FROM t;\nSELECT 'after deny';\n");
    let socket_dir = shim.socket_dir.display().to_string();
    let held = tokio::task::spawn_blocking(move || {
        psql(&socket_dir, port, "postgres", &[], &["-f", &file])
    });
    let pending = wait_pending(&store).await;
    let id = pending.request.request_id;
    assert_eq!(
        pending.request.requester.client_user.as_deref(),
        Some("root"),
        "unix peer credentials name the client user"
    );
    assert!(
        matches!(
            store.approve(id, &approver("root"), None),
            Err(dbward_agent::approval::ApprovalError::SelfApproval { .. })
        ),
        "the requester's own OS user cannot approve"
    );
    store
        .deny(
            id,
            &approver("postgres"),
            Some("not during business hours".into()),
        )
        .expect("deny");
    let out = held.await.expect("psql");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "request {id} was denied by postgres: not during business hours"
        )),
        "{err}"
    );
    assert_eq!(stdout(&out).trim(), "after deny", "session goes on");
    assert_eq!(count(&pg), "3");

    let expired = blocking(move || {
        psql(
            "127.0.0.1",
            port,
            "postgres",
            &[],
            &["-c", "UPDATE t SET id = 0"],
        )
    })
    .await;
    assert!(
        stderr(&expired).contains("expired after 1s"),
        "{}",
        stderr(&expired)
    );
    assert_eq!(
        pg.psql_direct("SELECT count(*) FROM t WHERE id = 0").trim(),
        "0"
    );
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reason_required_rule_denies_without_justification_and_accepts_session_reason() {
    let pg = Pg::start();
    setup(&pg);
    let store = Arc::new(LocalApprovals::default());
    let gate = PrefixGate::default().hold("delete", Duration::from_secs(60), true);
    let mut opts = ShimOptions::new(Arc::new(gate));
    opts.approvals = store.clone();
    let shim = start_shim(&pg, opts).await;
    let port = shim.port();
    let out =
        blocking(move || psql("127.0.0.1", port, "postgres", &[], &["-c", "DELETE FROM t"])).await;
    assert!(
        stderr(&out).contains("requires a justification"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("dbward-reason"),
        "says how to give it: {}",
        stderr(&out)
    );
    assert!(store.list().is_empty());
    let file = sql_file(
        &pg,
        "reason.sql",
        "SET dbward.reason = 'quarterly purge';\nDELETE FROM t;\n",
    );
    let held = tokio::task::spawn_blocking(move || {
        psql("127.0.0.1", port, "postgres", &[], &["-f", &file])
    });
    let pending = wait_pending(&store).await;
    assert_eq!(pending.request.reason.as_deref(), Some("quarterly purge"));
    store
        .approve(pending.request.request_id, &approver("postgres"), None)
        .expect("approve");
    let out = held.await.expect("psql");
    assert!(
        stdout(&out).contains("DELETE 3"),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_while_held_cancels_the_request() {
    let pg = Pg::start();
    setup(&pg);
    let store = Arc::new(LocalApprovals::default());
    let gate = PrefixGate::default().hold("delete", Duration::from_secs(60), false);
    let mut opts = ShimOptions::new(Arc::new(gate));
    opts.approvals = store.clone();
    let mut shim = start_shim(&pg, opts).await;
    let mut child = std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-p",
        ])
        .arg(shim.port().to_string())
        .args(["-c", "DELETE FROM t"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("psql");
    let pending = wait_pending(&store).await;
    child.kill().expect("kill psql");
    child.wait().expect("reap psql");
    let start = Instant::now();
    while !store.list().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "request still pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = shim.drain_events();
    assert!(events.iter().any(|e| matches!(e,
        ShimEvent::Decision { request_id, outcome, .. }
            if *request_id == pending.request.request_id && outcome == "cancelled")));
    assert_eq!(count(&pg), "3");
    shim.stop().await;
}

#[test]
fn prefix_gate_matches_after_leading_comment() {
    let gate = PrefixGate::default().deny("delete", "x");
    let facts = dbward_agent::shim::SessionFacts::default();
    let v = gate
        .evaluate(
            &facts,
            "/* dbward-reason: y */ DELETE FROM t",
            &dbward_agent::policy::classify::NoPrepared,
        )
        .expect("verdict");
    assert!(matches!(v, dbward_agent::shim::GateVerdict::Deny { .. }));
}
