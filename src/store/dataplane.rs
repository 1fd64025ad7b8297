//! The dataplane job's tables: each key's vless:// link (fetched once, kept until the key
//! changes), the last probe of each distinct host:port, and where the rotation over a
//! server's ports continues. Written by the dataplane job's execute step only.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, parse_ts, ts};

/// One key's link as remembered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredLink {
    pub key_id: String,
    /// What the link was fetched for (uuid, port, short id, active): a change refetches.
    pub key_sig: String,
    pub host: String,
    pub port: u16,
    pub sni: Option<String>,
    pub fetched_at: DateTime<Utc>,
}

/// What one TLS probe of a VLESS port came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PortState {
    /// The handshake completed with a certificate valid for the server name.
    Open,
    /// No connection: refused, timed out, or the host did not resolve.
    Closed,
    /// Connected, but the TLS handshake failed (reset, alert, silence).
    TlsFailed,
    /// The handshake reached a certificate that does not verify for the server name.
    CertInvalid,
}

impl PortState {
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Open => "open",
            PortState::Closed => "closed",
            PortState::TlsFailed => "tls_failed",
            PortState::CertInvalid => "cert_invalid",
        }
    }

    pub fn parse(text: &str) -> Option<PortState> {
        [
            PortState::Open,
            PortState::Closed,
            PortState::TlsFailed,
            PortState::CertInvalid,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// The last probe of one host:port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PortRecord {
    /// `host:port`.
    pub endpoint: String,
    pub state: PortState,
    /// Why it is not open (the error), or the server name it was probed with.
    pub detail: String,
    /// The handshake's duration (open ports).
    pub latency_ms: Option<u64>,
    pub probed_at: DateTime<Utc>,
}

/// Where the rotation continues.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataplaneMemory {
    /// The last endpoint probed; the next run starts after it.
    pub cursor: Option<String>,
}

/// What one dataplane run writes, in one transaction.
#[derive(Debug, Clone, Copy)]
pub struct DataplaneCommit<'a> {
    /// Links fetched in this run.
    pub fetched: &'a [StoredLink],
    /// Keys whose links are forgotten (gone, or no longer active).
    pub forgotten: &'a [String],
    pub probed: &'a [PortRecord],
    /// Every endpoint the server has now; remembered probes of others are dropped.
    pub endpoints: &'a [String],
    pub cursor: Option<&'a str>,
    pub now: DateTime<Utc>,
}

impl Store {
    pub fn vless_links(&self, server: &str) -> Result<Vec<StoredLink>, StoreError> {
        type Row = (String, String, String, i64, Option<String>, String);
        let rows: Vec<Row> = self.tuples(
            "SELECT key_id, key_sig, host, port, sni, fetched_at FROM vless_links WHERE server = ?1 ORDER BY key_id",
            params![server],
        )?;
        rows.into_iter()
            .map(|(key_id, key_sig, host, port, sni, fetched)| {
                Ok(StoredLink {
                    key_id,
                    key_sig,
                    host,
                    port: u16::try_from(port).unwrap_or(0),
                    sni,
                    fetched_at: parse_ts(&self.path, "vless_links.fetched_at", &fetched)?,
                })
            })
            .collect()
    }

    pub fn vless_ports(&self, server: &str) -> Result<Vec<PortRecord>, StoreError> {
        type Row = (String, String, String, Option<i64>, String);
        let rows: Vec<Row> = self.tuples(
            "SELECT endpoint, state, detail, latency_ms, probed_at FROM vless_ports WHERE server = ?1 ORDER BY endpoint",
            params![server],
        )?;
        rows.into_iter()
            .map(|(endpoint, state, detail, latency, probed)| {
                Ok(PortRecord {
                    state: PortState::parse(&state).ok_or_else(|| StoreError::Corrupt {
                        path: self.path.clone(),
                        what: "vless_ports.state",
                        value: state.clone(),
                    })?,
                    endpoint,
                    detail,
                    latency_ms: latency.map(|ms| u64::try_from(ms).unwrap_or(0)),
                    probed_at: parse_ts(&self.path, "vless_ports.probed_at", &probed)?,
                })
            })
            .collect()
    }

