//! `keywarden usage`: each key's traffic this period, from the ledger in the state store
//! (what the quota job counted; it never calls a server): used, limit, percent, period
//! start, next reset, the rule that applies and the last reset. Sorted by percent, the
//! most used first; human sizes in the table, raw numbers in `--json`.

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{EXIT_OK, EXIT_PROBLEMS};
use crate::config::{AdoptMode, Config};
use crate::quota::{Entry, human_bytes, period, rules};

/// One key, as `--json` prints it (exactly these fields).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    pub server: String,
    pub key_id: String,
    pub uuid: String,
    pub name: String,
    /// Bytes counted against the limit this period (since the last `on_exceed` reset).
    pub used_bytes: u64,
    /// `null`: account only.
    pub limit_bytes: Option<u64>,
    /// Of the limit, two decimals; `null` without a limit.
    pub percent: Option<f64>,
    pub period_start: DateTime<Utc>,
    /// `null` for a lifetime quota (`period = "never"`).
    pub next_reset: Option<DateTime<Utc>>,
    /// "default" or "rule N (name vip-*)".
    pub rule: String,
    /// When keywarden last started a period or allowance for the key; `null`: never.
    pub last_reset: Option<DateTime<Utc>>,
    /// First seen in this period (marked `*` in the table): with `quotas.adopt =
    /// "baseline"` its usage counts from that first reading, with `"count"` its counter
    /// then was counted.
    pub adopted: bool,
}

