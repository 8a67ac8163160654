//! What a dataset's table holds, read from the catalog and the table: its
//! partitions, counts that stop at [`COUNT_CAP`], the oldest row, and what
//! would stop a run (a foreign key into the table, an
//! archive whose columns drifted). Read-only.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use postgres::types::Type;
use postgres::GenericClient;

use super::{col, ctx, DbError};
use crate::model::ARCHIVE_COLUMNS;
use crate::render::text::{ident, lit};

/// Counts that scan rows stop here and are reported as "at least".
pub const COUNT_CAP: i64 = 1_000_000;

/// One partition of a dataset (`retention.partitions`).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionRow {
    pub name: String,
    /// The default partition (rows outside every range).
    pub is_default: bool,
    /// `None` for the default partition, and for the old storage of an
    /// adopted table, which starts at MINVALUE.
    pub lower: Option<DateTime<Utc>>,
    pub upper: Option<DateTime<Utc>>,
    /// `pg_class.reltuples`: -1 when never analyzed.
    pub reltuples: f64,
    /// Size on disk, indexes and TOAST included.
    pub total_bytes: i64,
}

fn utc(t: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(t)
}

/// The partitions of `dataset`, its default partition included.
pub fn partitions(
    client: &mut impl GenericClient,
    dataset: &str,
) -> Result<Vec<PartitionRow>, DbError> {
    client
        .query(
            "SELECT p.partition::text,
                    CASE WHEN pg_catalog.isfinite(p.lower_bound) THEN p.lower_bound END,
                    CASE WHEN pg_catalog.isfinite(p.upper_bound) THEN p.upper_bound END,
                    c.reltuples::float8, pg_total_relation_size(p.partition), p.lower_bound IS NULL
               FROM retention.partitions($1) p JOIN pg_class c ON c.oid = p.partition",
            &[&dataset],
        )
        .map_err(ctx(&format!("listing the partitions of {dataset}")))?
        .iter()
        .map(|r| {
            Ok(PartitionRow {
                name: col(r, 0)?,
                is_default: col(r, 5)?,
                lower: col::<Option<SystemTime>>(r, 1)?.map(utc),
                upper: col::<Option<SystemTime>>(r, 2)?.map(utc),
                reltuples: col(r, 3)?,
                total_bytes: col(r, 4)?,
            })
        })
        .collect()
}

/// The rows of the partition `partition` itself (not of partitions below
/// it), up to [`COUNT_CAP`].
pub fn rows_in_partition(client: &mut impl GenericClient, partition: &str) -> Result<i64, DbError> {
    rows_in_partition_up_to(client, partition, COUNT_CAP)
}

/// The rows of the partition `partition` itself, up to `cap`.
fn rows_in_partition_up_to(
    client: &mut impl GenericClient,
    partition: &str,
    cap: i64,
) -> Result<i64, DbError> {
    let sql = format!("SELECT count(*) FROM (SELECT 1 FROM ONLY {partition} LIMIT {cap}) s");
    let row = client
        .query_one(sql.as_str(), &[])
        .map_err(ctx("counting the rows of the default partition"))?;
    col(&row, 0)
}

/// The rows of the partition `partition` itself that no hold active now
/// keeps (`retention.held_predicate`), up to `cap`: what should not sit in
/// a default partition after a run. Rows past every retention that a hold
/// keeps belong there (no partition is kept for them). (verify asks for a
/// few: whether any is there, not how many an imported backlog holds.)
pub fn unheld_rows_in_partition(
    client: &mut impl GenericClient,
    dataset: &str,
    partition: &str,
    cap: i64,
) -> Result<i64, DbError> {
    let row = client
        .query_one("SELECT retention.held_predicate($1)", &[&dataset])
        .map_err(ctx("reading the hold predicate"))?;
    let Some(held) = col::<Option<String>>(&row, 0)? else {
        return rows_in_partition_up_to(client, partition, cap);
    };
    let sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM ONLY {partition} t WHERE NOT ({held}) LIMIT {cap}) s"
    );
    let stmt = client
        .prepare_typed(&sql, &[Type::TIMESTAMPTZ])
        .map_err(ctx("counting the rows of the default partition"))?;
    let row = client
        .query_one(&stmt, &[&SystemTime::now()])
        .map_err(ctx("counting the rows of the default partition"))?;
    col(&row, 0)
}

