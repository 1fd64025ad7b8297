//! How model values are written to and read from PostgreSQL columns, as on SQLite
//! (`store/sqlite/columns.rs`): enums by their snake_case names in TEXT columns, a name
//! this build does not know is a read error (`StoreError::Corrupt`), never a default;
//! timestamps in `model::time`'s text form.

use std::error::Error;

use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use crate::model::alert::{AlertStatus, Reason as NoticeReason};
use crate::model::dataplane::{PortState, XrayState};
use crate::model::quota::{ActionKind, IntentOutcome, IntentState, Reason as ActionReason};
use crate::model::report::DeliveryState;
use crate::model::{
    AttemptKind, AuditAction, AuditResult, FindingKind, JobKind, RunOutcome, Severity,
    SyncAttemptOutcome, parse_stamp,
};

type BoxError = Box<dyn Error + Sync + Send>;

/// `ToSql` and `FromSql` through a type's `as_str` and `parse`.
macro_rules! named_column {
    ($($type:ty),* $(,)?) => {$(
        impl ToSql for $type {
            fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as ToSql>::accepts(ty)
            }

            to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $type {
            fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
                let text = <&str as FromSql>::from_sql(ty, raw)?;
                <$type>::parse(text).ok_or_else(|| unknown(stringify!($type), text))
            }

            fn accepts(ty: &Type) -> bool {
                <&str as FromSql>::accepts(ty)
            }
        }
    )*};
}

named_column!(
    Severity,
    JobKind,
    FindingKind,
    RunOutcome,
    AuditAction,
    AuditResult,
    AlertStatus,
    NoticeReason,
    ActionKind,
    ActionReason,
    IntentState,
    IntentOutcome,
    SyncAttemptOutcome,
    AttemptKind,
    DeliveryState,
    XrayState,
    PortState,
);

fn unknown(what: &str, text: &str) -> BoxError {
    format!("{text:?} is no {what} this keywarden knows").into()
}

/// Why a PostgreSQL call failed, before it becomes a (redacted) `StoreError`.
#[derive(Debug)]
pub(super) enum PgFail {
    Db(tokio_postgres::Error),
    Pool(deadpool_postgres::PoolError),
    /// A stored value this build cannot read.
    Corrupt {
        column: usize,
        detail: String,
    },
}

impl From<tokio_postgres::Error> for PgFail {
    fn from(error: tokio_postgres::Error) -> Self {
        PgFail::Db(error)
    }
}

impl From<deadpool_postgres::PoolError> for PgFail {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        PgFail::Pool(error)
    }
}

pub(super) type PgResult<T> = Result<T, PgFail>;

/// Column `index` as `T` (a value that does not convert is `Corrupt`).
pub(super) fn get<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> PgResult<T> {
    row.try_get(index).map_err(|error| PgFail::Corrupt {
        column: index,
        detail: super::connect::error_text(&error),
    })
}

/// The timestamp in column `index`.
pub(super) fn at(row: &Row, index: usize) -> PgResult<DateTime<Utc>> {
    let text: String = get(row, index)?;
    parse_stamp(&text).ok_or_else(|| corrupt(index, "timestamp", &text))
}

/// The timestamp in column `index`, if any.
pub(super) fn opt_at(row: &Row, index: usize) -> PgResult<Option<DateTime<Utc>>> {
    let text: Option<String> = get(row, index)?;
    text.map(|text| parse_stamp(&text).ok_or_else(|| corrupt(index, "timestamp", &text)))
        .transpose()
}

fn corrupt(column: usize, what: &str, text: &str) -> PgFail {
    PgFail::Corrupt {
        column,
        detail: unknown(what, text).to_string(),
    }
}

/// A day, as stored ("2026-11-28").
pub(super) fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// A day column.
pub(super) fn day(row: &Row, index: usize) -> PgResult<NaiveDate> {
    let text: String = get(row, index)?;
    NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|_| corrupt(index, "day", &text))
}

/// A count column (never negative in a sound store; read as 0 if it is).
pub(super) fn count(row: &Row, index: usize) -> PgResult<u32> {
    get::<i64>(row, index).map(|n| n.clamp(0, i64::from(u32::MAX)) as u32)
}

/// A 0/1 column (SQLite's booleans, kept as integers so both backends agree).
pub(super) fn flag(row: &Row, index: usize) -> PgResult<bool> {
    get::<i64>(row, index).map(|n| n != 0)
}

/// A byte count as stored (saturating at i64::MAX).
pub(super) fn bytes(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A byte count as read back (a negative one reads as 0).
pub(super) fn unsigned(row: &Row, index: usize) -> PgResult<u64> {
    get::<i64>(row, index).map(|n| u64::try_from(n).unwrap_or(0))
}

/// An optional byte count.
pub(super) fn opt_unsigned(row: &Row, index: usize) -> PgResult<Option<u64>> {
    get::<Option<i64>>(row, index).map(|n| n.map(|n| u64::try_from(n).unwrap_or(0)))
}

/// A boolean as stored.
pub(super) fn int(value: bool) -> i64 {
    i64::from(value)
}
