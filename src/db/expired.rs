//! The rows a run starting at T would remove, counted in bounded time, for
//! `status`, `verify` and `plan`: the same rows as the view
//! `retention.expired_<dataset>`, without reading the whole table.
//!
//! Each partition is judged first from its bounds and every retention a row
//! can have (`retention.possible_keeps`), as the run judges it:
//! - no row can be expired (lower bound + every retention, less calendar
//!   slack, at or after T): 0, exactly, and nothing is read;
//! - every row is expired (upper bound + every retention, plus slack, at or
//!   before T), no hold is active and retention is not stamped per row: its
//!   rows are counted with a plain `count(*)`, stopped by the budget;
//! - anything else: only the candidate rows are read, the ones before the
//!   latest `T - retention` (+ slack), through the index on the clock, and
//!   the exact predicate is applied to each.
//!
//! At most [`EXAMINE_BUDGET`] rows are read per count, the partitions that
//! may hold only some expired rows first (half of the budget, when wholly
//! expired partitions must be read too). What the budget does not reach is
//! estimated: a partition's `pg_class.reltuples`, times the share of its
//! range before the cutoff, times the share of expired rows among the
//! candidates read in the newest partition read of the same kind. The result says whether it is exact, and how many
//! rows were actually seen expired, which is always a lower bound.

use std::collections::BTreeSet;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use postgres::types::Type;
use postgres::GenericClient;

use super::{col, ctx, DbError};
use crate::render::text::{ident, lit};

/// The most rows one count reads (candidates examined with the predicate,
/// or rows of wholly expired partitions counted).
pub const EXAMINE_BUDGET: i64 = 100_000;

/// Rows a partition's read must have for its share of expired rows to
/// stand for the partitions after it that the budget did not reach.
const SAMPLE: i64 = 100;

/// The rows a run starting at T would remove from one dataset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expired {
    /// The figure to show: a count when `exact`, else an estimate.
    pub rows: i64,
    /// Every row that could be expired was read: `rows` is a count.
    pub exact: bool,
    /// Rows seen expired: a lower bound of the true number, and equal to
    /// `rows` when `exact`.
    pub counted: i64,
    /// The oldest instant among the rows seen expired.
    pub oldest: Option<DateTime<Utc>>,
    /// Distinct tenants among them, when asked for and `exact`.
    pub tenants: Option<i64>,
    /// Rows read.
    pub examined: i64,
}

/// What one partition may hold, judged from its bounds.
struct Part {
    name: String,
    reltuples: f64,
    /// Every row is past every possible deadline.
    whole: bool,
    /// Share of its range before the cutoff (1 when unbounded).
    share: f64,
}

/// What is needed to read one dataset's partitions.
struct Plan {
    pred: String,
    /// The candidate condition over `t` and `$2` (the cutoff).
    cand: String,
    instant: String,
    tenant: Option<String>,
    cutoff: SystemTime,
    /// Rows of a wholly expired partition are expired without looking:
    /// no active hold, retention not stamped per row.
    bounds_prove: bool,
    parts: Vec<Part>,
}

/// `retention.calendar_slack(keep)`, written out, so that a damaged
/// runtime (a routine dropped by hand, which verify reports) does not stop
/// the count: how far month arithmetic can move a deadline.
fn slack(keep: &str) -> String {
    format!(
        "(CASE WHEN date_part('year'::text, {keep}) <> 0::float8 OR date_part('month'::text, {keep}) <> 0::float8
               THEN interval '4 days' ELSE interval '0' END)"
    )
}

/// SQL for the instant `expr` (of clock type `ty`, written in `zone`) names,
/// as `retention.clock_of` writes it.
fn instant_of(expr: &str, ty: &str, zone: &str) -> String {
    match ty {
        "timestamp without time zone" => format!("({expr} AT TIME ZONE {}::text)", lit(zone)),
        "date" => format!(
            "({expr}::timestamp without time zone AT TIME ZONE {}::text)",
            lit(zone)
        ),
        _ => expr.to_string(),
    }
}

