//! Canonical JSON straight from `Serialize` types, without building a `serde_json::Value`
//! first: objects with keys sorted by their UTF-8 bytes at every depth (the last of duplicate
//! keys wins, as when collecting into a map), no whitespace, strings and numbers exactly as
//! `serde_json` writes them. The bytes equal [`super::record::write_canonical`] of the same
//! value, so records written this way verify with the `Value`-based checker.
//!
//! The agent seals tens of thousands of records per second; going through `Value` cost most of
//! its CPU (one `BTreeMap` node and `String` per field, twice). Here a record costs one byte
//! buffer and one entry list per object.

use std::borrow::Cow;
use std::fmt::Display;
use std::ops::Range;

use serde::Serialize;
use serde::ser::{self, Impossible};

/// Why a value cannot be written as canonical JSON.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CanonicalError(String);

impl ser::Error for CanonicalError {
    fn custom<T: Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

impl From<serde_json::Error> for CanonicalError {
    fn from(e: serde_json::Error) -> Self {
        Self(e.to_string())
    }
}

type Key = Cow<'static, str>;

/// `serialize_*` methods that write a scalar as `serde_json` does.
macro_rules! scalars {
    ($($method:ident($ty:ty)),*) => {
        $(fn $method(self, v: $ty) -> Result<(), CanonicalError> {
            self.scalar(v)
        })*
    };
}

/// `serialize_*` methods that refuse their value with `$refusal()`.
macro_rules! refuse {
    ($refusal:ident, $($method:ident($ty:ty)),*) => {
        $(fn $method(self, _: $ty) -> Result<Self::Ok, CanonicalError> {
            $refusal()
        })*
    };
}

/// `serialize_*` methods for map keys written as text (as `serde_json` does).
macro_rules! keys_as_text {
    ($($method:ident($ty:ty)),*) => {
        $(fn $method(self, v: $ty) -> Result<Key, CanonicalError> {
            Ok(Cow::Owned(v.to_string()))
        })*
    };
}

/// The members of one JSON object: keys and their canonical value bytes.
///
/// Members stay in key order while they arrive in key order (types declare their fields
/// that way), and [`Payload::insert`] and [`Payload::rename`] then put theirs in place, so
/// writing needs no sort. Otherwise they are kept in insertion order and sorted (stably: the
/// last of duplicate keys wins) when written.
#[derive(Debug, Clone)]
pub struct Payload {
    bytes: Vec<u8>,
    entries: Vec<(Key, Range<usize>)>,
    /// `entries` are strictly ascending by key (no duplicates).
    sorted: bool,
}

impl Default for Payload {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl Payload {
    /// The members of `value`, which must serialise as a JSON object (a struct or a map).
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self, CanonicalError> {
        value.serialize(TopLevel)
    }

    /// Whether a member named `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        if self.sorted {
            return self.find(key).is_ok();
        }
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// Whether the payload has no members.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes every member named `key`.
    pub fn remove(&mut self, key: &str) {
        if self.sorted {
            if let Ok(at) = self.find(key) {
                self.entries.remove(at);
            }
            return;
        }
        self.entries.retain(|(k, _)| k != key);
    }

    /// Renames the members named `from` to `to` (replacing any `to`).
    pub fn rename(&mut self, from: &str, to: &'static str) {
        if from == to {
            return;
        }
        if self.sorted {
            // At most one member has that name.
            let Ok(at) = self.find(from) else {
                return;
            };
            let (_, range) = self.entries.remove(at);
            self.set(Cow::Borrowed(to), range);
            return;
        }
        if !self.contains(from) {
            return;
        }
        self.remove(to);
        for (k, _) in &mut self.entries {
            if k == from {
                *k = Cow::Borrowed(to);
            }
        }
    }

    /// Sets member `key` to `value`, replacing any member of that name.
    pub fn insert<V: Serialize + ?Sized>(
        &mut self,
        key: impl Into<Key>,
        value: &V,
    ) -> Result<(), CanonicalError> {
        let key = key.into();
        if !self.sorted {
            self.remove(&key);
            return self.push(key, value);
        }
        let range = self.value(value)?;
        self.set(key, range);
        Ok(())
    }

