//! The `[audit]` section of agent.toml: where the log lives, fsync, checkpoints, rotation and
//! retention.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[audit]` in agent.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Directory of the audit files (`audit-<first seq>.jsonl`) and of `audit.pub`.
    pub dir: PathBuf,
    /// The host's ed25519 signing key; generated with mode 0600 when absent.
    pub key_file: PathBuf,
    /// How often buffered records are written and fsynced, in milliseconds. A crash loses at
    /// most the records appended in the last interval.
    pub fsync_interval_ms: u64,
    /// Write a signed checkpoint after this many records.
    pub checkpoint_every_records: u64,
    /// Write a signed checkpoint at least this often (seconds) while records arrive.
    pub checkpoint_interval_secs: u64,
    /// Start a new file once the current one reaches this size in bytes.
    pub rotate_max_bytes: u64,
    /// Start a new file once the current one is this old (seconds).
    pub rotate_max_age_secs: u64,
    /// Keep at most this many files; the oldest whole files are deleted (0 = no limit).
    pub retention_max_files: usize,
    /// Delete whole files whose last write is older than this many days (0 = no limit).
    pub retention_max_age_days: u64,
    /// Records that may wait for the writer thread before `append` blocks.
    pub queue_capacity: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/dbward/audit"),
            key_file: PathBuf::from("/var/lib/dbward/audit.key"),
            fsync_interval_ms: 200,
            checkpoint_every_records: 10_000,
            checkpoint_interval_secs: 60,
            rotate_max_bytes: 64 * 1024 * 1024,
            rotate_max_age_secs: 24 * 3600,
            retention_max_files: 100,
            retention_max_age_days: 90,
            queue_capacity: 65_536,
        }
    }
}

impl AuditConfig {
    /// `fsync_interval_ms` as a duration (at least 1 ms).
    pub fn fsync_interval(&self) -> Duration {
        Duration::from_millis(self.fsync_interval_ms.max(1))
    }

    /// `checkpoint_interval_secs` as a duration.
    pub fn checkpoint_interval(&self) -> Duration {
        Duration::from_secs(self.checkpoint_interval_secs)
    }

    /// `rotate_max_age_secs` as a duration.
    pub fn rotate_max_age(&self) -> Duration {
        Duration::from_secs(self.rotate_max_age_secs)
    }

    /// Every problem with the values, as messages naming the key.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.checkpoint_every_records == 0 {
            problems.push("audit.checkpoint_every_records must be at least 1".to_owned());
        }
        if self.rotate_max_bytes < 4096 {
            problems.push("audit.rotate_max_bytes must be at least 4096".to_owned());
        }
        if self.queue_capacity == 0 {
            problems.push("audit.queue_capacity must be at least 1".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected_and_missing_keys_default() {
        let parsed: AuditConfig = toml_like(r#"{"fsync_interval_ms": 50}"#).expect("parses");
        assert_eq!(parsed.fsync_interval(), Duration::from_millis(50));
        assert_eq!(
            parsed.retention_max_files,
            AuditConfig::default().retention_max_files
        );
        assert!(toml_like::<AuditConfig>(r#"{"fsync_interval": 50}"#).is_err());
    }

    #[test]
    fn check_names_each_bad_key() {
        let bad = AuditConfig {
            checkpoint_every_records: 0,
            rotate_max_bytes: 10,
            queue_capacity: 0,
            ..AuditConfig::default()
        };
        let problems = bad.check();
        for key in [
            "checkpoint_every_records",
            "rotate_max_bytes",
            "queue_capacity",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(key)),
                "{key} in {problems:?}"
            );
        }
        assert!(AuditConfig::default().check().is_empty());
    }

    fn toml_like<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, serde_json::Error> {
        serde_json::from_str(json)
    }
}
