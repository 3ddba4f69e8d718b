//! Records and the hash chain: canonical JSON, sealing an event into a line, checking a line
//! and its link to the previous one. Pure logic, no I/O.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::canonical::{CanonicalError, Payload};
use super::shaped::Body;

/// `prev_hash` of the very first record of a log.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Field names the log owns; payload fields with these names are replaced.
pub const HEADER_FIELDS: [&str; 5] = ["seq", "id", "ts", "prev_hash", "hash"];

/// The members the log gives each record before hashing it, in key order.
pub const HEADER_KEYS: [&str; 4] = ["id", "prev_hash", "seq", "ts"];

/// The member that holds the record's hash: a payload's member of that name is dropped.
pub const OMITTED_KEY: &str = "hash";

/// Appends the canonical JSON of `value` to `out`: objects with keys sorted by their UTF-8
/// bytes at every depth, no whitespace, strings and numbers as `serde_json` writes them.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_canonical_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_canonical_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    // serde_json's default map is already sorted; other map orders (feature
    // `preserve_order` enabled elsewhere in the build) are sorted here.
    if !entries.is_sorted_by(|a, b| a.0.as_bytes() <= b.0.as_bytes()) {
        entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    }
    out.push(b'{');
    for (i, (key, item)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(key, out);
        out.push(b':');
        write_canonical(item, out);
    }
    out.push(b'}');
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // Serialising a scalar Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// The header the log gives a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// Sequence number, 1 for the first record of a log, +1 per record.
    pub seq: u64,
    /// This host's name; the record id is `<host>:<seq>`.
    pub host: &'a str,
    /// Timestamp, RFC 3339 with nanoseconds.
    pub ts: &'a str,
    /// Hash of the previous record, [`GENESIS_HASH`] for the first.
    pub prev_hash: &'a str,
}

/// A record ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The JSON line, with the terminating `\n`.
    pub line: Vec<u8>,
    /// The record's hash.
    pub hash: String,
}

/// Seals a payload (an object with at least `type`) into a record line.
///
/// The hash is the hex sha256 of the canonical JSON of the record without `hash`; the line is
/// that canonical JSON with `"hash":"…"` appended as the last member.
pub fn seal(header: &Header<'_>, payload: impl Into<Payload>) -> Sealed {
    let mut line = Vec::with_capacity(1024);
    let hash = seal_into(header, Body::Payload(payload.into()), &mut line)
        .unwrap_or_else(|_| unreachable!("a payload always writes"));
    Sealed { line, hash }
}

/// Seals `body` into a record line appended to `line`; returns the record's hash. Like
/// [`seal`], for bodies that are not a plain [`Payload`]. On error, `line` may hold part of
/// the record after its old end.
pub fn seal_into(
    header: &Header<'_>,
    body: Body,
    line: &mut Vec<u8>,
) -> Result<String, CanonicalError> {
    // Header members replace payload members of the same name; none of these can fail.
    let mut top = Payload::default();
    let _ = top.insert("id", &record_id(header.host, header.seq));
    let _ = top.insert("prev_hash", header.prev_hash);
    let _ = top.insert("seq", &header.seq);
    let _ = top.insert("ts", header.ts);
    let start = line.len();
    body.write_record(&top, line)?;
    let hash = sha256_hex(&line[start..]);
    append_hash(line, &hash);
    line.push(b'\n');
    Ok(hash)
}

/// The stable id of a record: `<host>:<seq>`.
pub fn record_id(host: &str, seq: u64) -> String {
    format!("{host}:{seq}")
}

fn append_hash(canonical: &mut Vec<u8>, hash: &str) {
    canonical.pop();
    canonical.extend_from_slice(b",\"hash\":\"");
    canonical.extend_from_slice(hash.as_bytes());
    canonical.extend_from_slice(b"\"}");
}

/// What is wrong with a single line, judged on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Not a JSON object.
    #[error("unparseable record: {0}")]
    Unparseable(String),
    /// A header field is missing or has the wrong type.
    #[error("record lacks a valid `{0}` field")]
    MissingField(&'static str),
    /// The stored hash is not the hash of the content.
    #[error("hash mismatch: record says {stored}, content hashes to {computed}")]
    HashMismatch {
        /// The `hash` field.
        stored: String,
        /// The hash of the content.
        computed: String,
    },
    /// Content and hash agree but the bytes are not the canonical encoding.
    #[error("record is not in canonical form (reformatted or re-encoded)")]
    NotCanonical,
}

