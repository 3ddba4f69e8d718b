//! Message framing: the cheap "is a whole message buffered?" check run before any parse.

use super::ProtocolError;

/// Type byte plus 32-bit length.
pub const HEADER_LEN: usize = 5;

fn checked_len(raw: [u8; 4], max: usize, min: usize) -> Result<usize, ProtocolError> {
    let len = u32::from_be_bytes(raw);
    let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
    if len_usize < min {
        return Err(ProtocolError::TooShort {
            len: i64::from(len),
            min,
        });
    }
    if len_usize > max {
        return Err(ProtocolError::TooLong {
            len: len_usize,
            max,
        });
    }
    Ok(len_usize)
}

/// For a typed message (type byte, then a length that counts itself): `Ok(Some(total))` when
/// `buf` starts with a complete message of `total` bytes, `Ok(None)` when more bytes are
/// needed, an error when the length is impossible or above `max`.
pub fn check_typed(buf: &[u8], max: usize) -> Result<Option<usize>, ProtocolError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = checked_len([buf[1], buf[2], buf[3], buf[4]], max, 4)?;
    let total = len + 1;
    Ok((buf.len() >= total).then_some(total))
}

/// For an untyped startup-phase packet (length first, counting itself): like
/// [`check_typed`]. The smallest valid packet is 8 bytes (length and request code).
pub fn check_untyped(buf: &[u8], max: usize) -> Result<Option<usize>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = checked_len([buf[0], buf[1], buf[2], buf[3]], max, 8)?;
    Ok((buf.len() >= len).then_some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Checked = Result<Option<usize>, ()>;

    #[test]
    fn typed_frames_are_checked_before_parse() {
        let cases: &[(&[u8], usize, Checked)] = &[
            (b"", 100, Ok(None)),
            (b"Q\0\0\0", 100, Ok(None)),
            (b"Q\0\0\0\x04", 100, Ok(Some(5))),
            (b"Q\0\0\0\x06x", 100, Ok(None)),
            (b"Q\0\0\0\x06x\0rest", 100, Ok(Some(7))),
            (b"Q\0\0\0\x03", 100, Err(())),
            (b"Q\xff\xff\xff\xff", 100, Err(())),
            (b"Q\0\0\0\x65", 100, Err(())),
            (b"Q\0\0\0\x64", 100, Ok(None)),
        ];
        for (buf, max, want) in cases {
            let got = check_typed(buf, *max).map_err(|_| ());
            assert_eq!(&got, want, "buf {buf:?}");
        }
    }

    #[test]
    fn untyped_packets_are_checked_before_parse() {
        let cases: &[(&[u8], Checked)] = &[
            (b"\0\0\0", Ok(None)),
            (b"\0\0\0\x08\x04\xd2", Ok(None)),
            (b"\0\0\0\x08\x04\xd2\x16\x2f", Ok(Some(8))),
            (b"\0\0\0\x07", Err(())),
            (b"\x7f\0\0\0", Err(())),
        ];
        for (buf, want) in cases {
            let got = check_untyped(buf, 10_000).map_err(|_| ());
            assert_eq!(&got, want, "buf {buf:?}");
        }
    }
}
