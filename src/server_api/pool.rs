//! The HTTP clients behind every `ServerApi`: one reqwest client (one connection pool,
//! one root store) for all servers that share TLS settings, and one more per distinct
//! `ca_file`. Building a client loads the whole system root store (about 150 files); one
//! per server made a 500-server cycle spend a third of its CPU there. A cache lives as
//! long as one configuration: `app::targets` makes one per load, so a reload with a new
//! `ca_file` gets a client that trusts it. The agent's webhook sinks (Slack, Telegram,
//! json) and its heartbeat share one more, `notifications` (it honours the environment's
//! proxy, the API client does not), built once per agent.
//! It must not hold anything per server or sink: timeouts and keys go on each request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::error::{ApiError, ApiErrorKind, ApiResult};

/// How long a TCP connect (and TLS handshake) may take. Every request also carries its
/// server's own `timeout`, which covers the connect too, so a server with a shorter
/// timeout still gives up sooner: one value fits every server sharing the client.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may wait in the pool for its next request. A run opens up to
/// its server's `concurrency` connections and sends its requests back to back, so it
/// reuses them; the next run comes seconds to minutes later and connects again. With
/// reqwest's default (90 s) a 500-server fleet held ~4 300 idle connections after one
/// job (~40 KiB each: hyper's buffers and dispatch channel), 170 MiB of the cycle's
/// peak RSS. The count of idle connections is not capped instead: a new request starts
/// connecting before the previous one's connection is back in the pool, so a cap below
/// the concurrency closed and reopened a connection for about every second request.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// A built client and a number that tells clients apart (reqwest's has no identity).
#[derive(Clone)]
pub(super) struct SharedHttp {
    pub client: reqwest::Client,
    pub id: usize,
}

/// What a client is for: its settings differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Purpose {
    /// The VPN Key Management API: never through a proxy (the API key would pass it).
    Api,
    /// Webhooks, Telegram, Slack and the heartbeat: outbound to the internet, through
    /// the proxy the environment names (`HTTPS_PROXY`), if any.
    Notifications,
}

/// What tells clients apart: their purpose and the extra CA's PEM (or none).
type ClientKey = (Purpose, Option<Vec<u8>>);

/// Clients by purpose and TLS setting (the extra CA's PEM, or none). Cheap to share by
/// reference.
#[derive(Default)]
pub struct HttpClients {
    built: Mutex<HashMap<ClientKey, SharedHttp>>,
    builds: AtomicUsize,
}

impl std::fmt::Debug for HttpClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClients")
            .field("builds", &self.builds())
            .finish()
    }
}

impl HttpClients {
    pub fn new() -> HttpClients {
        HttpClients::default()
    }

    /// How many clients this cache has built (tests: one per distinct TLS setting).
    pub fn builds(&self) -> usize {
        self.builds.load(Ordering::Relaxed)
    }

    /// The client for servers trusting `ca_pem` on top of the system roots (or nothing
    /// more), built on first use. Fails only on a bad CA bundle or TLS setup.
    pub(super) fn client_for(&self, ca_pem: Option<&[u8]>) -> ApiResult<SharedHttp> {
        self.built_for(Purpose::Api, ca_pem)
    }

    /// The client of every webhook sink and the heartbeat (system roots, the
    /// environment's proxy, no redirects). It has no timeout of its own: each request
    /// sets its sink's.
    pub fn notifications(&self) -> Result<reqwest::Client, String> {
        self.built_for(Purpose::Notifications, None)
            .map(|shared| shared.client)
            .map_err(|error| error.to_string())
    }

    fn built_for(&self, purpose: Purpose, ca_pem: Option<&[u8]>) -> ApiResult<SharedHttp> {
        let key = (purpose, ca_pem.map(<[u8]>::to_vec));
        // Held while building: two servers with a new setting must not build it twice.
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = built.get(&key) {
            return Ok(shared.clone());
        }
        let client = build(purpose, ca_pem)?;
        let id = self.builds.fetch_add(1, Ordering::Relaxed) + 1;
        let shared = SharedHttp { client, id };
        built.insert(key, shared.clone());
        Ok(shared)
    }
}

fn build(purpose: Purpose, ca_pem: Option<&[u8]>) -> ApiResult<reqwest::Client> {
    crate::tls::install_crypto_provider();
    let setup = |reason: String| ApiError::new("client setup", ApiErrorKind::Setup { reason });
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .user_agent(concat!("keywarden/", env!("CARGO_PKG_VERSION")))
        // A redirect would carry X-API-Key to wherever it points.
        .redirect(reqwest::redirect::Policy::none());
    if purpose == Purpose::Api {
        builder = builder.no_proxy();
    }
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|err| setup(format!("ca_file is not a PEM bundle: {err}")))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|err| setup(format!("HTTP client: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_per_tls_setting() {
        let clients = HttpClients::new();
        let plain = clients.client_for(None).expect("plain");
        assert_eq!(clients.client_for(None).expect("again").id, plain.id);
        assert_eq!(clients.builds(), 1);
        let ca = include_bytes!("../../tests/fixtures/alerts/smtp-test-cert.pem");
        let with_ca = clients.client_for(Some(ca)).expect("with a CA");
        assert_ne!(with_ca.id, plain.id);
        assert_eq!(
            clients.client_for(Some(ca)).expect("same CA").id,
            with_ca.id
        );
        assert_eq!(clients.builds(), 2);
        let broken = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let refused = clients.client_for(Some(broken)).err();
        assert!(
            refused.is_some_and(|e| e.to_string().contains("PEM")),
            "a broken bundle is refused"
        );
        assert_eq!(clients.builds(), 2, "a refused bundle builds nothing");
        let notify = clients.notifications().expect("notifications");
        drop((notify, clients.notifications().expect("again")));
        assert_eq!(clients.builds(), 3, "one client for every notification");
    }
}
