//! The one timestamp form used on the wire and in signed bytes: UTC, whole seconds,
//! `YYYY-MM-DDTHH:MM:SSZ`.
//!
//! Decisions are signed over formatted timestamps, so signer and verifier must format
//! identically; whole seconds in UTC leave no room for disagreement.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Normalises a timestamp to the signed form: UTC, sub-seconds dropped.
pub fn normalize(t: OffsetDateTime) -> OffsetDateTime {
    let utc = t.to_offset(time::UtcOffset::UTC);
    utc.replace_nanosecond(0).unwrap_or(utc)
}

/// Formats a timestamp as `YYYY-MM-DDTHH:MM:SSZ` (after [`normalize`]).
pub fn format(t: OffsetDateTime) -> String {
    let t = normalize(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses any RFC 3339 timestamp.
pub fn parse(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(s, &Rfc3339)
}

/// Serde adapter: serialises with [`format`], accepts any RFC 3339 on input.
pub mod serde_rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    /// Serialises `t` with [`super::format`].
    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*t))
    }

    /// Deserialises any RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = String::deserialize(d)?;
        super::parse(&s)
            .map_err(|e| serde::de::Error::custom(format!("bad RFC 3339 time {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_offset_and_fraction_formats_to_the_same_utc_second() {
        let cases = [
            ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05Z"),
            ("2026-01-02T03:04:05.999999Z", "2026-01-02T03:04:05Z"),
            ("2026-01-02T05:04:05+02:00", "2026-01-02T03:04:05Z"),
            ("2026-01-01T23:59:59-04:00", "2026-01-02T03:59:59Z"),
        ];
        for (input, want) in cases {
            let t = parse(input).expect(input);
            assert_eq!(format(t), want, "input {input}");
            assert_eq!(format(parse(&format(t)).expect("round trip")), want);
        }
    }
}
