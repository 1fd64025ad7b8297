//! Leases on (server, job), in `job_leases`: taken in one IMMEDIATE transaction, so two
//! processes asking at once are serialised by SQLite's write lock.

use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use super::SqliteStore;
use super::columns::at;
use crate::model::{JobKind, Lease, stamp};
use crate::store::{LeaseGrant, LeaseLog, StoreFuture};

fn lease_from(row: &Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        server: row.get(0)?,
        job: row.get(1)?,
        holder: row.get(2)?,
        acquired_at: at(row, 3)?,
        expires_at: at(row, 4)?,
    })
}

impl LeaseLog for SqliteStore {
    fn acquire(&self, wanted: &Lease) -> StoreFuture<'_, LeaseGrant> {
        let wanted = wanted.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current = tx
                .query_row(
                    "SELECT server, job, holder, acquired_at, expires_at FROM job_leases WHERE server = ?1 AND job = ?2",
                    params![wanted.server, wanted.job],
                    lease_from,
                )
                .optional()?;
            if let Some(current) = current
                && current.holder != wanted.holder
                && current.expires_at > wanted.acquired_at
            {
                return Ok(LeaseGrant::HeldBy(current));
            }
            // A renewal keeps when its holder first took it.
            tx.execute(
                "INSERT INTO job_leases (server, job, holder, acquired_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (server, job) DO UPDATE SET
                     acquired_at = CASE WHEN holder = excluded.holder THEN acquired_at ELSE excluded.acquired_at END,
                     holder = excluded.holder,
                     expires_at = excluded.expires_at",
                params![
                    wanted.server,
                    wanted.job,
                    wanted.holder,
                    stamp(wanted.acquired_at),
                    stamp(wanted.expires_at)
                ],
            )?;
            tx.commit()?;
            Ok(LeaseGrant::Granted)
        })
    }

    fn release(&self, server: &str, job: JobKind, holder: &str) -> StoreFuture<'_, ()> {
        let (server, holder) = (server.to_owned(), holder.to_owned());
        self.call(move |conn| {
            conn.execute(
                "DELETE FROM job_leases WHERE server = ?1 AND job = ?2 AND holder = ?3",
                params![server, job, holder],
            )?;
            Ok(())
        })
    }
}
