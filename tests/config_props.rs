//! Property tests of the configuration loader and its parsers (cron schedules, sizes,
//! durations): whatever an operator (or a broken editor) writes, loading never panics and
//! every refusal says something; what parses behaves as documented.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use keywarden::config::raw::{ALL_KEYS, NumOrStr};
use keywarden::config::units::{parse_duration, parse_size};
use keywarden::config::{self, Schedule};
use proptest::collection::vec;
use proptest::prelude::*;
use toml::{Table, Value};

fn env(name: &str) -> Option<String> {
    (name.ends_with("_KEY") || name.contains("SECRET") || name.contains("PASSWORD"))
        .then(|| "s3cret".to_owned())
}

fn load(text: &str) -> Result<(), Vec<String>> {
    config::from_str_with_env(text, Path::new("/nonexistent/keywarden/agent.toml"), &env)
        .map(|_| ())
        .map_err(|errors| {
            errors
                .problems
                .iter()
                .map(|problem| problem.to_string())
                .collect()
        })
}

/// Every refusal names at least one problem, and no problem is blank.
fn check_refusal(result: Result<(), Vec<String>>) -> Result<(), TestCaseError> {
    if let Err(problems) = result {
        prop_assert!(!problems.is_empty(), "refused without a reason");
        for problem in problems {
            prop_assert!(!problem.trim().is_empty(), "a blank problem");
        }
    }
    Ok(())
}

/// Keys that hold a value (not only other keys).
fn leaf_keys() -> Vec<&'static str> {
    ALL_KEYS
        .iter()
        .copied()
        .filter(|key| {
            let prefix = format!("{key}.");
            let array = format!("{key}[].");
            !ALL_KEYS
                .iter()
                .any(|other| other.starts_with(&prefix) || other.starts_with(&array))
        })
        .collect()
}

/// Values of every TOML type, plausible ones more often than not.
fn toml_value() -> impl Strategy<Value = Value> {
    let plausible = prop::sample::select(vec![
        "30s",
        "15m",
        "4h",
        "0s",
        "1 GiB",
        "500MB",
        "-1",
        "",
        "*/30 * * * * *",
        "0 0 3 * * *",
        "*/5 * * * *",
        "UTC",
        "Europe/Berlin",
        "fra-1",
        "https://fra-1.example.net/api",
        "127.0.0.1:9477",
        "reset",
        "delete",
        "alert",
        "monthly",
        "daily",
        "weekly",
        "json",
        "auto",
        "FRA1_API_KEY",
        "ops@example.net",
        "smtp.example.net",
        "starttls",
        "none",
        "health",
        "quota",
        "critical",
        "warning",
        "info",
    ]);
    let scalar = prop_oneof![
        3 => plausible.prop_map(|s| Value::String(s.to_owned())),
        1 => "\\PC{0,16}".prop_map(Value::String),
        2 => any::<i64>().prop_map(Value::Integer),
        1 => (0i64..100).prop_map(Value::Integer),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::Float),
        1 => any::<bool>().prop_map(Value::Boolean),
    ];
    prop_oneof![
        4 => scalar.clone(),
        1 => vec(scalar, 0..4).prop_map(Value::Array),
    ]
}

/// Put `value` at `path` ("servers[].name", "quotas.rules[].limit") in `root`.
fn insert(root: &mut Table, path: &str, value: Value) {
    let mut table = root;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let (name, array) = match part.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (*part, false),
        };
        if last && !array {
            table.insert(name.to_owned(), value);
            return;
        }
        let slot = table.entry(name.to_owned()).or_insert_with(|| match array {
            true => Value::Array(vec![Value::Table(Table::new())]),
            false => Value::Table(Table::new()),
        });
        table = match slot {
            Value::Table(inner) => inner,
            Value::Array(items) => match items.first_mut() {
                Some(Value::Table(inner)) => inner,
                _ => return,
            },
            _ => return,
        };
        if last {
            return;
        }
    }
}

fn utc(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0).single().expect("valid")
}

