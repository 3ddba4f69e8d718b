//! TLS: terminating client TLS with the configured certificate, and the upstream client
//! side (encrypted, certificate not verified, like libpq's `sslmode=require`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::config::ClientCert;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("shim TLS: cannot read {what} from {path}: {detail}")]
    Pem {
        /// Certificate or key.
        what: &'static str,
        /// File.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The client CA bundle cannot be used.
    #[error("shim TLS: cannot use the client CAs in {path}: {detail}")]
    ClientCa {
        /// File.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// rustls refused the configuration.
    #[error("shim TLS: {0}")]
    Config(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An acceptor for client TLS from a PEM certificate chain and key; with `client_ca`,
/// clients are asked for a certificate signed by one of those CAs.
pub fn acceptor(
    cert: &Path,
    key: &Path,
    client_ca: Option<(&Path, ClientCert)>,
) -> Result<TlsAcceptor, TlsError> {
    fn pem_err(
        what: &'static str,
        path: &Path,
    ) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError + use<> {
        let path = path.to_owned();
        move |e| TlsError::Pem {
            what,
            path,
            detail: e.to_string(),
        }
    }
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(pem_err("certificate", cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err("certificate", cert))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_err("private key", key))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some((ca, mode)) => {
            let mut roots = rustls::RootCertStore::empty();
            for der in
                CertificateDer::pem_file_iter(ca).map_err(pem_err("client CA certificates", ca))?
            {
                roots
                    .add(der.map_err(pem_err("client CA certificates", ca))?)
                    .map_err(TlsError::Config)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            );
            let verifier = match mode {
                ClientCert::Optional => verifier.allow_unauthenticated(),
                ClientCert::Required => verifier,
            }
            .build()
            .map_err(|e| TlsError::ClientCa {
                path: ca.to_owned(),
                detail: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The subject of a verified client certificate (`CN=…, O=…`, most significant last as
/// written in the certificate), or `None` when the client sent none.
pub fn client_subject(conn: &rustls::ServerConnection) -> Option<String> {
    let leaf = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(cert.subject().to_string())
}

/// A connector for the upstream server that encrypts without verifying its certificate.
pub fn upstream_connector() -> Result<TlsConnector, TlsError> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(EncryptOnly(algorithms)))
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The server name to present upstream (SNI is not sent for IP addresses).
pub fn server_name(host: &str) -> ServerName<'static> {
    ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| ServerName::try_from("localhost").expect("static name is valid"))
}

/// Accepts any server certificate but still checks handshake signatures.
#[derive(Debug)]
struct EncryptOnly(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
