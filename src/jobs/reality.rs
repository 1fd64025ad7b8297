//! The reality job.

use super::{JobContext, JobResult};

pub async fn run(_ctx: &JobContext<'_>) -> JobResult {
    JobResult::default()
}
