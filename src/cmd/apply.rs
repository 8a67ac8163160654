//! `pgretain apply`: apply the compiled migrations in `generated/` with
//! refinery and register the pg_cron jobs (SPEC §5).
//!
//! All pending migrations run in one transaction (refinery's grouped mode),
//! so a failure leaves nothing half-applied. A session advisory lock
//! serializes concurrent deploys (refinery takes none). Jobs are registered
//! in the cron database with `cron.schedule_in_database`, idempotently by
//! name; jobs of datasets no longer in the policy are removed.

use std::path::PathBuf;

use postgres::{Client, Config};
use serde::Serialize;

use super::Outcome;
use crate::db::cron::{self, Job};
use crate::db::history::{self, Divergence};
use crate::db::{adopt, connect, fingerprint, roles, session, DbError};
use crate::generated::{self, STATE_FILE};
use crate::model::{Dataset, Policy};

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

/// What apply did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    /// A dry run: nothing was changed.
    pub dry_run: bool,
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
    /// Things the DBA should know (e.g. applying as a superuser without
    /// `access`), printed on stderr.
    pub warnings: Vec<String>,
}

/// Run apply.
pub fn apply(opts: &ApplyOptions) -> Result<ApplyReport, DbError> {
    let dir = &opts.generated_dir;
    let state = generated::read_state(dir)
        .map_err(|e| DbError(format!("cannot read the compiled state: {e}")))?
        .ok_or_else(|| {
            DbError(format!(
                "{} has no {STATE_FILE}: run `pgretain compile` first (and commit generated/)",
                dir.display()
            ))
        })?;
    let migrations = generated::load_migrations(dir).map_err(|e| DbError(e.0))?;
    if migrations.is_empty() {
        return Err(DbError(generated::no_migrations(dir).0));
    }

    let cfg = connect::config(opts.database_url.as_deref())?;
    let mut client = connect::connect(&cfg)?;
    let (data_db, cron_db) = session::databases(&mut client, opts.cron_database.as_deref())?;
    let (loaded, preload) = session::pg_cron_preloaded(&mut client)?;
    if !loaded {
        return Err(DbError(format!(
            "pg_cron is not loaded on this server (shared_preload_libraries = '{preload}'), so no retention job could ever run. Add pg_cron to shared_preload_libraries in postgresql.conf, restart PostgreSQL, and run apply again; nothing was changed"
        )));
    }
    let owner = state.policy.access.as_ref().map(|a| a.owner.as_str());
    let jobs: Vec<Job> = state
        .policy
        .datasets
        .iter()
        .map(|d| Job::of(d, &data_db, owner))
        .collect();

    session::apply_lock(&mut client, true)?;
    let result = apply_locked(
        &mut client,
        &cfg,
        opts,
        &state.policy,
        &migrations,
        jobs,
        &data_db,
        &cron_db,
    );
    let _ = session::apply_lock(&mut client, false);
    result
}

