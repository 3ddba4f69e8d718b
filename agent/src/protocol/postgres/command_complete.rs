//! CommandComplete ('C'): the command tag the server reports, e.g. `DELETE 10`, `COPY 1234`.

use bytes::Bytes;

use super::wire::{Reader, frame, put_cstr};
use super::{FromBytes, ProtocolError, ToBytes};

/// Type byte of CommandComplete.
pub const TAG: u8 = b'C';

/// A CommandComplete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandComplete {
    /// The command tag.
    pub tag: String,
}

impl CommandComplete {
    /// Rows affected or returned, when the tag carries a count (`INSERT 0 5` → 5).
    pub fn rows(&self) -> Option<u64> {
        let mut words = self.tag.split(' ');
        let verb = words.next()?;
        let last = self.tag.rsplit(' ').next()?;
        if last == verb {
            return None;
        }
        last.parse().ok()
    }
}

impl FromBytes for CommandComplete {
    fn from_bytes(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, "CommandComplete");
        let tag = r.cstr("command tag")?.to_owned();
        r.finish()?;
        Ok(Self { tag })
    }
}

impl ToBytes for CommandComplete {
    fn to_bytes(&self) -> Bytes {
        frame(TAG, |b| put_cstr(b, &self.tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_complete_round_trips() {
        let m = CommandComplete {
            tag: "COPY 1234".into(),
        };
        assert_eq!(CommandComplete::from_bytes(&m.to_bytes()[5..]), Ok(m));
    }

    #[test]
    fn rows_come_from_the_last_word_of_the_tag() {
        let cases = [
            ("DELETE 10", Some(10)),
            ("INSERT 0 5", Some(5)),
            ("COPY 1234", Some(1234)),
            ("SELECT 0", Some(0)),
            ("CREATE TABLE", None),
            ("BEGIN", None),
        ];
        for (tag, want) in cases {
            let m = CommandComplete { tag: tag.into() };
            assert_eq!(m.rows(), want, "{tag}");
        }
    }
}
