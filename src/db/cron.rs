//! pg_cron's jobs, in the cron database: the jobs pgretain registers (one
//! per dataset, named and commanded by `render::names`, and the trim of
//! pg_cron's run history), what `cron.job` and `cron.job_run_details` say
//! of them, and registering them.

use std::collections::BTreeSet;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use postgres::Client;
use serde::Serialize;

use super::{col, ctx, pg_message, session, DbError};
use crate::model::Dataset;
use crate::render::names::{job_command, job_name, job_prefix, TRIM_COMMAND, TRIM_JOB};
use crate::render::text::ident;

/// A pg_cron job pgretain registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    pub name: String,
    pub schedule: String,
    pub command: String,
    pub database: String,
    /// The role it runs as: `access.owner`; `None`, the role that applies.
    pub username: Option<String>,
}

impl Job {
    /// The job of dataset `ds` in data database `database`, run as `username`.
    pub fn of(ds: &Dataset, database: &str, username: Option<&str>) -> Job {
        Job {
            name: job_name(database, &ds.name),
            schedule: ds.schedule.clone(),
            command: job_command(ds),
            database: database.to_string(),
            username: username.map(str::to_string),
        }
    }
}

/// A job as `cron.job` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub name: String,
    pub id: i64,
    pub schedule: String,
    pub command: String,
    pub database: String,
    /// The role it runs as.
    pub username: String,
    pub active: bool,
    /// Its latest run in `cron.job_run_details`.
    pub last_run: Option<JobRunRow>,
}

/// One run of a pg_cron job (`cron.job_run_details`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRunRow {
    /// starting, running, sending, connecting, succeeded or failed.
    pub status: String,
    pub message: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Whether the cron database has pg_cron's tables.
pub fn installed(cron: &mut Client) -> Result<bool, DbError> {
    let row = cron
        .query_one("SELECT to_regclass('cron.job') IS NOT NULL", &[])
        .map_err(ctx("looking for pg_cron"))?;
    col(&row, 0)
}

/// The job named `name`, with its latest run.
pub fn job(cron: &mut Client, name: &str) -> Result<Option<JobRow>, DbError> {
    let Some(r) = cron
        .query_opt(
            "SELECT jobid, schedule, command, database, active, jobname::text, username
               FROM cron.job WHERE jobname = $1 ORDER BY jobid LIMIT 1",
            &[&name],
        )
        .map_err(ctx("reading cron.job"))?
    else {
        return Ok(None);
    };
    let id: i64 = col(&r, 0)?;
    let last = cron
        .query_opt(
            "SELECT status, return_message, start_time, end_time
               FROM cron.job_run_details WHERE jobid = $1 ORDER BY runid DESC LIMIT 1",
            &[&id],
        )
        .map_err(ctx("reading cron.job_run_details"))?
        .map(|d| -> Result<JobRunRow, DbError> {
            Ok(JobRunRow {
                status: col::<Option<String>>(&d, 0)?.unwrap_or_default(),
                message: col(&d, 1)?,
                started_at: col::<Option<SystemTime>>(&d, 2)?.map(DateTime::<Utc>::from),
                finished_at: col::<Option<SystemTime>>(&d, 3)?.map(DateTime::<Utc>::from),
            })
        })
        .transpose()?;
    Ok(Some(JobRow {
        name: col(&r, 5)?,
        id,
        schedule: col(&r, 1)?,
        command: col(&r, 2)?,
        database: col(&r, 3)?,
        username: col(&r, 6)?,
        active: col(&r, 4)?,
        last_run: last,
    }))
}

/// Every job named for data database `database` (`pgretain:<db>:…`), by
/// name, with its command.
pub fn jobs_of(cron: &mut Client, database: &str) -> Result<Vec<(String, String)>, DbError> {
    cron.query(
        "SELECT jobname, command FROM cron.job WHERE starts_with(jobname, $1) ORDER BY jobname",
        &[&job_prefix(database)],
    )
    .map_err(ctx("listing pg_cron jobs"))?
    .iter()
    .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
    .collect()
}

/// Jobs named for data database `database` that are not among `jobs`.
pub fn stale(cron: &mut Client, database: &str, jobs: &[Job]) -> Result<Vec<String>, DbError> {
    let keep: BTreeSet<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    let rows = cron
        .query(
            "SELECT DISTINCT jobname::text FROM cron.job WHERE starts_with(jobname::text, $1) ORDER BY 1",
            &[&job_prefix(database)],
        )
        .map_err(ctx("listing pg_cron jobs"))?;
    let mut out = Vec::new();
    for r in &rows {
        let name: String = col(r, 0)?;
        if !keep.contains(name.as_str()) {
            out.push(name);
        }
    }
    Ok(out)
}