/// A line that passed [`check_line`].
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// `seq`.
    pub seq: u64,
    /// `prev_hash`.
    pub prev_hash: String,
    /// `hash`.
    pub hash: String,
    /// `type`.
    pub kind: String,
    /// The whole record (with `hash`).
    pub record: Map<String, Value>,
}

/// Checks one line (without its `\n`): parses it, recomputes the hash, and checks that the
/// bytes are exactly the canonical encoding.
pub fn check_line(line: &[u8]) -> Result<Checked, LineError> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| LineError::Unparseable(e.to_string()))?;
    let Value::Object(mut record) = value else {
        return Err(LineError::Unparseable("not a JSON object".into()));
    };
    let Some(Value::String(stored)) = record.remove("hash") else {
        return Err(LineError::MissingField("hash"));
    };
    let seq = record
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or(LineError::MissingField("seq"))?;
    let prev_hash = record
        .get("prev_hash")
        .and_then(Value::as_str)
        .ok_or(LineError::MissingField("prev_hash"))?
        .to_owned();
    let kind = record
        .get("type")
        .and_then(Value::as_str)
        .ok_or(LineError::MissingField("type"))?
        .to_owned();
    let mut canonical = Vec::with_capacity(line.len());
    write_canonical_object(&record, &mut canonical);
    let computed = sha256_hex(&canonical);
    if computed != stored {
        return Err(LineError::HashMismatch { stored, computed });
    }
    append_hash(&mut canonical, &stored);
    if canonical != line {
        return Err(LineError::NotCanonical);
    }
    record.insert("hash".into(), Value::from(stored.clone()));
    Ok(Checked {
        seq,
        prev_hash,
        hash: stored,
        kind,
        record,
    })
}

/// How a record fails to follow the previous one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Sequence numbers are not consecutive.
    #[error("seq gap: expected seq {expected}, found {found}")]
    SeqGap {
        /// The seq that should come next.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// `prev_hash` is not the previous record's hash.
    #[error("prev_hash mismatch: expected {expected}, found {found}")]
    PrevHashMismatch {
        /// Hash of the previous record.
        expected: String,
        /// The record's `prev_hash`.
        found: String,
    },
}

/// The tip of a chain: what the next record must link to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    /// Seq of the last record (0 for an empty log).
    pub seq: u64,
    /// Hash of the last record ([`GENESIS_HASH`] for an empty log).
    pub hash: String,
}