    /// Where member `key` is, or where it would go, in key order (`sorted` only: a binary
    /// search instead of a scan, as records are built and sealed by name).
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| key_order(k, key))
    }

    /// Sets member `key` to the bytes at `range`, in key order (`sorted` only).
    fn set(&mut self, key: Key, range: Range<usize>) {
        match self.find(&key) {
            Ok(at) => self.entries[at] = (key, range),
            Err(at) => self.entries.insert(at, (key, range)),
        }
    }

    /// An empty payload with room for `members`.
    fn with_capacity(members: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(members * 24),
            entries: Vec::with_capacity(members),
            sorted: true,
        }
    }

    /// Empties the payload, keeping its buffers.
    fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
        self.sorted = true;
    }

    /// Appends member `key` (a later duplicate wins when written).
    fn push<V: Serialize + ?Sized>(&mut self, key: Key, value: &V) -> Result<(), CanonicalError> {
        let range = self.value(value)?;
        self.sorted &= self
            .entries
            .last()
            .is_none_or(|(last, _)| key_order(last, &key).is_lt());
        self.entries.push((key, range));
        Ok(())
    }

    /// Writes `value`'s canonical bytes; returns where they are.
    fn value<V: Serialize + ?Sized>(&mut self, value: &V) -> Result<Range<usize>, CanonicalError> {
        let start = self.bytes.len();
        value.serialize(Writer {
            out: &mut self.bytes,
        })?;
        Ok(start..self.bytes.len())
    }

    /// Sets member `key` to `value` unless it is present.
    pub fn insert_default<V: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &V,
    ) -> Result<(), CanonicalError> {
        if self.contains(key) {
            return Ok(());
        }
        self.insert(key, value)
    }

    /// How many members there are (duplicates of an unsorted payload counted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the members are strictly ascending by key.
    pub(super) fn is_sorted(&self) -> bool {
        self.sorted
    }

    /// The buffer the member ranges of [`Payload::ranges`] point into.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Each member's key and where its canonical bytes are in [`Payload::bytes`].
    pub(super) fn ranges(&self) -> impl Iterator<Item = (&str, Range<usize>)> {
        self.entries.iter().map(|(k, r)| (k.as_ref(), r.clone()))
    }

    /// Each member's key and canonical bytes.
    pub(super) fn members(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries
            .iter()
            .map(|(k, r)| (k.as_ref(), &self.bytes[r.clone()]))
    }

    /// Sets member `key` to already canonical `bytes`.
    pub(super) fn insert_raw(&mut self, key: String, bytes: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        let range = start..self.bytes.len();
        let key: Key = Cow::Owned(key);
        if self.sorted {
            self.set(key, range);
        } else {
            self.remove(&key);
            self.entries.push((key, range));
        }
    }

    /// The canonical bytes of member `key`, if present.
    pub fn raw(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, r)| &self.bytes[r.clone()])
    }

    /// Appends the object's canonical JSON to `out`.
    pub fn write(mut self, out: &mut Vec<u8>) {
        self.write_sorted(out);
    }

    /// Appends the canonical JSON of the object with `top`'s members added (replacing
    /// members of the same name) and without a member named `omit`. Two payloads in key
    /// order are merged as they are written: nothing is inserted or moved.
    pub fn write_with(mut self, top: &Payload, omit: &str, out: &mut Vec<u8>) {
        if !(self.sorted && top.sorted) {
            self.remove(omit);
            for (key, range) in &top.entries {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(&top.bytes[range.clone()]);
                let range = start..self.bytes.len();
                self.remove(key);
                self.entries.push((key.clone(), range));
                self.sorted = false;
            }
            return self.write_sorted(out);
        }
        let skip = self.find(omit).ok();
        let (mut i, mut j) = (0, 0);
        out.push(b'{');
        let mut first = true;
        loop {
            if skip == Some(i) {
                i += 1;
                continue;
            }
            let mine = self.entries.get(i);
            let theirs = top.entries.get(j);
            let order = match (mine, theirs) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((a, _)), Some((b, _))) => key_order(a, b),
            };
            let (key, bytes) = match (order, mine, theirs) {
                (std::cmp::Ordering::Less, Some((key, range)), _) => {
                    i += 1;
                    (key, &self.bytes[range.clone()])
                }
                (_, _, Some((key, range))) => {
                    // Equal keys: `top`'s member replaces this one.
                    i += usize::from(order.is_eq());
                    j += 1;
                    (key, &top.bytes[range.clone()])
                }
                _ => break,
            };
            if !first {
                out.push(b',');
            }
            first = false;
            write_str(key, out);
            out.push(b':');
            out.extend_from_slice(bytes);
        }
        out.push(b'}');
    }

    /// Sorts the members if needed and appends the object's canonical JSON to `out`.
    fn write_sorted(&mut self, out: &mut Vec<u8>) {
        if !self.sorted {
            // Entries are in insertion order, so a stable sort keeps the last duplicate last.
            self.entries.sort_by(|a, b| key_order(&a.0, &b.0));
        }
        out.push(b'{');
        let mut first = true;
        for (i, (key, range)) in self.entries.iter().enumerate() {
            // Sorted entries have no duplicates; after the stable sort above, the last of
            // equal keys wins.
            if !self.sorted && self.entries.get(i + 1).is_some_and(|next| next.0 == *key) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            write_str(key, out);
            out.push(b':');
            out.extend_from_slice(&self.bytes[range.clone()]);
        }
        out.push(b'}');
    }
}

