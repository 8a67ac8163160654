//! The report's evidence from a dataset's table: how old the stored rows
//! are against their deadline (from a sample on very large tables), how
//! many are past it and how many of those a hold keeps, and the oldest row.
//! Every deadline is the one `render::expiry` writes for the view of
//! expired rows. Read-only; `at` is the report's "now".

use std::collections::BTreeMap;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use super::{col, ctx, DbError};
use crate::model::Dataset;
use crate::render::expiry::Expiry;
use crate::render::names::relation;
use crate::render::text::ident;

/// `at` as the SQL the queries below compare with (`$1`, seconds since the epoch).
const AT: &str = "to_timestamp($1::float8)";

fn seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_micros() as f64 / 1e6
}

fn what(ds: &Dataset, w: &str) -> String {
    format!("reading {w} of dataset {}", ds.name)
}

/// The planner's estimate of the rows of `ds` (its partitions' reltuples).
pub fn estimated_rows(client: &mut impl GenericClient, ds: &Dataset) -> Result<f64, DbError> {
    let row = client
        .query_one(
            "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::float8
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = $1::text::regclass",
            &[&relation(ds)],
        )
        .map_err(ctx(&what(ds, "the table size")))?;
    col(&row, 0)
}

/// The expiry rule of `ds` as this database can evaluate it per row at
/// `at`: as written (keep_for(), is_held()), or, when its table is a
/// Citus distributed table, with the retention and the holds written out
/// by the runtime (run_keep, run_held): a function that reads the settings
/// cannot be called per row on the workers.
fn rule_for<'a>(
    client: &mut impl GenericClient,
    ds: &'a Dataset,
    at: DateTime<Utc>,
) -> Result<Expiry<'a>, DbError> {
    let citus: bool = client
        .query_one(
            "SELECT pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL",
            &[],
        )
        .and_then(|r| r.try_get(0))
        .map_err(ctx(&what(ds, "whether Citus is installed")))?;
    if !citus {
        return Ok(Expiry::of(ds));
    }
    let r = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p
                             WHERE p.logicalrelid = $1::text::pg_catalog.regclass AND p.partmethod <> 'n'),
                    retention.run_keep($2), retention.run_held($2, pg_catalog.to_timestamp($3::float8))",
            &[&relation(ds), &ds.name, &seconds(at)],
        )
        .map_err(ctx(&what(ds, "its rules as the runs write them")))?;
    let distributed: bool = col(&r, 0)?;
    if !distributed {
        return Ok(Expiry::of(ds));
    }
    Ok(Expiry::written_out(ds, col(&r, 1)?, col(&r, 2)?))
}

/// One bar of the age histogram as counted: rows, rows past their
/// deadline that no hold keeps, rows past it that a hold keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgeCount {
    pub rows: i64,
    pub past_deadline: i64,
    pub held: i64,
}

/// The rows of `ds` by age at `at`, in `buckets` buckets from 0 to
/// `range_days` (`width_bucket`: 0 is the future, `buckets + 1` older),
/// from a `TABLESAMPLE SYSTEM` of `sample_percent` when given.
pub fn age_histogram(
    client: &mut impl GenericClient,
    ds: &Dataset,
    at: DateTime<Utc>,
    range_days: f64,
    buckets: i32,
    sample_percent: Option<f64>,
) -> Result<BTreeMap<i32, AgeCount>, DbError> {
    let rule = rule_for(client, ds, at)?;
    let (deadline, held) = (rule.past_deadline(AT), rule.held(AT));
    let sample = sample_percent
        .map(|p| format!(" TABLESAMPLE SYSTEM ({p:.6})"))
        .unwrap_or_default();
    let sql = format!(
        "SELECT width_bucket(extract(epoch FROM {AT} - {time}) / 86400.0, 0, $2::float8, {buckets}) AS b,
                count(*),
                count(*) FILTER (WHERE {deadline} AND NOT {held}),
                count(*) FILTER (WHERE {deadline} AND {held})
           FROM {rel} t{sample}
          GROUP BY b ORDER BY b",
        time = rule.instant(),
        rel = relation(ds),
    );
    let mut out = BTreeMap::new();
    for r in client
        .query(sql.as_str(), &[&seconds(at), &range_days])
        .map_err(ctx(&what(ds, "the age of the rows")))?
    {
        out.insert(
            col(&r, 0)?,
            AgeCount {
                rows: col(&r, 1)?,
                past_deadline: col(&r, 2)?,
                held: col(&r, 3)?,
            },
        );
    }
    Ok(out)
}

/// The rows of `ds` past their deadline at `at`: (not held, held).
pub fn past_deadline(
    client: &mut impl GenericClient,
    ds: &Dataset,
    at: DateTime<Utc>,
) -> Result<(i64, i64), DbError> {
    let rule = rule_for(client, ds, at)?;
    let held = rule.held(AT);
    let sql = format!(
        "SELECT count(*) FILTER (WHERE NOT {held}), count(*) FILTER (WHERE {held}) FROM {} t WHERE {}",
        relation(ds),
        rule.past_deadline(AT)
    );
    let r = client
        .query_one(sql.as_str(), &[&seconds(at)])
        .map_err(ctx(&what(ds, "the rows past their deadline")))?;
    Ok((col(&r, 0)?, col(&r, 1)?))
}

/// The oldest row of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Oldest {
    pub time: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    /// A legal hold covers it at `at`.
    pub held: bool,
}

/// The oldest row of `ds`, with its deadline and whether a hold covers it at `at`.
pub fn oldest(
    client: &mut impl GenericClient,
    ds: &Dataset,
    at: DateTime<Utc>,
) -> Result<Option<Oldest>, DbError> {
    let rule = rule_for(client, ds, at)?;
    let sql = format!(
        "SELECT {instant}, {deadline}, {held}
           FROM {rel} t ORDER BY t.{time} LIMIT 1",
        instant = rule.instant(),
        time = ident(&ds.time),
        deadline = rule.deadline(),
        held = rule.held(AT),
        rel = relation(ds),
    );
    client
        .query_opt(sql.as_str(), &[&seconds(at)])
        .map_err(ctx(&what(ds, "the oldest row")))?
        .map(|r| {
            Ok(Oldest {
                time: col::<SystemTime>(&r, 0)?.into(),
                deadline: col::<SystemTime>(&r, 1)?.into(),
                held: col(&r, 2)?,
            })
        })
        .transpose()
}
