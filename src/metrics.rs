//! Prometheus metrics: one explicit registry per agent (so parallel tests stay apart),
//! typed recording functions, and the text encoding served on /metrics. It records;
//! it never decides anything.
//!
//! Label cardinality: `server` (configured servers), `job` (4), `endpoint` (the API's
//! route templates, ids replaced by `{id}`), `kind`/`outcome`/`reason` (small fixed
//! sets). Per-key series (`key` = uuid) exist only with `[agent] metrics_per_key = true`:
//! one series per key and metric, so leave it off for fleets with many thousand keys.
//!
//! Longer than 400 lines on purpose (about 60 of them tests): every metric is registered
//! in one registry, with its help text, in one place.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub server: String,
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointErrorLabels {
    pub server: String,
    pub endpoint: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub server: String,
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobOutcomeLabels {
    pub server: String,
    pub job: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub server: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    pub server: String,
    pub key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabels {
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkResultLabels {
    pub sink: String,
    pub result: String,
}

/// Every metric keywarden exports.
pub struct Metrics {
    registry: Registry,
    pub per_key: bool,
    pub server_up: Family<ServerLabels, Gauge>,
    pub api_request_duration: Family<EndpointLabels, Histogram>,
    pub api_errors: Family<EndpointErrorLabels, Counter>,
    pub job_runs: Family<JobOutcomeLabels, Counter>,
    pub job_duration: Family<JobLabels, Histogram>,
    pub job_skipped: Family<JobOutcomeLabels, Counter>,
    pub drift_detected: Family<ServerLabels, Counter>,
    pub syncs: Family<ResultLabels, Counter>,
    pub sync_budget_left: Family<ServerLabels, Gauge>,
    pub key_used_bytes: Family<KeyLabels, Gauge<u64, AtomicU64>>,
    pub key_quota_ratio: Family<KeyLabels, Gauge<f64, AtomicU64>>,
    pub resets: Family<ResultLabels, Counter>,
    pub deletes: Family<ResultLabels, Counter>,
    pub alerts_firing: Family<SeverityLabels, Gauge>,
    pub notifications_sent: Family<SinkLabels, Counter>,
    pub notifications_failed: Family<SinkLabels, Counter>,
    pub notifications_dropped: Family<SinkLabels, Counter>,
    pub outbox_depth: Gauge,
    pub outbox_oldest_age_seconds: Gauge<f64, AtomicU64>,
    pub xray_up: Family<ServerLabels, Gauge>,
    pub vless_handshake_duration: Family<ServerLabels, Histogram>,
    pub vless_ports_probed: Family<ServerLabels, Gauge>,
    pub vless_ports_up: Family<ServerLabels, Gauge>,
    pub report_deliveries: Family<SinkResultLabels, Counter>,
    pub leading_servers: Gauge,
    pub agents_live: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("per_key", &self.per_key)
            .finish_non_exhaustive()
    }
}

fn duration_histogram() -> Histogram {
    // 5 ms .. ~80 s: API reads are ~100 ms, syncs take seconds.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

fn handshake_histogram() -> Histogram {
    // 1 ms .. ~16 s: a handshake on loopback takes ~1 ms, across the world ~0.3 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    pub fn new(per_key: bool) -> Metrics {
        let mut registry = Registry::with_prefix("keywarden");
        let server_up = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "server_up",
            "1 when the server's last health check answered, 0 when it did not",
            server_up.clone(),
        );
        let api_request_duration = Family::<EndpointLabels, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        registry.register(
            "api_request_duration_seconds",
            "Duration of calls to the VPN Key Management API",
            api_request_duration.clone(),
        );
        let api_errors = Family::<EndpointErrorLabels, Counter>::default();
        registry.register(
            "api_errors",
            "Failed calls to the VPN Key Management API by error kind",
            api_errors.clone(),
        );
        let job_runs = Family::<JobOutcomeLabels, Counter>::default();
        registry.register(
            "job_runs",
            "Completed job runs by outcome (ok, warning, critical, error)",
            job_runs.clone(),
        );
        let job_duration = Family::<JobLabels, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        registry.register(
            "job_duration_seconds",
            "Duration of job runs",
            job_duration.clone(),
        );
        let job_skipped = Family::<JobOutcomeLabels, Counter>::default();
        registry.register("job_skipped", "Ticks skipped (outcome = overlap: the previous run was still going; backoff: the server is backed off)", job_skipped.clone());
        let drift_detected = Family::<ServerLabels, Counter>::default();
        registry.register(
            "drift_detected",
            "Reads that found config.json out of step with the key store",
            drift_detected.clone(),
        );
        let syncs = Family::<ResultLabels, Counter>::default();
        registry.register("syncs", "Syncs performed, by result", syncs.clone());
        let sync_budget_left = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "sync_budget_left",
            "Syncs still allowed in the current hour (max_syncs_per_hour minus recent ones)",
            sync_budget_left.clone(),
        );
        let key_used_bytes = Family::<KeyLabels, Gauge<u64, AtomicU64>>::default();
        let key_quota_ratio = Family::<KeyLabels, Gauge<f64, AtomicU64>>::default();
        if per_key {
            registry.register(
                "key_used_bytes",
                "Bytes used by a key in its current period",
                key_used_bytes.clone(),
            );
            registry.register(
                "key_quota_ratio",
                "Used bytes divided by the key's limit",
                key_quota_ratio.clone(),
            );
        }
        let resets = Family::<ResultLabels, Counter>::default();
        registry.register(
            "resets",
            "Traffic counter resets, by result",
            resets.clone(),
        );
        let deletes = Family::<ResultLabels, Counter>::default();
        registry.register("deletes", "Key deletions, by result", deletes.clone());
        let alerts_firing = Family::<SeverityLabels, Gauge>::default();
        registry.register(
            "alerts_firing",
            "Open findings by severity",
            alerts_firing.clone(),
        );
        let notifications_sent = Family::<SinkLabels, Counter>::default();
        registry.register(
            "notifications_sent",
            "Notifications delivered, by sink",
            notifications_sent.clone(),
        );
        let notifications_failed = Family::<SinkLabels, Counter>::default();
        registry.register(
            "notifications_failed",
            "Failed delivery attempts, by sink",
            notifications_failed.clone(),
        );
        let notifications_dropped = Family::<SinkLabels, Counter>::default();
        registry.register(
            "notifications_dropped",
            "Notifications dropped undelivered (older than max_age, or refused for good), by sink",
            notifications_dropped.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register(
            "outbox_depth",
            "Notifications waiting in the outbox",
            outbox_depth.clone(),
        );
        let outbox_oldest_age_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest undelivered notification",
            outbox_oldest_age_seconds.clone(),
        );
        let xray_up = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "xray_up",
            "1 when the server's API (2.x GET /health) last reported Xray running, 0 when stopped",
            xray_up.clone(),
        );
        let vless_handshake_duration = Family::<ServerLabels, Histogram>::new_with_constructor(
            handshake_histogram as fn() -> Histogram,
        );
        registry.register(
            "vless_handshake_duration_seconds",
            "Connect plus TLS handshake with a VLESS port, from outside (ports that answered correctly)",
            vless_handshake_duration.clone(),
        );
        let vless_ports_probed = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "vless_ports_probed",
            "VLESS ports probed by the last dataplane run",
            vless_ports_probed.clone(),
        );
        let vless_ports_up = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "vless_ports_up",
            "VLESS ports of the last dataplane run that completed a verified TLS handshake",
            vless_ports_up.clone(),
        );
        let report_deliveries = Family::<SinkResultLabels, Counter>::default();
        registry.register(
            "report_deliveries",
            "Scheduled usage report deliveries, by sink and result (delivered, failed)",
            report_deliveries.clone(),
        );
        let leading_servers = Gauge::default();
        registry.register(
            "leading_servers",
            "Servers this agent leads (holds the lock of, with the PostgreSQL store; all configured ones with SQLite)",
            leading_servers.clone(),
        );
        let agents_live = Gauge::default();
        registry.register(
            "agents_live",
            "Agents sharing the fleet whose row was renewed within the last 30 s (1 with SQLite; 0 while disconnected from PostgreSQL)",
            agents_live.clone(),
        );
        Metrics {
            registry,
            leading_servers,
            agents_live,
            xray_up,
            vless_handshake_duration,
            vless_ports_probed,
            vless_ports_up,
            per_key,
            server_up,
            api_request_duration,
            api_errors,
            job_runs,
            job_duration,
            job_skipped,
            drift_detected,
            syncs,
            sync_budget_left,
            key_used_bytes,
            key_quota_ratio,
            resets,
            deletes,
            alerts_firing,
            notifications_sent,
            notifications_failed,
            notifications_dropped,
            outbox_depth,
            outbox_oldest_age_seconds,
            report_deliveries,
        }
    }

    /// One scheduled report delivery to `sink`.
    pub fn report_delivery(&self, sink: &str, delivered: bool) {
        let result = if delivered { "delivered" } else { "failed" };
        self.report_deliveries
            .get_or_create(&SinkResultLabels {
                sink: sink.into(),
                result: result.into(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// One call to a server's API.
    pub fn api_call(&self, server: &str, endpoint: &str, took: Duration, error_kind: Option<&str>) {
        let endpoint = endpoint_template(endpoint);
        let labels = EndpointLabels {
            server: server.to_string(),
            endpoint: endpoint.clone(),
        };
        self.api_request_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(kind) = error_kind {
            let labels = EndpointErrorLabels {
                server: server.to_string(),
                endpoint,
                kind: kind.to_string(),
            };
            self.api_errors.get_or_create(&labels).inc();
        }
    }

    pub fn job_run(&self, server: &str, job: &str, outcome: &str, took: Duration) {
        let labels = JobOutcomeLabels {
            server: server.into(),
            job: job.into(),
            outcome: outcome.into(),
        };
        if outcome == "skipped" {
            return;
        }
        self.job_runs.get_or_create(&labels).inc();
        self.job_duration
            .get_or_create(&JobLabels {
                server: server.into(),
                job: job.into(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn job_skipped(&self, server: &str, job: &str, reason: &str) {
        let labels = JobOutcomeLabels {
            server: server.into(),
            job: job.into(),
            outcome: reason.into(),
        };
        self.job_skipped.get_or_create(&labels).inc();
    }

    pub fn set_server_up(&self, server: &str, up: bool) {
        self.server_up
            .get_or_create(&ServerLabels {
                server: server.into(),
            })
            .set(i64::from(up));
    }

    pub fn set_xray_up(&self, server: &str, up: bool) {
        self.xray_up
            .get_or_create(&ServerLabels {
                server: server.into(),
            })
            .set(i64::from(up));
    }

    /// One dataplane run: ports probed and up, and each open port's handshake time.
    pub fn vless_ports(&self, server: &str, probed: usize, up: usize, latencies: &[Duration]) {
        let labels = ServerLabels {
            server: server.into(),
        };
        self.vless_ports_probed
            .get_or_create(&labels)
            .set(probed as i64);
        self.vless_ports_up.get_or_create(&labels).set(up as i64);
        let histogram = self.vless_handshake_duration.get_or_create(&labels);
        for latency in latencies {
            histogram.observe(latency.as_secs_f64());
        }
    }

    pub fn set_alerts_firing(&self, counts: &[(&str, i64)]) {
        for (severity, count) in counts {
            self.alerts_firing
                .get_or_create(&SeverityLabels {
                    severity: severity.to_string(),
                })
                .set(*count);
        }
    }
}

/// `GET /api/keys/0f9b.../traffic` -> `GET /api/keys/{id}/traffic`: ids would make one
/// series per key.
pub fn endpoint_template(endpoint: &str) -> String {
    let mut out = Vec::new();
    let mut after_keys = false;
    for segment in endpoint.split('/') {
        if after_keys && !segment.is_empty() {
            out.push("{id}");
            after_keys = false;
            continue;
        }
        after_keys = segment == "keys";
        out.push(segment);
    }
    out.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_lose_their_ids() {
        assert_eq!(endpoint_template("GET /api/keys"), "GET /api/keys");
        assert_eq!(
            endpoint_template("GET /api/keys/0f9b-1/traffic/exact"),
            "GET /api/keys/{id}/traffic/exact"
        );
        assert_eq!(
            endpoint_template("DELETE /api/keys/abc"),
            "DELETE /api/keys/{id}"
        );
        assert_eq!(
            endpoint_template("POST /api/system/sync-config"),
            "POST /api/system/sync-config"
        );
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let metrics = Metrics::new(false);
        metrics.api_call(
            "fra-1",
            "GET /api/keys/k1/traffic",
            Duration::from_millis(20),
            Some("timeout"),
        );
        metrics.job_run("fra-1", "health", "ok", Duration::from_millis(30));
        metrics.job_skipped("fra-1", "reality", "overlap");
        metrics.set_server_up("fra-1", true);
        let text = metrics.encode();
        for expected in [
            "keywarden_api_request_duration_seconds_bucket{",
            "keywarden_api_errors_total{server=\"fra-1\",endpoint=\"GET /api/keys/{id}/traffic\",kind=\"timeout\"} 1",
            "keywarden_job_runs_total{server=\"fra-1\",job=\"health\",outcome=\"ok\"} 1",
            "keywarden_job_skipped_total{server=\"fra-1\",job=\"reality\",outcome=\"overlap\"} 1",
            "keywarden_server_up{server=\"fra-1\"} 1",
            "# TYPE keywarden_outbox_depth gauge",
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        assert!(
            !text.contains("key_used_bytes"),
            "per-key series are off by default"
        );
        let per_key = Metrics::new(true);
        let labels = KeyLabels {
            server: "fra-1".into(),
            key: "u1".into(),
        };
        per_key.key_used_bytes.get_or_create(&labels).set(42);
        let text = per_key.encode();
        assert!(
            text.contains("keywarden_key_used_bytes{server=\"fra-1\",key=\"u1\"} 42"),
            "{text}"
        );
    }
}
