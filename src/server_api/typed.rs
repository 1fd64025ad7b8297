//! Typed decoding of the answers that grow with the fleet (the key list, the 1.x bulk
//! traffic answer, the 1.x traffic status): serde reads the bytes straight into the typed
//! models, with no generic JSON tree in between. Strings borrow from the answer's buffer
//! until the model takes its own copy; arrays and objects the models do not need are
//! skipped without being built. The buffer itself is bounded by the client's body cap, so
//! decoding holds at most the capped text plus the typed result.
//!
//! The rules are those of `wire.rs` (the tolerant decoding of every answer): the first
//! present, non-null field among a list of names wins; numbers, booleans and timestamps
//! are accepted in every encoding `lenient.rs` knows; a missing field takes the
//! integration's default, except a missing uuid or total; a key that appears twice counts
//! once, the last one winning, as in a parsed JSON tree. Nothing here fails on a value's
//! type while parsing: a wrong type is kept as a fact and judged after, so the error names
//! the field.
//!
//! Every type here deserializes from bytes and from a `serde_json::Value` alike, so the
//! `wire.rs` entry points over `Value` share this one implementation.
//!
//! Longer than 400 lines on purpose (about 200 of them tests): the tolerant building
//! blocks (scalars, lists, objects) and the three answers decoded with them share the
//! field rules above; splitting them would scatter those rules.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, Unexpected, Visitor};
use serde::forward_to_deserialize_any;

use super::lenient::{LenientBool, LenientF64, LenientU64, Timestamp};
use super::model::*;
use super::wire::DecodeError;

type Decoded<T> = Result<T, DecodeError>;

const DEFAULT_SOURCE: &str = "alternative_monitor";
const DEFAULT_METHOD: &str = "network_distribution";

/// The decoded models of one answer may take this many bytes per byte of the body cap.
pub const MODEL_BYTES_PER_CAP_BYTE: usize = 2;

/// GET /api/keys, from the answer's bytes; `cap` is the body size limit the answer was
/// read under (its models may take `MODEL_BYTES_PER_CAP_BYTE` times that).
pub fn key_list(bytes: &[u8], cap: usize) -> Decoded<Vec<VpnKey>> {
    within_budget(cap, || {
        flatten(serde_json::from_slice::<KeyListAnswer>(bytes).map(|answer| answer.0))
    })
}

/// One key's traffic (GET /api/keys/{id}/traffic on 2.x, `.../traffic/exact` on 1.x),
/// from the answer's bytes. Read once per key per run, so the flat 2.x answer is read
/// straight into its fields; anything else (the nested 1.x `traffic_bytes` object, a
/// value that does not read, a body that is not an object) takes the `wire.rs` path over
/// a JSON tree, so results and error texts are `wire::key_traffic`'s in every case.
pub fn key_traffic(bytes: &[u8]) -> Decoded<KeyTraffic> {
    let flat = serde_json::from_slice::<ObjectOr<WireKeyTraffic>>(bytes)
        .ok()
        .and_then(|answer| match answer {
            ObjectOr::Object(flat) => flat.into_model().ok().flatten(),
            ObjectOr::Other(_) => None,
        });
    match flat {
        Some(traffic) => Ok(traffic),
        None => {
            let value: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|err| DecodeError(err.to_string()))?;
            super::wire::key_traffic(&value)
        }
    }
}

/// GET /api/traffic/exact (1.x), from the answer's bytes (`cap` as for [`key_list`]).
pub fn bulk_traffic(bytes: &[u8], cap: usize) -> Decoded<BulkTraffic> {
    within_budget(cap, || {
        flatten(
            serde_json::from_slice::<ObjectOr<WireBulk>>(bytes)
                .map(|answer| object_or_error(answer, "bulk traffic")?.into_model()),
        )
    })
}

/// GET /api/traffic/status (1.x), from the answer's bytes (`cap` as for [`key_list`]).
pub fn monitor_status(bytes: &[u8], cap: usize) -> Decoded<MonitorStatus> {
    within_budget(cap, || {
        flatten(
            serde_json::from_slice::<ObjectOr<WireMonitor>>(bytes)
                .map(|answer| object_or_error(answer, "traffic status")?.into_model()),
        )
    })
}

/// What the decode running on this thread may still produce. A thread-local because
/// a `Deserialize` impl cannot carry state down to the lists inside it; decoding is
/// synchronous, so the scope of `within_budget` is exactly one decode.
struct Budget {
    left: Cell<usize>,
    cap: Cell<usize>,
    active: Cell<bool>,
}

thread_local! {
    static BUDGET: Budget = const {
        Budget { left: Cell::new(0), cap: Cell::new(0), active: Cell::new(false) }
    };
}

/// Run one decode with a model budget of `MODEL_BYTES_PER_CAP_BYTE * cap`.
fn within_budget<T>(cap: usize, decode: impl FnOnce() -> Decoded<T>) -> Decoded<T> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            BUDGET.with(|budget| budget.active.set(false));
        }
    }
    BUDGET.with(|budget| {
        budget
            .left
            .set(cap.saturating_mul(MODEL_BYTES_PER_CAP_BYTE));
        budget.cap.set(cap);
        budget.active.set(true);
    });
    let _reset = Reset;
    decode()
}

