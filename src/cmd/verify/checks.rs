//! The checks of verify, each adding findings to the report: the migration
//! history against `generated/`, the pg_cron jobs against what apply
//! registers, each dataset (its runs, what blocks a drop, rows overdue,
//! partitions ahead, the default partition), the routines against their
//! fingerprints. Every query is `db`'s.

use chrono::{DateTime, TimeDelta, Utc};
use postgres::{Client, Transaction};

use super::{Finding, FindingKind, Unproven, VerifyOptions, VerifyReport, GRACE, PARTITIONS_AHEAD};
use crate::db::catalog::DatasetRow;
use crate::db::cron::{self, Job};
use crate::db::expired::{self, EXAMINE_BUDGET};
use crate::db::history::{self, FileState};
use crate::db::runs::{self, STUCK_AFTER};
use crate::db::tables;
use crate::db::{fingerprint, DbError};
use crate::model::schedule;
use crate::render::names::{job_prefix, FINGERPRINT_TABLE};
use crate::render::text::ident;
use crate::words::{human_duration, rfc3339};

/// Check (d) counts the unheld rows of a default partition up to this: it
/// asks whether any sits there (a finding says "at least" past it), not
/// how many an imported backlog holds, which would take a read of all of
/// them.
const DEFAULT_ROWS_CAP: i64 = 10_000;

pub(super) fn finding(
    report: &mut VerifyReport,
    kind: FindingKind,
    dataset: Option<&str>,
    message: String,
) {
    report.findings.push(Finding {
        kind,
        dataset: dataset.map(str::to_string),
        message,
    });
}

/// (e) refinery's history against the files: pending, changed, missing.
pub(super) fn check_migrations(
    client: &mut Client,
    files: &[refinery::Migration],
    opts: &VerifyOptions,
    report: &mut VerifyReport,
) -> Result<(), DbError> {
    let dir = opts.generated_dir.display();
    let applied = match history::table(client)? {
        Some(t) => history::read(client, &t)?,
        None => Vec::new(),
    };
    let comparison = history::compare(&applied, files);
    for (m, state) in &comparison.files {
        match state {
            FileState::Pending => finding(
                report,
                FindingKind::MigrationPending,
                None,
                format!("{m} is in {dir} but not applied to this database: run `pgretain apply`"),
            ),
            FileState::Changed(a) => finding(
                report,
                FindingKind::MigrationChanged,
                None,
                format!(
                    "{m} in {dir} differs from {} applied {}: applied migrations must never change (refinery checksum {} in the database, {} for the file). Restore the file from git (`git checkout -- {dir}`)",
                    a.label(),
                    a.applied_on.as_deref().map(|o| format!("on {o}")).unwrap_or_else(|| "earlier".into()),
                    a.checksum.as_deref().unwrap_or("none"),
                    m.checksum()
                ),
            ),
            FileState::Applied(_) => {}
        }
    }
    for a in &comparison.missing {
        finding(
            report,
            FindingKind::MigrationMissing,
            None,
            format!(
                "{} was applied to this database but is not in {dir}: restore it from git",
                a.label()
            ),
        );
    }
    Ok(())
}

/// (b) every compiled dataset's job, as apply registers it.
pub(super) fn check_jobs(
    cron: &mut Client,
    compiled: &[crate::model::Dataset],
    owner: Option<&str>,
    data_db: &str,
    cron_db: &str,
    report: &mut VerifyReport,
) -> Result<(), DbError> {
    if !cron::installed(cron)? {
        finding(
            report,
            FindingKind::CronMissing,
            None,
            format!(
                "pg_cron is not installed in database {cron_db}, so no retention job runs: run `pgretain apply` (or pass --cron-database with the database named by cron.database_name)"
            ),
        );
        return Ok(());
    }
    for ds in compiled {
        let want = Job::of(ds, data_db, owner);
        let name = Some(ds.name.as_str());
        let Some(job) = cron::job(cron, &want.name)? else {
            finding(
                report,
                FindingKind::JobMissing,
                name,
                format!(
                    "job {} is not in cron.job of database {cron_db}, so enforcement never runs: run `pgretain apply` to register it",
                    want.name
                ),
            );
            continue;
        };
        if !job.active {
            finding(
                report,
                FindingKind::JobInactive,
                name,
                format!(
                    "job {} (jobid {}) is inactive (cron.job.active = false), so enforcement does not run: reactivate it with `SELECT cron.alter_job({}, active := true);` in database {cron_db}",
                    job.name, job.id, job.id
                ),
            );
        }
        if job.database != want.database {
            finding(
                report,
                FindingKind::JobWrongDatabase,
                name,
                format!(
                    "job {} runs in database {}, not {}, where the data is: run `pgretain apply` (it re-creates the job)",
                    job.name, job.database, want.database
                ),
            );
        }
        if let Some(u) = want.username.as_deref().filter(|u| *u != job.username) {
            finding(
                report,
                FindingKind::JobWrongRole,
                name,
                format!(
                    "job {} runs as role `{}`, not as `{u}`, the owner named in `access`: run `pgretain apply` (it re-creates the job)",
                    job.name, job.username
                ),
            );
        }
        if job.command != want.command {
            finding(
                report,
                FindingKind::JobCommandChanged,
                name,
                format!(
                    "job {} runs `{}`, not `{}` as compiled in generated/: run `pgretain apply`",
                    job.name, job.command, want.command
                ),
            );
        }
        if job.schedule != want.schedule {
            finding(
                report,
                FindingKind::JobScheduleChanged,
                name,
                format!(
                    "job {} is scheduled `{}`, not `{}` as compiled in generated/: run `pgretain apply`",
                    job.name, job.schedule, want.schedule
                ),
            );
        }
        if let Some(run) = job.last_run.as_ref().filter(|r| r.status == "failed") {
            finding(
                report,
                FindingKind::JobFailed,
                name,
                format!(
                    "the last run of job {}{} failed: {}. See cron.job_run_details (jobid {}) in database {cron_db}",
                    job.name,
                    run.started_at
                        .map(|t| format!(" started {}", rfc3339(t)))
                        .unwrap_or_default(),
                    run.message
                        .as_deref()
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .unwrap_or("no message"),
                    job.id
                ),
            );
        }
    }
    let prefix = job_prefix(data_db);
    for (jobname, command) in cron::jobs_of(cron, data_db)? {
        let dataset = jobname
            .strip_prefix(&prefix)
            .unwrap_or(&jobname)
            .to_string();
        if !compiled.iter().any(|d| d.name == dataset) {
            finding(
                report,
                FindingKind::JobUnexpected,
                Some(&dataset),
                format!(
                    "job {jobname} runs `{command}` but dataset {dataset} is not in generated/: run `pgretain apply` to remove it",
                ),
            );
        }
    }
    Ok(())
}

