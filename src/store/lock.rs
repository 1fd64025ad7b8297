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
        let io = |source| LockError::Io {
            dir: state_dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let path = state_dir.join(LOCK_FILE);
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
        // Who holds it, for the message a second daemon prints.
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()));
        if let Err(error) = written {
            tracing::debug!(path = %path.display(), %error, "cannot write the pid into the lock file");
        }
        Ok(StateDirLock { _file: file, path })
    }
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
}
