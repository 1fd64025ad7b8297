//! Results on stdout. When the reader goes away (`usage --json | head -c 600`), the pipe
//! is closed and a write fails with EPIPE: `println!` then panicked. Here the first
//! such failure is remembered, everything after it is dropped quietly, and the command
//! finishes with its own exit code. Other write errors (a full disk behind a redirect)
//! are returned to the caller.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout's reader has gone away. Process-wide on purpose: stdout is.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Write `text` to stdout as is.
pub fn print(text: &str) -> std::io::Result<()> {
    if CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        other => other,
    }
}

/// Whether stdout's reader went away.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// `println!` that stops quietly on a closed stdout: `outln!("...", args)?`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::print("\n")
    };
    ($($arg:tt)*) => {
        $crate::output::print(&format!("{}\n", format_args!($($arg)*)))
    };
}
