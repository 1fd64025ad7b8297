//! `PgStore`: the PostgreSQL backend over a pool. Each repository call takes a pooled
//! connection, does its statements (in one transaction where SQLite uses one) and gives
//! the connection back; errors leave through the URL's redactor.

use std::future::Future;

use chrono::Utc;
use deadpool_postgres::Object;

use super::columns::{PgFail, PgResult};
use super::connect::PgConnector;
use super::migrate::{Migrated, migrate};
use super::schema::current_version;
use crate::config::PgConfig;
use crate::model::stamp;
use crate::store::{
    AlertLog, AuditLog, Backend, DataplaneLog, FindingLog, LeaseLog, QuotaLog, RealityLog,
    ReportLog, RetentionLog, RunLog, ServerLog, StoreError, StoreFuture, SyncLog,
};

/// The PostgreSQL backend.
#[derive(Clone, Debug)]
pub struct PgStore {
    connector: PgConnector,
}

impl PgStore {
    /// Connect and bring the schema to this build's version (under the migration lock).
    pub async fn open(pg: &PgConfig) -> Result<(PgStore, Migrated), StoreError> {
        let connector = PgConnector::from_config(pg)?;
        let migrated = migrate(&connector).await?;
        Ok((PgStore { connector }, migrated))
    }

    /// Connect only to read (`status`, `usage`): no migration; the schema must be this
    /// build's version.
    pub async fn open_for_reading(pg: &PgConfig) -> Result<PgStore, StoreError> {
        let store = PgStore {
            connector: PgConnector::from_config(pg)?,
        };
        let found = store.version().await.map_err(|fail| store.error(fail))?;
        let supported = current_version();
        if found > supported {
            return Err(StoreError::TooNew {
                path: store.connector.location().into(),
                found,
                supported,
            });
        }
        if found < supported {
            return Err(StoreError::Postgres {
                location: store.connector.location().to_owned(),
                detail: format!(
                    "schema version {found} is older than this keywarden's ({supported}); start `keywarden run` once to migrate it"
                ),
            });
        }
        Ok(store)
    }

    /// The connector (pool, dedicated connections, redaction) of this store.
    pub fn connector(&self) -> &PgConnector {
        &self.connector
    }

    /// A pooled connection.
    pub(super) async fn client(&self) -> PgResult<Object> {
        Ok(self.connector.pool().get().await?)
    }

    /// Run `work`, turning its failure into a redacted `StoreError`.
    pub(super) fn run<'a, T: Send + 'a>(
        &'a self,
        work: impl Future<Output = PgResult<T>> + Send + 'a,
    ) -> StoreFuture<'a, T> {
        Box::pin(async move { work.await.map_err(|fail| self.error(fail)) })
    }

    fn error(&self, fail: PgFail) -> StoreError {
        match fail {
            PgFail::Db(error) => self.connector.error("query failed", &error),
            PgFail::Pool(error) => self.connector.error("cannot get a connection", &error),
            PgFail::Corrupt { column, detail } => StoreError::Corrupt {
                path: self.connector.location().into(),
                column,
                detail: self.connector.redact(&detail),
            },
        }
    }

    async fn version(&self) -> PgResult<i64> {
        let client = self.client().await?;
        // Before the first migration there is no version table: version 0.
        let row = client
            .query_one(
                "SELECT CASE WHEN to_regclass('schema_migrations') IS NULL THEN 0
                     ELSE (SELECT COALESCE(MAX(version), 0) FROM schema_migrations) END",
                &[],
            )
            .await?;
        super::columns::get(&row, 0)
    }
}

impl Backend for PgStore {
    fn runs(&self) -> &dyn RunLog {
        self
    }

    fn sync(&self) -> &dyn SyncLog {
        self
    }

    fn audit(&self) -> &dyn AuditLog {
        self
    }

    fn findings(&self) -> &dyn FindingLog {
        self
    }

    fn servers(&self) -> &dyn ServerLog {
        self
    }

    fn quota(&self) -> &dyn QuotaLog {
        self
    }

    fn alerts(&self) -> &dyn AlertLog {
        self
    }

    fn report(&self) -> &dyn ReportLog {
        self
    }

    fn reality(&self) -> &dyn RealityLog {
        self
    }

    fn dataplane(&self) -> &dyn DataplaneLog {
        self
    }

    fn leases(&self) -> &dyn LeaseLog {
        self
    }

    fn retention(&self) -> &dyn RetentionLog {
        self
    }

    fn check_writable(&self) -> StoreFuture<'_, ()> {
        // A committed write (a rolled-back one proves nothing: it passed on a read-only
        // replica's twin and a full disk alike).
        self.run(async move {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO store_probe (id, at, writes) VALUES (1, $1, 1)
                     ON CONFLICT (id) DO UPDATE SET at = excluded.at, writes = store_probe.writes + 1",
                    &[&stamp(Utc::now())],
                )
                .await?;
            Ok(())
        })
    }

    fn schema_version(&self) -> StoreFuture<'_, i64> {
        self.run(self.version())
    }

    fn location(&self) -> String {
        self.connector.location().to_owned()
    }
}
