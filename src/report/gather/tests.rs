//! Assembly from fixed store rows: traffic per day and change, top keys with quota,
//! near-quota keys, action counts, findings with durations, availability per day.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

use super::*;
use crate::quota::ledger::{KeyInfo, Reading, adopt};
use crate::report::period::ReportPeriod;
use crate::store::AvailabilitySeries;

const GIB: u64 = 1 << 30;

fn config() -> Config {
    let text = r#"
[[servers]]
name = "fra-1"
url = "http://127.0.0.1:1/api"
api_key = "k"
[[servers]]
name = "ams-2"
url = "http://127.0.0.1:2/api"
api_key = "k"
[quotas]
limit = "100 GiB"
warn_at = [80]
[reports]
top_keys = 2
"#;
    crate::config::from_str_with_env(text, std::path::Path::new("/x/agent.toml"), &|_| None)
        .expect("valid")
        .config
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

fn utc(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap()
}

fn usage(server: &str, d: u32, uuid: &str, bytes: u64) -> DailyUsageRow {
    DailyUsageRow {
        server: server.into(),
        day: day(d),
        uuid: uuid.into(),
        key_id: format!("id-{uuid}"),
        name: format!("key-{uuid}"),
        bytes,
    }
}

fn entry(uuid: &str, used: u64) -> Entry {
    let (id, name) = (format!("id-{uuid}"), format!("key-{uuid}"));
    let info = KeyInfo {
        id: &id,
        uuid,
        name: &name,
    };
    let reading = Reading::Counter {
        bytes: used,
        connections: None,
    };
    adopt(&info, reading, utc(1, 0), utc(1, 0)).unwrap()
}

fn finding(kind: &str, first: DateTime<Utc>, resolved: Option<DateTime<Utc>>) -> StoredFinding {
    StoredFinding {
        server: "fra-1".into(),
        job: "health".into(),
        kind: kind.into(),
        subject: String::new(),
        severity: "critical".into(),
        summary: format!("{kind} happened"),
        details: String::new(),
        first_seen: first,
        last_seen: first,
        resolved_at: resolved,
    }
}

fn gathered() -> Gathered {
    Gathered {
        daily: vec![
            // previous week (16..=22): 10 GiB on fra-1
            usage("fra-1", 18, "a", 10 * GIB),
            // this week (23..=29)
            usage("fra-1", 23, "a", 5 * GIB),
            usage("fra-1", 25, "a", 10 * GIB),
            usage("fra-1", 25, "b", 2 * GIB),
            usage("ams-2", 29, "c", 3 * GIB),
            usage("ams-2", 29, "d", GIB),
        ],
        ledger: vec![
            ("fra-1".into(), entry("a", 90 * GIB)),
            ("fra-1".into(), entry("b", 10 * GIB)),
            ("ams-2".into(), entry("c", 120 * GIB)),
        ],
        audit: vec![
            AuditEntry {
                at: utc(24, 3),
                server: "fra-1".into(),
                action: "sync".into(),
                target: "config.json".into(),
                result: "started".into(),
                detail: String::new(),
            },
            AuditEntry {
                at: utc(24, 3),
                server: "fra-1".into(),
                action: "sync".into(),
                target: "config.json".into(),
                result: "ok".into(),
                detail: String::new(),
            },
        ],
        findings: vec![
            finding("server_unreachable", utc(24, 10), Some(utc(24, 12))),
            finding("config_drift_persists", utc(20, 0), None),
        ],
        availability: vec![
            AvailabilityRow {
                server: "fra-1".into(),
                series: AvailabilitySeries::Api,
                hour: utc(24, 10),
                checks: 120,
                up: 60,
            },
            AvailabilityRow {
                server: "fra-1".into(),
                series: AvailabilitySeries::Api,
                hour: utc(25, 10),
                checks: 120,
                up: 120,
            },
        ],
    }
}

#[test]
fn a_week_from_fixed_rows() {
    let config = config();
    let week = ReportPeriod::week(day(23));
    let now = utc(30, 9);
    let report = assemble(&config, &week, &gathered(), now);
    assert!(!report.partial);

    let fra = &report.traffic.servers[0];
    assert_eq!(fra.server, "fra-1", "configured order");
    assert_eq!(fra.total_bytes, 17 * GIB);
    assert_eq!(fra.previous_total_bytes, 10 * GIB);
    assert_eq!(fra.change_percent, Some(70.0));
    assert_eq!(fra.daily.len(), 7);
    assert_eq!(fra.daily[2].bytes, 12 * GIB);
    assert_eq!(fra.daily[1].bytes, 0);
    let ams = &report.traffic.servers[1];
    assert_eq!((ams.total_bytes, ams.change_percent), (4 * GIB, None));
    assert_eq!(report.traffic.total_bytes, 21 * GIB);

    let top: Vec<(&str, u64, Option<f64>)> = report
        .top_keys
        .iter()
        .map(|k| (k.uuid.as_str(), k.period_bytes, k.quota_percent))
        .collect();
    assert_eq!(
        top,
        vec![("a", 15 * GIB, Some(90.0)), ("c", 3 * GIB, Some(120.0))]
    );

    let near: Vec<(&str, bool)> = report
        .near_quota
        .iter()
        .map(|q| (q.uuid.as_str(), q.over))
        .collect();
    assert_eq!(near, vec![("c", true), ("a", false)], "b is at 10%");

    assert_eq!(
        report.actions.len(),
        1,
        "the 'started' intent is not an action"
    );
    assert_eq!(
        (report.actions[0].result.as_str(), report.actions[0].count),
        ("ok", 1)
    );

    let unreachable = &report.findings[1];
    assert_eq!(unreachable.kind, "server_unreachable");
    assert!(unreachable.raised_in_period && unreachable.resolved_in_period);
    assert_eq!(unreachable.open_seconds, 2 * 3600);
    let drift = &report.findings[0];
    assert!(!drift.raised_in_period && !drift.resolved_in_period);
    assert_eq!(
        drift.open_seconds,
        (week.end(Tz::UTC) - utc(20, 0)).num_seconds(),
        "open until the period's end"
    );

    assert_eq!(report.availability.len(), 1);
    let api = &report.availability[0];
    assert_eq!((api.checks, api.up, api.percent), (240, 180, Some(75.0)));
    assert_eq!(api.daily[1].percent, Some(50.0));
    assert_eq!(api.daily[0].percent, None, "no checks on Monday");
}

#[test]
fn charts_render_as_pngs_with_pixels_drawn() {
    let config = config();
    let report = assemble(
        &config,
        &ReportPeriod::week(day(23)),
        &gathered(),
        utc(30, 9),
    );
    let charts = crate::report::chart::all(&report).expect("charts");
    assert_eq!(charts.len(), 2);
    for chart in charts {
        let decoder = png::Decoder::new(std::io::Cursor::new(&chart.png));
        let mut reader = decoder.read_info().expect("a PNG");
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).expect("a frame");
        assert_eq!(
            (info.width, info.height),
            (crate::report::chart::WIDTH, crate::report::chart::HEIGHT)
        );
        let pixels = &pixels[..info.buffer_size()];
        let not_white = pixels.chunks(3).filter(|p| p != &[255, 255, 255]).count();
        let colored = pixels
            .chunks(3)
            .filter(|p| p.iter().max().unwrap() - p.iter().min().unwrap() > 60)
            .count();
        assert!(
            not_white > 5_000,
            "{}: {not_white} drawn pixels",
            chart.name
        );
        assert!(
            colored > 300,
            "{}: {colored} coloured pixels (the series)",
            chart.name
        );
    }
    let _ = Duration::zero();
}

