//! `keywarden store migrate --to postgres`: copy a SQLite store, every table, into an
//! empty PostgreSQL schema in one transaction, ids included (the sequences continue after
//! them). Both sides are at this build's schema version first, so the tables and columns
//! are the same (a test checks it); a schema that holds any row is refused, never merged.
//! Leases and the health probe's row are not state: they stay behind.

use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use tokio_postgres::types::{ToSql, Type};

use super::connect::PgConnector;
use super::migrate::migrate;
use super::schema::PG_ONLY_TABLES;
use crate::config::PgConfig;
use crate::store::{DB_FILE, Store, StoreError};

/// Tables that belong to running processes, not to the state: leases of the agent that
/// stopped (they would block jobs until they expire) and the health probe's row.
const NOT_COPIED: &[&str] = &["job_leases", "store_probe"];

/// Rows per INSERT (PostgreSQL takes at most 65535 parameters per statement).
const BATCH_ROWS: usize = 500;

/// Why the copy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "no SQLite store at {0} (check [agent].state_dir: the copy reads the store the SQLite agent wrote)"
    )]
    NoSqliteStore(PathBuf),
    #[error(
        "the PostgreSQL schema {schema} is not empty ({table} has {rows} rows): the copy goes only into an empty schema, never merges; use a new schema ([store.postgres] schema) or empty this one"
    )]
    NotEmpty {
        schema: String,
        table: String,
        rows: i64,
    },
    #[error("copying table {table}: {detail}")]
    Copy { table: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImportError {
    /// The operator must change something (exit 2), rather than a failure (exit 1).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ImportError::NoSqliteStore(_) | ImportError::NotEmpty { .. }
        )
    }
}

/// Rows copied per table, in copy order.
pub type Copied = Vec<(String, u64)>;

/// Copy the SQLite store in `state_dir` into the (empty) PostgreSQL schema of `pg`.
pub async fn import_sqlite(state_dir: &Path, pg: &PgConfig) -> Result<Copied, ImportError> {
    let file = state_dir.join(DB_FILE);
    if !file.exists() {
        return Err(ImportError::NoSqliteStore(file));
    }
    // Bring the SQLite file to this build's version (as the agent would at start).
    let dir = state_dir.to_path_buf();
    tokio::task::spawn_blocking(move || Store::open(&dir).map(drop))
        .await
        .map_err(|error| StoreError::Task {
            path: file.clone(),
            error,
        })??;
    let connector = PgConnector::from_config(pg)?;
    migrate(&connector).await?;
    let (mut client, task) = connector.unpooled().await?;
    let result = copy_all(&connector, &mut client, &file).await;
    drop(client);
    let _ = task.await;
    result
}

async fn copy_all(
    connector: &PgConnector,
    client: &mut tokio_postgres::Client,
    file: &Path,
) -> Result<Copied, ImportError> {
    let db = |error: tokio_postgres::Error| ImportError::Store(connector.error("copy", &error));
    let tables = pg_tables(client).await.map_err(db)?;
    let tx = client.transaction().await.map_err(db)?;
    // Refused when any table holds a row: checked inside the transaction that copies.
    for (table, _) in &tables {
        let rows: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .map_err(db)?
            .get(0);
        if rows > 0 {
            return Err(ImportError::NotEmpty {
                schema: connector.schema().to_owned(),
                table: table.clone(),
                rows,
            });
        }
    }
    let sqlite = rusqlite::Connection::open_with_flags(
        file,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::from_sqlite(file, source))?;
    let mut copied = Vec::new();
    for (table, columns) in &tables {
        let rows = read_table(&sqlite, table, columns).map_err(|detail| ImportError::Copy {
            table: table.clone(),
            detail,
        })?;
        for chunk in rows.chunks(BATCH_ROWS) {
            let sql = insert_sql(table, columns, chunk.len());
            let params: Vec<&(dyn ToSql + Sync)> = chunk
                .iter()
                .flat_map(|row| {
                    row.iter()
                        .map(|value| value.as_ref() as &(dyn ToSql + Sync))
                })
                .collect();
            tx.execute(&sql, &params)
                .await
                .map_err(|error| ImportError::Copy {
                    table: table.clone(),
                    detail: connector.redact(&super::connect::error_text(&error)),
                })?;
        }
        if columns.iter().any(|(name, _)| name == "id") {
            // The next id after the copied ones.
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {table}"
                ),
                &[],
            )
            .await
            .map_err(db)?;
        }
        copied.push((table.clone(), rows.len() as u64));
    }
    tx.commit().await.map_err(db)?;
    Ok(copied)
}

