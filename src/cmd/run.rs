//! `pgretain run [DATASET...]`: enforcement now, through exactly the
//! command the pg_cron job runs, as the role the job runs as; what each run
//! did is read back from `retention.run_log`, the evidence table.

use serde::Serialize;

use super::Outcome;
use crate::db::{connect, enforce, session, DbError};

/// What one enforcement run did to one dataset (a `retention.run_log` row).
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// `pgretain run [DATASET...]`: enforce now. Unknown datasets are an error
/// before anything runs.
pub fn run(database_url: Option<&str>, only: &[String]) -> Result<Vec<RunResult>, DbError> {
    let cfg = connect::config(database_url)?;
    let mut client = connect::connect(&cfg)?;
    // The run is the job's: as the role the job runs as (with access, the
    // owner of schema retention), and never cut short by a statement_timeout
    // of the database, the role or PGOPTIONS.
    connect::act_as_retention_owner(&mut client)?;
    session::clear_statement_timeout(&mut client)?;
    let mut results = Vec::new();
    for d in enforce::datasets(&mut client, only)? {
        if let Some(r) = enforce::enforce(&mut client, &d)? {
            results.push(RunResult {
                dataset: r.dataset,
                outcome: r.outcome,
                partitions_dropped: r.partitions_dropped,
                partitions_skipped: r.partitions_skipped,
                rows_deleted: r.rows_deleted,
                rows_in_dropped: r.rows_in_dropped,
                rows_archived: r.rows_archived,
                archive_rows_deleted: r.archive_rows_deleted,
                seconds: r.seconds,
                detail: r.detail,
            });
        }
    }
    Ok(results)
}

/// The runs of one `pgretain run`, a line each.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Runs(pub Vec<RunResult>);

impl Outcome for Runs {
    fn text(&self) -> String {
        self.0.iter().map(|r| format!("{r}\n")).collect()
    }
}
