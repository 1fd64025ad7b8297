//! The task table, pure (no clock, no IO): when each task is next due, which tasks are due
//! at a given instant, and what a replaced task set owes. Occurrences are computed in the
//! configured time zone itself (croner, through `Schedule::next_runs`), so a local-time
//! schedule stays on local time across daylight saving changes with nothing to re-register.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{ScheduledTask, TaskBody};

struct Entry {
    task: ScheduledTask,
    /// When it runs next; None once the schedule has no occurrence left.
    next: Option<DateTime<Utc>>,
}

/// Every task of the current set with its next due time.
pub(super) struct Table {
    tz: Tz,
    entries: Vec<Entry>,
    /// Every occurrence up to here has been started (or was not due yet when a task was
    /// added): the instant of the last `take_due`.
    checked_through: DateTime<Utc>,
}

/// The first occurrence of `task`'s schedule strictly after `after`.
fn next_after(task: &ScheduledTask, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    task.schedule
        .next_runs(tz, after, 1)
        .first()
        .map(|next| next.with_timezone(&Utc))
}

impl Table {
    /// Tasks start with their first occurrence after `now`.
    pub(super) fn new(tz: Tz, tasks: Vec<ScheduledTask>, now: DateTime<Utc>) -> Table {
        let entries = tasks
            .into_iter()
            .map(|task| Entry {
                next: next_after(&task, tz, now),
                task,
            })
            .collect();
        Table {
            tz,
            entries,
            checked_through: now,
        }
    }

    /// Swap in a new task set. A task whose id was in the old set continues from where the
    /// old set was checked, so an occurrence that fell due during the swap runs once
    /// (neither lost nor doubled); a new id starts after `now`.
    pub(super) fn replace(&mut self, tz: Tz, tasks: Vec<ScheduledTask>, now: DateTime<Utc>) {
        let checked = self.checked_through.min(now);
        let entries = tasks
            .into_iter()
            .map(|task| {
                let known = self.entries.iter().any(|e| e.task.id == task.id);
                let from = if known { checked } else { now };
                Entry {
                    next: next_after(&task, tz, from),
                    task,
                }
            })
            .collect();
        self.tz = tz;
        self.entries = entries;
    }

    /// The tasks due at `now`, each moved on to its first occurrence after `now`: a task
    /// that missed several occurrences (a suspended machine, a clock step) runs once, not
    /// once per missed occurrence.
    pub(super) fn take_due(&mut self, now: DateTime<Utc>) -> Vec<(String, TaskBody)> {
        let mut due = Vec::new();
        for entry in &mut self.entries {
            if entry.next.is_some_and(|next| next <= now) {
                due.push((entry.task.id.clone(), entry.task.body.clone()));
                entry.next = next_after(&entry.task, self.tz, now);
            }
        }
        self.checked_through = self.checked_through.max(now);
        due
    }

    /// When the next task is due, if any task has an occurrence left.
    pub(super) fn next_due(&self) -> Option<DateTime<Utc>> {
        self.entries.iter().filter_map(|entry| entry.next).min()
    }