fn read_plan(
    client: &mut impl GenericClient,
    dataset: &str,
    at: SystemTime,
    tenants: bool,
) -> Result<Option<Plan>, DbError> {
    let what = |w: &str| format!("reading {w} of dataset {dataset}");
    let sql = format!(
        "SELECT d.time_column, d.tenant_column, d.new_rows,
                    coalesce(pg_catalog.to_jsonb(d) ->> 'time_zone', 'UTC'),
                    (SELECT a.atttypid::regtype::text FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = d.relation::regclass AND a.attname = d.time_column
                        AND NOT a.attisdropped),
                    EXISTS (SELECT 1 FROM retention.hold h
                             WHERE h.dataset = d.name
                               AND (h.until IS NULL OR ($2 AT TIME ZONE 'UTC'::text) < (h.until + 1)::timestamp)),
                    (SELECT max((($2 AT TIME ZONE 'UTC'::text) - k + {slack}) AT TIME ZONE 'UTC'::text)
                       FROM retention.possible_keeps(d.name) AS k),
                    CASE WHEN pg_catalog.to_regprocedure('retention.run_predicate(text,timestamptz)') IS NULL THEN false
                         ELSE pg_catalog.has_function_privilege(
                                  pg_catalog.to_regprocedure('retention.run_predicate(text,timestamptz)'), 'EXECUTE') END
               FROM retention.dataset d WHERE d.name = $1",
        slack = slack("k")
    );
    let Some(row) = client
        .query_opt(sql.as_str(), &[&dataset, &at])
        .map_err(ctx(&what("the retention settings")))?
    else {
        return Ok(None);
    };
    let time: String = col(&row, 0)?;
    let tenant: Option<String> = col(&row, 1)?;
    let new_rows: bool = col(&row, 2)?;
    let zone: String = col(&row, 3)?;
    let ty: Option<String> = col(&row, 4)?;
    let held: bool = col(&row, 5)?;
    let Some(cutoff) = col::<Option<SystemTime>>(&row, 6)? else {
        return Ok(None);
    };
    let fast: bool = col(&row, 7)?;
    let ty = ty.unwrap_or_else(|| "timestamp with time zone".into());

    // The exact predicate over a row `t` and `$1` = T: the run's own
    // (written out, faster) when this role may call it and it works (in a
    // savepoint: a runtime damaged by hand, which verify reports, must not
    // stop the count), else the view's.
    let mut pred = None;
    if fast && client.batch_execute("SAVEPOINT pgretain_predicate").is_ok() {
        match client.query_one("SELECT retention.run_predicate($1, $2)", &[&dataset, &at]) {
            Ok(r) => {
                pred = col::<Option<String>>(&r, 0)?;
                client
                    .batch_execute("RELEASE SAVEPOINT pgretain_predicate")
                    .map_err(ctx("releasing a savepoint"))?;
            }
            Err(_) => client
                .batch_execute("ROLLBACK TO SAVEPOINT pgretain_predicate")
                .map_err(ctx("rolling back a savepoint"))?,
        }
    }
    let pred = match pred {
        Some(p) => p,
        None => {
            let r = client
                .query_one("SELECT retention.expired_predicate($1)", &[&dataset])
                .map_err(ctx(&what("the expiry predicate")))?;
            let Some(p) = col::<Option<String>>(&r, 0)? else {
                return Ok(None);
            };
            p
        }
    };

    let sql = format!(
            "WITH k AS (SELECT array_agg(k) AS keeps FROM retention.possible_keeps($1) AS k)
             SELECT p.partition::text, c.reltuples::float8,
                    coalesce(p.upper_bound IS NOT NULL AND
                             (SELECT bool_and((p.upper_bound AT TIME ZONE 'UTC'::text) + x + {slack}
                                              <= ($2 AT TIME ZONE 'UTC'::text))
                                FROM unnest(k.keeps) AS x), false),
                    coalesce(p.lower_bound IS NOT NULL AND
                             (SELECT bool_and((p.lower_bound AT TIME ZONE 'UTC'::text) + x - {slack}
                                              >= ($2 AT TIME ZONE 'UTC'::text))
                                FROM unnest(k.keeps) AS x), false),
                    CASE WHEN pg_catalog.isfinite(p.lower_bound) AND pg_catalog.isfinite(p.upper_bound)
                              AND p.upper_bound > p.lower_bound
                         THEN greatest(0::float8, least(1::float8,
                                  extract(epoch FROM ($3 - p.lower_bound))::float8
                                  / extract(epoch FROM (p.upper_bound - p.lower_bound))::float8))
                         ELSE 1::float8 END
               FROM retention.partitions($1) p
               JOIN pg_catalog.pg_class c ON c.oid = p.partition
              CROSS JOIN k
              ORDER BY p.lower_bound NULLS FIRST",
        slack = slack("x")
    );
    let parts = client
        .query(sql.as_str(), &[&dataset, &at, &cutoff])
        .map_err(ctx(&what("the partitions")))?;
    let mut out = Vec::new();
    for r in &parts {
        let none: bool = col(r, 3)?;
        if none {
            continue;
        }
        out.push(Part {
            name: col(r, 0)?,
            reltuples: col(r, 1)?,
            whole: col(r, 2)?,
            share: col(r, 4)?,
        });
    }
    // Partitions that may hold only some expired rows first: the budget
    // goes where a guess from the catalog would be worst.
    out.sort_by_key(|p| p.whole);
    let column = format!("t.{}", ident(&time));
    Ok(Some(Plan {
        pred,
        instant: instant_of(&column, &ty, &zone),
        cand: candidates(&column, &ty, &zone),
        tenant: tenant.filter(|_| tenants),
        cutoff,
        bounds_prove: !held && !new_rows,
        parts: out,
    }))
}

