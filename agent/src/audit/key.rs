//! The host's ed25519 audit key: load or generate the signing key file (mode 0600) and
//! write/read the verifying key that `dbward audit verify` uses.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

use super::record::sha256_hex;

/// File name of the verifying key written next to the log.
pub const VERIFYING_KEY_FILE: &str = "audit.pub";

/// Errors loading or writing keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file does not hold 32 hex-encoded bytes.
    #[error(
        "{path}: not a hex-encoded 32-byte ed25519 key ({reason}); restore it or remove it to generate a new one"
    )]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The host's signing key.
pub struct HostKey {
    signing: SigningKey,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey")
            .field("key_id", &self.key_id())
            .finish()
    }
}

impl HostKey {
    /// Loads the key at `path`, or generates one there (mode 0600) when the file is absent.
    pub fn load_or_generate(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        match fs::read_to_string(path) {
            Ok(text) => {
                let mode = fs::metadata(path).map_err(io)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "audit signing key is readable by others; chmod 600 it");
                }
                let bytes = decode_32(path, &text)?;
                Ok(Self {
                    signing: SigningKey::from_bytes(&bytes),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let signing = SigningKey::generate(&mut rand::rngs::OsRng);
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(io)?;
                }
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                writeln!(file, "{}", hex::encode(signing.to_bytes())).map_err(io)?;
                file.sync_all().map_err(io)?;
                tracing::info!(path = %path.display(), "generated audit signing key");
                Ok(Self { signing })
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The key id recorded in checkpoints.
    pub fn key_id(&self) -> String {
        key_id(&self.verifying_key())
    }

    /// Writes the verifying key to `dir/audit.pub` unless it already holds this key.
    pub fn publish_verifying_key(&self, dir: &Path) -> Result<PathBuf, KeyError> {
        let path = dir.join(VERIFYING_KEY_FILE);
        let text = format!("{}\n", hex::encode(self.verifying_key().to_bytes()));
        if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            fs::write(&path, text).map_err(|source| KeyError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(path)
    }
}

/// The id of a verifying key: hex sha256 of its 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    sha256_hex(key.as_bytes())
}

/// Reads a verifying key file (hex of 32 bytes).
pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    let bytes = decode_32(path, &text)?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| KeyError::Malformed {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn decode_32(path: &Path, text: &str) -> Result<[u8; 32], KeyError> {
    let malformed = |reason: String| KeyError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let bytes = hex::decode(text.trim()).map_err(|e| malformed(e.to_string()))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| malformed(format!("{} bytes instead of 32", b.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_private_and_reloads_identically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/audit.key");
        let first = HostKey::load_or_generate(&path).expect("generate");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = HostKey::load_or_generate(&path).expect("reload");
        assert_eq!(first.verifying_key(), second.verifying_key());
        let published = first.publish_verifying_key(dir.path()).expect("publish");
        assert_eq!(
            read_verifying_key(&published).expect("read"),
            first.verifying_key()
        );
    }

    #[test]
    fn malformed_key_files_are_reported_with_their_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, content) in [("short", "abcd"), ("nothex", "zz"), ("empty", "")] {
            let path = dir.path().join(name);
            fs::write(&path, content).expect("write");
            let err = HostKey::load_or_generate(&path).expect_err(name);
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
