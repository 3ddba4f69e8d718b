//! The persisted stream cursor: the last seq the endpoint acknowledged.

use std::fs;
use std::path::{Path, PathBuf};

/// Errors reading or writing the cursor file.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// I/O on the cursor file failed.
    #[error("{path}: {source}")]
    Io {
        /// The cursor file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not hold a number.
    #[error("{path}: {content:?} is not a seq; delete the file to restream the whole retained log")]
    Malformed {
        /// The cursor file.
        path: PathBuf,
        /// What it holds.
        content: String,
    },
}

/// The last acknowledged seq, kept in a file.
#[derive(Debug)]
pub struct Cursor {
    path: PathBuf,
    acked: u64,
}

impl Cursor {
    /// Loads the cursor, 0 when the file does not exist yet.
    pub fn load(path: &Path) -> Result<Self, CursorError> {
        let acked = match fs::read_to_string(path) {
            Ok(text) => text.trim().parse().map_err(|_| CursorError::Malformed {
                path: path.to_owned(),
                content: text.clone(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => {
                return Err(CursorError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Ok(Self {
            path: path.to_owned(),
            acked,
        })
    }

    /// The last acknowledged seq.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Records `seq` as acknowledged (write to a temporary file, then rename). Not fsynced:
    /// losing the latest value only replays records the endpoint deduplicates.
    pub fn store(&mut self, seq: u64) -> Result<(), CursorError> {
        let tmp = self.path.with_extension("tmp");
        let io = |source| CursorError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(parent) = self.path.parent() {
            fs::create_dir_all(parent).map_err(io)?;
        }
        fs::write(&tmp, format!("{seq}\n")).map_err(io)?;
        fs::rename(&tmp, &self.path).map_err(io)?;
        self.acked = seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_survives_reload_and_rejects_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/stream.cursor");
        let mut cursor = Cursor::load(&path).expect("absent file is 0");
        assert_eq!(cursor.acked(), 0);
        cursor.store(41).expect("store");
        assert_eq!(Cursor::load(&path).expect("reload").acked(), 41);
        fs::write(&path, "forty-one").expect("write");
        assert!(matches!(
            Cursor::load(&path),
            Err(CursorError::Malformed { .. })
        ));
    }
}
