//! Reads of both generations into drifts, their descriptions and signatures; the
//! builders here are shared with the plan's tests.

use super::*;

pub fn status(synchronized: bool, keys: &[&str], config: &[&str]) -> ConfigStatus {
    let owned = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    ConfigStatus {
        synchronized,
        key_store_count: keys.len() as u64,
        config_count: config.len() as u64,
        key_store_uuids: owned(keys),
        config_uuids: owned(config),
        timestamp: None,
    }
}

pub fn validation(missing: &[&str], extra: &[&str], short_ids: &[&str]) -> SyncValidation {
    let owned = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let uuid_synced = missing.is_empty() && extra.is_empty();
    SyncValidation {
        synced: uuid_synced && short_ids.is_empty(),
        uuid_synced,
        short_id_synced: short_ids.is_empty(),
        keys_count: 3,
        config_count: 3,
        missing_in_config: owned(missing),
        extra_in_config: owned(extra),
        short_id_mismatches: owned(short_ids),
        short_id_mismatches_count: short_ids.len() as u64,
    }
}

pub fn v1(synchronized: bool, keys: &[&str], config: &[&str]) -> Read {
    Read {
        status: status(synchronized, keys, config),
        validation: None,
    }
}

pub fn v2(status_synchronized: bool, validation: SyncValidation) -> Read {
    Read {
        status: status(status_synchronized, &["a", "b"], &["a", "b"]),
        validation: Some(validation),
    }
}

/// What a drifted read should yield.
struct Expect {
    missing: &'static [&'static str],
    extra: &'static [&'static str],
    flag: bool,
    stale: bool,
}

#[test]
fn drift_is_judged_by_the_witness() {
    let expect = |missing, extra, flag, stale| {
        Some(Expect {
            missing,
            extra,
            flag,
            stale,
        })
    };
    let table = [
        ("1.x in sync", v1(true, &["a", "b"], &["b", "a"]), None),
        (
            "1.x both kinds",
            v1(false, &["a", "b"], &["b", "x"]),
            expect(&["a"], &["x"], true, false),
        ),
        (
            "1.x flag alone",
            v1(false, &["a"], &["a"]),
            expect(&[], &[], true, false),
        ),
        (
            "1.x sets disagree with the flag",
            v1(true, &["a"], &[]),
            expect(&["a"], &[], false, false),
        ),
        (
            "2.x stale cache says synchronized",
            v2(true, validation(&["b"], &[], &[])),
            expect(&["b"], &[], true, true),
        ),
        (
            "2.x stale cache says unsynchronized after a good sync",
            v2(false, validation(&[], &[], &[])),
            None,
        ),
    ];
    for (name, read, expected) in table {
        let drift = Drift::of(&read);
        let Some(expected) = expected else {
            assert_eq!(drift, None, "{name}");
            continue;
        };
        let drift = drift.unwrap_or_else(|| panic!("{name}: no drift"));
        assert_eq!(drift.missing_from_config, expected.missing, "{name}");
        assert_eq!(drift.extra_in_config, expected.extra, "{name}");
        assert_eq!(drift.server_says_unsynced, expected.flag, "{name}");
        assert_eq!(drift.stale_status, expected.stale, "{name}");
    }
}

#[test]
fn short_id_mismatches_are_drift() {
    let drift = Drift::of(&v2(true, validation(&[], &[], &["c"]))).expect("drift");
    assert_eq!(drift.short_id_mismatches, ["c"]);
    assert!(!drift.stale_status, "config-status does not know short_ids");
    assert_eq!(drift.describe(false), "1 short_id mismatch");
    assert_eq!(drift.signature(), "missing:;extra:;short_id:c");
}

#[test]
fn descriptions() {
    let table = [
        (
            v1(true, &["a", "b"], &["x"]),
            false,
            "2 uuids missing from config.json, 1 extra",
        ),
        (
            v1(true, &["a"], &[]),
            true,
            "1 uuid was missing from config.json",
        ),
        (
            v1(true, &["a", "b"], &[]),
            true,
            "2 uuids were missing from config.json",
        ),
        (v1(true, &[], &["x"]), false, "1 extra uuid in config.json"),
        (
            v1(true, &[], &["x", "y"]),
            true,
            "2 extra uuids were in config.json",
        ),
        (
            v1(false, &["a"], &["a"]),
            false,
            "the server reports config.json out of sync",
        ),
    ];
    for (read, past, expected) in table {
        assert_eq!(Drift::of(&read).expect("drift").describe(past), expected);
    }
}

#[test]
fn signatures_ignore_order_and_note_a_bare_flag() {
    let one = Drift::of(&v1(true, &["b", "a"], &["x"])).expect("drift");
    let two = Drift::of(&v1(true, &["a", "b"], &["x"])).expect("drift");
    assert_eq!(one.signature(), two.signature());
    assert_eq!(one.signature(), "missing:a,b;extra:x;short_id:");
    let flag = Drift::of(&v1(false, &["a"], &["a"])).expect("drift");
    assert_eq!(flag.signature(), "missing:;extra:;short_id:;server_flag");
}

#[test]
fn an_empty_key_store_would_empty_config() {
    assert!(
        Drift::of(&v1(false, &[], &["x", "y"]))
            .expect("drift")
            .would_empty_config()
    );
    assert!(
        !Drift::of(&v1(false, &["a"], &["x"]))
            .expect("drift")
            .would_empty_config()
    );
}