#[test]
fn html_escapes_names_and_references_every_chart() {
    let config = config();
    let mut data = gathered();
    data.daily.push(usage("fra-1", 26, "<script>", GIB));
    let report = assemble(&config, &ReportPeriod::week(day(23)), &data, utc(30, 9));
    let charts = crate::report::chart::all(&report).expect("charts");
    let html = crate::report::render::html(&report, Tz::UTC, &charts);
    assert!(html.contains("cid:traffic.png") && html.contains("cid:availability.png"));
    assert!(!html.contains("<script>"), "names are escaped");
    let text = crate::report::render::text(&report, Tz::UTC);
    assert!(text.contains("fra-1  18.0 GiB  (+80.0%"), "{text}");
    assert!(
        text.contains("resolved 2026-11-24 12:00 after 2 h 0 min"),
        "{text}"
    );
}

#[test]
#[ignore = "writes the charts to $KEYWARDEN_CHART_DIR for a look"]
fn write_charts_for_a_look() {
    let dir = std::env::var("KEYWARDEN_CHART_DIR").expect("KEYWARDEN_CHART_DIR");
    let report = assemble(
        &config(),
        &ReportPeriod::week(day(23)),
        &gathered(),
        utc(30, 9),
    );
    let rendered = crate::report::render(report, Tz::UTC).expect("render");
    rendered
        .write_to(std::path::Path::new(&dir))
        .expect("write");
}
