//! Byte streams and framed reading: `read_frame` buffers, runs the cheap length check
//! before any parse, and reports a clean EOF as `Ok(None)` (mini-redis style).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::protocol::postgres::{ProtocolError, check_typed, check_untyped};

/// Any bidirectional byte stream (TCP, unix socket, TLS over either).
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// A boxed [`ByteStream`].
pub type BoxStream = Box<dyn ByteStream>;

const READ_CHUNK: usize = 4096;
const SHRINK_ABOVE: usize = 64 * 1024;

/// Why reading a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Socket error.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent an impossible or oversized length.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The peer closed in the middle of a message.
    #[error("connection closed in the middle of a message ({0} bytes buffered)")]
    Truncated(usize),
    /// The peer began a message and stopped sending.
    #[error("peer stalled for {0:?} in the middle of a message")]
    Stalled(Duration),
}

/// Reads whole protocol messages from a stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    rd: R,
    buf: BytesMut,
    max: usize,
    stall: Duration,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads from `rd`, refusing lengths above `max`, closing peers that stall mid-message
    /// longer than `stall`. `buf` holds bytes already read from `rd`.
    pub fn new(rd: R, buf: BytesMut, max: usize, stall: Duration) -> Self {
        Self {
            rd,
            buf,
            max,
            stall,
        }
    }

    /// The stream and any bytes read but not yet consumed.
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.rd, self.buf)
    }

    /// The underlying stream (for writing during startup).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.rd
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// True when a complete typed message is already buffered.
    pub fn has_frame(&self) -> bool {
        matches!(check_typed(&self.buf, self.max), Ok(Some(_)))
    }

    /// The next typed message (type byte, length, body); `Ok(None)` on a clean EOF.
    /// Cancel-safe: bytes read before a cancellation stay buffered.
    pub async fn read_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        self.read_with(check_typed).await
    }

    /// The next startup-phase packet (length, body); `Ok(None)` on a clean EOF.
    pub async fn read_startup(&mut self) -> Result<Option<Bytes>, FrameError> {
        self.read_with(check_untyped).await
    }

    /// Reads more bytes without parsing (used to notice EOF while a statement is held);
    /// returns how many were read, 0 at EOF. Cancel-safe.
    pub async fn fill(&mut self) -> Result<usize, FrameError> {
        self.buf.reserve(READ_CHUNK);
        Ok(self.rd.read_buf(&mut self.buf).await?)
    }

    async fn read_with(
        &mut self,
        check: fn(&[u8], usize) -> Result<Option<usize>, ProtocolError>,
    ) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(len) = check(&self.buf, self.max)? {
                let frame = self.buf.split_to(len).freeze();
                if self.buf.is_empty() && self.buf.capacity() > SHRINK_ABOVE {
                    self.buf = BytesMut::new();
                }
                return Ok(Some(frame));
            }
            self.reserve_for_partial();
            let n = if self.buf.is_empty() {
                self.rd.read_buf(&mut self.buf).await?
            } else {
                tokio::time::timeout(self.stall, self.rd.read_buf(&mut self.buf))
                    .await
                    .map_err(|_| FrameError::Stalled(self.stall))??
            };
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated(self.buf.len()))
                };
            }
        }
    }

    fn reserve_for_partial(&mut self) {
        let want = match check_typed(&self.buf, self.max) {
            Ok(None) if self.buf.len() >= 5 => {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                usize::try_from(len).unwrap_or(READ_CHUNK).saturating_add(1)
            }
            _ => READ_CHUNK,
        };
        let want = want.min(self.max.saturating_add(1)).max(READ_CHUNK);
        let spare = self.buf.capacity() - self.buf.len();
        if spare < READ_CHUNK {
            self.buf
                .reserve(want.saturating_sub(self.buf.len()).max(READ_CHUNK));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(data: &'static [u8], max: usize) -> FrameReader<&'static [u8]> {
        FrameReader::new(data, BytesMut::new(), max, Duration::from_secs(1))
    }

    #[tokio::test]
    async fn frames_are_split_and_clean_eof_is_none() {
        let mut r = reader(b"Q\0\0\0\x06x\0S\0\0\0\x04", 100);
        assert_eq!(
            r.read_frame().await.ok().flatten().as_deref(),
            Some(&b"Q\0\0\0\x06x\0"[..])
        );
        assert_eq!(
            r.read_frame().await.ok().flatten().as_deref(),
            Some(&b"S\0\0\0\x04"[..])
        );
        assert!(matches!(r.read_frame().await, Ok(None)));
    }

    #[tokio::test]
    async fn eof_mid_message_is_truncated() {
        let mut r = reader(b"Q\0\0\0\x10abc", 100);
        assert!(matches!(
            r.read_frame().await,
            Err(FrameError::Truncated(8))
        ));
    }

    #[tokio::test]
    async fn oversized_length_is_refused_before_buffering() {
        let mut r = reader(b"Q\x7f\xff\xff\xff", 1 << 30);
        assert!(matches!(r.read_frame().await, Err(FrameError::Protocol(_))));
    }

    #[tokio::test]
    async fn stalled_peer_times_out() {
        let (client, server) = tokio::io::duplex(64);
        let mut r = FrameReader::new(server, BytesMut::new(), 100, Duration::from_millis(50));
        let mut client = client;
        tokio::io::AsyncWriteExt::write_all(&mut client, b"Q\0\0\0\x10ab")
            .await
            .expect("write");
        assert!(matches!(r.read_frame().await, Err(FrameError::Stalled(_))));
    }
}
