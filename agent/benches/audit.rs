//! `cargo bench -p dbward-agent --bench audit`: sustained appends into the local audit log
//! with the default fsync policy, and spool replay (read back, filter, encode, gzip), each
//! printed as events/s and as a ratio to the 100,000 events/s goal. For the one-core figure
//! pin it: `taskset -c 0 cargo bench -p dbward-agent --bench audit`.
//!
//! With `DBWARD_BENCH_PGBENCH=1` it also runs pgbench's TPC-B-like workload against a
//! temporary PostgreSQL 15 cluster with no auditing and with pgAudit (`pgaudit.log = 'all'`),
//! and, when `DBWARD_BENCH_AGENT` holds a command that runs the agent auditing every
//! statement of that cluster, with dbward; it prints the TPS of each and the ratios.
//! `DBWARD_BENCH_PGBENCH_SECS` sets the length of each run (default 30).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dbward_agent::audit::event::{Extra, Statement};
use dbward_agent::audit::{AuditConfig, AuditEvent, AuditLog, AuditOptions};
use dbward_agent::stream::StreamConfig;
use dbward_agent::stream::filter::Filter;
use dbward_agent::stream::reader::AuditReader;
use dbward_agent::stream::sender::encode_body;

const GOAL: f64 = 100_000.0;
const REPLAY_EVENTS: u64 = 200_000;

fn event(n: u64) -> AuditEvent {
    AuditEvent::Statement(Statement {
        session_id: format!("s{}", n % 64),
        statement: format!(
            "UPDATE pgbench_accounts SET abalance = abalance + {} WHERE aid = {}",
            n % 5000,
            n % 100_000
        ),
        outcome: "audit".into(),
        rule: Some("audit-writes".into()),
        class: Some("write".into()),
        extra: Extra::new(),
    })
}

fn open(dir: &Path) -> AuditLog {
    let config = AuditConfig {
        dir: dir.join("audit"),
        key_file: dir.join("audit.key"),
        ..AuditConfig::default()
    };
    AuditLog::open(AuditOptions {
        config,
        host: "bench".into(),
    })
    .expect("open audit log")
}

/// CPU time (user + system, all threads) this process has used, from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).expect("stat format");
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().expect("tick count"))
        .collect();
    // Linux reports these in USER_HZ, which is 100 on every supported architecture.
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

/// Runs `f`, printing its events per wall-clock second and per CPU second (the one-core rate,
/// robust against other load on the machine).
fn measured(name: &str, f: impl FnOnce() -> u64) {
    let (wall, cpu) = (Instant::now(), cpu_time());
    let events = f();
    let (wall, cpu) = (wall.elapsed(), cpu_time().saturating_sub(cpu));
    let per_wall = events as f64 / wall.as_secs_f64();
    let per_cpu = events as f64 / cpu.as_secs_f64().max(0.01);
    println!(
        "{name}: {events} events in {wall:.2?} = {per_wall:.0} events/s ({:.2}× the 100,000 events/s goal); \
         {cpu:.2?} CPU = {per_cpu:.0} events per CPU-second ({:.2}× the goal)",
        per_wall / GOAL,
        per_cpu / GOAL
    );
}

/// Appends `n` events and waits until they are durable; returns the elapsed time.
fn append_run(n: u64) -> Duration {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = open(tmp.path());
    let start = Instant::now();
    for i in 0..n {
        black_box(log.append(&event(i)).expect("append"));
    }
    log.flush_blocking().expect("flush");
    start.elapsed()
}

/// Reads `dir`'s log back as the streamer does (read, filter, body, gzip) in batches.
fn replay(dir: &Path, upto: u64) -> u64 {
    let filter = Filter::new(&StreamConfig::default());
    let mut reader = AuditReader::new(&dir.join("audit"), 0);
    let mut sent = 0;
    loop {
        let batch = reader.read(upto, 1000, 4 << 20).expect("read");
        if batch.records.is_empty() {
            return sent;
        }
        let lines: Vec<&[u8]> = batch
            .records
            .iter()
            .filter(|r| filter.keep(&r.peek))
            .map(|r| r.line.as_slice())
            .collect();
        let body = encode_body("bench", &lines);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &body).expect("gzip");
        black_box(gz.finish().expect("gzip"));
        sent += lines.len() as u64;
    }
}

