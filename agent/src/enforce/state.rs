//! The state file of backends stopped for a decision (`held.json`): written before the
//! agent waits on a stopped backend, so a restarted agent resumes every one of them (fail
//! closed: neutralised and terminated) instead of leaving it stopped forever.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where `dbward run` records held backends by default (`--held-state`).
pub const DEFAULT_HELD_STATE: &str = "/var/lib/dbward/held.json";

/// One stopped backend, as recorded in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRecord {
    /// Backend pid.
    pub pid: u32,
    /// Its start time (clock ticks since boot): guards against pid reuse.
    pub start_time: u64,
    /// Address of the statement buffer in the backend.
    pub buf_addr: u64,
    /// Length of the statement.
    pub len: usize,
    /// Stopped at an `Execute`: ended by SIGTERM alone (PostgreSQL checks for the pending
    /// termination before it runs the portal); the text is not rewritten. Absent in files
    /// written before execute holds existed (they were all parse holds).
    #[serde(default)]
    pub at_execute: bool,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error(
        "held-backend state file {path}: {source} (check the directory exists and is writable by the agent)"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error(
        "held-backend state file {path} is corrupt: {source} (inspect it, resume listed pids by hand, then delete it)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The state file.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// A state file at `path` (created on first write, with its directory).
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// The records in the file (none when it does not exist).
    pub fn load(&self) -> Result<Vec<HeldRecord>, StateError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StateError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_str(&text).map_err(|source| StateError::Corrupt {
            path: self.path.clone(),
            source,
        })
    }

    /// Replaces the file's content with `records` (written to a temporary file, synced,
    /// then renamed over the old one).
    pub fn store(&self, records: &[HeldRecord]) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(records).map_err(|source| StateError::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        {
            use std::io::Write as _;
            let mut file = std::fs::File::create(&tmp).map_err(io)?;
            file.write_all(&text).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_store_and_load_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(&dir.path().join("sub/held.json"));
        assert_eq!(file.load().unwrap(), vec![]);
        let records = vec![HeldRecord {
            pid: 7,
            start_time: 99,
            buf_addr: 0x1000,
            len: 12,
            at_execute: true,
        }];
        file.store(&records).unwrap();
        assert_eq!(file.load().unwrap(), records);
        file.store(&[]).unwrap();
        assert_eq!(file.load().unwrap(), vec![]);
    }

    #[test]
    fn a_corrupt_file_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held.json");
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            StateFile::new(&path).load(),
            Err(StateError::Corrupt { .. })
        ));
    }
}
