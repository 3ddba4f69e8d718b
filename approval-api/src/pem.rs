//! PEM files for TLS set-up, read the same way by the agent (the shim) and the approver:
//! certificate chains, private keys and CA bundles, each error naming the file and what it
//! was meant to hold.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file that could not be read or holds nothing usable.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {what} from {path}: {detail}")]
pub struct PemError {
    /// What the file was meant to hold ("certificate", "client CA", …).
    pub what: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub detail: String,
}

impl PemError {
    fn new(what: &'static str, path: &Path, detail: impl ToString) -> Self {
        Self {
            what,
            path: path.to_owned(),
            detail: detail.to_string(),
        }
    }
}

/// Every certificate in the PEM file at `path` (at least one), in file order.
pub fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| PemError::new(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::new(what, path, e))?;
    if certs.is_empty() {
        return Err(PemError::new(what, path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// The private key in the PEM file at `path`.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| PemError::new("private key", path, e))
}

/// The CA certificates in the PEM file at `path`, as trust anchors.
pub fn trust_anchors(what: &'static str, path: &Path) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    for der in certificates(what, path)? {
        roots.add(der).map_err(|e| PemError::new(what, path, e))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_and_what_it_should_hold() {
        let dir = std::env::temp_dir().join(format!("dbward-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = certificates("client CA", &empty).unwrap_err();
        assert_eq!(e.what, "client CA");
        assert!(e.to_string().contains("empty.pem"), "{e}");
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let missing = dir.join("missing.pem");
        assert!(
            private_key(&missing)
                .unwrap_err()
                .to_string()
                .contains("private key")
        );
        assert!(trust_anchors("CA", &missing).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
