//! Shared test helpers: a configured service on a free loopback port with a temporary
//! SQLite database, requests, tokens, and the agent side of a decision.

#![allow(dead_code)]

pub mod cdp;
pub mod idp;
pub mod postgres;

use std::path::Path;

use dbward_approval_api::{
    ApprovalRequest, ApproverClient, PrincipalKind, Requester, statement_sha256,
};
use dbward_approver::config::Config;
use dbward_approver::server::{self, Running};
use time::OffsetDateTime;
use uuid::Uuid;

/// Host token of `db1`.
pub const DB1_TOKEN: &str = "host-token-db1-0123456789";
/// Host token of `db2`.
pub const DB2_TOKEN: &str = "host-token-db2-0123456789";

/// Approver token of each principal.
pub fn token(principal: &str) -> String {
    format!("approver-token-{principal}-0123456789")
}

/// Directory used by every test: an AI agent owned by olivia; alice, bob, root-admin in
/// `dba`; bob also in `security`; eve elsewhere; a service; an on-call emergency human.
pub const PRINCIPALS: &str = r#"
[[principals]]
name = "claude-bot"
kind = "ai_agent"
owner = "olivia"
groups = ["dba"]

[[principals]]
name = "olivia"
kind = "human"
groups = ["dba"]
slack_user_id = "UOLIVIA"

[[principals]]
name = "alice"
kind = "human"
groups = ["dba"]
slack_user_id = "UALICE"
teams_user_id = "aad-alice"
email = "alice@example.com"

[[principals]]
name = "bob"
kind = "human"
groups = ["dba", "security"]
slack_user_id = "UBOB"
teams_user_id = "aad-bob"
oidc_subject = "sub-bob"

[[principals]]
name = "root-admin"
kind = "human"
groups = ["dba", "admins"]

[[principals]]
name = "eve"
kind = "human"
groups = ["marketing"]

[[principals]]
name = "deploybot"
kind = "service"
groups = ["dba"]

[[principals]]
name = "oncall"
kind = "human"
groups = ["sre-emergency"]
"#;

/// Config text for a service storing in `storage_url`, with `extra` (top-level keys
/// first, then tables) placed before the host and principal tables.
pub fn config_text(dir: &Path, storage_url: &str, extra: &str) -> String {
    let mut text = format!(
        r#"
listen = "127.0.0.1:0"
storage_url = "{storage_url}"
signing_key_path = "{}"
sweep_interval_secs = 1
replica_poll_ms = 50
max_body_bytes = 65536
{extra}

[[hosts]]
name = "db1"
token = "{DB1_TOKEN}"

[[hosts]]
name = "db2"
token = "{DB2_TOKEN}"
"#,
        dir.join("approver.key").display()
    );
    for p in [
        "olivia",
        "alice",
        "bob",
        "root-admin",
        "eve",
        "deploybot",
        "oncall",
        "claude-bot",
    ] {
        text.push_str(&format!(
            "\n[[approver_tokens]]\ntoken = \"{}\"\nprincipal = \"{p}\"\n",
            token(p)
        ));
    }
    text.push_str(PRINCIPALS);
    text
}

/// A running service with its temp dir.
pub struct Harness {
    /// The service.
    pub running: Running,
    /// Keeps the temp dir alive.
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// Base URL.
    pub fn url(&self) -> String {
        self.running.url()
    }

    /// Client with a token (plain HTTP services only).
    pub fn client(&self, token: &str) -> ApproverClient {
        ApproverClient::new(&self.url(), token).expect("client")
    }

    /// Client of an approver principal.
    pub fn approver(&self, principal: &str) -> ApproverClient {
        self.client(&token(principal))
    }

    /// Client of agent db1.
    pub fn agent(&self) -> ApproverClient {
        self.client(DB1_TOKEN)
    }

    /// Pinned-key verifier as the agent would build it.
    pub fn verifier(&self) -> dbward_approval_api::DecisionVerifier {
        dbward_approval_api::DecisionVerifier::new(self.running.service.verifying_key())
    }
}

/// Starts a service on SQLite in a temp dir with `extra` config.
pub async fn start(extra: &str) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("approver.db").display());
    start_with(dir, &url, extra).await
}