/// (a), (b) run log, (c), (d) for one dataset.
pub(super) fn check_dataset(
    tx: &mut Transaction<'_>,
    d: &DatasetRow,
    at: DateTime<Utc>,
    report: &mut VerifyReport,
) -> Result<(), DbError> {
    let name = Some(d.name.as_str());

    // The last enforcement run.
    if let Some(run) = runs::last_run(tx, &d.name)? {
        if run.outcome == "failed" {
            finding(
                report,
                FindingKind::RunFailed,
                name,
                format!(
                    "the last enforcement run (retention.run_log id {}, started {}) failed: {}. What it did before failing is kept; fix the cause and run `pgretain run {}`",
                    run.id,
                    rfc3339(run.started_at),
                    run.detail.as_deref().unwrap_or("no detail"),
                    d.name
                ),
            );
        } else if run.stuck {
            finding(
                report,
                FindingKind::RunStuck,
                name,
                format!(
                    "the enforcement run started {} (retention.run_log id {}) is still 'running' after more than {} and no backend holds its lock: it died without recording an outcome, so count it as failed. Check the server log, then run `pgretain run {}`",
                    rfc3339(run.started_at),
                    run.id,
                    human_duration(STUCK_AFTER),
                    d.name
                ),
            );
        }
    }

    // What stops a run from doing its work, whatever it finds: a foreign key
    // into the table (its partitions cannot be dropped), an archive whose
    // columns drifted from the table's in a way a run cannot follow.
    let fks = tables::foreign_keys_into(tx, &d.table)?;
    for (con, on) in fks {
        finding(
            report,
            FindingKind::ForeignKeyBlocksDrop,
            name,
            format!(
                "foreign key {con} on {on} references {}: a partition it references cannot be dropped, so its expired rows stay (each run skips it and says so). Drop the constraint (`ALTER TABLE {on} DROP CONSTRAINT {}`), or point it at data that outlives the retention",
                d.table,
                ident(&con)
            ),
        );
    }
    if let Some(archive) = &d.archive_relation {
        let why = tables::archive_drift(tx, &d.table, archive)?;
        if !why.is_empty() {
            finding(
                report,
                FindingKind::ArchiveShapeDrift,
                name,
                format!(
                    "the archive {archive} cannot take rows of {}: {}. No row is archived (each run says so) until the columns match again, e.g. with ALTER TABLE {archive} ALTER COLUMN ... TYPE ... (columns the application adds are added to the archive by the runs themselves)",
                    d.table,
                    why.join("; ")
                ),
            );
        }
    }

    // (a) Rows overdue beyond one schedule period plus the grace.
    let period = schedule::period(&d.schedule, at);
    let tolerance = period.unwrap_or(TimeDelta::days(1)) + GRACE;
    let cutoff = at - tolerance;
    if let Some(e) = expired::expired(tx, &d.name, cutoff, EXAMINE_BUDGET, false)? {
        let n = e.counted;
        if n > 0 {
            // Only rows seen overdue are claimed; an estimate says so.
            let how_many = if e.exact {
                n.to_string()
            } else {
                format!("at least {n} (about {} by estimate)", e.rows)
            };
            finding(
                report,
                FindingKind::Overdue,
                name,
                format!(
                    "{how_many} row{} past {} deadline by more than the tolerance of {} (one period of the schedule `{}`, {}, plus {}){}. Enforcement should have removed {}: check the job's runs and retention.run_log, or run `pgretain run {}`",
                    if n == 1 && e.exact { " is" } else { "s are" },
                    if n == 1 && e.exact { "its" } else { "their" },
                    human_duration(tolerance),
                    d.schedule,
                    period
                        .map(human_duration)
                        .unwrap_or_else(|| "unreadable, taken as 24 h".into()),
                    human_duration(GRACE),
                    e.oldest
                        .map(|t| format!(
                            "; the oldest {} has {} = {}",
                            if e.exact { "of them" } else { "seen" },
                            d.time_column,
                            rfc3339(t)
                        ))
                        .unwrap_or_default(),
                    if n == 1 && e.exact { "it" } else { "them" },
                    d.name
                ),
            );
        } else if !e.exact {
            report.unproven.push(Unproven {
                dataset: d.name.clone(),
                message: format!(
                    "no row overdue beyond the tolerance among the {} rows read, but not every row that could be was read (at most {} per check): about {} may be, by estimate",
                    e.examined,
                    EXAMINE_BUDGET,
                    e.rows
                ),
            });
        }
    }

    // (c) Future partitions, (d) rows in the default partition.
    let parts = tables::partitions(tx, &d.name)?;
    let horizon = tables::horizon(tx, PARTITIONS_AHEAD, &d.granularity)?;
    let mut ranges: Vec<(DateTime<Utc>, DateTime<Utc>)> = parts
        .iter()
        .filter(|p| !p.is_default)
        // (An adopted table's old storage starts at MINVALUE.)
        .filter_map(|p| Some((p.lower.unwrap_or(DateTime::<Utc>::MIN_UTC), p.upper?)))
        .collect();
    ranges.sort();
    let mut covered = at;
    for (lower, upper) in &ranges {
        if *upper <= covered {
            continue;
        }
        if *lower > covered {
            break;
        }
        covered = *upper;
    }
    if covered < horizon {
        let what = if covered == at {
            "no partition holds the current time".to_string()
        } else {
            format!("partitions end at {}", rfc3339(covered))
        };
        finding(
            report,
            FindingKind::PartitionsRunningOut,
            name,
            format!(
                "{what}, less than {PARTITIONS_AHEAD} {}s ahead (until {}): new rows past that land in the default partition. Each enforcement run makes them ahead; check the job, or run `pgretain run {}`",
                d.granularity,
                rfc3339(horizon),
                d.name
            ),
        );
    }
    // (A drained adopted table has two: its own and its history's.)
    for default in parts.iter().filter(|p| p.is_default) {
        let count = tables::unheld_rows_in_partition(tx, &d.name, &default.name, DEFAULT_ROWS_CAP)?;
        if count > 0 {
            finding(
                report,
                FindingKind::RowsInDefaultPartition,
                name,
                format!(
                    "{}{} row{} in the default partition {} (not counting rows an active hold keeps there): {their} time lies outside every partition (far past or future, or inserted before {their} partition existed). {they} enforced row by row, and a partition created over {them} later must move {them} first; check where such times come from",
                    if count >= DEFAULT_ROWS_CAP { "at least " } else { "" },
                    count,
                    if count == 1 { " sits" } else { "s sit" },
                    default.name,
                    their = if count == 1 { "its" } else { "their" },
                    they = if count == 1 { "It is" } else { "They are" },
                    them = if count == 1 { "it" } else { "them" },
                ),
            );
        }
    }
    Ok(())
}

