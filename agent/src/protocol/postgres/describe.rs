//! Describe ('D') and Close ('C'): both name a prepared statement or a portal.

use bytes::{BufMut, Bytes};

use super::wire::{Reader, frame, put_cstr};
use super::{FromBytes, ProtocolError, ToBytes};

/// Type byte of Describe.
pub const DESCRIBE_TAG: u8 = b'D';
/// Type byte of Close.
pub const CLOSE_TAG: u8 = b'C';

/// Whether a Describe or Close names a statement or a portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A prepared statement ('S').
    Statement,
    /// A portal ('P').
    Portal,
}

fn decode(body: &[u8], message: &'static str) -> Result<(Target, String), ProtocolError> {
    let mut r = Reader::new(body, message);
    let target = match r.u8("target")? {
        b'S' => Target::Statement,
        b'P' => Target::Portal,
        other => {
            return Err(r.invalid(
                "target",
                format!("{:?} (must be 'S' or 'P')", other as char),
            ));
        }
    };
    let name = r.cstr("name")?.to_owned();
    r.finish()?;
    Ok((target, name))
}

fn encode(tag: u8, target: Target, name: &str) -> Bytes {
    frame(tag, |b| {
        b.put_u8(match target {
            Target::Statement => b'S',
            Target::Portal => b'P',
        });
        put_cstr(b, name);
    })
}

/// A Describe message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Describe {
    /// What is described.
    pub target: Target,
    /// Its name.
    pub name: String,
}

/// A Close message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// What is closed.
    pub target: Target,
    /// Its name.
    pub name: String,
}

impl FromBytes for Describe {
    fn from_bytes(body: &[u8]) -> Result<Self, ProtocolError> {
        let (target, name) = decode(body, "Describe")?;
        Ok(Self { target, name })
    }
}

impl ToBytes for Describe {
    fn to_bytes(&self) -> Bytes {
        encode(DESCRIBE_TAG, self.target, &self.name)
    }
}

impl FromBytes for Close {
    fn from_bytes(body: &[u8]) -> Result<Self, ProtocolError> {
        let (target, name) = decode(body, "Close")?;
        Ok(Self { target, name })
    }
}

impl ToBytes for Close {
    fn to_bytes(&self) -> Bytes {
        encode(CLOSE_TAG, self.target, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_and_close_round_trip() {
        for (target, name) in [(Target::Statement, "s1"), (Target::Portal, "")] {
            let d = Describe {
                target,
                name: name.into(),
            };
            assert_eq!(Describe::from_bytes(&d.to_bytes()[5..]), Ok(d));
            let c = Close {
                target,
                name: name.into(),
            };
            assert_eq!(Close::from_bytes(&c.to_bytes()[5..]), Ok(c));
        }
    }

    #[test]
    fn unknown_target_is_rejected() {
        assert!(Describe::from_bytes(b"Xname\0").is_err());
    }
}