/// The candidate rows of a partition: before the cutoff (`$2`), compared
/// in the clock's own type so the index on it serves. A `timestamp` or
/// `date` clock gets a day more, so no change of UTC offset in its zone can
/// hide a row; the predicate decides.
fn candidates(column: &str, ty: &str, zone: &str) -> String {
    match ty {
        "timestamp without time zone" | "date" => format!(
            "{column} < (($2::timestamptz + interval '1 day') AT TIME ZONE {}::text)",
            lit(zone)
        ),
        _ => format!("{column} < $2::timestamptz"),
    }
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The rows of `dataset` a run starting at `at` would remove, reading at
/// most `budget` rows (see the module's comment); `None` when the database
/// has no such dataset or no predicate for it. With `tenants`, the distinct
/// tenants among them too (only when exact).
pub fn expired(
    client: &mut impl GenericClient,
    dataset: &str,
    at: DateTime<Utc>,
    budget: i64,
    tenants: bool,
) -> Result<Option<Expired>, DbError> {
    let at = SystemTime::from(at);
    let Some(plan) = read_plan(client, dataset, at, tenants)? else {
        return Ok(None);
    };
    let what = format!("counting the overdue rows of dataset {dataset}");
    let tenant = match &plan.tenant {
        Some(t) => format!("t.{}::text", ident(t)),
        None => "NULL::text".into(),
    };
    let typed = [Type::TIMESTAMPTZ, Type::TIMESTAMPTZ];
    let mut left = budget.max(0);
    let mut out = Expired {
        exact: true,
        ..Default::default()
    };
    let mut seen_tenants: BTreeSet<String> = BTreeSet::new();
    // Of the predicate's reads, by kind of partition (whole, or not): rows
    // matched and rows read in all, and the share matched in the newest
    // partition read with at least [`SAMPLE`] rows.
    let (mut matched, mut read) = ([0i64; 2], [0i64; 2]);
    let mut newest: [Option<f64>; 2] = [None, None];
    let mut estimated = 0f64; // rows not seen, estimated
    let mut unread: Vec<&Part> = Vec::new();
    // When wholly expired partitions must be read too (a hold, stamped
    // retention), the others get half of the budget first, so that both
    // kinds are sampled.
    let mut partial_left = if plan.parts.iter().any(|p| p.whole && !plan.bounds_prove) {
        left / 2
    } else {
        left
    };
    for p in &plan.parts {
        let guess = p.reltuples.max(0.0);
        let kind = usize::from(p.whole);
        if !p.whole {
            partial_left = partial_left.min(left);
        }
        let left_here = if p.whole { left } else { partial_left };
        // A wholly expired partition whose rows the bounds prove expired is
        // counted (at least one row looked at, whatever the budget); any
        // other has its candidates read and judged by the predicate.
        let proven = p.whole && plan.bounds_prove;
        let (x, cond, limit) = if proven {
            ("true", "true", left.max(1))
        } else if left_here > 0 {
            (plan.pred.as_str(), plan.cand.as_str(), left_here)
        } else {
            unread.push(p);
            out.exact = false;
            continue;
        };
        let sql = format!(
            "SELECT count(*) FILTER (WHERE s.x), count(*), min(s.i) FILTER (WHERE s.x),
                    array_agg(DISTINCT s.k) FILTER (WHERE s.x AND s.k IS NOT NULL)
               FROM (SELECT ({x}) AS x, {instant} AS i, {tenant} AS k
                       FROM (SELECT * FROM ONLY {part} t WHERE {cond} LIMIT {limit}) t
                     OFFSET 0) s
              WHERE $1::timestamptz IS NOT NULL AND $2::timestamptz IS NOT NULL",
            instant = plan.instant,
            part = p.name,
        );
        let stmt = client.prepare_typed(&sql, &typed).map_err(ctx(&what))?;
        let r = client
            .query_one(&stmt, &[&at, &plan.cutoff])
            .map_err(ctx(&what))?;
        let hit: i64 = col(&r, 0)?;
        let n: i64 = col(&r, 1)?;
        let oldest = col::<Option<SystemTime>>(&r, 2)?.map(DateTime::<Utc>::from);
        if let Some(ts) = col::<Option<Vec<String>>>(&r, 3)? {
            seen_tenants.extend(ts);
        }
        out.examined += n;
        out.counted += hit;
        out.oldest = earliest(out.oldest, oldest);
        left = (left - n).max(0);
        if !p.whole {
            partial_left = (partial_left - n).max(0);
        }
        if !proven {
            matched[kind] += hit;
            read[kind] += n;
            if n >= SAMPLE {
                newest[kind] = Some(hit as f64 / n as f64);
            }
        }
        if n >= limit {
            // Stopped by the budget: the rest of its rows, guessed.
            out.exact = false;
            let rest = if proven {
                guess - n as f64
            } else {
                (guess * p.share - n as f64) * hit as f64 / n.max(1) as f64
            };
            estimated += rest.max(0.0);
        }
    }
    // Partitions the budget did not reach (newer than those read of their
    // kind): their candidates, at the share of expired rows seen in the
    // newest partition read of the same kind (a row's chance to be expired
    // does not grow as its partition gets newer), else among all read of
    // that kind, else all of them.
    for p in unread {
        let kind = usize::from(p.whole);
        let ratio = newest[kind].unwrap_or(if read[kind] > 0 {
            matched[kind] as f64 / read[kind] as f64
        } else {
            1.0
        });
        let share = if p.whole { 1.0 } else { p.share };
        estimated += p.reltuples.max(0.0) * share * ratio;
    }
    out.rows = out.counted + estimated.round() as i64;
    if out.exact {
        out.tenants = plan.tenant.as_ref().map(|_| seen_tenants.len() as i64);
    }
    Ok(Some(out))
}
