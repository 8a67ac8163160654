//! `pgretain verify`: evidence that the policy is enforced, or a list of
//! what is wrong (SPEC §5; exit 0 clean, 1 findings, 3 database error).
//!
//! It checks, against the live database and `generated/`:
//! - rows overdue beyond the schedule's tolerance (one schedule period plus
//!   [`GRACE`]): the jobs are not doing their work. Counted in bounded time
//!   (`db::expired`): only rows actually seen are claimed, an estimate is
//!   called one, and a check that saw none but could not read every
//!   candidate is reported as not proven (`unproven`), not as clean;
//! - every dataset's pg_cron job: present, active, in the right database,
//!   with the compiled command and schedule, its last run not failed; and
//!   the last enforcement run in `retention.run_log` not failed or stuck;
//! - future partitions ready for at least [`PARTITIONS_AHEAD`] periods, and
//!   no rows in a default partition;
//! - drift from `generated/`: migrations pending, changed or missing
//!   (refinery's history table and checksums), and routines of schema
//!   `retention` edited by hand since apply recorded their fingerprints in
//!   `retention.fingerprint` (recorded by apply).
//!
//! Here: the findings verify reports and how they read; the checks that
//! make them are `checks`. Read-only: every query is `db`'s. It never fixes
//! anything: every finding says what to do.

use std::fmt;
use std::path::PathBuf;

use chrono::TimeDelta;
use serde::Serialize;

mod checks;

use super::{exit, Failure, Outcome};
use crate::db::catalog::{self};
use crate::db::{connect, session, DbError};
use crate::generated;

/// Added to one schedule period before an expired row counts as overdue:
/// room for the run itself and for pg_cron's start-up.
pub const GRACE: TimeDelta = TimeDelta::hours(1);

/// Future partitions must reach this many partition periods past now.
pub const PARTITIONS_AHEAD: i32 = 2;

/// Options of `verify`.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// `--database-url` / `DATABASE_URL`; `None` reads the `PG*` variables.
    pub database_url: Option<String>,
    /// The compiled migrations and state (default `generated`).
    pub generated_dir: PathBuf,
    /// Where pg_cron lives; default: the server's `cron.database_name`, else `postgres`.
    pub cron_database: Option<String>,
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A migration in `generated/` is not applied.
    MigrationPending,
    /// An applied migration's file changed since (refinery checksum).
    MigrationChanged,
    /// An applied migration's file is gone.
    MigrationMissing,
    /// No routine fingerprints: apply never recorded them.
    FingerprintsMissing,
    /// A routine of schema `retention` differs from what apply left.
    RoutineChanged,
    /// A routine in schema `retention` that apply did not create.
    RoutineAdded,
    /// A routine apply created is gone.
    RoutineRemoved,
    /// pg_cron is not installed in the cron database.
    CronMissing,
    /// A dataset has no job.
    JobMissing,
    /// A job exists but `cron.job.active` is false.
    JobInactive,
    /// A job runs in another database than the data's.
    JobWrongDatabase,
    /// A job runs as another role than `access.owner`.
    JobWrongRole,
    /// A job's command is not the compiled one.
    JobCommandChanged,
    /// A job's schedule is not the compiled one.
    JobScheduleChanged,
    /// A job named for this database whose dataset is not in `generated/`.
    JobUnexpected,
    /// The job's last run in `cron.job_run_details` failed.
    JobFailed,
    /// The last enforcement run in `retention.run_log` failed.
    RunFailed,
    /// The last enforcement run is still `running` long after it died.
    RunStuck,
    /// Rows past their deadline by more than the schedule's tolerance.
    Overdue,
    /// Future partitions reach less than [`PARTITIONS_AHEAD`] periods ahead.
    PartitionsRunningOut,
    /// Rows sit in a default partition.
    RowsInDefaultPartition,
    /// A foreign key references the dataset's table: its partitions cannot
    /// be dropped.
    ForeignKeyBlocksDrop,
    /// The archive's columns no longer match the table's in a way a run
    /// cannot follow: no row can be archived.
    ArchiveShapeDrift,
}

impl FindingKind {
    /// The name used in output: `job_missing`.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::MigrationPending => "migration_pending",
            FindingKind::MigrationChanged => "migration_changed",
            FindingKind::MigrationMissing => "migration_missing",
            FindingKind::FingerprintsMissing => "fingerprints_missing",
            FindingKind::RoutineChanged => "routine_changed",
            FindingKind::RoutineAdded => "routine_added",
            FindingKind::RoutineRemoved => "routine_removed",
            FindingKind::CronMissing => "cron_missing",
            FindingKind::JobMissing => "job_missing",
            FindingKind::JobInactive => "job_inactive",
            FindingKind::JobWrongDatabase => "job_wrong_database",
            FindingKind::JobWrongRole => "job_wrong_role",
            FindingKind::JobCommandChanged => "job_command_changed",
            FindingKind::JobScheduleChanged => "job_schedule_changed",
            FindingKind::JobUnexpected => "job_unexpected",
            FindingKind::JobFailed => "job_failed",
            FindingKind::RunFailed => "run_failed",
            FindingKind::RunStuck => "run_stuck",
            FindingKind::Overdue => "overdue",
            FindingKind::PartitionsRunningOut => "partitions_running_out",
            FindingKind::RowsInDefaultPartition => "rows_in_default_partition",
            FindingKind::ForeignKeyBlocksDrop => "foreign_key_blocks_drop",
            FindingKind::ArchiveShapeDrift => "archive_shape_drift",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem verify found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// The dataset it concerns; `None` for the database as a whole.
    pub dataset: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.dataset {
            Some(d) => write!(f, "{:<25} {d}: {}", self.kind.as_str(), self.message),
            None => write!(f, "{:<25} {}", self.kind.as_str(), self.message),
        }
    }
}

