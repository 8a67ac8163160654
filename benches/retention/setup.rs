//! The benchmark's state, and setting up its databases: the policy, the
//! generated rows (same seed, same timestamps, same tenants for every
//! method), a template per kind of table, a copy per run.

use std::fmt::Write as _;
use std::time::Instant;

use pgretain::cmd::apply::{apply, ApplyOptions};
use pgretain::cmd::compile::{compile, CompileOptions};
use postgres::Client;

use crate::common::Cluster;
use crate::config::{Config, Method};
use crate::db::{copy_dir, q, Db};
use crate::measure::Measurement;

/// The archived scenario's archive keep, in days.
pub(crate) const ARCHIVE_KEEP_DAYS: u32 = 30;

pub(crate) struct Bench {
    pub(crate) cfg: Config,
    pub(crate) cluster: Cluster,
    pub(crate) started: Instant,
    /// T of the catch-up run: the latest `run_at` (UTC) before the bench started.
    pub(crate) t0: String,
    /// The UTC midnight before T0 (a partition bound).
    pub(crate) t0_bound: String,
    /// T0 + 1 day.
    pub(crate) t1: String,
    /// The first UTC midnight after T1.
    pub(crate) t2: String,
    /// Hours between T1 and T2.
    pub(crate) t1_t2_hours: f64,
    pub(crate) results: Vec<Measurement>,
    /// The operator commands' wall times.
    pub(crate) ops: Vec<crate::ops::OpsTiming>,
    /// Imported history: live rows left in the default partition after the
    /// catch-up, per size (SPEC §3: none).
    pub(crate) imported_live: Vec<(u64, i64)>,
    /// Archived scenario: rows in the archive after the catch-up, per size
    /// and method (every method must leave the same).
    pub(crate) archived_left: Vec<(u64, Method, i64)>,
    /// Erasure latency per size and method (`erase`).
    pub(crate) erase: Vec<crate::erase::EraseTiming>,
    pub(crate) versions: Vec<(String, String)>,
}

impl Bench {
    pub(crate) fn log(&self, msg: &str) {
        eprintln!("[{:>7.1}s] {msg}", self.started.elapsed().as_secs_f64());
    }

    pub(crate) fn admin(&self) -> Client {
        self.cluster.client("postgres")
    }

    // -- setup --------------------------------------------------------------

    /// The benchmark's policy: one dataset `events`, `keep_days` of
    /// retention, with `holds` the mixed scenario's holds, and
    /// `dataset_keys` (YAML lines indented for the dataset, e.g.
    /// `    erase_by: payload\n`) added to the dataset.
    pub(crate) fn policy_yaml(&self, keep_days: u32, holds: bool, dataset_keys: &str) -> String {
        let mut s = format!(
            "version: 1
datasets:
  events:
    description: Benchmark events (benches/retention/).
    table: app.events
    columns:
      id: bigint generated always as identity
      tenant: text not null
      at: timestamptz not null
      payload: text not null
    time: at
    tenant: tenant
    keep: {keep_days} days
    min_keep: 1 day
    max_keep: 3650 days
    partition: day
{dataset_keys}"
        );
        if holds {
            s.push_str("holds:\n");
            for n in (0..self.cfg.tenants).filter(|n| n % 100 == 1) {
                let _ = writeln!(
                    s,
                    "  - tenant: \"{}\"\n    reason: \"benchmark hold {n}\"",
                    self.tenant(n)
                );
            }
        }
        s
    }

    pub(crate) fn tenant(&self, n: u32) -> String {
        format!("t{:0w$}", n, w = self.cfg.tenant_width())
    }

    /// Writes `policy` into the database's policy dir, compiles it (a new
    /// migration if it changed) and applies it; then removes the pg_cron
    /// jobs so no scheduled run interferes with the measurements.
    pub(crate) fn deploy(&self, db: &Db, policy: &str) {
        let policy_dir = db.policy.as_ref().expect("pgretain db").path();
        let generated_dir = db.generated.as_ref().expect("pgretain db").path();
        std::fs::write(policy_dir.join("policy.yaml"), policy).unwrap();
        compile(&CompileOptions {
            policy_dir: policy_dir.to_path_buf(),
            generated_dir: generated_dir.to_path_buf(),
            check: false,
            allow_destructive: false,
        })
        .unwrap_or_else(|e| panic!("compiling the benchmark policy: {e}"));
        apply(&ApplyOptions {
            database_url: Some(db.conninfo.clone()),
            generated_dir: generated_dir.to_path_buf(),
            dry_run: false,
            cron_database: None,
        })
        .unwrap_or_else(|e| panic!("applying the benchmark policy: {e}"));
        q(
            &mut self.admin(),
            "SELECT cron.unschedule(jobid) FROM cron.job",
        );
    }

