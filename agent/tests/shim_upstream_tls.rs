//! The shim verifying the real server's TLS certificate (`shim.upstream_tls = "verify-ca"` /
//! `"verify-full"`) and presenting a client certificate to it, against a PostgreSQL server
//! whose certificate is signed by a private CA; and `dbward config check` on bad settings.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use common::certs::TestCa;
use common::pg::PgTls;
use common::{Pg, PrefixGate, RunningShim, ShimOptions, psql, start_shim, stderr, stdout};
use dbward_agent::shim::{ShimConfig, UpstreamTls};

/// The role that logs in with a client certificate (`cert` authentication).
const CERT_USER: &str = "cert_user";

/// A server with ssl=on and a certificate for `localhost` and `127.0.0.1` signed by `ca`,
/// accepting [`CERT_USER`] over TCP only with a client certificate signed by `ca`; the
/// CA is written to `ca.pem` and a client certificate for [`CERT_USER`] to
/// `client.crt`/`client.key` in the server's scratch directory.
fn server_signed_by(ca: &TestCa) -> Pg {
    let server = ca.server(&["localhost", "127.0.0.1"]);
    let pg = Pg::start_with(PgTls {
        cert: server.cert,
        key: server.key,
        client_ca: Some(ca.pem().to_owned()),
        hba_first: vec![format!("hostssl all {CERT_USER} 127.0.0.1/32 cert")],
    });
    pg.psql_direct(&format!("CREATE ROLE {CERT_USER} LOGIN"));
    let dir = pg.scratch();
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca.pem");
    ca.client(CERT_USER, None)
        .write(&dir.join("client.crt"), &dir.join("client.key"));
    pg
}

/// Starts a shim in front of `pg` with upstream TLS set by `tweak`.
async fn shim_with(pg: &Pg, tweak: impl FnOnce(&mut ShimConfig) + 'static) -> RunningShim {
    let mut opts = ShimOptions::new(Arc::new(PrefixGate::default()));
    opts.tweak = Box::new(tweak);
    start_shim(pg, opts).await
}

/// Upstream TLS `mode` trusting the CAs in `ca`, with `server_name` as the name to check.
fn verifying(
    mode: UpstreamTls,
    ca: PathBuf,
    server_name: Option<&str>,
) -> impl FnOnce(&mut ShimConfig) + 'static {
    let server_name = server_name.map(str::to_owned);
    move |c| {
        c.upstream_tls = mode;
        c.upstream_ca = Some(ca);
        c.upstream_tls_server_name = server_name;
    }
}

/// Asks through the shim whether the server sees this session encrypted, as `user`.
async fn ssl_through(shim: &RunningShim, user: &'static str) -> Output {
    let port = shim.port();
    tokio::task::spawn_blocking(move || {
        psql(
            "127.0.0.1",
            port,
            user,
            &[],
            &[
                "-c",
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            ],
        )
    })
    .await
    .expect("psql")
}

fn assert_encrypted(out: &Output) {
    assert_eq!(stdout(out).trim(), "t", "{}", stderr(out));
}

