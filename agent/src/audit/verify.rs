//! Verifying a log: every record's hash, the chain across files, and checkpoint signatures.
//! Reports the first bad record with file, line, seq and what is wrong.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde_json::Value;

use super::checkpoint::{self, CheckpointError};
use super::event::Checkpoint;
use super::files;
use super::record::{Checked, GENESIS_HASH, LineError, LinkError, Tip, check_line, record_id};

/// What is wrong with a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The line itself is bad (unparseable, hash mismatch, not canonical).
    #[error(transparent)]
    Line(#[from] LineError),
    /// It does not follow the previous record (seq gap, prev_hash mismatch).
    #[error(transparent)]
    Link(#[from] LinkError),
    /// A checkpoint that does not verify.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The `id` is not `<host>:<seq>` for the log's host.
    #[error("id {found:?} should be {expected:?}")]
    BadId {
        /// The expected id.
        expected: String,
        /// The record's id.
        found: String,
    },
    /// The file's name does not match the seq of its first record.
    #[error("file is named for seq {named} but its first record is seq {found}")]
    FileName {
        /// Seq in the name.
        named: u64,
        /// Seq of the first record.
        found: u64,
    },
    /// The file ends in the middle of a record.
    #[error("incomplete last line (a torn write; the agent truncates it on restart)")]
    Incomplete,
    /// An audit file holds no record.
    #[error("empty audit file before the newest one")]
    Empty,
}

/// The first bad record found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {}{problem}", path.display(), seq.map(|s| format!("seq {s}: ")).unwrap_or_default())]
pub struct Finding {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// The record's seq, when it could be read.
    pub seq: Option<u64>,
    /// What is wrong.
    pub problem: Problem,
}

/// Why verification could not complete or failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A record is bad.
    #[error(transparent)]
    Bad(#[from] Finding),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No audit files at the path.
    #[error("{0}: no audit files (audit-<seq>.jsonl) found")]
    NoFiles(PathBuf),
}

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Files verified.
    pub files: usize,
    /// Records verified.
    pub records: u64,
    /// Seq of the first record.
    pub first_seq: u64,
    /// Seq of the last record.
    pub last_seq: u64,
    /// Hash of the last record.
    pub last_hash: String,
    /// Checkpoints whose signatures verified.
    pub checkpoints: u64,
    /// Records after the last checkpoint (not covered by a signature yet).
    pub unsigned_tail: u64,
    /// True when the chain starts at the genesis record; false when older files were removed
    /// (retention) or a single later file was given, so the chain was checked from the first
    /// record's `prev_hash`.
    pub from_genesis: bool,
    /// Type of the last record (a clean stop ends with a `checkpoint` of reason `stop`).
    pub last_type: String,
    /// The newest file is empty: a crash right after rotation, before its first write.
    pub empty_last_file: bool,
}

/// Verifies the audit file or directory at `path`. Checkpoint signatures are checked
/// against `key`.
pub fn verify_path(path: &Path, key: &VerifyingKey) -> Result<Summary, VerifyError> {
    let paths: Vec<(PathBuf, Option<u64>)> = if path.is_dir() {
        files::list(path)
            .map_err(|source| VerifyError::Io {
                path: path.to_owned(),
                source,
            })?
            .into_iter()
            .map(|f| (f.path, Some(f.first_seq)))
            .collect()
    } else {
        let named = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(files::parse_file_name);
        vec![(path.to_owned(), named)]
    };
    if paths.is_empty() {
        return Err(VerifyError::NoFiles(path.to_owned()));
    }
    let mut state = State {
        key,
        host: None,
        tip: None,
        from_genesis: true,
        records: 0,
        first_seq: 0,
        checkpoints: 0,
        since_checkpoint: 0,
        last_type: String::new(),
    };
    let mut empty_last_file = false;
    for (file, named) in &paths {
        if state.verify_file(file, *named)? == 0 {
            if Some(file) != paths.last().map(|(p, _)| p) {
                return Err(Finding {
                    path: file.clone(),
                    line: 0,
                    seq: None,
                    problem: Problem::Empty,
                }
                .into());
            }
            empty_last_file = true;
        }
    }
    let tip = state.tip.unwrap_or_else(Tip::genesis);
    Ok(Summary {
        files: paths.len(),
        records: state.records,
        first_seq: state.first_seq,
        last_seq: tip.seq,
        last_hash: tip.hash,
        checkpoints: state.checkpoints,
        unsigned_tail: state.since_checkpoint,
        from_genesis: state.from_genesis,
        last_type: state.last_type,
        empty_last_file,
    })
}

