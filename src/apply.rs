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

use crate::db::{self, ctx, DbError};
use crate::generated::{read_state, STATE_FILE};
use crate::model::{Access, Dataset, Policy};
use crate::render;

/// refinery's history table (in the data database), unqualified; where it
/// is, checked, is `db::history_table`.
pub use crate::db::HISTORY_TABLE;

/// The advisory lock key pair apply holds for its whole run.
const APPLY_LOCK: &str = "SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtext('pgretain'), pg_catalog.hashtext('pgretain apply'))";
const APPLY_UNLOCK: &str = "SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtext('pgretain'), pg_catalog.hashtext('pgretain apply'))";

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
    /// The role it runs as: `access.owner`; `None`, the role that applies.
    pub username: Option<String>,
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
    /// Things the DBA should know (e.g. applying as a superuser without
    /// `access`), printed on stderr.
    pub warnings: Vec<String>,
}

/// The job of one dataset in data database `db`, run as `username`.
pub fn job_for(ds: &Dataset, db: &str, username: Option<&str>) -> Job {
    Job {
        name: job_name(db, &ds.name),
        schedule: ds.schedule.clone(),
        command: render::names::job_command(ds),
        database: db.to_string(),
        username: username.map(str::to_string),
    }
}

/// The command of the job that trims pg_cron's run history: rows of
/// pgretain's jobs only, older than 30 days. Run as the jobs' role, which
/// pg_cron's row security limits to its own rows anyway.
pub const TRIM_COMMAND: &str = "SET LOCAL search_path = pg_catalog, pg_temp; \
     DELETE FROM cron.job_run_details d \
      WHERE d.end_time < now() - interval '30 days' \
        AND d.jobid IN (SELECT j.jobid FROM cron.job j WHERE starts_with(j.jobname::text, 'pgretain:'))";

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
    let owner = state.policy.access.as_ref().map(|a| a.owner.as_str());
    let jobs: Vec<Job> = state
        .policy
        .datasets
        .iter()
        .map(|d| job_for(d, &data_db, owner))
        .collect();

    client
        .execute(APPLY_LOCK, &[])
        .map_err(ctx("taking the apply lock"))?;
    let result = apply_locked(
        &mut client,
        &cfg,
        opts,
        &state.policy,
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

/// refinery's runner: every pending migration in one transaction, and the
/// history in `history` (schema-qualified).
pub fn runner(migrations: &[refinery::Migration], history: &str) -> Runner {
    let mut r = Runner::new(migrations)
        .set_grouped(true)
        .set_abort_divergent(true)
        .set_abort_missing(true);
    r.set_migration_table_name(history);
    r
}

#[allow(clippy::too_many_arguments)]
fn apply_locked(
    client: &mut Client,
    cfg: &postgres::Config,
    opts: &ApplyOptions,
    policy: &Policy,
    migrations: Vec<refinery::Migration>,
    jobs: Vec<Job>,
    data_db: &str,
    cron_db: &str,
) -> Result<ApplyReport, DbError> {
    let mut report = ApplyReport {
        cron_database: cron_db.to_string(),
        ..Default::default()
    };
    // The history table is checked before anything reads or writes it.
    let history = db::history_table(client)?;
    let has_history = history.is_some();
    let history = history.unwrap_or_else(|| {
        format!(
            "{}.{}",
            render::text::ident("public"),
            render::text::ident(HISTORY_TABLE)
        )
    });
    let runner = runner(&migrations, &history);

    // Divergence is checked before anything runs, for dry runs too.
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

    // Who may do what: each role of `access` must exist and be able to do
    // its part before anything is applied (SPEC §3 "Access").
    match &policy.access {
        Some(a) => check_access(client, a, policy, !pending.is_empty())?,
        None => {
            let superuser: bool = client
                .query_one(
                    "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
                    &[],
                )
                .map_err(ctx("reading the current role"))?
                .get(0);
            if superuser {
                report.warnings.push(
                    "the policy has no `access`, and apply runs as a superuser: the retention machinery will belong to a superuser and its nightly jobs will run as one. Add `access:` to the policy (an owner role that is not a superuser; see docs/access.md)".into(),
                );
            }
        }
    }

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
    if let Some(a) = &policy.access {
        check_owner_can_drop(client, a).map_err(|e| {
            DbError(format!(
                "{}; the migrations were applied but the jobs not registered: fix it and run apply again",
                e.0
            ))
        })?;
    }
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
    register_jobs(
        &mut cron,
        data_db,
        cron_db,
        policy.access.as_ref().map(|a| a.owner.as_str()),
        &jobs,
        &mut report,
    )?;
    report.jobs = jobs;
    Ok(report)
}

/// Jobs named for this data database that the policy no longer has.
fn stale_jobs(cron: &mut Client, data_db: &str, jobs: &[Job]) -> Result<Vec<String>, DbError> {
    let keep: BTreeSet<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    let prefix = format!("pgretain:{data_db}:");
    let rows = cron
        .query(
            "SELECT DISTINCT jobname::text FROM cron.job WHERE starts_with(jobname::text, $1) ORDER BY 1",
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
/// transaction of the cron database. pg_cron keys a job by name and role:
/// a job of the same name that runs as another role, or in another
/// database, is removed first (scheduling an existing name updates its
/// schedule and command only).
fn register_jobs(
    cron: &mut Client,
    data_db: &str,
    cron_db: &str,
    owner: Option<&str>,
    jobs: &[Job],
    report: &mut ApplyReport,
) -> Result<(), DbError> {
    let stale = stale_jobs(cron, data_db, jobs)?;
    let me: String = cron
        .query_one("SELECT current_user::text", &[])
        .map_err(ctx("reading the current role"))?
        .get(0);
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
                db::pg_message(&e),
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
        tx.batch_execute(&format!(
            "GRANT USAGE ON SCHEMA cron TO {}",
            render::text::ident(o)
        ))
        .map_err(|e| {
            DbError(format!(
                "granting the owner role `{o}` USAGE on schema cron (database `{cron_db}`) failed: {}. Run apply as a superuser, or run `GRANT USAGE ON SCHEMA cron TO {}` there as one",
                db::pg_message(&e),
                render::text::ident(o)
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
    report.removed_jobs = stale;
    Ok(())
}

/// Whether every role of `access` exists and can do its part, before
/// anything is applied (SPEC §3 "Access"). `pending`: migrations will run
/// (they make the schemas and hand the tables to the owner).
fn check_access(
    client: &mut Client,
    a: &Access,
    policy: &Policy,
    pending: bool,
) -> Result<(), DbError> {
    let fail = |msg: String| Err(DbError(format!("{msg}; nothing was changed")));
    let me = client
        .query_one(
            "SELECT current_user::text, rolsuper, rolcreaterole, current_database()::text
               FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .map_err(ctx("reading the current role"))?;
    let (me_name, me_super, me_createrole, data_db): (String, bool, bool, String) =
        (me.get(0), me.get(1), me.get(2), me.get(3));
    for role in a.roles() {
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)",
                &[&role],
            )
            .map_err(ctx("reading the roles"))?
            .get(0);
        if !exists {
            return fail(format!(
                "role `{role}` named in `access` ({}) does not exist. Create it first: `CREATE ROLE {}{}`",
                a.source,
                render::text::ident(role),
                if role == a.owner { " LOGIN" } else { "" }
            ));
        }
    }
    let owner = a.owner.as_str();
    let o = client
        .query_one(
            "SELECT rolsuper, rolcanlogin, has_database_privilege(rolname, current_database(), 'CONNECT'),
                    pg_has_role(current_user, rolname, 'MEMBER')
               FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&owner],
        )
        .map_err(ctx("reading the owner role"))?;
    let (o_super, o_login, o_connect, i_can): (bool, bool, bool, bool) =
        (o.get(0), o.get(1), o.get(2), o.get(3));
    let q = render::text::ident(owner);
    if o_super {
        return fail(format!(
            "the owner role `{owner}` of `access` is a superuser: the nightly jobs would run with every right on the server, and nothing pgretain grants would limit them. Use a role without SUPERUSER (`ALTER ROLE {q} NOSUPERUSER`, or name another role)"
        ));
    }
    if !o_login {
        return fail(format!(
            "the owner role `{owner}` cannot log in, and pg_cron runs the jobs by connecting as it. Allow it: `ALTER ROLE {q} LOGIN` (and let pg_cron authenticate it, e.g. in pg_hba.conf or .pgpass)"
        ));
    }
    if !o_connect {
        return fail(format!(
            "the owner role `{owner}` may not connect to database `{data_db}`, where its jobs run. Allow it: `GRANT CONNECT ON DATABASE {} TO {q}`",
            render::text::ident(&data_db)
        ));
    }
    if !i_can {
        return fail(format!(
            "role `{me_name}`, which runs apply, cannot act as the owner role `{owner}`, and every migration creates its objects as the owner. Make it a member: `GRANT {q} TO {}`",
            render::text::ident(&me_name)
        ));
    }
    if !me_super && !me_createrole {
        return fail(format!(
            "role `{me_name}`, which runs apply, may not set the owner's own statement_timeout in this database (`ALTER ROLE {q} IN DATABASE ... SET statement_timeout = 0`, so no database or role timeout kills a run). Run apply as a superuser, or give it CREATEROLE: `ALTER ROLE {} CREATEROLE`",
            render::text::ident(&me_name)
        ));
    }
    for role in a.application.iter().chain(a.readers.iter()) {
        let r = client
            .query_one(
                "SELECT rolsuper, pg_has_role(rolname, $2, 'MEMBER') FROM pg_catalog.pg_roles WHERE rolname = $1",
                &[&role, &owner],
            )
            .map_err(ctx("reading the roles"))?;
        let (sup, member): (bool, bool) = (r.get(0), r.get(1));
        if sup {
            return fail(format!(
                "role `{role}` of `access` is a superuser: no privilege pgretain grants or withholds applies to it, so it could change or stop the machinery. Use a role without SUPERUSER"
            ));
        }
        if member {
            return fail(format!(
                "role `{role}` of `access` is a member of the owner role `{owner}`, so it has every right of the machinery's owner. Revoke it: `REVOKE {q} FROM {}`",
                render::text::ident(role)
            ));
        }
    }
    // The schemas the migrations grant the owner CREATE on: possible only
    // for their owner or a superuser, unless the owner has it already.
    let mut schemas: Vec<&str> = Vec::new();
    for ds in &policy.datasets {
        schemas.push(&ds.schema);
        if let Some(arch) = &ds.archive {
            schemas.push(&arch.schema);
        }
    }
    for schema in schemas {
        let row = client
            .query_opt(
                "SELECT has_schema_privilege($2, n.oid, 'CREATE') AND has_schema_privilege($2, n.oid, 'USAGE'),
                        pg_catalog.pg_get_userbyid(n.nspowner)::text,
                        pg_has_role(current_user, n.nspowner, 'MEMBER')
                   FROM pg_catalog.pg_namespace n WHERE n.nspname = $1",
                &[&schema, &owner],
            )
            .map_err(ctx("reading the schemas"))?;
        if let Some(r) = row {
            let (has, sowner, mine): (bool, String, bool) = (r.get(0), r.get(1), r.get(2));
            if !has && !me_super && !mine {
                return fail(format!(
                    "the owner role `{owner}` cannot create partitions in schema `{schema}` (owned by `{sowner}`), and role `{me_name}` cannot grant it. As `{sowner}`, run: `GRANT USAGE, CREATE ON SCHEMA {} TO {q}`",
                    render::text::ident(schema)
                ));
            }
            if !me_super && !mine && policy.datasets.iter().any(|d| d.schema == schema) {
                for app in &a.application {
                    let usage: bool = client
                        .query_one(
                            "SELECT has_schema_privilege($1, $2, 'USAGE')",
                            &[app, &schema],
                        )
                        .map_err(ctx("reading the schemas"))?
                        .get(0);
                    if !usage {
                        return fail(format!(
                            "the application role `{app}` cannot reach schema `{schema}` (owned by `{sowner}`), and role `{me_name}` cannot grant it. As `{sowner}`, run: `GRANT USAGE ON SCHEMA {} TO {}`",
                            render::text::ident(schema),
                            render::text::ident(app)
                        ));
                    }
                }
            }
        }
    }
    // Tables that exist already: the owner must be able to drop their
    // partitions, or pending migrations must be able to hand them over.
    if let Err(e) = check_owner_can_drop(client, a) {
        let can_transfer: bool = me_super;
        if !(pending && can_transfer) {
            return Err(DbError(format!("{}; nothing was changed", e.0)));
        }
    }
    Ok(())
}

/// Whether the owner role can drop every partition of every dataset table
/// and archive that exists: it owns it, or is a member of its owner.
fn check_owner_can_drop(client: &mut Client, a: &Access) -> Result<(), DbError> {
    let has_datasets: bool = client
        .query_one(
            "SELECT pg_catalog.to_regclass('retention.dataset') IS NOT NULL",
            &[],
        )
        .map_err(ctx("looking for retention.dataset"))?
        .get(0);
    if !has_datasets {
        return Ok(());
    }
    let rows = client
        .query(
            "SELECT t.relid::regclass::text, pg_catalog.pg_get_userbyid(c.relowner)::text
               FROM retention.dataset d,
                    LATERAL (SELECT d.relation UNION ALL SELECT d.archive_relation) x(rel),
                    LATERAL pg_catalog.pg_partition_tree(pg_catalog.to_regclass(x.rel)) t
               JOIN pg_catalog.pg_class c ON c.oid = t.relid
              WHERE x.rel IS NOT NULL AND pg_catalog.to_regclass(x.rel) IS NOT NULL
                AND NOT pg_has_role($1, c.relowner, 'USAGE')
              ORDER BY 1",
            &[&a.owner],
        )
        .map_err(ctx("checking who owns the dataset tables"))?;
    if rows.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = rows
        .iter()
        .take(5)
        .map(|r| {
            format!(
                "{} (owned by `{}`)",
                r.get::<_, String>(0),
                r.get::<_, String>(1)
            )
        })
        .collect();
    let first: String = rows[0].get(0);
    Err(DbError(format!(
        "the owner role `{}` cannot drop {} partition(s) or table(s) of the datasets: {}{}. Give them to it, as their owner or a superuser: `ALTER TABLE {first} OWNER TO {}` (for each)",
        a.owner,
        rows.len(),
        list.join(", "),
        if rows.len() > 5 { ", …" } else { "" },
        render::text::ident(&a.owner)
    )))
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
