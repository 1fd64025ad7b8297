//! The async runtime every command runs on (the allocator's settings are in
//! `process.rs`). A daemon talking to a few dozen servers mostly waits; what
//! it pays for while waiting is threads and the memory each one pins (issue 11, "idle
//! daemon", docs/performance.md).

use std::time::Duration;

/// Async worker threads at most. Jobs wait on the network; the CPU they need (decoding
/// answers, planning) is a few seconds per cycle even for 500 servers, so more workers
/// than this buy nothing but threads.
pub const MAX_WORKER_THREADS: usize = 4;

/// Blocking-pool threads at most (tokio's default is 512). They run the SQLite calls,
/// which serialize on one connection anyway, and name lookups: calls beyond this many
/// wait in the pool's queue instead of each parking a thread of its own.
pub const MAX_BLOCKING_THREADS: usize = 8;

/// How long an idle blocking thread waits for more work before it ends. Longer than
/// tokio's 10 s, so the threads that serve one health round (every 30 s by default)
/// are not ended and created again in every gap, yet gone when the daemon rests longer.
pub const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(40);

/// Worker threads for `cores` available cores: at least 1, at most
/// [`MAX_WORKER_THREADS`].
pub fn worker_threads(cores: usize) -> usize {
    cores.clamp(1, MAX_WORKER_THREADS)
}

/// The runtime every command runs on (the daemon, `check`, `demo`, ...).
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads(cores))
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .enable_all()
        .build()
}

/// One thread for a short burst of work that mostly waits (`check`), with the same
/// bounded blocking pool.
pub fn build_current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_threads_follow_the_cores_within_bounds() {
        assert_eq!(worker_threads(0), 1);
        assert_eq!(worker_threads(1), 1);
        assert_eq!(worker_threads(2), 2);
        assert_eq!(worker_threads(64), MAX_WORKER_THREADS);
    }

    #[test]
    fn the_runtime_runs_blocking_work_beyond_its_thread_limit() {
        // More blocking calls than threads: the extra ones queue, none is lost.
        let runtime = build().expect("runtime");
        let total: usize = runtime.block_on(async {
            let calls: Vec<_> = (0..MAX_BLOCKING_THREADS * 3)
                .map(|i| tokio::task::spawn_blocking(move || i))
                .collect();
            let mut total = 0;
            for call in calls {
                total += call.await.expect("blocking call");
            }
            total
        });
        let n = MAX_BLOCKING_THREADS * 3;
        assert_eq!(total, n * (n - 1) / 2);
    }
}
