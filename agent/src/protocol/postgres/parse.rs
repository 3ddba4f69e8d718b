//! Parse ('P'): prepares a named or unnamed statement (extended protocol).

use bytes::{BufMut, Bytes};

use super::wire::{Reader, count_i16, frame, put_cstr};
use super::{FromBytes, ProtocolError, ToBytes};

/// Type byte of Parse.
pub const TAG: u8 = b'P';

/// A Parse message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse {
    /// Prepared statement name ("" is the unnamed statement).
    pub name: String,
    /// The SQL text.
    pub sql: String,
    /// Parameter type OIDs (0 = unspecified).
    pub param_types: Vec<u32>,
}

impl FromBytes for Parse {
    fn from_bytes(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, "Parse");
        let name = r.cstr("statement name")?.to_owned();
        let sql = r.cstr("query string")?.to_owned();
        let n = r.count16("parameter type count")?;
        let mut param_types = Vec::with_capacity(n.min(r.remaining() / 4));
        for _ in 0..n {
            param_types.push(r.i32("parameter type")?.cast_unsigned());
        }
        r.finish()?;
        Ok(Self {
            name,
            sql,
            param_types,
        })
    }
}

impl ToBytes for Parse {
    fn to_bytes(&self) -> Bytes {
        frame(TAG, |b| {
            put_cstr(b, &self.name);
            put_cstr(b, &self.sql);
            b.put_i16(count_i16(self.param_types.len()));
            for t in &self.param_types {
                b.put_u32(*t);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips() {
        let cases = [
            Parse {
                name: String::new(),
                sql: "SELECT $1".into(),
                param_types: vec![23],
            },
            Parse {
                name: "s1".into(),
                sql: "DELETE FROM t".into(),
                param_types: vec![],
            },
        ];
        for p in cases {
            let bytes = p.to_bytes();
            assert_eq!(Parse::from_bytes(&bytes[5..]), Ok(p));
        }
    }

    #[test]
    fn parse_with_missing_parameter_types_is_truncated() {
        assert!(matches!(
            Parse::from_bytes(b"\0SELECT 1\0\0\x02\0\0\0\x17"),
            Err(ProtocolError::Truncated { .. })
        ));
    }
}
