//! `dbward run`: the agent daemon. Wires the stages: kernel capture → correlation →
//! policy (for sessions that bypass the shim) and the socket shim → audit log, live stream,
//! central stream.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{error, info, warn};

use crate::approval::ApprovalChannel;
use crate::approval::groups::OsGroups;
use crate::approval::local::LocalApprovals;
use crate::approval::remote::RemoteApprovals;
use crate::audit::{AuditEvent, AuditLog, AuditOptions};
use crate::capture::decode::KernelEvent;
use crate::capture::loader::StatementPoints;
use crate::capture::{Capture, CaptureBatch, CaptureMessage, Targets};
use crate::config::{AgentConfig, DEFAULT_CONFIG};
use crate::control::status::{SharedStatus, StatusView};
use crate::enforce::state::StateFile;
use crate::enforce::{Enforcer, HeldBackend};
use crate::event::{Event, EventType, format_ts};
use crate::pipeline;
use crate::policy::Unmediated;
use crate::policy::store::PolicyStore;
use crate::session::{Clock, Correlator, HostInspector};
use crate::shim::Shim;
use crate::shim::events::{EventSink, ShimEvent};
use crate::shim::policy_gate::PolicyGate;

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
    /// Policy directory (overrides the configuration).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Audit log directory (overrides the configuration).
    #[arg(long)]
    pub audit_dir: Option<PathBuf>,
    /// Also print every event as a JSON line on stdout.
    #[arg(long)]
    pub stdout: bool,
    /// Stop statements of sessions that bypass the shim in the kernel (SIGSTOP before a
    /// Query is parsed or an Execute runs) for a decision when the policy can hold or end
    /// them (`unmediated: hold|terminate|block`); plain statements of kinds no rule could
    /// stop run without a stop. Without it (or `[holds] unmediated = true` in agent.toml)
    /// such statements are only recorded.
    #[arg(long)]
    pub hold_unmediated: bool,
    /// Where the kernel reads statements: `auto` puts one probe on the call that reports
    /// each statement where the server binary's machine code shows it (else `classic`);
    /// `classic` probes `pgstat_report_activity` and `pq_getbyte`. Default: agent.toml's
    /// `[capture] statement_points`, else `auto`.
    #[arg(long, value_enum)]
    pub statement_points: Option<StatementPoints>,
    /// State file of backends stopped for a decision (resumed, fail closed, at start).
    #[arg(long, default_value = crate::enforce::state::DEFAULT_HELD_STATE)]
    pub held_state: PathBuf,
}

/// How often events from the shim (and the remote approval channel) are collected.
const SHIM_DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(2);

