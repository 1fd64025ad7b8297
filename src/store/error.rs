//! Errors of the state store.

use std::path::{Path, PathBuf};

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
    /// A stored value this build cannot read (an unknown name, a malformed time).
    #[error(
        "state store {path}: unreadable value in column {column}: {detail} (written by a newer keywarden, or changed by hand?)"
    )]
    Corrupt {
        path: PathBuf,
        column: usize,
        detail: String,
    },
    /// A PostgreSQL step failed. The detail went through the URL's redactor: it never
    /// holds the connection URL or its password.
    #[error("state store {location}: {detail}")]
    Postgres { location: String, detail: String },
    /// The store's file was deleted or replaced while it was open: whatever is written
    /// through the open handle is lost at the next stop (see `Backend::check_intact`).
    #[error(
        "state store {path} {reason} while keywarden had it open; what is written from now on would be lost, so keywarden stops (a restart opens the store at that path again)"
    )]
    Lost { path: PathBuf, reason: String },
    /// The blocking task doing the work panicked or was cancelled.
    #[error("state store {path}: the store's worker failed: {error}")]
    Task {
        path: PathBuf,
        error: tokio::task::JoinError,
    },
}

impl StoreError {
    /// The store is gone from under the process (deleted or replaced): stop, restart.
    pub fn is_lost(&self) -> bool {
        matches!(self, StoreError::Lost { .. })
    }

    /// A SQLite error; a value that would not convert is `Corrupt`.
    pub(super) fn from_sqlite(path: &Path, source: rusqlite::Error) -> StoreError {
        match source {
            rusqlite::Error::FromSqlConversionFailure(column, _, detail) => StoreError::Corrupt {
                path: path.to_path_buf(),
                column,
                detail: detail.to_string(),
            },
            source => StoreError::Sqlite {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}
