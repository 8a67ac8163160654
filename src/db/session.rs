//! Facts about the session and the server, and the switches a command
//! flips on its session: which databases, which role, whether pg_cron is
//! loaded, whether the retention schema exists, the database's clock, and
//! a read-only snapshot to read everything at one moment.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use postgres::{Client, GenericClient, IsolationLevel, Transaction};

use super::{col, ctx, DbError};
use crate::render::names::{APPLY_LOCK, LOCK_CLASS};
use crate::render::text::lit;

/// The data database's name and the cron database to use: `cron_database`
/// when given, else the server's `cron.database_name`, else `postgres`.
pub fn databases(
    client: &mut Client,
    cron_database: Option<&str>,
) -> Result<(String, String), DbError> {
    let row = client
        .query_one(
            "SELECT current_database()::text, current_setting('cron.database_name', true)",
            &[],
        )
        .map_err(ctx("reading the database name"))?;
    let data: String = col(&row, 0)?;
    let setting: Option<String> = col(&row, 1)?;
    let cron = match cron_database {
        Some(c) => c.to_string(),
        None => setting
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "postgres".into()),
    };
    Ok((data, cron))
}

/// Whether pg_cron is in `shared_preload_libraries`, with the setting as
/// the server has it.
pub fn pg_cron_preloaded(client: &mut Client) -> Result<(bool, String), DbError> {
    let row = client
        .query_one("SELECT current_setting('shared_preload_libraries')", &[])
        .map_err(ctx("reading shared_preload_libraries"))?;
    let preload: String = col(&row, 0)?;
    let loaded = preload
        .split(',')
        .any(|l| l.trim().trim_matches('"') == "pg_cron");
    Ok((loaded, preload))
}

/// The current role's name.
pub fn current_user(client: &mut impl GenericClient) -> Result<String, DbError> {
    let row = client
        .query_one("SELECT current_user::text", &[])
        .map_err(ctx("reading the current role"))?;
    col(&row, 0)
}

/// Whether the current role is a superuser.
pub fn is_superuser(client: &mut impl GenericClient) -> Result<bool, DbError> {
    let row = client
        .query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .map_err(ctx("reading the current role"))?;
    col(&row, 0)
}

/// A read-only, repeatable-read transaction: one consistent snapshot and
/// one `now()` for everything a command reads.
pub fn snapshot(client: &mut Client) -> Result<Transaction<'_>, DbError> {
    client
        .build_transaction()
        .read_only(true)
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .map_err(ctx("starting a read-only transaction"))
}

/// The transaction's `now()`.
pub fn now(tx: &mut impl GenericClient) -> Result<DateTime<Utc>, DbError> {
    let row = tx
        .query_one("SELECT now()", &[])
        .map_err(ctx("reading the time"))?;
    let t: SystemTime = col(&row, 0)?;
    Ok(DateTime::<Utc>::from(t))
}

/// Whether the retention schema is installed (apply has run).
pub fn has_runtime(client: &mut impl GenericClient) -> Result<bool, DbError> {
    let row = client
        .query_one("SELECT to_regclass('retention.dataset') IS NOT NULL", &[])
        .map_err(ctx("looking for the retention schema"))?;
    col(&row, 0)
}

/// Never cut the session short by a statement_timeout of the database,
/// the role or PGOPTIONS (a run is as long as it needs).
pub fn clear_statement_timeout(client: &mut Client) -> Result<(), DbError> {
    client
        .batch_execute("SELECT pg_catalog.set_config('statement_timeout', '0', false)")
        .map_err(ctx("clearing statement_timeout"))
}

/// The advisory lock `apply` holds for its whole run, so that two deploys
/// never interleave: `lock` takes it (waiting), else releases it.
pub fn apply_lock(client: &mut Client, lock: bool) -> Result<(), DbError> {
    let sql = format!(
        "SELECT pg_catalog.pg_advisory_{}(pg_catalog.hashtext({}), pg_catalog.hashtext({}))",
        if lock { "lock" } else { "unlock" },
        lit(LOCK_CLASS),
        lit(APPLY_LOCK)
    );
    client
        .execute(sql.as_str(), &[])
        .map(|_| ())
        .map_err(ctx(if lock {
            "taking the apply lock"
        } else {
            "releasing the apply lock"
        }))
}

/// End a read-only transaction of [`snapshot`].
pub fn end(tx: Transaction<'_>) -> Result<(), DbError> {
    tx.commit().map_err(ctx("ending the read-only transaction"))
}
