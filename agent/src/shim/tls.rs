//! TLS: terminating client TLS with the configured certificate, and the upstream client
//! side (the server's certificate checked as libpq's `sslmode` would, optionally with a
//! client certificate).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dbward_approval_api::pem::{self, PemError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::config::ClientCert;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("shim TLS: {0}")]
    Pem(#[from] PemError),
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
    let certs = pem::certificates("certificate", cert)?;
    let key = pem::private_key(key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some((ca, mode)) => {
            let roots = pem::trust_anchors("client CA certificates", ca)?;
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

/// What the shim checks of the real server's certificate.
#[derive(Debug, Clone, Copy)]
pub enum ServerTrust<'a> {
    /// Nothing (`require`): encrypted, open to a man in the middle.
    Any,
    /// The chain must lead to a CA in the PEM bundle `ca`; with `check_name`, the
    /// certificate must also be issued for the server name (`verify-full`).
    Ca {
        /// PEM bundle of trusted CAs.
        ca: &'a Path,
        /// Whether the server name must match.
        check_name: bool,
    },
}

/// A connector for the upstream server that checks its certificate as `trust` says and,
/// with `client_cert` (PEM chain, key), presents a client certificate.
pub fn upstream_connector(
    trust: ServerTrust<'_>,
    client_cert: Option<(&Path, &Path)>,
) -> Result<TlsConnector, TlsError> {
    let provider = provider();
    let roots = match trust {
        ServerTrust::Any => None,
        ServerTrust::Ca { ca, check_name } => Some((
            pem::trust_anchors("upstream CA certificates", ca)?,
            check_name,
        )),
    };
    let verifier = UpstreamVerifier {
        roots,
        algorithms: provider.signature_verification_algorithms,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder.with_client_auth_cert(
            pem::certificates("client certificate", cert)?,
            pem::private_key(key)?,
        )?,
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The server name presented upstream when no name is checked (SNI is not sent for IP
/// addresses).
pub fn fallback_server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("static name is valid")
}

/// Checks the server's certificate chain against `roots` (and its name when asked), or
/// accepts any certificate without `roots`; handshake signatures are always checked.
#[derive(Debug)]
struct UpstreamVerifier {
    roots: Option<(RootCertStore, bool)>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for UpstreamVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some((roots, check_name)) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if *check_name {
            verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
