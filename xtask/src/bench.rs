//! `cargo xtask bench …`: each benchmark measures its baseline in the same run and prints
//! the ratio. Durations come from `DBWARD_BENCH_SECS` (default 30 s per measured run).

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use dbward_e2e::pg::{Cluster, PG_BIN};

use crate::{build_release, cargo, root};

/// The benchmarks.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Which {
    /// pgbench -S TPS with the capture attached vs detached, and kernel drops.
    Capture,
    /// As `capture`, with unmediated sessions flagged for kernel holds (`--hold-unmediated`):
    /// the in-kernel pre-screen on `pg_parse_query` runs for every statement.
    Unmediated,
    /// Classification + evaluation throughput and latency (criterion).
    Policy,
    /// Audit appends/s and spool replay rate (criterion), and pgbench TPC-B-like TPS with no
    /// audit vs the agent auditing every statement vs pgAudit.
    Audit,
    /// pgbench -S direct vs through the shim vs through PgBouncer.
    Shim,
    /// Approve → verified decision latency with 1,000 pending requests.
    Approval,
}

/// Runs one benchmark.
pub fn run(which: Which) -> anyhow::Result<()> {
    let secs = seconds().to_string();
    match which {
        Which::Capture => capture(&[], None),
        Which::Unmediated => capture(&["--hold-unmediated"], Some(PGBENCH_IDENTITY)),
        Which::Policy => {
            crate::run(cargo().args(["bench", "-p", "dbward-agent", "--bench", "policy"]))
        }
        Which::Audit => audit(&secs),
        Which::Shim => crate::run(
            Command::new("bash")
                .arg(root().join("agent/benches/shim.sh"))
                .env("DURATION", &secs),
        ),
        Which::Approval => crate::run(cargo().args([
            "run",
            "--release",
            "-p",
            "dbward-approver",
            "--example",
            "bench_approval",
            "--",
            "1000",
        ])),
    }
}

/// The audit log's criterion benchmarks, then pgbench TPC-B-like with no audit, with the
/// release agent auditing every statement, and with pgAudit (`pgaudit.log = 'all'`).
fn audit(secs: &str) -> anyhow::Result<()> {
    build_release()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "")?;
    // Run by `sh -c` with PGDATA set to the benchmark cluster's data directory.
    let agent = format!(
        "{bin} run --config {config} --socket {sock} --pid \"$(head -n1 \"$PGDATA/postmaster.pid\")\" \
         --policy {policies} --audit-dir {audit} --held-state {held}",
        bin = root().join("target/release/dbward").display(),
        config = config.display(),
        sock = dir.path().join("agent.sock").display(),
        policies = root().join("policies").display(),
        audit = dir.path().join("audit").display(),
        held = dir.path().join("held.json").display(),
    );
    crate::run(
        cargo()
            .args(["bench", "-p", "dbward-agent", "--bench", "audit"])
            .env("DBWARD_BENCH_PGBENCH", "1")
            .env("DBWARD_BENCH_PGBENCH_SECS", secs)
            .env("DBWARD_BENCH_AGENT", agent),
    )
}

