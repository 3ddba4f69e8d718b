//! Which records are streamed: type/class/outcome exclusions and deterministic read sampling.
//! Pure logic.

use serde::Deserialize;

use super::config::StreamConfig;

/// The fields of a record the filter looks at.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Peek {
    /// Record seq.
    pub seq: u64,
    /// Record type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Statement class, when present.
    #[serde(default)]
    pub class: Option<String>,
    /// Statement outcome, when present.
    #[serde(default)]
    pub outcome: Option<String>,
}

/// The streaming filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    exclude_types: Vec<String>,
    exclude_classes: Vec<String>,
    exclude_outcomes: Vec<String>,
    /// Reads kept per million.
    read_keep_ppm: u64,
}

impl Filter {
    /// Builds the filter from `[stream]`.
    pub fn new(config: &StreamConfig) -> Self {
        Self {
            exclude_types: config.exclude_types.clone(),
            exclude_classes: config.exclude_classes.clone(),
            exclude_outcomes: config.exclude_outcomes.clone(),
            read_keep_ppm: (config.read_sample_rate.clamp(0.0, 1.0) * 1_000_000.0).round() as u64,
        }
    }

    /// Whether the record is streamed. Checkpoints are always streamed so the central copy
    /// carries the signatures.
    pub fn keep(&self, record: &Peek) -> bool {
        if record.kind == "checkpoint" {
            return true;
        }
        if self.exclude_types.contains(&record.kind) {
            return false;
        }
        if record.kind != "statement" {
            return true;
        }
        let listed = |list: &[String], value: &Option<String>| {
            value.as_ref().is_some_and(|v| list.contains(v))
        };
        if listed(&self.exclude_classes, &record.class)
            || listed(&self.exclude_outcomes, &record.outcome)
        {
            return false;
        }
        if record.class.as_deref() == Some("read") {
            return mix(record.seq) % 1_000_000 < self.read_keep_ppm;
        }
        true
    }
}

/// splitmix64: spreads consecutive seqs evenly so sampling is uniform and stable.
fn mix(seq: u64) -> u64 {
    let mut z = seq.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peek(seq: u64, kind: &str, class: Option<&str>, outcome: Option<&str>) -> Peek {
        Peek {
            seq,
            kind: kind.into(),
            class: class.map(Into::into),
            outcome: outcome.map(Into::into),
        }
    }

    #[test]
    fn exclusions_apply_to_their_fields_and_never_to_checkpoints() {
        let config = StreamConfig {
            exclude_types: vec!["session_start".into(), "checkpoint".into()],
            exclude_classes: vec!["read".into()],
            exclude_outcomes: vec!["allow".into()],
            ..StreamConfig::default()
        };
        let filter = Filter::new(&config);
        let cases = [
            (peek(1, "checkpoint", None, None), true),
            (peek(2, "session_start", None, None), false),
            (peek(3, "session_end", None, None), true),
            (peek(4, "statement", Some("read"), Some("audit")), false),
            (peek(5, "statement", Some("write"), Some("allow")), false),
            (peek(6, "statement", Some("write"), Some("audit")), true),
            (peek(7, "statement", None, None), true),
            (peek(8, "decision", Some("read"), Some("allow")), true),
        ];
        for (record, expected) in cases {
            assert_eq!(filter.keep(&record), expected, "{record:?}");
        }
    }

    #[test]
    fn read_sampling_keeps_the_configured_share_deterministically() {
        for (rate, low, high) in [
            (0.0, 0, 0),
            (0.1, 9_000, 11_000),
            (0.5, 48_000, 52_000),
            (1.0, 100_000, 100_000),
        ] {
            let filter = Filter::new(&StreamConfig {
                read_sample_rate: rate,
                ..StreamConfig::default()
            });
            let kept = (1..=100_000)
                .filter(|s| filter.keep(&peek(*s, "statement", Some("read"), Some("allow"))))
                .count();
            assert!((low..=high).contains(&kept), "rate {rate}: kept {kept}");
            let again = (1..=100_000)
                .filter(|s| filter.keep(&peek(*s, "statement", Some("read"), Some("allow"))))
                .count();
            assert_eq!(kept, again);
            assert!(
                filter.keep(&peek(3, "statement", Some("write"), None)),
                "writes are never sampled"
            );
        }
    }
}
