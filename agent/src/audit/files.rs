//! Audit files on disk: naming (`audit-<first seq>.jsonl`), listing in chain order, retention.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// One audit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFile {
    /// Seq of its first record, from the name.
    pub first_seq: u64,
    /// Its path.
    pub path: PathBuf,
}

/// The file name for a file whose first record is `first_seq` (zero-padded so names sort).
pub fn file_name(first_seq: u64) -> String {
    format!("audit-{first_seq:020}.jsonl")
}

/// The first seq encoded in an audit file name, or `None` for other files.
pub fn parse_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("audit-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

/// The audit files of `dir`, in chain order.
pub fn list(dir: &Path) -> std::io::Result<Vec<AuditFile>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(first_seq) = name.to_str().and_then(parse_file_name) {
            files.push(AuditFile {
                first_seq,
                path: entry.path(),
            });
        }
    }
    files.sort_by_key(|f| f.first_seq);
    Ok(files)
}

/// Retention limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many files (0 = no limit).
    pub max_files: usize,
    /// Delete files last written longer ago than this (`None` = no limit).
    pub max_age: Option<Duration>,
}

/// Which files to delete under `retention`, given `files` in chain order with their last
/// modification times. The last (current) file is never chosen, and only a prefix of the
/// chain is chosen so the remaining files stay contiguous.
pub fn expired(
    files: &[(AuditFile, SystemTime)],
    retention: Retention,
    now: SystemTime,
) -> Vec<AuditFile> {
    let Some(last) = files.len().checked_sub(1) else {
        return Vec::new();
    };
    let over_count = if retention.max_files == 0 {
        0
    } else {
        files.len().saturating_sub(retention.max_files)
    };
    let mut cut = over_count.min(last);
    if let Some(max_age) = retention.max_age {
        while cut < last
            && now
                .duration_since(files[cut].1)
                .is_ok_and(|age| age > max_age)
        {
            cut += 1;
        }
    }
    files[..cut].iter().map(|(f, _)| f.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_sort() {
        for seq in [1, 42, u64::MAX] {
            assert_eq!(parse_file_name(&file_name(seq)), Some(seq));
        }
        assert!(file_name(9) < file_name(10));
        for other in [
            "audit.pub",
            "audit-x.jsonl",
            "audit-1.json",
            "stream.cursor",
        ] {
            assert_eq!(parse_file_name(other), None, "{other}");
        }
    }

    #[test]
    fn retention_deletes_an_oldest_prefix_and_never_the_current_file() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        let files = |ages_days: &[u64]| -> Vec<(AuditFile, SystemTime)> {
            ages_days
                .iter()
                .enumerate()
                .map(|(i, age)| {
                    (
                        AuditFile {
                            first_seq: i as u64 * 10 + 1,
                            path: PathBuf::from(format!("f{i}")),
                        },
                        now - day * (*age as u32),
                    )
                })
                .collect()
        };
        let cases: [(&[u64], usize, Option<u64>, usize); 7] = [
            (&[], 2, None, 0),
            (&[5, 4, 3], 0, None, 0),
            (&[5, 4, 3], 2, None, 1),
            (&[5, 4, 3], 1, None, 2),
            (&[9, 8, 1], 0, Some(7), 2),
            (&[9, 1, 8], 0, Some(7), 1),
            (&[9, 9, 9], 0, Some(7), 2),
        ];
        for (ages, max_files, max_age_days, expected) in cases {
            let retention = Retention {
                max_files,
                max_age: max_age_days.map(|d| day * d as u32),
            };
            let chosen = expired(&files(ages), retention, now);
            assert_eq!(
                chosen.len(),
                expected,
                "ages {ages:?} max_files {max_files} max_age {max_age_days:?}"
            );
            for (i, f) in chosen.iter().enumerate() {
                assert_eq!(f.path, PathBuf::from(format!("f{i}")));
            }
        }
    }
}