/// How long a stopping agent waits for the capture to hand over what the kernel buffered.
const STOP_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the agent until SIGINT or SIGTERM.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = AgentConfig::load(&args.config)?;
    if let Some(dir) = &args.policy {
        config.policy.dir = dir.clone();
    }
    if let Some(dir) = &args.audit_dir {
        config.audit.key_file = dir.join("audit.key");
        config.audit.dir = dir.clone();
    }
    let problems = config.check();
    if !problems.is_empty() {
        bail!(
            "{}: invalid settings:\n  {}",
            args.config.display(),
            problems.join("\n  ")
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(agent(config, args))
}

/// Appends to the audit log and feeds the live stream; counts what it published.
struct Publisher {
    audit: AuditLog,
    live: broadcast::Sender<Arc<Event>>,
    print: bool,
    published: u64,
    metrics: crate::metrics::Metrics,
}

impl Publisher {
    fn publish(&mut self, event: Event) {
        match pipeline::audit_record(&event) {
            Some(Ok(record)) => {
                if let Err(e) = self.audit.append_record(record) {
                    error!(error = %e, "cannot append to the audit log");
                }
            }
            Some(Err(e)) => error!(error = %e, "cannot encode an audit record"),
            None => {}
        }
        if self.print
            && let Ok(line) = serde_json::to_string(&event)
        {
            println!("{line}");
        }
        self.published += 1;
        self.metrics.observe(&event);
        // Nobody tails most of the time: the event is then dropped here, not shared.
        if self.live.receiver_count() > 0 {
            let _ = self.live.send(Arc::new(event));
        }
    }
}

async fn agent(config: AgentConfig, mut args: RunArgs) -> anyhow::Result<ExitCode> {
    args.hold_unmediated |= config.holds.unmediated;
    let host = config.host();
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| config.control_socket());
    let mut targets = Targets {
        pids: config.capture.pids.clone(),
        binaries: config.capture.binaries.clone(),
        holds: args.hold_unmediated,
        points: args
            .statement_points
            .unwrap_or(config.capture.statement_points),
    };
    targets.pids.extend(&args.pids);
    targets.binaries.extend(args.binaries.iter().cloned());

    // Fail closed: without a valid policy the agent does not start.
    let policy = Arc::new(PolicyStore::open(&config.policy.dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot load the policy in {}:\n{e}\n(run `dbward policy check --policy {}`)",
            config.policy.dir.display(),
            config.policy.dir.display()
        )
    })?);
    let audit = AuditLog::open(AuditOptions {
        config: config.audit.clone(),
        host: host.clone(),
    })
    .with_context(|| {
        format!(
            "cannot open the audit log in {}",
            config.audit.dir.display()
        )
    })?;
    audit.append(&AuditEvent::AgentStart(crate::audit::event::AgentStart {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        extra: serde_json::Map::from_iter([(
            "policy_sha256".to_owned(),
            policy.current().content_hash().into(),
        )]),
    }))?;

    let mut capture = Capture::start(targets).context("cannot start the kernel capture")?;
    let block_guard = crate::block::start(&mut capture, &config.block).context(
        "[block] is enabled but direct connections cannot be refused; not starting unprotected",
    )?;
    let mut holds = crate::enforce::switch::HoldSwitch::new(
        capture
            .take_hold_flags()
            .context("cannot open the kernel hold maps")?,
        args.hold_unmediated,
    )
    .context("cannot configure the kernel holds")?;
    holds
        .apply(&policy.current())
        .context("cannot configure the kernel holds")?;
    let listener = crate::control::bind(&socket)
        .with_context(|| format!("cannot listen on the control socket {}", socket.display()))?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown = move || {
        let mut rx = shutdown_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let status: SharedStatus = Arc::new(std::sync::Mutex::new(StatusView {
        version: env!("CARGO_PKG_VERSION").into(),
        started: format_ts(std::time::SystemTime::now()),
        ..StatusView::default()
    }));
    let approvals = Arc::new(LocalApprovals::new(Arc::new(OsGroups)));
    let mut shim_sink = None;
    let mut stream_metrics = None;
    let (shim_tx, mut shim_rx) = mpsc::channel::<ShimEvent>(65536);
    let mut tasks = Vec::new();
    if let Some(guard) = block_guard {
        tasks.push(tokio::spawn(guard.run(shutdown())));
    }
    let channel: Arc<dyn ApprovalChannel> = match &config.approver {
        Some(remote) => Arc::new(
            RemoteApprovals::new(remote, EventSink::new(shim_tx.clone()))
                .context("cannot use the [approver] settings")?,
        ),
        None => approvals.clone(),
    };
    let (enforce_tx, mut enforce_rx) = mpsc::channel::<Event>(4096);
    let terminator = crate::enforce::mariadb::Terminator::start(enforce_tx.clone(), "root".into());
    // Each MariaDB server's unix socket, for its administrative `KILL`s.
    let mut mariadb_sockets: std::collections::HashMap<u32, std::path::PathBuf> =
        std::collections::HashMap::new();
    let enforcer = Enforcer::new(
        channel.clone(),
        enforce_tx,
        StateFile::new(&args.held_state),
        host.clone(),
    );
    match enforcer.recover() {
        Ok(0) => {}
        Ok(n) => warn!(backends = n, "ended backends a previous agent left held"),
        Err(e) => error!(error = %e, "cannot recover held backends"),
    }
    // Loopback TCP clients of the shim, identified from the kernel's connect records.
    let shim_clients = Arc::new(crate::session::tcp_clients::TcpClients::default());
    let mut shim_ports = Vec::new();
    if let Some(shim_config) = config.shim_config() {
        let shim = Shim::new(
            shim_config,
            Arc::new(PolicyGate::new(policy.clone())),
            channel.clone(),
            shim_tx.clone(),
        )?
        .with_peer_identity(shim_clients.clone())
        .start_on_own_thread(shutdown())
        .await
        .context("cannot start the shim")?;
        shim_sink = Some(shim.events.clone());
        for addr in &shim.tcp_addrs {
            capture.watch_port(addr.port())?;
            shim_ports.push(addr.port());
            info!(%addr, "shim listening");
        }
        tasks.push(tokio::spawn(shim.finished()));
    }
    drop(shim_tx);

    if config.stream.enabled {
        let streamer = crate::stream::Streamer::new(
            crate::stream::streamer::StreamOptions {
                config: config.stream.clone(),
                audit_dir: config.audit.dir.clone(),
                host: host.clone(),
                retention_max_files: config.audit.retention_max_files,
            },
            audit.subscribe_synced(),
        )?;
        stream_metrics = Some(streamer.metrics());
        let stop = shutdown();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = streamer.run(stop).await {
                error!(error = %e, "streaming to the central approver stopped");
            }
        }));
    }

    let metrics = crate::metrics::Metrics::enabled(config.metrics.is_some());
    if let Some(listen) = &config.metrics {
        let sources = crate::metrics::Sources {
            stream: stream_metrics.clone(),
            audit_synced: audit.subscribe_synced(),
            audit_resumed_after: audit.open_report().resumed_after,
            audit_dir: config.audit.dir.clone(),
            shim_events: shim_sink.clone(),
        };
        let server = crate::metrics::serve(listen, metrics.clone(), sources, shutdown()).await?;
        tasks.push(tokio::spawn(server));
    }

    let (reload_tx, mut reload_rx) = mpsc::channel::<Event>(16);
    {
        let host = host.clone();
        let store = policy.clone();
        tasks.push(tokio::spawn(async move {
            let result = crate::policy::store::watch(store, move |result| {
                let mut event = Event {
                    kind: Some(EventType::PolicyReload),
                    ts: format_ts(std::time::SystemTime::now()),
                    host: host.clone(),
                    ..Event::default()
                };
                match result {
                    Ok(outcome) if !outcome.changed => return,
                    Ok(outcome) => {
                        info!(sha256 = %outcome.content_hash, "policy reloaded");
                        event.policy_sha256 = Some(outcome.content_hash);
                        event.outcome = Some("loaded".into());
                    }
                    Err(e) => {
                        error!(error = %e, "new policy rejected; the previous one stays active");
                        event.outcome = Some("rejected".into());
                        event.error = Some(e.to_string());
                    }
                }
                let _ = reload_tx.try_send(event);
            })
            .await;
            if let Err(e) = result {
                warn!(error = %e, "policy files are not watched; reload with SIGHUP only");
            }
        }));
    }

    let (live, _) = broadcast::channel::<Arc<Event>>(65536);
    // Batches of up to `MAX_BATCH` messages: at most 65536 messages queued.
    let (capture_tx, mut capture_rx) =
        mpsc::channel::<CaptureBatch>(65536 / crate::capture::MAX_BATCH);
    let (capture_stop, capture_stop_rx) = watch::channel(false);
    let mut capture_task = tokio::spawn(capture.run(capture_tx, capture_stop_rx));
    // After SIGTERM/SIGINT the capture drains the kernel's buffer and ends; the loop records
    // what it sent, then stops (or gives up after `STOP_DRAIN`).
    let mut stopping: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let control_task = tokio::spawn(crate::control::serve(
        listener,
        crate::control::ControlState {
            events: live.clone(),
            approvals: Some(approvals.clone()),
            status: status.clone(),
        },
    ));
    let mut refresh = tokio::time::interval(std::time::Duration::from_secs(1));
    // Shim events are drained on a tick rather than awaited: a waiting receiver would be woken
    // (a futex call on the shim's thread) for every statement the shim relays.
    let mut shim_drain = tokio::time::interval(SHIM_DRAIN_INTERVAL);
    shim_drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shim_open = true;
    info!(socket = %socket.display(), host, policy = %config.policy.dir.display(), audit = %config.audit.dir.display(), "dbward agent running");

    let mut publisher = Publisher {
        audit,
        live,
        print: args.stdout,
        published: 0,
        metrics,
    };
    let agent_pid = std::process::id();
    let mut decisions = crate::policy::memo::DecisionMemo::new();
    let mut correlator = Correlator::new(host.clone(), Clock::now(), HostInspector);
    correlator.share_own_listener_clients(shim_ports, shim_clients);
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut drops_total = std::collections::BTreeMap::new();
    let result = loop {
        tokio::select! {
            batch = capture_rx.recv() => {
                let Some(batch) = batch else {
                    if stopping.is_some() {
                        break Ok(());
                    }
                    let cause = match (&mut capture_task).await {
                        Ok(Ok(())) => "it ended".to_owned(),
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => e.to_string(),
                    };
                    break Err(anyhow::anyhow!("the kernel capture stopped: {cause}"));
                };
                for message in batch {
                    let event = match message {
                        CaptureMessage::Kernel(held @ KernelEvent::Held { origin, at_execute, buf_addr, full_len, .. }) => {
                            let backend = HeldBackend { pid: origin.pid, buf_addr, len: full_len as usize, at_execute };
                            publisher.metrics.kernel_stop(at_execute);
                            match correlator.handle(held) {
                                // The shim's own upstream session: the shim already decided.
                                Some(e) if e.client.as_ref().and_then(|c| c.pid) == Some(agent_pid) => {
                                    let _ = crate::enforce::neutralise::resume(backend.pid);
                                }
                                Some(e) => {
                                    let facts = pipeline::facts_of(&e);
                                    let sql = e.sql.clone().unwrap_or_default();
                                    let decision = policy.current().evaluate(&facts, &sql, std::time::SystemTime::now());
                                    enforcer.on_held(backend, e, decision);
                                }
                                None => {
                                    warn!(pid = backend.pid, "held backend without an event: resuming it");
                                    let _ = crate::enforce::neutralise::resume(backend.pid);
                                }
                            }
                            None
                        }
                        CaptureMessage::Kernel(k) => {
                            if let KernelEvent::Exit { origin } = &k {
                                for end in correlator.mariadb_server_exited(origin.pid, origin.ktime_ns) {
                                    publisher.publish(end);
                                }
                            }
                            correlator.handle(k).map(|mut e| {
                            let own = e.server_pid.zip(e.connection_id).is_some_and(|(pid, id)| terminator.own().contains(pid, id));
                            if e.kind == Some(EventType::Statement) && own {
                                e.source = Some("kernel".into());
                                e.unmediated = Some(false);
                                e.reason = Some("the agent's own administrative connection".into());
                            } else if e.kind == Some(EventType::Statement) {
                                let unmediated = pipeline::judge_kernel_statement(&mut e, &policy.current(), agent_pid, &mut decisions);
                                // Enforcement on unmediated sessions is on with the holds.
                                if let (Some(pid), Some(action)) = (e.server_pid, unmediated)
                                    && action != Unmediated::Audit
                                    && holds.is_on()
                                {
                                    let socket = mariadb_sockets.get(&pid).cloned();
                                    terminator.end_session(&e, action, socket);
                                }
                                if holds.is_on()
                                    && let Some(pid) = e.backend_pid
                                    && holds.app_changed(pid, e.application_name.as_deref())
                                {
                                    // The kernel fell back to the default mask at the change.
                                    holds.session_seen(pid, Some(pipeline::facts_of(&e)), &policy.current());
                                }
                            } else {
                                e.source = Some("kernel".into());
                            }
                            e
                        })
                        }
                        CaptureMessage::Mariadb(server) => {
                            if let Some(socket) = server.sockets.first() {
                                mariadb_sockets.insert(server.pid, socket.clone());
                            }
                            let event = mariadb_event(&host, &server);
                            if let Ok(mut s) = status.lock() {
                                let binary = format!("{} (MariaDB)", server.exe.display());
                                if !s.attached_binaries.contains(&binary) {
                                    s.attached_binaries.push(binary);
                                }
                                let ports = event.cluster.as_ref().and_then(|c| c.get("port")).map_or("", String::as_str);
                                s.clusters.insert(server.pid, format!("MariaDB port {ports}"));
                            }
                            Some(event)
                        }
                        CaptureMessage::Cluster(pm, points) => {
                            correlator.add_postmaster(pm.pid, pm.port, pm.socket.as_ref().map(|p| p.display().to_string()));
                            if let Ok(mut s) = status.lock() {
                                let binary = format!("{} ({} statement points)", pm.exe.display(), points.name());
                                if !s.attached_binaries.contains(&binary) {
                                    s.attached_binaries.push(binary);
                                }
                                let port = pm.port.map_or_else(|| "?".to_owned(), |p| p.to_string());
                                let dir = pm.data_dir.as_ref().map_or_else(String::new, |d| d.display().to_string());
                                s.clusters.insert(pm.pid, format!("port {port} {dir}"));
                            }
                            Some(cluster_event(&host, &pm, points))
                        }
                        CaptureMessage::Existing(backend) => correlator.add_existing(&backend, crate::session::monotonic_ns()),
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
                        match (event.kind, event.backend_pid) {
                            (Some(EventType::SessionStart), Some(pid)) => {
                                let from_shim = event.client.as_ref().and_then(|c| c.pid) == Some(agent_pid);
                                let facts = (!from_shim).then(|| pipeline::facts_of(&event));
                                holds.session_seen(pid, facts, &policy.current());
                            }
                            (Some(EventType::SessionEnd), Some(pid)) => {
                                holds.session_ended(pid);
                                if let Some(id) = &event.session_id {
                                    decisions.forget(id);
                                }
                            }
                            _ => {}
                        }
                        publisher.publish(event);
                    }
                }
            }
            _ = shim_drain.tick(), if shim_open => loop {
                match shim_rx.try_recv() {
                    Ok(event) => publisher.publish(pipeline::from_shim(event, &host)),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        shim_open = false;
                        break;
                    }
                }
            },
            Some(event) = reload_rx.recv() => {
                if event.outcome.as_deref() == Some("loaded")
                    && let Err(e) = holds.apply(&policy.current())
                {
                    error!(error = %e, "cannot apply the reloaded policy to the kernel holds");
                }
                publisher.publish(event);
            }
            _ = refresh.tick() => {
                if let Ok(mut s) = status.lock() {
                    s.live_sessions = correlator.session_count();
                    s.held_statements = approvals.list().len();
                    s.kernel_drops = drops_total.clone();
                    s.shim_events_dropped = shim_sink.as_ref().map_or(0, |sink| sink.dropped());
                    s.policy_sha256 = policy.current().content_hash().to_owned();
                    s.events = publisher.published;
                    s.stream = stream_metrics
                        .as_ref()
                        .and_then(|m| serde_json::to_value(m.snapshot()).ok());
                }
            }
            Some(event) = enforce_rx.recv() => publisher.publish(event),
            _ = async { tokio::select! { _ = sigterm.recv() => {}, _ = sigint.recv() => {} } },
                if stopping.is_none() => {
                let _ = capture_stop.send(true);
                stopping = Some(Box::pin(tokio::time::sleep(STOP_DRAIN)));
            }
            () = async { stopping.as_mut().expect("guarded").await }, if stopping.is_some() => {
                warn!("the kernel capture did not finish draining in time");
                break Ok(());
            }
        }
    };
    enforcer.shutdown();
    while let Ok(event) = enforce_rx.try_recv() {
        publisher.publish(event);
    }
    let _ = shutdown_tx.send(true);
    capture_task.abort();
    control_task.abort();
    for task in tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
    // What the shim recorded up to its end (sessions it closed included).
    while let Ok(event) = shim_rx.try_recv() {
        publisher.publish(pipeline::from_shim(event, &host));
    }
    let _ = std::fs::remove_file(&socket);
    let dropped: u64 = drops_total.values().sum();
    let stop_reason = match &result {
        Ok(()) => "signal".to_owned(),
        Err(e) => e.to_string(),
    };
    let audit = &publisher.audit;
    if let Err(e) = audit.append(&AuditEvent::AgentStop(crate::audit::event::AgentStop {
        reason: stop_reason,
        extra: serde_json::Map::from_iter([("kernel_drops".to_owned(), dropped.into())]),
    })) {
        error!(error = %e, "cannot record the agent stop");
    }
    audit.close()?;
    info!(
        events = publisher.published,
        kernel_drops = dropped,
        "dbward agent stopped"
    );
    result.map(|()| ExitCode::SUCCESS)
}