    pub(super) fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|entry| entry.task.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Schedule;
    use chrono::TimeZone;
    use chrono_tz::Europe::Berlin;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid time")
    }

    fn task(id: &str, expr: &str) -> ScheduledTask {
        ScheduledTask::new(id, Schedule::parse(expr).expect("valid"), |_token| async {})
    }

    fn ids(due: &[(String, TaskBody)]) -> Vec<&str> {
        due.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// Step through `table` from due time to due time until `until`; the instants each
    /// task ran at, in UTC.
    fn run_until(table: &mut Table, until: DateTime<Utc>) -> Vec<(String, DateTime<Utc>)> {
        let mut runs = Vec::new();
        while let Some(at) = table.next_due().filter(|at| *at <= until) {
            for (id, _) in table.take_due(at) {
                runs.push((id, at));
            }
        }
        runs
    }

    #[test]
    fn due_tasks_run_once_and_move_on() {
        let start = utc(2026, 1, 1, 0, 0, 10);
        let mut table = Table::new(
            Tz::UTC,
            vec![task("a", "*/30 * * * * *"), task("b", "0 * * * * *")],
            start,
        );
        assert_eq!(table.next_due(), Some(utc(2026, 1, 1, 0, 0, 30)));
        assert!(table.take_due(utc(2026, 1, 1, 0, 0, 29)).is_empty());
        assert_eq!(ids(&table.take_due(utc(2026, 1, 1, 0, 0, 30))), ["a"]);
        assert!(table.take_due(utc(2026, 1, 1, 0, 0, 30)).is_empty(), "once");
        assert_eq!(ids(&table.take_due(utc(2026, 1, 1, 0, 1, 0))), ["a", "b"]);
        assert_eq!(table.next_due(), Some(utc(2026, 1, 1, 0, 1, 30)));
    }

    #[test]
    fn a_late_check_runs_a_task_once_not_once_per_missed_occurrence() {
        let mut table = Table::new(
            Tz::UTC,
            vec![task("a", "*/5 * * * * *")],
            utc(2026, 1, 1, 0, 0, 0),
        );
        // Asleep for a minute (a suspended VM): twelve occurrences passed.
        let due = table.take_due(utc(2026, 1, 1, 0, 1, 2));
        assert_eq!(ids(&due), ["a"]);
        assert_eq!(table.next_due(), Some(utc(2026, 1, 1, 0, 1, 5)));
    }

    #[test]
    fn replace_keeps_an_occurrence_due_during_the_swap_and_starts_new_ids_after_now() {
        let mut table = Table::new(
            Tz::UTC,
            vec![task("kept", "*/10 * * * * *")],
            utc(2026, 1, 1, 0, 0, 0),
        );
        assert!(table.take_due(utc(2026, 1, 1, 0, 0, 5)).is_empty());
        // The swap happens at :12, after :10 fell due but before the loop woke for it.
        let now = utc(2026, 1, 1, 0, 0, 12);
        table.replace(
            Tz::UTC,
            vec![
                task("kept", "*/10 * * * * *"),
                task("new", "*/10 * * * * *"),
            ],
            now,
        );
        assert_eq!(
            ids(&table.take_due(now)),
            ["kept"],
            "due in the swap: runs once"
        );
        assert!(table.take_due(now).is_empty());
        assert_eq!(
            ids(&table.take_due(utc(2026, 1, 1, 0, 0, 20))),
            ["kept", "new"]
        );
        // Removed ids are gone for good.
        table.replace(
            Tz::UTC,
            vec![task("new", "*/10 * * * * *")],
            utc(2026, 1, 1, 0, 0, 21),
        );
        assert_eq!(ids(&table.take_due(utc(2026, 1, 1, 0, 0, 30))), ["new"]);
        assert_eq!(table.ids().collect::<Vec<_>>(), ["new"]);
    }

    #[test]
    fn local_time_schedules_stay_on_local_time_across_both_dst_changes() {
        // Berlin: CET (+1) -> CEST (+2) on 2026-03-29 at 01:00 UTC; back on 2026-10-25.
        let mut spring = Table::new(
            Berlin,
            vec![
                task("daily-3", "0 0 3 * * *"),
                task("daily-0230", "0 30 2 * * *"),
            ],
            utc(2026, 3, 27, 12, 0, 0),
        );
        let runs = run_until(&mut spring, utc(2026, 3, 30, 12, 0, 0));
        assert_eq!(
            runs,
            [
                ("daily-0230".to_owned(), utc(2026, 3, 28, 1, 30, 0)),
                ("daily-3".to_owned(), utc(2026, 3, 28, 2, 0, 0)),
                // 02:30 does not exist that day: it runs when the gap ends, at 03:00 CEST,
                // together with the 03:00 task: nothing is lost.
                ("daily-3".to_owned(), utc(2026, 3, 29, 1, 0, 0)),
                ("daily-0230".to_owned(), utc(2026, 3, 29, 1, 0, 0)),
                ("daily-0230".to_owned(), utc(2026, 3, 30, 0, 30, 0)),
                ("daily-3".to_owned(), utc(2026, 3, 30, 1, 0, 0)),
            ]
        );
        let mut autumn = Table::new(
            Berlin,
            vec![task("daily-3", "0 0 3 * * *")],
            utc(2026, 10, 23, 12, 0, 0),
        );
        let runs: Vec<_> = run_until(&mut autumn, utc(2026, 10, 26, 12, 0, 0))
            .into_iter()
            .map(|(_, at)| at)
            .collect();
        // 03:00 CEST (01:00 UTC) before the change, 03:00 CET (02:00 UTC) after it.
        assert_eq!(
            runs,
            [
                utc(2026, 10, 24, 1, 0, 0),
                utc(2026, 10, 25, 2, 0, 0),
                utc(2026, 10, 26, 2, 0, 0)
            ]
        );
    }

    #[test]
    fn an_hourly_schedule_through_the_autumn_change_never_runs_twice_in_one_instant() {
        let mut table = Table::new(
            Berlin,
            vec![task("hourly", "0 0 * * * *")],
            utc(2026, 10, 24, 22, 30, 0),
        );
        let runs: Vec<_> = run_until(&mut table, utc(2026, 10, 25, 4, 0, 0))
            .into_iter()
            .map(|(_, at)| at)
            .collect();
        assert!(runs.windows(2).all(|w| w[0] < w[1]), "{runs:?}");
        assert_eq!(runs.first(), Some(&utc(2026, 10, 24, 23, 0, 0)));
        assert_eq!(runs.last(), Some(&utc(2026, 10, 25, 4, 0, 0)));
    }
}