impl From<serde_json::Map<String, serde_json::Value>> for Payload {
    fn from(map: serde_json::Map<String, serde_json::Value>) -> Self {
        let mut payload = Self::with_capacity(map.len());
        for (key, value) in map {
            // A `serde_json::Value` always serialises.
            let _ = payload.push(Cow::Owned(key), &value);
        }
        payload
    }
}

/// The order of member keys: by their UTF-8 bytes. Keys are short and nearly always differ
/// in their first bytes, so a byte loop is cheaper than a call to `memcmp` (which the
/// slice comparison makes), and every member is compared a few times per record.
pub(super) fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

pub(super) fn write_str(s: &str, out: &mut Vec<u8>) {
    // serde_json escapes only control characters, `"` and `\\`: most keys and values have
    // none, and are copied as they are.
    // No early exit: the fold vectorises, and long statements are nearly always clean.
    let clean = s.bytes().fold(true, |clean, b| {
        clean & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if clean {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Appends the canonical JSON of `value` to `out`.
pub fn to_writer<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), CanonicalError> {
    value.serialize(Writer { out })
}

/// Writes one value's canonical JSON into `out`.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn scalar<T: Serialize>(self, v: T) -> Result<(), CanonicalError> {
        serde_json::to_writer(&mut *self.out, &v)?;
        Ok(())
    }
}

/// How many member buffers of finished nested objects a thread keeps for reuse.
const MAX_SPARE_MEMBERS: usize = 16;

thread_local! {
    /// Member buffers of finished nested objects: every record has some, and the agent writes
    /// tens of thousands of records per second.
    static SPARE_MEMBERS: std::cell::RefCell<Vec<Payload>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Collects an object's members, then writes them sorted.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    members: Payload,
    pending: Option<Key>,
    /// `Some(name)` for an enum struct variant: written as `{"name":{…}}`.
    variant: Option<&'static str>,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>, variant: Option<&'static str>) -> Self {
        Self {
            out,
            members: SPARE_MEMBERS
                .with_borrow_mut(Vec::pop)
                .unwrap_or_else(|| Payload::with_capacity(16)),
            pending: None,
            variant,
        }
    }

    fn done(mut self) -> Result<(), CanonicalError> {
        if let Some(name) = self.variant {
            self.out.push(b'{');
            write_str(name, self.out);
            self.out.push(b':');
        }
        self.members.write_sorted(self.out);
        if self.variant.is_some() {
            self.out.push(b'}');
        }
        self.members.clear();
        SPARE_MEMBERS.with_borrow_mut(|spare| {
            if spare.len() < MAX_SPARE_MEMBERS {
                spare.push(self.members);
            }
        });
        Ok(())
    }
}

/// Writes an array, element by element.
struct Array<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// `Some(name)` for an enum tuple variant: written as `{"name":[…]}`.
    variant: Option<&'static str>,
}

impl<'a> Array<'a> {
    fn new(out: &'a mut Vec<u8>, variant: Option<&'static str>) -> Self {
        if let Some(name) = variant {
            out.push(b'{');
            write_str(name, out);
            out.push(b':');
        }
        out.push(b'[');
        Self {
            out,
            first: true,
            variant,
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Writer { out: self.out })
    }

