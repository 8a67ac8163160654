//! `pgretain apply`: apply the compiled migrations in `generated/` with
//! refinery and register the pg_cron jobs (SPEC §5).
//!
//! All pending migrations run in one transaction (refinery's grouped mode),
//! so a failure leaves nothing half-applied. A session advisory lock
//! serializes concurrent deploys (refinery takes none). Jobs are registered
//! in the cron database with `cron.schedule_in_database`, idempotently by
//! name; jobs of datasets no longer in the policy are removed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use postgres::Client;
use refinery::Runner;

use crate::compile::{read_state, STATE_FILE};
use crate::db::{self, ctx, DbError};
use crate::model::Dataset;
use crate::render;

/// refinery's history table (in the data database).
pub const HISTORY_TABLE: &str = "pgretain_schema_history";

/// The advisory lock key pair apply holds for its whole run.
const APPLY_LOCK: &str =
    "SELECT pg_advisory_lock(hashtext('pgretain'), hashtext('pgretain apply'))";
const APPLY_UNLOCK: &str =
    "SELECT pg_advisory_unlock(hashtext('pgretain'), hashtext('pgretain apply'))";

/// Name of the job that trims `cron.job_run_details`.
pub const TRIM_JOB: &str = "pgretain:trim-job-run-details";

/// Options of `apply`.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// `--database-url` / `DATABASE_URL`; `None` reads the `PG*` variables.
    pub database_url: Option<String>,
    /// The compiled migrations (default `generated`).
    pub generated_dir: PathBuf,
    /// Print what would run; change nothing.
    pub dry_run: bool,
    /// Where pg_cron lives; default: the server's `cron.database_name`.
    pub cron_database: Option<String>,
}

/// A pg_cron job pgretain registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    pub schedule: String,
    pub command: String,
    pub database: String,
}

/// What apply did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// Migrations applied (or pending, with `--dry-run`).
    pub migrations: Vec<String>,
    /// Their SQL, with `--dry-run`.
    pub sql: Vec<String>,
    /// Jobs registered (or to register).
    pub jobs: Vec<Job>,
    /// Jobs removed (or to remove).
    pub removed_jobs: Vec<String>,
    /// The cron database used.
    pub cron_database: String,
}

/// The job of one dataset in data database `db`.
pub fn job_for(ds: &Dataset, db: &str) -> Job {
    Job {
        name: job_name(db, &ds.name),
        schedule: ds.schedule.clone(),
        command: render::job_command(ds),
        database: db.to_string(),
    }
}

/// `pgretain:<database>:<dataset>`: unique per data database, so one cron
/// database can serve several.
pub fn job_name(db: &str, dataset: &str) -> String {
    format!("pgretain:{db}:{dataset}")
}

/// Run apply.
pub fn apply(opts: &ApplyOptions) -> Result<ApplyReport, DbError> {
    let dir = &opts.generated_dir;
    let state = read_state(dir)
        .map_err(|e| DbError(format!("cannot read the compiled state: {e}")))?
        .ok_or_else(|| {
            DbError(format!(
                "{} has no {STATE_FILE}: run `pgretain compile` first (and commit generated/)",
                dir.display()
            ))
        })?;
    let migrations = load_migrations(dir)?;

    let cfg = db::config(opts.database_url.as_deref())?;
    let mut client = db::connect(&cfg)?;
    let data_db: String = client
        .query_one("SELECT current_database()", &[])
        .map_err(ctx("reading the database name"))?
        .get(0);
    let preload: String = client
        .query_one("SELECT current_setting('shared_preload_libraries')", &[])
        .map_err(ctx("reading shared_preload_libraries"))?
        .get(0);
    if !preload
        .split(',')
        .any(|l| l.trim().trim_matches('"') == "pg_cron")
    {
        return Err(DbError(format!(
            "pg_cron is not loaded on this server (shared_preload_libraries = '{preload}'), so no retention job could ever run. Add pg_cron to shared_preload_libraries in postgresql.conf, restart PostgreSQL, and run apply again; nothing was changed"
        )));
    }
    let cron_db = match &opts.cron_database {
        Some(c) => c.clone(),
        None => {
            let v: Option<String> = client
                .query_one("SELECT current_setting('cron.database_name', true)", &[])
                .map_err(ctx("reading cron.database_name"))?
                .get(0);
            v.filter(|s| !s.is_empty())
                .unwrap_or_else(|| "postgres".into())
        }
    };
    let jobs: Vec<Job> = state
        .policy
        .datasets
        .iter()
        .map(|d| job_for(d, &data_db))
        .collect();

    client
        .execute(APPLY_LOCK, &[])
        .map_err(ctx("taking the apply lock"))?;
    let result = apply_locked(
        &mut client,
        &cfg,
        opts,
        migrations,
        jobs,
        &data_db,
        &cron_db,
    );
    let _ = client.execute(APPLY_UNLOCK, &[]);
    result
}