/// Charge one decoded item; an error once the budget is spent. Decodes from a parsed
/// value (already in memory) run without a budget.
fn charge(bytes: usize) -> Decoded<()> {
    BUDGET.with(|budget| {
        if !budget.active.get() {
            return Ok(());
        }
        match budget.left.get().checked_sub(bytes) {
            Some(left) => {
                budget.left.set(left);
                Ok(())
            }
            None => Err(DecodeError(format!(
                "the answer decodes to more than {} bytes ({MODEL_BYTES_PER_CAP_BYTE} x its {}-byte size limit); a server this large needs a larger servers[].max_response_size",
                budget.cap.get().saturating_mul(MODEL_BYTES_PER_CAP_BYTE),
                budget.cap.get()
            ))),
        }
    })
}

/// A whole answer must be an object (derived structs would also take an array).
fn object_or_error<T>(answer: ObjectOr<T>, what: &str) -> Decoded<T> {
    match answer {
        ObjectOr::Object(object) => Ok(object),
        ObjectOr::Other(kind) => Err(not_an_object(&what, kind)),
    }
}

/// The same decoders over an already parsed value (the `wire.rs` entry points).
pub(super) fn from_value<'a, T: Deserialize<'a>>(value: &'a serde_json::Value) -> Decoded<T> {
    T::deserialize(value).map_err(|err| DecodeError(err.to_string()))
}

pub(super) fn key_list_from(value: &serde_json::Value) -> Decoded<Vec<VpnKey>> {
    from_value::<KeyListAnswer>(value)?.0
}

pub(super) fn bulk_traffic_from(value: &serde_json::Value) -> Decoded<BulkTraffic> {
    object_or_error(from_value::<ObjectOr<WireBulk>>(value)?, "bulk traffic")?.into_model()
}

pub(super) fn monitor_status_from(value: &serde_json::Value) -> Decoded<MonitorStatus> {
    object_or_error(
        from_value::<ObjectOr<WireMonitor>>(value)?,
        "traffic status",
    )?
    .into_model()
}

pub(super) fn vpn_key_from(value: &serde_json::Value, what: &str) -> Decoded<VpnKey> {
    match from_value::<ObjectOr<WireKey>>(value)? {
        ObjectOr::Object(key) => key.into_model(&what),
        ObjectOr::Other(kind) => Err(not_an_object(&what, kind)),
    }
}

pub(super) fn traffic_stats_from(value: &serde_json::Value, what: &str) -> Decoded<TrafficStats> {
    match from_value::<ObjectOr<WireStats>>(value)? {
        ObjectOr::Object(stats) => stats.into_model(&what),
        ObjectOr::Other(kind) => Err(not_an_object(&what, kind)),
    }
}

/// A syntax error (the exchange checked the syntax already, so rare) or a repeated field.
fn flatten<T>(parsed: Result<Decoded<T>, serde_json::Error>) -> Decoded<T> {
    parsed.map_err(|err| DecodeError(err.to_string()))?
}

fn not_an_object(what: &dyn fmt::Display, kind: &str) -> DecodeError {
    DecodeError(format!("{what}: expected a JSON object, got {kind}"))
}

// ---------------------------------------------------------------------------------------
// One field's value.

/// A JSON value as the tolerant rules need it: scalars are kept (strings borrowed from the
/// buffer where they have no escapes), arrays and objects are noted and skipped without
/// building them. `null` never gets here: fields are `Option<Scalar>` and null is None.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::U64(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::I64(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::F64(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Array)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Object)
            }
        }
        deserializer.deserialize_any(ScalarVisitor(PhantomData))
    }
}

/// Feeds a kept scalar to the lenient visitors of `lenient.rs`, so a number or a boolean
/// here is read by exactly the rules (and with the messages) it is read by everywhere else.
impl<'de> Deserializer<'de> for &Scalar<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self {
            Scalar::Null => visitor.visit_unit(),
            Scalar::Bool(v) => visitor.visit_bool(*v),
            Scalar::U64(v) => visitor.visit_u64(*v),
            Scalar::I64(v) => visitor.visit_i64(*v),
            Scalar::F64(v) => visitor.visit_f64(*v),
            Scalar::Str(v) => visitor.visit_str(v),
            Scalar::Array => Err(de::Error::invalid_type(Unexpected::Seq, &visitor)),
            Scalar::Object => Err(de::Error::invalid_type(Unexpected::Map, &visitor)),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl Scalar<'_> {
    /// Text as `wire.rs` reads it: strings as they are, numbers and booleans printed,
    /// arrays and objects are no text.
    fn text(&self) -> Option<String> {
        match self {
            Scalar::Str(text) => Some(text.clone().into_owned()),
            Scalar::U64(v) => Some(v.to_string()),
            Scalar::I64(v) => Some(v.to_string()),
            // Printed the way serde_json prints a number it parsed.
            Scalar::F64(v) => serde_json::Number::from_f64(*v).map(|n| n.to_string()),
            Scalar::Bool(v) => Some(v.to_string()),
            Scalar::Null | Scalar::Array | Scalar::Object => None,
        }
    }
}

