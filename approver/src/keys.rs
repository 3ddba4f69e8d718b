//! The approver's ed25519 signing key: loaded from a file, or generated (mode 0600)
//! when the file does not exist yet.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use dbward_approval_api::{parse_signing_key, signing_key_to_base64};
use ed25519_dalek::SigningKey;

/// Errors loading or creating the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// I/O on the key file.
    #[error("signing key {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Content is not a key.
    #[error("signing key {path}: {detail}")]
    Bad {
        /// File.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Others can read the key.
    #[error(
        "signing key {path} has mode {mode:o}; run `chmod 600 {path}` (it must not be readable by group or others)"
    )]
    Exposed {
        /// File.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
}

/// Loads the key at `path`, creating a fresh one with mode 0600 when missing.
pub fn load_or_generate(path: &Path) -> Result<SigningKey, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::Exposed {
                    path: path.to_path_buf(),
                    mode,
                });
            }
            parse_signing_key(&text).map_err(|e| KeyFileError::Bad {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            writeln!(file, "{}", signing_key_to_base64(&key)).map_err(io)?;
            tracing::info!(path = %path.display(), "generated a new approver signing key");
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_key_is_generated_private_and_reloaded_identically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/key");
        let first = load_or_generate(&path).expect("generate");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_generate(&path).expect("reload");
        assert_eq!(first.to_bytes(), again.to_bytes());
    }

    #[test]
    fn group_readable_or_garbage_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        load_or_generate(&path).expect("generate");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(matches!(
            load_or_generate(&path),
            Err(KeyFileError::Exposed { .. })
        ));
        std::fs::write(&path, "garbage").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(
            load_or_generate(&path),
            Err(KeyFileError::Bad { .. })
        ));
    }
}