struct State<'a> {
    key: &'a VerifyingKey,
    host: Option<String>,
    tip: Option<Tip>,
    from_genesis: bool,
    records: u64,
    first_seq: u64,
    checkpoints: u64,
    since_checkpoint: u64,
    last_type: String,
}

impl State<'_> {
    /// Verifies one file; returns its number of records.
    fn verify_file(&mut self, path: &Path, named: Option<u64>) -> Result<usize, VerifyError> {
        let io = |source| VerifyError::Io {
            path: path.to_owned(),
            source,
        };
        let mut reader = BufReader::new(File::open(path).map_err(io)?);
        let mut buf = Vec::with_capacity(1024);
        let mut line_no = 0;
        let bad = |line: usize, seq: Option<u64>, problem: Problem| {
            VerifyError::Bad(Finding {
                path: path.to_owned(),
                line,
                seq,
                problem,
            })
        };
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf).map_err(io)? == 0 {
                break;
            }
            line_no += 1;
            let Some(line) = buf.strip_suffix(b"\n") else {
                return Err(bad(line_no, None, Problem::Incomplete));
            };
            let checked = check_line(line).map_err(|e| bad(line_no, seq_hint(line), e.into()))?;
            if line_no == 1
                && let Some(named) = named
                && named != checked.seq
            {
                return Err(bad(
                    line_no,
                    Some(checked.seq),
                    Problem::FileName {
                        named,
                        found: checked.seq,
                    },
                ));
            }
            self.record(&checked)
                .map_err(|p| bad(line_no, Some(checked.seq), p))?;
        }
        Ok(line_no)
    }

    fn record(&mut self, checked: &Checked) -> Result<(), Problem> {
        let host = match (&self.host, checked.record.get("id").and_then(Value::as_str)) {
            (Some(host), _) => host.clone(),
            (None, Some(id)) => id
                .rsplit_once(':')
                .map(|(h, _)| h.to_owned())
                .unwrap_or_default(),
            (None, None) => String::new(),
        };
        let expected_id = record_id(&host, checked.seq);
        let found_id = checked
            .record
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if found_id != expected_id {
            return Err(Problem::BadId {
                expected: expected_id,
                found: found_id.to_owned(),
            });
        }
        self.host = Some(host.clone());
        let mut tip = match self.tip.take() {
            Some(tip) => tip,
            None => {
                self.first_seq = checked.seq;
                self.from_genesis = checked.seq == 1 && checked.prev_hash == GENESIS_HASH;
                Tip {
                    seq: checked.seq.saturating_sub(1),
                    hash: checked.prev_hash.clone(),
                }
            }
        };
        let before = tip.clone();
        tip.advance(checked)?;
        self.tip = Some(tip);
        if checked.kind == "checkpoint" {
            let cp: Checkpoint = serde_json::from_value(Value::Object(checked.record.clone()))
                .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
            checkpoint::verify(&cp, &host, &before, self.key)?;
            self.checkpoints += 1;
            self.since_checkpoint = 0;
        } else {
            self.since_checkpoint += 1;
        }
        self.records += 1;
        self.last_type.clone_from(&checked.kind);
        Ok(())
    }
}

/// The seq of a line that failed its check, when it can still be read.
fn seq_hint(line: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Value>(line)
        .ok()?
        .get("seq")?
        .as_u64()
}
