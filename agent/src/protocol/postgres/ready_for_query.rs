//! ReadyForQuery ('Z'): end of a request cycle, with the transaction status.

use bytes::{BufMut, Bytes};

use super::wire::{Reader, frame};
use super::{FromBytes, ProtocolError, ToBytes};

/// Type byte of ReadyForQuery.
pub const TAG: u8 = b'Z';

/// Transaction status reported in ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    /// Not in a transaction block ('I').
    Idle,
    /// In a transaction block ('T').
    InTransaction,
    /// In a failed transaction block ('E').
    Failed,
}

/// A ReadyForQuery message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyForQuery {
    /// Transaction status.
    pub status: TransactionStatus,
}

impl FromBytes for ReadyForQuery {
    fn from_bytes(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, "ReadyForQuery");
        let status = match r.u8("transaction status")? {
            b'I' => TransactionStatus::Idle,
            b'T' => TransactionStatus::InTransaction,
            b'E' => TransactionStatus::Failed,
            other => {
                return Err(r.invalid("transaction status", format!("{:?}", other as char)));
            }
        };
        r.finish()?;
        Ok(Self { status })
    }
}

impl ToBytes for ReadyForQuery {
    fn to_bytes(&self) -> Bytes {
        frame(TAG, |b| {
            b.put_u8(match self.status {
                TransactionStatus::Idle => b'I',
                TransactionStatus::InTransaction => b'T',
                TransactionStatus::Failed => b'E',
            });
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_for_query_round_trips() {
        for status in [
            TransactionStatus::Idle,
            TransactionStatus::InTransaction,
            TransactionStatus::Failed,
        ] {
            let m = ReadyForQuery { status };
            assert_eq!(ReadyForQuery::from_bytes(&m.to_bytes()[5..]), Ok(m));
        }
    }

    #[test]
    fn unknown_status_is_rejected() {
        assert!(ReadyForQuery::from_bytes(b"X").is_err());
        assert!(ReadyForQuery::from_bytes(b"").is_err());
    }
}