    /// `INSERT ... SELECT generate_series`: `count` rows evenly spread over
    /// (`from`, `to`), tenants and payloads from a hash of the row number and
    /// the seed. Row numbers start after `offset`, so later batches never
    /// repeat earlier ones. Identical on every database.
    pub(crate) fn generate(
        &self,
        client: &mut Client,
        from: &str,
        to: &str,
        count: u64,
        offset: u64,
    ) {
        let Config { seed, tenants, .. } = self.cfg;
        let w = self.cfg.tenant_width();
        q(
            client,
            &format!(
                "INSERT INTO app.events (tenant, at, payload)
                 SELECT 't' || lpad(((hashint8(g + {seed})::bigint & 2147483647) % {tenants})::text, {w}, '0'),
                        '{from}'::timestamptz
                          + ('{to}'::timestamptz - '{from}'::timestamptz) * ((g - {offset} - 0.5) / {count}),
                        md5((g + {seed})::text)
                   FROM generate_series({offset}::bigint + 1, {offset}::bigint + {count}) AS g"
            ),
        );
    }

    pub(crate) fn generate_base(&self, client: &mut Client, rows: u64) {
        let from = self.shift(&self.t0, -(self.cfg.days as i64));
        self.generate(client, &from, &self.t0, rows, 0);
    }

    /// `t` moved by `days` days, as SQL text.
    pub(crate) fn shift(&self, t: &str, days: i64) -> String {
        let mut c = self.admin();
        c.query_one(
            "SELECT ($1::text::timestamptz + make_interval(days => $2::int))::text",
            &[&t, &(days as i32)],
        )
        .unwrap()
        .get(0)
    }

