//! `raw::ALL_KEYS` is the list of every configuration key. These tests tie it to the code
//! (serde's own list of fields of each struct, a file using every key) and to
//! docs/configuration.md, so a field cannot be added without being listed and documented.

use std::collections::BTreeSet;

use keywarden::config::raw::{ALL_KEYS, FREE_FORM_TABLES, RawConfig};
use toml::{Table, Value};

/// A file that sets every key (values need not be semantically valid, only well-typed).
const FULL: &str = r#"
[agent]
state_dir = "/var/lib/keywarden"
timezone = "UTC"
dry_run = false
allow_delete = true
listen = "127.0.0.1:9477"
log_format = "auto"
metrics_per_key = false
max_concurrent_runs = 16
store = "postgres"

[store.postgres]
url_env = "KEYWARDEN_DATABASE_URL"
url_file = "/db-url"
schema = "keywarden"
pool_size = 8
ca_file = "/db-ca.pem"
agent_name = "kw-a"
renew_interval = "10s"

[[servers]]
name = "fra-1"
url = "https://fra-1.example.net/api"
api_key = "k"
api_key_file = "/k"
api_key_env = "K"
timeout = "15s"
action_timeout = "60s"
concurrency = 8
skip_jobs = ["reality"]
counter_resets = "auto"
ca_file = "/ca.pem"
vless_host = "10.0.0.5"
reality_ca_file = "/reality-ca.pem"
dataplane_concurrency = 16
max_response_size = "64 MiB"

[jobs.health]
schedule = "*/30 * * * * *"
failures_before_alert = 3
xray_confirmations = 2
restart_xray = true
[jobs.config_sync]
schedule = "0 */5 * * * *"
auto_sync = true
confirmations = 2
max_syncs_per_hour = 4
verify_reality_after_sync = true
[jobs.reality]
schedule = "0 7 * * * *"
confirmations = 2
auto_fix = true
[jobs.quota]
schedule = "0 */10 * * * *"
[jobs.dataplane]
schedule = "30 */5 * * * *"
max_ports_per_run = 256
handshake_timeout = "5s"

[quotas]
limit = "100 GiB"
period = "monthly"
period_day = 1
warn_at = [80, 95]
on_exceed = "alert"
grace = "24h"
adopt = "baseline"

[[quotas.rules]]
match_name = "vip-*"
match_uuid = "0f8e1c2a-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
match_id = "42"
server = "fra-1"
limit = "1 TiB"
period = "weekly"
period_day = 2
warn_at = [90]
on_exceed = "reset"
grace = "1h"
allow_mass = false

[alerts]
min_severity = "warning"
repeat_interval = "4h"
send_resolved = true
group_wait = "10s"
max_age = "24h"
heartbeat_url = ""

[[alerts.email]]
name = "m"
host = "smtp.example.net"
port = 587
security = "starttls"
username = "u"
password = "p"
password_file = "/p"
password_env = "P"
from = "a@b"
to = ["c@d"]
min_severity = "info"
timeout = "30s"
rate_limit_per_minute = 20

[[alerts.webhook]]
name = "w"
url = "https://x.example/h"
format = "telegram"
chat_id = "1"
secret = "s"
secret_file = "/s"
secret_env = "S"
headers = { X-A = "b" }
min_severity = "info"
timeout = "10s"
rate_limit_per_minute = 20
slack_token = "t"
slack_token_file = "/t"
slack_token_env = "T"
slack_channel = "C1"

[reports]
schedule = "0 0 9 * * Mon"
period = "last-week"
sinks = ["w"]
top_keys = 10

[retention]
audit = "400d"
job_runs = "30d"
findings = "90d"
quota_history = "800d"
schedule = "0 17 4 * * *"
"#;

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Key paths of a parsed file, arrays of tables as `name[]`.
fn collect(table: &Table, prefix: &str, keys: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = join(prefix, key);
        keys.insert(path.clone());
        if FREE_FORM_TABLES.contains(&path.as_str()) {
            continue;
        }
        match value {
            Value::Table(inner) => collect(inner, &path, keys),
            Value::Array(items) => {
                for item in items {
                    if let Value::Table(inner) = item {
                        collect(inner, &format!("{path}[]"), keys);
                    }
                }
            }
            _ => {}
        }
    }
}

