//! The approval latency harness behind `cargo xtask bench approval`: with `pending`
//! requests held at once (each with an agent long-polling its decision), it times each
//! approve API call until the waiting agent has the decision, has verified it, and has
//! run `release` (the lead's hook that forwards the held statement and reads the first
//! result row). Loopback only; goal p99 < 100 ms with 1,000 pending requests.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dbward_approval_api::{
    ApprovalRequest, ApproverClient, Binding, DecisionVerifier, PrincipalKind, Requester,
    SignedDecision, Vote, statement_sha256,
};
use time::OffsetDateTime;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::config::Config;
use crate::server;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Requests pending at once (default 1,000).
    pub pending: usize,
    /// Storage URL; default a SQLite file in a temp dir.
    pub storage_url: Option<String>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            pending: 1000,
            storage_url: None,
        }
    }
}

/// Latency distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyReport {
    /// Number of samples.
    pub samples: usize,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Worst.
    pub max: Duration,
}

impl LatencyReport {
    /// Nearest-rank percentiles of `samples`.
    pub fn from_samples(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let pick = |p: f64| {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Self {
            samples: samples.len(),
            p50: pick(50.0),
            p95: pick(95.0),
            p99: pick(99.0),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    /// True when p99 is under `goal`.
    pub fn meets(&self, goal: Duration) -> bool {
        self.p99 < goal
    }
}

impl std::fmt::Display for LatencyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "approve → decision verified at agent: n={} p50={:.2?} p95={:.2?} p99={:.2?} max={:.2?}",
            self.samples, self.p50, self.p95, self.p99, self.max
        )
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Setup failed.
    #[error("approval benchmark setup: {0}")]
    Setup(String),
    /// A call failed during the run.
    #[error("approval benchmark run: {0}")]
    Run(String),
}

fn setup<E: std::fmt::Display>(e: E) -> BenchError {
    BenchError::Setup(e.to_string())
}

const HOST_TOKEN: &str = "bench-host-token-0123456789";
const APPROVER_TOKEN: &str = "bench-approver-token-0123456789";

fn config(dir: &Path, storage: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
storage_url = "{storage}"
signing_key_path = "{}"
max_wait_secs = 120

[[hosts]]
name = "bench-db"
token = "{HOST_TOKEN}"

[[approver_tokens]]
token = "{APPROVER_TOKEN}"
principal = "bench-approver"

[[principals]]
name = "bench-approver"
kind = "human"
groups = ["dba"]

[[principals]]
name = "bench-agent"
kind = "ai_agent"
"#,
        dir.join("approver.key").display()
    )
}

fn request(i: usize) -> ApprovalRequest {
    let statement = format!("DELETE FROM bench_orders WHERE id = {i}");
    ApprovalRequest {
        request_id: Uuid::new_v4(),
        host: "bench-db".into(),
        session_id: format!("bench-session-{i}"),
        requester: Requester {
            principal: "bench-agent".into(),
            kind: PrincipalKind::AiAgent,
            owner: None,
            groups: vec![],
            db_user: None,
            client_user: None,
            exe: None,
            unit: None,
        },
        database: Some("bench".into()),
        statement_sha256: statement_sha256(&statement),
        statement,
        class: "delete".into(),
        tables: vec!["bench_orders".into()],
        rule: "bench".into(),
        reason: None,
        approvers: vec!["dba".into()],
        quorum: 1,
        expires_at: OffsetDateTime::now_utc() + time::Duration::minutes(30),
        break_glass_group: None,
    }
}

