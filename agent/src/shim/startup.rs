//! A connection's startup phase: SSLRequest/GSSENCRequest negotiation, CancelRequest
//! routing, connecting upstream, and relaying authentication until the first ReadyForQuery.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncWriteExt, BufWriter, ReadHalf, WriteHalf};

use super::Ctx;
use super::connection::{BoxStream, FrameError, FrameReader};
use super::responses::{self, PROTOCOL_VIOLATION};
use super::upstream::UpstreamError;
use crate::protocol::postgres::{BackendKeyData, FromBytes, StartupPacket, ToBytes};

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Reading from the client failed.
    #[error("client: {0}")]
    Client(FrameError),
    /// Reading from the server failed.
    #[error("server: {0}")]
    Server(FrameError),
    /// Writing failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    /// The server could not be reached.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The client broke the protocol.
    #[error("client protocol violation: {0}")]
    Protocol(String),
    /// The client took too long to start up or authenticate.
    #[error("client did not finish startup and authentication within {0}s")]
    StartupTimeout(u64),
    /// TLS handshake with the client failed.
    #[error("client TLS handshake failed: {0}")]
    Tls(std::io::Error),
}

/// A client that finished startup, with its authenticated server connection.
pub struct Established {
    /// The startup parameters.
    pub startup: StartupPacket,
    /// Reads client messages.
    pub client_rd: FrameReader<ReadHalf<BoxStream>>,
    /// Writes to the client.
    pub client_wr: BufWriter<WriteHalf<BoxStream>>,
    /// Reads server messages.
    pub server_rd: FrameReader<ReadHalf<BoxStream>>,
    /// Writes to the server.
    pub server_wr: BufWriter<WriteHalf<BoxStream>>,
    /// Key handed to the client (registered for cancels).
    pub client_key: Option<BackendKeyData>,
    /// Woken by a CancelRequest for this session.
    pub cancel: Arc<tokio::sync::Notify>,
    /// Subject of the client's verified TLS certificate.
    pub tls_subject: Option<String>,
}

const CLIENT_WRITE_BUF: usize = 8 * 1024;
const SERVER_WRITE_BUF: usize = 4 * 1024;

/// A client past encryption negotiation, with its StartupMessage.
struct Negotiated {
    client: FrameReader<BoxStream>,
    startup: StartupPacket,
    frame: Bytes,
    tls_subject: Option<String>,
}

/// Negotiates encryption and reads the StartupMessage; `None` when the connection was a
/// CancelRequest (handled here) or closed early.
async fn negotiate(ctx: &Ctx, stream: BoxStream) -> Result<Option<Negotiated>, SessionError> {
    let max = ctx.config.max_message_len.min(10_000);
    let stall = ctx.config.stall_timeout();
    let mut rd = FrameReader::new(stream, BytesMut::new(), max, stall);
    let mut tls_done = false;
    let mut tls_subject = None;
    loop {
        let Some(frame) = rd.read_startup().await.map_err(SessionError::Client)? else {
            return Ok(None);
        };
        let packet = StartupPacket::from_bytes(&frame[4..])
            .map_err(|e| SessionError::Protocol(e.to_string()));
        let packet = match packet {
            Ok(p) => p,
            Err(e) => {
                let msg = e.to_string();
                rd.get_mut()
                    .write_all(&responses::fatal(PROTOCOL_VIOLATION, &msg))
                    .await
                    .ok();
                return Err(e);
            }
        };
        match packet {
            StartupPacket::SslRequest if !tls_done => {
                let Some(acceptor) = ctx.tls.clone() else {
                    rd.get_mut().write_all(b"N").await?;
                    continue;
                };
                if rd.buffered() > 0 {
                    return Err(SessionError::Protocol(
                        "data sent after SSLRequest before the TLS handshake".into(),
                    ));
                }
                let (mut stream, _) = rd.into_parts();
                stream.write_all(b"S").await?;
                let tls = acceptor.accept(stream).await.map_err(SessionError::Tls)?;
                tls_subject = super::tls::client_subject(tls.get_ref().1);
                rd = FrameReader::new(Box::new(tls), BytesMut::new(), max, stall);
                tls_done = true;
            }
            StartupPacket::GssEncRequest if !tls_done => {
                rd.get_mut().write_all(b"N").await?;
            }
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                return Err(SessionError::Protocol("encryption requested twice".into()));
            }
            StartupPacket::CancelRequest { pid, key } => {
                forward_cancel(ctx, pid, key).await;
                return Ok(None);
            }
            startup @ StartupPacket::Startup { .. } => {
                return Ok(Some(Negotiated {
                    client: rd,
                    startup,
                    frame,
                    tls_subject,
                }));
            }
        }
    }
}

async fn forward_cancel(ctx: &Ctx, pid: i32, key: i32) {
    let Some(target) = ctx.cancels.lookup(pid, key) else {
        tracing::debug!(pid, "CancelRequest with an unknown key ignored");
        return;
    };
    target.notify.notify_waiters();
    if let Err(e) = ctx
        .upstream
        .cancel(target.upstream.pid, target.upstream.key)
        .await
    {
        tracing::warn!(error = %e, "could not forward CancelRequest to the server");
    }
}