fn assert_refused(out: &Output, expected: &[&str]) {
    assert!(!out.status.success(), "{}", stdout(out));
    let text = stderr(out);
    for e in expected {
        assert!(text.contains(e), "missing {e:?} in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_trusts_only_the_configured_ca_and_keeps_serving() {
    let ca = TestCa::new("dbward test CA");
    let pg = server_signed_by(&ca);
    let other_ca = pg.scratch().join("other-ca.pem");
    std::fs::write(&other_ca, TestCa::new("some other CA").pem()).expect("write");

    let trusting = shim_with(
        &pg,
        verifying(UpstreamTls::VerifyFull, pg.scratch().join("ca.pem"), None),
    )
    .await;
    assert_encrypted(&ssl_through(&trusting, "postgres").await);

    let distrusting = shim_with(&pg, verifying(UpstreamTls::VerifyFull, other_ca, None)).await;
    let refused = ssl_through(&distrusting, "postgres").await;
    assert_refused(
        &refused,
        &[
            "FATAL",
            "dbward shim: the database server's certificate is not trusted",
            "not signed by a CA in shim.upstream_ca",
            "shim.upstream_tls = \"verify-full\"",
        ],
    );
    // The refusal ends that client only: the same shim answers the next client the same
    // way, and a shim that trusts the CA goes on serving.
    assert_refused(
        &ssl_through(&distrusting, "postgres").await,
        &["certificate is not trusted"],
    );
    assert_encrypted(&ssl_through(&trusting, "postgres").await);
    trusting.stop().await;
    distrusting.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_server_name_and_verify_ca_does_not() {
    let ca = TestCa::new("dbward test CA");
    let pg = server_signed_by(&ca);
    let ca_file = pg.scratch().join("ca.pem");

    let wrong_name = shim_with(
        &pg,
        verifying(
            UpstreamTls::VerifyFull,
            ca_file.clone(),
            Some("db.example.com"),
        ),
    )
    .await;
    assert_refused(
        &ssl_through(&wrong_name, "postgres").await,
        &[
            "certificate is not trusted",
            "not valid for name \"db.example.com\"",
        ],
    );
    let ca_only = shim_with(
        &pg,
        verifying(
            UpstreamTls::VerifyCa,
            ca_file.clone(),
            Some("db.example.com"),
        ),
    )
    .await;
    assert_encrypted(&ssl_through(&ca_only, "postgres").await);
    let by_name = shim_with(
        &pg,
        verifying(UpstreamTls::VerifyFull, ca_file, Some("localhost")),
    )
    .await;
    assert_encrypted(&ssl_through(&by_name, "postgres").await);
    for shim in [wrong_name, ca_only, by_name] {
        shim.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_passes_cert_authentication() {
    let ca = TestCa::new("dbward test CA");
    let pg = server_signed_by(&ca);
    let dir = pg.scratch().to_owned();

    let with_cert = shim_with(&pg, {
        let verify = verifying(UpstreamTls::VerifyFull, dir.join("ca.pem"), None);
        let dir = dir.clone();
        move |c| {
            verify(c);
            c.upstream_tls_cert = Some(dir.join("client.crt"));
            c.upstream_tls_key = Some(dir.join("client.key"));
        }
    })
    .await;
    let port = with_cert.port();
    let out = tokio::task::spawn_blocking(move || {
        psql(
            "127.0.0.1",
            port,
            CERT_USER,
            &[],
            &[
                "-c",
                "SELECT current_user, ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            ],
        )
    })
    .await
    .expect("psql");
    assert_eq!(
        stdout(&out).trim(),
        format!("{CERT_USER}|t|/CN={CERT_USER}"),
        "{}",
        stderr(&out)
    );

    let without_cert = shim_with(
        &pg,
        verifying(UpstreamTls::VerifyFull, dir.join("ca.pem"), None),
    )
    .await;
    assert_refused(
        &ssl_through(&without_cert, CERT_USER).await,
        &["FATAL", "connection requires a valid client certificate"],
    );
    with_cert.stop().await;
    without_cert.stop().await;
}

/// Runs `dbward config check` on `text`; returns the exit code, stderr and the file's path.
fn config_check(dir: &Path, text: &str) -> (Option<i32>, String, PathBuf) {
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    let out = assert_cmd::Command::cargo_bin("dbward")
        .expect("the dbward binary is built")
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .expect("run dbward");
    (out.status.code(), stderr(&out), path)
}

#[test]
fn config_check_names_the_key_of_each_bad_upstream_tls_setting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, TestCa::new("dbward test CA").pem()).expect("write");
    let shim = "[shim]\nlisten_tcp = [\"127.0.0.1:6432\"]\n";
    let cases = [
        (
            format!("{shim}upstream = \"127.0.0.1:5432\"\nupstream_tls = \"verify-full\"\n"),
            ":4:1: [shim] shim.upstream_tls = \"verify-full\" needs shim.upstream_ca",
        ),
        (
            format!(
                "{shim}upstream = \"127.0.0.1:5432\"\nupstream_tls = \"verify-ca\"\n\
                 upstream_ca = \"/nonexistent/ca.pem\"\n"
            ),
            ":5:1: [shim] shim.upstream_ca /nonexistent/ca.pem: No such file or directory",
        ),
        (
            format!(
                "{shim}upstream = \"127.0.0.1:5432\"\nupstream_tls = \"verify-full\"\n\
                 upstream_ca = {ca:?}\nupstream_tls_cert = {ca:?}\n"
            ),
            ":6:1: [shim] shim.upstream_tls_cert needs shim.upstream_tls_key",
        ),
        (
            format!(
                "{shim}upstream = \"/run/postgresql/.s.PGSQL.5432\"\n\
                 upstream_tls = \"verify-full\"\nupstream_ca = {ca:?}\n"
            ),
            ":4:1: [shim] shim.upstream_tls = \"verify-full\" to a unix socket needs shim.upstream_tls_server_name",
        ),
        (
            format!("{shim}upstream = \"127.0.0.1:5432\"\nupstream_ca = {ca:?}\n"),
            ":4:1: [shim] shim.upstream_ca has no effect with upstream_tls = \"disable\"",
        ),
    ];
    for (text, expected) in cases {
        let (code, stderr, path) = config_check(dir.path(), &text);
        assert_eq!(code, Some(1), "{text}\n{stderr}");
        let expected = format!("{}{expected}", path.display());
        assert!(
            stderr.contains(&expected),
            "{text}\nmissing {expected:?} in {stderr}"
        );
    }
    let (code, stderr, _) = config_check(
        dir.path(),
        &format!(
            "{shim}upstream = \"/run/postgresql/.s.PGSQL.5432\"\nupstream_tls = \"verify-full\"\n\
             upstream_ca = {ca:?}\nupstream_tls_server_name = \"db.example.com\"\n"
        ),
    );
    assert_eq!(code, Some(0), "{stderr}");
}