    fn finish(self) -> Result<(), CanonicalError> {
        self.out.push(b']');
        if self.variant.is_some() {
            self.out.push(b'}');
        }
        Ok(())
    }
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    scalars!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128)
    );
    fn serialize_f32(self, v: f32) -> Result<(), CanonicalError> {
        // As `serde_json::Value` stores it (f64), so both writers agree.
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), CanonicalError> {
        self.scalar(v)
    }
    fn serialize_char(self, v: char) -> Result<(), CanonicalError> {
        self.scalar(v)
    }
    fn serialize_str(self, v: &str) -> Result<(), CanonicalError> {
        write_str(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), CanonicalError> {
        self.scalar(v)
    }
    fn serialize_none(self) -> Result<(), CanonicalError> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CanonicalError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), CanonicalError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), CanonicalError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        let mut object = Object::new(self.out, None);
        object.members.push(Cow::Borrowed(variant), value)?;
        object.done()
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Array<'a>, CanonicalError> {
        Ok(Array::new(self.out, None))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Array<'a>, CanonicalError> {
        Ok(Array::new(self.out, None))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Array<'a>, CanonicalError> {
        Ok(Array::new(self.out, None))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Array<'a>, CanonicalError> {
        Ok(Array::new(self.out, Some(variant)))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Object<'a>, CanonicalError> {
        Ok(Object::new(self.out, None))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Object<'a>, CanonicalError> {
        Ok(Object::new(self.out, None))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Object<'a>, CanonicalError> {
        Ok(Object::new(self.out, Some(variant)))
    }
}

/// The `Serialize{Seq,Tuple,TupleStruct,TupleVariant}` impls of [`Array`].
macro_rules! array_impls {
    ($($trait:ident::$method:ident),*) => {
        $(impl ser::$trait for Array<'_> {
            type Ok = ();
            type Error = CanonicalError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
                self.element(value)
            }
            fn end(self) -> Result<(), CanonicalError> {
                self.finish()
            }
        })*
    };
}

array_impls!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// The `Serialize{Map,Struct,StructVariant}` impls of an object collector with fields
/// `members: Payload` and `pending: Option<Key>`, and a `done(self)` method.
macro_rules! object_impls {
    ($ty:ty, $ok:ty, $($struct_trait:ident),*) => {
        impl ser::SerializeMap for $ty {
            type Ok = $ok;
            type Error = CanonicalError;
            fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CanonicalError> {
                self.pending = Some(key.serialize(KeyWriter)?);
                Ok(())
            }
            fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
                let key = self
                    .pending
                    .take()
                    .ok_or_else(|| CanonicalError("map value without a key".into()))?;
                self.members.push(key, value)
            }
            fn end(self) -> Result<$ok, CanonicalError> {
                self.done()
            }
        }
        $(impl ser::$struct_trait for $ty {
            type Ok = $ok;
            type Error = CanonicalError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), CanonicalError> {
                self.members.push(Cow::Borrowed(key), value)
            }
            fn end(self) -> Result<$ok, CanonicalError> {
                self.done()
            }
        })*
    };
}

