//! `plan`'s rehearsal: one transaction that is always rolled back, in which
//! the rows a run would remove are counted (the rows of
//! `retention.expired_<dataset>`, read in bounded time by `expired`), the
//! pending migrations run, and the rows are counted again. Lock waits are
//! bounded by the lock timeout given; each count by the rows it may read
//! and by a statement timeout, after which the catalog's estimate stands
//! in; estimates are labelled as such.

use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::error::SqlState;
use postgres::{Client, Transaction};
use refinery::Migration;
use serde::Serialize;

use super::expired::{self, Expired, EXAMINE_BUDGET};
use super::{ctx, pg_message, DbError};
use crate::render::names::expired_view_named;
use crate::words::seconds;

/// How many rows a run would remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExpiredCount {
    /// A count, or an estimate when `estimated`.
    pub rows: i64,
    /// Distinct tenants among them (`None`: no tenant column, or estimated).
    pub tenants: Option<i64>,
    /// `rows` is an estimate: counting would have read more than
    /// [`EXAMINE_BUDGET`] rows, or took longer than the count timeout.
    pub estimated: bool,
    /// Rows actually seen expired: a lower bound (`rows` when exact).
    pub counted: i64,
    /// The count took longer than the count timeout: `rows` is the
    /// estimate from the catalog alone.
    pub timed_out: bool,
}

impl ExpiredCount {
    fn of(e: Expired, timed_out: bool) -> ExpiredCount {
        ExpiredCount {
            rows: e.rows,
            tenants: e.tenants,
            estimated: !e.exact || timed_out,
            counted: e.counted,
            timed_out,
        }
    }
}

/// Start the rehearsal: a transaction whose lock waits last at most
/// `lock_timeout` (PostgreSQL's syntax: `5s`). Roll it back when done.
pub fn begin<'a>(client: &'a mut Client, lock_timeout: &str) -> Result<Transaction<'a>, DbError> {
    let mut tx = client
        .transaction()
        .map_err(ctx("starting the plan transaction"))?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{lock_timeout}'"))
        .map_err(ctx("setting the plan's lock timeout"))?;
    Ok(tx)
}

/// Run the SQL of pending migration `m`; `lock_timeout` is the rehearsal's,
/// for the message.
pub fn run_migration(
    tx: &mut Transaction,
    m: &Migration,
    lock_timeout: &str,
) -> Result<(), DbError> {
    tx.batch_execute(m.sql().unwrap_or_default()).map_err(|e| {
        let lock = e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE);
        DbError(format!(
            "the pending migration {m} fails on this database, so apply would fail too: {}{}",
            pg_message(&e),
            if lock {
                format!(" (plan waits at most {lock_timeout} for a lock; a long transaction holds one the migration needs — apply would wait for it)")
            } else {
                "; fix the policy or the database and compile again".into()
            }
        ))
    })
}

/// Count the rows of `retention.expired_<dataset>` a run starting at `at`
/// would remove (and their tenants, when `tenants`), in a savepoint,
/// reading at most [`EXAMINE_BUDGET`] rows (`expired::expired`); past the
/// budget the count is an estimate. After `timeout`, the estimate from the
/// catalog alone.
pub fn count_expired(
    tx: &mut Transaction,
    dataset: &str,
    at: DateTime<Utc>,
    tenants: bool,
    timeout: Duration,
) -> Result<ExpiredCount, DbError> {
    let view = expired_view_named(dataset);
    let mut sp = tx
        .savepoint("pgretain_plan_count")
        .map_err(ctx("starting a savepoint"))?;
    sp.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        timeout.as_millis().max(1)
    ))
    .map_err(ctx("setting the count timeout"))?;
    match expired::expired(&mut sp, dataset, at, EXAMINE_BUDGET, tenants) {
        Ok(e) => {
            // The timeout bounds the count only, not what follows.
            sp.batch_execute("SET LOCAL statement_timeout TO DEFAULT")
                .map_err(ctx("lifting the count timeout"))?;
            sp.commit().map_err(ctx("releasing a savepoint"))?;
            Ok(ExpiredCount::of(e.unwrap_or_default(), false))
        }
        Err(e) if e.0.contains("SQLSTATE 57014") => {
            sp.rollback().map_err(ctx("rolling back a savepoint"))?;
            match expired::expired(tx, dataset, at, 0, false) {
                Ok(e) => Ok(ExpiredCount::of(e.unwrap_or_default(), true)),
                Err(e) => Err(DbError(format!(
                    "counting the expired rows of `{dataset}` took longer than {} and estimating them failed too: {}. Retry with a longer --count-timeout, or when the table is not locked",
                    seconds(timeout),
                    e.0
                ))),
            }
        }
        Err(e) => Err(DbError(format!(
            "counting the rows {view} lists failed: {}",
            e.0
        ))),
    }
}

/// End the rehearsal: nothing it did stays.
pub fn rollback(tx: Transaction) -> Result<(), DbError> {
    tx.rollback()
        .map_err(ctx("rolling back the plan transaction"))
}
