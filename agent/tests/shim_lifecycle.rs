//! Upstream variants and session lifecycle: unix-socket and TLS upstreams, cancel of a held
//! statement, idle timeout, shutdown.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Pg, PrefixGate, ShimOptions, psql, start_shim, stderr, stdout};
use dbward_agent::approval::LocalApprovals;
use dbward_agent::shim::UpstreamTls;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_upstream_is_used() {
    let pg = Pg::start();
    let upstream = pg.socket_path().display().to_string();
    let mut opts = ShimOptions::new(Arc::new(PrefixGate::default()));
    opts.tweak = Box::new(move |c| c.upstream = upstream);
    let shim = start_shim(&pg, opts).await;
    let c = connect(shim.port()).await;
    let row = c
        .query_one("SELECT inet_client_addr() IS NULL", &[])
        .await
        .expect("query");
    assert!(row.get::<_, bool>(0), "the server saw a unix-socket client");
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstream_encrypts_to_the_server() {
    let pg = Pg::start_with_tls();
    let mut opts = ShimOptions::new(Arc::new(PrefixGate::default()));
    opts.tweak = Box::new(|c| c.upstream_tls = UpstreamTls::Require);
    let shim = start_shim(&pg, opts).await;
    let port = shim.port();
    let out = tokio::task::spawn_blocking(move || {
        psql(
            "127.0.0.1",
            port,
            common::pg::SCRAM_USER.0,
            &[("PGPASSWORD", common::pg::SCRAM_USER.1)],
            &[
                "-c",
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            ],
        )
    })
    .await
    .expect("psql");
    assert_eq!(stdout(&out).trim(), "t", "{}", stderr(&out));
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_withdraws_a_held_statement() {
    let pg = Pg::start();
    pg.psql_direct("CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    let store = Arc::new(LocalApprovals::default());
    let gate = PrefixGate::default().hold("delete", Duration::from_secs(60), false);
    let mut opts = ShimOptions::new(Arc::new(gate));
    opts.approvals = store.clone();
    let shim = start_shim(&pg, opts).await;
    let c = connect(shim.port()).await;
    let token = c.cancel_token();
    let held = tokio::spawn(async move { c.simple_query("DELETE FROM t").await.map(|_| ()) });
    let start = Instant::now();
    while store.list().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no request filed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent");
    let err = held.await.expect("task").expect_err("canceled");
    assert_eq!(err.code().map(|c| c.code()), Some("57014"));
    assert!(store.list().is_empty(), "request withdrawn");
    assert_eq!(pg.psql_direct("SELECT count(*) FROM t").trim(), "1");
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_is_closed_after_the_idle_timeout() {
    let pg = Pg::start();
    let mut opts = ShimOptions::new(Arc::new(PrefixGate::default()));
    opts.tweak = Box::new(|c| c.idle_timeout_secs = 1);
    let shim = start_shim(&pg, opts).await;
    let c = connect(shim.port()).await;
    c.simple_query("SELECT 1")
        .await
        .expect("works while active");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(c.is_closed() || c.simple_query("SELECT 1").await.is_err());
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_sessions_and_removes_the_socket() {
    let pg = Pg::start();
    let shim = start_shim(&pg, ShimOptions::new(Arc::new(PrefixGate::default()))).await;
    let socket = shim.socket_dir.join(format!(".s.PGSQL.{}", shim.port()));
    assert!(socket.exists());
    let c = connect(shim.port()).await;
    c.simple_query("SELECT 1").await.expect("works");
    tokio::time::timeout(Duration::from_secs(10), shim.stop())
        .await
        .expect("shutdown finishes");
    assert!(c.simple_query("SELECT 1").await.is_err(), "session ended");
    assert!(!socket.exists(), "unix socket removed");
}