    pub fn dataplane_memory(&self, server: &str) -> Result<DataplaneMemory, StoreError> {
        let cursor: Option<Option<String>> = self.with(|conn| {
            conn.query_row(
                "SELECT cursor FROM dataplane_state WHERE server = ?1",
                params![server],
                |r| r.get(0),
            )
            .optional()
        })?;
        Ok(DataplaneMemory {
            cursor: cursor.flatten(),
        })
    }

    /// Commit one dataplane run.
    pub fn dataplane_commit(
        &self,
        server: &str,
        commit: &DataplaneCommit<'_>,
    ) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            for key_id in commit.forgotten {
                tx.execute(
                    "DELETE FROM vless_links WHERE server = ?1 AND key_id = ?2",
                    params![server, key_id],
                )?;
            }
            for link in commit.fetched {
                tx.execute(
                    "INSERT INTO vless_links (server, key_id, key_sig, host, port, sni, fetched_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (server, key_id) DO UPDATE SET key_sig = ?3, host = ?4, port = ?5, sni = ?6, fetched_at = ?7",
                    params![server, link.key_id, link.key_sig, link.host, i64::from(link.port), link.sni, ts(link.fetched_at)],
                )?;
            }
            for port in commit.probed {
                tx.execute(
                    "INSERT INTO vless_ports (server, endpoint, state, detail, latency_ms, probed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (server, endpoint) DO UPDATE SET state = ?3, detail = ?4, latency_ms = ?5, probed_at = ?6",
                    params![
                        server,
                        port.endpoint,
                        port.state.as_str(),
                        port.detail,
                        port.latency_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
                        ts(port.probed_at)
                    ],
                )?;
            }
            let mut statement = tx.prepare("SELECT endpoint FROM vless_ports WHERE server = ?1")?;
            let known: Vec<String> = statement
                .query_map(params![server], |r| r.get(0))?
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
                params![server, commit.cursor, ts(commit.now)],
            )?;
            tx.commit()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, s).unwrap()
    }

    fn port(endpoint: &str, state: PortState) -> PortRecord {
        PortRecord {
            endpoint: endpoint.into(),
            state,
            detail: String::new(),
            latency_ms: Some(3),
            probed_at: at(1),
        }
    }

    #[test]
    fn a_run_round_trips_and_forgets_what_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let link = StoredLink {
            key_id: "k1".into(),
            key_sig: "u1|10001|ab|1".into(),
            host: "127.0.0.1".into(),
            port: 10001,
            sni: Some("www.example.com".into()),
            fetched_at: at(0),
        };
        let endpoints = vec!["127.0.0.1:10001".to_string(), "127.0.0.1:10002".to_string()];
        let probed = vec![
            port("127.0.0.1:10001", PortState::Open),
            port("127.0.0.1:10002", PortState::CertInvalid),
        ];
        store
            .dataplane_commit(
                "fra-1",
                &DataplaneCommit {
                    fetched: std::slice::from_ref(&link),
                    forgotten: &[],
                    probed: &probed,
                    endpoints: &endpoints,
                    cursor: Some("127.0.0.1:10002"),
                    now: at(2),
                },
            )
            .unwrap();
        assert_eq!(store.vless_links("fra-1").unwrap(), [link]);
        assert_eq!(store.vless_ports("fra-1").unwrap(), probed);
        assert_eq!(
            store.dataplane_memory("fra-1").unwrap().cursor.as_deref(),
            Some("127.0.0.1:10002")
        );
        store
            .dataplane_commit(
                "fra-1",
                &DataplaneCommit {
                    fetched: &[],
                    forgotten: &["k1".to_string()],
                    probed: &[],
                    endpoints: &endpoints[..1],
                    cursor: None,
                    now: at(3),
                },
            )
            .unwrap();
        assert!(store.vless_links("fra-1").unwrap().is_empty());
        assert_eq!(store.vless_ports("fra-1").unwrap(), probed[..1]);
        assert_eq!(store.dataplane_memory("fra-1").unwrap().cursor, None);
    }
}