/// Runs the benchmark; `release` runs after each decision is verified at the agent and
/// its time is included (pass `|_| async {}` to time the approval path alone).
pub async fn approval_latency<F, Fut>(
    opts: BenchOptions,
    release: F,
) -> Result<LatencyReport, BenchError>
where
    F: Fn(SignedDecision) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let dir = tempfile::tempdir().map_err(setup)?;
    let storage = opts
        .storage_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let cfg =
        Config::parse(&config(dir.path(), &storage), Path::new("bench.toml")).map_err(setup)?;
    let running = server::start(cfg).await.map_err(setup)?;
    let url = running.url();
    let agent = ApproverClient::new(&url, HOST_TOKEN).map_err(setup)?;
    let approver = ApproverClient::new(&url, APPROVER_TOKEN).map_err(setup)?;
    let verifier = Arc::new(DecisionVerifier::new(running.service.verifying_key()));
    let release = Arc::new(release);

    let requests: Vec<ApprovalRequest> = (0..opts.pending).map(request).collect();
    let mut filing = tokio::task::JoinSet::new();
    for chunk in requests.chunks(50) {
        let (agent, chunk) = (agent.clone(), chunk.to_vec());
        filing.spawn(async move {
            for r in &chunk {
                agent.file_request(r).await?;
            }
            Ok::<_, dbward_approval_api::ClientError>(())
        });
    }
    while let Some(done) = filing.join_next().await {
        done.map_err(setup)?.map_err(setup)?;
    }

    let mut done_rx = Vec::with_capacity(requests.len());
    for r in &requests {
        let (tx, rx) = oneshot::channel::<Result<Instant, String>>();
        done_rx.push(rx);
        let (agent, verifier, release, r) =
            (agent.clone(), verifier.clone(), release.clone(), r.clone());
        tokio::spawn(async move {
            let outcome = async {
                loop {
                    let got = agent
                        .wait_decision(r.request_id, Duration::from_secs(120))
                        .await
                        .map_err(|e| e.to_string())?;
                    if let Some(d) = got {
                        let binding = Binding {
                            request_id: r.request_id,
                            host: &r.host,
                            session_id: &r.session_id,
                            statement_sha256: &r.statement_sha256,
                        };
                        verifier
                            .verify(&d, &binding, OffsetDateTime::now_utc())
                            .map_err(|e| e.to_string())?;
                        release(d).await;
                        return Ok(Instant::now());
                    }
                }
            }
            .await;
            let _ = tx.send(outcome);
        });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while running.service.waiting() < requests.len() {
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!(
                "only {} of {} agents are long-polling after 120 s",
                running.service.waiting(),
                requests.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut samples = Vec::with_capacity(requests.len());
    for (r, rx) in requests.iter().zip(done_rx) {
        let start = Instant::now();
        approver
            .vote(r.request_id, Vote::Approve, Some("bench"))
            .await
            .map_err(|e| BenchError::Run(e.to_string()))?;
        let finished = rx
            .await
            .map_err(|_| BenchError::Run(format!("agent task for {} vanished", r.request_id)))?
            .map_err(BenchError::Run)?;
        samples.push(finished.saturating_duration_since(start));
    }
    running.stop().await;
    Ok(LatencyReport::from_samples(samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let r = LatencyReport::from_samples((1..=100).rev().map(ms).collect());
        assert_eq!(
            (r.samples, r.p50, r.p95, r.p99, r.max),
            (100, ms(50), ms(95), ms(99), ms(100))
        );
        let r = LatencyReport::from_samples(vec![ms(7)]);
        assert_eq!((r.p50, r.p99), (ms(7), ms(7)));
        assert_eq!(LatencyReport::from_samples(vec![]).samples, 0);
        assert!(r.meets(ms(8)) && !r.meets(ms(7)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn harness_times_every_request_through_verification_and_release() {
        let released = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = released.clone();
        let report = approval_latency(
            BenchOptions {
                pending: 20,
                storage_url: None,
            },
            move |d| {
                let counter = counter.clone();
                async move {
                    assert_eq!(d.outcome, dbward_approval_api::Outcome::Approved);
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            },
        )
        .await
        .expect("bench runs");
        assert_eq!(report.samples, 20);
        assert_eq!(released.load(std::sync::atomic::Ordering::SeqCst), 20);
        assert!(report.p50 > Duration::ZERO && report.p50 <= report.max);
    }
}
