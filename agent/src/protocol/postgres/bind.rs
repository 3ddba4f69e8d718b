//! Bind ('B'): binds parameters to a prepared statement, creating a portal.

use bytes::{BufMut, Bytes};

use super::wire::{Reader, count_i16, frame, put_cstr};
use super::{FromBytes, ProtocolError, ToBytes};

/// Type byte of Bind.
pub const TAG: u8 = b'B';

/// A Bind message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Destination portal ("" is the unnamed portal).
    pub portal: String,
    /// Source prepared statement ("" is the unnamed statement).
    pub statement: String,
    /// Parameter format codes (0 text, 1 binary).
    pub param_formats: Vec<i16>,
    /// Parameter values; `None` is SQL NULL.
    pub params: Vec<Option<Vec<u8>>>,
    /// Result column format codes.
    pub result_formats: Vec<i16>,
}

fn formats(r: &mut Reader<'_>, field: &'static str) -> Result<Vec<i16>, ProtocolError> {
    let n = r.count16(field)?;
    let mut out = Vec::with_capacity(n.min(r.remaining() / 2));
    for _ in 0..n {
        let f = r.i16("format code")?;
        if f != 0 && f != 1 {
            return Err(r.invalid("format code", format!("{f} (must be 0 or 1)")));
        }
        out.push(f);
    }
    Ok(out)
}

impl FromBytes for Bind {
    fn from_bytes(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, "Bind");
        let portal = r.cstr("portal name")?.to_owned();
        let statement = r.cstr("statement name")?.to_owned();
        let param_formats = formats(&mut r, "parameter format count")?;
        let n = r.count16("parameter count")?;
        let mut params = Vec::with_capacity(n.min(r.remaining() / 4));
        for _ in 0..n {
            let len = r.i32("parameter length")?;
            if len == -1 {
                params.push(None);
            } else {
                let len = usize::try_from(len)
                    .map_err(|_| r.invalid("parameter length", format!("{len}")))?;
                params.push(Some(r.bytes(len, "parameter value")?.to_vec()));
            }
        }
        let result_formats = formats(&mut r, "result format count")?;
        r.finish()?;
        Ok(Self {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        })
    }
}

impl ToBytes for Bind {
    fn to_bytes(&self) -> Bytes {
        frame(TAG, |b| {
            put_cstr(b, &self.portal);
            put_cstr(b, &self.statement);
            b.put_i16(count_i16(self.param_formats.len()));
            for f in &self.param_formats {
                b.put_i16(*f);
            }
            b.put_i16(count_i16(self.params.len()));
            for p in &self.params {
                match p {
                    None => b.put_i32(-1),
                    Some(v) => {
                        b.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
                        b.put_slice(v);
                    }
                }
            }
            b.put_i16(count_i16(self.result_formats.len()));
            for f in &self.result_formats {
                b.put_i16(*f);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_round_trips() {
        let cases = [
            Bind {
                portal: String::new(),
                statement: String::new(),
                param_formats: vec![],
                params: vec![],
                result_formats: vec![],
            },
            Bind {
                portal: "p".into(),
                statement: "s".into(),
                param_formats: vec![0, 1],
                params: vec![Some(b"42".to_vec()), None],
                result_formats: vec![1],
            },
        ];
        for m in cases {
            let bytes = m.to_bytes();
            assert_eq!(Bind::from_bytes(&bytes[5..]), Ok(m));
        }
    }

    #[test]
    fn bind_with_bad_values_is_rejected() {
        let cases: &[&[u8]] = &[
            b"\0\0\0\x01\0\x02\0\0\0\0",
            b"\0\0\0\0\0\x01\xff\xff\xff\xfe\0\0",
            b"\0\0\0\0\0\x01\0\0\0\x09ab\0\0",
        ];
        for body in cases {
            assert!(Bind::from_bytes(body).is_err(), "{body:?}");
        }
    }
}
