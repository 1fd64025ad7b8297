//! What a fleet costs the servers and the machine: one HTTP client for every server that
//! shares TLS settings, and no request a cycle does not need (counted in the simulator's
//! request log, over real HTTP).

mod support;

use std::sync::Arc;

use keywarden::commands::run_all;
use keywarden::config::JobKind;
use keywarden::jobs::RunMode;
use keywarden::jobs::runner::RunOptions;
use keywarden::server_api::HttpClients;
use keywarden_sim::{ApiGeneration, SimServer};
use support::agent::{clock, config, runner, server_block};
use support::{sim, within};

const DAEMON: RunOptions = RunOptions {
    dry_run: false,
    mode: RunMode::Daemon,
    respect_backoff: true,
};

fn count(server: &SimServer, method: &str, path: &str) -> usize {
    server
        .handle()
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path == path)
        .count()
}

#[tokio::test]
async fn servers_share_one_http_client_and_each_distinct_ca_file_gets_its_own() {
    let servers = [
        sim(ApiGeneration::V1, 1).await,
        sim(ApiGeneration::V2, 1).await,
        sim(ApiGeneration::V1, 1).await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let pem = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/alerts/smtp-test-cert.pem"),
    )
    .unwrap();
    std::fs::write(dir.path().join("ca-a.pem"), &pem).unwrap();
    std::fs::write(dir.path().join("ca-b.pem"), &pem).unwrap();
    let mut body = String::new();
    for n in 0..6 {
        let url = servers[n % 3].base_url();
        body.push_str(&server_block(&format!("plain-{n}"), &url, ""));
    }
    let with_ca = "ca_file = \"ca-a.pem\"";
    body.push_str(&server_block("ca-1", &servers[0].base_url(), with_ca));
    body.push_str(&server_block("ca-2", &servers[1].base_url(), with_ca));
    // Another file with the same certificates: the same TLS setting, the same client.
    let same_content = "ca_file = \"ca-b.pem\"";
    body.push_str(&server_block("ca-3", &servers[2].base_url(), same_content));
    let config = config(dir.path(), &body);

    let clients = HttpClients::new();
    let targets =
        keywarden::app::targets_with_clients(&config, None, None, &clients).expect("targets");
    assert_eq!(targets.len(), 9);
    assert_eq!(clients.builds(), 2, "one client without a CA, one with it");
    let plain = targets[0].api.http_client_id();
    let ca = targets[6].api.http_client_id();
    assert_ne!(plain, ca);
    for target in &targets {
        let want = if target.server.ca_file.is_some() {
            ca
        } else {
            plain
        };
        assert_eq!(target.api.http_client_id(), want, "{}", target.server.name);
    }
    // And the shared client answers for every plain server (the CA ones speak plain
    // http here too: the extra root only matters for https).
    for target in &targets {
        let answer = within("GET /api/", target.api.api_status()).await;
        assert!(answer.is_ok(), "{}: {answer:?}", target.server.name);
    }

    // A second load (a reload) builds its own, and the first keeps working.
    let reloaded = HttpClients::new();
    let again = keywarden::app::targets_with_clients(&config, Some("plain-0"), None, &reloaded)
        .expect("targets");
    assert_eq!(reloaded.builds(), 1);
    within("new client", again[0].api.list_keys())
        .await
        .expect("keys");
    within("old client", targets[1].api.list_keys())
        .await
        .expect("keys");
}

/// One run of every job on a fresh client (what `check` does, and the daemon's first
/// cycle), and the requests it made.
async fn one_cycle(generation: ApiGeneration, jobs: &[JobKind]) -> SimServer {
    let server = sim(generation, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server_block("fra-1", &server.base_url(), ""));
    let clock = clock();
    let runner = runner(&config, &clock);
    let targets = support::agent::targets(&config);
    let reports = within(
        "one cycle",
        run_all(&Arc::clone(&runner), targets, jobs, DAEMON),
    )
    .await;
    assert_eq!(reports.len(), jobs.len());
    for report in &reports {
        assert!(report.error.is_none(), "{report:?}");
    }
    server
}

#[tokio::test]
async fn a_1x_cycle_asks_for_the_version_once_and_the_bulk_answer_only_for_quota() {
    let server = one_cycle(ApiGeneration::V1, &JobKind::ALL).await;
    assert_eq!(
        count(&server, "GET", "/api/"),
        1,
        "{:?}",
        server.handle().requests()
    );
    assert_eq!(
        count(&server, "GET", "/api/traffic/exact"),
        1,
        "the quota run's own read"
    );
    assert_eq!(count(&server, "GET", "/api/system/xray/validate-sync"), 0);
    assert_eq!(
        count(&server, "HEAD", "/api/traffic/exact"),
        0,
        "no probing"
    );
}

