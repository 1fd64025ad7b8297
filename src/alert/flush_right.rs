//! Who may deliver the outbox besides the daemon's dispatcher. `check --notify` flushes
//! its run's notices itself; with a daemon delivering the same outbox meanwhile, both
//! would send every pending notice (outbox rows carry no claim). So a flush first takes
//! the dispatcher's right: with SQLite the file lock `<state_dir>/keywarden.dispatch.lock`
//! (a running daemon holds it all its life), with PostgreSQL the alert dispatcher's
//! advisory lock (one agent of the fleet holds it). Not granted: the notices stay queued
//! for whoever holds it, and the report says so.

use crate::config::{Config, StoreChoice};
use crate::store::{DispatchLock, LockError};

/// Held while a one-shot flush delivers; dropping it gives the right back.
#[derive(Debug)]
pub enum FlushGuard {
    File(DispatchLock),
    /// The dedicated session holding the dispatcher's advisory lock: the lock ends
    /// with it.
    Postgres(tokio_postgres::Client, tokio::task::JoinHandle<()>),
}

/// The answer to "may this process deliver the outbox now?".
#[derive(Debug)]
pub enum FlushRight {
    Granted(FlushGuard),
    /// Someone else delivers (or nobody can be sure): who, for the report.
    Elsewhere(String),
}

/// Take the dispatcher's right for a one-shot flush, without waiting.
pub async fn claim(config: &Config) -> FlushRight {
    match &config.store {
        StoreChoice::Sqlite => match DispatchLock::acquire(&config.agent.state_dir) {
            Ok(lock) => FlushRight::Granted(FlushGuard::File(lock)),
            Err(LockError::Held { holder, .. }) => {
                FlushRight::Elsewhere(format!("the running daemon ({holder})"))
            }
            Err(error) => FlushRight::Elsewhere(format!(
                "the daemon (this process could not check who delivers: {error})"
            )),
        },
        StoreChoice::Postgres(pg) => {
            let key = crate::lead::plan::dispatcher_lock_key(&pg.schema);
            let held_elsewhere =
                "the agent holding the alert dispatcher lock (`keywarden status` names it)";
            let connector = match crate::store::postgres::PgConnector::from_config(pg) {
                Ok(connector) => connector,
                Err(error) => {
                    return FlushRight::Elsewhere(format!(
                        "{held_elsewhere} (this process could not check: {error})"
                    ));
                }
            };
            let (client, connection) = match connector.dedicated().await {
                Ok(pair) => pair,
                Err(error) => {
                    return FlushRight::Elsewhere(format!(
                        "{held_elsewhere} (this process could not check: {error})"
                    ));
                }
            };
            match client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .map(|row| row.get::<_, bool>(0))
            {
                Ok(true) => FlushRight::Granted(FlushGuard::Postgres(client, connection)),
                Ok(false) => FlushRight::Elsewhere(held_elsewhere.to_string()),
                Err(error) => FlushRight::Elsewhere(format!(
                    "{held_elsewhere} (this process could not check: {})",
                    pg.redactor().clean(&error.to_string())
                )),
            }
        }
    }
}
