//! `RemoteApprovals` against a real `dbward-approver` on loopback: approve, deny with a
//! comment, expiry, decisions signed by another key or replayed for another request
//! (rejected, reported as events), and an unreachable approver (fails closed).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dbward_agent::approval::{
    ApprovalChannel, ApprovalError, ApprovalRequest, Decision, RemoteApprovals, RemoteConfig,
    Requester, statement_sha256,
};
use dbward_agent::shim::{EventSink, ShimEvent};
use dbward_approval_api::{ApproverClient, SignedDecision, Vote, verifying_key_to_base64};
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
sweep_interval_secs = 1

[[hosts]]
name = "db1"
token = "{HOST_TOKEN}"

[[approver_tokens]]
token = "{BOB_TOKEN}"
principal = "bob"

[[principals]]
name = "alice"
kind = "human"
groups = ["dba"]

[[principals]]
name = "bob"
kind = "human"
groups = ["dba"]
"#,
        dir.display()
    );
    let cfg = Config::parse(&text, Path::new("t.toml")).expect("approver config");
    dbward_approver::server::start(cfg).await.expect("approver")
}

fn remote_config(url: &str, public_key: String) -> RemoteConfig {
    RemoteConfig {
        url: url.to_owned(),
        token: Some(HOST_TOKEN.into()),
        token_file: None,
        public_key: Some(public_key),
        public_key_file: None,
        poll_wait_secs: 2,
    }
}

fn pinned_key(server: &Running) -> String {
    verifying_key_to_base64(&server.service.verifying_key())
}

fn remote(config: &RemoteConfig) -> (RemoteApprovals, mpsc::Receiver<ShimEvent>) {
    let (tx, rx) = mpsc::channel(16);
    let channel = RemoteApprovals::new(config, EventSink::new(tx)).expect("remote channel");
    (channel, rx)
}

fn request(statement: &str, timeout: Duration) -> ApprovalRequest {
    ApprovalRequest {
        request_id: Uuid::new_v4(),
        host: "db1".into(),
        session_id: format!("sess-{}", Uuid::new_v4().simple()),
        requester: Requester {
            principal: Some("claude-bot".into()),
            kind: Some("ai_agent".into()),
            owner: Some("alice".into()),
            client_user: Some("deploy".into()),
            ..Requester::default()
        },
        database: Some("shop".into()),
        statement: statement.into(),
        statement_sha256: statement_sha256(statement),
        class: Some("ddl".into()),
        tables: vec!["orders".into()],
        rule: "ddl-needs-dba".into(),
        reason: Some("migration 42".into()),
        approvers: vec!["dba".into()],
        quorum: 1,
        break_glass_group: None,
        filed_at: SystemTime::now(),
        timeout,
    }
}

async fn vote(url: &str, id: Uuid, vote: Vote, comment: &str) {
    ApproverClient::new(url, BOB_TOKEN)
        .expect("client")
        .vote(id, vote, Some(comment))
        .await
        .expect("vote");
}