fn load_migrations(dir: &Path) -> Result<Vec<refinery::Migration>, DbError> {
    let migrations = refinery::load_sql_migrations(dir).map_err(|e| {
        DbError(format!(
            "cannot load the migrations in {}: {e}",
            dir.display()
        ))
    })?;
    if migrations.is_empty() {
        return Err(DbError(format!(
            "{} holds no migrations: run `pgretain compile` first",
            dir.display()
        )));
    }
    Ok(migrations)
}

fn runner(migrations: &[refinery::Migration]) -> Runner {
    let mut r = Runner::new(migrations)
        .set_grouped(true)
        .set_abort_divergent(true)
        .set_abort_missing(true);
    r.set_migration_table_name(HISTORY_TABLE);
    r
}

fn apply_locked(
    client: &mut Client,
    cfg: &postgres::Config,
    opts: &ApplyOptions,
    migrations: Vec<refinery::Migration>,
    jobs: Vec<Job>,
    data_db: &str,
    cron_db: &str,
) -> Result<ApplyReport, DbError> {
    let mut report = ApplyReport {
        cron_database: cron_db.to_string(),
        ..Default::default()
    };
    let runner = runner(&migrations);

    // Divergence is checked before anything runs, for dry runs too.
    let has_history: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
        .map_err(ctx("looking for the migration history"))?
        .get(0);
    let applied = if has_history {
        runner
            .get_applied_migrations(client)
            .map_err(|e| refinery_error(&e, &migrations))?
    } else {
        Vec::new()
    };
    for a in &applied {
        match migrations.iter().find(|m| m.version() == a.version()) {
            Some(m) if m.checksum() != a.checksum() => {
                return Err(DbError(format!(
                    "migration {} in {} differs from the one applied on {}: applied migrations must never change. Restore the file from git (`git checkout -- {}`); nothing was changed",
                    a,
                    opts.generated_dir.display(),
                    a.applied_on().map(|d| d.to_string()).unwrap_or_else(|| "an earlier deploy".into()),
                    opts.generated_dir.display()
                )))
            }
            Some(_) => {}
            None => {
                return Err(DbError(format!(
                    "migration {a} was applied to this database but is missing from {}: restore it from git; nothing was changed",
                    opts.generated_dir.display()
                )))
            }
        }
    }
    let pending: Vec<&refinery::Migration> = migrations
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version() == m.version()))
        .collect();
    report.migrations = pending.iter().map(|m| m.to_string()).collect();

    let mut cron_cfg = cfg.clone();
    cron_cfg.dbname(cron_db);
    if opts.dry_run {
        report.sql = pending
            .iter()
            .map(|m| m.sql().unwrap_or_default().to_string())
            .collect();
        report.removed_jobs = match db::connect(&cron_cfg) {
            Ok(mut cron) => stale_jobs(&mut cron, data_db, &jobs).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        report.jobs = jobs;
        return Ok(report);
    }

    // pg_cron's extension must exist in the cron database before anything
    // is applied, so a deploy never leaves tables without their jobs.
    let mut cron = db::connect(&cron_cfg).map_err(|e| {
        DbError(format!(
            "{} (the cron database `{cron_db}` is where pg_cron keeps its jobs; pass --cron-database if it is another)",
            e.0
        ))
    })?;
    let has_cron: bool = cron
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron')",
            &[],
        )
        .map_err(ctx("checking for pg_cron"))?
        .get(0);
    if !has_cron {
        cron.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron").map_err(|e| {
            DbError(format!(
                "pg_cron is not installed in the cron database `{cron_db}` and creating it failed: {}. Run `CREATE EXTENSION pg_cron;` there as a superuser, then apply again; nothing was changed",
                db::pg_message(&e)
            ))
        })?;
    }

    runner
        .run(client)
        .map_err(|e| refinery_error(&e, &migrations))?;
    // Fingerprint every routine of schema retention as the migrations left
    // it, for `verify`. Only when something was applied (or nothing was ever
    // recorded): re-running apply must not bless a hand edit.
    if !pending.is_empty() || !crate::verify::has_fingerprints(client)? {
        crate::verify::record_fingerprints(client).map_err(|e| {
            DbError(format!(
                "{}; the migrations were applied but the jobs not registered: run apply again",
                e.0
            ))
        })?;
    }
    register_jobs(&mut cron, data_db, &jobs, &mut report)?;
    report.jobs = jobs;
    Ok(report)
}

