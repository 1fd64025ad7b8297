//! The task set registered with tokio-cron-scheduler: installing one (start, replace), and
//! installing it again when the time zone's UTC offset moves (the offset watcher).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::time::MissedTickBehavior;
use tokio_cron_scheduler::job::JobId;
use tokio_cron_scheduler::{Job, JobScheduler};

use super::dst::{needs_reregistration, owed_run, utc_offset_secs};
use super::run::{Generation, Shared};
use super::{ScheduledTask, SchedulerError};

/// How often the watcher compares the zone's offset with the registered one. A tick that
/// finds its offset stale wakes the watcher at once, so this mostly covers quiet schedules.
const OFFSET_CHECK_EVERY: Duration = Duration::from_secs(60);

pub(super) struct Registry {
    pub(super) cron: JobScheduler,
    pub(super) shared: Arc<Shared>,
    /// A tokio mutex: held across the crate's `add`/`remove` awaits, so that `replace` and
    /// the watcher never interleave their swaps.
    current: tokio::sync::Mutex<Registration>,
}

struct Registration {
    generation: Arc<Generation>,
    jobs: Vec<(String, JobId)>,
    /// Kept to register them again after an offset change.
    tasks: Vec<ScheduledTask>,
}

impl Registry {
    pub(super) fn new(cron: JobScheduler, shared: Arc<Shared>) -> Registry {
        let nothing = Registration {
            generation: Arc::new(Generation::new(0, Tz::UTC, 0, Utc::now())),
            jobs: Vec::new(),
            tasks: Vec::new(),
        };
        Registry {
            cron,
            shared,
            current: tokio::sync::Mutex::new(nothing),
        }
    }

    /// Swap the registered task set for `tasks` in `tz`, all or nothing.
    pub(super) async fn replace(
        &self,
        tz: Tz,
        tasks: Vec<ScheduledTask>,
    ) -> Result<(), SchedulerError> {
        let mut current = self.current.lock().await;
        self.install(&mut current, tz, tasks).await
    }

    /// How many jobs of ours the crate has now (tests: nothing lost, nothing doubled).
    #[cfg(test)]
    pub(super) async fn job_count(&self) -> usize {
        self.current.lock().await.jobs.len()
    }

    async fn install(
        &self,
        current: &mut Registration,
        tz: Tz,
        tasks: Vec<ScheduledTask>,
    ) -> Result<(), SchedulerError> {
        check_unique_ids(&tasks)?;
        let now = Utc::now();
        // Read before the jobs are created: should the offset change meanwhile, some jobs
        // froze the new one, the next check sees a difference and registers them all again.
        let offset = utc_offset_secs(tz, now);
        let generation = Arc::new(Generation::new(
            current.generation.number + 1,
            tz,
            offset,
            now,
        ));
        let jobs = tasks
            .iter()
            .map(|task| self.job(task, &generation))
            .collect::<Result<Vec<_>, _>>()?;
        let mut added = Vec::with_capacity(jobs.len());
        for (task, job) in tasks.iter().zip(jobs) {
            match self.cron.add(job).await {
                Ok(job_id) => added.push((task.id.clone(), job_id)),
                Err(source) => {
                    // All or nothing: the old set stays registered and live.
                    self.shared.retire(&generation);
                    self.remove(&added).await;
                    return Err(register_error(task, source));
                }
            }
        }
        // New jobs are live from their add, old ones until here: an occurrence that both
        // fire in between runs once (see run::HANDOVER_WINDOW). Add-then-remove rather
        // than remove-then-add, which would lose an occurrence due during the swap.
        self.shared.retire(&current.generation);
        self.shared.know(tasks.iter().map(|task| task.id.as_str()));
        let old = std::mem::replace(
            current,
            Registration {
                generation,
                jobs: added,
                tasks,
            },
        );
        self.remove(&old.jobs).await;
        Ok(())
    }