/// One cron field: the forms operators write, in and out of range.
fn cron_field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        Just("?".to_owned()),
        (0u32..70).prop_map(|n| n.to_string()),
        (1u32..70).prop_map(|n| format!("*/{n}")),
        (0u32..40, 0u32..40).prop_map(|(a, b)| format!("{a}-{b}")),
        (0u32..40, 0u32..40).prop_map(|(a, b)| format!("{a},{b}")),
        (0u32..40, 1u32..20).prop_map(|(a, b)| format!("{a}/{b}")),
        prop::sample::select(vec![
            "MON-FRI", "SUN", "JAN", "L", "5L", "MON#2", "W", "15W"
        ])
        .prop_map(str::to_owned),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        check_refusal(load(&text))?;
    }

    #[test]
    fn toml_ish_text_never_panics(text in "[\\[\\]a-z_.=\"0-9 *#\n,{}-]{0,300}") {
        check_refusal(load(&text))?;
    }

    #[test]
    fn every_key_with_arbitrary_values_never_panics(
        picks in vec((any::<prop::sample::Index>(), toml_value()), 0..24),
    ) {
        let keys = leaf_keys();
        let mut root = Table::new();
        for (index, value) in picks {
            insert(&mut root, keys[index.index(keys.len())], value);
        }
        let text = toml::to_string(&root).expect("a table serializes");
        check_refusal(load(&text))?;
    }

    #[test]
    fn cron_parsing_never_panics_and_what_parses_runs_forward(
        fields in vec(cron_field(), 5..=7),
        zone in prop::sample::select(vec![
            chrono_tz::Tz::UTC, chrono_tz::Europe::Berlin, chrono_tz::America::New_York,
            chrono_tz::Australia::Lord_Howe, chrono_tz::Asia::Kathmandu,
        ]),
        after in 1_700_000_000i64..2_000_000_000,
    ) {
        let expr = fields.join(" ");
        if let Ok(schedule) = Schedule::parse(&expr) {
            let start = utc(after);
            let runs = schedule.next_runs(zone, start, 3);
            for pair in runs.windows(2) {
                prop_assert!(pair[0] < pair[1], "{expr}: {runs:?}");
            }
            if let Some(first) = runs.first() {
                prop_assert!(first.with_timezone(&Utc) > start, "{expr}: {first} not after {start}");
            }
        }
    }

    #[test]
    fn cron_garbage_never_panics(expr in "\\PC{0,60}") {
        if let Err(message) = Schedule::parse(&expr) {
            prop_assert!(message.contains("6 fields") || message.contains("never fires"), "{message}");
        }
    }

    #[test]
    fn sizes_never_panic(text in "\\PC{0,30}", int in any::<i64>(), float in any::<f64>()) {
        let _ = parse_size(&NumOrStr::Str(text));
        prop_assert_eq!(parse_size(&NumOrStr::Int(int)).is_ok(), int >= 0);
        prop_assert!(parse_size(&NumOrStr::Float(float)).is_err());
    }

    #[test]
    fn sizes_with_decimals_round_to_whole_bytes(
        whole in 0u64..100_000,
        fraction in "[0-9]{1,3}",
        unit in prop::sample::select(vec![("KB", 1_000u64), ("MiB", 1 << 20), ("gb", 1_000_000_000), ("TiB", 1 << 40)]),
        space in prop::sample::select(vec!["", " ", "  "]),
    ) {
        let (name, multiplier) = unit;
        let text = format!("{whole}.{fraction}{space}{name}");
        let scale = 10u128.pow(fraction.len() as u32);
        let exact = (u128::from(whole) * scale + fraction.parse::<u128>().unwrap()) * u128::from(multiplier);
        let want = (exact + scale / 2) / scale;
        prop_assert_eq!(parse_size(&NumOrStr::Str(text.clone())), Ok(want as u64), "{}", text);
    }

    #[test]
    fn durations_never_panic_and_bare_numbers_ask_for_a_unit(text in "\\PC{0,30}", n in 0u64..1_000_000) {
        let _ = parse_duration(&NumOrStr::Str(text));
        let bare = parse_duration(&NumOrStr::Str(n.to_string())).unwrap_err();
        prop_assert!(bare.contains(&format!("\"{n}s\"")), "{bare}");
        prop_assert!(parse_duration(&NumOrStr::Int(n as i64)).is_err());
    }

    #[test]
    fn durations_with_units_are_exact(n in 0u64..100_000, unit in prop::sample::select(vec![("ms", 0u64), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)])) {
        let (name, seconds) = unit;
        let want = match name {
            "ms" => Duration::from_millis(n),
            _ => Duration::from_secs(n * seconds),
        };
        prop_assert_eq!(parse_duration(&NumOrStr::Str(format!("{n}{name}"))), Ok(want));
    }
}
