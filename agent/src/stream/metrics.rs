//! Counters of the streamer, readable at any time (for `dbward status` and metrics).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Live counters; cheap to update, shared via `Arc`.
#[derive(Debug, Default)]
pub struct StreamMetrics {
    pub(super) events_read: AtomicU64,
    pub(super) events_sent: AtomicU64,
    pub(super) events_filtered: AtomicU64,
    pub(super) events_lost_to_retention: AtomicU64,
    pub(super) batches_sent: AtomicU64,
    pub(super) send_failures: AtomicU64,
    pub(super) accepted: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) acked_seq: AtomicU64,
    pub(super) backlog_events: AtomicU64,
    pub(super) backlog_files: AtomicU64,
}

/// A snapshot of [`StreamMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StreamStats {
    /// Records read back from the audit log.
    pub events_read: u64,
    /// Records sent and acknowledged (after filtering).
    pub events_sent: u64,
    /// Records skipped by filters or sampling.
    pub events_filtered: u64,
    /// Records deleted by audit retention before they could be sent (the spool's bound).
    pub events_lost_to_retention: u64,
    /// Requests acknowledged.
    pub batches_sent: u64,
    /// Requests that failed and were retried.
    pub send_failures: u64,
    /// Events the endpoint stored for the first time.
    pub accepted: u64,
    /// Events the endpoint already had (replays).
    pub duplicates: u64,
    /// Last seq acknowledged (persisted in the cursor file).
    pub acked_seq: u64,
    /// Durable records not yet acknowledged: the spool.
    pub backlog_events: u64,
    /// Audit files the backlog spans.
    pub backlog_files: u64,
}

impl StreamMetrics {
    /// The current values.
    pub fn snapshot(&self) -> StreamStats {
        StreamStats {
            events_read: self.events_read.load(Relaxed),
            events_sent: self.events_sent.load(Relaxed),
            events_filtered: self.events_filtered.load(Relaxed),
            events_lost_to_retention: self.events_lost_to_retention.load(Relaxed),
            batches_sent: self.batches_sent.load(Relaxed),
            send_failures: self.send_failures.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            acked_seq: self.acked_seq.load(Relaxed),
            backlog_events: self.backlog_events.load(Relaxed),
            backlog_files: self.backlog_files.load(Relaxed),
        }
    }
}