    /// The crate job for `task`. Only ever an async job: a panic in a sync job (`Job::new`)
    /// kills that job forever. Never `Job::new_repeated*`: its next tick can fall into the
    /// past and then it stops for good.
    fn job(
        &self,
        task: &ScheduledTask,
        generation: &Arc<Generation>,
    ) -> Result<Job, SchedulerError> {
        let shared = Arc::clone(&self.shared);
        let id: Arc<str> = Arc::from(task.id.as_str());
        let body = Arc::clone(&task.body);
        let generation_for_job = Arc::clone(generation);
        Job::new_async_tz(
            task.schedule.expr.as_str(),
            generation.tz,
            move |_job_id, _cron| {
                // Only clones here: the crate calls this under a std lock of its own, and a
                // panic would poison it and stop the job for good. The work is in the future.
                Box::pin(Arc::clone(&shared).tick(
                    Arc::clone(&id),
                    Arc::clone(&generation_for_job),
                    Arc::clone(&body),
                ))
            },
        )
        .map_err(|source| register_error(task, source))
    }

    /// Remove jobs of a replaced set. A failure leaves a job the crate still ticks, but its
    /// registration is retired, so it never starts a body: worth a warning, not an error.
    async fn remove(&self, jobs: &[(String, JobId)]) {
        for (id, job_id) in jobs {
            if let Err(err) = self.cron.remove(job_id).await {
                tracing::warn!(task = %id, error = %err, "could not remove a replaced job; it is inert");
            }
        }
    }

    /// The watcher's step: register every task again if the zone's offset at `now` is not
    /// the one the crate froze into the jobs, and run what the change made them skip.
    /// Returns whether it registered them again.
    pub(super) async fn reregister_if_offset_changed(
        &self,
        now: DateTime<Utc>,
    ) -> Result<bool, SchedulerError> {
        let mut current = self.current.lock().await;
        let old = Arc::clone(&current.generation);
        if !needs_reregistration(old.tz, old.offset_secs, now) {
            old.confirm(now);
            return Ok(false);
        }
        let tasks = current.tasks.clone();
        self.install(&mut current, old.tz, tasks).await?;
        let new = &current.generation;
        tracing::info!(
            tz = %old.tz,
            from_offset_secs = old.offset_secs,
            to_offset_secs = new.offset_secs,
            tasks = current.tasks.len(),
            "time zone offset changed; tasks registered again"
        );
        let valid_through = old.valid_through();
        for task in &current.tasks {
            if let Some(due) = owed_run(&task.schedule, old.tz, valid_through, now) {
                tracing::info!(task = %task.id, %due, "running the occurrence the offset change skipped");
                self.shared.run_owed(&task.id, new, Arc::clone(&task.body));
            }
        }
        Ok(true)
    }

    /// Check the offset every minute, and whenever a tick found it stale, until aborted.
    pub(super) async fn watch_offset(self: Arc<Self>) {
        let mut every = tokio::time::interval(OFFSET_CHECK_EVERY);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = self.shared.offset_moved.notified() => {}
            }
            if let Err(err) = self.reregister_if_offset_changed(Utc::now()).await {
                tracing::error!(
                    error = %error_chain(&err),
                    "could not register the tasks again after a time zone offset change; their ticks are skipped until a later try succeeds"
                );
            }
        }
    }
}

fn check_unique_ids(tasks: &[ScheduledTask]) -> Result<(), SchedulerError> {
    let mut seen = HashSet::with_capacity(tasks.len());
    match tasks.iter().find(|task| !seen.insert(task.id.as_str())) {
        Some(task) => Err(SchedulerError::DuplicateTaskId {
            id: task.id.clone(),
        }),
        None => Ok(()),
    }
}

fn register_error(
    task: &ScheduledTask,
    source: tokio_cron_scheduler::JobSchedulerError,
) -> SchedulerError {
    SchedulerError::Register {
        id: task.id.clone(),
        schedule: task.schedule.expr.clone(),
        source,
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
