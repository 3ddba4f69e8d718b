//! Records built straight from a struct: its members, renamed and completed by a
//! [`Shape`], serialised in one pass into their final bytes, with gaps (slots) where the log's
//! header members go once the writer knows them. The sealed line is byte for byte what
//! building a [`Payload`] and writing it gives ([`Payload::write_with`]); this is the path of
//! every statement record. The event is serialised where it was made (and freed there), and
//! the writer only copies bytes.
//!
//! The single pass needs the struct's fields to arrive in key order (types declare them that
//! way). When they do not, or the value is not a struct, the record is a [`Payload`] instead,
//! so the output never depends on which path ran.

use std::cmp::Ordering;
use std::ops::Range;

use serde::Serialize;
use serde::ser::{self, Impossible};

use super::canonical::{CanonicalError, Payload, key_order, to_writer, write_str};
use super::record::{HEADER_KEYS, OMITTED_KEY};

/// How a value's members become a record's: members renamed, and defaults for members the
/// value lacks (after renaming).
#[derive(Debug, Clone, Default)]
pub struct Shape {
    renames: Vec<(&'static str, &'static str)>,
    defaults: Payload,
}

impl Shape {
    /// A shape that keeps members as they are.
    pub fn new() -> Self {
        Self::default()
    }

    /// Member `from` is written as `to` (replacing a member named `to`).
    pub fn rename(mut self, from: &'static str, to: &'static str) -> Self {
        self.renames.push((from, to));
        self
    }

    /// Member `key` is `value` when the value has none.
    pub fn default_member<V: Serialize + ?Sized>(
        mut self,
        key: &'static str,
        value: &V,
    ) -> Result<Self, CanonicalError> {
        self.defaults.insert(key, value)?;
        Ok(self)
    }

    /// `payload` with this shape applied.
    pub fn apply(&self, mut payload: Payload) -> Payload {
        for (from, to) in &self.renames {
            payload.rename(from, to);
        }
        for (key, bytes) in self.defaults.members() {
            if !payload.contains(key) {
                payload.insert_raw(key.to_owned(), bytes);
            }
        }
        payload
    }

    fn renamed(&self, key: &str) -> Option<&'static str> {
        self.renames
            .iter()
            .find_map(|(from, to)| (*from == key).then_some(*to))
    }

    fn is_rename_target(&self, key: &str) -> bool {
        self.renames.iter().any(|(_, to)| *to == key)
    }
}

/// How many header members a prepared record can leave slots for.
const MAX_SLOTS: usize = HEADER_KEYS.len();

/// A record's members before the log adds its header: what the writer thread seals.
#[derive(Debug)]
pub enum Body {
    /// Members kept apart, merged with the header when written.
    Payload(Payload),
    /// Members already written in key order, with slots for the header.
    Prepared(Prepared),
}

/// A record written but for its header members (see the module documentation).
#[derive(Debug)]
pub struct Prepared {
    bytes: Vec<u8>,
    slots: [Slot; MAX_SLOTS],
    filled: usize,
    /// Where the canonical bytes of `type` are.
    kind: Option<Range<usize>>,
}

/// Where header member `HEADER_KEYS[key]` goes: before `bytes[at]`, after a comma when
/// `comma`.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    at: usize,
    key: u8,
    comma: bool,
}

impl Body {
    /// The record body of `value` shaped by `shape`, for the log's header members
    /// ([`HEADER_KEYS`], replacing members of those names) and without its `hash` member.
    pub fn prepare<T: Serialize + ?Sized>(
        value: &T,
        shape: &Shape,
    ) -> Result<Self, CanonicalError> {
        prepare_with(value, shape, &ALL_SLOTS)
    }

    /// The record's `type`, if it has one (and it is plain text).
    pub fn record_type(&self) -> Option<&str> {
        let quoted = match self {
            Self::Payload(p) => p.raw("type")?,
            Self::Prepared(p) => &p.bytes[p.kind.clone()?],
        };
        let inner = quoted.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        if inner.contains(&b'\\') {
            return None;
        }
        std::str::from_utf8(inner).ok()
    }

