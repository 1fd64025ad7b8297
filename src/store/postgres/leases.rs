//! Leases on (server, job), in `job_leases`, as on SQLite (`store/sqlite/leases.rs`): the
//! row is locked (`FOR UPDATE`, or the insert's conflict) inside one transaction, so two
//! processes asking at once are serialised.

use tokio_postgres::Row;

use super::PgStore;
use super::columns::{PgResult, at, get};
use crate::model::{JobKind, Lease, stamp};
use crate::store::{LeaseGrant, LeaseLog, StoreFuture};

fn lease_from(row: &Row) -> PgResult<Lease> {
    Ok(Lease {
        server: get(row, 0)?,
        job: get(row, 1)?,
        holder: get(row, 2)?,
        acquired_at: at(row, 3)?,
        expires_at: at(row, 4)?,
    })
}

impl LeaseLog for PgStore {
    fn acquire(&self, wanted: &Lease) -> StoreFuture<'_, LeaseGrant> {
        let wanted = wanted.clone();
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // Make sure the row exists (without changing a live one) so that FOR UPDATE
            // below has something to lock: two first takers meet at the primary key.
            tx.execute(
                "INSERT INTO job_leases (server, job, holder, acquired_at, expires_at)
                 VALUES ($1, $2, '', $3, $3) ON CONFLICT (server, job) DO NOTHING",
                &[&wanted.server, &wanted.job, &stamp(wanted.acquired_at)],
            )
            .await?;
            let row = tx
                .query_one(
                    "SELECT server, job, holder, acquired_at, expires_at FROM job_leases
                     WHERE server = $1 AND job = $2 FOR UPDATE",
                    &[&wanted.server, &wanted.job],
                )
                .await?;
            let current = lease_from(&row)?;
            if !current.holder.is_empty()
                && current.holder != wanted.holder
                && current.expires_at > wanted.acquired_at
            {
                return Ok(LeaseGrant::HeldBy(current));
            }
            // A renewal keeps when its holder first took it.
            let acquired_at = if current.holder == wanted.holder {
                current.acquired_at
            } else {
                wanted.acquired_at
            };
            tx.execute(
                "UPDATE job_leases SET holder = $3, acquired_at = $4, expires_at = $5
                 WHERE server = $1 AND job = $2",
                &[
                    &wanted.server,
                    &wanted.job,
                    &wanted.holder,
                    &stamp(acquired_at),
                    &stamp(wanted.expires_at),
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(LeaseGrant::Granted)
        })
    }

    fn release(&self, server: &str, job: JobKind, holder: &str) -> StoreFuture<'_, ()> {
        let (server, holder) = (server.to_owned(), holder.to_owned());
        self.run(async move {
            let client = self.client().await?;
            client
                .execute(
                    "DELETE FROM job_leases WHERE server = $1 AND job = $2 AND holder = $3",
                    &[&server, &job, &holder],
                )
                .await?;
            Ok(())
        })
    }
}
