//! The words of the dataplane job: findings (summary; what was seen, what keywarden did,
//! what to do next) and plan lines. Pure code.

use std::collections::HashMap;

use super::plan::{Assessment, Outage};
use crate::config::{JobKind, Severity};
use crate::finding::{Finding, FindingKind};
use crate::jobs::config_sync::report::one_line;
use crate::store::{PortRecord, PortState};

/// The subject of every dataplane finding: one fingerprint per (server, kind).
pub const SUBJECT: &str = "vless";
/// Ports named one by one in a finding at most; the rest are counted.
const NAMED: usize = 10;

fn finding(
    server: &str,
    kind: FindingKind,
    severity: Severity,
    summary: String,
    [seen, done, next]: [String; 3],
) -> Finding {
    Finding {
        server: server.to_string(),
        job: JobKind::Dataplane,
        kind,
        subject: SUBJECT.to_string(),
        severity,
        summary: one_line(&summary),
        details: format!("Seen: {seen}\nDone: {done}\nNext: {next}"),
    }
}

/// One line per port: endpoint, the keys behind it, what the probe saw.
fn port_lines(records: &[PortRecord], keys: &HashMap<String, Vec<String>>) -> String {
    let mut lines: Vec<String> = records
        .iter()
        .take(NAMED)
        .map(|r| {
            let names = keys
                .get(&r.endpoint)
                .map(|k| k.join(", "))
                .unwrap_or_default();
            let state = match r.state {
                PortState::Open => "open",
                PortState::Closed => "closed",
                PortState::TlsFailed => "TLS failed",
                PortState::CertInvalid => "wrong certificate",
            };
            format!(
                "  {} ({state}; keys: {names}): {}",
                r.endpoint,
                one_line(&r.detail)
            )
        })
        .collect();
    if records.len() > NAMED {
        lines.push(format!("  ... and {} more", records.len() - NAMED));
    }
    lines.join("\n")
}

fn endpoints(records: &[PortRecord]) -> String {
    let mut named: Vec<&str> = records
        .iter()
        .take(3)
        .map(|r| r.endpoint.as_str())
        .collect();
    if records.len() > 3 {
        named.push("...");
    }
    named.join(", ")
}

/// The findings of an assessment.
pub fn findings(
    server: &str,
    assessment: &Assessment,
    probed: &[PortRecord],
    keys: &HashMap<String, Vec<String>>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if assessment.outage == Outage::AllClosed {
        out.push(finding(
            server,
            FindingKind::VlessPortsClosed,
            Severity::Critical,
            format!("{server}: no VLESS port accepts connections ({} probed): nobody can connect", probed.len()),
            [
                format!("every VLESS port probed from outside refused the connection or did not answer:\n{}", port_lines(probed, keys)),
                "nothing: keywarden cannot open ports. On 2.x servers the health job reads Xray's own state and restarts it when it is stopped.".into(),
                "check that Xray runs (systemctl status xray, journalctl -u xray), the firewall, and that the host and ports in the keys' links are the server's (set vless_host if keywarden must use another address).".into(),
            ],
        ));
    }
    if !assessment.closed.is_empty() {
        let n = assessment.closed.len();
        out.push(finding(
            server,
            FindingKind::VlessPortUnreachable,
            Severity::Warning,
            format!("{server}: {n} VLESS port(s) refuse connections: {}", endpoints(&assessment.closed)),
            [
                format!("these ports refused the connection or did not answer, while others accept:\n{}", port_lines(&assessment.closed, keys)),
                "nothing: the users of these keys cannot connect.".into(),
                "check the firewall and that Xray has an inbound on each of these ports (a sync recreates missing inbounds: see config_drift).".into(),
            ],
        ));
    }
    if !assessment.broken.is_empty() {
        let n = assessment.broken.len();
        out.push(finding(
            server,
            FindingKind::RealityCamouflageBroken,
            Severity::Critical,
            format!("{server}: {n} VLESS port(s) fail the TLS check: active probing can tell this is not the site it pretends to be"),
            [
                format!("a TLS 1.3 handshake with the inbound's server name did not end with a certificate valid for that name:\n{}", port_lines(&assessment.broken, keys)),
                "nothing: censors' active probes see the same; the server may be blocked soon.".into(),
                "check the inbound's dest and serverNames (keywarden probe shows them per port), that dest is reachable from the server and serves TLS 1.3 for those names, and that nothing else answers on the port.".into(),
            ],
        ));
    }
    out
}

/// The plan line of a run.
pub fn summary_line(server: &str, assessment: &Assessment, total: usize) -> String {
    let of = if total > assessment.probed {
        format!(" (of {total}; the rest in the next runs)")
    } else {
        String::new()
    };
    match &assessment.outage {
        Outage::None if assessment.probed == 0 => format!("{server}: no VLESS link to probe"),
        Outage::None => format!(
            "{server}: {} of {} VLESS ports answered TLS correctly{of}",
            assessment.open, assessment.probed
        ),
        Outage::AllClosed => format!(
            "{server}: none of {} VLESS ports accepts connections{of}",
            assessment.probed
        ),
        Outage::XrayStopped => format!(
            "{server}: none of {} VLESS ports accepts connections: Xray is stopped (the health job reports and restarts it)",
            assessment.probed
        ),
        Outage::Restarting { at } => format!(
            "{server}: VLESS ports closed right after keywarden restarted Xray ({}); judged on the next run",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    }
}
