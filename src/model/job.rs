//! The periodic jobs by kind.

/// The periodic jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKind {
    Health,
    ConfigSync,
    Reality,
    Quota,
}

impl JobKind {
    /// Every job, in the order summaries list them.
    pub const ALL: [JobKind; 4] = [
        JobKind::Health,
        JobKind::ConfigSync,
        JobKind::Reality,
        JobKind::Quota,
    ];

    /// The snake_case name used in the file (`skip_jobs`, `[jobs.*]`), logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Health => "health",
            JobKind::ConfigSync => "config_sync",
            JobKind::Reality => "reality",
            JobKind::Quota => "quota",
        }
    }
}