#[test]
fn the_full_file_uses_exactly_all_keys_and_parses() {
    let table: Table = toml::from_str(FULL).expect("FULL is TOML");
    let mut used = BTreeSet::new();
    collect(&table, "", &mut used);
    let listed: BTreeSet<String> = ALL_KEYS.iter().map(|k| (*k).to_owned()).collect();
    assert_eq!(used, listed, "FULL and ALL_KEYS disagree");
    toml::from_str::<RawConfig>(FULL).expect("every key is accepted by the raw structs");
}

/// The tables of the schema (as ALL_KEYS patterns) with the path to reach one in FULL.
fn tables() -> Vec<&'static str> {
    let mut tables: Vec<&str> = vec![""];
    for key in ALL_KEYS {
        let array = format!("{key}[]");
        let nested = ALL_KEYS
            .iter()
            .any(|other| other.starts_with(&format!("{key}.")) || other.starts_with(&array));
        if nested {
            tables.push(key);
        }
    }
    tables
}

/// The table in `value` that `pattern` names (first element of arrays of tables).
fn table_at<'v>(value: &'v mut Table, pattern: &str) -> &'v mut Table {
    let mut current = value;
    if pattern.is_empty() {
        return current;
    }
    for part in pattern.split('.') {
        let (name, is_array) = match part.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (part, false),
        };
        let next = current
            .get_mut(name)
            .unwrap_or_else(|| panic!("{name} missing in FULL"));
        current = match next {
            Value::Array(items) if is_array => match items.first_mut() {
                Some(Value::Table(inner)) => inner,
                _ => panic!("{name} is not an array of tables"),
            },
            Value::Table(inner) => {
                assert!(!is_array, "{name} is a table, not an array of tables");
                inner
            }
            _ => panic!("{name} has the wrong shape"),
        };
    }
    current
}

/// The field names serde lists in its unknown-field error: the struct's real fields.
fn serde_fields(message: &str) -> BTreeSet<String> {
    let expected = message
        .split("expected one of ")
        .nth(1)
        .or_else(|| message.split("expected ").nth(1))
        .unwrap_or_else(|| panic!("no field list in {message:?}"));
    // serde writes "one of `a`, `b`, `c`", "`a` or `b`" or "`a`".
    expected
        .replace(" or ", ", ")
        .split(", ")
        .map(|field| field.trim().trim_matches('`').to_owned())
        .collect()
}

#[test]
fn all_keys_matches_the_fields_of_every_raw_struct() {
    let base: Table = toml::from_str(FULL).expect("FULL is TOML");
    for pattern in tables() {
        let array_pattern = format!("{pattern}[]");
        let pattern_of_children = if ALL_KEYS.iter().any(|k| k.starts_with(&array_pattern)) {
            array_pattern
        } else {
            pattern.to_owned()
        };
        let mut table = base.clone();
        table_at(&mut table, &pattern_of_children).insert("zz_not_a_key".into(), Value::Integer(1));
        let text = toml::to_string(&table).expect("serialize");
        let err = toml::from_str::<RawConfig>(&text).expect_err("unknown key must be rejected");
        assert!(
            err.message().contains("unknown field `zz_not_a_key`"),
            "{pattern}: {}",
            err.message()
        );
        let fields = serde_fields(err.message());
        let prefix = if pattern_of_children.is_empty() {
            String::new()
        } else {
            format!("{pattern_of_children}.")
        };
        let listed: BTreeSet<String> = ALL_KEYS
            .iter()
            .filter_map(|key| key.strip_prefix(prefix.as_str()))
            .filter(|rest| !rest.contains(['.', '[']))
            .map(str::to_owned)
            .collect();
        assert_eq!(
            fields, listed,
            "fields of [{pattern_of_children}] vs ALL_KEYS"
        );
    }
}

#[test]
fn docs_describe_every_key() {
    let docs = include_str!("../docs/configuration.md");
    let missing: Vec<&str> = ALL_KEYS
        .iter()
        .copied()
        .filter(|key| !docs.contains(&format!("`{key}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks: {missing:?}"
    );
}