    /// Appends the canonical JSON of the record with `top`'s members (the header) and without
    /// a member named [`OMITTED_KEY`]. A prepared body needs `top` to hold exactly the members
    /// it has slots for.
    pub fn write_record(self, top: &Payload, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
        let prepared = match self {
            Self::Payload(payload) => {
                payload.write_with(top, OMITTED_KEY, out);
                return Ok(());
            }
            Self::Prepared(prepared) => prepared,
        };
        if top.len() != prepared.filled {
            return Err(<CanonicalError as ser::Error>::custom(format!(
                "a prepared record has {} header slots, the header has {} members",
                prepared.filled,
                top.len()
            )));
        }
        let mut from = 0;
        for slot in &prepared.slots[..prepared.filled] {
            let key = HEADER_KEYS[usize::from(slot.key)];
            let value = top.raw(key).ok_or_else(|| {
                <CanonicalError as ser::Error>::custom(format!(
                    "the header has no `{key}` for the prepared record's slot"
                ))
            })?;
            out.extend_from_slice(&prepared.bytes[from..slot.at]);
            if slot.comma {
                out.push(b',');
            }
            write_str(key, out);
            out.push(b':');
            out.extend_from_slice(value);
            from = slot.at;
        }
        out.extend_from_slice(&prepared.bytes[from..]);
        Ok(())
    }
}

/// Every header member: the slots of a record the log writes.
const ALL_SLOTS: [u8; MAX_SLOTS] = [0, 1, 2, 3];

/// [`Body::prepare`] for the header members `HEADER_KEYS[i]` for `i` in `slots` (ascending,
/// so in key order: `HEADER_KEYS` is).
fn prepare_with<T: Serialize + ?Sized>(
    value: &T,
    shape: &Shape,
    slots: &[u8],
) -> Result<Body, CanonicalError> {
    let sorted = slots.is_sorted_by(|a, b| a < b)
        && slots.last().is_none_or(|i| usize::from(*i) < MAX_SLOTS)
        && shape.defaults.is_sorted();
    if sorted {
        let mut prepared = Prepared {
            bytes: Vec::with_capacity(1024),
            slots: [Slot::default(); MAX_SLOTS],
            filled: 0,
            kind: None,
        };
        let streamed = value.serialize(Start {
            out: &mut prepared,
            shape,
            slots,
        });
        if let Ok(true) = streamed {
            return Ok(Body::Prepared(prepared));
        }
    }
    Ok(Body::Payload(shape.apply(Payload::from_serialize(value)?)))
}

/// Appends the canonical JSON of `value` (an object) shaped by `shape`, with `top`'s members
/// (header members, named as in [`HEADER_KEYS`]) replacing members of the same name and
/// without a member named [`OMITTED_KEY`]: the bytes of
/// `shape.apply(Payload::from_serialize(value)?).write_with(top, OMITTED_KEY, out)`.
#[cfg(test)]
pub(crate) fn write_shaped<T: Serialize + ?Sized>(
    value: &T,
    shape: &Shape,
    top: &Payload,
    out: &mut Vec<u8>,
) -> Result<(), CanonicalError> {
    prepare_with(value, shape, &header_slots(top))?.write_record(top, out)
}

/// The slots of `top`'s members, which must be header keys (tests).
#[cfg(test)]
fn header_slots(top: &Payload) -> Vec<u8> {
    top.ranges()
        .map(|(k, _)| {
            let i = HEADER_KEYS.iter().position(|h| *h == k);
            u8::try_from(i.expect("a header key")).expect("few header keys")
        })
        .collect()
}

