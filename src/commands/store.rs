//! `keywarden store migrate --to postgres`: move a SQLite agent's state into PostgreSQL
//! (issue 13). The configuration already names the PostgreSQL store (`[agent] store =
//! "postgres"` with `[store.postgres]`); the SQLite store is read from
//! `[agent].state_dir`. Exit 0 with the rows copied per table, 2 when the schema is not
//! empty or there is nothing to copy, 1 on a failure (nothing is copied then: one
//! transaction).

use std::path::Path;

use super::{EXIT_OK, EXIT_PROBLEMS};
use crate::cli::MigrateTarget;
use crate::config::StoreChoice;
use crate::store::postgres::import_sqlite;

pub async fn migrate(path: &Path, to: MigrateTarget) -> anyhow::Result<u8> {
    crate::logging::init(crate::logging::LogFormat::Auto, "warn");
    let config = match crate::app::load_config(path) {
        Ok(loaded) => loaded.config,
        Err(report) => {
            eprint!("{report}");
            return Ok(EXIT_PROBLEMS);
        }
    };
    let MigrateTarget::Postgres = to;
    let StoreChoice::Postgres(pg) = &config.store else {
        eprintln!(
            "keywarden store migrate: {} names no PostgreSQL store: set [agent] store = \"postgres\" and [store.postgres] (the copy goes into that schema)",
            path.display()
        );
        return Ok(EXIT_PROBLEMS);
    };
    // A SQLite agent still running would write on after the copy: refuse, as a second
    // daemon would be refused.
    let _lock = match crate::store::StateDirLock::acquire(&config.agent.state_dir) {
        Ok(lock) => lock,
        Err(error) => {
            eprintln!("keywarden store migrate: {error}");
            return Ok(EXIT_PROBLEMS);
        }
    };
    let copied = match import_sqlite(&config.agent.state_dir, pg).await {
        Ok(copied) => copied,
        Err(error) => {
            eprintln!("keywarden store migrate: {error}");
            return Ok(if error.is_refusal() { EXIT_PROBLEMS } else { 1 });
        }
    };
    let total: u64 = copied.iter().map(|(_, rows)| rows).sum();
    crate::outln!(
        "copied {} into PostgreSQL schema {}:",
        config.agent.state_dir.join(crate::store::DB_FILE).display(),
        pg.schema
    )?;
    let width = copied
        .iter()
        .map(|(table, _)| table.len())
        .max()
        .unwrap_or(0);
    for (table, rows) in &copied {
        crate::outln!("  {table:<width$}  {rows}")?;
    }
    crate::outln!("  {:<width$}  {total}", "total")?;
    Ok(EXIT_OK)
}
