//! Property tests of the client's decoders: arbitrary bytes, arbitrary JSON and
//! answer-shaped JSON with arbitrary values never panic, and the typed decoders of the big
//! answers never hold more than a fixed multiple of the body cap the answer was read under
//! (measured by a counting allocator, per thread, so parallel tests do not disturb each
//! other). Each input is decoded under the tightest cap that would have let it in: its own
//! length.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use keywarden::server_api::{typed, wire};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------
// Counting allocator.

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: allocations during thread teardown must not touch a destroyed local.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the bookkeeping
// touches only const-initialized thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            note(layout.size() as isize);
        }
        ptr
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            note(layout.size() as isize);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            // Both blocks may exist for a moment: count the new one before the old goes.
            note(new_size as isize);
            note(-(layout.size() as isize));
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Run `f`; what it returned and the most heap it held at once (this thread only).
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.with(|live| live.set(0));
    PEAK.with(|peak| peak.set(0));
    let out = f();
    let peak = PEAK.with(Cell::get).max(0) as usize;
    (out, peak)
}

/// The most a typed decode may hold, per byte of the cap: the models may take
/// `typed::MODEL_BYTES_PER_CAP_BYTE` (2) times the cap, and a list's growth up to as much
/// again while it moves. Without the budget, many tiny items (`[{"uuid":1},...]`, a
/// 10-byte item becoming a model of about 170 bytes) would need 30 to 55 times the text.
const MAX_BYTES_PER_CAP_BYTE: usize = 6;
const SLACK_BYTES: usize = 16 * 1024;

fn cap_for(bytes: &[u8]) -> usize {
    bytes.len().max(1024)
}

fn bounded(cap: usize) -> usize {
    cap * MAX_BYTES_PER_CAP_BYTE + SLACK_BYTES
}

type Decoder = fn(&[u8], usize) -> Result<(), String>;

fn drop_ok<T>(result: Result<T, wire::DecodeError>) -> Result<(), String> {
    result.map(|_| ()).map_err(|e| e.0)
}

const TYPED: [(&str, Decoder); 3] = [
    ("key list", |b, cap| drop_ok(typed::key_list(b, cap))),
    ("bulk traffic", |b, cap| {
        drop_ok(typed::bulk_traffic(b, cap))
    }),
    ("traffic status", |b, cap| {
        drop_ok(typed::monitor_status(b, cap))
    }),
];

/// Every decoder of the small answers, over a parsed value: none may panic.
fn every_value_decoder(value: &Value) {
    let _ = wire::api_status(value);
    let _ = wire::vpn_key(value, "key");
    let _ = wire::key_list(value);
    let _ = wire::key_traffic(value);
    let _ = wire::bulk_traffic(value);
    let _ = wire::monitor_status(value);
    let _ = wire::config_status(value);
    let _ = wire::sync_validation(value);
    let _ = wire::reset_confirmation(value);
    let _ = wire::sync_outcome(value);
    let _ = wire::reality_outcome(value);
    let _ = wire::delete_confirmed(value);
    let _ = wire::error_detail(value);
}