/// Starts a service on `storage_url`.
pub async fn start_with(dir: tempfile::TempDir, storage_url: &str, extra: &str) -> Harness {
    let text = config_text(dir.path(), storage_url, extra);
    let config = Config::parse(&text, Path::new("test.toml")).expect("test config");
    let running = server::start(config).await.expect("start approver");
    Harness { running, dir }
}

/// A request from claude-bot on db1 needing `quorum` of `dba`, expiring in `ttl_secs`.
pub fn request(statement: &str, quorum: u32, ttl_secs: i64) -> ApprovalRequest {
    ApprovalRequest {
        request_id: Uuid::new_v4(),
        host: "db1".into(),
        session_id: format!("sess-{}", Uuid::new_v4().simple()),
        requester: Requester {
            principal: "claude-bot".into(),
            kind: PrincipalKind::AiAgent,
            owner: Some("olivia".into()),
            groups: vec!["dba".into()],
            db_user: Some("app".into()),
            client_user: Some("claude".into()),
            exe: Some("/usr/bin/psql".into()),
            unit: None,
        },
        database: Some("shop".into()),
        statement: statement.into(),
        statement_sha256: statement_sha256(statement),
        class: "delete".into(),
        tables: vec!["orders".into()],
        rule: "mass-delete".into(),
        reason: Some("cleanup of test orders".into()),
        approvers: vec!["dba".into(), "security".into()],
        quorum,
        expires_at: OffsetDateTime::now_utc() + time::Duration::seconds(ttl_secs),
        break_glass_group: Some("sre-emergency".into()),
    }
}

/// Raw HTTP helper: status and JSON body.
pub async fn raw(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, serde_json::Value) {
    let http = reqwest::Client::new();
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Audit records of the service (newest first), read from its store.
pub async fn audit(h: &Harness) -> Vec<serde_json::Value> {
    let records = h
        .running
        .service
        .store
        .list_audit(1000)
        .await
        .expect("audit records");
    records
        .iter()
        .map(|r| serde_json::to_value(r).expect("json"))
        .collect()
}

/// Whether an audit record with this code and status exists.
pub async fn audited(h: &Harness, code: &str, status: i64) -> bool {
    audit(h).await.iter().any(|r| {
        r["kind"] == "rejected"
            && r["status"] == status
            && r["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&format!(": {code}: ")))
    })
}

/// One request received by [`Fake`].
#[derive(Debug, Clone)]
pub struct Captured {
    /// Path.
    pub path: String,
    /// Headers.
    pub headers: axum::http::HeaderMap,
    /// Body.
    pub body: Vec<u8>,
}

impl Captured {
    /// Body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("captured body is JSON")
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A local fake of Slack's Web API, a Teams webhook and a generic webhook receiver:
/// records every request; `chat.postMessage` answers like Slack with channel and ts.
pub struct Fake {
    /// Base URL.
    pub url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Captured>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Fake {
    /// Starts on a free loopback port.
    pub async fn start() -> Self {
        use axum::extract::Request;
        let seen: std::sync::Arc<std::sync::Mutex<Vec<Captured>>> = Default::default();
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |req: Request| {
            let log = log.clone();
            async move {
                let path = req.uri().path().to_string();
                let headers = req.headers().clone();
                let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                    .await
                    .expect("fake body")
                    .to_vec();
                log.lock().expect("lock").push(Captured {
                    path: path.clone(),
                    headers,
                    body,
                });
                let answer = if path.ends_with("chat.postMessage") {
                    serde_json::json!({"ok": true, "channel": "C42", "ts": "1700000000.000100"})
                } else {
                    serde_json::json!({"ok": true})
                };
                axum::Json(answer)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake server");
        });
        Self {
            url,
            seen,
            _task: task,
        }
    }

    /// Waits (up to 10 s) for `n` requests to `path`, returning them all.
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Captured> {
        for _ in 0..200 {
            let got: Vec<Captured> = self
                .seen
                .lock()
                .expect("lock")
                .iter()
                .filter(|c| c.path == path)
                .cloned()
                .collect();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "fake never received {n} request(s) to {path}; got {:?}",
            self.seen
                .lock()
                .expect("lock")
                .iter()
                .map(|c| c.path.clone())
                .collect::<Vec<_>>()
        );
    }
}
