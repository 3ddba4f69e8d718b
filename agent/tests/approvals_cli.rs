//! `dbward approvals` against a real `dbward-approver` on loopback: list, approve, deny
//! with a reason, and a refused self-approval that exits non-zero with the reason.

use std::path::Path;
use std::process::Command;

use dbward_approval_api::{
    ApprovalRequest, ApproverClient, Outcome, PrincipalKind, Requester, statement_sha256,
};
use dbward_approver::config::Config;
use time::OffsetDateTime;
use uuid::Uuid;

const HOST_TOKEN: &str = "host-token-db1-0123456789";

fn config(dir: &Path) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
storage_url = "sqlite://{0}/a.db"
signing_key_path = "{0}/key"

[[hosts]]
name = "db1"
token = "{HOST_TOKEN}"

[[approver_tokens]]
token = "token-alice-0123456789"
principal = "alice"

[[approver_tokens]]
token = "token-bob-0123456789"
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
    )
}

fn request(requester: &str, statement: &str, quorum: u32) -> ApprovalRequest {
    ApprovalRequest {
        request_id: Uuid::new_v4(),
        host: "db1".into(),
        session_id: "s1".into(),
        requester: Requester {
            principal: requester.into(),
            kind: PrincipalKind::Human,
            owner: None,
            groups: vec![],
            db_user: None,
            client_user: None,
            exe: None,
            unit: None,
        },
        database: Some("shop".into()),
        statement: statement.into(),
        statement_sha256: statement_sha256(statement),
        class: "ddl".into(),
        tables: vec![],
        rule: "ddl".into(),
        reason: None,
        approvers: vec!["dba".into()],
        quorum,
        expires_at: OffsetDateTime::now_utc() + time::Duration::minutes(5),
        break_glass_group: None,
    }
}

fn dbward(url: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dbward"))
        .arg("approvals")
        .args(args)
        .args(["--server", url, "--token", token])
        .output()
        .expect("run dbward");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_approves_and_denies_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config::parse(&config(dir.path()), Path::new("t.toml")).expect("config");
    let server = dbward_approver::server::start(cfg).await.expect("approver");
    let url = server.url();
    let agent = ApproverClient::new(&url, HOST_TOKEN).expect("client");
    let approve_me = request("alice", "ALTER TABLE orders ADD COLUMN x int", 1);
    let deny_me = request("alice", "DROP TABLE orders", 1);
    agent.file_request(&approve_me).await.expect("file");
    agent.file_request(&deny_me).await.expect("file");

    let run = |token: &'static str, args: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            dbward(&url, token, &args)
        })
    };
    let (ok, out, err) = run("token-bob-0123456789", vec!["list".into()])
        .await
        .expect("join");
    assert!(ok, "list failed: {err}");
    assert!(
        out.contains(&approve_me.request_id.to_string())
            && out.contains(&deny_me.request_id.to_string()),
        "{out}"
    );

    let (ok, _, err) = run(
        "token-alice-0123456789",
        vec!["approve".into(), approve_me.request_id.to_string()],
    )
    .await
    .expect("join");
    assert!(!ok, "self-approval must fail");
    assert!(
        err.contains("self_approval") && err.contains("cannot approve"),
        "{err}"
    );

    let (ok, out, err) = run(
        "token-bob-0123456789",
        vec![
            "approve".into(),
            approve_me.request_id.to_string(),
            "--comment".into(),
            "ticket 42".into(),
        ],
    )
    .await
    .expect("join");
    assert!(ok, "{err}");
    assert!(out.contains("approved (1/1 approvals)"), "{out}");
    let (ok, out, err) = run(
        "token-bob-0123456789",
        vec![
            "deny".into(),
            deny_me.request_id.to_string(),
            "--reason".into(),
            "use a migration".into(),
        ],
    )
    .await
    .expect("join");
    assert!(ok, "{err}");
    assert!(out.contains("denied"), "{out}");

    let d = agent
        .wait_decision(deny_me.request_id, std::time::Duration::ZERO)
        .await
        .expect("poll")
        .expect("decided");
    assert_eq!(
        (d.outcome, d.reason.as_str()),
        (Outcome::Denied, "use a migration")
    );
    let d = agent
        .wait_decision(approve_me.request_id, std::time::Duration::ZERO)
        .await
        .expect("poll")
        .expect("decided");
    assert_eq!(d.outcome, Outcome::Approved);
    let (ok, _, err) = run(
        "token-bob-0123456789",
        vec!["list".into(), "--status".into(), "bogus".into()],
    )
    .await
    .expect("join");
    assert!(!ok && err.contains("--status \"bogus\""), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_trusts_a_private_ca_given_with_ca_cert() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("cert");
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write");
    std::fs::write(dir.path().join("tls.crt"), cert.pem()).expect("write");
    std::fs::write(dir.path().join("tls.key"), key.serialize_pem()).expect("write");
    let text = config(dir.path()).replacen(
        "\n[[hosts]]",
        &format!(
            "\n[tls]\ncert_path = \"{0}/tls.crt\"\nkey_path = \"{0}/tls.key\"\n\n[[hosts]]",
            dir.path().display()
        ),
        1,
    );
    let server =
        dbward_approver::server::start(Config::parse(&text, Path::new("t.toml")).expect("config"))
            .await
            .expect("approver");
    let url = format!("https://localhost:{}", server.addr.port());
    let ca_path = dir.path().join("ca.pem").display().to_string();
    let (trusted, untrusted) = tokio::task::spawn_blocking(move || {
        (
            dbward(
                &url,
                "token-bob-0123456789",
                &["list", "--ca-cert", &ca_path],
            ),
            dbward(&url, "token-bob-0123456789", &["list"]),
        )
    })
    .await
    .expect("join");
    assert!(trusted.0, "with --ca-cert: {}", trusted.2);
    assert!(trusted.1.contains("no requests"), "{}", trusted.1);
    assert!(
        !untrusted.0,
        "without --ca-cert the private CA is not trusted"
    );
    assert!(untrusted.2.contains("unreachable"), "{}", untrusted.2);
    server.stop().await;
}