impl Tip {
    /// The tip of an empty log.
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }

    /// Checks that `next` links to this tip, and if so moves the tip to it.
    pub fn advance(&mut self, next: &Checked) -> Result<(), LinkError> {
        if next.seq != self.seq + 1 {
            return Err(LinkError::SeqGap {
                expected: self.seq + 1,
                found: next.seq,
            });
        }
        if next.prev_hash != self.hash {
            return Err(LinkError::PrevHashMismatch {
                expected: self.hash.clone(),
                found: next.prev_hash.clone(),
            });
        }
        self.seq = next.seq;
        self.hash.clone_from(&next.hash);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test payloads are objects"),
        }
    }

    fn sealed(seq: u64, prev: &str) -> Sealed {
        let header = Header {
            seq,
            host: "db1",
            ts: "2026-01-01T00:00:00.000000001Z",
            prev_hash: prev,
        };
        seal(
            &header,
            payload(
                json!({"type": "statement", "statement": "select 1", "z": {"b": 1, "a": [2, {"d": 1, "c": 2}]}}),
            ),
        )
    }

    fn body(s: &Sealed) -> &[u8] {
        &s.line[..s.line.len() - 1]
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let cases = [
            (json!({"b": 1, "a": 2}), r#"{"a":2,"b":1}"#),
            (
                json!({"x": {"z": null, "y": [true, {"q": 1, "p": "s"}]}}),
                r#"{"x":{"y":[true,{"p":"s","q":1}],"z":null}}"#,
            ),
            (json!({"é": 1, "e": 2, "E": 3}), r#"{"E":3,"e":2,"é":1}"#),
            (json!("tab\there \"quoted\""), r#""tab\there \"quoted\"""#),
            (
                json!([1.5, -2, 18446744073709551615u64]),
                "[1.5,-2,18446744073709551615]",
            ),
        ];
        for (value, expected) in cases {
            let mut out = Vec::new();
            write_canonical(&value, &mut out);
            assert_eq!(String::from_utf8_lossy(&out), expected, "for {value}");
        }
    }

    #[test]
    fn records_with_awkward_floats_check_after_a_round_trip() {
        // Durations must parse back to the same bits, or the record's hash no longer matches;
        // serde_json's default parser gets these two wrong (it needs `float_roundtrip`).
        let floats = [
            0.001_123_100_000_000_000_1,
            0.002_354_777_253_155_628_6,
            0.1 + 0.2,
            1.0 / 3.0,
        ];
        for (i, f) in floats.into_iter().enumerate() {
            let header = Header {
                seq: i as u64 + 1,
                host: "h",
                ts: "2026-01-01T00:00:00Z",
                prev_hash: GENESIS_HASH,
            };
            let mut payload = Map::new();
            payload.insert("type".into(), Value::from("statement"));
            payload.insert("duration_ms".into(), Value::from(f));
            let sealed = seal(&header, payload);
            assert!(check_line(body(&sealed)).is_ok(), "{f} does not round-trip");
        }
    }

    #[test]
    fn sha256_hex_matches_known_digests() {
        let cases = [
            (
                "",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                "abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(sha256_hex(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn sealed_line_checks_and_carries_header() {
        let s = sealed(7, GENESIS_HASH);
        let checked = check_line(body(&s)).expect("a sealed line checks");
        assert_eq!(checked.seq, 7);
        assert_eq!(checked.hash, s.hash);
        assert_eq!(checked.kind, "statement");
        assert_eq!(checked.record["id"], "db1:7");
        assert!(
            s.line
                .ends_with(format!(",\"hash\":\"{}\"}}\n", s.hash).as_bytes())
        );
    }

    #[test]
    fn payload_cannot_override_header_fields() {
        let header = Header {
            seq: 3,
            host: "h",
            ts: "t",
            prev_hash: GENESIS_HASH,
        };
        let s = seal(
            &header,
            payload(json!({"type": "x", "seq": 99, "hash": "forged", "id": "other"})),
        );
        let checked = check_line(body(&s)).expect("checks");
        assert_eq!(checked.seq, 3);
        assert_eq!(checked.record["id"], "h:3");
    }

    type IsExpected = fn(&LineError) -> bool;

    #[test]
    fn tampered_lines_are_rejected_with_the_reason() {
        let s = sealed(1, GENESIS_HASH);
        let text = String::from_utf8(body(&s).to_vec()).expect("utf8");
        let cases: Vec<(String, IsExpected)> = vec![
            (text.replace("select 1", "select 2"), |e| {
                matches!(e, LineError::HashMismatch { .. })
            }),
            (text.replace("\"seq\":1", "\"seq\":2"), |e| {
                matches!(e, LineError::HashMismatch { .. })
            }),
            (text.replacen('{', "{ ", 1), |e| {
                matches!(e, LineError::NotCanonical)
            }),
            (text.replace("\"hash\"", "\"hush\""), |e| {
                matches!(e, LineError::MissingField("hash"))
            }),
            (text[..text.len() - 2].to_owned(), |e| {
                matches!(e, LineError::Unparseable(_))
            }),
            ("[1,2]".to_owned(), |e| {
                matches!(e, LineError::Unparseable(_))
            }),
        ];
        for (line, is_expected) in cases {
            let err = check_line(line.as_bytes()).expect_err(&line);
            assert!(is_expected(&err), "{line}: got {err}");
        }
    }

    #[test]
    fn tip_accepts_only_the_next_linked_record() {
        let first = sealed(1, GENESIS_HASH);
        let second = sealed(2, &first.hash);
        let stray = sealed(2, GENESIS_HASH);
        let skipped = sealed(3, &first.hash);
        let c1 = check_line(body(&first)).expect("checks");
        let c2 = check_line(body(&second)).expect("checks");
        let mut tip = Tip::genesis();
        tip.advance(&c1).expect("first links to genesis");
        let mut other = tip.clone();
        assert!(matches!(
            other.advance(&check_line(body(&stray)).expect("checks")),
            Err(LinkError::PrevHashMismatch { .. })
        ));
        assert!(matches!(
            other.advance(&check_line(body(&skipped)).expect("checks")),
            Err(LinkError::SeqGap {
                expected: 2,
                found: 3
            })
        ));
        tip.advance(&c2).expect("second links to first");
        assert_eq!(
            tip,
            Tip {
                seq: 2,
                hash: second.hash.clone()
            }
        );
    }
}
