//! The streamer: follows the audit log's durable records from the persisted cursor, filters,
//! batches and sends them, retrying with backoff until acknowledged, then moves the cursor.
//! The audit files are the spool: nothing is lost while the endpoint is down, and ids are
//! the audit's, so replays are deduplicated by the endpoint.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::watch;

use super::config::StreamConfig;
use super::cursor::{Cursor, CursorError};
use super::filter::Filter;
use super::metrics::StreamMetrics;
use super::reader::{AuditReader, ReadError};
use super::sender::{Sender, backoff};

/// Pause before looking again when the durable seq is ahead of what the files show.
const FILE_POLL: Duration = Duration::from_millis(20);

/// Errors that stop the streamer.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Invalid `[stream]` settings.
    #[error("invalid [stream] settings: {0}")]
    Config(String),
    /// The token file could not be read.
    #[error("stream.token_file {path}: {source}")]
    Token {
        /// The token file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The cursor could not be read or written.
    #[error(transparent)]
    Cursor(#[from] CursorError),
    /// The audit files could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// What the streamer needs.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// The `[stream]` settings.
    pub config: StreamConfig,
    /// The audit directory (`audit.dir`).
    pub audit_dir: PathBuf,
    /// This host's name, sent as `host`.
    pub host: String,
    /// `audit.retention_max_files`: the spool's bound (0 = unbounded).
    pub retention_max_files: usize,
}

/// Streams the audit log to the central endpoint.
pub struct Streamer {
    options: StreamOptions,
    filter: Filter,
    sender: Sender,
    cursor: Cursor,
    reader: AuditReader,
    synced: watch::Receiver<u64>,
    metrics: Arc<StreamMetrics>,
    backlog_warned: bool,
}

impl Streamer {
    /// Prepares a streamer; `synced` is [`crate::audit::AuditLog::subscribe_synced`].
    pub fn new(options: StreamOptions, synced: watch::Receiver<u64>) -> Result<Self, StreamError> {
        let problems = options.config.check();
        if !problems.is_empty() {
            return Err(StreamError::Config(problems.join("; ")));
        }
        let config = &options.config;
        let token = match &config.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| StreamError::Token {
                        path: path.clone(),
                        source,
                    })?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let sender = Sender::new(
            &config.endpoint,
            token,
            config.gzip,
            config.request_timeout(),
        )?;
        let cursor = Cursor::load(&config.cursor_file)?;
        let reader = AuditReader::new(&options.audit_dir, cursor.acked());
        let metrics = Arc::new(StreamMetrics::default());
        metrics.acked_seq.store(cursor.acked(), Relaxed);
        Ok(Self {
            filter: Filter::new(config),
            sender,
            cursor,
            reader,
            synced,
            metrics,
            options,
            backlog_warned: false,
        })
    }

    /// The live counters.
    pub fn metrics(&self) -> Arc<StreamMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Runs until `shutdown` completes, or until the audit log is closed and every durable
    /// record has been acknowledged.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), StreamError> {
        tokio::pin!(shutdown);
        let mut log_closed = false;
        tracing::info!(endpoint = %self.options.config.endpoint, acked = self.cursor.acked(), "audit streaming started");
        loop {
            let upto = *self.synced.borrow_and_update();
            self.metrics
                .backlog_events
                .store(upto.saturating_sub(self.cursor.acked()), Relaxed);
            if self.reader.next_seq() > upto {
                if log_closed {
                    return Ok(());
                }
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    changed = self.synced.changed() => log_closed = changed.is_err(),
                }
                continue;
            }
            let config = &self.options.config;
            let batch = self
                .reader
                .read(upto, config.batch_max_events, config.batch_max_bytes)?;
            self.metrics
                .events_lost_to_retention
                .fetch_add(batch.lost, Relaxed);
            let Some(last) = batch.records.last().map(|r| r.peek.seq) else {
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(FILE_POLL) => {}
                }
                continue;
            };
            self.metrics
                .events_read
                .fetch_add(batch.records.len() as u64, Relaxed);
            let kept: Vec<&[u8]> = batch
                .records
                .iter()
                .filter(|r| self.filter.keep(&r.peek))
                .map(|r| r.line.as_slice())
                .collect();
            self.metrics
                .events_filtered
                .fetch_add((batch.records.len() - kept.len()) as u64, Relaxed);
            if !kept.is_empty() && !self.send_until_acked(&kept, &mut shutdown).await {
                return Ok(());
            }
            self.cursor.store(last)?;
            self.metrics.acked_seq.store(last, Relaxed);
            self.check_backlog()?;
        }
    }

    /// Sends one batch, retrying with backoff; false when shutdown came first.
    async fn send_until_acked(
        &self,
        lines: &[&[u8]],
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> bool {
        let config = &self.options.config;
        let mut attempt = 0u32;
        loop {
            let result = tokio::select! {
                () = shutdown.as_mut() => return false,
                result = self.sender.send(&self.options.host, lines) => result,
            };
            match result {
                Ok(ack) => {
                    self.metrics
                        .events_sent
                        .fetch_add(lines.len() as u64, Relaxed);
                    self.metrics.batches_sent.fetch_add(1, Relaxed);
                    self.metrics.accepted.fetch_add(ack.accepted, Relaxed);
                    self.metrics.duplicates.fetch_add(ack.duplicates, Relaxed);
                    if attempt > 0 {
                        tracing::info!(
                            attempts = attempt + 1,
                            "audit endpoint reachable again; replaying backlog"
                        );
                    }
                    return true;
                }
                Err(error) => {
                    self.metrics.send_failures.fetch_add(1, Relaxed);
                    let delay = backoff(
                        attempt,
                        Duration::from_millis(config.backoff_initial_ms),
                        Duration::from_millis(config.backoff_max_ms),
                        rand::random::<f64>(),
                    );
                    tracing::warn!(%error, attempt, retry_in_ms = delay.as_millis() as u64, events = lines.len(), "sending audit events failed; they stay in the local log and will be retried");
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        () = shutdown.as_mut() => return false,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Warns once the unsent backlog spans `backlog_warn_fraction` of the retained files.
    fn check_backlog(&mut self) -> Result<(), StreamError> {
        let files = self.reader.files_behind()?;
        self.metrics.backlog_files.store(files as u64, Relaxed);
        let bound = self.options.retention_max_files;
        if bound == 0 {
            return Ok(());
        }
        let over = files as f64 >= self.options.config.backlog_warn_fraction * bound as f64;
        if over && !self.backlog_warned {
            tracing::warn!(
                backlog_files = files,
                retention_max_files = bound,
                "unsent audit backlog nears the retention bound; older records will be lost to streaming (they stay counted)"
            );
        }
        self.backlog_warned = over;
        Ok(())
    }
}