/// Jobs named for this data database that the policy no longer has.
fn stale_jobs(cron: &mut Client, data_db: &str, jobs: &[Job]) -> Result<Vec<String>, DbError> {
    let keep: BTreeSet<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    let prefix = format!("pgretain:{data_db}:");
    let rows = cron
        .query(
            "SELECT jobname FROM cron.job WHERE starts_with(jobname, $1) ORDER BY jobname",
            &[&prefix],
        )
        .map_err(ctx("listing pg_cron jobs"))?;
    Ok(rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|n| !keep.contains(n.as_str()))
        .collect())
}

/// Schedule every job (idempotent by name) and unschedule stale ones, in one
/// transaction of the cron database.
fn register_jobs(
    cron: &mut Client,
    data_db: &str,
    jobs: &[Job],
    report: &mut ApplyReport,
) -> Result<(), DbError> {
    let stale = stale_jobs(cron, data_db, jobs)?;
    let mut tx = cron
        .transaction()
        .map_err(ctx("starting the job registration"))?;
    for name in &stale {
        tx.execute("SELECT cron.unschedule($1::text)", &[name])
            .map_err(ctx("unscheduling a stale job"))?;
    }
    for j in jobs {
        // Scheduling an existing name updates schedule and command but not
        // the database: a job pointed elsewhere is removed first.
        let existing = tx
            .query_opt(
                "SELECT database FROM cron.job WHERE jobname = $1",
                &[&j.name],
            )
            .map_err(ctx("reading cron.job"))?;
        if let Some(row) = existing {
            let database: String = row.get(0);
            if database != j.database {
                tx.execute("SELECT cron.unschedule($1::text)", &[&j.name])
                    .map_err(ctx("unscheduling a misdirected job"))?;
            }
        }
        tx.execute(
            "SELECT cron.schedule_in_database($1, $2, $3, $4)",
            &[&j.name, &j.schedule, &j.command, &j.database],
        )
        .map_err(ctx(&format!("scheduling job {}", j.name)))?;
    }
    tx.execute(
        "SELECT cron.schedule($1, '15 4 * * *', $2)",
        &[
            &TRIM_JOB,
            &"DELETE FROM cron.job_run_details WHERE end_time < now() - interval '30 days'",
        ],
    )
    .map_err(ctx("scheduling the job_run_details trim"))?;
    tx.commit()
        .map_err(ctx("committing the job registration"))?;
    report.removed_jobs = stale;
    Ok(())
}

/// Explain a refinery failure: which migration, which statement, which SQLSTATE.
fn refinery_error(e: &refinery::Error, migrations: &[refinery::Migration]) -> DbError {
    use refinery::error::Kind;
    let what = match e.kind() {
        Kind::Connection(msg, _) => msg.clone(),
        other => other.to_string(),
    };
    let Some(pg) = db::find_pg_error(e) else {
        return DbError(format!(
            "applying the migrations failed: {what}; nothing was applied"
        ));
    };
    let mut s = format!(
        "applying the migrations failed: {what}: {}",
        db::pg_message(pg)
    );
    if let (Some(dbe), Some(m)) = (pg.as_db_error(), failing_migration(&what, migrations)) {
        if let Some(postgres::error::ErrorPosition::Original(pos)) = dbe.position() {
            let sql = m.sql().unwrap_or_default();
            let upto: String = sql.chars().take(*pos as usize).collect();
            let line = upto.matches('\n').count() + 1;
            let text = sql.lines().nth(line - 1).unwrap_or("").trim();
            s.push_str(&format!("; at {m} line {line}: `{text}`"));
        }
    }
    s.push_str(". All pending migrations ran in one transaction, so nothing was applied; fix the cause and run apply again");
    DbError(s)
}

fn failing_migration<'a>(
    msg: &str,
    migrations: &'a [refinery::Migration],
) -> Option<&'a refinery::Migration> {
    migrations.iter().find(|m| msg.contains(&m.to_string()))
}
