//! ErrorResponse ('E') and NoticeResponse ('N'): typed fields (severity, SQLSTATE, message…).

use bytes::{BufMut, Bytes};

use super::wire::{Reader, frame, put_cstr};
use super::{FromBytes, ProtocolError, ToBytes};

/// Type byte of ErrorResponse.
pub const ERROR_TAG: u8 = b'E';
/// Type byte of NoticeResponse.
pub const NOTICE_TAG: u8 = b'N';

/// The fields of an error or notice, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorFields {
    /// (field code, value) pairs, e.g. (`b'C'`, "42501").
    pub fields: Vec<(u8, String)>,
}

impl ErrorFields {
    /// Severity, SQLSTATE and primary message, with the non-localized severity too.
    pub fn new(severity: &str, code: &str, message: &str) -> Self {
        Self {
            fields: vec![
                (b'S', severity.to_owned()),
                (b'V', severity.to_owned()),
                (b'C', code.to_owned()),
                (b'M', message.to_owned()),
            ],
        }
    }

    /// Adds a field (builder style).
    pub fn with(mut self, code: u8, value: impl Into<String>) -> Self {
        self.fields.push((code, value.into()));
        self
    }

    /// The value of field `code`.
    pub fn get(&self, code: u8) -> Option<&str> {
        self.fields
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_str())
    }

    /// SQLSTATE ('C').
    pub fn code(&self) -> Option<&str> {
        self.get(b'C')
    }

    /// Primary message ('M').
    pub fn message(&self) -> Option<&str> {
        self.get(b'M')
    }

    fn decode(body: &[u8], message: &'static str) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, message);
        let mut fields = Vec::new();
        loop {
            let code = r.u8("field type")?;
            if code == 0 {
                break;
            }
            fields.push((code, r.cstr("field value")?.to_owned()));
        }
        r.finish()?;
        Ok(Self { fields })
    }

    fn encode(&self, tag: u8) -> Bytes {
        frame(tag, |b| {
            for (code, value) in &self.fields {
                b.put_u8(*code);
                put_cstr(b, value);
            }
            b.put_u8(0);
        })
    }
}

/// An ErrorResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse(pub ErrorFields);

/// A NoticeResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeResponse(pub ErrorFields);

impl FromBytes for ErrorResponse {
    fn from_bytes(body: &[u8]) -> Result<Self, ProtocolError> {
        ErrorFields::decode(body, "ErrorResponse").map(Self)
    }
}

impl ToBytes for ErrorResponse {
    fn to_bytes(&self) -> Bytes {
        self.0.encode(ERROR_TAG)
    }
}

impl FromBytes for NoticeResponse {
    fn from_bytes(body: &[u8]) -> Result<Self, ProtocolError> {
        ErrorFields::decode(body, "NoticeResponse").map(Self)
    }
}

impl ToBytes for NoticeResponse {
    fn to_bytes(&self) -> Bytes {
        self.0.encode(NOTICE_TAG)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_and_notice_round_trip() {
        let f = ErrorFields::new("ERROR", "42501", "denied by dbward").with(b'H', "ask");
        let e = ErrorResponse(f.clone());
        assert_eq!(ErrorResponse::from_bytes(&e.to_bytes()[5..]), Ok(e));
        let n = NoticeResponse(f);
        let bytes = n.to_bytes();
        assert_eq!(bytes[0], b'N');
        assert_eq!(NoticeResponse::from_bytes(&bytes[5..]), Ok(n));
    }

    #[test]
    fn accessors_find_fields() {
        let f = ErrorFields::new("ERROR", "57014", "canceled");
        assert_eq!(f.code(), Some("57014"));
        assert_eq!(f.message(), Some("canceled"));
        assert_eq!(f.get(b'D'), None);
    }

    #[test]
    fn unterminated_fields_are_truncated() {
        assert!(ErrorResponse::from_bytes(b"SERROR\0").is_err());
        assert!(ErrorResponse::from_bytes(b"SERR").is_err());
    }
}
