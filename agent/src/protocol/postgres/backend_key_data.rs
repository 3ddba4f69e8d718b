//! BackendKeyData ('K'): the process id and secret key a client uses to cancel.

use bytes::{BufMut, Bytes};

use super::wire::{Reader, frame};
use super::{FromBytes, ProtocolError, ToBytes};

/// Type byte of BackendKeyData.
pub const TAG: u8 = b'K';

/// A BackendKeyData message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendKeyData {
    /// Backend process id.
    pub pid: i32,
    /// Secret key.
    pub key: i32,
}

impl FromBytes for BackendKeyData {
    fn from_bytes(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, "BackendKeyData");
        let pid = r.i32("process id")?;
        let key = r.i32("secret key")?;
        r.finish()?;
        Ok(Self { pid, key })
    }
}

impl ToBytes for BackendKeyData {
    fn to_bytes(&self) -> Bytes {
        frame(TAG, |b| {
            b.put_i32(self.pid);
            b.put_i32(self.key);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_key_data_round_trips() {
        let m = BackendKeyData {
            pid: 1234,
            key: -99,
        };
        assert_eq!(BackendKeyData::from_bytes(&m.to_bytes()[5..]), Ok(m));
    }

    #[test]
    fn short_key_data_is_truncated() {
        assert!(BackendKeyData::from_bytes(&[0, 0, 0, 1, 0]).is_err());
    }
}
