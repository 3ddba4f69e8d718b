//! `cargo bench -p dbward-agent --bench audit`: sustained appends into the local audit log
//! with the default fsync policy, and spool replay (read back, filter, encode, gzip), each
//! printed as events/s and as a ratio to the 100,000 events/s goal.

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

fn report(name: &str, events: u64, elapsed: Duration) {
    let rate = events as f64 / elapsed.as_secs_f64();
    println!(
        "{name}: {events} events in {elapsed:.2?} = {rate:.0} events/s ({:.2}× the 100,000 events/s goal)",
        rate / GOAL
    );
}

fn benches(c: &mut Criterion) {
    report(
        "sustained append (default fsync 200 ms, until durable)",
        REPLAY_EVENTS,
        append_run(REPLAY_EVENTS),
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
    let start = Instant::now();
    let replayed = replay(tmp.path(), upto);
    report(
        "spool replay (read, filter, encode, gzip)",
        replayed,
        start.elapsed(),
    );

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
