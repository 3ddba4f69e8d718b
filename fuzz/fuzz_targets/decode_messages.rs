//! Fuzzes the PostgreSQL message decoders: framing checks, every frontend message, the
//! startup packets and the backend messages the shim reads. Decoding must never panic,
//! and whatever decodes must re-encode to a frame that decodes to the same value.
#![no_main]

use bytes::Bytes;
use dbward_agent::protocol::postgres::{
    BackendKeyData, CommandComplete, ErrorResponse, FromBytes, FrontendMessage, ReadyForQuery,
    StartupPacket, ToBytes, check_typed, check_untyped,
};
use libfuzzer_sys::fuzz_target;

fn round_trip<T: FromBytes + ToBytes + PartialEq + std::fmt::Debug>(body: &[u8], header: usize) {
    if let Ok(m) = T::from_bytes(body) {
        let again = m.to_bytes();
        let back = T::from_bytes(&again[header..]).expect("re-encoded message decodes");
        assert_eq!(back, m);
    }
}

fuzz_target!(|data: &[u8]| {
    let max = 1 << 20;
    let mut rest = data;
    while let Ok(Some(n)) = check_typed(rest, max) {
        let frame = Bytes::copy_from_slice(&rest[..n]);
        let _ = FrontendMessage::decode(&frame);
        let body = &frame[5..];
        round_trip::<ErrorResponse>(body, 5);
        round_trip::<CommandComplete>(body, 5);
        round_trip::<ReadyForQuery>(body, 5);
        round_trip::<BackendKeyData>(body, 5);
        round_trip::<dbward_agent::protocol::postgres::Query>(body, 5);
        round_trip::<dbward_agent::protocol::postgres::Parse>(body, 5);
        round_trip::<dbward_agent::protocol::postgres::Bind>(body, 5);
        round_trip::<dbward_agent::protocol::postgres::Execute>(body, 5);
        round_trip::<dbward_agent::protocol::postgres::Describe>(body, 5);
        rest = &rest[n..];
    }
    if let Ok(Some(n)) = check_untyped(data, max) {
        round_trip::<StartupPacket>(&data[4..n], 4);
    }
});
