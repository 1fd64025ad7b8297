//! The store's contract on both backends: every repository test (written once, here)
//! (round trips, pruning, ordering, at-most-once intents, the append-only audit log,
//! unknown stored names as errors) runs against SQLite and against a real PostgreSQL
//! (tests/support/pg.rs; a database of its own per test, so they run in parallel).
//! Without PostgreSQL's binaries the PostgreSQL half skips with a message.

mod support;

#[path = "store_contract/alerts.rs"]
mod alerts;
#[path = "store_contract/core.rs"]
mod core;
#[path = "store_contract/dataplane.rs"]
mod dataplane;
#[path = "store_contract/leases.rs"]
mod leases;
#[path = "store_contract/quota.rs"]
mod quota;
#[path = "store_contract/report.rs"]
mod report;

use std::path::PathBuf;

use keywarden::config::PgConfig;
use keywarden::store::{DB_FILE, Store};

/// One test's store, and a way around the interface for what it does not offer
/// (writing a value the build does not know, trying to change the audit log).
pub struct Ctx {
    pub store: Store,
    raw: Raw,
    _dir: Option<tempfile::TempDir>,
}

enum Raw {
    Sqlite(PathBuf),
    Postgres {
        config: Box<PgConfig>,
        admin: tokio_postgres::Client,
    },
}

impl Ctx {
    async fn sqlite() -> Ctx {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let store = Store::open(&state).unwrap();
        Ctx {
            store,
            raw: Raw::Sqlite(state),
            _dir: Some(dir),
        }
    }

    async fn postgres(test: &str) -> Option<Ctx> {
        let pg = support::pg::skip_without_pg(test)?;
        let database = pg.database().await;
        let config = pg.config(&database, "contract");
        let store = Store::open_postgres(&config).await.unwrap();
        let admin = pg.admin(&database).await;
        admin
            .batch_execute("SET search_path = keywarden")
            .await
            .unwrap();
        Some(Ctx {
            store,
            raw: Raw::Postgres {
                config: Box::new(config),
                admin,
            },
            _dir: None,
        })
    }

    /// Run one SQL statement beside the store.
    pub async fn exec(&self, sql: &str) -> Result<u64, String> {
        match &self.raw {
            Raw::Sqlite(state) => rusqlite::Connection::open(state.join(DB_FILE))
                .and_then(|conn| conn.execute(sql, []))
                .map(|n| n as u64)
                .map_err(|e| e.to_string()),
            Raw::Postgres { admin, .. } => admin
                .execute(sql, &[])
                .await
                .map_err(|e| keywarden::store::postgres::error_text(&e)),
        }
    }

    /// The same store opened again (a restart).
    pub async fn reopen(&self) -> Store {
        match &self.raw {
            Raw::Sqlite(state) => Store::open(state).unwrap(),
            Raw::Postgres { config, .. } => Store::open_postgres(config).await.unwrap(),
        }
    }
}

macro_rules! contract {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let ctx = super::Ctx::sqlite().await;
                    super::$module::$case(&ctx).await;
                }
            )*
        }

        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(ctx) = super::Ctx::postgres(stringify!($case)).await else {
                        return;
                    };
                    super::$module::$case(&ctx).await;
                }
            )*
        }
    };
}

contract!(
    core::runs_keep_the_latest_per_job_and_prune,
    core::drift_memory_round_trips,
    core::sync_window_counts_attempts_since,
    core::old_attempts_are_pruned_but_each_servers_latest_is_kept,
    core::audit_log_is_append_only,
    core::findings_open_continue_and_resolve,
    core::server_state_round_trips,
    core::unknown_stored_names_are_errors_not_defaults,
    quota::ledger_and_memory_round_trip,
    quota::a_reread_key_moves_only_its_reading_time,
    quota::an_intent_happens_once_per_key_and_a_failed_one_is_armed_again,
    quota::notices_are_recorded_once_per_server_kind_and_period,
    quota::failures_are_counted_without_touching_the_rest_of_the_memory,
    alerts::states_and_outbox_survive_a_reopen,
    alerts::sink_health_round_trips,
    alerts::an_unknown_status_is_an_error_not_a_default,
    report::daily_usage_adds_up_per_day_and_key,
    report::daily_usage_is_pruned_after_retention,
    report::availability_counts_checks_per_hour,
    report::deliveries_count_attempts,
    dataplane::a_run_round_trips_and_forgets_what_is_gone,
    dataplane::memories_round_trip_and_an_unknown_state_is_an_error,
    leases::leases_keep_processes_apart_and_expire,
    leases::concurrent_takers_get_one_lease,
    leases::the_health_probe_commits_a_write,
);
