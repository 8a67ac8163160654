//! `retention.run_log`, the evidence table: what each enforcement run and
//! erasure did, one row type for every reader (run, status, verify, the
//! report). Read-only.

use std::time::SystemTime;

use chrono::{DateTime, TimeDelta, Utc};
use postgres::{GenericClient, Row};

use super::{col, ctx, DbError};
use crate::render::names::LOCK_CLASS;
use crate::render::text::lit;

/// A run_log row still `running` after this long, with no backend holding
/// the dataset's enforcement lock, is a run that died.
pub const STUCK_AFTER: TimeDelta = TimeDelta::hours(1);

/// One row of `retention.run_log`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: i64,
    pub dataset: String,
    /// enforce or erase.
    pub action: String,
    /// T: rows with a deadline before it are removed.
    pub reference_time: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// running, ok, partial, failed or skipped.
    pub outcome: String,
    pub partitions_dropped: Vec<String>,
    /// Partitions left for the next run; the detail says why.
    pub partitions_skipped: Vec<String>,
    /// Removed row by row.
    pub rows_deleted: i64,
    /// Estimated rows of the dropped partitions.
    pub rows_in_dropped: i64,
    pub rows_archived: i64,
    pub archive_rows_deleted: i64,
    /// Erase: rows a hold kept.
    pub rows_kept_by_hold: i64,
    pub detail: Option<String>,
    /// Seconds from start to finish (to now, while it runs).
    pub seconds: f64,
    /// Still `running` after [`STUCK_AFTER`] and no backend holds its lock:
    /// it died without recording an outcome.
    pub stuck: bool,
}

impl RunRow {
    /// Rows the run took out of the table (moved to the archive or deleted;
    /// rows of dropped partitions are the planner's count at drop time).
    pub fn removed(&self, archives: bool) -> i64 {
        if archives {
            self.rows_deleted + self.rows_archived
        } else {
            self.rows_deleted + self.rows_in_dropped
        }
    }
}

/// The select list every query of this module reads a [`RunRow`] with.
fn columns() -> String {
    format!(
        "r.id, r.dataset, r.action, r.reference_time, r.started_at, r.finished_at, r.outcome,
         r.partitions_dropped, r.partitions_skipped, r.rows_deleted, r.rows_in_dropped,
         r.rows_archived, r.archive_rows_deleted, r.rows_kept_by_hold, r.detail,
         extract(epoch FROM coalesce(r.finished_at, clock_timestamp()) - r.started_at)::float8,
         r.outcome = 'running' AND r.started_at < now() - make_interval(secs => {stuck})
         AND NOT EXISTS (
             SELECT 1 FROM pg_locks l
              WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND l.classid = hashtext({class})::oid
                AND l.objid = hashtext(r.dataset)::oid)",
        stuck = STUCK_AFTER.num_seconds(),
        class = lit(LOCK_CLASS),
    )
}

fn decode(r: &Row) -> Result<RunRow, DbError> {
    let t = |i: usize| -> Result<DateTime<Utc>, DbError> { Ok(col::<SystemTime>(r, i)?.into()) };
    Ok(RunRow {
        id: col(r, 0)?,
        dataset: col(r, 1)?,
        action: col(r, 2)?,
        reference_time: t(3)?,
        started_at: t(4)?,
        finished_at: col::<Option<SystemTime>>(r, 5)?.map(DateTime::<Utc>::from),
        outcome: col(r, 6)?,
        partitions_dropped: col(r, 7)?,
        partitions_skipped: col(r, 8)?,
        rows_deleted: col(r, 9)?,
        rows_in_dropped: col(r, 10)?,
        rows_archived: col(r, 11)?,
        archive_rows_deleted: col(r, 12)?,
        rows_kept_by_hold: col(r, 13)?,
        detail: col(r, 14)?,
        seconds: col(r, 15)?,
        stuck: col(r, 16)?,
    })
}

/// The latest enforcement run of `dataset`.
pub fn last_run(client: &mut impl GenericClient, dataset: &str) -> Result<Option<RunRow>, DbError> {
    let sql = format!(
        "SELECT {} FROM retention.run_log r
          WHERE r.dataset = $1 AND r.action = 'enforce'
          ORDER BY r.id DESC LIMIT 1",
        columns()
    );
    client
        .query_opt(sql.as_str(), &[&dataset])
        .map_err(ctx("reading retention.run_log"))?
        .as_ref()
        .map(decode)
        .transpose()
}

/// The latest `limit` runs of `dataset` whose action is one of `actions`,
/// newest first.
pub fn runs(
    client: &mut impl GenericClient,
    dataset: &str,
    actions: &[&str],
    limit: i64,
) -> Result<Vec<RunRow>, DbError> {
    let sql = format!(
        "SELECT {} FROM retention.run_log r
          WHERE r.dataset = $1 AND r.action = ANY($2) ORDER BY r.id DESC LIMIT $3",
        columns()
    );
    let actions: Vec<String> = actions.iter().map(|s| s.to_string()).collect();
    client
        .query(sql.as_str(), &[&dataset, &actions, &limit])
        .map_err(ctx(&format!(
            "reading retention.run_log of dataset {dataset}"
        )))?
        .iter()
        .map(decode)
        .collect()
}

/// The id of the latest run of any dataset (0 when there is none): runs
/// after it are the ones that follow.
pub fn last_id(client: &mut impl GenericClient) -> Result<i64, DbError> {
    let row = client
        .query_one("SELECT coalesce(max(id), 0) FROM retention.run_log", &[])
        .map_err(ctx("reading retention.run_log"))?;
    col(&row, 0)
}

/// The latest enforcement run of `dataset` after run `after`.
pub fn enforcement_after(
    client: &mut impl GenericClient,
    dataset: &str,
    after: i64,
) -> Result<Option<RunRow>, DbError> {
    let sql = format!(
        "SELECT {} FROM retention.run_log r
          WHERE r.dataset = $1 AND r.action = 'enforce' AND r.id > $2
          ORDER BY r.id DESC LIMIT 1",
        columns()
    );
    client
        .query_opt(sql.as_str(), &[&dataset, &after])
        .map_err(ctx("reading retention.run_log"))?
        .as_ref()
        .map(decode)
        .transpose()
}