/// The rows of `entries` (server, ledger entry) under `config`, sorted (pure).
pub fn rows(config: &Config, entries: Vec<(String, Entry)>, now: DateTime<Utc>) -> Vec<UsageRow> {
    let quotas = &config.quotas;
    let mut rows: Vec<UsageRow> = entries
        .into_iter()
        .filter(|(server, _)| config.server(server).is_some())
        .map(|(server, entry)| {
            let rule = rules::matching(quotas, &server, &entry.key_id, &entry.uuid, &entry.name);
            let policy = rule.policy(quotas);
            let percent = policy.limit_bytes.map(|limit| {
                let share = entry.used as f64 * 100.0 / limit.max(1) as f64;
                (share * 100.0).round() / 100.0
            });
            UsageRow {
                key_id: entry.key_id,
                uuid: entry.uuid,
                name: entry.name,
                used_bytes: entry.used,
                limit_bytes: policy.limit_bytes,
                percent,
                period_start: entry.period_start,
                next_reset: period::window(policy, config.agent.timezone, now).next,
                rule: rule.describe(quotas),
                last_reset: entry.last_reset,
                adopted: entry.adopted,
                server,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        let percent = |r: &UsageRow| r.percent.unwrap_or(-1.0);
        percent(b)
            .total_cmp(&percent(a))
            .then(b.used_bytes.cmp(&a.used_bytes))
            .then_with(|| (&a.server, &a.name, &a.uuid).cmp(&(&b.server, &b.name, &b.uuid)))
    });
    rows
}

fn when(at: Option<DateTime<Utc>>, tz: Tz, none: &str) -> String {
    at.map_or(none.to_owned(), |t| {
        t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
    })
}

/// A server's text (names, ids, uuids) in one table cell: at most 40 characters, then
/// escaped for the terminal (an ESC, CR/LF or U+202E in a name stays visible and inert).
fn cell(text: &str) -> String {
    let short: String = text.chars().take(40).collect();
    crate::terminal::escape(&short).into_owned()
}

/// The table (pure).
pub fn render_text(rows: &[UsageRow], tz: Tz, adopt: AdoptMode) -> String {
    if rows.is_empty() {
        return "no traffic recorded yet (the quota job has not run on these servers)\n".into();
    }
    let header = [
        "SERVER",
        "NAME",
        "KEY ID",
        "UUID",
        "USED",
        "LIMIT",
        "%",
        "PERIOD START",
        "NEXT RESET",
        "RULE",
        "LAST RESET",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for row in rows {
        table.push(vec![
            row.server.clone(),
            cell(&row.name),
            cell(&row.key_id),
            cell(&row.uuid),
            format!(
                "{}{}",
                human_bytes(row.used_bytes),
                if row.adopted { " *" } else { "" }
            ),
            row.limit_bytes.map_or("-".into(), human_bytes),
            row.percent.map_or("-".into(), |p| format!("{p:.1}")),
            when(Some(row.period_start), tz, "-"),
            when(row.next_reset, tz, "never"),
            cell(&row.rule),
            when(row.last_reset, tz, "never"),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &table {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(text, w)| format!("{text:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    if rows.iter().any(|r| r.adopted) {
        let how = match adopt {
            AdoptMode::Baseline => {
                "its usage counts from that first reading (quotas.adopt = \"baseline\")"
            }
            AdoptMode::Count => {
                "its counter then was counted as this period's usage (quotas.adopt = \"count\")"
            }
        };
        let _ = writeln!(out, "\n* adopted: first seen in this period; {how}");
    }
    let _ = writeln!(out, "times in {tz}");
    out
}

pub fn run(path: &Path, server: Option<&str>, json: bool) -> anyhow::Result<u8> {
    crate::logging::init(crate::logging::LogFormat::Auto, "warn");
    let config = match crate::app::load_config(path) {
        Ok(loaded) => loaded.config,
        Err(report) => {
            eprint!("{report}");
            return Ok(EXIT_PROBLEMS);
        }
    };
    if let Some(name) = server
        && config.server(name).is_none()
    {
        let names: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "keywarden: no server named {name:?} in the configuration (configured: {})",
            names.join(", ")
        );
        return Ok(EXIT_PROBLEMS);
    }
    let store = crate::app::open_store_for_reading(&config)?;
    let rows = rows(&config, store.quota_usage(server)?, Utc::now());
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(&rows)?)?;
    } else {
        crate::output::print(&render_text(
            &rows,
            config.agent.timezone,
            config.quotas.adopt,
        ))?;
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::quota::ledger::{KeyInfo, Reading, adopt};

    fn config() -> Config {
        let text = "[[servers]]\nname = \"fra-1\"\nurl = \"http://127.0.0.1:1/api\"\napi_key = \"k\"\n\
                    [quotas]\nlimit = \"100 MiB\"\n[[quotas.rules]]\nmatch_name = \"vip-*\"\nlimit = \"unlimited\"\n";
        crate::config::from_str_with_env(text, Path::new("agent.toml"), &|_| None)
            .expect("valid")
            .config
    }

    fn entry(name: &str, used: u64) -> (String, Entry) {
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        let key = KeyInfo {
            id: name,
            uuid: &format!("uuid-{name}"),
            name,
        };
        let mut entry = adopt(
            &key,
            Reading::Counter {
                bytes: used,
                connections: None,
            },
            at,
            at,
        )
        .expect("adopted");
        entry.adopted = name == "b";
        ("fra-1".to_string(), entry)
    }

    #[test]
    fn rows_sort_by_percent_and_name_their_rule() {
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();
        let entries = vec![
            entry("a", 10 << 20),
            entry("vip-x", 900 << 20),
            entry("b", 95 << 20),
            ("gone-server".to_string(), entry("c", 1).1),
        ];
        let rows = rows(&config(), entries, now);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["b", "a", "vip-x"],
            "by percent, no limit last; unknown servers left out"
        );
        assert_eq!(rows[0].percent, Some(95.0));
        assert_eq!(rows[2].percent, None);
        assert_eq!(
            (rows[0].rule.as_str(), rows[2].rule.as_str()),
            ("default", "rule 1 (name vip-*)")
        );
        assert_eq!(
            rows[0].next_reset,
            Some(Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap())
        );
        let json = serde_json::to_value(&rows[0]).unwrap();
        let fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields.len(), 12, "{fields:?}");
        assert_eq!(json["adopted"], true);
        let text = render_text(&rows, Tz::UTC, AdoptMode::Baseline);
        assert!(text.contains("95.0 MiB *"), "{text}");
        assert!(
            text.contains("100.0 MiB") && text.contains("2026-12-01 00:00"),
            "{text}"
        );
        assert!(
            text.lines().next().unwrap().starts_with("SERVER  NAME"),
            "{text}"
        );
    }
}
