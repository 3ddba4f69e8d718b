//! Connecting to the real server (TCP or unix socket, optionally TLS).

use bytes::Bytes;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;

use super::ShimError;
use super::config::{ShimConfig, ShimConfigError, UpstreamAddr, UpstreamTls};
use super::connection::BoxStream;
use super::tls::{self, ServerTrust};
use crate::protocol::postgres::{StartupPacket, ToBytes};

/// Why the real server could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connect or handshake I/O failed.
    #[error("cannot reach the database server at {addr}: {source}")]
    Io {
        /// Where.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// TLS was required and the server refused it.
    #[error("database server at {addr} refused TLS (shim.upstream_tls = \"{mode}\")")]
    TlsRefused {
        /// Where.
        addr: String,
        /// The configured mode.
        mode: UpstreamTls,
    },
    /// The server's certificate failed verification (wrong CA, wrong name, expired…).
    #[error(
        "the database server's certificate is not trusted: {reason} (server {addr}, shim.upstream_tls = \"{mode}\")"
    )]
    Untrusted {
        /// Where.
        addr: String,
        /// What is wrong with the certificate.
        reason: String,
        /// The configured mode.
        mode: UpstreamTls,
    },
}

/// TLS towards the real server: the mode, its connector and the name checked.
struct UpstreamTlsClient {
    mode: UpstreamTls,
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

/// How to reach the real server.
pub struct Upstream {
    addr: UpstreamAddr,
    tls: Option<UpstreamTlsClient>,
}

impl Upstream {
    /// The upstream of a configuration that passed [`ShimConfig::check`], with its TLS
    /// material (CAs, client certificate) loaded.
    pub fn new(config: &ShimConfig) -> Result<Self, ShimError> {
        let addr = config.upstream_addr().ok_or_else(|| {
            ShimError::Config(vec![ShimConfigError::BadUpstream(config.upstream.clone())])
        })?;
        let mode = config.upstream_tls;
        let trust = match (mode, config.upstream_ca.as_deref()) {
            (UpstreamTls::Disable, _) => return Ok(Self { addr, tls: None }),
            (UpstreamTls::Require, _) => ServerTrust::Any,
            (UpstreamTls::VerifyCa, Some(ca)) => ServerTrust::Ca {
                ca,
                check_name: false,
            },
            (UpstreamTls::VerifyFull, Some(ca)) => ServerTrust::Ca {
                ca,
                check_name: true,
            },
            (UpstreamTls::VerifyCa | UpstreamTls::VerifyFull, None) => {
                return Err(ShimError::Config(vec![ShimConfigError::UpstreamCaMissing(
                    mode,
                )]));
            }
        };
        if mode == UpstreamTls::Require {
            tracing::warn!(
                "shim.upstream_tls = \"require\": the database server's certificate is not verified, \
                 so the connection to it is open to a man in the middle; set shim.upstream_tls = \
                 \"verify-full\" and shim.upstream_ca"
            );
        }
        let client_cert = config
            .upstream_tls_cert
            .as_deref()
            .zip(config.upstream_tls_key.as_deref());
        Ok(Self {
            addr,
            tls: Some(UpstreamTlsClient {
                mode,
                connector: tls::upstream_connector(trust, client_cert)?,
                server_name: config
                    .upstream_server_name()
                    .unwrap_or_else(tls::fallback_server_name),
            }),
        })
    }

    fn label(&self) -> String {
        match &self.addr {
            UpstreamAddr::Tcp(a) => a.clone(),
            UpstreamAddr::Unix(p) => p.display().to_string(),
        }
    }

    /// Opens a connection, negotiating TLS when configured.
    pub async fn connect(&self) -> Result<BoxStream, UpstreamError> {
        let io = |source| UpstreamError::Io {
            addr: self.label(),
            source,
        };
        match &self.addr {
            UpstreamAddr::Tcp(a) => {
                let s = TcpStream::connect(a).await.map_err(io)?;
                s.set_nodelay(true).map_err(io)?;
                match &self.tls {
                    None => Ok(Box::new(s)),
                    Some(tls) => self.start_tls(s, tls).await,
                }
            }
            UpstreamAddr::Unix(p) => {
                let s = UnixStream::connect(p).await.map_err(io)?;
                match &self.tls {
                    None => Ok(Box::new(s)),
                    Some(tls) => self.start_tls(s, tls).await,
                }
            }
        }
    }

    async fn start_tls<S>(
        &self,
        mut s: S,
        tls: &UpstreamTlsClient,
    ) -> Result<BoxStream, UpstreamError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = |source| UpstreamError::Io {
            addr: self.label(),
            source,
        };
        s.write_all(&StartupPacket::SslRequest.to_bytes())
            .await
            .map_err(io)?;
        let answer = s.read_u8().await.map_err(io)?;
        if answer != b'S' {
            return Err(UpstreamError::TlsRefused {
                addr: self.label(),
                mode: tls.mode,
            });
        }
        let stream = tls
            .connector
            .connect(tls.server_name.clone(), s)
            .await
            .map_err(|e| match untrusted_reason(&e) {
                Some(reason) => UpstreamError::Untrusted {
                    addr: self.label(),
                    reason,
                    mode: tls.mode,
                },
                None => io(e),
            })?;
        Ok(Box::new(stream))
    }

    /// Sends a cancel request for `pid`/`key` on a fresh connection, as PostgreSQL expects.
    pub async fn cancel(&self, pid: i32, key: i32) -> Result<(), UpstreamError> {
        let mut s = self.connect().await?;
        let packet: Bytes = StartupPacket::CancelRequest { pid, key }.to_bytes();
        s.write_all(&packet)
            .await
            .map_err(|source| UpstreamError::Io {
                addr: self.label(),
                source,
            })?;
        s.shutdown().await.ok();
        Ok(())
    }
}

/// What is wrong with the server's certificate, when the handshake failed over it.
fn untrusted_reason(e: &std::io::Error) -> Option<String> {
    let rustls::Error::InvalidCertificate(cert) = e.get_ref()?.downcast_ref::<rustls::Error>()?
    else {
        return None;
    };
    Some(match cert {
        rustls::CertificateError::UnknownIssuer => {
            "it is not signed by a CA in shim.upstream_ca (unknown issuer)".to_owned()
        }
        other => other.to_string(),
    })
}