#[allow(clippy::too_many_arguments)]
fn apply_locked(
    client: &mut Client,
    cfg: &Config,
    opts: &ApplyOptions,
    policy: &Policy,
    migrations: &[refinery::Migration],
    jobs: Vec<Job>,
    data_db: &str,
    cron_db: &str,
) -> Result<ApplyReport, DbError> {
    let dir = opts.generated_dir.display();
    let mut report = ApplyReport {
        dry_run: opts.dry_run,
        cron_database: cron_db.to_string(),
        ..Default::default()
    };
    // The history table is checked before anything reads or writes it, and
    // divergence before anything runs, for dry runs too.
    let table = history::table(client)?;
    let applied = match &table {
        Some(t) => history::read(client, t)?,
        None => Vec::new(),
    };
    let history = table.unwrap_or_else(history::default_table);
    let comparison = history::compare(&applied, migrations);
    match comparison.first_divergence() {
        Some(Divergence::Changed(a, _)) => {
            return Err(DbError(format!(
                "migration {} in {dir} differs from the one applied on {}: applied migrations must never change. Restore the file from git (`git checkout -- {dir}`); nothing was changed",
                a.label(),
                a.applied_on_shown().unwrap_or_else(|| "an earlier deploy".into()),
            )))
        }
        Some(Divergence::Missing(a)) => {
            return Err(DbError(format!(
                "migration {} was applied to this database but is missing from {dir}: restore it from git; nothing was changed",
                a.label()
            )))
        }
        None => {}
    }
    if let Some(a) = comparison.unreadable() {
        return Err(DbError(format!(
            "the migration history {history} has a row refinery cannot read ({}: its applied_on or checksum was changed by hand); restore it; nothing was changed",
            a.label()
        )));
    }
    let pending = comparison.pending();
    report.migrations = pending.iter().map(|m| m.to_string()).collect();

    // Who may do what: each role of `access` must exist and be able to do
    // its part before anything is applied (SPEC §3 "Access").
    match &policy.access {
        Some(a) => roles::check_access(client, a, policy, !pending.is_empty())?,
        None => {
            if session::is_superuser(client)? {
                report.warnings.push(
                    "the policy has no `access`, and apply runs as a superuser: the retention machinery will belong to a superuser and its nightly jobs will run as one. Add `access:` to the policy (an owner role that is not a superuser; see docs/access.md)".into(),
                );
            }
        }
    }

    // Existing tables (datasets without `columns`): any that cannot be
    // adopted is refused before anything is changed.
    let existing: Vec<&Dataset> = policy
        .datasets
        .iter()
        .filter(|d| d.columns.is_none())
        .collect();
    for ds in &existing {
        if let Some(why) = adopt::refusal(client, ds)? {
            return Err(DbError(format!(
                "dataset `{}` ({}): its table cannot be adopted: {why}. Nothing was changed",
                ds.name, ds.source
            )));
        }
    }

    if opts.dry_run {
        report.sql = pending
            .iter()
            .map(|m| m.sql().unwrap_or_default().to_string())
            .collect();
        let mut cron_cfg = cfg.clone();
        cron_cfg.dbname(cron_db);
        report.removed_jobs = match connect::connect(&cron_cfg) {
            Ok(mut cron) => cron::stale(&mut cron, data_db, &jobs).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        report.jobs = jobs;
        return Ok(report);
    }

    // pg_cron's extension must exist in the cron database before anything
    // is applied, so a deploy never leaves tables without their jobs.
    let mut cron = connect::connect_cron(cfg, cron_db)?;
    cron::ensure_extension(&mut cron, cron_db)?;

    // The slow part of adopting a table, online and resumable, before the
    // migration that swaps it in (which then only changes the catalog).
    for ds in &existing {
        adopt::prepare(client, ds, &mut |line| eprintln!("pgretain: {line}"))?;
    }
    history::apply_pending(client, migrations, &history)?;
    if let Some(a) = &policy.access {
        roles::check_owner_can_drop(client, a).map_err(|e| {
            DbError(format!(
                "{}; the migrations were applied but the jobs not registered: fix it and run apply again",
                e.0
            ))
        })?;
    }
    // Fingerprint every routine of schema retention as the migrations left
    // it, for `verify`. Only when something was applied (or nothing was ever
    // recorded): re-running apply must not bless a hand edit.
    if !pending.is_empty() || !fingerprint::recorded_any(client)? {
        fingerprint::record(client).map_err(|e| {
            DbError(format!(
                "{}; the migrations were applied but the jobs not registered: run apply again",
                e.0
            ))
        })?;
    }
    report.removed_jobs = cron::register(
        &mut cron,
        data_db,
        cron_db,
        policy.access.as_ref().map(|a| a.owner.as_str()),
        &jobs,
    )?;
    report.jobs = jobs;
    Ok(report)
}

impl ApplyReport {
    /// "scheduled pgretain:app:sessions `30 3 * * *` in database app as role retention_owner: CALL …"
    fn job_line(j: &Job) -> String {
        format!(
            "{} `{}` in database {}{}",
            j.name,
            j.schedule,
            j.database,
            j.username
                .as_deref()
                .map(|u| format!(" as role {u}"))
                .unwrap_or_default(),
        )
    }
}

impl Outcome for ApplyReport {
    fn text(&self) -> String {
        let mut s = String::new();
        if self.dry_run {
            s.push_str("-- dry run: nothing was changed\n");
            for (m, sql) in self.migrations.iter().zip(&self.sql) {
                s.push_str(&format!("-- migration {m} would be applied:\n{sql}\n"));
            }
            if self.migrations.is_empty() {
                s.push_str("-- no pending migrations\n");
            }
            for j in &self.jobs {
                s.push_str(&format!(
                    "-- job {} would run: {}\n",
                    Self::job_line(j),
                    j.command
                ));
            }
            for j in &self.removed_jobs {
                s.push_str(&format!("-- job {j} would be removed\n"));
            }
        } else {
            if self.migrations.is_empty() {
                s.push_str("no pending migrations\n");
            }
            for m in &self.migrations {
                s.push_str(&format!("applied {m}\n"));
            }
            for j in &self.jobs {
                s.push_str(&format!("scheduled {}: {}\n", Self::job_line(j), j.command));
            }
            for j in &self.removed_jobs {
                s.push_str(&format!("removed job {j}\n"));
            }
        }
        s
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
}