/// Drops `SCRAM-SHA-256-PLUS` from an AuthenticationSASL frame: channel binding cannot
/// cross a proxy that terminates TLS, so the client must pick plain SCRAM-SHA-256.
fn without_channel_binding(frame: &Bytes) -> Bytes {
    if frame.len() < 9 || frame[5..9] != 10_i32.to_be_bytes() {
        return frame.clone();
    }
    let mechanisms: Vec<&[u8]> = frame[9..]
        .split(|b| *b == 0)
        .take_while(|m| !m.is_empty())
        .filter(|m| *m != b"SCRAM-SHA-256-PLUS")
        .collect();
    crate::protocol::postgres::wire::frame(b'R', |b| {
        b.put_i32(10);
        for m in mechanisms {
            b.put_slice(m);
            b.put_u8(0);
        }
        b.put_u8(0);
    })
}

/// Runs the startup phase; `Ok(None)` when the connection ended without a session.
pub async fn establish(ctx: &Ctx, stream: BoxStream) -> Result<Option<Established>, SessionError> {
    let Some(Negotiated {
        client,
        startup,
        frame: startup_frame,
        tls_subject,
    }) = negotiate(ctx, stream).await?
    else {
        return Ok(None);
    };
    let (client_stream, leftover) = client.into_parts();
    let (crd, cwr) = tokio::io::split(client_stream);
    let max = ctx.config.max_message_len;
    let stall = ctx.config.stall_timeout();
    let mut client_rd = FrameReader::new(crd, leftover, max, stall);
    let mut client_wr = BufWriter::with_capacity(CLIENT_WRITE_BUF, cwr);

    let server = match ctx.upstream.connect().await {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("dbward shim: {e}");
            client_wr
                .write_all(&responses::fatal(responses::CONNECTION_FAILURE, &msg))
                .await
                .ok();
            client_wr.flush().await.ok();
            return Err(e.into());
        }
    };
    let (srd, swr) = tokio::io::split(server);
    let mut server_rd = FrameReader::new(srd, BytesMut::new(), max, stall);
    let mut server_wr = BufWriter::with_capacity(SERVER_WRITE_BUF, swr);
    server_wr.write_all(&startup_frame).await?;
    server_wr.flush().await?;

    let mut client_key = None;
    let mut cancel = Arc::new(tokio::sync::Notify::new());
    loop {
        tokio::select! {
            frame = server_rd.read_frame() => {
                let Some(frame) = frame.map_err(SessionError::Server)? else {
                    client_wr.flush().await?;
                    return Ok(None);
                };
                match frame[0] {
                    b'K' => {
                        let upstream = BackendKeyData::from_bytes(&frame[5..])
                            .map_err(|e| SessionError::Server(e.into()))?;
                        let (ours, notify) = ctx.cancels.register(upstream);
                        client_key = Some(ours);
                        cancel = notify;
                        client_wr.write_all(&ours.to_bytes()).await?;
                    }
                    b'R' => client_wr.write_all(&without_channel_binding(&frame)).await?,
                    b'Z' => {
                        client_wr.write_all(&frame).await?;
                        client_wr.flush().await?;
                        break;
                    }
                    b'E' => {
                        client_wr.write_all(&frame).await?;
                        client_wr.flush().await?;
                        return Ok(None);
                    }
                    _ => client_wr.write_all(&frame).await?,
                }
                if !server_rd.has_frame() {
                    client_wr.flush().await?;
                }
            }
            frame = client_rd.read_frame() => {
                let Some(frame) = frame.map_err(SessionError::Client)? else {
                    return Ok(None);
                };
                if frame[0] != b'p' {
                    let msg = format!(
                        "unexpected message type {:?} during authentication",
                        frame[0] as char
                    );
                    client_wr.write_all(&responses::fatal(PROTOCOL_VIOLATION, &msg)).await?;
                    client_wr.flush().await?;
                    return Err(SessionError::Protocol(msg));
                }
                server_wr.write_all(&frame).await?;
                server_wr.flush().await?;
            }
        }
    }
    Ok(Some(Established {
        startup,
        client_rd,
        client_wr,
        server_rd,
        server_wr,
        client_key,
        cancel,
        tls_subject,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_binding_is_removed_from_sasl_offers() {
        let offer = crate::protocol::postgres::wire::frame(b'R', |b| {
            b.put_i32(10);
            b.put_slice(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        });
        let want = crate::protocol::postgres::wire::frame(b'R', |b| {
            b.put_i32(10);
            b.put_slice(b"SCRAM-SHA-256\0\0");
        });
        assert_eq!(without_channel_binding(&offer), want);
        let md5 = crate::protocol::postgres::wire::frame(b'R', |b| {
            b.put_i32(5);
            b.put_slice(b"salt");
        });
        assert_eq!(without_channel_binding(&md5), md5);
    }
}
