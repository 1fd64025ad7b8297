//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod agent;
pub mod alerts;
pub mod dump;
pub mod hooks;
pub mod hostile;
pub mod pg;
pub mod quota;
pub mod replay;
pub mod smtp;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use keywarden::secret::Secret;
use keywarden::server_api::{ClientSettings, RetryPolicy, ServerApi};

/// The API key tests use; tests assert it never leaks.
pub const TEST_API_KEY: &str = "kw-test-key-5f0c2b9e71";

/// Path of a recorded real answer copied from ../shared/api-samples.
pub fn sample_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/api-samples")
        .join(name)
}

pub fn sample(name: &str) -> Vec<u8> {
    std::fs::read(sample_path(name)).unwrap_or_else(|err| panic!("read sample {name}: {err}"))
}

/// Client settings for tests: short timeouts, fast retries.
pub fn settings(base_url: &str) -> ClientSettings {
    keywarden::tls::install_crypto_provider();
    let mut settings = ClientSettings::new(
        "test-1",
        base_url.parse().unwrap(),
        Secret::new(TEST_API_KEY),
    );
    settings.timeout = Duration::from_secs(2);
    settings.action_timeout = Duration::from_secs(3);
    settings.retry = RetryPolicy {
        get_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(30),
    };
    settings
}

pub fn client(base_url: &str) -> ServerApi {
    ServerApi::new(settings(base_url)).expect("client")
}

/// Await `future`, failing the test with `what` if it takes longer than 20 s.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

use keywarden_sim::{ApiGeneration, SimOptions, SimServer};

/// A simulated server of `generation` with `keys` keys on an ephemeral loopback port.
pub async fn sim(generation: ApiGeneration, keys: usize) -> SimServer {
    SimServer::start_local(SimOptions::new(generation, keys, TEST_API_KEY))
        .await
        .expect("start simulator")
}

/// Write the simulator's test CA to `dir` (for `reality_ca_file`); returns the path.
pub fn ca_file(dir: &std::path::Path, server: &SimServer) -> PathBuf {
    let path = dir.join(format!("sim-ca-{}.pem", server.addr().port()));
    std::fs::write(&path, server.ca_pem()).expect("write the simulator's CA");
    path
}