/// SQL for the instant that `expr`, a value of `dataset`'s clock type,
/// names (`retention.clock_of`: a `timestamp` or `date` clock is read in
/// the dataset's zone). A runtime older than version 3 knows only
/// timestamptz clocks: `expr` itself.
fn instant_sql(
    client: &mut impl GenericClient,
    dataset: &str,
    expr: &str,
) -> Result<String, DbError> {
    let row = client
        .query_one(
            "SELECT pg_catalog.to_regprocedure('retention.clock_of(text,text)') IS NOT NULL",
            &[],
        )
        .map_err(ctx("reading the runtime's version"))?;
    if !col::<bool>(&row, 0)? {
        return Ok(expr.to_string());
    }
    let row = client
        .query_one("SELECT retention.clock_of($1, $2)", &[&dataset, &expr])
        .map_err(ctx("reading the retention clock's type"))?;
    Ok(col::<Option<String>>(&row, 0)?.unwrap_or_else(|| expr.to_string()))
}

/// The smallest value of `time_column` in `table` (dataset `dataset`), as
/// an instant; `None` when it is empty.
pub fn oldest_row(
    client: &mut impl GenericClient,
    dataset: &str,
    table: &str,
    time_column: &str,
) -> Result<Option<DateTime<Utc>>, DbError> {
    let oldest = instant_sql(client, dataset, &format!("min(t.{})", ident(time_column)))?;
    let row = client
        .query_one(format!("SELECT {oldest} FROM {table} t").as_str(), &[])
        .map_err(ctx("reading the oldest row"))?;
    Ok(col::<Option<SystemTime>>(&row, 0)?.map(utc))
}

/// The time `periods` partition periods of `granularity` (day, week,
/// month) after now, counted in UTC as partitions are.
pub fn horizon(
    client: &mut impl GenericClient,
    periods: i32,
    granularity: &str,
) -> Result<DateTime<Utc>, DbError> {
    let row = client
        .query_one(
            "SELECT ((now() AT TIME ZONE 'UTC') + ($1::int4 || ' ' || $2::text)::interval) AT TIME ZONE 'UTC'",
            &[&periods, &granularity],
        )
        .map_err(ctx("computing the partition horizon"))?;
    Ok(utc(col(&row, 0)?))
}

/// The foreign keys of other tables into `table` (or its partitions): as
/// (constraint, the table that has it). A partition they reference cannot
/// be dropped.
pub fn foreign_keys_into(
    client: &mut impl GenericClient,
    table: &str,
) -> Result<Vec<(String, String)>, DbError> {
    client
        .query(
            "SELECT c.conname::text, c.conrelid::regclass::text
               FROM pg_catalog.pg_constraint c
              WHERE c.contype = 'f' AND c.conparentid = 0
                AND c.confrelid IN (SELECT t.relid FROM pg_catalog.pg_partition_tree($1::text::regclass) t)
              ORDER BY 1",
            &[&table],
        )
        .map_err(ctx("looking for foreign keys into the dataset's table"))?
        .iter()
        .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
        .collect()
}

/// Why the archive `archive` cannot take rows of `table`, one sentence per
/// column (empty: it can): a column of another type, or an archive column
/// that is NOT NULL but missing from the table.
pub fn archive_drift(
    client: &mut impl GenericClient,
    table: &str,
    archive: &str,
) -> Result<Vec<String>, DbError> {
    let sql = format!(
            "SELECT format('column %I is %s in the table but %s in the archive', t.attname,
                           format_type(t.atttypid, t.atttypmod), format_type(a.atttypid, a.atttypmod))
               FROM pg_catalog.pg_attribute t
               JOIN pg_catalog.pg_attribute a ON a.attrelid = $2::text::regclass AND a.attname = t.attname
                                             AND a.attnum > 0 AND NOT a.attisdropped
              WHERE t.attrelid = $1::text::regclass AND t.attnum > 0 AND NOT t.attisdropped
                AND format_type(t.atttypid, t.atttypmod) <> format_type(a.atttypid, a.atttypmod)
             UNION ALL
             SELECT format('archive column %I is NOT NULL but the table has no such column', a.attname)
               FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = $2::text::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull
                AND a.attname NOT IN ({added})
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute t
                                 WHERE t.attrelid = $1::text::regclass AND t.attname = a.attname
                                   AND t.attnum > 0 AND NOT t.attisdropped)",
            added = ARCHIVE_COLUMNS.iter().map(|c| lit(c)).collect::<Vec<_>>().join(", "),
        );
    client
        .query(sql.as_str(), &[&table, &archive])
        .map_err(ctx("comparing the archive's columns with the table's"))?
        .iter()
        .map(|r| col(r, 0))
        .collect()
}
