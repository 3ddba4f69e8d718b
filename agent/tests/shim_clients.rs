//! Real client libraries through the shim: psycopg 3, asyncpg (binary extended protocol)
//! and node-postgres each run a workload whose output must equal the direct connection's.
//! Missing modules fail loudly, naming what to install (tests/clients/requirements.txt,
//! tests/clients/package.json).

mod common;

use std::process::Command;
use std::sync::Arc;

use common::{Pg, PrefixGate, ShimOptions, clients_dir, start_shim};

fn run(program: &str, script: &str, port: u16) -> String {
    let path = clients_dir().join(script);
    let out = Command::new(program)
        .arg(&path)
        .args(["127.0.0.1", &port.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "{script} against port {port} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn direct_equals_shim(program: &'static str, script: &'static str) {
    let pg = Pg::start();
    let shim = start_shim(&pg, ShimOptions::new(Arc::new(PrefixGate::default()))).await;
    let (direct_port, shim_port) = (pg.port, shim.port());
    let (direct, via) = tokio::task::spawn_blocking(move || {
        (
            run(program, script, direct_port),
            run(program, script, shim_port),
        )
    })
    .await
    .expect("client run");
    assert!(direct.len() > 100, "workload produced results: {direct}");
    assert_eq!(via, direct);
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg3_workload_equals_direct() {
    direct_equals_shim("python3", "psycopg_workload.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_workload_equals_direct() {
    direct_equals_shim("python3", "asyncpg_workload.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_workload_equals_direct() {
    direct_equals_shim("node", "pg_workload.js").await;
}
