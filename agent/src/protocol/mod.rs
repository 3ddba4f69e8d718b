//! Database wire-protocol codecs (pure: bytes in, typed messages out, no I/O).

pub mod postgres;
