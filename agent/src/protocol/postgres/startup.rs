//! Startup-phase packets: StartupMessage, SSLRequest, GSSENCRequest and CancelRequest.

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::{Reader, put_cstr};
use super::{FromBytes, ProtocolError, ToBytes};

/// Protocol version 3.0 as sent in StartupMessage.
pub const PROTOCOL_3_0: i32 = 196_608;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// The first packet a client sends on a connection (untyped, length-prefixed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// StartupMessage with the protocol version and the parameters (user, database, …).
    Startup {
        /// Requested protocol version (major in the high 16 bits); major must be 3.
        version: i32,
        /// Parameter name/value pairs in the order sent.
        params: Vec<(String, String)>,
    },
    /// The client asks for TLS.
    SslRequest,
    /// The client asks for GSSAPI encryption.
    GssEncRequest,
    /// Cancel the query running on the backend identified by `pid` and `key`.
    CancelRequest {
        /// Process id from BackendKeyData.
        pid: i32,
        /// Secret key from BackendKeyData.
        key: i32,
    },
}

impl StartupPacket {
    /// The value of a StartupMessage parameter, if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            Self::Startup { params, .. } => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

impl FromBytes for StartupPacket {
    /// `body` is the packet after its 4-byte length.
    fn from_bytes(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, "Startup");
        let code = r.i32("protocol version")?;
        let packet = match code {
            SSL_REQUEST => Self::SslRequest,
            GSSENC_REQUEST => Self::GssEncRequest,
            CANCEL_REQUEST => Self::CancelRequest {
                pid: r.i32("process id")?,
                key: r.i32("secret key")?,
            },
            version if version >> 16 == 3 => {
                let mut params = Vec::new();
                loop {
                    let name = r.cstr("parameter name")?;
                    if name.is_empty() {
                        break;
                    }
                    let value = r.cstr("parameter value")?;
                    params.push((name.to_owned(), value.to_owned()));
                }
                if !params.iter().any(|(k, _)| k == "user") {
                    return Err(r.invalid("parameters", "no \"user\" parameter".into()));
                }
                Self::Startup { version, params }
            }
            other => {
                return Err(r.invalid(
                    "protocol version",
                    format!(
                        "unsupported protocol {}.{} (only 3.x is spoken)",
                        other >> 16,
                        other & 0xffff
                    ),
                ));
            }
        };
        r.finish()?;
        Ok(packet)
    }
}

impl ToBytes for StartupPacket {
    fn to_bytes(&self) -> Bytes {
        let mut body = BytesMut::new();
        match self {
            Self::Startup { version, params } => {
                body.put_i32(*version);
                for (k, v) in params {
                    put_cstr(&mut body, k);
                    put_cstr(&mut body, v);
                }
                body.put_u8(0);
            }
            Self::SslRequest => body.put_i32(SSL_REQUEST),
            Self::GssEncRequest => body.put_i32(GSSENC_REQUEST),
            Self::CancelRequest { pid, key } => {
                body.put_i32(CANCEL_REQUEST);
                body.put_i32(*pid);
                body.put_i32(*key);
            }
        }
        let mut out = BytesMut::with_capacity(body.len() + 4);
        out.put_u32(u32::try_from(body.len() + 4).unwrap_or(u32::MAX));
        out.put_slice(&body);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(p: StartupPacket) {
        let bytes = p.to_bytes();
        assert_eq!(StartupPacket::from_bytes(&bytes[4..]).as_ref(), Ok(&p));
    }

    #[test]
    fn startup_packets_round_trip() {
        round_trip(StartupPacket::SslRequest);
        round_trip(StartupPacket::GssEncRequest);
        round_trip(StartupPacket::CancelRequest { pid: 42, key: -7 });
        round_trip(StartupPacket::Startup {
            version: PROTOCOL_3_0,
            params: vec![
                ("user".into(), "alice".into()),
                ("database".into(), "shop".into()),
            ],
        });
    }

    #[test]
    fn startup_without_user_is_rejected() {
        let p = StartupPacket::Startup {
            version: PROTOCOL_3_0,
            params: vec![("database".into(), "x".into())],
        };
        let bytes = p.to_bytes();
        assert!(StartupPacket::from_bytes(&bytes[4..]).is_err());
    }

    #[test]
    fn unsupported_version_and_trailing_bytes_are_rejected() {
        assert!(StartupPacket::from_bytes(&0x0002_0000_i32.to_be_bytes()).is_err());
        let mut ssl = 80_877_103_i32.to_be_bytes().to_vec();
        ssl.push(1);
        assert!(StartupPacket::from_bytes(&ssl).is_err());
    }

    #[test]
    fn param_looks_up_startup_parameters() {
        let p = StartupPacket::Startup {
            version: PROTOCOL_3_0,
            params: vec![("user".into(), "bob".into())],
        };
        assert_eq!(p.param("user"), Some("bob"));
        assert_eq!(p.param("database"), None);
    }
}