/// (e) routines changed, added or removed since apply recorded them.
pub(super) fn check_routines(
    tx: &mut Transaction<'_>,
    report: &mut VerifyReport,
) -> Result<(), DbError> {
    let has = fingerprint::recorded_any(tx)?;
    let now = fingerprint::routines(tx)?;
    report.routines = now.len();
    if !has {
        finding(
            report,
            FindingKind::FingerprintsMissing,
            None,
            format!(
                "{FINGERPRINT_TABLE} does not exist, so hand edits of the {} routines of schema retention cannot be detected: run `pgretain apply` to record them",
                now.len()
            ),
        );
        return Ok(());
    }
    let recorded = fingerprint::recorded(tx)?;
    for (routine, md5) in &now {
        match recorded.get(routine) {
            Some(r) if r == md5 => {}
            Some(_) => finding(
                report,
                FindingKind::RoutineChanged,
                None,
                format!(
                    "{routine} was changed since `pgretain apply` created it: generated routines must not be edited by hand. Restore it from the latest migration in generated/ that defines it"
                ),
            ),
            None => finding(
                report,
                FindingKind::RoutineAdded,
                None,
                format!(
                    "{routine} is in schema retention but `pgretain apply` did not create it: drop it, or move it to another schema"
                ),
            ),
        }
    }
    for routine in recorded.keys() {
        if !now.contains_key(routine) {
            finding(
                report,
                FindingKind::RoutineRemoved,
                None,
                format!(
                    "{routine} was created by `pgretain apply` but is gone: restore it from the latest migration in generated/ that defines it"
                ),
            );
        }
    }
    Ok(())
}