    pub(crate) fn create_db(&self, name: &str, template: Option<&str>) -> String {
        let mut admin = self.admin();
        q(
            &mut admin,
            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        );
        match template {
            Some(t) => q(
                &mut admin,
                &format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\" STRATEGY FILE_COPY"),
            ),
            None => {
                self.cluster.create_database(name);
            }
        }
        self.cluster.conninfo(name)
    }

    pub(crate) fn drop_db(&self, db: Db) {
        let name = db.name.clone();
        drop(db);
        q(
            &mut self.admin(),
            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        );
    }

    /// The pgretain template: the policy deployed, a partition per day, the
    /// rows. With `imported`, the rows come after the policy, as an import
    /// of history would: partitions only as far back as premake makes them.
    /// With `archived`, the policy archives expired rows (`on_expiry:
    /// archive`, a dataset setting that cannot change once deployed).
    pub(crate) fn make_pgretain_template(&self, rows: u64, imported: bool, archived: bool) -> Db {
        let name = match (imported, archived) {
            (true, _) => format!("tpl_pgretain_imported_{rows}"),
            (false, true) => format!("tpl_pgretain_archived_{rows}"),
            (false, false) => format!("tpl_pgretain_{rows}"),
        };
        self.log(&format!(
            "{name}: deploying the policy and generating {rows} rows"
        ));
        let conninfo = self.create_db(&name, None);
        let db = Db {
            name: name.clone(),
            client: self.cluster.client(&name),
            conninfo,
            method: Method::Pgretain,
            policy: Some(tempfile::tempdir().unwrap()),
            generated: Some(tempfile::tempdir().unwrap()),
        };
        let archive = if archived {
            format!("    on_expiry: archive\n    archive: {{ schema: archive, keep: {ARCHIVE_KEEP_DAYS} days }}\n")
        } else {
            String::new()
        };
        self.deploy(&db, &self.policy_yaml(self.cfg.keep_days, false, &archive));
        let mut db = db;
        if imported {
            // What apply left: premake's partitions (back over the longest
            // retention, ahead by `premake`); the import comes next.
            q(&mut db.client, "SELECT retention.premake('events', now())");
        } else {
            let first = self.shift(&self.t0, -(self.cfg.days as i64) - 1);
            let last = self.shift(&self.t2, 2);
            q(
                &mut db.client,
                &format!(
                    "SELECT count(retention.create_partition('events', d))
                       FROM generate_series(date_trunc('day', '{first}'::timestamptz, 'UTC'),
                                            '{last}'::timestamptz, interval '1 day') AS d;
                     SELECT retention.premake('events', now());"
                ),
            );
        }
        self.generate_base(&mut db.client, rows);
        q(&mut db.client, "VACUUM (ANALYZE, PARALLEL 0) app.events");
        db
    }

    /// The plain table, its indexes (the same as pgretain's), the tables the
    /// mixed scenario's DELETE reads, the rows.
    pub(crate) fn make_plain_template(&self, rows: u64) -> Db {
        let name = format!("tpl_plain_{rows}");
        self.log(&format!("{name}: generating {rows} rows"));
        let conninfo = self.create_db(&name, None);
        let mut db = Db {
            name: name.clone(),
            client: self.cluster.client(&name),
            conninfo,
            method: Method::Delete,
            policy: None,
            generated: None,
        };
        q(
            &mut db.client,
            "CREATE SCHEMA app;
             CREATE TABLE app.events (
                 id bigint GENERATED ALWAYS AS IDENTITY,
                 tenant text NOT NULL,
                 at timestamptz NOT NULL,
                 payload text NOT NULL);
             CREATE INDEX events_at_idx ON app.events (at);
             CREATE INDEX events_tenant_at_idx ON app.events (tenant, at);
             CREATE TABLE app.tenant_retention (tenant text PRIMARY KEY, keep interval NOT NULL);
             CREATE TABLE app.legal_hold (tenant text PRIMARY KEY);",
        );
        self.generate_base(&mut db.client, rows);
        q(&mut db.client, "VACUUM (ANALYZE, PARALLEL 0) app.events");
        db
    }

    /// pg_partman: a natively partitioned table, daily partitions from the
    /// first row on, retention 90 days, dropping tables.
    pub(crate) fn make_partman_db(&self, rows: u64) -> Db {
        let name = format!("d_partman_{rows}");
        self.log(&format!("{name}: create_parent and generating {rows} rows"));
        let conninfo = self.create_db(&name, None);
        let mut db = Db {
            name: name.clone(),
            client: self.cluster.client(&name),
            conninfo,
            method: Method::Partman,
            policy: None,
            generated: None,
        };
        let start = self.shift(&self.t0, -(self.cfg.days as i64) - 1);
        q(
            &mut db.client,
            &format!(
                "CREATE SCHEMA app;
                 CREATE SCHEMA partman;
                 CREATE EXTENSION pg_partman SCHEMA partman;
                 CREATE TABLE app.events (
                     id bigint GENERATED ALWAYS AS IDENTITY,
                     tenant text NOT NULL,
                     at timestamptz NOT NULL,
                     payload text NOT NULL) PARTITION BY RANGE (at);
                 CREATE INDEX events_at_idx ON app.events (at);
                 CREATE INDEX events_tenant_at_idx ON app.events (tenant, at);
                 SELECT partman.create_parent(p_parent_table => 'app.events', p_control => 'at',
                                              p_type => 'native', p_interval => 'daily',
                                              p_premake => 4,
                                              p_start_partition => date_trunc('day', '{start}'::timestamptz)::text);"
            ),
        );
        self.generate_base(&mut db.client, rows);
        q(&mut db.client, "VACUUM (ANALYZE, PARALLEL 0) app.events");
        q(
            &mut db.client,
            &format!(
                "UPDATE partman.part_config
                    SET retention = '{} days', retention_keep_table = false, retention_keep_index = false
                  WHERE parent_table = 'app.events';",
                self.cfg.keep_days
            ),
        );
        db
    }

    pub(crate) fn clone_db(&self, template: &Db, name: &str, method: Method) -> Db {
        let conninfo = self.create_db(name, Some(&template.name));
        let (policy, generated) = if template.method == Method::Pgretain {
            let p = tempfile::tempdir().unwrap();
            let g = tempfile::tempdir().unwrap();
            copy_dir(template.policy.as_ref().unwrap().path(), p.path());
            copy_dir(template.generated.as_ref().unwrap().path(), g.path());
            (Some(p), Some(g))
        } else {
            (None, None)
        };
        Db {
            name: name.to_string(),
            client: self.cluster.client(name),
            conninfo,
            method,
            policy,
            generated,
        }
    }

    /// Archived scenario, the plain table: an archive table of the same
    /// columns plus the two pgretain adds, and an index on the deadline
    /// (pgretain's database comes from its own template: the policy
    /// archives from the start).
    pub(crate) fn configure_archived(&self, db: &mut Db) {
        if db.method != Method::Pgretain {
            q(
                &mut db.client,
                "CREATE TABLE app.events_archive (LIKE app.events, archived_at timestamptz NOT NULL,
                                                  retention_deadline timestamptz NOT NULL);
                 CREATE INDEX ON app.events_archive (retention_deadline);",
            );
        }
    }

    /// Mixed scenario: 5% of tenants with a shorter run-time setting, 1% held.
    pub(crate) fn configure_mixed(&self, db: &mut Db) {
        let w = self.cfg.tenant_width();
        let (tenants, tk) = (self.cfg.tenants, self.cfg.tenant_keep_days);
        if db.method == Method::Pgretain {
            self.deploy(db, &self.policy_yaml(self.cfg.keep_days, true, ""));
            q(
                &mut db.client,
                &format!(
                    "INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep)
                     SELECT 'events', 't' || lpad(n::text, {w}, '0'), NULL, interval '{tk} days'
                       FROM generate_series(0, {tenants} - 1) AS n WHERE n % 20 = 0"
                ),
            );
        } else {
            q(
                &mut db.client,
                &format!(
                    "INSERT INTO app.tenant_retention (tenant, keep)
                     SELECT 't' || lpad(n::text, {w}, '0'), interval '{tk} days'
                       FROM generate_series(0, {tenants} - 1) AS n WHERE n % 20 = 0;
                     INSERT INTO app.legal_hold (tenant)
                     SELECT 't' || lpad(n::text, {w}, '0')
                       FROM generate_series(0, {tenants} - 1) AS n WHERE n % 100 = 1;
                     ANALYZE app.tenant_retention, app.legal_hold;"
                ),
            );
        }
    }
}
