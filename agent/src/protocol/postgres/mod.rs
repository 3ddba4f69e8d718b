//! PostgreSQL v3 wire protocol: framing plus one file per message or message family.
//!
//! Every message is validated once at decode ([`FromBytes`]) and encodes back to the exact
//! frame ([`ToBytes`]); each file round-trip tests its messages. Only the messages the shim
//! must understand are decoded; everything else is relayed as a raw frame.

pub mod backend_key_data;
pub mod bind;
pub mod command_complete;
pub mod describe;
pub mod error_response;
pub mod execute;
pub mod frame;
pub mod frontend;
pub mod parse;
pub mod query;
pub mod ready_for_query;
pub mod startup;
pub mod wire;

use bytes::Bytes;

pub use backend_key_data::BackendKeyData;
pub use bind::Bind;
pub use command_complete::CommandComplete;
pub use describe::{Close, Describe, Target};
pub use error_response::{ErrorFields, ErrorResponse, NoticeResponse};
pub use execute::Execute;
pub use frame::{HEADER_LEN, check_typed, check_untyped};
pub use frontend::FrontendMessage;
pub use parse::Parse;
pub use query::Query;
pub use ready_for_query::{ReadyForQuery, TransactionStatus};
pub use startup::StartupPacket;

/// PostgreSQL's own limit on a message length, the default maximum (1 GiB).
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 1 << 30;

/// Decodes a message from its body (the bytes after the type byte and length).
pub trait FromBytes: Sized {
    /// Decodes and validates `body`; trailing or missing bytes are an error.
    fn from_bytes(body: &[u8]) -> Result<Self, ProtocolError>;
}

/// Encodes a message as a complete frame (type byte, length, body).
pub trait ToBytes {
    /// The complete frame, ready to write to the peer.
    fn to_bytes(&self) -> Bytes;
}

/// What was wrong with bytes received from a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The body ended before the named field.
    #[error("{message} message truncated: {field} missing")]
    Truncated {
        /// Message being decoded.
        message: &'static str,
        /// Field that was cut off.
        field: &'static str,
    },
    /// Bytes left after the last field.
    #[error("{message} message has {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// Message being decoded.
        message: &'static str,
        /// Number of extra bytes.
        extra: usize,
    },
    /// Length field larger than the configured maximum.
    #[error("message length {len} exceeds the maximum of {max} bytes (shim.max_message_len)")]
    TooLong {
        /// Announced length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// Length field smaller than the length field itself.
    #[error("message length {len} is smaller than the minimum of {min}")]
    TooShort {
        /// Announced length.
        len: i64,
        /// Smallest valid length.
        min: usize,
    },
    /// A string field is not valid UTF-8.
    #[error("{message} message: {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Message being decoded.
        message: &'static str,
        /// Field with bad bytes.
        field: &'static str,
    },
    /// A field holds a value the protocol does not allow.
    #[error("{message} message: invalid {field}: {detail}")]
    Invalid {
        /// Message being decoded.
        message: &'static str,
        /// Offending field.
        field: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A type byte this side of the protocol never sends.
    #[error("unknown frontend message type {tag:?}")]
    UnknownMessage {
        /// The type byte, as a character.
        tag: char,
    },
}
