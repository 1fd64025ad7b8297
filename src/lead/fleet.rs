//! Who leads what across the fleet, as `keywarden status` shows it: the agents' rows
//! and which agent holds each server's lock (read from PostgreSQL by
//! `postgres::fleet_view`). Plain data and its text form; it decides nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// One row of `agents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentRow {
    pub name: String,
    pub host: String,
    pub pid: i64,
    /// When its current leadership connection began.
    pub started_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
    /// Renewed within the last 30 s.
    pub live: bool,
}

/// The fleet's leadership at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FleetView {
    pub agents: Vec<AgentRow>,
    /// Server -> the agent holding its lock (servers nobody holds are absent).
    pub leaders: BTreeMap<String, String>,
    /// The agent holding the alert dispatcher's lock.
    pub dispatcher: Option<String>,
}

fn when(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// The text form (pure): the agents, how many servers each leads, the dispatcher, and
/// the configured servers nobody leads.
pub fn render(view: &FleetView, servers: &[String], tz: Tz) -> String {
    let mut out = String::from("agents\n");
    if view.agents.is_empty() {
        out.push_str("  none has registered yet\n");
    }
    for agent in &view.agents {
        let leads = view.leaders.values().filter(|a| **a == agent.name).count();
        let dispatcher = if view.dispatcher.as_deref() == Some(&agent.name) {
            ", alert dispatcher"
        } else {
            ""
        };
        let state = if agent.live { "live" } else { "STALE" };
        let _ = writeln!(
            out,
            "  {:<20} {state:<6} leads {leads} of {} servers{dispatcher} (host {}, pid {}, connected since {}, renewed {})",
            crate::terminal::Shown(&agent.name),
            servers.len(),
            crate::terminal::Shown(&agent.host),
            agent.pid,
            when(agent.started_at, tz),
            when(agent.renewed_at, tz)
        );
    }
    let orphans: Vec<&String> = servers
        .iter()
        .filter(|s| !view.leaders.contains_key(*s))
        .collect();
    if !orphans.is_empty() {
        let names: Vec<&str> = orphans.iter().map(|s| s.as_str()).collect();
        let _ = writeln!(
            out,
            "  LED BY NOBODY   {} servers: {}",
            orphans.len(),
            names.join(", ")
        );
    }
    if view.dispatcher.is_none() {
        out.push_str("  NO AGENT delivers alerts (nobody holds the dispatcher lock)\n");
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_text_names_who_leads_how_much_and_what_nobody_leads() {
        let at = Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap();
        let row = |name: &str, live| AgentRow {
            name: name.into(),
            host: format!("{name}.example"),
            pid: 42,
            started_at: at,
            renewed_at: at,
            live,
        };
        let servers: Vec<String> = ["a", "b", "c"].map(String::from).into();
        let view = FleetView {
            agents: vec![row("kw-fra", true), row("kw-ams", false)],
            leaders: [("a", "kw-fra"), ("b", "kw-fra")]
                .map(|(s, a)| (s.to_string(), a.to_string()))
                .into(),
            dispatcher: Some("kw-fra".into()),
        };
        let text = render(&view, &servers, Tz::UTC);
        assert!(
            text.contains("kw-fra               live   leads 2 of 3 servers, alert dispatcher (host kw-fra.example, pid 42, connected since 2026-12-02 10:00:00 UTC"),
            "{text}"
        );
        assert!(
            text.contains("kw-ams               STALE  leads 0 of 3 servers (host"),
            "{text}"
        );
        assert!(text.contains("LED BY NOBODY   1 servers: c"), "{text}");
        assert!(!text.contains("NO AGENT"));
    }
}
