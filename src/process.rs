//! Process-wide memory settings, made once at start by every binary (`keywarden`, the
//! benchmark examples) before any thread exists.
//!
//! glibc's malloc gives threads arenas of their own, up to 8 per core. The runtime's
//! workers and the blocking pool that runs every SQLite call each ended up with one, and
//! every arena keeps the memory freed in it for its thread's next use, so the same live
//! data took more resident memory with each round of runs. Two arenas keep contention
//! low on the few cores the daemon uses and let freed memory be reused across threads.

/// Arenas glibc's malloc may create (its default is 8 per core).
pub const MALLOC_ARENAS: i32 = 2;

/// Apply the process-wide allocator settings. Call it first thing in `main`, before the
/// async runtime starts its threads (arenas made before it are kept). Elsewhere than
/// glibc it does nothing.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc parameter; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

/// Give the memory freed in the allocator's arenas back to the system. Cheap (a walk
/// of the free lists, a few milliseconds at fleet scale), so callers do it after a
/// burst of work that built and dropped large answers, not after every request.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only returns free pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
