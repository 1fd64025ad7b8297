//! The data plane's memories: the reality job's 2.x streak (`reality_state`) and the
//! dataplane job's links, port probes and rotation (`vless_links`, `vless_ports`,
//! `dataplane_state`).

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::columns::{at, count, opt_at};
use crate::model::dataplane::{DataplaneMemory, PortRecord, RealityMemory, StoredLink};
use crate::model::stamp;
use crate::store::{DataplaneCommit, DataplaneLog, RealityLog, StoreFuture};

impl RealityLog for SqliteStore {
    fn memory(&self, server: &str) -> StoreFuture<'_, RealityMemory> {
        let server = server.to_owned();
        self.call(move |conn| {
            conn.query_row(
                "SELECT confirmations, first_seen, signature, fixed_signature, fixed_at FROM reality_state WHERE server = ?1",
                params![server],
                |row| {
                    Ok(RealityMemory {
                        confirmations: count(row, 0)?,
                        first_seen: opt_at(row, 1)?,
                        signature: row.get(2)?,
                        fixed_signature: row.get(3)?,
                        fixed_at: opt_at(row, 4)?,
                    })
                },
            )
            .optional()
            .map(Option::unwrap_or_default)
        })
    }

    fn save(
        &self,
        server: &str,
        memory: &RealityMemory,
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, ()> {
        let (server, memory) = (server.to_owned(), memory.clone());
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO reality_state (server, confirmations, first_seen, signature, fixed_signature, fixed_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (server) DO UPDATE SET confirmations = ?2, first_seen = ?3, signature = ?4,
                     fixed_signature = ?5, fixed_at = ?6, updated_at = ?7",
                params![
                    server,
                    i64::from(memory.confirmations),
                    memory.first_seen.map(stamp),
                    memory.signature,
                    memory.fixed_signature,
                    memory.fixed_at.map(stamp),
                    stamp(now)
                ],
            )
            .map(drop)
        })
    }
}

impl DataplaneLog for SqliteStore {
    fn links(&self, server: &str) -> StoreFuture<'_, Vec<StoredLink>> {
        let server = server.to_owned();
        self.call(move |conn| {
            let mut statement = conn.prepare(
                "SELECT key_id, key_sig, host, port, sni, fetched_at FROM vless_links WHERE server = ?1 ORDER BY key_id",
            )?;
            let rows = statement.query_map(params![server], |row| {
                Ok(StoredLink {
                    key_id: row.get(0)?,
                    key_sig: row.get(1)?,
                    host: row.get(2)?,
                    port: row.get(3)?,
                    sni: row.get(4)?,
                    fetched_at: at(row, 5)?,
                })
            })?;
            rows.collect()
        })
    }

    fn ports(&self, server: &str) -> StoreFuture<'_, Vec<PortRecord>> {
        let server = server.to_owned();
        self.call(move |conn| {
            let mut statement = conn.prepare(
                "SELECT endpoint, state, detail, latency_ms, probed_at FROM vless_ports WHERE server = ?1 ORDER BY endpoint",
            )?;
            let rows = statement.query_map(params![server], |row| {
                Ok(PortRecord {
                    endpoint: row.get(0)?,
                    state: row.get(1)?,
                    detail: row.get(2)?,
                    latency_ms: row
                        .get::<_, Option<i64>>(3)?
                        .map(|ms| u64::try_from(ms).unwrap_or(0)),
                    probed_at: at(row, 4)?,
                })
            })?;
            rows.collect()
        })
    }

    fn memory(&self, server: &str) -> StoreFuture<'_, DataplaneMemory> {
        let server = server.to_owned();
        self.call(move |conn| {
            let cursor: Option<Option<String>> = conn
                .query_row(
                    "SELECT cursor FROM dataplane_state WHERE server = ?1",
                    params![server],
                    |row| row.get(0),
                )
                .optional()?;
            Ok(DataplaneMemory {
                cursor: cursor.flatten(),
            })
        })
    }

    fn commit(&self, server: &str, commit: DataplaneCommit) -> StoreFuture<'_, ()> {
        let server = server.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            // Cached statements: a first run commits one link per key (100 000 on a
            // 500 x 200 fleet), and compiling the statement each time cost more than
            // running it.
            for key_id in &commit.forgotten {
                tx.prepare_cached("DELETE FROM vless_links WHERE server = ?1 AND key_id = ?2")?
                    .execute(params![server, key_id])?;
            }
            for link in &commit.fetched {
                tx.prepare_cached(
                    "INSERT INTO vless_links (server, key_id, key_sig, host, port, sni, fetched_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (server, key_id) DO UPDATE SET key_sig = ?3, host = ?4, port = ?5, sni = ?6, fetched_at = ?7",
                )?
                .execute(params![server, link.key_id, link.key_sig, link.host, link.port, link.sni, stamp(link.fetched_at)])?;
            }
            for port in &commit.probed {
                tx.prepare_cached(
                    "INSERT INTO vless_ports (server, endpoint, state, detail, latency_ms, probed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (server, endpoint) DO UPDATE SET state = ?3, detail = ?4, latency_ms = ?5, probed_at = ?6",
                )?
                .execute(params![
                        server,
                        port.endpoint,
                        port.state,
                        port.detail,
                        port.latency_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
                        stamp(port.probed_at)
                    ])?;
            }
            let mut statement = tx.prepare("SELECT endpoint FROM vless_ports WHERE server = ?1")?;
            let known: Vec<String> = statement
                .query_map(params![server], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            drop(statement);
            for endpoint in known.iter().filter(|e| !commit.endpoints.contains(e)) {
                tx.execute(
                    "DELETE FROM vless_ports WHERE server = ?1 AND endpoint = ?2",
                    params![server, endpoint],
                )?;
            }
            tx.execute(
                "INSERT INTO dataplane_state (server, cursor, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (server) DO UPDATE SET cursor = ?2, updated_at = ?3",
                params![server, commit.cursor, stamp(commit.now)],
            )?;
            tx.commit()
        })
    }
}
