//! Errors of the state store.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot use the state directory {dir}: {reason} (check [agent].state_dir and that the service user may write there)"
    )]
    Directory { dir: PathBuf, reason: String },
    #[error("state store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "state store {path} has schema version {found}, newer than this keywarden understands ({supported}); upgrade keywarden or restore a backup"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("state store {path}: unreadable value in {what}: {value:?}")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        value: String,
    },
}
