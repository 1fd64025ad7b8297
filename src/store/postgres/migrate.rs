//! Bringing a PostgreSQL schema to this build's version. Two agents starting together
//! must not both apply a step: the whole run holds a session-level advisory lock (a fixed
//! key) on a connection of its own, so the second waits, then finds nothing to do. The
//! lock goes away with that connection whatever happens (error, panic, kill -9).
//!
//! The applied versions are rows of `schema_migrations`; each step and its row commit
//! together.

use std::time::Duration;

use tokio_postgres::Client;

use super::connect::PgConnector;
use super::schema::{PG_MIGRATIONS, current_version};
use crate::store::StoreError;

/// The advisory lock key of migrations ("kwmigrat" in ASCII): the same in every agent
/// and every keywarden version.
pub const MIGRATION_LOCK_KEY: i64 = 0x6b77_6d69_6772_6174;

/// How long an agent waits for another one's migration before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(120);

/// What a migration run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The version found (0: a new schema).
    pub from: i64,
    /// The version now.
    pub to: i64,
    /// Steps this run applied (0 when another agent had already done them).
    pub applied: usize,
}

/// Create the schema if missing and apply the missing steps, under the migration lock.
pub async fn migrate(connector: &PgConnector) -> Result<Migrated, StoreError> {
    let (client, task) = connector.unpooled().await?;
    let result = migrate_on(connector, &client).await;
    // Closing the session releases the lock even if unlocking failed.
    drop(client);
    let _ = task.await;
    result
}

async fn migrate_on(connector: &PgConnector, client: &Client) -> Result<Migrated, StoreError> {
    let fail = |what: &str, error: tokio_postgres::Error| connector.error(what, &error);
    client
        .batch_execute(&format!("SET lock_timeout = '{}s'", LOCK_WAIT.as_secs()))
        .await
        .map_err(|e| fail("cannot set lock_timeout", e))?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(|e| {
            fail(
                "waiting for another agent's migration (advisory lock) failed",
                e,
            )
        })?;
    let schema = connector.schema();
    // Only when missing: CREATE SCHEMA needs CREATE on the database even with IF NOT
    // EXISTS, and an operator may have made the schema for a role without it.
    let exists = client
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .map_err(|e| fail("cannot look the schema up", e))?
        .is_some();
    if !exists {
        // The name is a validated identifier (lower case, digits, _).
        client
            .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .map_err(|e| {
                fail(
                    &format!(
                        "cannot create schema {schema} (grant CREATE on the database, or create the schema for this role)"
                    ),
                    e,
                )
            })?;
    }
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    BIGINT PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(|e| fail("cannot create schema_migrations", e))?;
    let from: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(|e| fail("cannot read the schema version", e))?
        .get(0);
    let supported = current_version();
    if from > supported {
        return Err(StoreError::TooNew {
            path: connector.location().into(),
            found: from,
            supported,
        });
    }
    let mut applied = 0;
    for (index, step) in PG_MIGRATIONS.iter().enumerate().skip(from as usize) {
        let version = index as i64 + 1;
        let sql = format!(
            "BEGIN;\n{step}\nINSERT INTO schema_migrations (version) VALUES ({version});\nCOMMIT;"
        );
        if let Err(error) = client.batch_execute(&sql).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(fail(
                &format!("migration to version {version} failed"),
                error,
            ));
        }
        applied += 1;
        tracing::info!(store = %connector.location(), version, "state store migrated");
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(|e| fail("cannot release the migration lock", e))?;
    Ok(Migrated {
        from,
        to: from.max(supported),
        applied,
    })
}
