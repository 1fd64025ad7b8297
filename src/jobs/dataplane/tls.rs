//! The TLS probe of one VLESS port: connect, complete a TLS 1.3 handshake with a chosen
//! server name, verify the certificate chain for that name against the system roots plus
//! the server's `ca_file` and `reality_ca_file`. A healthy Reality port relays an
//! unauthenticated ClientHello to its `dest`, so the probe sees `dest`'s genuine
//! certificate; a refused connection or a wrong certificate is what users and active
//! probes see. Everything is bounded by one timeout. It decides nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio_rustls::TlsConnector;

use crate::config::ServerConfig;
use crate::model::dataplane::PortState;

/// The pause before a failed port is probed a second time.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub state: PortState,
    /// Connect + handshake, for open ports.
    pub latency: Option<Duration>,
    /// The error, for ports that are not open.
    pub detail: String,
}

/// Probes with one set of trusted roots. The root store (the system's ~150 files) is
/// loaded on first use and shared by every probe of every server with the same CA files.
#[derive(Debug)]
pub struct Prober {
    extra_roots: Vec<PathBuf>,
    config: OnceCell<Result<Arc<ClientConfig>, String>>,
}

impl Prober {
    /// Trusting the system roots plus these PEM files.
    pub fn new(extra_roots: Vec<PathBuf>) -> Prober {
        Prober {
            extra_roots,
            config: OnceCell::new(),
        }
    }

    /// The roots a server's VLESS ports are verified against: the system's, its `ca_file`
    /// and its `reality_ca_file`.
    pub fn roots_of(server: &ServerConfig) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = server
            .ca_file
            .iter()
            .chain(server.reality_ca_file.iter())
            .cloned()
            .collect();
        roots.sort();
        roots.dedup();
        roots
    }

    pub fn for_server(server: &ServerConfig) -> Prober {
        Prober::new(Prober::roots_of(server))
    }

    pub fn extra_roots(&self) -> &[PathBuf] {
        &self.extra_roots
    }

    /// The TLS 1.3 client configuration; `Err` when no root could be loaded at all.
    pub async fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        self.config
            .get_or_init(|| async { build_config(&self.extra_roots) })
            .await
            .clone()
    }

    /// Connect to `host:port` and complete a handshake for `server_name`, within `timeout`;
    /// once more after a short pause when that fails: a port caught in the seconds of an
    /// Xray restart, or a lost packet, is not an outage.
    pub async fn probe(
        &self,
        host: &str,
        port: u16,
        server_name: &str,
        timeout: Duration,
    ) -> ProbeOutcome {
        let first = self.probe_once(host, port, server_name, timeout).await;
        if first.state == PortState::Open {
            return first;
        }
        tokio::time::sleep(RETRY_PAUSE.min(timeout)).await;
        self.probe_once(host, port, server_name, timeout).await
    }

    async fn probe_once(
        &self,
        host: &str,
        port: u16,
        server_name: &str,
        timeout: Duration,
    ) -> ProbeOutcome {
        let config = match self.client_config().await {
            Ok(config) => config,
            Err(error) => return failed(PortState::TlsFailed, error),
        };
        let name = match ServerName::try_from(server_name.to_string()) {
            Ok(name) => name,
            Err(_) => {
                return failed(
                    PortState::TlsFailed,
                    format!("{server_name:?} is not a valid server name"),
                );
            }
        };
        let started = Instant::now();
        let connect = tokio::time::timeout(timeout, TcpStream::connect((host, port))).await;
        let stream = match connect {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return failed(PortState::Closed, error.to_string()),
            Err(_) => {
                return failed(
                    PortState::Closed,
                    format!(
                        "no connection within {}",
                        humantime::format_duration(timeout)
                    ),
                );
            }
        };
        let _ = stream.set_nodelay(true);
        let left = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, TlsConnector::from(config).connect(name, stream)).await {
            Ok(Ok(_tls)) => ProbeOutcome {
                state: PortState::Open,
                latency: Some(started.elapsed()),
                detail: String::new(),
            },
            Ok(Err(error)) => classify(&error),
            // It accepted the connection and then said nothing: not what a Reality port does.
            Err(_) => failed(
                PortState::TlsFailed,
                format!(
                    "connected, but no TLS handshake within {}",
                    humantime::format_duration(timeout)
                ),
            ),
        }
    }
}

fn failed(state: PortState, detail: String) -> ProbeOutcome {
    ProbeOutcome {
        state,
        latency: None,
        detail,
    }
}

/// A failed handshake: a certificate that does not verify, or any other TLS failure.
fn classify(error: &std::io::Error) -> ProbeOutcome {
    let tls = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(reason)) => failed(
            PortState::CertInvalid,
            format!("the certificate does not verify: {reason:?}"),
        ),
        Some(other) => failed(PortState::TlsFailed, format!("TLS failed: {other}")),
        None => failed(PortState::TlsFailed, format!("TLS failed: {error}")),
    }
}

fn build_config(extra_roots: &[PathBuf]) -> Result<Arc<ClientConfig>, String> {
    crate::tls::install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut extra: Vec<CertificateDer<'static>> = Vec::new();
    for path in extra_roots {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|error| format!("cannot read the CA file {}: {error}", path.display()))?;
        extra.extend(certs);
    }
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
        .map_err(|error| {
            format!(
                "no trusted roots for the TLS probe ({error}): install the system's CA certificates or set reality_ca_file"
            )
        })?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| format!("TLS 1.3 setup: {error}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // No session resumption: a resumed TLS 1.3 handshake shows no certificate, and
    // checking the certificate is what every probe is for (Reality relays to `dest`,
    // whose tickets another port with the same server name would accept). A probe
    // closes the connection before the server's tickets arrive, so none is stored
    // today; this keeps it so if a probe ever reads on.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}