/// What verify checked and found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub database: String,
    pub cron_database: String,
    /// Datasets checked (in the database).
    pub datasets: usize,
    /// Migrations in `generated/`.
    pub migrations: usize,
    /// Routines of schema `retention` compared with their fingerprints.
    pub routines: usize,
    pub findings: Vec<Finding>,
    /// Checks that found nothing wrong but could not read every row they
    /// would need to prove it (the overdue check reads at most
    /// `db::expired::EXAMINE_BUDGET` rows per dataset). Not findings: the
    /// exit code stays 0, and the summary says what was not proven.
    pub unproven: Vec<Unproven>,
}

/// A check that found nothing but did not prove it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unproven {
    pub dataset: String,
    /// What was read and what is estimated.
    pub message: String,
}

impl VerifyReport {
    /// No findings.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Findings of one kind.
    pub fn of(&self, kind: FindingKind) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.kind == kind).collect()
    }

    /// The one-line summary of a clean verify.
    pub fn summary(&self) -> String {
        format!(
            "verify ok: database {} matches generated/ ({} migration{}, {} routine{} unchanged); {} dataset{}: nothing overdue{}, jobs in {} active and as compiled, partitions ready, default partitions empty",
            self.database,
            self.migrations,
            if self.migrations == 1 { "" } else { "s" },
            self.routines,
            if self.routines == 1 { "" } else { "s" },
            self.datasets,
            if self.datasets == 1 { "" } else { "s" },
            if self.unproven.is_empty() {
                ""
            } else {
                " among the rows read (not proven for every row: see below)"
            },
            self.cron_database,
        )
    }

    /// The summary when clean, else a header and one line per finding.
    pub fn to_text(&self) -> String {
        let mut notes = String::new();
        for u in &self.unproven {
            notes.push_str(&format!("  not proven: {}: {}\n", u.dataset, u.message));
        }
        if self.is_clean() {
            return format!("{}\n{notes}", self.summary());
        }
        let n = self.findings.len();
        let mut s = format!(
            "verify found {n} problem{} in database {} (jobs in database {}):\n",
            if n == 1 { "" } else { "s" },
            self.database,
            self.cron_database
        );
        for f in &self.findings {
            s.push_str(&format!("  {f}\n"));
        }
        s.push_str(&notes);
        s
    }
}

/// Why verify could not check.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// `generated/` cannot be read (exit 2).
    #[error("error: {0}")]
    Generated(String),
    /// The database failed (exit 3).
    #[error("{0}")]
    Database(#[from] DbError),
}

/// Run `verify`.
pub fn verify(opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    let dir = &opts.generated_dir;
    let state = generated::read_state(dir)
        .map_err(|e| VerifyError::Generated(format!("cannot read the compiled state: {e}")))?
        .ok_or_else(|| {
            VerifyError::Generated(format!(
                "{} has no {}: pass --generated with the directory `pgretain compile` wrote",
                dir.display(),
                crate::generated::STATE_FILE
            ))
        })?;
    let files = generated::load_migrations(dir).map_err(|e| VerifyError::Generated(e.0))?;

    let cfg = connect::config(opts.database_url.as_deref())?;
    let mut client = connect::connect(&cfg)?;
    let (data_db, cron_db) = session::databases(&mut client, opts.cron_database.as_deref())?;
    let mut cron = connect::connect_cron(&cfg, &cron_db)?;
    let mut report = VerifyReport {
        database: data_db.clone(),
        cron_database: cron_db.clone(),
        datasets: 0,
        migrations: files.len(),
        routines: 0,
        findings: Vec::new(),
        unproven: Vec::new(),
    };

    checks::check_migrations(&mut client, &files, opts, &mut report)?;

    let mut tx = session::snapshot(&mut client)?;
    let at = session::now(&mut tx)?;
    let runtime = session::has_runtime(&mut tx)?;
    let datasets = if runtime {
        catalog::datasets(&mut tx)?
    } else {
        Vec::new()
    };
    report.datasets = datasets.len();

    checks::check_jobs(
        &mut cron,
        &state.policy.datasets,
        state.policy.access.as_ref().map(|a| a.owner.as_str()),
        &data_db,
        &cron_db,
        &mut report,
    )?;
    for d in &datasets {
        checks::check_dataset(&mut tx, d, at, &mut report)?;
    }
    if runtime {
        checks::check_routines(&mut tx, &mut report)?;
    }
    session::end(tx)?;

    // Migrations and routines first, then by dataset, in check order.
    report.findings.sort_by(|a, b| a.dataset.cmp(&b.dataset));
    Ok(report)
}

impl Outcome for VerifyReport {
    fn text(&self) -> String {
        self.to_text()
    }

    fn exit_code(&self) -> i32 {
        if self.is_clean() {
            exit::OK
        } else {
            exit::PROBLEM
        }
    }
}

impl Failure for VerifyError {
    fn exit_code(&self) -> i32 {
        match self {
            VerifyError::Generated(_) => exit::INVALID,
            VerifyError::Database(_) => exit::DATABASE,
        }
    }
}
