//! The PostgreSQL backend (issue 13): one schema in a database that several agents share.
//! Every SQL statement and every PostgreSQL detail of the repositories lives below this
//! module; `connect` opens connections (pooled, and dedicated ones for session-level
//! advisory locks), `migrate` brings the schema to this build's version under a lock.

mod alerts;
mod columns;
mod connect;
mod dataplane;
mod findings;
mod import;
mod leases;
mod migrate;
mod quota;
mod report;
mod retention;
mod runs;
mod schema;
mod store;

pub use connect::{CONNECT_TIMEOUT, PgConnector, error_text};
pub use import::{Copied, ImportError, import_sqlite};
pub use migrate::{MIGRATION_LOCK_KEY, Migrated, migrate};
pub use schema::{PG_ONLY_TABLES, current_version};
pub use store::PgStore;
