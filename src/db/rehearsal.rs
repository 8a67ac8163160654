//! `plan`'s rehearsal: one transaction that is always rolled back, in which
//! the rows a run would remove are counted (`retention.expired_<dataset>`),
//! the pending migrations run, and the rows are counted again. Lock waits
//! are bounded by the lock timeout given; each count by a statement
//! timeout, after which the planner's estimate stands in, labelled as such.

use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, SimpleQueryMessage, Transaction};
use refinery::Migration;
use serde::Serialize;

use super::{col, ctx, pg_message, DbError};
use crate::render::names::expired_view_named;
use crate::render::text::ident;
use crate::words::seconds;

/// How many rows a run would remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExpiredCount {
    pub rows: i64,
    /// Distinct tenants among them (`None`: no tenant column, or estimated).
    pub tenants: Option<i64>,
    /// The count timed out: `rows` is the planner's estimate.
    pub estimated: bool,
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

/// Count the rows of `retention.expired_<dataset>` (and their tenants, by
/// `tenant`) in a savepoint; after `timeout`, the planner's estimate.
pub fn count_expired(
    tx: &mut Transaction,
    dataset: &str,
    tenant: Option<&str>,
    timeout: Duration,
) -> Result<ExpiredCount, DbError> {
    let view = expired_view_named(dataset);
    let sql = match tenant {
        Some(t) => format!("SELECT count(*), count(DISTINCT {}) FROM {view}", ident(t)),
        None => format!("SELECT count(*), NULL::bigint FROM {view}"),
    };
    let mut sp = tx
        .savepoint("pgretain_plan_count")
        .map_err(ctx("starting a savepoint"))?;
    sp.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        timeout.as_millis().max(1)
    ))
    .map_err(ctx("setting the count timeout"))?;
    match sp.query_one(sql.as_str(), &[]) {
        Ok(row) => {
            // The timeout bounds the count only, not what follows.
            sp.batch_execute("SET LOCAL statement_timeout TO DEFAULT")
                .map_err(ctx("lifting the count timeout"))?;
            sp.commit().map_err(ctx("releasing a savepoint"))?;
            Ok(ExpiredCount {
                rows: col(&row, 0)?,
                tenants: col(&row, 1)?,
                estimated: false,
            })
        }
        Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => {
            sp.rollback().map_err(ctx("rolling back a savepoint"))?;
            estimate(tx, dataset, &view, timeout)
        }
        Err(e) => Err(DbError(format!(
            "counting the rows {view} lists failed: {}",
            pg_message(&e)
        ))),
    }
}

/// The planner's row estimate for the view (EXPLAIN; nothing is read).
fn estimate(
    tx: &mut Transaction,
    dataset: &str,
    view: &str,
    timeout: Duration,
) -> Result<ExpiredCount, DbError> {
    let mut sp = tx
        .savepoint("pgretain_plan_estimate")
        .map_err(ctx("starting a savepoint"))?;
    let explain = format!(
        "SET LOCAL statement_timeout = {}; EXPLAIN (FORMAT JSON) SELECT * FROM {view}",
        timeout.max(Duration::from_secs(5)).as_millis()
    );
    let messages = sp.simple_query(&explain).map_err(|e| {
        DbError(format!(
            "counting the expired rows of `{dataset}` took longer than {} and estimating them failed too: {}. Retry with a longer --count-timeout, or when the table is not locked",
            seconds(timeout),
            pg_message(&e)
        ))
    })?;
    sp.rollback().map_err(ctx("rolling back a savepoint"))?;
    let text = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.try_get(0).ok().flatten().map(str::to_string),
            _ => None,
        })
        .unwrap_or_default();
    let rows = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v[0]["Plan"]["Plan Rows"].as_f64())
        .ok_or_else(|| {
            DbError(format!(
                "cannot read the row estimate of {view} from EXPLAIN"
            ))
        })?;
    Ok(ExpiredCount {
        rows: rows.round() as i64,
        tenants: None,
        estimated: true,
    })
}

/// End the rehearsal: nothing it did stays.
pub fn rollback(tx: Transaction) -> Result<(), DbError> {
    tx.rollback()
        .map_err(ctx("rolling back the plan transaction"))
}