/// Whether `value` is prepared in the single pass (tests: a value that silently took the
/// [`Payload`] path would still be right, only slow).
#[cfg(test)]
pub(crate) fn is_streamed<T: Serialize + ?Sized>(value: &T, shape: &Shape) -> bool {
    matches!(Body::prepare(value, shape), Ok(Body::Prepared(_)))
}

/// Where a member waiting for its place in the output comes from.
#[derive(Clone, Copy)]
enum Source {
    /// The header: the slot for `HEADER_KEYS[i]`, replacing the value's member of that name.
    Slot(u8),
    /// A default: yields to the value's member of that name.
    Default,
    /// A renamed member of the value, its bytes in `Members::renamed`.
    Renamed,
}

/// A member written at its place in key order rather than when the value serialises it.
struct Waiting<'a> {
    key: &'a str,
    bytes: Range<usize>,
    source: Source,
}

/// Serialises the top-level value: a struct is streamed, anything else falls back.
struct Start<'a, 'o> {
    out: &'o mut Prepared,
    shape: &'a Shape,
    slots: &'a [u8],
}

/// The members of the top-level struct, written as they arrive. `Ok(false)` from `end` (and
/// any error) means the value must go through a [`Payload`].
struct Members<'a, 'o> {
    out: &'o mut Prepared,
    shape: &'a Shape,
    /// Header slots, defaults and renamed members, in key order; `next` is the first not
    /// yet written or dropped.
    waiting: Vec<Waiting<'a>>,
    next: usize,
    renamed: Vec<u8>,
    /// The last key written.
    last: Option<&'a str>,
    /// The fields did not arrive in key order, or a rename target arrived as a field.
    unordered: bool,
}