/// The first present, non-null value among a field's names, in order of preference,
/// with the preferred name for messages.
fn first<'s, 'a>(
    fields: &[(&'static str, &'s Option<Scalar<'a>>)],
) -> Option<(&'static str, &'s Scalar<'a>)> {
    fields
        .iter()
        .find_map(|(name, value)| value.as_ref().map(|value| (*name, value)))
        .map(|(_, value)| (fields[0].0, value))
}

fn text(fields: &[(&'static str, &Option<Scalar<'_>>)]) -> Option<String> {
    first(fields).and_then(|(_, value)| value.text())
}

fn text_or(fields: &[(&'static str, &Option<Scalar<'_>>)], default: &str) -> String {
    text(fields).unwrap_or_else(|| default.to_owned())
}

fn u64_of(
    fields: &[(&'static str, &Option<Scalar<'_>>)],
    what: &dyn fmt::Display,
) -> Decoded<Option<u64>> {
    match first(fields) {
        None => Ok(None),
        Some((name, value)) => LenientU64::deserialize(value)
            .map(|n| Some(n.0))
            .map_err(|err| DecodeError(format!("{what}.{name}: {err}"))),
    }
}

fn f64_of(fields: &[(&'static str, &Option<Scalar<'_>>)], what: &dyn fmt::Display) -> Decoded<f64> {
    match first(fields) {
        None => Ok(0.0),
        Some((name, value)) => LenientF64::deserialize(value)
            .map(|n| n.0)
            .map_err(|err| DecodeError(format!("{what}.{name}: {err}"))),
    }
}

fn bool_of(
    fields: &[(&'static str, &Option<Scalar<'_>>)],
    what: &dyn fmt::Display,
) -> Decoded<Option<bool>> {
    match first(fields) {
        None => Ok(None),
        Some((name, value)) => LenientBool::deserialize(value)
            .map(|b| Some(b.0))
            .map_err(|err| DecodeError(format!("{what}.{name}: {err}"))),
    }
}

/// Timestamps are informational: an unreadable one is None, not an error.
fn time_of(fields: &[(&'static str, &Option<Scalar<'_>>)]) -> Option<DateTime<Utc>> {
    first(fields).and_then(|(_, value)| Timestamp::deserialize(value).ok().map(|t| t.0))
}

// ---------------------------------------------------------------------------------------
// Containers.

/// An object read as `T`, or what else stood there (skipped, not built).
pub(super) enum ObjectOr<T> {
    Object(T),
    Other(&'static str),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = ObjectOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<ObjectOr<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(ObjectOr::Object)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<ObjectOr<T>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ObjectOr::Other("an array"))
            }
            fn visit_unit<E>(self) -> Result<ObjectOr<T>, E> {
                Ok(ObjectOr::Other("null"))
            }
            fn visit_none<E>(self) -> Result<ObjectOr<T>, E> {
                Ok(ObjectOr::Other("null"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<ObjectOr<T>, E> {
                Ok(ObjectOr::Other("a boolean"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<ObjectOr<T>, E> {
                Ok(ObjectOr::Other("a number"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<ObjectOr<T>, E> {
                Ok(ObjectOr::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<ObjectOr<T>, E> {
                Ok(ObjectOr::Other("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<ObjectOr<T>, E> {
                Ok(ObjectOr::Other("a string"))
            }
        }
        deserializer.deserialize_any(ObjectVisitor(PhantomData))
    }
}

/// One element of a list: its wire form and how it becomes a model.
trait Item<'de>: Sized {
    type Wire: Deserialize<'de>;
    /// The list's name in messages: `keys` gives "keys[3]: no `uuid` field".
    const LIST: &'static str;
    fn convert(wire: Self::Wire, what: &dyn fmt::Display) -> Decoded<Self>;
    /// Heap bytes the model owns beyond its own size (its strings).
    fn heap_bytes(&self) -> usize;
}

/// "keys[3]", formatted only when a message needs it.
struct At(&'static str, usize);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

/// A field that should hold a list: its items converted one by one as they are read (so
/// no wire form of the whole list is ever held), or what else stood there. The first bad
/// item's error is kept and the rest of the list is skipped.
enum List<T> {
    Items(Decoded<Vec<T>>),
    NotList(&'static str),
}

impl<'de, T: Item<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor<T>(PhantomData<T>);
        impl<'de, T: Item<'de>> Visitor<'de> for ListVisitor<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                // Never sized from the answer: only what was actually read takes memory.
                let mut items = Vec::new();
                let mut index = 0;
                while let Some(element) = seq.next_element::<ObjectOr<T::Wire>>()? {
                    let what = At(T::LIST, index);
                    let converted = match element {
                        ObjectOr::Object(wire) => T::convert(wire, &what),
                        ObjectOr::Other(kind) => Err(not_an_object(&what, kind)),
                    }
                    .and_then(|item| {
                        charge(std::mem::size_of::<T>() + item.heap_bytes()).map(|()| item)
                    });
                    match converted {
                        Ok(item) => items.push(item),
                        Err(error) => {
                            while seq.next_element::<IgnoredAny>()?.is_some() {}
                            return Ok(List::Items(Err(error)));
                        }
                    }
                    index += 1;
                }
                // The result may be cached for a while: give back the growth slack.
                items.shrink_to_fit();
                Ok(List::Items(Ok(items)))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<List<T>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(List::NotList("an object"))
            }
            fn visit_unit<E>(self) -> Result<List<T>, E> {
                Ok(List::NotList("null"))
            }
            fn visit_none<E>(self) -> Result<List<T>, E> {
                Ok(List::NotList("null"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<List<T>, E> {
                Ok(List::NotList("a boolean"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<List<T>, E> {
                Ok(List::NotList("a number"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<List<T>, E> {
                Ok(List::NotList("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<List<T>, E> {
                Ok(List::NotList("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<List<T>, E> {
                Ok(List::NotList("a string"))
            }
        }
        deserializer.deserialize_any(ListVisitor(PhantomData))
    }
}

/// A struct of optional fields read from a JSON object the tolerant way: unknown keys
/// are skipped, and a key that appears twice counts once, the last one winning (as in a
/// parsed JSON tree: serde's derive would refuse the whole answer instead). Keys without
/// escapes are compared in place, never copied.
macro_rules! tolerant_object {
    ($(#[$meta:meta])* $vis:vis struct $name:ident<'a> { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        $vis struct $name<'a> {
            $($field: $ty),*
        }

        impl<'de: 'a, 'a> Deserialize<'de> for $name<'a> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct ObjectVisitor<'a>(PhantomData<&'a ()>);
                impl<'de: 'a, 'a> Visitor<'de> for ObjectVisitor<'a> {
                    type Value = $name<'a>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<$name<'a>, A::Error> {
                        let mut object = $name { $($field: None),* };
                        while let Some(key) = map.next_key::<Key<'de>>()? {
                            match key.0.as_ref() {
                                $(stringify!($field) => object.$field = map.next_value()?,)*
                                _ => {
                                    map.next_value::<IgnoredAny>()?;
                                }
                            }
                        }
                        Ok(object)
                    }
                }
                deserializer.deserialize_map(ObjectVisitor(PhantomData))
            }
        }
    };
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        $vis struct $name {
            $($field: $ty),*
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct ObjectVisitor;
                impl<'de> Visitor<'de> for ObjectVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        let mut object = $name { $($field: None),* };
                        while let Some(key) = map.next_key::<Key<'de>>()? {
                            match key.0.as_ref() {
                                $(stringify!($field) => object.$field = map.next_value()?,)*
                                _ => {
                                    map.next_value::<IgnoredAny>()?;
                                }
                            }
                        }
                        Ok(object)
                    }
                }
                deserializer.deserialize_map(ObjectVisitor)
            }
        }
    };
}

/// An object's key, borrowed from the buffer unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

// ---------------------------------------------------------------------------------------
// Keys.

tolerant_object! {
    /// A key as any server writes it (`uuid`/`key_uuid`, `id`/`key_id`, ...).
    pub(super) struct WireKey<'a> {
        uuid: Option<Scalar<'a>>,
        key_uuid: Option<Scalar<'a>>,
        id: Option<Scalar<'a>>,
        key_id: Option<Scalar<'a>>,
        name: Option<Scalar<'a>>,
        key_name: Option<Scalar<'a>>,
        created_at: Option<Scalar<'a>>,
        is_active: Option<Scalar<'a>>,
        active: Option<Scalar<'a>>,
        port: Option<Scalar<'a>>,
        short_id: Option<Scalar<'a>>,
    }
}

tolerant_object! {
    /// One key's traffic as the flat answers write it (2.x: `key_id`, `key_uuid`,
    /// `total_bytes`, `timestamp`); the nested fields are only noted.
    struct WireKeyTraffic<'a> {
        traffic_bytes: Option<Scalar<'a>>,
        traffic: Option<Scalar<'a>>,
        exact_traffic: Option<Scalar<'a>>,
        key_id: Option<Scalar<'a>>,
        id: Option<Scalar<'a>>,
        key_uuid: Option<Scalar<'a>>,
        uuid: Option<Scalar<'a>>,
        total_bytes: Option<Scalar<'a>>,
        total: Option<Scalar<'a>>,
        upload: Option<Scalar<'a>>,
        uplink: Option<Scalar<'a>>,
        up: Option<Scalar<'a>>,
        download: Option<Scalar<'a>>,
        downlink: Option<Scalar<'a>>,
        down: Option<Scalar<'a>>,
        connections: Option<Scalar<'a>>,
        source: Option<Scalar<'a>>,
        timestamp: Option<Scalar<'a>>,
        last_updated: Option<Scalar<'a>>,
        updated_at: Option<Scalar<'a>>,
    }
}

impl WireKeyTraffic<'_> {
    /// The model as `wire::key_traffic` builds it from a flat answer; `Ok(None)` when the
    /// answer is not flat (a nested object stands where `wire.rs` looks for one, or no
    /// total at all) and the tree path must judge it.
    fn into_model(self) -> Decoded<Option<KeyTraffic>> {
        let nested = [&self.traffic_bytes, &self.traffic, &self.exact_traffic]
            .into_iter()
            .any(|value| matches!(value, Some(Scalar::Object)));
        if nested {
            return Ok(None);
        }
        let what = &"key traffic";
        let upload = u64_of(
            &[
                ("upload", &self.upload),
                ("uplink", &self.uplink),
                ("up", &self.up),
            ],
            what,
        )?;
        let download = u64_of(
            &[
                ("download", &self.download),
                ("downlink", &self.downlink),
                ("down", &self.down),
            ],
            what,
        )?;
        let total = match u64_of(
            &[("total_bytes", &self.total_bytes), ("total", &self.total)],
            what,
        )? {
            Some(total) => total,
            None if upload.is_none() && download.is_none() => return Ok(None),
            None => upload.unwrap_or(0).saturating_add(download.unwrap_or(0)),
        };
        Ok(Some(KeyTraffic {
            key_id: text(&[("key_id", &self.key_id), ("id", &self.id)]),
            uuid: text(&[("key_uuid", &self.key_uuid), ("uuid", &self.uuid)]),
            total_bytes: total,
            upload,
            download,
            connections: u64_of(&[("connections", &self.connections)], what)?,
            source: text_or(&[("source", &self.source)], DEFAULT_SOURCE),
            read_at: time_of(&[
                ("timestamp", &self.timestamp),
                ("last_updated", &self.last_updated),
                ("updated_at", &self.updated_at),
            ]),
        }))
    }
}

impl WireKey<'_> {
    fn into_model(self, what: &dyn fmt::Display) -> Decoded<VpnKey> {
        let uuid = text(&[("uuid", &self.uuid), ("key_uuid", &self.key_uuid)])
            .ok_or_else(|| DecodeError(format!("{what}: no `uuid` field")))?;
        // Some servers know a key only by its uuid; per-key calls then use the uuid.
        let id =
            text(&[("id", &self.id), ("key_id", &self.key_id)]).unwrap_or_else(|| uuid.clone());
        let port = u64_of(&[("port", &self.port)], what)?.and_then(|p| u16::try_from(p).ok());
        Ok(VpnKey {
            id,
            uuid,
            name: text_or(&[("name", &self.name), ("key_name", &self.key_name)], ""),
            created_at: time_of(&[("created_at", &self.created_at)]),
            // A key the server lists without saying otherwise is served by Xray.
            is_active: bool_of(
                &[("is_active", &self.is_active), ("active", &self.active)],
                what,
            )?
            .unwrap_or(true),
            port,
            short_id: text(&[("short_id", &self.short_id)]),
        })
    }
}

impl<'de> Item<'de> for VpnKey {
    type Wire = WireKey<'de>;
    const LIST: &'static str = "keys";
    fn convert(wire: WireKey<'de>, what: &dyn fmt::Display) -> Decoded<VpnKey> {
        wire.into_model(what)
    }
    fn heap_bytes(&self) -> usize {
        self.id.capacity()
            + self.uuid.capacity()
            + self.name.capacity()
            + self.short_id.as_ref().map_or(0, String::capacity)
    }
}

/// The key list: a bare array, or wrapped as `{"keys"|"items"|"data": [...]}` (seen in
/// some clients).
struct KeyListAnswer(Decoded<Vec<VpnKey>>);

tolerant_object! {
    struct KeyListWrapper {
        keys: Option<List<VpnKey>>,
        items: Option<List<VpnKey>>,
        data: Option<List<VpnKey>>,
    }
}

impl<'de> Deserialize<'de> for KeyListAnswer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AnswerVisitor;
        fn not_an_array(kind: &str) -> KeyListAnswer {
            KeyListAnswer(Err(DecodeError(format!(
                "key list: expected a JSON array, got {kind}"
            ))))
        }
        impl<'de> Visitor<'de> for AnswerVisitor {
            type Value = KeyListAnswer;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of keys")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<KeyListAnswer, A::Error> {
                let list: List<VpnKey> =
                    Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(KeyListAnswer(match list {
                    List::Items(items) => items,
                    List::NotList(kind) => Err(DecodeError(format!(
                        "key list: expected a JSON array, got {kind}"
                    ))),
                }))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<KeyListAnswer, A::Error> {
                let wrapper =
                    KeyListWrapper::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(KeyListAnswer(
                    match [wrapper.keys, wrapper.items, wrapper.data]
                        .into_iter()
                        .flatten()
                        .next()
                    {
                        Some(List::Items(items)) => items,
                        _ => Err(DecodeError("key list: expected a JSON array".into())),
                    },
                ))
            }
            fn visit_unit<E>(self) -> Result<KeyListAnswer, E> {
                Ok(not_an_array("null"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<KeyListAnswer, E> {
                Ok(not_an_array("a boolean"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<KeyListAnswer, E> {
                Ok(not_an_array("a number"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<KeyListAnswer, E> {
                Ok(not_an_array("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<KeyListAnswer, E> {
                Ok(not_an_array("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<KeyListAnswer, E> {
                Ok(not_an_array("a string"))
            }
        }
        deserializer.deserialize_any(AnswerVisitor)
    }
}

// ---------------------------------------------------------------------------------------
// Traffic.

tolerant_object! {
    /// 1.x TrafficStats with every field optional.
    pub(super) struct WireStats<'a> {
        total_bytes: Option<Scalar<'a>>,
        total: Option<Scalar<'a>>,
        total_formatted: Option<Scalar<'a>>,
        total_mb: Option<Scalar<'a>>,
        connections: Option<Scalar<'a>>,
        connection_ratio: Option<Scalar<'a>>,
        connections_count: Option<Scalar<'a>>,
        source: Option<Scalar<'a>>,
        method: Option<Scalar<'a>>,
        timestamp: Option<Scalar<'a>>,
    }
}

impl WireStats<'_> {
    fn empty() -> Self {
        WireStats {
            total_bytes: None,
            total: None,
            total_formatted: None,
            total_mb: None,
            connections: None,
            connection_ratio: None,
            connections_count: None,
            source: None,
            method: None,
            timestamp: None,
        }
    }

    fn into_model(self, what: &dyn fmt::Display) -> Decoded<TrafficStats> {
        Ok(TrafficStats {
            total_bytes: u64_of(
                &[("total_bytes", &self.total_bytes), ("total", &self.total)],
                what,
            )?
            .unwrap_or(0),
            total_formatted: text_or(&[("total_formatted", &self.total_formatted)], "0 B"),
            total_mb: f64_of(&[("total_mb", &self.total_mb)], what)?,
            connections: u64_of(&[("connections", &self.connections)], what)?.unwrap_or(0),
            connection_ratio: f64_of(&[("connection_ratio", &self.connection_ratio)], what)?,
            connections_count: u64_of(&[("connections_count", &self.connections_count)], what)?
                .unwrap_or(0),
            source: text_or(&[("source", &self.source)], DEFAULT_SOURCE),
            method: text_or(&[("method", &self.method)], DEFAULT_METHOD),
            timestamp: time_of(&[("timestamp", &self.timestamp)]),
        })
    }
}

tolerant_object! {
    /// One entry of `keys_stats`.
    pub(super) struct WireBulkEntry<'a> {
        uuid: Option<Scalar<'a>>,
        key_uuid: Option<Scalar<'a>>,
        connections: Option<Scalar<'a>>,
        total_bytes: Option<Scalar<'a>>,
        total: Option<Scalar<'a>>,
        total_mb: Option<Scalar<'a>>,
        connection_ratio: Option<Scalar<'a>>,
    }
}

impl<'de> Item<'de> for BulkTrafficEntry {
    type Wire = WireBulkEntry<'de>;
    const LIST: &'static str = "keys_stats";
    fn convert(wire: WireBulkEntry<'de>, what: &dyn fmt::Display) -> Decoded<BulkTrafficEntry> {
        Ok(BulkTrafficEntry {
            uuid: text(&[("uuid", &wire.uuid), ("key_uuid", &wire.key_uuid)])
                .ok_or_else(|| DecodeError(format!("{what}: no `uuid` field")))?,
            connections: u64_of(&[("connections", &wire.connections)], what)?.unwrap_or(0),
            total_bytes: u64_of(
                &[("total_bytes", &wire.total_bytes), ("total", &wire.total)],
                what,
            )?
            .ok_or_else(|| DecodeError(format!("{what}: no `total_bytes` field")))?,
            total_mb: f64_of(&[("total_mb", &wire.total_mb)], what)?,
            connection_ratio: f64_of(&[("connection_ratio", &wire.connection_ratio)], what)?,
        })
    }
    fn heap_bytes(&self) -> usize {
        self.uuid.capacity()
    }
}

tolerant_object! {
    /// GET /api/traffic/exact: `keys_stats` sits at `traffic_stats.keys_stats` (documented)
    /// or `traffic_stats.traffic_stats.keys_stats` (what the real server sends).
    struct WireBulk<'a> {
        traffic_stats: Option<ObjectOr<WireBulkInner<'a>>>,
        keys_stats: Option<List<BulkTrafficEntry>>,
        source: Option<Scalar<'a>>,
        total_keys: Option<Scalar<'a>>,
        active_keys: Option<Scalar<'a>>,
        timestamp: Option<Scalar<'a>>,
    }
}

tolerant_object! {
    struct WireBulkInner<'a> {
        traffic_stats: Option<ObjectOr<WireBulkDeep>>,
        keys_stats: Option<List<BulkTrafficEntry>>,
        timestamp: Option<Scalar<'a>>,
    }
}

tolerant_object! {
    struct WireBulkDeep {
        keys_stats: Option<List<BulkTrafficEntry>>,
    }
}

impl WireBulk<'_> {
    fn into_model(self) -> Decoded<BulkTraffic> {
        let what = &"bulk traffic";
        let (deep, inner_stats, inner_time) = match self.traffic_stats {
            Some(ObjectOr::Object(inner)) => {
                let deep = match inner.traffic_stats {
                    Some(ObjectOr::Object(deep)) => deep.keys_stats,
                    _ => None,
                };
                (
                    deep,
                    inner.keys_stats,
                    time_of(&[("timestamp", &inner.timestamp)]),
                )
            }
            _ => (None, None, None),
        };
        let entries = match [deep, inner_stats, self.keys_stats]
            .into_iter()
            .flatten()
            .next()
        {
            None => Vec::new(),
            Some(List::Items(items)) => items?,
            Some(List::NotList(kind)) => {
                return Err(DecodeError(format!(
                    "bulk traffic: keys_stats is {kind}, not a list"
                )));
            }
        };
        Ok(BulkTraffic {
            source: text_or(&[("source", &self.source)], DEFAULT_SOURCE),
            total_keys: u64_of(&[("total_keys", &self.total_keys)], what)?.unwrap_or(0),
            active_keys: u64_of(&[("active_keys", &self.active_keys)], what)?.unwrap_or(0),
            entries,
            timestamp: inner_time.or_else(|| time_of(&[("timestamp", &self.timestamp)])),
        })
    }
}

tolerant_object! {
    /// One key of GET /api/traffic/status.
    pub(super) struct WireMonitorKey<'a> {
        exact_traffic: Option<ObjectOr<WireStats<'a>>>,
        traffic_bytes: Option<ObjectOr<WireStats<'a>>>,
        key_id: Option<Scalar<'a>>,
        id: Option<Scalar<'a>>,
        key_name: Option<Scalar<'a>>,
        name: Option<Scalar<'a>>,
        uuid: Option<Scalar<'a>>,
        key_uuid: Option<Scalar<'a>>,
        has_traffic_data: Option<Scalar<'a>>,
    }
}

/// "traffic_stats[3].exact_traffic", formatted only when a message needs it.
struct Within<'a>(&'a dyn fmt::Display, &'static str);

impl fmt::Display for Within<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl<'de> Item<'de> for MonitorKey {
    type Wire = WireMonitorKey<'de>;
    const LIST: &'static str = "traffic_stats";
    fn convert(wire: WireMonitorKey<'de>, what: &dyn fmt::Display) -> Decoded<MonitorKey> {
        let stats_what = Within(what, "exact_traffic");
        let traffic = match wire.exact_traffic.or(wire.traffic_bytes) {
            Some(ObjectOr::Object(stats)) => stats.into_model(&stats_what)?,
            Some(ObjectOr::Other(kind)) => return Err(not_an_object(&stats_what, kind)),
            None => WireStats::empty().into_model(what)?,
        };
        Ok(MonitorKey {
            key_id: text_or(&[("key_id", &wire.key_id), ("id", &wire.id)], ""),
            key_name: text_or(&[("key_name", &wire.key_name), ("name", &wire.name)], ""),
            uuid: text(&[("uuid", &wire.uuid), ("key_uuid", &wire.key_uuid)])
                .ok_or_else(|| DecodeError(format!("{what}: no `uuid` field")))?,
            traffic,
            has_traffic_data: bool_of(&[("has_traffic_data", &wire.has_traffic_data)], what)?
                .unwrap_or(false),
        })
    }
    fn heap_bytes(&self) -> usize {
        self.key_id.capacity()
            + self.key_name.capacity()
            + self.uuid.capacity()
            + self.traffic.total_formatted.capacity()
            + self.traffic.source.capacity()
            + self.traffic.method.capacity()
    }
}

tolerant_object! {
    /// GET /api/traffic/status (1.x).
    struct WireMonitor<'a> {
        traffic_stats: Option<List<MonitorKey>>,
        total_keys: Option<Scalar<'a>>,
        active_keys: Option<Scalar<'a>>,
        precise_monitor_available: Option<Scalar<'a>>,
    }
}

impl WireMonitor<'_> {
    fn into_model(self) -> Decoded<MonitorStatus> {
        let what = &"traffic status";
        let keys = match self.traffic_stats {
            None => Vec::new(),
            Some(List::Items(items)) => items?,
            Some(List::NotList(kind)) => {
                return Err(DecodeError(format!(
                    "traffic status: traffic_stats is {kind}, not a list"
                )));
            }
        };
        Ok(MonitorStatus {
            total_keys: u64_of(&[("total_keys", &self.total_keys)], what)?.unwrap_or(0),
            active_keys: u64_of(&[("active_keys", &self.active_keys)], what)?.unwrap_or(0),
            precise_monitor_available: bool_of(
                &[("precise_monitor_available", &self.precise_monitor_available)],
                what,
            )?
            .unwrap_or(false),
            keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Both entry points (bytes, parsed value) agree.
    fn both<T: PartialEq + fmt::Debug>(
        value: serde_json::Value,
        from_bytes: fn(&[u8], usize) -> Decoded<T>,
        from_value: fn(&serde_json::Value) -> Decoded<T>,
    ) -> Decoded<T> {
        let bytes = serde_json::to_vec(&value).expect("serialize");
        let a = from_bytes(&bytes, 1 << 20);
        let b = from_value(&value);
        assert_eq!(a, b, "{value}");
        a
    }

    #[test]
    fn keys_in_every_variant() {
        let keys = both(
            json!([
                {"id": "k1", "uuid": "u1", "name": "a", "is_active": true, "created_at": "2026-11-28T03:05:57"},
                {"key_id": 7, "key_uuid": "u2", "key_name": "b", "active": "false", "port": "10001", "short_id": "ab12cd34"},
                {"uuid": "u3", "unknown": {"nested": [1, 2, {"x": null}]}},
                {"uuid": "u4", "id": null, "key_id": "k4", "port": 70000},
            ]),
            key_list,
            key_list_from,
        )
        .unwrap();
        assert_eq!(keys.len(), 4);
        assert_eq!((keys[0].id.as_str(), keys[0].is_active), ("k1", true));
        assert!(keys[0].created_at.is_some());
        assert_eq!(
            (
                keys[1].id.as_str(),
                keys[1].uuid.as_str(),
                keys[1].name.as_str()
            ),
            ("7", "u2", "b")
        );
        assert_eq!((keys[1].is_active, keys[1].port), (false, Some(10001)));
        assert_eq!(keys[1].short_id.as_deref(), Some("ab12cd34"));
        assert_eq!((keys[2].id.as_str(), keys[2].is_active), ("u3", true));
        assert_eq!((keys[3].id.as_str(), keys[3].port), ("k4", None));
    }

    #[test]
    fn key_list_wrappers_and_errors() {
        let wrapped = both(
            json!({"data": [{"uuid": "d"}], "keys": [{"uuid": "k"}], "total": 1}),
            key_list,
            key_list_from,
        )
        .unwrap();
        assert_eq!(wrapped[0].uuid, "k", "`keys` is preferred");
        let cases = [
            (
                json!("nope"),
                "key list: expected a JSON array, got a string",
            ),
            (json!({"keys": 3}), "key list: expected a JSON array"),
            (json!({"other": []}), "key list: expected a JSON array"),
            (
                json!([{"uuid": "a"}, {"name": "b"}]),
                "keys[1]: no `uuid` field",
            ),
            (
                json!([{"uuid": "a"}, 5]),
                "keys[1]: expected a JSON object, got a number",
            ),
            (
                json!([{"uuid": "a", "port": -3}]),
                "keys[0].port: negative count: -3",
            ),
            (
                json!([{"uuid": "a", "is_active": [true]}]),
                "keys[0].is_active: invalid type: sequence, expected a boolean",
            ),
        ];
        for (value, message) in cases {
            let err = both(value.clone(), key_list, key_list_from).unwrap_err();
            assert_eq!(err.0, message, "{value}");
        }
    }

    #[test]
    fn bulk_keys_stats_at_either_depth_and_the_deeper_wins() {
        let entry =
            |uuid: &str, total: u64| json!({"uuid": uuid, "total_bytes": total, "connections": 2});
        let real = json!({"source": "xray_api", "traffic_stats": {"traffic_stats": {"keys_stats": [entry("deep", 5)]},
                          "keys_stats": [entry("mid", 6)], "timestamp": 1754137253}, "keys_stats": [entry("top", 7)]});
        let bulk = both(real, bulk_traffic, bulk_traffic_from).unwrap();
        assert_eq!(bulk.entries[0].uuid, "deep");
        assert_eq!(bulk.source, "xray_api");
        assert!(bulk.timestamp.is_some());
        let documented =
            json!({"traffic_stats": {"keys_stats": [entry("mid", "6".parse::<u64>().unwrap())]}});
        assert_eq!(
            both(documented, bulk_traffic, bulk_traffic_from)
                .unwrap()
                .entries[0]
                .total_bytes,
            6
        );
        // A non-object `traffic_stats` is ignored, as a tree reader's `as_object` would.
        let odd = json!({"traffic_stats": [1, 2], "keys_stats": [entry("top", 7)]});
        assert_eq!(
            both(odd, bulk_traffic, bulk_traffic_from).unwrap().entries[0].uuid,
            "top"
        );
        let empty = both(json!({}), bulk_traffic, bulk_traffic_from).unwrap();
        assert_eq!(
            (empty.entries.len(), empty.source.as_str()),
            (0, DEFAULT_SOURCE)
        );
        let err = both(json!({"keys_stats": "x"}), bulk_traffic, bulk_traffic_from).unwrap_err();
        assert_eq!(err.0, "bulk traffic: keys_stats is a string, not a list");
        let err = both(
            json!({"keys_stats": [{"uuid": "a"}]}),
            bulk_traffic,
            bulk_traffic_from,
        )
        .unwrap_err();
        assert_eq!(err.0, "keys_stats[0]: no `total_bytes` field");
    }

    #[test]
    fn monitor_status_with_defaults() {
        let status = both(
            json!({"total_keys": "2", "active_keys": 1, "precise_monitor_available": 1,
                   "traffic_stats": [
                     {"key_id": "k", "key_name": "n", "uuid": "u", "has_traffic_data": true,
                      "exact_traffic": {"total_bytes": 10.0, "source": "precise_monitor"}},
                     {"id": "k2", "key_uuid": "u2"}]}),
            monitor_status,
            monitor_status_from,
        )
        .unwrap();
        assert_eq!((status.total_keys, status.active_keys), (2, 1));
        assert!(status.precise_monitor_available);
        assert_eq!(status.keys[0].traffic.total_bytes, 10);
        assert_eq!(status.keys[0].traffic.source, "precise_monitor");
        assert_eq!(status.keys[1].key_id, "k2");
        assert_eq!(status.keys[1].traffic.total_formatted, "0 B");
        assert_eq!(status.keys[1].traffic.method, DEFAULT_METHOD);
        let err = both(
            json!({"traffic_stats": [{"uuid": "u", "exact_traffic": 3}]}),
            monitor_status,
            monitor_status_from,
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            "traffic_stats[0].exact_traffic: expected a JSON object, got a number"
        );
    }

    #[test]
    fn strings_without_escapes_are_borrowed_from_the_buffer() {
        let bytes = br#"{"uuid": "plain", "name": "with \"escape\""}"#;
        let wire: WireKey<'_> = serde_json::from_slice(bytes).unwrap();
        assert!(matches!(
            wire.uuid,
            Some(Scalar::Str(Cow::Borrowed("plain")))
        ));
        assert!(matches!(wire.name, Some(Scalar::Str(Cow::Owned(_)))));
    }

    #[test]
    fn a_repeated_field_counts_once_and_the_last_one_wins_as_in_a_json_tree() {
        let answer = br#"[{"uuid": "a", "name": "x", "uuid": "b", "name": null}]"#;
        let keys = key_list(answer, 1024).unwrap();
        assert_eq!((keys[0].uuid.as_str(), keys[0].name.as_str()), ("b", ""));
        let tree: serde_json::Value = serde_json::from_slice(answer).unwrap();
        assert_eq!(key_list_from(&tree).unwrap(), keys);
    }

    #[test]
    fn models_beyond_twice_the_cap_are_refused_and_the_budget_ends_with_the_decode() {
        let tiny = format!("[{}]", vec![r#"{"uuid":1}"#; 1000].join(","));
        let cap = tiny.len();
        let err = key_list(tiny.as_bytes(), cap).unwrap_err();
        assert!(err.0.contains("decodes to more than"), "{err}");
        assert!(err.0.contains(&format!("{cap}-byte size limit")), "{err}");
        // A larger cap takes it; a parsed value has no budget.
        assert_eq!(key_list(tiny.as_bytes(), cap * 100).unwrap().len(), 1000);
        let value: serde_json::Value = serde_json::from_str(&tiny).unwrap();
        assert_eq!(key_list_from(&value).unwrap().len(), 1000);
        // A realistic list fits in twice its own size.
        let real = br#"[{"id": "0f9ba431-c29f-4fb1-9c3a-8d2e7b6a5f41", "name": "alice phone",
            "uuid": "7b1e2c3d-4f5a-4b6c-8d7e-9f0a1b2c3d4e", "created_at": "2026-11-28T03:05:57",
            "is_active": true}]"#;
        assert_eq!(key_list(real, real.len()).unwrap().len(), 1);
    }
}