/// The schema's tables that SQLite also has, with their columns and types, in order.
async fn pg_tables(
    client: &tokio_postgres::Client,
) -> Result<Vec<(String, Vec<(String, Type)>)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.relname::TEXT, a.attname::TEXT, a.atttypid
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid
             WHERE n.nspname = current_schema() AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY c.relname, a.attnum",
            &[],
        )
        .await?;
    let mut tables: Vec<(String, Vec<(String, Type)>)> = Vec::new();
    for row in rows {
        let (table, column, oid): (String, String, u32) = (row.get(0), row.get(1), row.get(2));
        if PG_ONLY_TABLES.contains(&table.as_str())
            || NOT_COPIED.contains(&table.as_str())
            || table == "schema_migrations"
        {
            continue;
        }
        let kind = Type::from_oid(oid).unwrap_or(Type::TEXT);
        match tables.last_mut() {
            Some((name, columns)) if *name == table => columns.push((column, kind)),
            _ => tables.push((table, vec![(column, kind)])),
        }
    }
    Ok(tables)
}

type Value = Box<dyn ToSql + Sync + Send>;

/// Every row of `table`, each value converted to its PostgreSQL column's type.
fn read_table(
    sqlite: &rusqlite::Connection,
    table: &str,
    columns: &[(String, Type)],
) -> Result<Vec<Vec<Value>>, String> {
    let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
    let order = if names.contains(&"id") {
        " ORDER BY id"
    } else {
        ""
    };
    let sql = format!("SELECT {} FROM {table}{order}", names.join(", "));
    let mut statement = sqlite.prepare(&sql).map_err(|e| e.to_string())?;
    let mut rows = statement.query([]).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let mut values = Vec::with_capacity(columns.len());
        for (index, (name, kind)) in columns.iter().enumerate() {
            let value = row.get_ref(index).map_err(|e| e.to_string())?;
            values.push(convert(value, kind).map_err(|detail| format!("column {name}: {detail}"))?);
        }
        out.push(values);
    }
    Ok(out)
}

fn convert(value: ValueRef<'_>, kind: &Type) -> Result<Value, String> {
    let integer = *kind == Type::INT8;
    Ok(match value {
        ValueRef::Null if integer => Box::new(None::<i64>),
        ValueRef::Null => Box::new(None::<String>),
        ValueRef::Integer(n) if integer => Box::new(n),
        ValueRef::Integer(n) => Box::new(n.to_string()),
        ValueRef::Real(x) if integer => Box::new(x as i64),
        ValueRef::Real(x) => Box::new(x.to_string()),
        ValueRef::Text(bytes) => {
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| "text is not UTF-8")?;
            if integer {
                Box::new(
                    text.trim()
                        .parse::<i64>()
                        .map_err(|_| format!("{text:?} is not a whole number"))?,
                )
            } else {
                Box::new(text)
            }
        }
        ValueRef::Blob(_) => return Err("a BLOB where keywarden writes none".to_owned()),
    })
}

/// `INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ...` for `rows` rows.
fn insert_sql(table: &str, columns: &[(String, Type)], rows: usize) -> String {
    let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
    let width = columns.len();
    let tuples: Vec<String> = (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=width)
                .map(|i| format!("${}", row * width + i))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES {}",
        names.join(", "),
        tuples.join(", ")
    )
}
