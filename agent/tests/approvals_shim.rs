//! End to end: a statement held by the shim in front of a real PostgreSQL is filed with a
//! real `dbward-approver` through `RemoteApprovals`; a verified approval runs it, a decision
//! that does not verify under the pinned key never reaches the server.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Pg, PrefixGate, ShimOptions, start_shim};
use dbward_agent::approval::{RemoteApprovals, RemoteConfig};
use dbward_agent::shim::{EventSink, ShimEvent};
use dbward_approval_api::{ApproverClient, RequestStatus, Vote, verifying_key_to_base64};
use dbward_approver::config::Config;
use dbward_approver::server::Running;
use tokio::sync::mpsc;
use uuid::Uuid;

const HOST_TOKEN: &str = "host-token-db1-0123456789";
const BOB_TOKEN: &str = "token-bob-0123456789";

async fn approver(dir: &Path) -> Running {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
storage_url = "sqlite://{0}/a.db"
signing_key_path = "{0}/key"

[[hosts]]
name = "db1"
token = "{HOST_TOKEN}"

[[approver_tokens]]
token = "{BOB_TOKEN}"
principal = "bob"

[[principals]]
name = "bob"
kind = "human"
groups = ["root"]
"#,
        dir.display()
    );
    let cfg = Config::parse(&text, Path::new("t.toml")).expect("approver config");
    dbward_approver::server::start(cfg).await.expect("approver")
}

async fn connect(port: u16) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect through the shim");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The one pending request, once the shim has filed it.
async fn pending(url: &str) -> Uuid {
    let bob = ApproverClient::new(url, BOB_TOKEN).expect("client");
    let start = Instant::now();
    loop {
        let list = bob
            .list(Some(RequestStatus::Pending), None)
            .await
            .expect("list");
        if let Some(v) = list.first() {
            return v.request.request_id;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no request filed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Holds `DELETE FROM t` with the approver pinned to `public_key`, lets bob approve it, and
/// returns the client's result, the shim's events and the channel's events.
async fn hold_and_approve(
    pg: &Pg,
    server: &Running,
    public_key: String,
) -> (Result<(), String>, Vec<ShimEvent>, Vec<ShimEvent>) {
    let url = server.url();
    let (tx, mut channel_events) = mpsc::channel(16);
    let config = RemoteConfig {
        url: url.clone(),
        token: Some(HOST_TOKEN.into()),
        token_file: None,
        public_key: Some(public_key),
        public_key_file: None,
        poll_wait_secs: 2,
    };
    let remote = RemoteApprovals::new(&config, EventSink::new(tx)).expect("remote channel");
    let gate = PrefixGate::default().hold("delete", Duration::from_secs(60), false);
    let mut opts = ShimOptions::new(Arc::new(gate));
    opts.approvals = Arc::new(remote);
    opts.tweak = Box::new(|c| c.host_name = Some("db1".into()));
    let mut shim = start_shim(pg, opts).await;
    let client = connect(shim.port()).await;
    let held = tokio::spawn(async move {
        client
            .simple_query("DELETE FROM t")
            .await
            .map(|_| ())
            .map_err(|e| {
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned())
            })
    });
    let id = pending(&url).await;
    ApproverClient::new(&url, BOB_TOKEN)
        .expect("client")
        .vote(id, Vote::Approve, Some("go"))
        .await
        .expect("vote");
    let result = tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .expect("decided within 30 s")
        .expect("join");
    let mut rejected = Vec::new();
    while let Ok(e) = channel_events.try_recv() {
        rejected.push(e);
    }
    let events = shim.drain_events();
    shim.stop().await;
    (result, events, rejected)
}

fn decision_outcome(events: &[ShimEvent]) -> Option<(String, Vec<String>)> {
    events.iter().find_map(|e| match e {
        ShimEvent::Decision { outcome, by, .. } => Some((outcome.clone(), by.clone())),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_approval_runs_the_held_statement() {
    let pg = Pg::start();
    pg.psql_direct("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = approver(dir.path()).await;
    let key = verifying_key_to_base64(&server.service.verifying_key());
    let (result, events, rejected) = hold_and_approve(&pg, &server, key).await;
    assert_eq!(result, Ok(()));
    assert_eq!(pg.psql_direct("SELECT count(*) FROM t").trim(), "0");
    assert_eq!(
        decision_outcome(&events),
        Some(("approved".into(), vec!["bob".into()]))
    );
    assert!(rejected.is_empty(), "{rejected:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_signed_by_an_unpinned_key_never_reaches_the_server() {
    let pg = Pg::start();
    pg.psql_direct("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = approver(dir.path()).await;
    let other = ed25519_dalek::SigningKey::from_bytes(&[21; 32]).verifying_key();
    let (result, events, rejected) =
        hold_and_approve(&pg, &server, verifying_key_to_base64(&other)).await;
    let message = result.expect_err("refused");
    assert!(
        message.contains("was denied by dbward-agent")
            && message.contains("does not verify under the pinned approver key"),
        "{message}"
    );
    assert_eq!(pg.psql_direct("SELECT count(*) FROM t").trim(), "2");
    assert_eq!(
        decision_outcome(&events),
        Some(("denied".into(), vec!["dbward-agent".into()]))
    );
    assert!(
        matches!(rejected.as_slice(), [ShimEvent::DecisionRejected { problem, .. }] if problem == "forged_signature"),
        "{rejected:?}"
    );
    server.stop().await;
}