impl<'a, 'o> Members<'a, 'o> {
    fn new(start: Start<'a, 'o>) -> Self {
        let Start { out, shape, slots } = start;
        let mut waiting: Vec<Waiting<'a>> = Vec::with_capacity(12);
        let mut t = slots
            .iter()
            .map(|i| (HEADER_KEYS[usize::from(*i)], 0..0, Source::Slot(*i)))
            .peekable();
        let mut d = shape.defaults.ranges().peekable();
        loop {
            let order = match (t.peek(), d.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((a, ..)), Some((b, _))) => key_order(a, b),
            };
            if let (Some((key, _)), Ordering::Greater) = (d.peek(), order)
                && *key == OMITTED_KEY
            {
                d.next();
                continue;
            }
            if order.is_eq() {
                // The header replaces any member, so the default can never be written.
                d.next();
            }
            let (key, bytes, source) = match order {
                Ordering::Greater => d.next().map(|(k, r)| (k, r, Source::Default)),
                _ => t.next(),
            }
            .expect("peeked");
            waiting.push(Waiting { key, bytes, source });
        }
        out.bytes.push(b'{');
        Self {
            out,
            shape,
            waiting,
            next: 0,
            renamed: Vec::new(),
            last: None,
            unordered: false,
        }
    }

    /// Writes (or leaves the slot for) the waiting member at `next`.
    fn write_waiting(&mut self) {
        let w = &self.waiting[self.next];
        let comma = self.last.is_some();
        let from: &[u8] = match w.source {
            Source::Slot(key) => {
                self.out.slots[self.out.filled] = Slot {
                    at: self.out.bytes.len(),
                    key,
                    comma,
                };
                self.out.filled += 1;
                self.last = Some(w.key);
                self.next += 1;
                return;
            }
            Source::Default => self.shape.defaults.bytes(),
            Source::Renamed => &self.renamed,
        };
        let out = &mut self.out.bytes;
        if comma {
            out.push(b',');
        }
        write_str(w.key, out);
        out.push(b':');
        out.extend_from_slice(&from[w.bytes.clone()]);
        self.last = Some(w.key);
        self.next += 1;
    }
    /// Writes every waiting member whose key sorts before `key` (all of them for `None`).
    fn write_waiting_before(&mut self, key: Option<&str>) {
        while let Some(w) = self.waiting.get(self.next) {
            if key.is_some_and(|k| key_order(w.key, k).is_ge()) {
                break;
            }
            self.write_waiting();
        }
    }

    /// Queues renamed member `to` with `value`'s bytes.
    fn rename<T: Serialize + ?Sized>(
        &mut self,
        to: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        if to == OMITTED_KEY {
            return Ok(());
        }
        if self.last.is_some_and(|last| key_order(to, last).is_le()) {
            self.unordered = true;
            return Ok(());
        }
        let start = self.renamed.len();
        to_writer(&mut self.renamed, value)?;
        let bytes = start..self.renamed.len();
        let at =
            self.next + self.waiting[self.next..].partition_point(|w| key_order(w.key, to).is_lt());
        let existing = self
            .waiting
            .get(at)
            .and_then(|w| (w.key == to).then_some(w.source));
        let renamed = Waiting {
            key: to,
            bytes,
            source: Source::Renamed,
        };
        match existing {
            None => self.waiting.insert(at, renamed),
            Some(Source::Default) => self.waiting[at] = renamed,
            // A header member of that name wins.
            Some(Source::Slot(_)) => {}
            // Two members renamed to one name: the Payload path keeps the last.
            Some(Source::Renamed) => self.unordered = true,
        }
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        if self.unordered {
            return Ok(());
        }
        if let Some(to) = self.shape.renamed(key) {
            return self.rename(to, value);
        }
        if key == OMITTED_KEY {
            return Ok(());
        }
        if self.shape.is_rename_target(key) || self.last.is_some_and(|l| key_order(key, l).is_le())
        {
            self.unordered = true;
            return Ok(());
        }
        self.write_waiting_before(Some(key));
        if let Some(w) = self.waiting.get(self.next)
            && w.key == key
        {
            match w.source {
                Source::Slot(_) => {
                    self.write_waiting();
                    return Ok(());
                }
                Source::Default => self.next += 1,
                // Renamed members are queued only after `last`, and `key` is after `last`
                // and not a rename target.
                Source::Renamed => {
                    self.unordered = true;
                    return Ok(());
                }
            }
        }
        let out = &mut self.out.bytes;
        if self.last.is_some() {
            out.push(b',');
        }
        write_str(key, out);
        out.push(b':');
        let start = out.len();
        to_writer(out, value)?;
        if key == "type" {
            self.out.kind = Some(start..out.len());
        }
        self.last = Some(key);
        Ok(())
    }

    fn finish(mut self) -> Result<bool, CanonicalError> {
        if self.unordered {
            return Ok(false);
        }
        self.write_waiting_before(None);
        self.out.bytes.push(b'}');
        Ok(true)
    }
}

impl ser::SerializeStruct for Members<'_, '_> {
    type Ok = bool;
    type Error = CanonicalError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        self.field(key, value)
    }

    fn end(self) -> Result<bool, CanonicalError> {
        self.finish()
    }
}

/// Anything but a struct: the [`Payload`] path decides (and names what is wrong).
fn fall_back<T>() -> Result<T, CanonicalError> {
    Err(<CanonicalError as ser::Error>::custom("not streamed"))
}

macro_rules! fall_back {
    ($($method:ident($ty:ty)),*) => {
        $(fn $method(self, _: $ty) -> Result<bool, CanonicalError> {
            fall_back()
        })*
    };
}

impl<'a, 'o> ser::Serializer for Start<'a, 'o> {
    type Ok = bool;
    type Error = CanonicalError;
    type SerializeSeq = Impossible<bool, CanonicalError>;
    type SerializeTuple = Impossible<bool, CanonicalError>;
    type SerializeTupleStruct = Impossible<bool, CanonicalError>;
    type SerializeTupleVariant = Impossible<bool, CanonicalError>;
    type SerializeMap = Impossible<bool, CanonicalError>;
    type SerializeStruct = Members<'a, 'o>;
    type SerializeStructVariant = Impossible<bool, CanonicalError>;

