//! The leader task's SQL, and what `status` reads: the `agents` rows, the advisory locks
//! granted in this database with their holders' `application_name`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use crate::lead::fleet::{AgentRow, FleetView};
use crate::lead::plan::{self, LiveAgent};

/// Upsert this agent's row, renewed now (PostgreSQL's clock).
pub(super) async fn renew(
    client: &Client,
    schema: &str,
    agent: &str,
    since: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO {}.agents (agent_name, host, pid, started_at, renewed_at) \
         VALUES ($1, $2, $3, to_timestamp($4::float8 / 1000000.0), now()) \
         ON CONFLICT (agent_name) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, \
         started_at = EXCLUDED.started_at, renewed_at = now()",
        quote_ident(schema)
    );
    let pid = i64::from(std::process::id());
    let since = since.timestamp_micros() as f64;
    client
        .execute(&sql, &[&agent, &host_name(), &pid, &since])
        .await?;
    Ok(())
}

/// Give up these session-level locks.
pub(super) async fn unlock(client: &Client, keys: &[i64]) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "SELECT pg_advisory_unlock(k) FROM unnest($1::bigint[]) AS k",
            &[&keys],
        )
        .await?;
    Ok(())
}

/// Try these locks; the keys granted.
pub(super) async fn try_lock(
    client: &Client,
    keys: &[i64],
) -> Result<Vec<i64>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT k, pg_try_advisory_lock(k) FROM unnest($1::bigint[]) AS k",
            &[&keys],
        )
        .await?;
    Ok(rows
        .iter()
        .filter(|row| row.get::<_, bool>(1))
        .map(|row| row.get(0))
        .collect())
}

/// When this connection's session began, by PostgreSQL's clock.
pub(super) async fn session_start(client: &Client) -> Result<DateTime<Utc>, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT (extract(epoch FROM now()) * 1000000)::bigint", &[])
        .await?;
    Ok(micros(row.get(0)))
}

fn micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// The agents renewed within `window`, by name.
pub async fn live_agents(
    client: &Client,
    schema: &str,
    window: Duration,
) -> Result<Vec<LiveAgent>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT agent_name, (extract(epoch FROM started_at) * 1000000)::bigint FROM {}.agents \
         WHERE renewed_at > now() - make_interval(secs => $1::float8) ORDER BY agent_name",
        quote_ident(schema)
    );
    let rows = client.query(&sql, &[&window.as_secs_f64()]).await?;
    Ok(rows
        .iter()
        .map(|row| LiveAgent {
            name: row.get(0),
            since: micros(row.get(1)),
        })
        .collect())
}

/// One advisory lock granted in this database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedLock {
    /// The `bigint` key (`classid` high 32 bits, `objid` low).
    pub key: i64,
    /// Held by this connection's session.
    pub mine: bool,
    /// The holder's application_name (the agent's name).
    pub holder: String,
}

/// Every advisory lock granted in this database, with its holder's application_name.
/// `pg_locks` and `pg_stat_activity.application_name` are readable by any role.
pub async fn granted_locks(client: &Client) -> Result<Vec<GrantedLock>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT (l.classid::bigint << 32) | l.objid::bigint, l.pid = pg_backend_pid(), \
             coalesce(a.application_name, '') \
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let holder: String = row.get(2);
            GrantedLock {
                key: row.get(0),
                mine: row.get(1),
                holder,
            }
        })
        .collect())
}

/// `"name"`, with inner quotes doubled.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// This host's name, for the `agents` row (people read it in `status`).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Who leads what across the fleet (for `status`): every row of `agents` and the holder
/// of each configured server's lock and of the dispatcher's.
pub async fn fleet_view(
    client: &Client,
    schema: &str,
    servers: &[String],
) -> Result<FleetView, tokio_postgres::Error> {
    let sql = format!(
        "SELECT agent_name, host, pid, (extract(epoch FROM started_at) * 1000000)::bigint, \
         (extract(epoch FROM renewed_at) * 1000000)::bigint, \
         renewed_at > now() - make_interval(secs => $1::float8) \
         FROM {}.agents ORDER BY agent_name",
        quote_ident(schema)
    );
    let rows = client
        .query(&sql, &[&super::LIVE_WINDOW.as_secs_f64()])
        .await?;
    let agents = rows
        .iter()
        .map(|row| AgentRow {
            name: row.get(0),
            host: row.get(1),
            pid: row.get(2),
            started_at: micros(row.get(3)),
            renewed_at: micros(row.get(4)),
            live: row.get(5),
        })
        .collect();
    let granted: Vec<(i64, String)> = granted_locks(client)
        .await?
        .into_iter()
        .map(|lock| (lock.key, lock.holder))
        .collect();
    let dispatcher_key = plan::dispatcher_lock_key(schema);
    let dispatcher = granted
        .iter()
        .find(|(key, _)| *key == dispatcher_key)
        .map(|(_, holder)| holder.clone());
    let leaders: BTreeMap<String, String> = plan::leaders(schema, servers, &granted);
    Ok(FleetView {
        agents,
        leaders,
        dispatcher,
    })
}