fn rejection(rx: &mut mpsc::Receiver<ShimEvent>) -> (Uuid, String, String) {
    match rx.try_recv() {
        Ok(ShimEvent::DecisionRejected {
            request_id,
            problem,
            detail,
            ..
        }) => (request_id, problem, detail),
        other => panic!("expected a DecisionRejected event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_and_denied_decisions_reach_the_shim_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = approver(dir.path()).await;
    let url = server.url();
    let (channel, mut events) = remote(&remote_config(&url, pinned_key(&server)));

    let approve_me = request(
        "ALTER TABLE orders ADD COLUMN x int",
        Duration::from_secs(120),
    );
    let ticket = channel.file(approve_me.clone()).await.expect("filed");
    assert!(
        ticket.how_to_approve.contains(&url),
        "{}",
        ticket.how_to_approve
    );
    let waiting = tokio::spawn(channel.decision(&ticket));
    vote(&url, approve_me.request_id, Vote::Approve, "ticket 42").await;
    assert_eq!(
        waiting.await.expect("join"),
        Ok(Decision::Approved {
            approvers: vec!["bob".into()],
            comment: Some("ticket 42".into())
        })
    );

    let deny_me = request("DROP TABLE orders", Duration::from_secs(120));
    let ticket = channel.file(deny_me.clone()).await.expect("filed");
    let waiting = tokio::spawn(channel.decision(&ticket));
    vote(&url, deny_me.request_id, Vote::Deny, "use a migration").await;
    assert_eq!(
        waiting.await.expect("join"),
        Ok(Decision::Denied {
            by: "bob".into(),
            reason: Some("use a migration".into())
        })
    );
    assert!(
        events.try_recv().is_err(),
        "genuine decisions raise no rejection"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecided_request_comes_back_expired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = approver(dir.path()).await;
    let (channel, _events) = remote(&remote_config(&server.url(), pinned_key(&server)));
    let ticket = channel
        .file(request("TRUNCATE orders", Duration::from_secs(2)))
        .await
        .expect("filed");
    let decided = tokio::time::timeout(Duration::from_secs(30), channel.decision(&ticket))
        .await
        .expect("decided within 30 s");
    assert_eq!(decided, Ok(Decision::Expired));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_signed_by_another_key_is_rejected_as_forged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = approver(dir.path()).await;
    let url = server.url();
    let other = ed25519_dalek::SigningKey::from_bytes(&[13; 32]).verifying_key();
    let (channel, mut events) = remote(&remote_config(&url, verifying_key_to_base64(&other)));
    let req = request("GRANT ALL ON orders TO claude", Duration::from_secs(120));
    let ticket = channel.file(req.clone()).await.expect("filed");
    let waiting = tokio::spawn(channel.decision(&ticket));
    vote(&url, req.request_id, Vote::Approve, "looks fine").await;
    let Ok(Decision::Denied { by, reason }) = waiting.await.expect("join") else {
        panic!("a decision under another key must be a denial");
    };
    let reason = reason.expect("reason");
    assert_eq!(by, "dbward-agent");
    assert!(
        reason.contains("rejected")
            && reason.contains("does not verify under the pinned approver key"),
        "{reason}"
    );
    let (id, problem, detail) = rejection(&mut events);
    assert_eq!((id, problem.as_str()), (req.request_id, "forged_signature"));
    assert!(detail.contains(&req.request_id.to_string()), "{detail}");
    server.stop().await;
}

/// A man in the middle between agent and approver: forwards filing, and answers decision
/// polls with the real approver's answer until told to replay one decision for everything.
#[derive(Clone)]
struct Replayer {
    upstream: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Option<SignedDecision>>>,
    replay: Arc<Mutex<bool>>,
}

async fn mitm_file(State(r): State<Replayer>, headers: HeaderMap, body: String) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let resp = r
        .http
        .post(format!("{}/api/v1/requests", r.upstream))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("upstream");
    let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
    (status, resp.text().await.expect("body")).into_response()
}

async fn mitm_decision(
    State(r): State<Replayer>,
    UrlPath(id): UrlPath<Uuid>,
    headers: HeaderMap,
) -> Response {
    if *r.replay.lock().expect("lock") {
        let old = r
            .seen
            .lock()
            .expect("lock")
            .clone()
            .expect("a decision to replay");
        return Json(old).into_response();
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let resp = r
        .http
        .get(format!(
            "{}/api/v1/requests/{id}/decision?wait=2",
            r.upstream
        ))
        .header("authorization", auth)
        .send()
        .await
        .expect("upstream");
    if resp.status() == reqwest::StatusCode::NO_CONTENT {
        return StatusCode::NO_CONTENT.into_response();
    }
    let d: SignedDecision = resp.json().await.expect("decision");
    *r.seen.lock().expect("lock") = Some(d.clone());
    Json(d).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_replayed_for_a_second_request_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = approver(dir.path()).await;
    let url = server.url();
    let mitm = Replayer {
        upstream: url.clone(),
        http: reqwest::Client::new(),
        seen: Arc::default(),
        replay: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/api/v1/requests", post(mitm_file))
        .route("/api/v1/requests/{id}/decision", get(mitm_decision))
        .with_state(mitm.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mitm_url = format!("http://{}", listener.local_addr().expect("addr"));
    let proxy = tokio::spawn(async move { axum::serve(listener, app).await });
    let (channel, mut events) = remote(&remote_config(&mitm_url, pinned_key(&server)));

    let first = request(
        "DELETE FROM orders WHERE id < 100",
        Duration::from_secs(120),
    );
    let ticket = channel.file(first.clone()).await.expect("filed");
    let waiting = tokio::spawn(channel.decision(&ticket));
    vote(&url, first.request_id, Vote::Approve, "ok once").await;
    assert!(matches!(
        waiting.await.expect("join"),
        Ok(Decision::Approved { .. })
    ));

    *mitm.replay.lock().expect("lock") = true;
    let mut second = request(
        "DELETE FROM orders WHERE id < 100",
        Duration::from_secs(120),
    );
    second.session_id = first.session_id.clone();
    let ticket = channel.file(second.clone()).await.expect("filed");
    let Ok(Decision::Denied { by, reason }) = channel.decision(&ticket).await else {
        panic!("a replayed decision must be a denial");
    };
    let reason = reason.expect("reason");
    assert_eq!(by, "dbward-agent");
    assert!(
        reason.contains(&format!(
            "decision is for request {}, expected {}",
            first.request_id, second.request_id
        )),
        "{reason}"
    );
    let (id, problem, _) = rejection(&mut events);
    assert_eq!((id, problem.as_str()), (second.request_id, "wrong_request"));
    proxy.abort();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_approver_fails_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = approver(dir.path()).await;
    let url = server.url();
    let (channel, _events) = remote(&remote_config(&url, pinned_key(&server)));
    let held = request("DROP TABLE t", Duration::from_secs(120));
    let ticket = channel.file(held).await.expect("filed while up");
    let waiting = tokio::spawn(channel.decision(&ticket));
    server.stop().await;

    let decided = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("gave up within 30 s")
        .expect("join");
    assert!(
        matches!(&decided, Err(ApprovalError::Unavailable(m)) if m.contains("waiting for the decision")),
        "{decided:?}"
    );
    let filed = channel
        .file(request("DROP TABLE u", Duration::from_secs(120)))
        .await;
    assert!(
        matches!(&filed, Err(ApprovalError::Unavailable(m)) if m.contains("unreachable")),
        "{filed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = approver(dir.path()).await;
    let (channel, _events) = remote(&remote_config(&server.url(), pinned_key(&server)));
    let ticket = channel
        .file(request("DROP TABLE t", Duration::from_secs(120)))
        .await
        .expect("filed");
    let waiting = tokio::spawn(channel.decision(&ticket));
    tokio::time::sleep(Duration::from_millis(200)).await;
    channel.cancel(&ticket);
    let decided = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("cancel ends the wait at once")
        .expect("join");
    assert_eq!(decided, Ok(Decision::Cancelled));
    server.stop().await;
}
