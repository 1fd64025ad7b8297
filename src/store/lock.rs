//! The state directory belongs to one daemon: `keywarden run` holds an exclusive lock
//! on `<state_dir>/keywarden.lock` for as long as it runs (two daemons on one store
//! synced twice as often as allowed and restarted Xray for each). `check`, `status` and
//! `usage` do not take it: they may run beside the daemon. The lock is the kernel's
//! (flock), so it goes away with the process, even after kill -9.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file inside `state_dir`.
pub const LOCK_FILE: &str = "keywarden.lock";

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another `keywarden run` is already using the state directory {dir} ({holder}); stop it first, or give this one its own [agent].state_dir"
    )]
    Held { dir: PathBuf, holder: String },
    #[error("cannot lock the state directory {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held while the daemon runs; dropping it releases the lock.
#[derive(Debug)]
pub struct StateDirLock {
    _file: File,
    pub path: PathBuf,
}

impl StateDirLock {
    /// Take the lock, or say who holds it.
    pub fn acquire(state_dir: &Path) -> Result<StateDirLock, LockError> {
        let (file, path) = take(state_dir, LOCK_FILE)?;
        Ok(StateDirLock { _file: file, path })
    }
}

/// The file lock of the alert dispatcher's right to deliver the outbox (SQLite store).
pub const DISPATCH_LOCK_FILE: &str = "keywarden.dispatch.lock";

/// The right to deliver the outbox: a running daemon holds it all its life, and
/// `check --notify` holds it while it flushes, so that no notice is sent by both (the
/// outbox has no per-row claim). Dropping it gives the right back.
#[derive(Debug)]
pub struct DispatchLock {
    _file: File,
    pub path: PathBuf,
}

impl DispatchLock {
    /// Take the right, or say who holds it (`LockError::Held`).
    pub fn acquire(state_dir: &Path) -> Result<DispatchLock, LockError> {
        let (file, path) = take(state_dir, DISPATCH_LOCK_FILE)?;
        Ok(DispatchLock { _file: file, path })
    }
}

/// flock `<state_dir>/<name>` without waiting and write our pid into it.
fn take(state_dir: &Path, name: &str) -> Result<(File, PathBuf), LockError> {
    let io = |source| LockError::Io {
        dir: state_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let path = state_dir.join(name);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "lock file ".to_owned() + &path.display().to_string(),
                pid => format!("pid {pid}, lock file {}", path.display()),
            };
            return Err(LockError::Held {
                dir: state_dir.to_path_buf(),
                holder,
            });
        }
        Err(TryLockError::Error(error)) => return Err(io(error)),
    }
    // Who holds it, for the message the next taker prints.
    let written = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()));
    if let Err(error) = written {
        tracing::debug!(path = %path.display(), %error, "cannot write the pid into the lock file");
    }
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateDirLock::acquire(dir.path()).expect("first");
        let second = StateDirLock::acquire(dir.path()).expect_err("held");
        let message = second.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(first);
        StateDirLock::acquire(dir.path()).expect("free again");
    }

    #[test]
    fn the_dispatch_right_is_a_lock_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let _daemon = StateDirLock::acquire(dir.path()).expect("daemon");
        let right = DispatchLock::acquire(dir.path()).expect("dispatch right beside it");
        let LockError::Held { holder, .. } = DispatchLock::acquire(dir.path()).expect_err("held")
        else {
            panic!("not a Held error");
        };
        assert!(holder.contains(DISPATCH_LOCK_FILE), "{holder}");
        drop(right);
        DispatchLock::acquire(dir.path()).expect("free again");
    }
}
