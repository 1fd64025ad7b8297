//! Connections to PostgreSQL: a pool for the repositories and, on request, one dedicated
//! connection that no pool ever recycles (session-level advisory locks live as long as
//! their session: leadership holds them there). TLS is rustls with the chain and the host
//! name verified (`sslmode=verify-full` semantics) against the system's roots plus the
//! configured `ca_file`; only a URL saying `sslmode=disable` connects in the clear.
//!
//! Every connection starts with `search_path` set to the configured schema, so the SQL
//! names tables without a schema. Errors go through the URL's redactor: the driver may
//! echo the connection string, and the URL is a secret.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::task::JoinHandle;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::PgConfig;
use crate::redact::Redactor;
use crate::store::StoreError;

/// How long connecting (TCP, TLS, authentication) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a call waits for a pooled connection.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// Everything needed to open connections to the configured database.
#[derive(Clone)]
pub struct PgConnector {
    /// For the pool (`application_name` "keywarden pool <agent>").
    pool_config: tokio_postgres::Config,
    /// For dedicated connections (`application_name` = the agent name).
    dedicated_config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    pool: Pool,
    schema: String,
    agent_name: String,
    location: String,
    redactor: Arc<Redactor>,
}

impl std::fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnector")
            .field("location", &self.location)
            .field("agent_name", &self.agent_name)
            .finish_non_exhaustive()
    }
}

impl PgConnector {
    /// Prepare the pool (it connects lazily, on first use) and the TLS settings.
    pub fn from_config(pg: &PgConfig) -> Result<PgConnector, StoreError> {
        let redactor = Arc::new(pg.redactor());
        let setup = |detail: String| StoreError::Postgres {
            location: "PostgreSQL ([store.postgres])".to_owned(),
            detail: redactor.clean(&detail),
        };
        let mut base: tokio_postgres::Config = pg
            .driver_url()
            .expose()
            .parse()
            .map_err(|error| setup(format!("the connection URL does not parse: {error}")))?;
        base.ssl_mode(if pg.tls {
            SslMode::Require
        } else {
            SslMode::Disable
        });
        base.connect_timeout(CONNECT_TIMEOUT);
        // Dead peers (a host gone without a FIN) are noticed within about a minute.
        base.keepalives(true);
        base.keepalives_idle(Duration::from_secs(30));
        let search_path = format!("-c search_path={}", pg.schema);
        let options = match base.get_options() {
            Some(given) if !given.trim().is_empty() => format!("{given} {search_path}"),
            _ => search_path,
        };
        base.options(&options);
        let location = location(&base, &pg.schema);
        let mut pool_config = base.clone();
        pool_config.application_name(format!("keywarden pool {}", pg.agent_name));
        let mut dedicated_config = base;
        dedicated_config.application_name(&pg.agent_name);

        let tls = MakeRustlsConnect::new(tls_config(pg).map_err(setup)?);
        let manager = Manager::from_config(
            pool_config.clone(),
            tls.clone(),
            ManagerConfig {
                // A test query per checkout: after PostgreSQL restarted (or cut this
                // agent off), a dead connection is replaced instead of failing a call.
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pg.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|error| setup(format!("cannot build the connection pool: {error}")))?;
        Ok(PgConnector {
            pool_config,
            dedicated_config,
            tls,
            pool,
            schema: pg.schema.clone(),
            agent_name: pg.agent_name.clone(),
            location,
            redactor,
        })
    }

    /// The pool the repositories use.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A pooled connection.
    pub async fn pooled(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|error| self.error("cannot get a connection", &error))
    }

    /// A connection of its own, outside the pool, with `application_name` set to the
    /// agent name: session-level advisory locks taken on it last exactly as long as it.
    /// The handle is the task driving the connection; it ends when the connection does
    /// (the client dropped, the server gone), which is how a lost session is noticed.
    pub async fn dedicated(&self) -> Result<(tokio_postgres::Client, JoinHandle<()>), StoreError> {
        self.connect(&self.dedicated_config).await
    }

    /// A connection outside the pool with the pool's settings (migrations: their lock
    /// must go away with the connection, never stay behind in a pooled one).
    pub(super) async fn unpooled(
        &self,
    ) -> Result<(tokio_postgres::Client, JoinHandle<()>), StoreError> {
        self.connect(&self.pool_config).await
    }

    async fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<(tokio_postgres::Client, JoinHandle<()>), StoreError> {
        let (client, connection) = config
            .connect(self.tls.clone())
            .await
            .map_err(|error| self.error("cannot connect", &error))?;
        let redactor = self.redactor.clone();
        let location = self.location.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(
                    store = %location,
                    error = %redactor.clean(&error.to_string()),
                    "PostgreSQL connection lost"
                );
            }
        });
        Ok((client, task))
    }

    /// The schema holding keywarden's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// This agent's name (`[store.postgres] agent_name`).
    pub fn agent_name(&self) -> &str {
        &self.agent_name
    }

    /// Where the data lives, for messages: host, port, database and schema (never the
    /// user or password).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Text from the driver with the URL and its password blotted out.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.clean(text)
    }

    /// A store error for a failed step, redacted.
    pub fn error(&self, what: &str, error: &(dyn std::error::Error + 'static)) -> StoreError {
        StoreError::Postgres {
            location: self.location.clone(),
            detail: self
                .redactor
                .clean(&format!("{what}: {}", error_text(error))),
        }
    }
}

/// A driver error with its causes: tokio-postgres says only "db error" at the top, the
/// server's message is the source. A cause whose text is already there is not repeated.
pub fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// "postgresql://host:port/database (schema s)".
fn location(config: &tokio_postgres::Config, schema: &str) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("postgresql://{host}:{port}/{database} (schema {schema})")
}

/// rustls with the platform's verifier (chain and host name) and the extra CA.
fn tls_config(pg: &PgConfig) -> Result<ClientConfig, String> {
    crate::tls::install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS setup: {error}"))?;
    if !pg.tls {
        // sslmode=disable: never used; no root store to load.
        return Ok(builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth());
    }
    let mut extra: Vec<CertificateDer<'static>> = Vec::new();
    if let Some(path) = &pg.ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|error| format!("cannot read ca_file {}: {error}", path.display()))?;
        extra.extend(certs);
    }
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
        .map_err(|error| {
            format!(
                "no trusted roots for PostgreSQL's certificate ({error}): install the system's CA certificates or set [store.postgres] ca_file"
            )
        })?;
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}
