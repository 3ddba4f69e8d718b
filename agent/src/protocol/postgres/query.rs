//! Query ('Q'): a simple-protocol query string, possibly several statements.

use bytes::Bytes;

use super::wire::{Reader, frame, put_cstr};
use super::{FromBytes, ProtocolError, ToBytes};

/// Type byte of Query.
pub const TAG: u8 = b'Q';

/// A simple-protocol query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The SQL text as sent.
    pub sql: String,
}

impl FromBytes for Query {
    fn from_bytes(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, "Query");
        let sql = r.cstr("query string")?.to_owned();
        r.finish()?;
        Ok(Self { sql })
    }
}

impl ToBytes for Query {
    fn to_bytes(&self) -> Bytes {
        frame(TAG, |b| put_cstr(b, &self.sql))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trips() {
        for sql in ["SELECT 1", "", "select 'é'; delete from t"] {
            let q = Query { sql: sql.into() };
            let bytes = q.to_bytes();
            assert_eq!(Query::from_bytes(&bytes[5..]), Ok(q));
        }
    }

    #[test]
    fn query_with_two_strings_is_rejected() {
        assert!(Query::from_bytes(b"a\0b\0").is_err());
    }
}
