//! Connecting to the real server (TCP or unix socket, optionally TLS).

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::config::{UpstreamAddr, UpstreamTls};
use super::connection::BoxStream;
use super::tls;
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
    #[error("database server at {0} refused TLS (shim.upstream_tls = \"require\")")]
    TlsRefused(String),
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// How to reach the real server.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Address.
    pub addr: UpstreamAddr,
    /// TLS mode.
    pub tls: UpstreamTls,
}

impl Upstream {
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
                match self.tls {
                    UpstreamTls::Disable => Ok(Box::new(s)),
                    UpstreamTls::Require => {
                        let host = a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h);
                        self.start_tls(s, host).await
                    }
                }
            }
            UpstreamAddr::Unix(p) => {
                let s = UnixStream::connect(p).await.map_err(io)?;
                match self.tls {
                    UpstreamTls::Disable => Ok(Box::new(s)),
                    UpstreamTls::Require => self.start_tls(s, "localhost").await,
                }
            }
        }
    }

    async fn start_tls<S>(&self, mut s: S, host: &str) -> Result<BoxStream, UpstreamError>
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
            return Err(UpstreamError::TlsRefused(self.label()));
        }
        let tls = tls::upstream_connector()?
            .connect(tls::server_name(host), s)
            .await
            .map_err(io)?;
        Ok(Box::new(tls))
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