fn check_typed(bytes: &[u8]) -> Result<(), TestCaseError> {
    let cap = cap_for(bytes);
    for (name, decode) in TYPED {
        let (_, peak) = peak_of(|| decode(bytes, cap));
        prop_assert!(
            peak <= bounded(cap),
            "{name}: {peak} bytes held for {} bytes of text",
            bytes.len()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Strategies.

/// Field names: the ones the decoders look for (so the shape-aware paths run) and others.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "uuid", "key_uuid", "id", "key_id", "name", "key_name", "is_active", "active",
            "port", "short_id", "created_at", "keys", "items", "data", "traffic_stats",
            "keys_stats", "total_bytes", "total", "upload", "download", "connections",
            "exact_traffic", "traffic_bytes", "timestamp", "source", "version", "detail",
            "validation", "synced", "synchronized", "status", "message", "success",
            "has_traffic_data", "precise_monitor_available", "total_keys", "key",
            "uplink", "downlink", "up", "down", "traffic", "last_updated", "updated_at",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z_]{0,8}",
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,24}".prop_map(Value::String),
        "[0-9 .e+-]{0,12}".prop_map(Value::String),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            btree_map(field_name(), inner, 0..8)
                .prop_map(|map| Value::Object(map.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An object with decoder field names and arbitrary (mostly scalar) values.
fn record() -> impl Strategy<Value = Value> {
    btree_map(
        field_name(),
        prop_oneof![4 => scalar(), 1 => any_json()],
        0..10,
    )
    .prop_map(|map| Value::Object(map.into_iter().collect()))
}

/// The three big answers' shapes with arbitrary contents.
fn answer_shaped() -> impl Strategy<Value = Value> {
    let list = || vec(record(), 0..40);
    prop_oneof![
        list().prop_map(Value::Array),
        (field_name(), list()).prop_map(|(k, items)| json!({k: items})),
        (list(), record(), 0usize..3).prop_map(|(items, top, depth)| {
            let mut answer = top;
            let stats = match depth {
                0 => json!({"keys_stats": items}),
                1 => json!({"traffic_stats": {"keys_stats": items}}),
                _ => json!({"traffic_stats": {"traffic_stats": {"keys_stats": items}}}),
            };
            if let (Value::Object(answer), Value::Object(stats)) = (&mut answer, stats) {
                answer.extend(stats);
            }
            answer
        }),
        (list(), record()).prop_map(|(items, mut top)| {
            if let Value::Object(map) = &mut top {
                map.insert("traffic_stats".into(), Value::Array(items));
            }
            top
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(bytes in vec(any::<u8>(), 0..4096)) {
        check_typed(&bytes)?;
    }

    #[test]
    fn arbitrary_json_never_panics_and_stays_bounded(value in any_json()) {
        check_typed(&serde_json::to_vec(&value).unwrap())?;
        every_value_decoder(&value);
    }

    #[test]
    fn answer_shaped_json_never_panics_stays_bounded_and_both_entry_points_agree(value in answer_shaped()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        check_typed(&bytes)?;
        every_value_decoder(&value);
        // The bytes and the parsed value go through one implementation. (Parsed back
        // from the bytes: serde_json's float parsing may differ from the generated value
        // in the last bit, which shows in messages.)
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        // A cap far above the text, so the budget does not come into it.
        let roomy = bytes.len() * 100 + 4096;
        prop_assert_eq!(typed::key_list(&bytes, roomy), wire::key_list(&value));
        prop_assert_eq!(typed::bulk_traffic(&bytes, roomy), wire::bulk_traffic(&value));
        prop_assert_eq!(typed::monitor_status(&bytes, roomy), wire::monitor_status(&value));
    }

    #[test]
    fn a_key_traffic_answer_reads_alike_from_bytes_and_from_a_tree(
        value in prop_oneof![3 => record(), 1 => any_json()],
    ) {
        // The per-key read's fast path (typed, from the bytes) must give exactly what the
        // tree path gives, errors included.
        let bytes = serde_json::to_vec(&value).unwrap();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(typed::key_traffic(&bytes), wire::key_traffic(&value));
    }

    #[test]
    fn cut_and_corrupted_real_answers_never_panic(
        which in 0usize..4,
        cut in any::<prop::sample::Index>(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let sample = [
            "v1_keys_list.json",
            "v1_traffic_exact.json",
            "v1_traffic_status.json",
            "v2_keys_list.json",
        ][which];
        let mut bytes = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/api-samples").join(sample),
        ).unwrap();
        for (at, byte) in flips {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        check_typed(&bytes)?;
    }
}

#[test]
fn recorded_key_traffic_answers_read_alike_from_bytes_and_from_a_tree() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/api-samples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.contains("traffic") || !name.ends_with(".json") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            typed::key_traffic(&bytes),
            wire::key_traffic(&value),
            "{name}"
        );
        seen += 1;
    }
    assert!(seen >= 4, "only {seen} traffic samples found");
}

/// A realistic key list (what a 1.x server sends), of `n` keys.
fn realistic_key_list(n: usize) -> Vec<u8> {
    let keys: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("{i:08x}-1d2c-4b7e-9f00-5a6b7c8d9e0f"),
                   "name": format!("customer {i} phone"),
                   "uuid": format!("{i:08x}-aaaa-4bbb-8ccc-0123456789ab"),
                   "created_at": "2026-11-28T03:05:57.031341", "is_active": i % 7 != 0})
        })
        .collect();
    serde_json::to_vec(&keys).unwrap()
}

#[test]
fn a_realistic_key_list_decodes_in_under_two_and_a_half_times_its_text_a_third_of_a_json_tree() {
    let bytes = realistic_key_list(20_000);
    let (keys, typed_peak) =
        peak_of(|| typed::key_list(&bytes, bytes.len()).map(|keys| keys.len()));
    assert_eq!(keys, Ok(20_000));
    let (tree_keys, tree_peak) = peak_of(|| {
        let tree: Value = serde_json::from_slice(&bytes).unwrap();
        wire::key_list(&tree).map(|keys| keys.len())
    });
    assert_eq!(tree_keys, Ok(20_000));
    let text = bytes.len();
    // The models themselves are about 1.2x the text; the rest is the list's growth (the
    // counting allocator charges a moved block twice while it moves).
    assert!(
        typed_peak * 2 < text * 5,
        "typed decode held {typed_peak} bytes for {text} bytes of text"
    );
    assert!(
        typed_peak * 5 < tree_peak * 2,
        "typed {typed_peak} bytes vs a JSON tree's {tree_peak} bytes"
    );
}

#[test]
fn many_tiny_items_meet_the_budget_long_before_the_heap_grows() {
    let tiny_key = r#"{"uuid":1}"#;
    let answers = [
        (
            "key list",
            format!("[{}]", vec![tiny_key; 20_000].join(",")),
        ),
        (
            "bulk traffic",
            format!(
                r#"{{"keys_stats":[{}]}}"#,
                vec![r#"{"uuid":1,"total":1}"#; 20_000].join(",")
            ),
        ),
        (
            "traffic status",
            format!(
                r#"{{"traffic_stats":[{}]}}"#,
                vec![tiny_key; 20_000].join(",")
            ),
        ),
    ];
    for ((name, answer), (_, decode)) in answers.iter().zip(TYPED) {
        let cap = answer.len();
        let (result, peak) = peak_of(|| decode(answer.as_bytes(), cap));
        let err = result.expect_err(name);
        assert!(err.contains("decodes to more than"), "{name}: {err}");
        assert!(
            peak <= bounded(cap),
            "{name}: {peak} bytes for a {cap}-byte cap"
        );
        // Under a cap sized for it, the same answer decodes.
        assert_eq!(decode(answer.as_bytes(), cap * 100), Ok(()), "{name}");
    }
}