/// The `cluster_attached` event of a MariaDB server.
fn mariadb_event(host: &str, server: &crate::capture::discover::MariadbServer) -> Event {
    let mut cluster = std::collections::BTreeMap::new();
    cluster.insert("binary".to_owned(), server.exe.display().to_string());
    cluster.insert(
        "server".to_owned(),
        crate::session::mariadb::SERVER.to_owned(),
    );
    if !server.ports.is_empty() {
        let ports: Vec<String> = server.ports.iter().map(u16::to_string).collect();
        cluster.insert("port".to_owned(), ports.join(","));
    }
    if !server.sockets.is_empty() {
        let sockets: Vec<String> = server
            .sockets
            .iter()
            .map(|s| s.display().to_string())
            .collect();
        cluster.insert("socket".to_owned(), sockets.join(","));
    }
    Event {
        kind: Some(EventType::ClusterAttached),
        ts: format_ts(std::time::SystemTime::now()),
        host: host.to_owned(),
        server: Some(crate::session::mariadb::SERVER.into()),
        server_pid: Some(server.pid),
        cluster: Some(cluster),
        source: Some("kernel".into()),
        ..Event::default()
    }
}

fn cluster_event(
    host: &str,
    pm: &crate::capture::discover::Postmaster,
    points: crate::capture::loader::AttachedPoints,
) -> Event {
    let mut cluster = std::collections::BTreeMap::new();
    cluster.insert("binary".to_owned(), pm.exe.display().to_string());
    cluster.insert("statement_points".to_owned(), points.name().to_owned());
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
        source: Some("kernel".into()),
        ..Event::default()
    }
}