fn benches(c: &mut Criterion) {
    if std::env::var_os("DBWARD_BENCH_PGBENCH").is_some() {
        pgbench::compare();
    }
    measured(
        "sustained append (default fsync 200 ms, until durable)",
        || {
            append_run(REPLAY_EVENTS);
            REPLAY_EVENTS
        },
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    let upto = {
        let log = open(tmp.path());
        for i in 0..REPLAY_EVENTS {
            log.append(&event(i)).expect("append");
        }
        let upto = log.flush_blocking().expect("flush");
        log.close().expect("close");
        upto
    };
    measured("spool replay (read, filter, encode, gzip)", || {
        replay(tmp.path(), upto)
    });

    let mut group = c.benchmark_group("audit");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    group.bench_function("append_until_durable", |b| b.iter_custom(append_run));
    group.throughput(Throughput::Elements(upto));
    group.bench_function("replay_200k", |b| b.iter(|| replay(tmp.path(), upto)));
    group.finish();
}

criterion_group!(audit, benches);
criterion_main!(audit);

/// pgbench TPC-B-like TPS: no audit vs pgAudit vs dbward.
mod pgbench {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    const BIN: &str = "/usr/lib/postgresql/15/bin";
    const PORT: &str = "54329";
    const CLIENTS: &str = "4";

    fn as_postgres(program: &str) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--", &format!("{BIN}/{program}")]);
        cmd
    }

    fn check(cmd: &mut Command, what: &str) -> String {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
        assert!(
            out.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    struct Cluster {
        data: PathBuf,
        socket: PathBuf,
    }

    impl Cluster {
        fn init(root: &Path) -> Self {
            let data = root.join("data");
            let socket = root.join("sock");
            std::fs::create_dir_all(&socket).expect("socket dir");
            check(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(root),
                "chown",
            );
            check(
                as_postgres("initdb")
                    .args(["--auth=trust", "-U", "postgres", "-D"])
                    .arg(&data)
                    .stdout(Stdio::null()),
                "initdb",
            );
            Self { data, socket }
        }

        fn start(&self, extra: &[&str]) {
            let mut opts = format!(
                "-p {PORT} -k {} -c listen_addresses='' -c logging_collector=on -c log_directory=log",
                self.socket.display()
            );
            for e in extra {
                opts.push_str(&format!(" -c {e}"));
            }
            check(
                as_postgres("pg_ctl")
                    .args(["-w", "-D"])
                    .arg(&self.data)
                    .args(["-o", &opts, "-l"])
                    .arg(self.data.join("startup.log"))
                    .arg("start"),
                "pg_ctl start",
            );
        }

        fn stop(&self) {
            check(
                as_postgres("pg_ctl")
                    .args(["-w", "-m", "fast", "-D"])
                    .arg(&self.data)
                    .arg("stop"),
                "pg_ctl stop",
            );
        }

        fn pgbench(&self, args: &[&str]) -> String {
            check(
                as_postgres("pgbench")
                    .args(["-h"])
                    .arg(&self.socket)
                    .args(["-p", PORT, "-U", "postgres"])
                    .args(args)
                    .arg("postgres"),
                "pgbench",
            )
        }

        fn psql(&self, sql: &str) {
            check(
                as_postgres("psql")
                    .args(["-h"])
                    .arg(&self.socket)
                    .args(["-p", PORT, "-U", "postgres", "-qc", sql, "postgres"]),
                "psql",
            );
        }
    }

    fn tps(output: &str) -> f64 {
        output
            .lines()
            .find_map(|l| {
                l.strip_prefix("tps = ")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no tps line in pgbench output:\n{output}"))
    }

    fn run(cluster: &Cluster, secs: &str) -> f64 {
        tps(&cluster.pgbench(&["-c", CLIENTS, "-j", "2", "-T", secs, "-n"]))
    }

    /// Starts the agent command with the cluster's socket directory, port and data directory
    /// in `PGHOST`, `PGPORT` and `PGDATA`.
    fn start_agent(command: &str, cluster: &Cluster) -> Child {
        let child = Command::new("sh")
            .args(["-c", &format!("exec {command}")])
            .env("PGHOST", &cluster.socket)
            .env("PGPORT", PORT)
            .env("PGDATA", &cluster.data)
            .spawn()
            .expect("start the agent");
        std::thread::sleep(Duration::from_secs(3));
        child
    }

    /// SIGTERM, then SIGKILL if the agent has not exited within 10 s.
    fn stop_agent(agent: &mut Child) {
        let _ = Command::new("kill")
            .args(["-TERM", &agent.id().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(agent.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("the agent ignored SIGTERM for 10 s; killing it");
        let _ = agent.kill();
        let _ = agent.wait();
    }

    /// Rounds of the comparison (`DBWARD_BENCH_ROUNDS`, default 3).
    fn rounds() -> usize {
        std::env::var("DBWARD_BENCH_ROUNDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(3)
    }

    /// Runs the comparison and prints TPS and ratios.
    pub fn compare() {
        let secs = std::env::var("DBWARD_BENCH_PGBENCH_SECS").unwrap_or_else(|_| "30".into());
        let root = tempfile::Builder::new()
            .prefix("dbward-pgbench")
            .tempdir()
            .expect("tempdir");
        let cluster = Cluster::init(root.path());

        cluster.start(&[]);
        cluster.pgbench(&["-i", "-s", "10", "-q"]);
        cluster.stop();
        // TPC-B on a small VM varies by a tenth or more from run to run, so the three
        // configurations are measured in alternating rounds and each is reported by its
        // median round. Every measured run follows a warm-up and starts from a checkpoint
        // with no dirty pages left by the previous one, so no order is favoured.
        let measured = |cluster: &Cluster| {
            run(cluster, "10");
            cluster.psql("CHECKPOINT");
            // SAFETY: sync(2) has no preconditions.
            unsafe { libc::sync() };
            run(cluster, &secs)
        };
        let agent = std::env::var("DBWARD_BENCH_AGENT").ok();
        let (mut nones, mut dbwards, mut pgaudits) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds() {
            cluster.start(&[]);
            nones.push(measured(&cluster));
            if let Some(command) = &agent {
                let mut agent = start_agent(command, &cluster);
                dbwards.push(measured(&cluster));
                stop_agent(&mut agent);
            }
            cluster.stop();
            cluster.start(&["shared_preload_libraries=pgaudit", "pgaudit.log=all"]);
            cluster.psql("CREATE EXTENSION IF NOT EXISTS pgaudit");
            pgaudits.push(measured(&cluster));
            cluster.stop();
        }
        let median = |runs: &mut Vec<f64>| {
            runs.sort_by(f64::total_cmp);
            runs[runs.len() / 2]
        };
        let rounds_of = |runs: &[f64]| {
            runs.iter()
                .map(|t| format!("{t:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "pgbench TPC-B-like rounds (tps): no audit [{}], pgAudit [{}], dbward [{}]",
            rounds_of(&nones),
            rounds_of(&pgaudits),
            rounds_of(&dbwards)
        );
        let none = median(&mut nones);
        let pgaudit = median(&mut pgaudits);
        let dbward = (!dbwards.is_empty()).then(|| median(&mut dbwards));

        println!(
            "pgbench TPC-B-like, {CLIENTS} clients, {secs} s per run, median of {} rounds:",
            nones.len()
        );
        println!("  no audit          {none:10.1} tps");
        println!(
            "  pgAudit log=all   {pgaudit:10.1} tps  ({:.3}× no audit)",
            pgaudit / none
        );
        match dbward {
            Some(d) => println!(
                "  dbward            {d:10.1} tps  ({:.3}× no audit, goal ≥ 0.97; {:.3}× pgAudit, goal > 1)",
                d / none,
                d / pgaudit
            ),
            None => println!(
                "  dbward            not run (set DBWARD_BENCH_AGENT to the command that runs the agent)"
            ),
        }
    }
}