fn seconds() -> u64 {
    std::env::var("DBWARD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// Result of one pgbench run.
pub struct Pgbench {
    /// Transactions per second (without connection time).
    pub tps: f64,
    /// Transactions processed.
    pub transactions: u64,
}

/// Runs `pgbench` with `args` against `conninfo` and parses its summary.
pub fn pgbench(cluster: &Cluster, args: &[&str]) -> anyhow::Result<Pgbench> {
    let out = Command::new(format!("{PG_BIN}/pgbench"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
        ])
        .args(args)
        .arg("postgres")
        .output()
        .context("running pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench {args:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.split('/').next())
            .map(str::to_owned)
    };
    let tps = field("tps = ")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no tps in pgbench output: {text}"))?;
    let transactions = field("number of transactions actually processed: ")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no transaction count in pgbench output: {text}"))?;
    Ok(Pgbench { tps, transactions })
}

/// `pgbench -i` at the given scale.
pub fn initialise(cluster: &Cluster, scale: u32) -> anyhow::Result<()> {
    let out = Command::new(format!("{PG_BIN}/pgbench"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
            "-i",
            "-q",
            "-s",
        ])
        .arg(scale.to_string())
        .arg("postgres")
        .output()
        .context("running pgbench -i")?;
    if !out.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// For `unmediated`: pgbench is a service whose direct sessions policy only audits (the
/// shipped rules still hold AI agents' statements, so the kernel pre-screen runs for every
/// statement); unidentified sessions count as AI agents and would stop on every read a table
/// rule could match.
const PGBENCH_IDENTITY: &str = "identities:
  - name: pgbench
    kind: service
    groups: [benchmarks]
    match:
      application_name: pgbench
";

/// Detached/attached pairs measured by `capture` (`DBWARD_BENCH_ROUNDS`, default 3): on a
/// small VM one pair varies by a quarter from run to run, so the median pair is reported.
fn rounds() -> usize {
    std::env::var("DBWARD_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3)
}

/// Flushes dirty pages (the previous run's audit log) so their writeback does not land in
/// the next measured run.
fn settle() {
    nix::unistd::sync();
    std::thread::sleep(Duration::from_secs(1));
}

/// pgbench -S with the agent (run with `agent_args`, the shipped policies plus `identity`)
/// attached vs detached, in alternating pairs.
fn capture(agent_args: &[&str], identity: Option<&str>) -> anyhow::Result<()> {
    build_release()?;
    let secs = seconds().to_string();
    let cluster = Cluster::start();
    initialise(&cluster, 10)?;
    let load = ["-S", "-c", "8", "-j", "2", "-T", secs.as_str(), "-n"];
    // Warm the cache so the first measured run is not penalised.
    pgbench(&cluster, &["-S", "-c", "8", "-j", "2", "-T", "5", "-n"])?;

    let dir = tempfile::tempdir()?;
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies)?;
    for entry in std::fs::read_dir(root().join("policies"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, policies.join(path.file_name().expect("file name")))?;
        }
    }
    if let Some(identity) = identity {
        std::fs::write(policies.join("90-bench-identity.yaml"), identity)?;
    }

    let mut pairs = Vec::new();
    let (mut events, mut drops) = (0, 0);
    for round in 0..rounds() {
        settle();
        let detached = pgbench(&cluster, &load)?;
        let agent = BenchAgent::start(&cluster, dir.path(), &policies, round, agent_args)?;
        settle();
        let attached = pgbench(&cluster, &load)?;
        let (published, dropped) = agent.stop()?;
        if published < attached.transactions {
            println!(
                "  WARNING: round {round}: {published} events for {} transactions: statements were lost",
                attached.transactions
            );
        }
        events += published;
        drops += dropped;
        pairs.push((detached, attached));
    }

    println!(
        "bench capture{}: pgbench -S, 8 clients, {secs} s per run, scale 10, {} detached/attached pairs",
        if agent_args.is_empty() {
            String::new()
        } else {
            format!(" (agent {})", agent_args.join(" "))
        },
        pairs.len()
    );
    for (detached, attached) in &pairs {
        println!(
            "  detached {:>10.1} tps   attached {:>10.1} tps   ratio {:.3}",
            detached.tps,
            attached.tps,
            attached.tps / detached.tps
        );
    }
    let mut ratios: Vec<f64> = pairs.iter().map(|(d, a)| a.tps / d.tps).collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!("  ratio      {median:>10.3} median of the pairs (goal >= 0.97)");
    println!("  events     {events:>10} published by the agent (>= one statement per transaction)");
    println!("  dropped    {drops:>10} kernel events (goal 0)");
    Ok(())
}

/// The release agent attached to the bench cluster.
struct BenchAgent(std::process::Child);

impl BenchAgent {
    /// Starts `dbward run` on `cluster` with its files under `dir` (round `round`'s own audit
    /// directory) and gives it two seconds to attach.
    fn start(
        cluster: &Cluster,
        dir: &std::path::Path,
        policies: &std::path::Path,
        round: usize,
        agent_args: &[&str],
    ) -> anyhow::Result<Self> {
        let config = dir.join("agent.toml");
        std::fs::write(&config, "")?;
        let child = Command::new(root().join("target/release/dbward"))
            .args(["run", "--config"])
            .arg(&config)
            .args(["--socket"])
            .arg(dir.join("agent.sock"))
            .args(["--pid", &cluster.pid.to_string()])
            .arg("--policy")
            .arg(policies)
            .arg("--audit-dir")
            .arg(dir.join(format!("audit-{round}")))
            .arg("--held-state")
            .arg(dir.join("held.json"))
            .args(agent_args)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .context("starting dbward")?;
        std::thread::sleep(Duration::from_secs(2));
        Ok(Self(child))
    }

    /// Stops the agent; returns the events it published and the kernel drops it counted.
    fn stop(self) -> anyhow::Result<(u64, u64)> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let out = self.0.wait_with_output()?;
        let log = String::from_utf8_lossy(&out.stderr);
        let stopped = log
            .lines()
            .find(|l| l.contains("dbward agent stopped"))
            .with_context(|| format!("the agent did not stop cleanly: {log}"))?;
        let number = |key: &str| {
            stopped
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse::<u64>().ok())
        };
        let events = number("events=").unwrap_or(0);
        let drops = number("kernel_drops=").context("no kernel_drops in the agent's stop line")?;
        Ok((events, drops))
    }
}
