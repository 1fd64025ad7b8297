//! The data plane's memories: the reality job's 2.x streak (`reality_state`) and the
//! dataplane job's links, port probes and rotation.

use chrono::{DateTime, Utc};

use super::PgStore;
use super::columns::{at, count, get, opt_at};
use crate::model::dataplane::{DataplaneMemory, PortRecord, RealityMemory, StoredLink};
use crate::model::stamp;
use crate::store::{DataplaneCommit, DataplaneLog, RealityLog, StoreFuture};

impl RealityLog for PgStore {
    fn memory(&self, server: &str) -> StoreFuture<'_, RealityMemory> {
        let server = server.to_owned();
        self.run(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT confirmations, first_seen, signature, fixed_signature, fixed_at FROM reality_state WHERE server = $1",
                    &[&server],
                )
                .await?;
            let Some(row) = row else {
                return Ok(RealityMemory::default());
            };
            Ok(RealityMemory {
                confirmations: count(&row, 0)?,
                first_seen: opt_at(&row, 1)?,
                signature: get(&row, 2)?,
                fixed_signature: get(&row, 3)?,
                fixed_at: opt_at(&row, 4)?,
            })
        })
    }

    fn save(
        &self,
        server: &str,
        memory: &RealityMemory,
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, ()> {
        let (server, memory) = (server.to_owned(), memory.clone());
        self.run(async move {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO reality_state (server, confirmations, first_seen, signature, fixed_signature, fixed_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (server) DO UPDATE SET confirmations = $2, first_seen = $3, signature = $4,
                         fixed_signature = $5, fixed_at = $6, updated_at = $7",
                    &[
                        &server,
                        &i64::from(memory.confirmations),
                        &memory.first_seen.map(stamp),
                        &memory.signature,
                        &memory.fixed_signature,
                        &memory.fixed_at.map(stamp),
                        &stamp(now),
                    ],
                )
                .await?;
            Ok(())
        })
    }
}

impl DataplaneLog for PgStore {
    fn links(&self, server: &str) -> StoreFuture<'_, Vec<StoredLink>> {
        let server = server.to_owned();
        self.run(async move {
            let client = self.client().await?;
            client
                .query(
                    "SELECT key_id, key_sig, host, port, sni, fetched_at FROM vless_links WHERE server = $1 ORDER BY key_id",
                    &[&server],
                )
                .await?
                .iter()
                .map(|row| {
                    Ok(StoredLink {
                        key_id: get(row, 0)?,
                        key_sig: get(row, 1)?,
                        host: get(row, 2)?,
                        port: u16::try_from(get::<i64>(row, 3)?).unwrap_or(0),
                        sni: get(row, 4)?,
                        fetched_at: at(row, 5)?,
                    })
                })
                .collect()
        })
    }

    fn ports(&self, server: &str) -> StoreFuture<'_, Vec<PortRecord>> {
        let server = server.to_owned();
        self.run(async move {
            let client = self.client().await?;
            client
                .query(
                    "SELECT endpoint, state, detail, latency_ms, probed_at FROM vless_ports WHERE server = $1 ORDER BY endpoint",
                    &[&server],
                )
                .await?
                .iter()
                .map(|row| {
                    Ok(PortRecord {
                        endpoint: get(row, 0)?,
                        state: get(row, 1)?,
                        detail: get(row, 2)?,
                        latency_ms: get::<Option<i64>>(row, 3)?
                            .map(|ms| u64::try_from(ms).unwrap_or(0)),
                        probed_at: at(row, 4)?,
                    })
                })
                .collect()
        })
    }

    fn memory(&self, server: &str) -> StoreFuture<'_, DataplaneMemory> {
        let server = server.to_owned();
        self.run(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT cursor FROM dataplane_state WHERE server = $1",
                    &[&server],
                )
                .await?;
            Ok(DataplaneMemory {
                cursor: match row {
                    Some(row) => get(&row, 0)?,
                    None => None,
                },
            })
        })
    }

    fn commit(&self, server: &str, commit: DataplaneCommit) -> StoreFuture<'_, ()> {
        let server = server.to_owned();
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            tx.execute(
                "DELETE FROM vless_links WHERE server = $1 AND key_id = ANY($2)",
                &[&server, &commit.forgotten],
            )
            .await?;
            for link in &commit.fetched {
                tx.execute(
                    "INSERT INTO vless_links (server, key_id, key_sig, host, port, sni, fetched_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (server, key_id) DO UPDATE SET key_sig = $3, host = $4, port = $5, sni = $6, fetched_at = $7",
                    &[&server, &link.key_id, &link.key_sig, &link.host, &i64::from(link.port), &link.sni, &stamp(link.fetched_at)],
                )
                .await?;
            }
            for port in &commit.probed {
                tx.execute(
                    "INSERT INTO vless_ports (server, endpoint, state, detail, latency_ms, probed_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (server, endpoint) DO UPDATE SET state = $3, detail = $4, latency_ms = $5, probed_at = $6",
                    &[
                        &server,
                        &port.endpoint,
                        &port.state,
                        &port.detail,
                        &port.latency_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
                        &stamp(port.probed_at),
                    ],
                )
                .await?;
            }
            // Remembered probes of endpoints the server no longer has are dropped.
            tx.execute(
                "DELETE FROM vless_ports WHERE server = $1 AND NOT (endpoint = ANY($2))",
                &[&server, &commit.endpoints],
            )
            .await?;
            tx.execute(
                "INSERT INTO dataplane_state (server, cursor, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (server) DO UPDATE SET cursor = $2, updated_at = $3",
                &[&server, &commit.cursor, &stamp(commit.now)],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }
}