    fall_back!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str)
    );
    fn serialize_none(self) -> Result<bool, CanonicalError> {
        fall_back()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<bool, CanonicalError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<bool, CanonicalError> {
        fall_back()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<bool, CanonicalError> {
        fall_back()
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<bool, CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<bool, CanonicalError> {
        fall_back()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, CanonicalError> {
        fall_back()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, CanonicalError> {
        fall_back()
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, CanonicalError> {
        fall_back()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, CanonicalError> {
        fall_back()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, CanonicalError> {
        fall_back()
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Members<'a, 'o>, CanonicalError> {
        Ok(Members::new(self))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, CanonicalError> {
        fall_back()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Fields in key order, as the agent's event types declare them.
    #[derive(Serialize, Clone, Debug, Default)]
    struct Sorted {
        #[serde(skip_serializing_if = "Option::is_none")]
        action: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        client: Option<BTreeMap<String, String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        hash: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        outcome: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sql: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sql_length: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        statements: Option<u64>,
        ts: String,
        #[serde(rename = "type")]
        kind: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        zzz: Option<f64>,
    }

    /// The same members, declared out of key order.
    #[derive(Serialize)]
    struct Unsorted<'a> {
        ts: &'a str,
        sql: &'a str,
        action: &'a str,
    }

    fn header() -> Payload {
        let mut top = Payload::default();
        for (k, v) in [("id", "h:7"), ("prev_hash", "00"), ("ts", "now")] {
            top.insert(k, v).expect("str");
        }
        top.insert("seq", &7u64).expect("u64");
        top
    }

    fn statement_shape() -> Shape {
        Shape::new()
            .rename("sql", "statement")
            .default_member("outcome", "observed")
            .and_then(|s| s.default_member("statement", ""))
            .and_then(|s| s.default_member("session_id", ""))
            .expect("strings")
    }

    fn via_payload<T: Serialize>(value: &T, shape: &Shape, top: &Payload) -> String {
        let mut out = Vec::new();
        shape
            .apply(Payload::from_serialize(value).expect("object"))
            .write_with(top, "hash", &mut out);
        String::from_utf8(out).expect("utf8")
    }

    /// `(streamed, bytes)`: whether the single pass wrote it, and what was written.
    fn shaped<T: Serialize>(value: &T, shape: &Shape, top: &Payload) -> (bool, String) {
        let mut out = b"prefix".to_vec();
        let streamed = matches!(
            prepare_with(value, shape, &header_slots(top)),
            Ok(Body::Prepared(_))
        );
        write_shaped(value, shape, top, &mut out).expect("writes");
        let text = String::from_utf8(out).expect("utf8");
        let text = text.strip_prefix("prefix").expect("appends").to_owned();
        (streamed, text)
    }

    #[test]
    fn a_sorted_struct_is_streamed_to_the_payload_paths_bytes() {
        let value = Sorted {
            action: Some("recorded".into()),
            client: Some([("z".into(), "1".into()), ("a".into(), "\"q\"".into())].into()),
            hash: Some("forged".into()),
            id: Some(99),
            sql: Some("SELECT 1 -- é\n".into()),
            sql_length: Some(14),
            statements: Some(3),
            ts: "capture time".into(),
            kind: Some("statement".into()),
            zzz: Some(0.1 + 0.2),
            ..Sorted::default()
        };
        let (streamed, bytes) = shaped(&value, &statement_shape(), &header());
        assert!(streamed, "a struct in key order takes the single pass");
        assert_eq!(bytes, via_payload(&value, &statement_shape(), &header()));
        // Header replaces, rename moves, default fills, `hash` is dropped.
        assert!(bytes.contains(r#""id":"h:7""#) && bytes.contains(r#""ts":"now""#));
        assert!(bytes.contains(r#""statement":"SELECT 1 -- é\n","statements":3"#));
        assert!(bytes.contains(r#""outcome":"observed""#) && !bytes.contains("forged"));
    }

    #[test]
    fn members_out_of_order_go_through_a_payload() {
        let value = Unsorted {
            ts: "t",
            sql: "s",
            action: "a",
        };
        let (streamed, bytes) = shaped(&value, &statement_shape(), &header());
        assert!(!streamed);
        assert_eq!(bytes, via_payload(&value, &statement_shape(), &header()));
        // A map is not streamed either; its bytes are still the payload path's.
        let map: BTreeMap<&str, &str> = [("sql", "x"), ("a", "b")].into();
        let (streamed, bytes) = shaped(&map, &statement_shape(), &header());
        assert!(!streamed);
        assert_eq!(bytes, via_payload(&map, &statement_shape(), &header()));
    }

    #[test]
    fn a_prepared_body_knows_its_type_and_needs_the_header_it_was_prepared_for() {
        let value = Sorted {
            kind: Some("statement".into()),
            ..Sorted::default()
        };
        let body = Body::prepare(&value, &statement_shape()).expect("prepares");
        assert!(matches!(body, Body::Prepared(_)));
        assert_eq!(body.record_type(), Some("statement"));
        let mut partial = Payload::default();
        partial.insert("id", "h:1").expect("str");
        let err = body
            .write_record(&partial, &mut Vec::new())
            .expect_err("a header without seq, ts and prev_hash");
        assert!(err.to_string().contains("4 header slots"), "{err}");
    }

    #[test]
    fn the_header_slots_are_every_header_key_in_key_order() {
        assert!(HEADER_KEYS.is_sorted_by(|a, b| key_order(a, b).is_lt()));
        assert_eq!(header_slots(&header()), ALL_SLOTS);
    }

    #[test]
    fn non_objects_are_refused_as_the_payload_path_refuses_them() {
        let mut out = Vec::new();
        let err = write_shaped(&5u32, &statement_shape(), &header(), &mut out)
            .expect_err("not an object");
        assert!(err.to_string().contains("JSON object"), "{err}");
    }

    #[test]
    fn a_field_named_like_a_rename_target_goes_through_a_payload() {
        #[derive(Serialize)]
        struct Both {
            sql: &'static str,
            statement: &'static str,
        }
        let value = Both {
            sql: "renamed",
            statement: "own",
        };
        let (streamed, bytes) = shaped(&value, &statement_shape(), &header());
        assert!(!streamed);
        assert_eq!(bytes, via_payload(&value, &statement_shape(), &header()));
    }

    fn opt_text() -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop_oneof![
            "[a-z]{0,6}".prop_map(String::from),
            any::<String>(),
            Just("\"\\\u{0}\u{1f}\u{7f}é".to_owned()),
        ])
    }

    proptest! {
        #[test]
        fn streamed_records_equal_payload_records(
            action in opt_text(),
            outcome in opt_text(),
            sql in opt_text(),
            hash in opt_text(),
            id in prop::option::of(any::<u64>()),
            sql_length in prop::option::of(any::<u32>()),
            statements in prop::option::of(any::<u64>()),
            kind in opt_text(),
            zzz in prop::option::of(any::<f64>().prop_filter("finite", |f| f.is_finite())),
            client in prop::option::of(prop::collection::btree_map("[a-z]{1,3}", any::<String>(), 0..4)),
            with_header in any::<bool>(),
        ) {
            let value = Sorted {
                action, client, hash, id, outcome, sql, sql_length, statements,
                ts: "t".into(), kind, zzz,
            };
            let top = if with_header { header() } else { Payload::default() };
            for shape in [statement_shape(), Shape::new()] {
                let (streamed, bytes) = shaped(&value, &shape, &top);
                prop_assert!(streamed);
                prop_assert_eq!(bytes, via_payload(&value, &shape, &top));
            }
        }
    }
}
