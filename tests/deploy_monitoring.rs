//! deploy/grafana/keywarden.json and deploy/prometheus/keywarden-rules.yml: every query
//! names a metric a real /metrics scrape of the agent exports; the dashboard is valid JSON
//! with unique panel ids; the rules pass `promtool check rules` where promtool exists.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use keywarden::http::{HttpState, serve};
use keywarden::metrics::{KeyLabels, Metrics, ResultLabels, ServerLabels, SinkLabels};
use keywarden::store::Store;
use support::within;
use tokio_util::sync::CancellationToken;

const DASHBOARD: &str = include_str!("../deploy/grafana/keywarden.json");
const RULES: &str = include_str!("../deploy/prometheus/keywarden-rules.yml");
const RULES_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/prometheus/keywarden-rules.yml"
);

/// Sample names a real scrape exposes (per-key series on), from its TYPE lines.
async fn exported() -> BTreeSet<String> {
    keywarden::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new(true));
    metrics.set_server_up("fra-1", true);
    // One value in each family, through the agent's own recording calls (families with
    // no series are not exposed).
    metrics.job_run("fra-1", "health", "ok", Duration::from_millis(5));
    metrics.job_skipped("fra-1", "quota", "overlap");
    metrics.api_call(
        "fra-1",
        "GET /api/keys",
        Duration::from_millis(9),
        Some("timeout"),
    );
    metrics.set_alerts_firing(&[("critical", 1), ("warning", 0)]);
    metrics.report_delivery("ops-mail", true);
    metrics.set_xray_up("fra-1", true);
    metrics.vless_ports("fra-1", 3, 3, &[Duration::from_millis(12)]);
    let server = ServerLabels {
        server: "fra-1".into(),
    };
    let result = ResultLabels {
        server: "fra-1".into(),
        result: "applied".into(),
    };
    let key = KeyLabels {
        server: "fra-1".into(),
        key: "u1".into(),
    };
    let sink = SinkLabels {
        sink: "ops-mail".into(),
    };
    metrics.drift_detected.get_or_create(&server).inc();
    metrics.sync_budget_left.get_or_create(&server).set(3);
    metrics.syncs.get_or_create(&result).inc();
    metrics.resets.get_or_create(&result).inc();
    metrics.deletes.get_or_create(&result).inc();
    metrics.key_used_bytes.get_or_create(&key).set(7);
    metrics.key_quota_ratio.get_or_create(&key).set(0.5);
    metrics.notifications_sent.get_or_create(&sink).inc();
    metrics.notifications_failed.get_or_create(&sink).inc();
    metrics.notifications_dropped.get_or_create(&sink).inc();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let state = HttpState {
        metrics,
        store: Arc::new(Store::open(dir.path()).unwrap()),
        scheduler_alive: Arc::new(AtomicBool::new(true)),
    };
    let task = tokio::spawn(serve(listener, state, stop.clone()));
    let text = within("scrape", async {
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
    .await;
    stop.cancel();
    within("endpoint stops", task).await.unwrap().unwrap();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        names.insert(name.to_string());
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {}
        }
    }
    assert!(names.contains("keywarden_server_up"), "{text}");
    names
}

/// Every `keywarden_*` metric name in `expr`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("keywarden_") {
        let preceded = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == ':' || c == '_');
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded {
            names.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

fn dashboard_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("expr" | "definition", serde_json::Value::String(expr)) => {
                        out.push(expr.clone())
                    }
                    _ => dashboard_exprs(inner, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| dashboard_exprs(i, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_dashboard_and_rule_query_names_an_exported_metric() {
    let exported = exported().await;
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 15, "{exprs:?}");
    let rule_exprs: Vec<String> = RULES
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: ").map(str::to_string))
        .collect();
    assert!(rule_exprs.len() >= 10, "{rule_exprs:?}");
    let mut used = BTreeSet::new();
    for expr in exprs.iter().chain(&rule_exprs) {
        let names = metric_names(expr);
        for name in names {
            assert!(
                exported.contains(&name),
                "{name} (in {expr}) is not exported; exported: {exported:?}"
            );
            used.insert(name);
        }
    }
    for needed in [
        "keywarden_server_up",
        "keywarden_alerts_firing",
        "keywarden_syncs_total",
        "keywarden_resets_total",
        "keywarden_job_duration_seconds_bucket",
        "keywarden_api_request_duration_seconds_bucket",
        "keywarden_key_quota_ratio",
        "keywarden_outbox_depth",
        "keywarden_notifications_failed_total",
    ] {
        assert!(used.contains(needed), "nothing shows {needed}");
    }
    let ids: Vec<i64> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "panel ids are unique");
    for alert in [
        "KeywardenDown",
        "KeywardenHeartbeatAbsent",
        "KeywardenRunsFailing",
        "KeywardenOutboxBacklogGrowing",
        "KeywardenNotificationsFailing",
    ] {
        assert!(
            RULES.contains(&format!("alert: {alert}")),
            "{alert} missing"
        );
    }
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names(
            "sum by (x) (rate(keywarden_job_runs_total{a=\"b\"}[5m])) / keywarden:rec:sum + keywarden_server_up"
        ),
        ["keywarden_job_runs_total", "keywarden_server_up"]
    );
}

#[test]
fn promtool_accepts_the_rules_where_installed() {
    let Ok(output) = std::process::Command::new("promtool")
        .args(["check", "rules", RULES_PATH])
        .output()
    else {
        eprintln!(
            "promtool is not installed (Debian: apt-get install prometheus); not checked here"
        );
        return;
    };
    assert!(
        output.status.success(),
        "promtool check rules failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
