//! Frontend (client → server) message dispatch: decodes the SQL-carrying messages, keeps the
//! rest as raw frames to relay untouched.

use bytes::Bytes;

use super::{Bind, Close, Describe, Execute, FromBytes, Parse, ProtocolError, Query};

/// A frontend message after the startup phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage {
    /// Simple query.
    Query(Query),
    /// Extended protocol: prepare.
    Parse(Parse),
    /// Extended protocol: bind.
    Bind(Bind),
    /// Extended protocol: run a portal.
    Execute(Execute),
    /// Extended protocol: describe.
    Describe(Describe),
    /// Extended protocol: close.
    Close(Close),
    /// Extended protocol: end of a pipeline segment ('S').
    Sync,
    /// Extended protocol: flush pending output ('H').
    Flush,
    /// Client is leaving ('X').
    Terminate,
    /// FunctionCall ('F'): runs a function by OID without SQL.
    FunctionCall,
    /// COPY data, done or fail ('d', 'c', 'f') and authentication responses ('p'): relayed
    /// as they are.
    Passthrough(u8),
}

impl FrontendMessage {
    /// Decodes one complete frame (type byte, length, body) as produced by
    /// [`super::check_typed`].
    pub fn decode(frame: &Bytes) -> Result<Self, ProtocolError> {
        let Some((&tag, rest)) = frame.split_first() else {
            return Err(ProtocolError::Truncated {
                message: "frontend",
                field: "type byte",
            });
        };
        let body = rest.get(4..).ok_or(ProtocolError::Truncated {
            message: "frontend",
            field: "length",
        })?;
        let empty = |name: &'static str, m: Self| {
            if body.is_empty() {
                Ok(m)
            } else {
                Err(ProtocolError::TrailingBytes {
                    message: name,
                    extra: body.len(),
                })
            }
        };
        match tag {
            b'Q' => Query::from_bytes(body).map(Self::Query),
            b'P' => Parse::from_bytes(body).map(Self::Parse),
            b'B' => Bind::from_bytes(body).map(Self::Bind),
            b'E' => Execute::from_bytes(body).map(Self::Execute),
            b'D' => Describe::from_bytes(body).map(Self::Describe),
            b'C' => Close::from_bytes(body).map(Self::Close),
            b'S' => empty("Sync", Self::Sync),
            b'H' => empty("Flush", Self::Flush),
            b'X' => empty("Terminate", Self::Terminate),
            b'F' => Ok(Self::FunctionCall),
            b'd' | b'c' | b'f' | b'p' => Ok(Self::Passthrough(tag)),
            other => Err(ProtocolError::UnknownMessage { tag: other as char }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ToBytes;
    use super::*;

    #[test]
    fn frontend_frames_decode_to_their_message() {
        let q = Query {
            sql: "SELECT 1".into(),
        };
        assert_eq!(
            FrontendMessage::decode(&q.to_bytes()),
            Ok(FrontendMessage::Query(q))
        );
        let cases: &[(&[u8], Result<FrontendMessage, ()>)] = &[
            (b"S\0\0\0\x04", Ok(FrontendMessage::Sync)),
            (b"H\0\0\0\x04", Ok(FrontendMessage::Flush)),
            (b"X\0\0\0\x04", Ok(FrontendMessage::Terminate)),
            (b"d\0\0\0\x06ab", Ok(FrontendMessage::Passthrough(b'd'))),
            (b"S\0\0\0\x05x", Err(())),
            (b"?\0\0\0\x04", Err(())),
            (b"", Err(())),
        ];
        for (raw, want) in cases {
            let got = FrontendMessage::decode(&Bytes::copy_from_slice(raw)).map_err(|_| ());
            assert_eq!(&got, want, "{raw:?}");
        }
    }
}
