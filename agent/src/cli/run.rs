//! `dbward run`: the agent daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};

use crate::capture::{Capture, CaptureMessage, Targets};
use crate::config::{AgentConfig, DEFAULT_CONFIG};
use crate::event::{Event, EventType, format_ts};
use crate::session::{Clock, Correlator, HostInspector};

/// Arguments of `dbward run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Attach only to this postmaster pid (repeatable; default: every cluster on the host).
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// Also attach to this PostgreSQL server binary (repeatable).
    #[arg(long = "binary")]
    pub binaries: Vec<PathBuf>,
    /// Control socket for `dbward tail` (overrides the configuration).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Also print every event as a JSON line on stdout.
    #[arg(long)]
    pub stdout: bool,
}

/// Runs the agent until SIGINT or SIGTERM.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = AgentConfig::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(agent(config, args))
}

async fn agent(config: AgentConfig, args: RunArgs) -> anyhow::Result<ExitCode> {
    let host = config.host();
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| config.control_socket());
    let mut targets = Targets {
        pids: config.capture.pids.clone(),
        binaries: config.capture.binaries.clone(),
    };
    targets.pids.extend(&args.pids);
    targets.binaries.extend(args.binaries.iter().cloned());

    let capture = Capture::start(targets).context("cannot start the kernel capture")?;
    let listener = crate::control::bind(&socket)
        .with_context(|| format!("cannot listen on the control socket {}", socket.display()))?;
    info!(socket = %socket.display(), host, "dbward agent running");

    let (events_tx, _) = broadcast::channel::<Arc<Event>>(65536);
    let (capture_tx, mut capture_rx) = mpsc::channel::<CaptureMessage>(65536);
    let capture_task = tokio::spawn(capture.run(capture_tx));
    let control_task = tokio::spawn(crate::control::serve(
        listener,
        crate::control::ControlState {
            events: events_tx.clone(),
            approvals: None,
        },
    ));

    let mut correlator = Correlator::new(host.clone(), Clock::now(), HostInspector);
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let print = args.stdout;
    let mut published: u64 = 0;
    let mut drops_total = std::collections::BTreeMap::new();
    let publish = |event: Event| {
        if print && let Ok(line) = serde_json::to_string(&event) {
            println!("{line}");
        }
        let _ = events_tx.send(Arc::new(event));
    };
    let result = loop {
        tokio::select! {
            message = capture_rx.recv() => {
                let Some(message) = message else {
                    break Err(anyhow::anyhow!("the kernel capture stopped"));
                };
                let event = match message {
                    CaptureMessage::Kernel(k) => correlator.handle(k),
                    CaptureMessage::Cluster(pm) => {
                        correlator.add_postmaster(pm.pid, pm.port, pm.socket.as_ref().map(|p| p.display().to_string()));
                        Some(cluster_event(&host, &pm))
                    }
                    CaptureMessage::Existing(backend) => correlator.add_existing(&backend, now_ktime()),
                    CaptureMessage::Drops(drops) => {
                        warn!(?drops, "the kernel dropped events (ring buffer full)");
                        drops_total = drops.clone();
                        Some(correlator.drops_event(drops))
                    }
                    CaptureMessage::Undecodable(e) => {
                        warn!(error = %e, "undecodable kernel record");
                        None
                    }
                };
                if let Some(event) = event {
                    published += 1;
                    publish(event);
                }
            }
            _ = sigterm.recv() => break Ok(()),
            _ = sigint.recv() => break Ok(()),
        }
    };
    capture_task.abort();
    control_task.abort();
    let _ = std::fs::remove_file(&socket);
    let dropped: u64 = drops_total.values().sum();
    info!(
        events = published,
        kernel_drops = dropped,
        "dbward agent stopped"
    );
    result.map(|()| ExitCode::SUCCESS)
}

fn now_ktime() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

fn cluster_event(host: &str, pm: &crate::capture::discover::Postmaster) -> Event {
    let mut cluster = std::collections::BTreeMap::new();
    cluster.insert("binary".to_owned(), pm.exe.display().to_string());
    if let Some(port) = pm.port {
        cluster.insert("port".to_owned(), port.to_string());
    }
    if let Some(dir) = &pm.data_dir {
        cluster.insert("data_dir".to_owned(), dir.display().to_string());
    }
    if let Some(socket) = &pm.socket {
        cluster.insert("socket".to_owned(), socket.display().to_string());
    }
    Event {
        kind: Some(EventType::ClusterAttached),
        ts: format_ts(std::time::SystemTime::now()),
        host: host.to_owned(),
        postmaster_pid: Some(pm.pid),
        cluster: Some(cluster),
        ..Event::default()
    }
}
