//! The `/metrics` HTTP endpoint, and the values other stages own (audit log, stream spool,
//! shim channel), read when Prometheus scrapes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::{Metrics, MetricsConfig};
use crate::shim::events::EventSink;
use crate::stream::metrics::StreamMetrics;

/// The Prometheus text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the other stages expose, read at scrape time.
pub struct Sources {
    /// The streamer's counters (`[stream]` enabled).
    pub stream: Option<Arc<StreamMetrics>>,
    /// The audit log's last durable seq (`AuditLog::subscribe_synced`).
    pub audit_synced: watch::Receiver<u64>,
    /// The seq the audit log resumed after at start (`OpenReport::resumed_after`).
    pub audit_resumed_after: u64,
    /// The audit directory (its files are the stream's spool).
    pub audit_dir: PathBuf,
    /// The shim's event sink (a shim runs).
    pub shim_events: Option<EventSink>,
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listener could not be bound.
    #[error(
        "cannot listen on [metrics] listen = \"{addr}\": {source} (another process on that port? change metrics.listen)"
    )]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Binds `[metrics] listen` and returns the server, to be spawned; it serves `GET /metrics`
/// until `shutdown` completes.
pub async fn serve(
    config: &MetricsConfig,
    metrics: Metrics,
    sources: Sources,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<impl Future<Output = ()> + Send + 'static, MetricsError> {
    let addr = config.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    tracing::info!(%addr, "metrics listening on /metrics");
    let app = axum::Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new((metrics, sources)));
    Ok(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%addr, error = %e, "the metrics endpoint stopped");
        }
    })
}

async fn scrape(State(state): State<Arc<(Metrics, Sources)>>) -> impl IntoResponse {
    let (metrics, sources) = &*state;
    ([(CONTENT_TYPE, TEXT_FORMAT)], metrics.render(sources))
}

/// Metrics whose values other stages own, brought up to date at each scrape.
pub(super) struct Scraped {
    /// Serialises refreshes: counters catch up by the difference to their total.
    refresh: Mutex<()>,
    audit_records: Counter,
    audit_bytes: Gauge,
    shim_events_dropped: Counter,
    stream_sent: Counter,
    stream_send_failures: Counter,
    stream_lost: Counter,
    stream_acked_seq: Gauge,
    stream_backlog_events: Gauge,
    stream_backlog_files: Gauge,
    stream_backlog_bytes: Gauge,
}

impl Scraped {
    /// Creates and registers the scrape-time metrics.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let scraped = Self {
            refresh: Mutex::new(()),
            audit_records: Counter::default(),
            audit_bytes: Gauge::default(),
            shim_events_dropped: Counter::default(),
            stream_sent: Counter::default(),
            stream_send_failures: Counter::default(),
            stream_lost: Counter::default(),
            stream_acked_seq: Gauge::default(),
            stream_backlog_events: Gauge::default(),
            stream_backlog_files: Gauge::default(),
            stream_backlog_bytes: Gauge::default(),
        };
        // Each metric is registered as a clone sharing its value with the field.
        registry.register(
            "audit_records",
            "Audit records written and synced since the agent started",
            scraped.audit_records.clone(),
        );
        registry.register(
            "audit_bytes",
            "Bytes of the audit files on disk",
            scraped.audit_bytes.clone(),
        );
        registry.register(
            "shim_events_dropped",
            "Shim events lost because the agent's channel was full",
            scraped.shim_events_dropped.clone(),
        );
        registry.register(
            "stream_events_sent",
            "Audit records sent to the central endpoint and acknowledged",
            scraped.stream_sent.clone(),
        );
        registry.register(
            "stream_send_failures",
            "Stream requests that failed and were retried",
            scraped.stream_send_failures.clone(),
        );
        registry.register(
            "stream_events_lost_to_retention",
            "Audit records deleted by retention before they could be streamed",
            scraped.stream_lost.clone(),
        );
        registry.register(
            "stream_acked_seq",
            "Last audit seq the central endpoint acknowledged",
            scraped.stream_acked_seq.clone(),
        );
        registry.register(
            "stream_backlog_events",
            "Durable audit records not yet acknowledged (the spool)",
            scraped.stream_backlog_events.clone(),
        );
        registry.register(
            "stream_backlog_files",
            "Audit files the unsent backlog spans",
            scraped.stream_backlog_files.clone(),
        );
        registry.register(
            "stream_backlog_bytes",
            "Bytes of the audit files the unsent backlog spans",
            scraped.stream_backlog_bytes.clone(),
        );
        scraped
    }

    /// Reads the current values from `sources`.
    pub(super) fn refresh(&self, sources: &Sources) {
        let _serial = self.refresh.lock().unwrap_or_else(PoisonError::into_inner);
        let synced = *sources.audit_synced.borrow();
        catch_up(
            &self.audit_records,
            synced.saturating_sub(sources.audit_resumed_after),
        );
        if let Some(sink) = &sources.shim_events {
            catch_up(&self.shim_events_dropped, sink.dropped());
        }
        let files = audit_file_sizes(&sources.audit_dir);
        self.audit_bytes
            .set(to_i64(files.iter().map(|(_, len)| len).sum()));
        let Some(stream) = &sources.stream else {
            return;
        };
        let stats = stream.snapshot();
        catch_up(&self.stream_sent, stats.events_sent);
        catch_up(&self.stream_send_failures, stats.send_failures);
        catch_up(&self.stream_lost, stats.events_lost_to_retention);
        self.stream_acked_seq.set(to_i64(stats.acked_seq));
        self.stream_backlog_events.set(to_i64(stats.backlog_events));
        self.stream_backlog_files.set(to_i64(stats.backlog_files));
        let spool = if stats.backlog_events == 0 {
            0
        } else {
            backlog_bytes(&files, stats.acked_seq)
        };
        self.stream_backlog_bytes.set(to_i64(spool));
    }
}

/// Raises a counter to `total` (a count another stage keeps since the agent started).
fn catch_up(counter: &Counter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `(first seq, bytes)` of each audit file, in chain order (empty when unreadable).
fn audit_file_sizes(dir: &Path) -> Vec<(u64, u64)> {
    crate::audit::files::list(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| Some((f.first_seq, std::fs::metadata(&f.path).ok()?.len())))
        .collect()
}

/// Bytes of the files holding records after `acked`: a file is in the backlog unless the
/// next file starts at or before `acked + 1`.
fn backlog_bytes(files: &[(u64, u64)], acked: u64) -> u64 {
    files
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            files
                .get(i + 1)
                .is_none_or(|(next_first, _)| *next_first > acked + 1)
        })
        .map(|(_, (_, len))| len)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_is_the_files_after_the_acknowledged_seq() {
        let files = [(1, 100), (11, 200), (21, 300)];
        for (acked, want) in [
            (0, 600),
            (9, 600),
            (10, 500),
            (15, 500),
            (20, 300),
            (25, 300),
        ] {
            assert_eq!(backlog_bytes(&files, acked), want, "acked {acked}");
        }
        assert_eq!(backlog_bytes(&[], 5), 0);
    }
}
