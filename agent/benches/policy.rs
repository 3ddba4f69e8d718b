//! Policy benchmark: classification + evaluation of a mixed corpus (the classification
//! corpus plus pgbench traffic with varying literals) against the shipped policies, with the
//! fingerprint cache warm and uncached. Prints statements/s against the 200,000/s-per-core
//! goal and the uncached p99 latency against the 50 µs goal (statements ≤ 4 KiB).
//!
//! Run: `cargo bench -p dbward-agent --bench policy`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput};
use dbward_agent::policy::classify::NoPrepared;
use dbward_agent::policy::{Facts, PolicySet};

const WARM_GOAL_PER_SEC: f64 = 200_000.0;
const UNCACHED_P99_GOAL: Duration = Duration::from_micros(50);
const MAX_LEN: usize = 4 * 1024;

#[path = "../tests/common/corpus.rs"]
mod corpus;

/// The corpus statements of at most [`MAX_LEN`] bytes.
fn corpus() -> Vec<String> {
    corpus::entries()
        .into_iter()
        .map(|entry| entry.sql)
        .filter(|sql| sql.len() <= MAX_LEN)
        .collect()
}

/// pgbench tpcb-like traffic: the same shapes with different literals.
fn pgbench_traffic(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let (aid, tid, bid, delta) = (i * 7919 % 100_000 + 1, i % 10 + 1, i % 3 + 1, i as i64 % 5000 - 2500);
            match i % 6 {
                0 => "BEGIN;".to_string(),
                1 => format!("UPDATE pgbench_accounts SET abalance = abalance + {delta} WHERE aid = {aid};"),
                2 => format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"),
                3 => format!("UPDATE pgbench_tellers SET tbalance = tbalance + {delta} WHERE tid = {tid};"),
                4 => format!("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({tid}, {bid}, {aid}, {delta}, CURRENT_TIMESTAMP);"),
                _ => "END;".to_string(),
            }
        })
        .collect()
}

fn facts() -> Vec<Facts> {
    [
        &[("application_name", "claude-code"), ("db_user", "app")][..],
        &[("client_user", "alice"), ("db_user", "postgres")][..],
        &[("db_user", "orders_api"), ("source_addr", "10.20.1.2")][..],
    ]
    .iter()
    .map(|pairs| Facts::from_pairs(pairs).expect("facts"))
    .collect()
}

fn policy() -> PolicySet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    PolicySet::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"))
}

fn mixed() -> Vec<String> {
    let mut statements = corpus();
    statements.extend(pgbench_traffic(2_000));
    statements
}

fn evaluate_all(policy: &PolicySet, statements: &[String], facts: &[Facts], now: SystemTime) {
    for (i, sql) in statements.iter().enumerate() {
        black_box(policy.evaluate(&facts[i % facts.len()], sql, now));
    }
}

fn decide_uncached(policy: &PolicySet, sql: &str, facts: &Facts, now: SystemTime) {
    let classification = policy.classifier().classify_uncached(sql, &NoPrepared);
    black_box(policy.decide(facts, classification.into(), now));
}

fn criterion_benches(
    c: &mut Criterion,
    policy: &PolicySet,
    statements: &[String],
    facts: &[Facts],
) {
    let now = SystemTime::now();
    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Elements(statements.len() as u64));
    evaluate_all(policy, statements, facts, now);
    group.bench_function("evaluate_mixed_warm_cache", |b| {
        b.iter(|| evaluate_all(policy, statements, facts, now));
    });
    group.bench_function("evaluate_mixed_uncached", |b| {
        b.iter(|| {
            for (i, sql) in statements.iter().enumerate() {
                decide_uncached(policy, sql, &facts[i % facts.len()], now);
            }
        });
    });
    group.finish();
}

/// Statements/s over several passes of the warm mixed corpus on one thread.
fn warm_rate(policy: &PolicySet, statements: &[String], facts: &[Facts]) -> f64 {
    let now = SystemTime::now();
    evaluate_all(policy, statements, facts, now);
    let passes = 20;
    let start = Instant::now();
    for _ in 0..passes {
        evaluate_all(policy, statements, facts, now);
    }
    (passes * statements.len()) as f64 / start.elapsed().as_secs_f64()
}

/// Median of several timed runs of `f`.
fn median_time(mut f: impl FnMut()) -> Duration {
    let mut runs: Vec<Duration> = (0..7)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    runs.sort();
    runs[runs.len() / 2]
}

/// Uncached latency per statement (the median of several runs each): p50, p99, and the
/// slowest statements with the share of the time spent in the SQL parser alone.
fn uncached_latency(
    policy: &PolicySet,
    statements: &[String],
    facts: &[Facts],
) -> (Duration, Duration, Vec<(Duration, Duration, String)>) {
    let now = SystemTime::now();
    let mut timed: Vec<(Duration, &String)> = statements
        .iter()
        .enumerate()
        .map(|(i, sql)| {
            let t = median_time(|| decide_uncached(policy, sql, &facts[i % facts.len()], now));
            (t, sql)
        })
        .collect();
    timed.sort();
    let p50 = timed[timed.len() / 2].0;
    let p99 = timed[(timed.len() * 99 / 100).min(timed.len() - 1)].0;
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    let slowest = timed
        .iter()
        .rev()
        .take(5)
        .map(|(t, sql)| {
            let parse = median_time(|| {
                let _ = black_box(sqlparser::parser::Parser::parse_sql(&dialect, sql));
            });
            (
                *t,
                parse,
                sql.chars().take(70).collect::<String>().replace('\n', " "),
            )
        })
        .collect();
    (p50, p99, slowest)
}

fn main() {
    let policy = policy();
    let statements = mixed();
    let facts = facts();
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    criterion_benches(&mut c, &policy, &statements, &facts);
    c.final_summary();

    let rate = warm_rate(&policy, &statements, &facts);
    let corpus_only = corpus();
    let (p50, p99, slowest) = uncached_latency(&policy, &corpus_only, &facts);
    let (hits, misses) = policy.classifier().stats();
    println!();
    println!(
        "policy benchmark ({} mixed statements, {} distinct corpus statements)",
        statements.len(),
        corpus_only.len()
    );
    println!(
        "  warm cache: {rate:.0} statements/s on one core = {:.2}x the {WARM_GOAL_PER_SEC:.0}/s goal",
        rate / WARM_GOAL_PER_SEC
    );
    println!(
        "  uncached:   p50 {p50:?}, p99 {p99:?} (goal p99 <= {UNCACHED_P99_GOAL:?}: {})",
        if p99 <= UNCACHED_P99_GOAL {
            "met"
        } else {
            "NOT met"
        }
    );
    println!("  cache: {hits} hits, {misses} misses");
    println!("  slowest uncached (total / a full sqlparser parse, which plain SELECTs skip):");
    for (total, parse, sql) in slowest {
        println!("    {total:?} / {parse:?}  {sql}");
    }
}
