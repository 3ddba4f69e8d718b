//! psql and pgbench through the shim (TCP, unix socket, TLS): results equal the direct
//! connection's; SCRAM and md5 authentication pass through.

mod common;

use std::sync::Arc;

use common::certs::TestCa;
use common::pg::{MD5_USER, SCRAM_USER};
use common::{Pg, PrefixGate, ShimOptions, psql, start_shim, stderr, stdout};

fn normalize(s: &str) -> String {
    s.lines()
        .map(|l| match l.find("server process with PID") {
            Some(i) => format!("{}server process with PID N.", &l[..i]),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn workload(host: String, port: u16, env: Vec<(&'static str, &'static str)>) -> (String, String) {
    let file = common::clients_dir().join("workload.sql");
    let file = file.to_str().expect("utf-8 path").to_owned();
    let out = psql(&host, port, "postgres", &env, &["-f", &file]);
    (normalize(&stdout(&out)), normalize(&stderr(&out)))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_workload_over_tcp_and_unix_socket_equals_direct() {
    let pg = Pg::start();
    let shim = start_shim(&pg, ShimOptions::new(Arc::new(PrefixGate::default()))).await;
    let direct = blocking({
        let port = pg.port;
        move || workload("127.0.0.1".into(), port, vec![])
    })
    .await;
    assert!(direct.0.contains("copied two"), "workload ran: {direct:?}");
    assert!(direct.1.contains("division by zero"), "{direct:?}");
    let via_tcp = blocking({
        let port = shim.port();
        move || workload("127.0.0.1".into(), port, vec![])
    })
    .await;
    assert_eq!(via_tcp, direct);
    let via_unix = blocking({
        let port = shim.port();
        let dir = shim.socket_dir.display().to_string();
        move || workload(dir, port, vec![])
    })
    .await;
    assert_eq!(via_unix, direct);
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_over_tls_is_terminated_by_the_shim_and_equals_direct() {
    let pg = Pg::start();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let cert_path = pg.scratch().join("shim.crt");
    let key_path = pg.scratch().join("shim.key");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let mut opts = ShimOptions::new(Arc::new(PrefixGate::default()));
    opts.tweak = Box::new(move |c| {
        c.tls_cert = Some(cert_path);
        c.tls_key = Some(key_path);
    });
    let shim = start_shim(&pg, opts).await;
    let port = shim.port();
    let info = blocking(move || {
        psql(
            "127.0.0.1",
            port,
            "postgres",
            &[("PGSSLMODE", "require")],
            &["-c", "\\conninfo"],
        )
    })
    .await;
    assert!(
        stdout(&info).contains("SSL connection"),
        "psql reports TLS: {} {}",
        stdout(&info),
        stderr(&info)
    );
    let direct = blocking({
        let port = pg.port;
        move || workload("127.0.0.1".into(), port, vec![])
    })
    .await;
    let via_tls =
        blocking(move || workload("127.0.0.1".into(), port, vec![("PGSSLMODE", "require")])).await;
    assert_eq!(via_tls, direct);
    shim.stop().await;
}

/// A private CA, the shim's server certificate and a client certificate for `client_cn`,
/// written under `dir`: `ca.pem`, `shim.crt`/`shim.key`, `client.crt`/`client.key`.
fn client_cert_files(dir: &std::path::Path, client_cn: &str) {
    let ca = TestCa::new("dbward test CA");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    ca.server(&["localhost"])
        .write(&dir.join("shim.crt"), &dir.join("shim.key"));
    ca.client(client_cn, Some("Example"))
        .write(&dir.join("client.crt"), &dir.join("client.key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_subject_becomes_the_sessions_tls_subject() {
    let pg = Pg::start();
    let dir = pg.scratch().to_owned();
    client_cert_files(&dir, "ai-reporting");
    let mut opts = ShimOptions::new(Arc::new(PrefixGate::default()));
    let files = dir.clone();
    opts.tweak = Box::new(move |c| {
        c.tls_cert = Some(files.join("shim.crt"));
        c.tls_key = Some(files.join("shim.key"));
        c.tls_client_ca = Some(files.join("ca.pem"));
        c.tls_client_cert = dbward_agent::shim::config::ClientCert::Required;
    });
    let mut shim = start_shim(&pg, opts).await;
    let port = shim.port();
    let (cert, key) = (
        dir.join("client.crt").display().to_string(),
        dir.join("client.key").display().to_string(),
    );
    let with_cert = blocking(move || {
        psql(
            "127.0.0.1",
            port,
            "postgres",
            &[
                ("PGSSLMODE", "require"),
                ("PGSSLCERT", cert.as_str()),
                ("PGSSLKEY", key.as_str()),
            ],
            &["-c", "SELECT 'cert ok'"],
        )
    })
    .await;
    assert_eq!(
        stdout(&with_cert).trim(),
        "cert ok",
        "{}",
        stderr(&with_cert)
    );
    // `required`: a TLS client without a certificate does not get in.
    let without = blocking(move || {
        psql(
            "127.0.0.1",
            port,
            "postgres",
            &[("PGSSLMODE", "require"), ("PGSSLCERT", "/nonexistent")],
            &["-c", "SELECT 'no cert'"],
        )
    })
    .await;
    assert!(!without.status.success(), "{}", stdout(&without));
    let subjects: Vec<Option<String>> = shim
        .drain_events()
        .into_iter()
        .filter_map(|e| match e {
            dbward_agent::shim::ShimEvent::SessionStart { facts } => Some(facts.tls_subject),
            _ => None,
        })
        .collect();
    assert_eq!(
        subjects,
        vec![Some("CN=ai-reporting, O=Example".to_owned())],
        "one session, identified by its certificate"
    );
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_shim_answers_ssl_request_with_no_and_gssenc_is_refused() {
    let pg = Pg::start();
    let shim = start_shim(&pg, ShimOptions::new(Arc::new(PrefixGate::default()))).await;
    let port = shim.port();
    let prefer = blocking(move || {
        psql(
            "127.0.0.1",
            port,
            "postgres",
            &[("PGSSLMODE", "prefer"), ("PGGSSENCMODE", "prefer")],
            &["-c", "SELECT 'plain ok'"],
        )
    })
    .await;
    assert_eq!(stdout(&prefer).trim(), "plain ok", "{}", stderr(&prefer));
    let require = blocking(move || {
        psql(
            "127.0.0.1",
            port,
            "postgres",
            &[("PGSSLMODE", "require")],
            &["-c", "SELECT 1"],
        )
    })
    .await;
    assert!(!require.status.success());
    assert!(stderr(&require).contains("SSL"), "{}", stderr(&require));
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_and_md5_authentication_pass_through() {
    let pg = Pg::start();
    let shim = start_shim(&pg, ShimOptions::new(Arc::new(PrefixGate::default()))).await;
    let port = shim.port();
    for (user, password) in [SCRAM_USER, MD5_USER] {
        let ok = blocking(move || {
            psql(
                "127.0.0.1",
                port,
                user,
                &[("PGPASSWORD", password)],
                &["-c", "SELECT current_user"],
            )
        })
        .await;
        assert_eq!(stdout(&ok).trim(), user, "{}", stderr(&ok));
        let bad = blocking(move || {
            psql(
                "127.0.0.1",
                port,
                user,
                &[("PGPASSWORD", "wrong")],
                &["-c", "SELECT 1"],
            )
        })
        .await;
        assert!(!bad.status.success());
        assert!(
            stderr(&bad).contains("password authentication failed"),
            "{}",
            stderr(&bad)
        );
    }
    shim.stop().await;
}

fn pgbench(port: u16, args: &[&str]) -> std::process::Output {
    std::process::Command::new("/usr/lib/postgresql/15/bin/pgbench")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
        .arg(port.to_string())
        .args(args)
        .arg("postgres")
        .output()
        .expect("pgbench runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_simple_extended_and_prepared_run_every_transaction() {
    let pg = Pg::start();
    let shim = start_shim(&pg, ShimOptions::new(Arc::new(PrefixGate::default()))).await;
    let port = shim.port();
    let init = blocking(move || pgbench(port, &["-i", "-s", "1", "-q"])).await;
    assert!(init.status.success(), "{}", stderr(&init));
    for mode in ["simple", "extended", "prepared"] {
        let before: u64 = pg
            .psql_direct("SELECT count(*) FROM pgbench_history")
            .trim()
            .parse()
            .expect("count");
        let out =
            blocking(move || pgbench(port, &["-n", "-c", "4", "-j", "2", "-t", "25", "-M", mode]))
                .await;
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains("number of transactions actually processed: 100/100"),
            "{mode}: {text}"
        );
        let after: u64 = pg
            .psql_direct("SELECT count(*) FROM pgbench_history")
            .trim()
            .parse()
            .expect("count");
        assert_eq!(
            after - before,
            100,
            "{mode}: every transaction reached the server"
        );
    }
    shim.stop().await;
}
