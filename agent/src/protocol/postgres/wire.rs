//! Field-level reading and writing helpers shared by the message codecs.

use bytes::{BufMut, Bytes, BytesMut};

use super::ProtocolError;

/// A bounds-checked cursor over a message body.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads fields of `message` (used in error texts) from `buf`.
    pub fn new(buf: &'a [u8], message: &'static str) -> Self {
        Self { buf, message }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(ProtocolError::Truncated {
                message: self.message,
                field,
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// A single byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.take(1, field)?[0])
    }

    /// A big-endian 16-bit signed integer.
    pub fn i16(&mut self, field: &'static str) -> Result<i16, ProtocolError> {
        let b = self.take(2, field)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian 32-bit signed integer.
    pub fn i32(&mut self, field: &'static str) -> Result<i32, ProtocolError> {
        let b = self.take(4, field)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count field (`i16`) that must not be negative.
    pub fn count16(&mut self, field: &'static str) -> Result<usize, ProtocolError> {
        let n = self.i16(field)?;
        usize::try_from(n).map_err(|_| self.invalid(field, format!("negative count {n}")))
    }

    /// `n` raw bytes.
    pub fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ProtocolError> {
        self.take(n, field)
    }

    /// A NUL-terminated UTF-8 string.
    pub fn cstr(&mut self, field: &'static str) -> Result<&'a str, ProtocolError> {
        let Some(nul) = self.buf.iter().position(|&b| b == 0) else {
            return Err(ProtocolError::Truncated {
                message: self.message,
                field,
            });
        };
        let raw = self.take(nul + 1, field)?;
        std::str::from_utf8(&raw[..nul]).map_err(|_| ProtocolError::InvalidUtf8 {
            message: self.message,
            field,
        })
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was consumed.
    pub fn finish(self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::TrailingBytes {
                message: self.message,
                extra: self.buf.len(),
            })
        }
    }

    /// An [`ProtocolError::Invalid`] for this message.
    pub fn invalid(&self, field: &'static str, detail: String) -> ProtocolError {
        ProtocolError::Invalid {
            message: self.message,
            field,
            detail,
        }
    }
}

/// Builds one frame: writes the type byte and a length placeholder, lets `body` fill the
/// body, then patches the length.
pub fn frame(tag: u8, body: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u8(tag);
    buf.put_u32(0);
    body(&mut buf);
    let len = u32::try_from(buf.len() - 1).unwrap_or(u32::MAX);
    buf[1..5].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

/// Appends a NUL-terminated string.
pub fn put_cstr(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
}

/// Length-prefixed count for encoders: message bodies never hold more than `i16::MAX` items
/// when they were decoded, so saturating is only reachable for hand-built messages.
pub fn count_i16(n: usize) -> i16 {
    i16::try_from(n).unwrap_or(i16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cstr_without_terminator_is_truncated() {
        let mut r = Reader::new(b"abc", "Test");
        assert!(matches!(
            r.cstr("name"),
            Err(ProtocolError::Truncated { .. })
        ));
    }

    #[test]
    fn cstr_with_bad_utf8_is_rejected() {
        let mut r = Reader::new(b"\xff\x00", "Test");
        assert!(matches!(
            r.cstr("name"),
            Err(ProtocolError::InvalidUtf8 { .. })
        ));
    }

    #[test]
    fn negative_count_is_invalid() {
        let mut r = Reader::new(&[0xff, 0xff], "Test");
        assert!(matches!(r.count16("n"), Err(ProtocolError::Invalid { .. })));
    }

    #[test]
    fn frame_patches_length_to_cover_body_and_length_field() {
        let f = frame(b'Q', |b| put_cstr(b, "x"));
        assert_eq!(&f[..], &[b'Q', 0, 0, 0, 6, b'x', 0]);
    }
}