#[tokio::test]
async fn a_2x_cycle_asks_for_the_version_once_and_quota_adds_no_validation() {
    let server = one_cycle(ApiGeneration::V2, &JobKind::ALL).await;
    assert_eq!(
        count(&server, "GET", "/api/"),
        1,
        "{:?}",
        server.handle().requests()
    );
    // config_sync's witness and the 2.x Reality check's short-id comparison; none for quota.
    let validations = count(&server, "GET", "/api/system/xray/validate-sync");
    let without_quota = one_cycle(
        ApiGeneration::V2,
        &[
            JobKind::Health,
            JobKind::ConfigSync,
            JobKind::Reality,
            JobKind::Dataplane,
        ],
    )
    .await;
    assert_eq!(
        validations,
        count(&without_quota, "GET", "/api/system/xray/validate-sync")
    );
    assert_eq!(
        count(&server, "GET", "/api/traffic/exact"),
        0,
        "2.x has no bulk answer"
    );
    let heads = server
        .handle()
        .requests()
        .iter()
        .filter(|r| r.method == "HEAD")
        .count();
    assert_eq!(heads, 0, "no probing");
}

#[tokio::test]
async fn a_run_does_not_keep_the_key_list_for_the_next_one() {
    // The runner releases the list after each run (500 servers' lists are ~25 MiB):
    // a later run, even within the list's time to live, fetches its own.
    let server = one_cycle(ApiGeneration::V2, &[JobKind::Quota, JobKind::Dataplane]).await;
    assert_eq!(count(&server, "GET", "/api/keys"), 2);
}

#[tokio::test]
async fn a_quota_run_alone_does_not_call_validate_sync() {
    for generation in [ApiGeneration::V1, ApiGeneration::V2] {
        let server = one_cycle(generation, &[JobKind::Quota]).await;
        assert_eq!(count(&server, "GET", "/api/system/xray/validate-sync"), 0);
        assert_eq!(count(&server, "GET", "/api/"), 1, "{generation:?}");
        assert_eq!(count(&server, "GET", "/api/keys"), 1, "{generation:?}");
    }
}

/// The requests one run of `job` makes on a fresh client, in order.
async fn requests_of(generation: ApiGeneration, job: JobKind) -> Vec<(String, String)> {
    let server = one_cycle(generation, &[job]).await;
    server
        .handle()
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect()
}

#[tokio::test]
async fn the_health_check_asks_for_a_key_that_cannot_exist_instead_of_the_key_list() {
    let get = |path: &str| ("GET".to_string(), path.to_string());
    let login = format!("/api/keys/{}", keywarden::server_api::NO_SUCH_KEY);
    assert_eq!(
        requests_of(ApiGeneration::V1, JobKind::Health).await,
        vec![get("/api/"), get(&login), get("/api/traffic/status")]
    );
    assert_eq!(
        requests_of(ApiGeneration::V2, JobKind::Health).await,
        vec![get("/api/"), get(&login), get("/health")]
    );
}

#[tokio::test]
async fn a_refused_api_key_is_still_noticed_by_the_health_check() {
    for generation in [ApiGeneration::V1, ApiGeneration::V2] {
        let server = sim(generation, 3).await;
        let dir = tempfile::tempdir().unwrap();
        let block = server_block("fra-1", &server.base_url(), "")
            .replace("api_key_env = \"TEST_KEY\"", "api_key = \"not-the-key\"");
        let config = config(dir.path(), &block);
        let clock = clock();
        let runner = runner(&config, &clock);
        let targets = support::agent::targets(&config);
        let reports = within(
            "health",
            run_all(&runner, targets, &[JobKind::Health], DAEMON),
        )
        .await;
        let kinds: Vec<_> = reports[0].findings.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            vec![keywarden::model::FindingKind::AuthFailed],
            "{generation:?}"
        );
        assert_eq!(count(&server, "GET", "/api/keys"), 0, "{generation:?}");
    }
}

/// The simulator answers the check as the recorded servers did: 404 "Key not found"
/// with the right key, 401 with a wrong one or none (same status, same JSON).
#[tokio::test]
async fn the_simulator_answers_the_key_check_like_the_recorded_servers() {
    keywarden::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    for (generation, prefix) in [(ApiGeneration::V1, "v1"), (ApiGeneration::V2, "v2")] {
        let server = sim(generation, 2).await;
        let url = format!(
            "{}/keys/{}",
            server.base_url(),
            keywarden::server_api::NO_SUCH_KEY
        );
        let cases = [
            (Some(support::TEST_API_KEY), 404, "err_get_unknown"),
            (Some("not-the-key"), 401, "err_wrong_key"),
            (None, 401, "err_no_key"),
        ];
        for (key, status, name) in cases {
            let mut request = http.get(&url);
            if let Some(key) = key {
                request = request.header("X-API-Key", key);
            }
            let answer = within("GET", request.send()).await.expect("answer");
            assert_eq!(answer.status().as_u16(), status, "{prefix} {name}");
            let body: serde_json::Value = answer.json().await.expect("json");
            let recorded: serde_json::Value =
                serde_json::from_slice(&support::sample(&format!("{prefix}_{name}.json"))).unwrap();
            assert_eq!(body, recorded, "{prefix} {name}");
        }
    }
}
