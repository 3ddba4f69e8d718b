//! The `[stream]` section of agent.toml: endpoint, batching, retry, filters and sampling.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[stream]` in agent.toml. Filters only affect what is sent; the local log keeps everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Stream audit records to the central approver.
    pub enabled: bool,
    /// Base URL of `dbward-approver`, e.g. `https://approver.example:8443`; records are POSTed
    /// to `<endpoint>/api/v1/events`.
    pub endpoint: String,
    /// File holding this host's bearer token (one line).
    pub token_file: Option<PathBuf>,
    /// Where the last acknowledged seq is kept, so a restart resumes without gaps.
    pub cursor_file: PathBuf,
    /// Most records in one request.
    pub batch_max_events: usize,
    /// Most uncompressed bytes of records in one request.
    pub batch_max_bytes: usize,
    /// Gzip request bodies (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// Timeout of one request, in seconds.
    pub request_timeout_secs: u64,
    /// First retry delay after a failed request, in milliseconds; doubles per failure.
    pub backoff_initial_ms: u64,
    /// Longest retry delay, in milliseconds.
    pub backoff_max_ms: u64,
    /// Warn when the unsent backlog spans this fraction of `audit.retention_max_files`
    /// (records older than retention are lost to streaming, and counted).
    pub backlog_warn_fraction: f64,
    /// Record types never streamed (e.g. `["session_start", "session_end"]`).
    pub exclude_types: Vec<String>,
    /// Statement classes never streamed (e.g. `["read"]` to stream everything but plain reads).
    pub exclude_classes: Vec<String>,
    /// Statement outcomes never streamed (e.g. `["allow"]`).
    pub exclude_outcomes: Vec<String>,
    /// Fraction of `read` statements streamed, 0.0–1.0; the choice is deterministic per seq, so
    /// a replay sends the same sample.
    pub read_sample_rate: f64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: String::new(),
            token_file: None,
            cursor_file: PathBuf::from("/var/lib/dbward/stream.cursor"),
            batch_max_events: 1000,
            batch_max_bytes: 4 * 1024 * 1024,
            gzip: true,
            request_timeout_secs: 30,
            backoff_initial_ms: 200,
            backoff_max_ms: 30_000,
            backlog_warn_fraction: 0.8,
            exclude_types: Vec::new(),
            exclude_classes: Vec::new(),
            exclude_outcomes: Vec::new(),
            read_sample_rate: 1.0,
        }
    }
}

impl StreamConfig {
    /// Request timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }

    /// Every problem with the values, as messages naming the key.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.enabled
            && !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://"))
        {
            problems.push(format!(
                "stream.endpoint {:?} must be an http:// or https:// URL",
                self.endpoint
            ));
        }
        if self.batch_max_events == 0 {
            problems.push("stream.batch_max_events must be at least 1".to_owned());
        }
        if !(0.0..=1.0).contains(&self.read_sample_rate) {
            problems.push(format!(
                "stream.read_sample_rate {} must be within 0.0–1.0",
                self.read_sample_rate
            ));
        }
        if !(0.0..=1.0).contains(&self.backlog_warn_fraction) {
            problems.push(format!(
                "stream.backlog_warn_fraction {} must be within 0.0–1.0",
                self.backlog_warn_fraction
            ));
        }
        if self.backoff_initial_ms == 0 || self.backoff_max_ms < self.backoff_initial_ms {
            problems.push(
                "stream.backoff_initial_ms must be ≥ 1 and ≤ stream.backoff_max_ms".to_owned(),
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_reports_every_bad_key() {
        let bad = StreamConfig {
            enabled: true,
            endpoint: "approver:8443".into(),
            batch_max_events: 0,
            read_sample_rate: 1.5,
            backlog_warn_fraction: -1.0,
            backoff_initial_ms: 10,
            backoff_max_ms: 5,
            ..StreamConfig::default()
        };
        let problems = bad.check();
        for key in [
            "endpoint",
            "batch_max_events",
            "read_sample_rate",
            "backlog_warn_fraction",
            "backoff_initial_ms",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(key)),
                "{key} in {problems:?}"
            );
        }
        assert!(StreamConfig::default().check().is_empty());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(serde_json::from_str::<StreamConfig>(r#"{"exclude_class": ["read"]}"#).is_err());
        let ok: StreamConfig =
            serde_json::from_str(r#"{"exclude_classes": ["read"]}"#).expect("parses");
        assert_eq!(ok.exclude_classes, ["read"]);
    }
}
