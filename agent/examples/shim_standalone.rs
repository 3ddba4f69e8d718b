//! Runs the shim alone with an allow-all gate (benchmarks, manual testing):
//! `cargo run --example shim_standalone -- LISTEN_ADDR UPSTREAM [MAX_CONNECTIONS]`,
//! e.g. `127.0.0.1:6432 127.0.0.1:5432`. Ctrl-C stops it.

use std::sync::Arc;

use dbward_agent::approval::NoApprovals;
use dbward_agent::shim::{AllowAll, Shim, ShimConfig};

/// The allocator `dbward` ships with, so benchmarks measure what runs in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let usage = "usage: shim_standalone LISTEN_ADDR UPSTREAM [MAX_CONNECTIONS]";
    let listen = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let upstream = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let mut config = ShimConfig::new(upstream);
    config.listen_tcp = vec![listen.parse()?];
    if let Some(max) = args.next() {
        config.max_connections = max.parse()?;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
    // Drained on a tick, as `dbward run` does, so that events wake nobody.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(2));
        loop {
            tick.tick().await;
            loop {
                match rx.try_recv() {
                    Ok(_) => {}
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
        }
    });
    let shim = Shim::new(config, Arc::new(AllowAll), Arc::new(NoApprovals), tx)?;
    // As `dbward run` serves it: on a thread of its own.
    shim.start_on_own_thread(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?
    .finished()
    .await;
    Ok(())
}
