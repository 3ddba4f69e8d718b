//! Finding where the chain ends after a restart: the last valid record, and the torn tail a
//! crash may have left, which is truncated.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use super::files::{self, AuditFile};
use super::record::{Tip, check_line};

/// Errors finding the end of the chain.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// Reading or truncating a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A damaged record is followed by valid ones: not a crash, so nothing is truncated.
    #[error(
        "{path}:{line}: damaged record followed by valid records ({reason}); this is not a torn write. \
         Run `dbward audit verify {dir}` and move the damaged file aside before restarting"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
        /// The audit directory.
        dir: PathBuf,
    },
    /// The newest file is empty but its name does not continue the previous file.
    #[error(
        "{path}: empty file named for seq {named}, but the chain ends at seq {tip}; move it aside"
    )]
    Misnamed {
        /// The file.
        path: PathBuf,
        /// Seq from its name.
        named: u64,
        /// Last seq of the chain.
        tip: u64,
    },
}

/// Where the chain ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// The last valid record (genesis for an empty log).
    pub tip: Tip,
    /// The file to continue appending to, if any.
    pub current: Option<AuditFile>,
    /// Bytes cut from the end of the newest file (a torn write).
    pub truncated_bytes: u64,
}

/// Scans the newest audit file(s) of `dir`, truncates a torn tail, and returns the chain tip.
pub fn resume(dir: &Path) -> Result<Resumed, ResumeError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ResumeError::Io { path, source }
    };
    let list = files::list(dir).map_err(io(dir))?;
    let Some(current) = list.last().cloned() else {
        return Ok(Resumed {
            tip: Tip::genesis(),
            current: None,
            truncated_bytes: 0,
        });
    };
    let bytes = fs::read(&current.path).map_err(io(&current.path))?;
    let scan = scan(&bytes).map_err(|(line, reason)| ResumeError::Damaged {
        path: current.path.clone(),
        line,
        reason,
        dir: dir.to_owned(),
    })?;
    let truncated_bytes = (bytes.len() - scan.good_len) as u64;
    if truncated_bytes > 0 {
        let file = OpenOptions::new()
            .write(true)
            .open(&current.path)
            .map_err(io(&current.path))?;
        file.set_len(scan.good_len as u64)
            .map_err(io(&current.path))?;
        file.sync_all().map_err(io(&current.path))?;
        tracing::warn!(path = %current.path.display(), truncated_bytes, "truncated torn audit tail left by a crash");
    }
    let empty = scan.tip.is_none();
    let tip = match scan.tip {
        Some(tip) => tip,
        None => previous_tip(dir, &list[..list.len() - 1])?,
    };
    if empty && current.first_seq != tip.seq + 1 {
        return Err(ResumeError::Misnamed {
            path: current.path,
            named: current.first_seq,
            tip: tip.seq,
        });
    }
    Ok(Resumed {
        tip,
        current: Some(current),
        truncated_bytes,
    })
}

fn previous_tip(dir: &Path, earlier: &[AuditFile]) -> Result<Tip, ResumeError> {
    let Some(prev) = earlier.last() else {
        return Ok(Tip::genesis());
    };
    let bytes = fs::read(&prev.path).map_err(|source| ResumeError::Io {
        path: prev.path.clone(),
        source,
    })?;
    let scan = scan(&bytes).map_err(|(line, reason)| ResumeError::Damaged {
        path: prev.path.clone(),
        line,
        reason,
        dir: dir.to_owned(),
    })?;
    match scan.tip {
        Some(tip) if scan.good_len == bytes.len() => Ok(tip),
        _ => Err(ResumeError::Damaged {
            path: prev.path.clone(),
            line: 1,
            reason: "an older file has a damaged or empty tail".into(),
            dir: dir.to_owned(),
        }),
    }
}

struct Scan {
    tip: Option<Tip>,
    good_len: usize,
}

/// Finds the valid prefix of a file. Err((line, reason)) when a bad line is followed by a
/// valid one.
fn scan(bytes: &[u8]) -> Result<Scan, (usize, String)> {
    let mut tip: Option<Tip> = None;
    let mut good_len = 0;
    let mut first_bad: Option<(usize, String)> = None;
    let mut offset = 0;
    for (index, raw) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        let complete = raw.ends_with(b"\n");
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        offset += raw.len();
        if let Some((line_no, reason)) = &first_bad {
            if complete && check_line(line).is_ok() {
                return Err((*line_no, reason.clone()));
            }
            continue;
        }
        if !complete {
            first_bad = Some((index + 1, "incomplete last line".to_owned()));
            continue;
        }
        let checked = match check_line(line) {
            Ok(checked) => checked,
            Err(e) => {
                first_bad = Some((index + 1, e.to_string()));
                continue;
            }
        };
        let mut next = tip.clone().unwrap_or(Tip {
            seq: checked.seq.saturating_sub(1),
            hash: checked.prev_hash.clone(),
        });
        // A complete, self-consistent record that does not link is never a torn write.
        next.advance(&checked)
            .map_err(|e| (index + 1, e.to_string()))?;
        tip = Some(next);
        good_len = offset;
    }
    Ok(Scan { tip, good_len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{GENESIS_HASH, Header, seal};
    use serde_json::{Map, Value};

    fn lines(n: u64) -> Vec<Vec<u8>> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let mut payload = Map::new();
                payload.insert("type".into(), Value::from("statement"));
                let s = seal(
                    &Header {
                        seq,
                        host: "h",
                        ts: "t",
                        prev_hash: &prev,
                    },
                    payload,
                );
                prev = s.hash;
                s.line
            })
            .collect()
    }

    #[test]
    fn scan_keeps_the_valid_prefix_and_cuts_only_a_torn_tail() {
        let l = lines(3);
        let full: Vec<u8> = l.concat();
        let half = &l[2][..l[2].len() / 2];
        let cases: Vec<(&str, Vec<u8>, Option<u64>, usize)> = vec![
            ("empty", Vec::new(), None, 0),
            ("intact", full.clone(), Some(3), full.len()),
            (
                "half a line",
                [&l[0][..], &l[1], half].concat(),
                Some(2),
                l[0].len() + l[1].len(),
            ),
            (
                "zeros after crash",
                [&l[0][..], &[0u8; 10], b"\n"].concat(),
                Some(1),
                l[0].len(),
            ),
            ("only a partial line", half.to_vec(), None, 0),
        ];
        for (name, bytes, tip_seq, good_len) in cases {
            let scan = scan(&bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(scan.tip.map(|t| t.seq), tip_seq, "{name}");
            assert_eq!(scan.good_len, good_len, "{name}");
        }
    }

    #[test]
    fn damage_followed_by_valid_records_is_refused() {
        let l = lines(3);
        let cases: Vec<(&str, Vec<u8>, usize)> = vec![
            (
                "garbage inside",
                [&l[0][..], b"garbage\n", &l[2]].concat(),
                2,
            ),
            ("deleted record at the end", [&l[0][..], &l[2]].concat(), 2),
            ("swapped records", [&l[1][..], &l[0]].concat(), 2),
        ];
        for (name, bytes, line) in cases {
            assert_eq!(scan(&bytes).err().map(|e| e.0), Some(line), "{name}");
        }
    }
}
