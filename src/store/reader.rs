//! Opening the store only to look at it (`status`, `usage`): never a write, never a
//! migration, so both work beside the daemon and on a read-only state directory.
//!
//! SQLite opens a WAL database read-only only where it can create (or find) the `-shm`
//! file next to it. In a read-only directory after a clean stop it can do neither, so
//! the database is then opened `immutable`: no process can be writing it there anyway.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{DB_FILE, Store, StoreError, schema};

impl Store {
    /// The store in `state_dir`, opened read-only; an empty in-memory store when there
    /// is none yet (nothing recorded).
    pub fn open_for_reading(state_dir: &Path) -> Result<Store, StoreError> {
        let path = state_dir.join(DB_FILE);
        if !path.exists() {
            return Store::open_file(Path::new(":memory:"));
        }
        let store = match Store::open_read_only(&path).and_then(checked) {
            Ok(store) => store,
            Err(first) => match open_immutable(&path).and_then(checked) {
                Ok(store) => {
                    tracing::debug!(path = %path.display(), error = %first, "state store opened immutable (read-only directory)");
                    store
                }
                Err(_) => return Err(first),
            },
        };
        Ok(store)
    }
}

/// The schema must be this build's: an older one lacks what the queries read (the
/// daemon migrates it at its next start), a newer one is refused like everywhere.
fn checked(store: Store) -> Result<Store, StoreError> {
    let found = store.schema_version()?;
    let supported = schema::current_version();
    if found > supported {
        return Err(StoreError::TooNew {
            path: store.path.clone(),
            found,
            supported,
        });
    }
    if found < supported {
        return Err(StoreError::Directory {
            dir: store.path.clone(),
            reason: format!(
                "schema version {found} is older than this keywarden's ({supported}); start `keywarden run` once to migrate it"
            ),
        });
    }
    Ok(store)
}

fn open_immutable(path: &Path) -> Result<Store, StoreError> {
    let sql = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let uri = format!("file:{}?immutable=1", uri_path(path));
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(uri, flags).map_err(sql)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
    Ok(Store {
        path: path.to_path_buf(),
        conn: Mutex::new(conn),
    })
}

/// A path as the path part of a `file:` URI (`?`, `#` and `%` escaped).
fn uri_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}