object_impls!(Object<'_>, (), SerializeStruct, SerializeStructVariant);
object_impls!(TopObject, Payload, SerializeStruct);

/// Serialises the top-level object into a [`Payload`] (members kept apart, unsorted).
struct TopLevel;

/// Collects the top-level members.
struct TopObject {
    members: Payload,
    pending: Option<Key>,
}

impl TopObject {
    fn done(self) -> Result<Payload, CanonicalError> {
        Ok(self.members)
    }
}

fn not_an_object<T>() -> Result<T, CanonicalError> {
    Err(CanonicalError(
        "a record payload must be a JSON object".into(),
    ))
}

impl ser::Serializer for TopLevel {
    type Ok = Payload;
    type Error = CanonicalError;
    type SerializeSeq = Impossible<Payload, CanonicalError>;
    type SerializeTuple = Impossible<Payload, CanonicalError>;
    type SerializeTupleStruct = Impossible<Payload, CanonicalError>;
    type SerializeTupleVariant = Impossible<Payload, CanonicalError>;
    type SerializeMap = TopObject;
    type SerializeStruct = TopObject;
    type SerializeStructVariant = Impossible<Payload, CanonicalError>;

    refuse!(
        not_an_object,
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
        serialize_bytes(&[u8])
    );
    fn serialize_none(self) -> Result<Payload, CanonicalError> {
        not_an_object()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Payload, CanonicalError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Payload, CanonicalError> {
        not_an_object()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Payload, CanonicalError> {
        not_an_object()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<Payload, CanonicalError> {
        not_an_object()
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Payload, CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Payload, CanonicalError> {
        let mut members = Payload::with_capacity(1);
        members.push(Cow::Borrowed(variant), value)?;
        Ok(members)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, CanonicalError> {
        not_an_object()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, CanonicalError> {
        not_an_object()
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, CanonicalError> {
        not_an_object()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, CanonicalError> {
        not_an_object()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<TopObject, CanonicalError> {
        Ok(TopObject {
            members: Payload::with_capacity(16),
            pending: None,
        })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<TopObject, CanonicalError> {
        Ok(TopObject {
            members: Payload::with_capacity(len + 8),
            pending: None,
        })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, CanonicalError> {
        not_an_object()
    }
}

/// Map keys: strings, or numbers, booleans and chars written as strings (as `serde_json`).
struct KeyWriter;

fn key_must_be_a_string<T>() -> Result<T, CanonicalError> {
    Err(CanonicalError("object keys must be strings".into()))
}

impl ser::Serializer for KeyWriter {
    type Ok = Key;
    type Error = CanonicalError;
    type SerializeSeq = Impossible<Key, CanonicalError>;
    type SerializeTuple = Impossible<Key, CanonicalError>;
    type SerializeTupleStruct = Impossible<Key, CanonicalError>;
    type SerializeTupleVariant = Impossible<Key, CanonicalError>;
    type SerializeMap = Impossible<Key, CanonicalError>;
    type SerializeStruct = Impossible<Key, CanonicalError>;
    type SerializeStructVariant = Impossible<Key, CanonicalError>;

    keys_as_text!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64)
    );
    fn serialize_f32(self, _: f32) -> Result<Key, CanonicalError> {
        key_must_be_a_string()
    }
    fn serialize_f64(self, _: f64) -> Result<Key, CanonicalError> {
        key_must_be_a_string()
    }
    fn serialize_char(self, v: char) -> Result<Key, CanonicalError> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Key, CanonicalError> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Key, CanonicalError> {
        key_must_be_a_string()
    }
    fn serialize_none(self) -> Result<Key, CanonicalError> {
        key_must_be_a_string()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Key, CanonicalError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Key, CanonicalError> {
        key_must_be_a_string()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Key, CanonicalError> {
        key_must_be_a_string()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Key, CanonicalError> {
        Ok(Cow::Borrowed(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Key, CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Key, CanonicalError> {
        key_must_be_a_string()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, CanonicalError> {
        key_must_be_a_string()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, CanonicalError> {
        key_must_be_a_string()
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, CanonicalError> {
        key_must_be_a_string()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, CanonicalError> {
        key_must_be_a_string()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, CanonicalError> {
        key_must_be_a_string()
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, CanonicalError> {
        key_must_be_a_string()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, CanonicalError> {
        key_must_be_a_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::write_canonical;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn via_value<T: Serialize>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        write_canonical(&serde_json::to_value(v).expect("to_value"), &mut out);
        out
    }

    fn direct<T: Serialize>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        to_writer(&mut out, v).expect("canonical");
        out
    }

    #[derive(Serialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Tagged {
        Thing(Thing),
    }

    #[derive(Serialize)]
    struct Thing {
        zeta: u64,
        alpha: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        nested: Vec<Inner>,
        #[serde(flatten)]
        extra: serde_json::Map<String, Value>,
    }

    #[derive(Serialize)]
    enum Inner {
        Unit,
        New(f64),
        Tuple(i32, String),
        Record { b: bool, a: char },
    }

    #[test]
    fn matches_the_value_writer_for_structs_enums_flatten_and_floats() {
        let mut extra = serde_json::Map::new();
        extra.insert("zeta".into(), json!("flattened member wins"));
        extra.insert("é".into(), json!({"z": [1, 2.5, null], "a": "\u{1}\"\\"}));
        extra.insert("del\u{7f}".into(), json!("\u{7f}\u{1f}\t\n\u{2028}plain"));
        let value = Tagged::Thing(Thing {
            zeta: u64::MAX,
            alpha: None,
            skipped: None,
            nested: vec![
                Inner::Unit,
                Inner::New(-0.1),
                Inner::New(f64::NAN),
                Inner::Tuple(-3, "x".into()),
                Inner::Record { b: true, a: 'q' },
            ],
            extra,
        });
        assert_eq!(
            String::from_utf8(direct(&value)).unwrap(),
            String::from_utf8(via_value(&value)).unwrap()
        );
    }

    #[test]
    fn writing_with_top_members_equals_inserting_them() {
        #[derive(Serialize)]
        struct Unsorted {
            zeta: u8,
            hash: &'static str,
            alpha: u8,
            seq: u8,
        }
        let sorted = || {
            Payload::from_serialize(
                &json!({"alpha": 1, "hash": "old", "id": "x", "seq": 9, "type": "t", "zz": 2}),
            )
            .unwrap()
        };
        let unsorted = || {
            Payload::from_serialize(&Unsorted {
                zeta: 1,
                hash: "old",
                alpha: 2,
                seq: 9,
            })
            .unwrap()
        };
        let mut top = Payload::default();
        top.insert("id", "h:3").unwrap();
        top.insert("prev_hash", "00").unwrap();
        top.insert("seq", &3).unwrap();
        top.insert("ts", "now").unwrap();
        for payload in [sorted(), unsorted(), Payload::default()] {
            let mut inserted = payload.clone();
            inserted.remove("hash");
            for key in ["seq", "id", "ts", "prev_hash"] {
                let value: Value = serde_json::from_slice(top.raw(key).unwrap()).unwrap();
                inserted.insert(key, &value).unwrap();
            }
            let mut expected = Vec::new();
            inserted.write(&mut expected);
            let mut merged = Vec::new();
            payload.write_with(&top, "hash", &mut merged);
            assert_eq!(
                String::from_utf8(merged).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }

    #[test]
    fn payload_members_can_be_edited_before_writing() {
        let mut p = Payload::from_serialize(&json!({"sql": "x", "ts": 1, "b": [true]})).unwrap();
        p.remove("ts");
        p.rename("sql", "statement");
        p.insert_default("outcome", "observed").unwrap();
        p.insert_default("b", &0).unwrap();
        assert_eq!(p.raw("b"), Some(&b"[true]"[..]));
        let mut out = Vec::new();
        p.write(&mut out);
        assert_eq!(out, br#"{"b":[true],"outcome":"observed","statement":"x"}"#);
    }

    #[test]
    fn non_objects_are_refused_as_payloads() {
        assert!(Payload::from_serialize(&json!([1])).is_err());
        assert!(Payload::from_serialize("text").is_err());
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Members serialised as a map in the given order, duplicates included.
    struct Pairs(Vec<(String, Value)>);

    impl Serialize for Pairs {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }

    #[derive(Debug, Clone)]
    enum Edit {
        Insert(&'static str, Value),
        InsertDefault(&'static str, Value),
        Remove(&'static str),
        Rename(&'static str, &'static str),
    }

    const KEYS: [&str; 6] = ["a", "b", "ba", "c", "statement", "z"];

    fn edit() -> impl Strategy<Value = Edit> {
        let key = prop::sample::select(&KEYS[..]);
        prop_oneof![
            (key.clone(), json_value()).prop_map(|(k, v)| Edit::Insert(k, v)),
            (key.clone(), json_value()).prop_map(|(k, v)| Edit::InsertDefault(k, v)),
            key.clone().prop_map(Edit::Remove),
            (key.clone(), key).prop_map(|(from, to)| Edit::Rename(from, to)),
        ]
    }

    /// What the edits mean, on a map where the last duplicate won.
    fn model(pairs: &[(String, Value)], edits: &[Edit]) -> Vec<u8> {
        let mut map: std::collections::BTreeMap<String, Value> = pairs.iter().cloned().collect();
        for e in edits {
            match e {
                Edit::Insert(k, v) => {
                    map.insert((*k).to_owned(), v.clone());
                }
                Edit::InsertDefault(k, v) => {
                    map.entry((*k).to_owned()).or_insert_with(|| v.clone());
                }
                Edit::Remove(k) => {
                    map.remove(*k);
                }
                Edit::Rename(from, to) => {
                    if let Some(v) = map.remove(*from) {
                        map.insert((*to).to_owned(), v);
                    }
                }
            }
        }
        via_value(&map)
    }

    proptest! {
        #[test]
        fn any_json_value_writes_identically(value in json_value()) {
            prop_assert_eq!(direct(&value), via_value(&value));
        }

        #[test]
        fn edited_payloads_write_what_the_edits_mean(
            pairs in prop::collection::vec((prop::sample::select(&KEYS[..]).prop_map(str::to_owned), json_value()), 0..8),
            edits in prop::collection::vec(edit(), 0..8),
        ) {
            let mut p = Payload::from_serialize(&Pairs(pairs.clone())).unwrap();
            for e in &edits {
                match e {
                    Edit::Insert(k, v) => p.insert(*k, v).unwrap(),
                    Edit::InsertDefault(k, v) => p.insert_default(k, v).unwrap(),
                    Edit::Remove(k) => p.remove(k),
                    Edit::Rename(from, to) => p.rename(from, to),
                }
            }
            let mut out = Vec::new();
            p.write(&mut out);
            prop_assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(model(&pairs, &edits)).unwrap());
        }
    }
}
