//! `pgretain run` and `pgretain erase`: enforcement now, through exactly the
//! command the pg_cron job runs, and on-demand erasure through the generated
//! `retention.erase()` function. Both read what happened back from
//! `retention.run_log`, the evidence table.

use crate::db::{self, ctx, DbError};
use crate::render::text::lit;

/// What one enforcement run did to one dataset (a `retention.run_log` row).
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    pub dataset: String,
    pub outcome: String,
    pub partitions_dropped: Vec<String>,
    pub partitions_skipped: Vec<String>,
    pub rows_deleted: i64,
    pub rows_in_dropped: i64,
    pub rows_archived: i64,
    pub archive_rows_deleted: i64,
    pub seconds: f64,
    pub detail: Option<String>,
}

impl std::fmt::Display for RunResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} — dropped {} partition(s) (~{} rows), deleted {} row(s), archived {}, removed {} from the archive, in {:.2} s",
            self.dataset,
            self.outcome,
            self.partitions_dropped.len(),
            self.rows_in_dropped,
            self.rows_deleted,
            self.rows_archived,
            self.archive_rows_deleted,
            self.seconds
        )?;
        if !self.partitions_skipped.is_empty() {
            write!(
                f,
                "; skipped (lock timeout, retried next run): {}",
                self.partitions_skipped.join(", ")
            )?;
        }
        if let Some(d) = &self.detail {
            write!(f, "; {d}")?;
        }
        Ok(())
    }
}

/// The command the job of `dataset` runs.
pub fn job_command(dataset: &str) -> String {
    crate::render::names::job_command_named(dataset)
}

fn datasets(client: &mut postgres::Client) -> Result<Vec<String>, DbError> {
    let rows = client
        .query("SELECT name FROM retention.dataset ORDER BY name", &[])
        .map_err(|e| {
            DbError(format!(
                "cannot read retention.dataset ({}); has `pgretain apply` run on this database?",
                db::pg_message(&e)
            ))
        })?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// `pgretain run [DATASET...]`: enforce now. Unknown datasets are an error
/// before anything runs.
pub fn run(database_url: Option<&str>, only: &[String]) -> Result<Vec<RunResult>, DbError> {
    let cfg = db::config(database_url)?;
    let mut client = db::connect(&cfg)?;
    // The run is the job's: as the role the job runs as (with access, the
    // owner of schema retention), and never cut short by a statement_timeout
    // of the database, the role or PGOPTIONS.
    db::act_as_retention_owner(&mut client)?;
    client
        .batch_execute("SELECT pg_catalog.set_config('statement_timeout', '0', false)")
        .map_err(ctx("clearing statement_timeout"))?;
    let all = datasets(&mut client)?;
    let chosen: Vec<String> = if only.is_empty() {
        all.clone()
    } else {
        for d in only {
            if !all.contains(d) {
                return Err(DbError(format!(
                    "unknown dataset `{d}`; this database enforces: {}",
                    all.join(", ")
                )));
            }
        }
        only.to_vec()
    };
    let mut results = Vec::new();
    for d in &chosen {
        let before: i64 = client
            .query_one("SELECT coalesce(max(id), 0) FROM retention.run_log", &[])
            .map_err(ctx("reading retention.run_log"))?
            .get(0);
        let call = client.batch_execute(&job_command(d));
        let row = client
            .query_opt(
                "SELECT dataset, outcome, partitions_dropped, partitions_skipped, rows_deleted, rows_in_dropped,
                        rows_archived, archive_rows_deleted,
                        extract(epoch FROM coalesce(finished_at, clock_timestamp()) - started_at)::float8, detail
                   FROM retention.run_log WHERE dataset = $1 AND action = 'enforce' AND id > $2
                  ORDER BY id DESC LIMIT 1",
                &[d, &before],
            )
            .map_err(ctx("reading retention.run_log"))?;
        if let Err(e) = call {
            return Err(DbError(format!(
                "enforcement of `{d}` failed: {}",
                db::pg_message(&e)
            )));
        }
        if let Some(r) = row {
            results.push(RunResult {
                dataset: r.get(0),
                outcome: r.get(1),
                partitions_dropped: r.get(2),
                partitions_skipped: r.get(3),
                rows_deleted: r.get(4),
                rows_in_dropped: r.get(5),
                rows_archived: r.get(6),
                archive_rows_deleted: r.get(7),
                seconds: r.get(8),
                detail: r.get(9),
            });
        }
    }
    Ok(results)
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EraseResult {
    pub rows_deleted: i64,
    pub archive_rows_deleted: i64,
    pub rows_kept_by_hold: i64,
    pub holds: Option<String>,
}

/// `pgretain erase DATASET KEY`.
pub fn erase(database_url: Option<&str>, dataset: &str, key: &str) -> Result<EraseResult, DbError> {
    let cfg = db::config(database_url)?;
    let mut client = db::connect(&cfg)?;
    db::act_as_retention_owner(&mut client)?;
    let all = datasets(&mut client)?;
    if !all.iter().any(|d| d == dataset) {
        return Err(DbError(format!(
            "unknown dataset `{dataset}`; this database enforces: {}",
            all.join(", ")
        )));
    }
    let sql = format!(
        "SELECT * FROM retention.erase({}::text, $1::text)",
        lit(dataset)
    );
    let r = client.query_one(sql.as_str(), &[&key]).map_err(|e| {
        DbError(format!(
            "erasure in `{dataset}` failed: {}",
            db::pg_message(&e)
        ))
    })?;
    Ok(EraseResult {
        rows_deleted: r.get(0),
        archive_rows_deleted: r.get(1),
        rows_kept_by_hold: r.get(2),
        holds: r.get(3),
    })
}
