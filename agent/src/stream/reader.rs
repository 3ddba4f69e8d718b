//! Reading audit records back from the audit files in seq order, from a cursor onwards, up to
//! the last durable seq; follows rotation and notices records lost to retention.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::audit::files::{self, AuditFile};

use super::filter::Peek;

/// Errors reading the audit files.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// I/O on an audit file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A record could not be read, or does not have the expected seq.
    #[error(
        "{path}: record at byte {offset} is unreadable or out of order ({reason}); run `dbward audit verify`"
    )]
    Bad {
        /// The file.
        path: PathBuf,
        /// Byte offset of the line.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// One record read back.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    /// The fields the filter needs.
    pub peek: Peek,
    /// The record line, without `\n`.
    pub line: Vec<u8>,
}

/// What one read returned.
#[derive(Debug, Default)]
pub struct ReadBatch {
    /// Records in seq order.
    pub records: Vec<ReadRecord>,
    /// Records that were deleted by retention before they could be read.
    pub lost: u64,
}

struct Open {
    file: AuditFile,
    reader: BufReader<File>,
    offset: u64,
}

/// Reads records with seq ≥ `next` from an audit directory.
pub struct AuditReader {
    dir: PathBuf,
    next: u64,
    open: Option<Open>,
    /// First seq of the file read to its end, so it is not reopened.
    finished: Option<u64>,
    line: Vec<u8>,
}

impl AuditReader {
    /// A reader that starts after `acked`.
    pub fn new(dir: &Path, acked: u64) -> Self {
        Self {
            dir: dir.to_owned(),
            next: acked + 1,
            open: None,
            finished: None,
            line: Vec::with_capacity(1024),
        }
    }

    /// The next seq this reader will return.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// The audit files from the one being read to the newest (the unsent backlog's span).
    pub fn files_behind(&self) -> Result<usize, ReadError> {
        let list = files::list(&self.dir).map_err(|source| ReadError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let start = list
            .iter()
            .rev()
            .find(|f| f.first_seq <= self.next)
            .map_or(0, |f| f.first_seq);
        Ok(list.iter().filter(|f| f.first_seq >= start).count())
    }

    /// Reads records with seq in `next..=upto`, at most `max_events` of them and about
    /// `max_bytes` of lines.
    pub fn read(
        &mut self,
        upto: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<ReadBatch, ReadError> {
        let mut batch = ReadBatch::default();
        let mut bytes = 0;
        while self.next <= upto && batch.records.len() < max_events && bytes < max_bytes {
            if self.open.is_none() && !self.open_for_next(&mut batch.lost)? {
                break;
            }
            match self.read_line()? {
                Some(record) => {
                    if record.peek.seq < self.next {
                        continue;
                    }
                    if record.peek.seq != self.next {
                        return Err(self.bad(format!(
                            "expected seq {}, found {}",
                            self.next, record.peek.seq
                        )));
                    }
                    self.next += 1;
                    bytes += record.line.len();
                    batch.records.push(record);
                }
                None => {
                    if !self.advance_file()? {
                        break;
                    }
                }
            }
        }
        Ok(batch)
    }

    /// Opens the file holding `next` (among files after the one just finished, if any);
    /// counts records lost to retention. False when no file holds it yet.
    fn open_for_next(&mut self, lost: &mut u64) -> Result<bool, ReadError> {
        let list = files::list(&self.dir).map_err(|source| ReadError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let candidates: Vec<&AuditFile> = list
            .iter()
            .filter(|f| self.finished.is_none_or(|done| f.first_seq > done))
            .collect();
        let file = match candidates.iter().rev().find(|f| f.first_seq <= self.next) {
            Some(f) => (*f).clone(),
            None => match candidates.first() {
                Some(first) => {
                    *lost += first.first_seq - self.next;
                    tracing::error!(
                        from = self.next,
                        to = first.first_seq - 1,
                        "audit records were deleted by retention before they were streamed"
                    );
                    self.next = first.first_seq;
                    (*first).clone()
                }
                None => return Ok(false),
            },
        };
        let handle = File::open(&file.path).map_err(|source| ReadError::Io {
            path: file.path.clone(),
            source,
        })?;
        self.finished = None;
        self.open = Some(Open {
            file,
            reader: BufReader::with_capacity(256 * 1024, handle),
            offset: 0,
        });
        Ok(true)
    }

    /// At the end of the open file: moves on when a newer file exists (the writer has
    /// finished this one). False when the writer is still on it.
    fn advance_file(&mut self) -> Result<bool, ReadError> {
        let list = files::list(&self.dir).map_err(|source| ReadError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let Some(current) = &self.open else {
            return Ok(false);
        };
        let current_first = current.file.first_seq;
        if list.iter().any(|f| f.first_seq > current_first) {
            self.finished = Some(current_first);
            self.open = None;
            return Ok(true);
        }
        Ok(false)
    }

    /// Reads one complete line of the open file; `None` at its (current) end.
    fn read_line(&mut self) -> Result<Option<ReadRecord>, ReadError> {
        let Some(open) = &mut self.open else {
            return Ok(None);
        };
        self.line.clear();
        let path = open.file.path.clone();
        let n = open
            .reader
            .read_until(b'\n', &mut self.line)
            .map_err(|source| ReadError::Io {
                path: path.clone(),
                source,
            })?;
        if n == 0 {
            return Ok(None);
        }
        if !self.line.ends_with(b"\n") {
            // The writer is mid-line: come back to this offset later.
            open.reader
                .seek(SeekFrom::Start(open.offset))
                .map_err(|source| ReadError::Io { path, source })?;
            return Ok(None);
        }
        open.offset += n as u64;
        self.line.pop();
        let peek: Peek = serde_json::from_slice(&self.line).map_err(|e| self.bad(e.to_string()))?;
        Ok(Some(ReadRecord {
            peek,
            line: self.line.clone(),
        }))
    }

    fn bad(&self, reason: String) -> ReadError {
        let (path, offset) = self
            .open
            .as_ref()
            .map_or((self.dir.clone(), 0), |o| (o.file.path.clone(), o.offset));
        ReadError::Bad {
            path,
            offset,
            reason,
        }
    }
}
