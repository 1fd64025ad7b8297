//! The report in words: a plain-text version (email's text part, files, chats) and an
//! HTML version that shows the charts inline by Content-ID (`cid:traffic.png`). Pure.
//! Key and server names come from servers: everything is escaped in HTML.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::chart::Chart;
use super::model::Report;
use crate::quota::human_bytes;

/// The subject line / headline.
pub fn subject(report: &Report) -> String {
    let partial = if report.partial { " (so far)" } else { "" };
    format!("[keywarden] Usage report, {}{partial}", report.period.title)
}

/// `+12.5%`, `-3.0%`, or `new` when the previous period had nothing.
pub fn change(change: Option<f64>) -> String {
    match change {
        Some(c) => format!("{c:+.1}%"),
        None => "n/a".to_string(),
    }
}

fn local(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

/// `3 h 20 min`, `2 d 4 h`.
pub fn duration(seconds: i64) -> String {
    let (d, h, m) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
    );
    match (d, h) {
        (0, 0) => format!("{m} min"),
        (0, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

fn percent(p: Option<f64>) -> String {
    p.map_or("no limit".to_string(), |p| format!("{p:.1}%"))
}

/// The headline numbers in a few lines (chat captions, Slack's first block).
pub fn summary(report: &Report) -> String {
    let t = &report.traffic;
    let mut out = format!(
        "Traffic: {} ({} vs {})",
        human_bytes(t.total_bytes),
        change(t.change_percent),
        report.previous.title
    );
    for s in &t.servers {
        let _ = write!(
            out,
            "\n• {}: {} ({})",
            s.server,
            human_bytes(s.total_bytes),
            change(s.change_percent)
        );
    }
    for a in &report.availability {
        let _ = write!(
            out,
            "\n• {} {}: {}",
            a.server,
            a.title,
            a.percent.map_or("no checks".into(), |p| format!("{p:.2}%"))
        );
    }
    let over = report.near_quota.iter().filter(|q| q.over).count();
    let _ = write!(
        out,
        "\nNear or over quota: {} ({} over); findings in the period: {}",
        report.near_quota.len() + report.near_quota_more,
        over,
        report.findings.len()
    );
    out
}

/// The plain-text report.
pub fn text(report: &Report, tz: Tz) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        subject(report).trim_start_matches("[keywarden] ")
    );
    let _ = writeln!(
        out,
        "{} to {} ({}), compared with {}.",
        report.period.first_day, report.period.last_day, report.timezone, report.previous.title
    );
    if report.partial {
        let _ = writeln!(out, "The period has not ended: figures so far.");
    }
    let t = &report.traffic;
    let _ = writeln!(out, "\nTRAFFIC");
    let _ = writeln!(
        out,
        "  all servers  {}  ({}, before: {})",
        human_bytes(t.total_bytes),
        change(t.change_percent),
        human_bytes(t.previous_total_bytes)
    );
    for s in &t.servers {
        let _ = writeln!(
            out,
            "  {}  {}  ({}, before: {})",
            s.server,
            human_bytes(s.total_bytes),
            change(s.change_percent),
            human_bytes(s.previous_total_bytes)
        );
        let days: Vec<String> = s
            .daily
            .iter()
            .map(|d| format!("{} {}", d.day.format("%a %-d"), human_bytes(d.bytes)))
            .collect();
        let _ = writeln!(out, "    per day: {}", days.join(", "));
    }
    let _ = writeln!(out, "\nTOP KEYS");
    if report.top_keys.is_empty() {
        let _ = writeln!(out, "  no traffic counted in this period");
    }
    for (i, k) in report.top_keys.iter().enumerate() {
        let quota = match (k.quota_used_bytes, k.quota_limit_bytes) {
            (Some(used), Some(limit)) => format!(
                "quota {} of {} ({})",
                human_bytes(used),
                human_bytes(limit),
                percent(k.quota_percent)
            ),
            _ => "no limit".to_string(),
        };
        let _ = writeln!(
            out,
            "  {:>2}. {} / {}  {}  {}",
            i + 1,
            k.server,
            k.name,
            human_bytes(k.period_bytes),
            quota
        );
    }
    let _ = writeln!(out, "\nNEAR OR OVER QUOTA (now)");
    if report.near_quota.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for q in &report.near_quota {
        let _ = writeln!(
            out,
            "  {} / {}  {} of {} ({:.1}%){}",
            q.server,
            q.name,
            human_bytes(q.used_bytes),
            human_bytes(q.limit_bytes),
            q.percent,
            if q.over { "  OVER" } else { "" }
        );
    }
    if report.near_quota_more > 0 {
        let _ = writeln!(out, "  and {} more", report.near_quota_more);
    }
    let _ = writeln!(out, "\nACTIONS TAKEN");
    if report.actions.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for a in &report.actions {
        let _ = writeln!(
            out,
            "  {}  {} {}: {}",
            a.server,
            action_words(&a.action),
            a.result,
            a.count
        );
    }
    let _ = writeln!(out, "\nFINDINGS");
    if report.findings.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for f in &report.findings {
        let _ = writeln!(
            out,
            "  {} {} {}: {}",
            f.severity.to_uppercase(),
            f.server,
            f.kind,
            f.summary
        );
        let _ = writeln!(out, "    {}", finding_when(f, tz));
    }
    let _ = writeln!(out, "\nAVAILABILITY (share of checks that found it up)");
    if report.availability.is_empty() {
        let _ = writeln!(out, "  no checks recorded in this period");
    }
    for a in &report.availability {
        let _ = writeln!(
            out,
            "  {} {}: {} ({} of {} checks)",
            a.server,
            a.title,
            a.percent.map_or("n/a".into(), |p| format!("{p:.2}%")),
            a.up,
            a.checks
        );
    }
    let _ = writeln!(
        out,
        "\nMade by keywarden at {} ({}).",
        local(report.generated_at, tz),
        report.timezone
    );
    out
}

/// `quota_reset` -> `quota reset`; a sync also restarts Xray.
pub fn action_words(action: &str) -> String {
    match action {
        "sync" => "sync (restarts Xray)".to_string(),
        "xray_restart" => "restart of a stopped Xray".to_string(),
        "reality_fix" => "fix-reality-keys (restarts Xray)".to_string(),
        other => other.replace('_', " "),
    }
}

fn finding_when(f: &super::model::FindingLine, tz: Tz) -> String {
    let raised = if f.raised_in_period {
        format!("raised {}", local(f.first_seen, tz))
    } else {
        format!("open since {}", local(f.first_seen, tz))
    };
    match (f.resolved_in_period, f.resolved_at) {
        (true, Some(at)) => format!(
            "{raised}, resolved {} after {}",
            local(at, tz),
            duration(f.open_seconds)
        ),
        _ => format!(
            "{raised}, still open at the end ({})",
            duration(f.open_seconds)
        ),
    }
}

/// `&`, `<`, `>`, `"` as entities.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    out.push_str("<table cellpadding=\"4\" style=\"border-collapse:collapse\"><tr>");
    for h in header {
        let _ = write!(out, "<th align=\"left\">{}</th>", escape(h));
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(
                out,
                "<td style=\"border-top:1px solid #ddd\">{}</td>",
                escape(cell)
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>\n");
}

/// The HTML report; `charts` are referenced as `cid:<name>`.
pub fn html(report: &Report, tz: Tz, charts: &[Chart]) -> String {
    let mut out = String::new();
    let title = subject(report);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body style=\"font-family:sans-serif\">\n<h2>{}</h2>\n<p>{} to {} ({}), compared with {}.</p>\n",
        escape(&title),
        escape(title.trim_start_matches("[keywarden] ")),
        report.period.first_day,
        report.period.last_day,
        escape(&report.timezone),
        escape(&report.previous.title)
    );
    let t = &report.traffic;
    let _ = write!(
        out,
        "<h3>Traffic</h3>\n<p>All servers: <b>{}</b> ({})</p>\n",
        human_bytes(t.total_bytes),
        escape(&change(t.change_percent))
    );
    let rows: Vec<Vec<String>> = t
        .servers
        .iter()
        .map(|s| {
            vec![
                s.server.clone(),
                human_bytes(s.total_bytes),
                human_bytes(s.previous_total_bytes),
                change(s.change_percent),
            ]
        })
        .collect();
    table(&mut out, &["server", "traffic", "before", "change"], &rows);
    for chart in charts {
        let _ = writeln!(
            out,
            "<p><img src=\"cid:{}\" alt=\"{}\" width=\"{}\"></p>",
            chart.name,
            escape(&chart.title),
            super::chart::WIDTH
        );
    }
    out.push_str("<h3>Top keys</h3>\n");
    let rows: Vec<Vec<String>> = report
        .top_keys
        .iter()
        .map(|k| {
            vec![
                k.server.clone(),
                k.name.clone(),
                human_bytes(k.period_bytes),
                percent(k.quota_percent),
            ]
        })
        .collect();
    table(&mut out, &["server", "key", "traffic", "quota used"], &rows);
    out.push_str("<h3>Near or over quota</h3>\n");
    let rows: Vec<Vec<String>> = report
        .near_quota
        .iter()
        .map(|q| {
            vec![
                q.server.clone(),
                q.name.clone(),
                format!(
                    "{} of {}",
                    human_bytes(q.used_bytes),
                    human_bytes(q.limit_bytes)
                ),
                format!("{:.1}%{}", q.percent, if q.over { " over" } else { "" }),
            ]
        })
        .collect();
    table(&mut out, &["server", "key", "used", "share"], &rows);
    out.push_str("<h3>Actions taken</h3>\n");
    let rows: Vec<Vec<String>> = report
        .actions
        .iter()
        .map(|a| {
            vec![
                a.server.clone(),
                action_words(&a.action),
                a.result.clone(),
                a.count.to_string(),
            ]
        })
        .collect();
    table(&mut out, &["server", "action", "result", "count"], &rows);
    out.push_str("<h3>Findings</h3>\n");
    let rows: Vec<Vec<String>> = report
        .findings
        .iter()
        .map(|f| {
            vec![
                f.severity.clone(),
                f.server.clone(),
                f.summary.clone(),
                finding_when(f, tz),
            ]
        })
        .collect();
    table(&mut out, &["severity", "server", "finding", "when"], &rows);
    out.push_str("<h3>Availability</h3>\n");
    let rows: Vec<Vec<String>> = report
        .availability
        .iter()
        .map(|a| {
            vec![
                a.server.clone(),
                a.title.clone(),
                a.percent.map_or("n/a".into(), |p| format!("{p:.2}%")),
                format!("{} of {}", a.up, a.checks),
            ]
        })
        .collect();
    table(&mut out, &["server", "series", "up", "checks"], &rows);
    let _ = write!(
        out,
        "<p style=\"color:#777\">Made by keywarden at {} ({}).</p>\n</body></html>\n",
        local(report.generated_at, tz),
        escape(&report.timezone)
    );
    out
}
