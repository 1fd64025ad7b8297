//! Which pending notices of one sink go out now, and together (pure). Notices of one
//! server are grouped into one message; beyond the sink's rate limit the remaining
//! groups are merged into a single digest, so nothing waits and nothing is lost.

use chrono::{DateTime, Utc};

use super::model::OutboxRow;

/// What one pass of a sink sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Each message as indices into the pending rows.
    pub messages: Vec<Vec<usize>>,
    /// When something not sent now falls due (group_wait or backoff).
    pub next_due: Option<DateTime<Utc>>,
    /// Due notices wait because the rate limit is spent.
    pub rate_limited: bool,
}

/// Plan a pass over `rows` (pending, oldest first) with `tokens` messages left in the
/// rate window. A server's group goes when one of its rows is due; it takes along the
/// server's rows never tried yet (still in group_wait), but not those backing off.
pub fn plan(rows: &[OutboxRow], now: DateTime<Utc>, tokens: usize) -> Batch {
    let mut servers: Vec<&str> = Vec::new();
    for row in rows {
        if !servers.contains(&row.alert.server.as_str()) {
            servers.push(&row.alert.server);
        }
    }
    let mut due_groups: Vec<Vec<usize>> = Vec::new();
    let mut next_due: Option<DateTime<Utc>> = None;
    for server in servers {
        let of_server: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].alert.server == server)
            .collect();
        let due = of_server.iter().any(|&i| rows[i].next_attempt_at <= now);
        let (members, rest): (Vec<usize>, Vec<usize>) = of_server
            .into_iter()
            .partition(|&i| due && (rows[i].next_attempt_at <= now || rows[i].attempts == 0));
        for i in rest {
            next_due = earliest(next_due, rows[i].next_attempt_at);
        }
        if !members.is_empty() {
            due_groups.push(members);
        }
    }
    if due_groups.is_empty() {
        return Batch {
            next_due,
            ..Batch::default()
        };
    }
    if tokens == 0 {
        return Batch {
            messages: Vec::new(),
            next_due,
            rate_limited: true,
        };
    }
    let mut messages = due_groups;
    if messages.len() > tokens {
        let merged: Vec<usize> = messages
            .split_off(tokens - 1)
            .into_iter()
            .flatten()
            .collect();
        messages.push(merged);
    }
    Batch {
        messages,
        next_due,
        rate_limited: false,
    }
}

/// The earlier of an optional time and a time.
pub fn earliest(a: Option<DateTime<Utc>>, b: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Some(a.map_or(b, |a| a.min(b)))
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::alert::model::{Alert, AlertStatus, Reason};
    use crate::config::Severity;

    fn at(second: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap() + Duration::seconds(second)
    }

    fn row(id: i64, server: &str, due: i64, attempts: u32) -> OutboxRow {
        OutboxRow {
            id,
            sink: "mail".into(),
            reason: Reason::New,
            alert: Alert {
                fingerprint: format!("{server}/k{id}/"),
                server: server.into(),
                kind: format!("k{id}"),
                subject: String::new(),
                severity: Severity::Warning,
                status: AlertStatus::Firing,
                summary: String::new(),
                details: String::new(),
                started_at: at(0),
                ended_at: None,
            },
            created_at: at(0),
            next_attempt_at: at(due),
            attempts,
            last_error: None,
        }
    }

    #[test]
    fn groups_per_server_take_fresh_rows_along_but_not_backing_off_ones() {
        let rows = vec![
            row(1, "fra-1", 10, 0),
            row(2, "fra-1", 0, 0),
            row(3, "fra-1", 30, 2),
            row(4, "ams-1", 20, 0),
        ];
        let batch = plan(&rows, at(5), 20);
        assert_eq!(batch.messages, vec![vec![0, 1]]);
        assert_eq!(batch.next_due, Some(at(20)));
        // Nothing due yet: wait for the earliest.
        let batch = plan(&rows[2..], at(5), 20);
        assert!(batch.messages.is_empty());
        assert_eq!(batch.next_due, Some(at(20)));
    }

    #[test]
    fn beyond_the_rate_limit_groups_merge_into_one_digest() {
        let rows: Vec<OutboxRow> = (0..10).map(|i| row(i, &format!("s{i}"), 0, 0)).collect();
        let batch = plan(&rows, at(0), 4);
        assert_eq!(
            batch.messages,
            vec![vec![0], vec![1], vec![2], vec![3, 4, 5, 6, 7, 8, 9]]
        );
        let batch = plan(&rows, at(0), 0);
        assert!(batch.messages.is_empty() && batch.rate_limited);
        let batch = plan(&rows, at(0), 1);
        assert_eq!(batch.messages, vec![(0..10).collect::<Vec<usize>>()]);
    }
}
