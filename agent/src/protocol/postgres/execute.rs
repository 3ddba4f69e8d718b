//! Execute ('E'): runs a bound portal (extended protocol).

use bytes::{BufMut, Bytes};

use super::wire::{Reader, frame, put_cstr};
use super::{FromBytes, ProtocolError, ToBytes};

/// Type byte of Execute.
pub const TAG: u8 = b'E';

/// An Execute message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execute {
    /// Portal to run ("" is the unnamed portal).
    pub portal: String,
    /// Row limit; 0 means no limit.
    pub max_rows: i32,
}

impl FromBytes for Execute {
    fn from_bytes(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, "Execute");
        let portal = r.cstr("portal name")?.to_owned();
        let max_rows = r.i32("row limit")?;
        r.finish()?;
        Ok(Self { portal, max_rows })
    }
}

impl ToBytes for Execute {
    fn to_bytes(&self) -> Bytes {
        frame(TAG, |b| {
            put_cstr(b, &self.portal);
            b.put_i32(self.max_rows);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_round_trips() {
        for m in [
            Execute {
                portal: String::new(),
                max_rows: 0,
            },
            Execute {
                portal: "c1".into(),
                max_rows: 100,
            },
        ] {
            let bytes = m.to_bytes();
            assert_eq!(Execute::from_bytes(&bytes[5..]), Ok(m));
        }
    }

    #[test]
    fn execute_without_row_limit_is_truncated() {
        assert!(Execute::from_bytes(b"\0\0\0").is_err());
    }
}