/// Make sure the pg_cron extension exists in the cron database `cron_db`.
pub fn ensure_extension(cron: &mut Client, cron_db: &str) -> Result<(), DbError> {
    let row = cron
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron')",
            &[],
        )
        .map_err(ctx("checking for pg_cron"))?;
    if !col::<bool>(&row, 0)? {
        cron.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron").map_err(|e| {
            DbError(format!(
                "pg_cron is not installed in the cron database `{cron_db}` and creating it failed: {}. Run `CREATE EXTENSION pg_cron;` there as a superuser, then apply again; nothing was changed",
                pg_message(&e)
            ))
        })?;
    }
    Ok(())
}

/// Schedule every job of `jobs` (idempotent by name) and unschedule the
/// stale ones of data database `data_db`, in one transaction of the cron
/// database `cron_db`; returns the jobs removed. pg_cron keys a job by name
/// and role: a job of the same name that runs as another role, or in
/// another database, is removed first (scheduling an existing name updates
/// its schedule and command only). `owner`: the role of `access` the jobs
/// run as (`None`: the role that applies).
pub fn register(
    cron: &mut Client,
    data_db: &str,
    cron_db: &str,
    owner: Option<&str>,
    jobs: &[Job],
) -> Result<Vec<String>, DbError> {
    let stale = stale(cron, data_db, jobs)?;
    let me = session::current_user(cron)?;
    let mut tx = cron
        .transaction()
        .map_err(ctx("starting the job registration"))?;
    let unschedule = |tx: &mut postgres::Transaction,
                      name: &str,
                      keep_db: Option<&str>,
                      keep_user: &str,
                      what: &str| {
        tx.execute(
            "SELECT cron.unschedule(jobid) FROM cron.job
              WHERE jobname = $1 AND ($2::text IS NULL OR database <> $2 OR username <> $3)",
            &[&name, &keep_db, &keep_user],
        )
        .map(|_| ())
        .map_err(ctx(what))
    };
    for name in &stale {
        unschedule(&mut tx, name, None, "", "unscheduling a stale job")?;
    }
    for j in jobs {
        let user = j.username.as_deref().unwrap_or(&me);
        unschedule(
            &mut tx,
            &j.name,
            Some(&j.database),
            user,
            "unscheduling a misdirected job",
        )?;
        tx.execute(
            "SELECT cron.schedule_in_database($1, $2, $3, $4, $5)",
            &[&j.name, &j.schedule, &j.command, &j.database, &user],
        )
        .map_err(|e| {
            DbError(format!(
                "scheduling job {} to run as `{user}` failed: {}{}",
                j.name,
                pg_message(&e),
                if user != me {
                    format!(". Scheduling a job for another role takes a superuser in pg_cron 1.4: run apply as one, or as `{user}` itself")
                } else {
                    String::new()
                }
            ))
        })?;
    }
    // The jobs' role reads its own jobs and their runs (pg_cron's row
    // security shows it no one else's) and trims its run history: it needs
    // to reach schema cron, which pg_cron grants no one.
    if let Some(o) = owner {
        tx.batch_execute(&format!("GRANT USAGE ON SCHEMA cron TO {}", ident(o)))
            .map_err(|e| {
                DbError(format!(
                    "granting the owner role `{o}` USAGE on schema cron (database `{cron_db}`) failed: {}. Run apply as a superuser, or run `GRANT USAGE ON SCHEMA cron TO {}` there as one",
                    pg_message(&e),
                    ident(o)
                ))
            })?;
    }
    // The trim job of pg_cron's run history runs as the jobs' role too. The
    // one this role registered before to run as itself (before `access`,
    // or pgretain 1's, which deleted every team's rows) is replaced; the
    // trim jobs other deployments sharing this cron database registered
    // for their own roles stay.
    let user = owner.unwrap_or(&me);
    tx.execute(
        "SELECT cron.unschedule(jobid) FROM cron.job
          WHERE jobname = $1 AND username <> $2 AND (username = $3 OR command <> $4)",
        &[&TRIM_JOB, &user, &me, &TRIM_COMMAND],
    )
    .map_err(ctx("replacing the job_run_details trim"))?;
    tx.execute(
        "SELECT cron.schedule_in_database($1, '15 4 * * *', $2, $3, $4)",
        &[&TRIM_JOB, &TRIM_COMMAND, &cron_db, &user],
    )
    .map_err(ctx("scheduling the job_run_details trim"))?;
    tx.commit()
        .map_err(ctx("committing the job registration"))?;
    Ok(stale)
}
