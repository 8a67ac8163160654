//! Benchmark: pgretain's enforcement against the alternatives a DBA would
//! otherwise use, on identical data.
//!
//! ```text
//! cargo bench --bench retention                       # quick: 200k rows
//! cargo bench --bench retention -- --rows 1000000 --growth-rows 10000000 \
//!     --svg docs/benchmarks.svg                       # what docs/benchmarks.md reports
//! ```
//!
//! Every option is `--name value`, `--name=value` or `name=value` after `--`,
//! or the environment variable `PGRETAIN_BENCH_<NAME>` (upper case, `-` as
//! `_`); `--help` lists them.
//!
//! Methods, each on its own database holding the same generated rows (same
//! seed, same timestamps, same tenants):
//!
//! * (a) `pgretain`: the dataset's job command, `CALL retention."enforce_events"()`,
//!   with T pinned (`p_now`) so every method removes exactly the same rows;
//! * (b) `DELETE`: one `DELETE ... WHERE at < T - keep` on a plain table;
//! * (c) `batched DELETE`: `DELETE ... WHERE ctid IN (SELECT ctid ... LIMIT n)`
//!   in a loop, each batch its own transaction, on the same plain table;
//! * (d) `pg_partman`: `CALL partman.run_maintenance_proc()` with
//!   `retention = '90 days'` (uniform catch-up only: it drops whole
//!   partitions and reads the clock itself, so it cannot be pinned);
//! * (e) `bare DROP loop`: `DROP TABLE; COMMIT` per fully expired partition
//!   and nothing else (uniform catch-up only): the floor of any method that
//!   drops partitions, not a method to use (it is not exact).
//!
//! Scenarios and moments: uniform retention (catch-up of the backlog at T0,
//! 03:30 UTC like the default schedule, and again at the partition bound
//! before it; then the steady state one day later; then a run at the next
//! partition bound; then a policy change 90 → 60 days) and mixed retention
//! (5% of tenants with a 30-day run-time setting, 1% under a legal hold;
//! catch-up).
//!
//! It starts a throwaway cluster with the integration tests' harness
//! (`tests/common`), restores production durability settings, and needs
//! nothing else; pg_partman is used when installed
//! (`apt-get install postgresql-15-partman`), else (d) is skipped.
//!
//! For each run: wall time, WAL written (`pg_current_wal_lsn()` before and
//! after, minus the concurrent insert load's own WAL), table + index size and
//! dead tuples afterwards, rows left checked against an independent
//! reference predicate, the `VACUUM` the run leaves behind, and the latency
//! of a fixed-rate single-row insert load during the run vs. just before it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::Cluster;
use pgretain::cmd::apply::{apply, ApplyOptions};
use pgretain::cmd::compile::{compile, CompileOptions};
use postgres::{Client, NoTls};

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Method {
    Pgretain,
    Delete,
    Batched,
    Partman,
    Floor,
}

impl Method {
    const ALL: [Method; 5] = [
        Method::Pgretain,
        Method::Delete,
        Method::Batched,
        Method::Partman,
        Method::Floor,
    ];

    fn parse(s: &str) -> Method {
        match s.trim() {
            "a" | "pgretain" => Method::Pgretain,
            "b" | "delete" => Method::Delete,
            "c" | "batched" => Method::Batched,
            "d" | "partman" | "pg_partman" => Method::Partman,
            "e" | "floor" => Method::Floor,
            other => usage_error(&format!(
                "unknown method `{other}` (a|pgretain, b|delete, c|batched, d|partman, e|floor)"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Method::Pgretain => "pgretain",
            Method::Delete => "DELETE",
            Method::Batched => "batched DELETE",
            Method::Partman => "pg_partman",
            Method::Floor => "bare DROP loop",
        }
    }

    fn letter(self) -> char {
        match self {
            Method::Pgretain => 'a',
            Method::Delete => 'b',
            Method::Batched => 'c',
            Method::Partman => 'd',
            Method::Floor => 'e',
        }
    }

    fn color(self) -> &'static str {
        match self {
            Method::Pgretain => "#2b8a3e",
            Method::Delete => "#c92a2a",
            Method::Batched => "#e8590c",
            Method::Partman => "#1971c2",
            Method::Floor => "#868e96",
        }
    }

    /// Whether the method promises the exact guarantee (checked).
    fn exact(self) -> bool {
        !matches!(self, Method::Partman | Method::Floor)
    }

    /// Methods that only drop whole partitions: uniform catch-up only.
    fn drops_only(self) -> bool {
        matches!(self, Method::Partman | Method::Floor)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Uniform,
    Mixed,
}

impl Scenario {
    fn parse(s: &str) -> Scenario {
        match s.trim() {
            "uniform" => Scenario::Uniform,
            "mixed" => Scenario::Mixed,
            other => usage_error(&format!("unknown scenario `{other}` (uniform, mixed)")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scenario::Uniform => "uniform",
            Scenario::Mixed => "mixed",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// The backlog: everything older than the retention, at T0.
    CatchUp,
    /// The same backlog, with T at the UTC midnight before T0 (a partition bound).
    CatchUpBound,
    /// One day later (T1 = T0 + 1 day, same time of day as the schedule).
    Steady,
    /// At the next partition bound (T2 = UTC midnight after T1).
    Aligned,
    /// The policy shortens the retention for all rows, at T2.
    Change,
}

impl Step {
    fn label(self, cfg: &Config) -> String {
        match self {
            Step::CatchUp => format!("catch-up, T at {}", cfg.run_at),
            Step::CatchUpBound => "catch-up, T at a partition bound (00:00)".to_string(),
            Step::Steady => format!("steady state, +1 day, T at {}", cfg.run_at),
            Step::Aligned => "steady state, T at a partition bound (00:00)".to_string(),
            Step::Change => format!(
                "policy change {} → {} days",
                cfg.keep_days, cfg.new_keep_days
            ),
        }
    }
}

#[derive(Clone, Debug)]
struct Config {
    rows: u64,
    growth_rows: Option<u64>,
    growth_methods: Vec<Method>,
    days: u32,
    tenants: u32,
    keep_days: u32,
    new_keep_days: u32,
    tenant_keep_days: u32,
    seed: i64,
    rate: f64,
    idle_secs: f64,
    batch: u32,
    run_at: String,
    scenarios: Vec<Scenario>,
    methods: Vec<Method>,
    svg: PathBuf,
    shared_buffers: String,
}

const OPTIONS: &[(&str, &str, &str)] = &[
    ("rows", "200000", "rows generated (spread evenly over `days`)"),
    ("growth-rows", "", "a second, larger size for the uniform scenario (e.g. 10000000); empty: none"),
    ("growth-methods", "a,b,e", "methods run at growth-rows"),
    ("days", "400", "days of data: the backlog is days - keep"),
    ("tenants", "1000", "distinct tenants"),
    ("keep", "90", "retention in days"),
    ("new-keep", "60", "retention after the policy change, in days"),
    ("tenant-keep", "30", "mixed scenario: the run-time setting of 5% of tenants, in days"),
    ("seed", "42", "data generation seed"),
    ("rate", "200", "concurrent single-row inserts per second during each run"),
    ("idle-secs", "3", "seconds of insert load measured just before each run (idle baseline)"),
    ("batch", "10000", "rows per batch of method (c)"),
    ("run-at", "03:30", "time of day (UTC) of T, as the default schedule `30 3 * * *`"),
    ("scenarios", "uniform,mixed", "scenarios at `rows`"),
    ("methods", "a,b,c,d,e", "methods at `rows`: a pgretain, b DELETE, c batched DELETE, d pg_partman, e bare DROP loop (the floor of any partition-dropping method)"),
    ("svg", "", "where to write the bar chart (default: <target tmpdir>/benchmarks.svg)"),
    ("shared-buffers", "512MB", "shared_buffers of the benchmark cluster"),
];

fn usage_error(msg: &str) -> ! {
    eprintln!("retention bench: {msg}\n");
    print_help();
    std::process::exit(2);
}

fn print_help() {
    eprintln!("usage: cargo bench --bench retention -- [--option value ...]\n");
    for (name, default, help) in OPTIONS {
        let env = format!("PGRETAIN_BENCH_{}", name.to_uppercase().replace('-', "_"));
        eprintln!("  --{name:<15} {help} [default: {default}] (env {env})");
    }
}

impl Config {
    fn from_env_and_args() -> Config {
        let mut given: Vec<(String, String)> = Vec::new();
        let mut args = std::env::args().skip(1).peekable();
        while let Some(arg) = args.next() {
            if arg == "--bench" || arg == "--nocapture" {
                continue; // passed by `cargo bench` / `cargo test`
            }
            if arg == "--help" || arg == "-h" {
                print_help();
                std::process::exit(0);
            }
            let body = arg.trim_start_matches("--");
            let (k, v) = match body.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None if arg.starts_with("--") => match args.next() {
                    Some(v) => (body.to_string(), v),
                    None => usage_error(&format!("{arg} needs a value")),
                },
                None => usage_error(&format!("unexpected argument `{arg}`")),
            };
            let k = k.replace('_', "-");
            if !OPTIONS.iter().any(|(n, _, _)| *n == k) {
                usage_error(&format!("unknown option `{k}`"));
            }
            given.push((k, v));
        }
        let get = |name: &str| -> String {
            if let Some((_, v)) = given.iter().rev().find(|(k, _)| k == name) {
                return v.clone();
            }
            let env = format!("PGRETAIN_BENCH_{}", name.to_uppercase().replace('-', "_"));
            if let Ok(v) = std::env::var(env) {
                return v;
            }
            OPTIONS
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, d, _)| d.to_string())
                .unwrap_or_default()
        };
        fn num<T: std::str::FromStr>(name: &str, v: &str) -> T {
            v.replace('_', "")
                .parse()
                .unwrap_or_else(|_| usage_error(&format!("--{name}: not a number: `{v}`")))
        }
        let list = |name: &str| -> Vec<String> {
            get(name)
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let growth = get("growth-rows");
        let svg = get("svg");
        let cfg = Config {
            rows: num("rows", &get("rows")),
            growth_rows: if growth.trim().is_empty() {
                None
            } else {
                Some(num("growth-rows", &growth))
            },
            growth_methods: list("growth-methods")
                .iter()
                .map(|s| Method::parse(s))
                .collect(),
            days: num("days", &get("days")),
            tenants: num("tenants", &get("tenants")),
            keep_days: num("keep", &get("keep")),
            new_keep_days: num("new-keep", &get("new-keep")),
            tenant_keep_days: num("tenant-keep", &get("tenant-keep")),
            seed: num("seed", &get("seed")),
            rate: num("rate", &get("rate")),
            idle_secs: num("idle-secs", &get("idle-secs")),
            batch: num("batch", &get("batch")),
            run_at: get("run-at"),
            scenarios: list("scenarios")
                .iter()
                .map(|s| Scenario::parse(s))
                .collect(),
            methods: list("methods").iter().map(|s| Method::parse(s)).collect(),
            svg: if svg.trim().is_empty() {
                PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("benchmarks.svg")
            } else {
                PathBuf::from(svg)
            },
            shared_buffers: get("shared-buffers"),
        };
        if cfg.days <= cfg.keep_days + 2 || cfg.keep_days <= cfg.new_keep_days {
            usage_error("need days > keep + 2 and keep > new-keep");
        }
        if cfg.tenants < 100 {
            usage_error("need at least 100 tenants (1% of them are held)");
        }
        if cfg.rows < u64::from(cfg.days) || cfg.rate <= 0.0 || cfg.batch == 0 {
            usage_error("need rows >= days, rate > 0, batch > 0");
        }
        cfg
    }

    /// Digits of the tenant number in tenant names (`t0042`).
    fn tenant_width(&self) -> usize {
        (self.tenants - 1).to_string().len().max(4)
    }
}

// ---------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
struct LoadStats {
    n: usize,
    errors: usize,
    first_error: Option<String>,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Clone, Debug)]
struct Measurement {
    rows: u64,
    scenario: Scenario,
    step: Step,
    method: Method,
    removed: i64,
    secs: f64,
    wal: i64,
    size_before: i64,
    size_after: i64,
    dead: i64,
    vacuum_secs: f64,
    vacuum_wal: i64,
    /// Tables (partitions) with dead tuples, which the VACUUM processed.
    vacuum_rels: usize,
    rows_left: i64,
    expired_left: i64,
    wrongly_removed: i64,
    idle: LoadStats,
    during: LoadStats,
    note: String,
}

impl Measurement {
    fn exact(&self) -> bool {
        self.expired_left == 0 && self.wrongly_removed == 0
    }
}

/// Samples of the fixed-rate insert load.
#[derive(Default)]
struct LoadSamples {
    lat_ms: Vec<f64>,
    errors: usize,
    first_error: Option<String>,
}

impl LoadSamples {
    fn stats(mut self) -> LoadStats {
        self.lat_ms.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| -> f64 {
            if self.lat_ms.is_empty() {
                return f64::NAN;
            }
            let rank = ((p * self.lat_ms.len() as f64).ceil() as usize).max(1);
            self.lat_ms[rank.min(self.lat_ms.len()) - 1]
        };
        LoadStats {
            n: self.lat_ms.len() + self.errors,
            errors: self.errors,
            first_error: self.first_error.clone(),
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            max_ms: self.lat_ms.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// A thread inserting single rows into `app.events` at a fixed rate, each in
/// its own transaction, on its own connection, timing each insert.
///
/// Latency is measured from the moment the insert was due: an insert that
/// had to wait behind a blocked one counts its wait (no coordinated
/// omission). Small timer overshoots (< 1 ms) are not counted as waiting.
struct Load {
    stop: Arc<AtomicBool>,
    join: thread::JoinHandle<LoadSamples>,
}

impl Load {
    fn start(conninfo: &str, rate: f64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let conninfo = conninfo.to_string();
        let stop2 = Arc::clone(&stop);
        let join = thread::spawn(move || {
            let mut c = Client::connect(&conninfo, NoTls)
                .unwrap_or_else(|e| panic!("load connection `{conninfo}`: {e}"));
            let stmt = c
                .prepare(
                    "INSERT INTO app.events (tenant, at, payload) VALUES ('load', now(), 'load')",
                )
                .expect("preparing the load insert");
            let _ = ready_tx.send(());
            let period = Duration::from_secs_f64(1.0 / rate);
            let start = Instant::now();
            let mut out = LoadSamples::default();
            let mut i: u32 = 0;
            while !stop2.load(Ordering::Relaxed) {
                let due = start + period * i;
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
                let sent = Instant::now();
                let from = if sent.duration_since(due) < Duration::from_millis(1) {
                    sent
                } else {
                    due
                };
                match c.execute(&stmt, &[]) {
                    Ok(_) => out.lat_ms.push(from.elapsed().as_secs_f64() * 1e3),
                    Err(e) => {
                        out.errors += 1;
                        if out.first_error.is_none() {
                            out.first_error = Some(e.to_string());
                        }
                    }
                }
                i += 1;
            }
            out
        });
        ready_rx
            .recv()
            .expect("the load thread died before it was ready");
        Load { stop, join }
    }

    fn finish(self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        self.join.join().expect("load thread panicked").stats()
    }
}

// ---------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------

/// One database under test.
struct Db {
    name: String,
    conninfo: String,
    client: Client,
    method: Method,
    /// pgretain: the policy and generated directories of this database.
    policy: Option<tempfile::TempDir>,
    generated: Option<tempfile::TempDir>,
}

fn q(client: &mut Client, sql: &str) {
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("`{}` failed: {e:?}", short(sql)));
}

fn short(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 300 {
        format!("{}…", one_line.chars().take(300).collect::<String>())
    } else {
        one_line
    }
}

fn wal_lsn(client: &mut Client) -> String {
    client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .expect("pg_current_wal_lsn")
        .get(0)
}

fn wal_since(client: &mut Client, lsn: &str) -> i64 {
    client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint",
            &[&lsn],
        )
        .expect("pg_wal_lsn_diff")
        .get(0)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------
// The benchmark
// ---------------------------------------------------------------------------

struct Bench {
    cfg: Config,
    cluster: Cluster,
    started: Instant,
    /// T of the catch-up run: the latest `run_at` (UTC) before the bench started.
    t0: String,
    /// The UTC midnight before T0 (a partition bound).
    t0_bound: String,
    /// T0 + 1 day.
    t1: String,
    /// The first UTC midnight after T1.
    t2: String,
    /// Hours between T1 and T2.
    t1_t2_hours: f64,
    results: Vec<Measurement>,
    versions: Vec<(String, String)>,
}

impl Bench {
    fn log(&self, msg: &str) {
        eprintln!("[{:>7.1}s] {msg}", self.started.elapsed().as_secs_f64());
    }

    fn admin(&self) -> Client {
        self.cluster.client("postgres")
    }

    // -- setup --------------------------------------------------------------

    fn policy_yaml(&self, keep_days: u32, holds: bool) -> String {
        let mut s = format!(
            "version: 1
datasets:
  events:
    description: Benchmark events (benches/retention.rs).
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
"
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

    fn tenant(&self, n: u32) -> String {
        format!("t{:0w$}", n, w = self.cfg.tenant_width())
    }

    /// Writes `policy` into the database's policy dir, compiles it (a new
    /// migration if it changed) and applies it; then removes the pg_cron
    /// jobs so no scheduled run interferes with the measurements.
    fn deploy(&self, db: &Db, policy: &str) {
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
    fn generate(&self, client: &mut Client, from: &str, to: &str, count: u64, offset: u64) {
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

    fn generate_base(&self, client: &mut Client, rows: u64) {
        let from = self.shift(&self.t0, -(self.cfg.days as i64));
        self.generate(client, &from, &self.t0, rows, 0);
    }

    /// `t` moved by `days` days, as SQL text.
    fn shift(&self, t: &str, days: i64) -> String {
        let mut c = self.admin();
        c.query_one(
            "SELECT ($1::text::timestamptz + make_interval(days => $2::int))::text",
            &[&t, &(days as i32)],
        )
        .unwrap()
        .get(0)
    }

    fn create_db(&self, name: &str, template: Option<&str>) -> String {
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

    fn drop_db(&self, db: Db) {
        let name = db.name.clone();
        drop(db);
        q(
            &mut self.admin(),
            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        );
    }

    /// The pgretain template: the policy deployed, a partition per day, the rows.
    fn make_pgretain_template(&self, rows: u64) -> Db {
        let name = format!("tpl_pgretain_{rows}");
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
        self.deploy(&db, &self.policy_yaml(self.cfg.keep_days, false));
        let mut db = db;
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
        self.generate_base(&mut db.client, rows);
        q(&mut db.client, "VACUUM (ANALYZE, PARALLEL 0) app.events");
        db
    }

    /// The plain table, its indexes (the same as pgretain's), the tables the
    /// mixed scenario's DELETE reads, the rows.
    fn make_plain_template(&self, rows: u64) -> Db {
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
    fn make_partman_db(&self, rows: u64) -> Db {
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

    fn clone_db(&self, template: &Db, name: &str, method: Method) -> Db {
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

    /// Mixed scenario: 5% of tenants with a shorter run-time setting, 1% held.
    fn configure_mixed(&self, db: &mut Db) {
        let w = self.cfg.tenant_width();
        let (tenants, tk) = (self.cfg.tenants, self.cfg.tenant_keep_days);
        if db.method == Method::Pgretain {
            self.deploy(db, &self.policy_yaml(self.cfg.keep_days, true));
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

    // -- the methods ----------------------------------------------------------

    /// The rows a run at `t` must remove, as an independent SQL predicate over
    /// `app.events` (from the tenant numbers, not from any method's tables).
    fn reference_expired(&self, sc: Scenario, t: &str, keep: u32) -> String {
        let tk = self.cfg.tenant_keep_days;
        match sc {
            Scenario::Uniform => format!(
                "(tenant <> 'load' AND at < '{t}'::timestamptz - interval '{keep} days')"
            ),
            Scenario::Mixed => format!(
                "(CASE WHEN tenant = 'load' THEN false
                       WHEN substr(tenant, 2)::int % 100 = 1 THEN false
                       WHEN substr(tenant, 2)::int % 20 = 0 THEN at < '{t}'::timestamptz - interval '{tk} days'
                       ELSE at < '{t}'::timestamptz - interval '{keep} days' END)"
            ),
        }
    }

    /// What a DBA would write for (b) and (c) on the plain table (alias `t`).
    fn plain_predicate(&self, sc: Scenario, t: &str, keep: u32) -> String {
        match sc {
            Scenario::Uniform => format!("t.at < '{t}'::timestamptz - interval '{keep} days'"),
            Scenario::Mixed => {
                let shortest = keep.min(self.cfg.tenant_keep_days);
                format!(
                    "t.at < '{t}'::timestamptz - interval '{shortest} days'
                     AND NOT EXISTS (SELECT 1 FROM app.legal_hold h WHERE h.tenant = t.tenant)
                     AND t.at < '{t}'::timestamptz
                                - coalesce((SELECT r.keep FROM app.tenant_retention r WHERE r.tenant = t.tenant),
                                           interval '{keep} days')"
                )
            }
        }
    }

    /// Runs the method once on `db` at `t`; returns a note.
    fn run_method(&self, db: &mut Db, sc: Scenario, t: &str, keep: u32) -> String {
        match db.method {
            Method::Pgretain => {
                q(
                    &mut db.client,
                    &format!("CALL retention.\"enforce_events\"(p_now => '{t}'::timestamptz)"),
                );
                let r = db
                    .client
                    .query_one(
                        "SELECT outcome, cardinality(partitions_dropped), rows_deleted,
                                rows_in_dropped, coalesce(detail, '')
                           FROM retention.run_log WHERE dataset = 'events' ORDER BY id DESC LIMIT 1",
                        &[],
                    )
                    .unwrap();
                let outcome: String = r.get(0);
                assert_eq!(
                    outcome,
                    "ok",
                    "pgretain run outcome: {} {}",
                    outcome,
                    r.get::<_, String>(4)
                );
                format!(
                    "{} partitions dropped (~{} rows), {} rows deleted in batches",
                    r.get::<_, i32>(1),
                    thousands(r.get::<_, i64>(3)),
                    thousands(r.get::<_, i64>(2))
                )
            }
            Method::Delete => {
                let n = db
                    .client
                    .execute(
                        &format!(
                            "DELETE FROM app.events t WHERE {}",
                            self.plain_predicate(sc, t, keep)
                        ),
                        &[],
                    )
                    .unwrap_or_else(|e| panic!("DELETE: {e:?}"));
                format!("1 statement, {} rows", thousands(n as i64))
            }
            Method::Batched => {
                let sql = format!(
                    "DELETE FROM app.events WHERE ctid IN (SELECT t.ctid FROM app.events t WHERE {} LIMIT {})",
                    self.plain_predicate(sc, t, keep),
                    self.cfg.batch
                );
                let mut batches = 0u64;
                loop {
                    let n = db
                        .client
                        .execute(&sql, &[])
                        .unwrap_or_else(|e| panic!("batched DELETE: {e:?}"));
                    batches += 1;
                    if n == 0 {
                        break;
                    }
                }
                format!(
                    "{batches} statements of ≤ {} rows",
                    thousands(self.cfg.batch as i64)
                )
            }
            Method::Partman => {
                q(&mut db.client, "CALL partman.run_maintenance_proc()");
                "CALL partman.run_maintenance_proc() (its own clock: now())".to_string()
            }
            Method::Floor => {
                let r = db
                    .client
                    .query_one(
                        &format!(
                            "SELECT count(*) FROM retention.partitions('events')
                              WHERE upper_bound IS NOT NULL
                                AND (upper_bound AT TIME ZONE 'UTC') + interval '{keep} days'
                                    <= ('{t}'::timestamptz AT TIME ZONE 'UTC')"
                        ),
                        &[],
                    )
                    .unwrap();
                let n: i64 = r.get(0);
                q(
                    &mut db.client,
                    &format!(
                        "DO $$
                         DECLARE r record;
                         BEGIN
                           FOR r IN SELECT partition FROM retention.partitions('events')
                                     WHERE upper_bound IS NOT NULL
                                       AND (upper_bound AT TIME ZONE 'UTC') + interval '{keep} days'
                                           <= ('{t}'::timestamptz AT TIME ZONE 'UTC')
                           LOOP
                             EXECUTE format('DROP TABLE %s', r.partition);
                             COMMIT;
                           END LOOP;
                         END $$"
                    ),
                );
                format!("{n} × (DROP TABLE; COMMIT), nothing else (rows of the boundary partition stay)")
            }
        }
    }

    fn size_and_dead(&self, client: &mut Client) -> (i64, i64) {
        q(client, "SELECT pg_stat_force_next_flush()");
        // A new statement: the flush above happened when the backend went idle.
        let r = client
            .query_one(
                "WITH tree AS (SELECT relid FROM pg_partition_tree('app.events')
                               UNION SELECT 'app.events'::regclass)
                 SELECT (SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint FROM tree),
                        (SELECT coalesce(sum(s.n_dead_tup), 0)::bigint
                           FROM pg_stat_user_tables s WHERE s.relid IN (SELECT relid FROM tree))",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    }

    /// One measured run: checks before and after, load during, VACUUM after.
    fn measure(
        &mut self,
        db: &mut Db,
        rows: u64,
        sc: Scenario,
        step: Step,
        t: &str,
        keep: u32,
    ) -> Measurement {
        let reference = self.reference_expired(sc, t, keep);
        let count_sql = format!(
            "SELECT count(*) FILTER (WHERE tenant <> 'load'), count(*) FILTER (WHERE {reference})
               FROM app.events"
        );
        let r = db.client.query_one(&count_sql, &[]).unwrap();
        let (before, expired_before): (i64, i64) = (r.get(0), r.get(1));
        let (size_before, _) = self.size_and_dead(&mut db.client);

        // Idle baseline, just before the run, with the same load.
        q(&mut db.client, "CHECKPOINT");
        let lsn = wal_lsn(&mut db.client);
        let load = Load::start(&db.conninfo, self.cfg.rate);
        thread::sleep(Duration::from_secs_f64(self.cfg.idle_secs));
        let idle = load.finish();
        let load_wal_per_insert = wal_since(&mut db.client, &lsn) as f64 / idle.n.max(1) as f64;

        // The run, with a checkpoint just before it (as if the last one had
        // just happened: every page touched first costs a full-page image).
        q(&mut db.client, "CHECKPOINT");
        let lsn = wal_lsn(&mut db.client);
        let load = Load::start(&db.conninfo, self.cfg.rate);
        let t_start = Instant::now();
        let note = self.run_method(db, sc, t, keep);
        let secs = t_start.elapsed().as_secs_f64();
        let during = load.finish();
        let wal_total = wal_since(&mut db.client, &lsn);
        let wal = (wal_total as f64 - load_wal_per_insert * during.n as f64).max(0.0) as i64;

        let (size_after, dead) = self.size_and_dead(&mut db.client);
        let r = db.client.query_one(&count_sql, &[]).unwrap();
        let (after, expired_left): (i64, i64) = (r.get(0), r.get(1));
        let removed = before - after;
        let wrongly_removed = removed - (expired_before - expired_left);

        // What the run leaves for autovacuum: the tables (partitions) with
        // dead tuples, vacuumed as autovacuum would (no parallel workers).
        let dirty: Vec<String> = db
            .client
            .query(
                "WITH tree AS (SELECT relid FROM pg_partition_tree('app.events')
                               UNION SELECT 'app.events'::regclass)
                 SELECT s.relid::regclass::text FROM pg_stat_user_tables s
                  WHERE s.relid IN (SELECT relid FROM tree) AND s.n_dead_tup > 0",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let lsn = wal_lsn(&mut db.client);
        let v_start = Instant::now();
        if !dirty.is_empty() {
            q(
                &mut db.client,
                &format!("VACUUM (PARALLEL 0) {}", dirty.join(", ")),
            );
        }
        let vacuum_secs = v_start.elapsed().as_secs_f64();
        let vacuum_wal = wal_since(&mut db.client, &lsn);

        let m = Measurement {
            rows,
            scenario: sc,
            step,
            method: db.method,
            removed,
            secs,
            wal,
            size_before,
            size_after,
            dead,
            vacuum_secs,
            vacuum_wal,
            vacuum_rels: dirty.len(),
            rows_left: after,
            expired_left,
            wrongly_removed,
            idle,
            during,
            note,
        };
        self.log(&format!(
            "{} {} {} ({}): {:.3} s, WAL {}, removed {}, left {}, expired left {}, wrongly removed {}, \
             size {} → {}, dead {}, VACUUM {:.3} s / {} WAL, insert p50/p99/max idle {:.2}/{:.2}/{:.2} ms \
             (n={}), during {:.2}/{:.2}/{:.2} ms (n={}, errors {}{}); {}",
            human_rows(rows),
            sc.name(),
            step.label(&self.cfg),
            m.method.name(),
            m.secs,
            bytes(m.wal),
            thousands(m.removed),
            thousands(m.rows_left),
            m.expired_left,
            m.wrongly_removed,
            bytes(m.size_before),
            bytes(m.size_after),
            thousands(m.dead),
            m.vacuum_secs,
            bytes(m.vacuum_wal),
            m.idle.p50_ms,
            m.idle.p99_ms,
            m.idle.max_ms,
            m.idle.n,
            m.during.p50_ms,
            m.during.p99_ms,
            m.during.max_ms,
            m.during.n,
            m.during.errors,
            m.during
                .first_error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default(),
            m.note
        ));
        if m.method.exact() {
            assert!(
                m.exact(),
                "{} is not exact: {} expired rows left, {} rows removed that had not expired",
                m.method.name(),
                m.expired_left,
                m.wrongly_removed
            );
        }
        self.results.push(m.clone());
        m
    }

    // -- one size -------------------------------------------------------------

    fn run_size(&mut self, rows: u64, scenarios: &[Scenario], methods: &[Method]) {
        let per_day = rows / u64::from(self.cfg.days);
        let aligned_rows = (per_day as f64 * self.t1_t2_hours / 24.0).round() as u64;
        let t0 = self.t0.clone();
        let t1 = self.t1.clone();
        let t2 = self.t2.clone();
        let keep = self.cfg.keep_days;

        let mut templates: Vec<Db> = Vec::new();
        if methods.contains(&Method::Pgretain) || methods.contains(&Method::Floor) {
            templates.push(self.make_pgretain_template(rows));
        }
        if methods.contains(&Method::Delete) || methods.contains(&Method::Batched) {
            templates.push(self.make_plain_template(rows));
        }
        // Nobody may be connected to a template while it is copied: keep the
        // Db (for the pgretain template, its policy and generated dirs) but
        // move its connection to `postgres`.
        for t in templates.iter_mut() {
            t.client = self.admin();
        }
        let template_for = |m: Method| -> usize {
            let want = if matches!(m, Method::Pgretain | Method::Floor) {
                Method::Pgretain
            } else {
                Method::Delete
            };
            templates
                .iter()
                .position(|d| d.method == want)
                .expect("template")
        };

        for &sc in scenarios {
            for &m in methods {
                if sc == Scenario::Mixed && m.drops_only() {
                    continue; // no per-tenant retention, no holds
                }
                let name = format!("{}_{}_{}", m.letter(), sc.name(), rows);
                let mut db = match m {
                    Method::Partman => self.make_partman_db(rows),
                    _ => self.clone_db(&templates[template_for(m)], &name, m),
                };
                if sc == Scenario::Mixed {
                    self.configure_mixed(&mut db);
                }
                self.measure(&mut db, rows, sc, Step::CatchUp, &t0, keep);
                if sc == Scenario::Uniform && !m.drops_only() {
                    self.generate(&mut db.client, &t0, &t1, per_day, rows);
                    q(&mut db.client, "VACUUM (PARALLEL 0) app.events");
                    self.measure(&mut db, rows, sc, Step::Steady, &t1, keep);

                    self.generate(&mut db.client, &t1, &t2, aligned_rows, rows + per_day);
                    q(&mut db.client, "VACUUM (PARALLEL 0) app.events");
                    self.measure(&mut db, rows, sc, Step::Aligned, &t2, keep);

                    if m == Method::Pgretain {
                        self.deploy(&db, &self.policy_yaml(self.cfg.new_keep_days, false));
                    }
                    let nk = self.cfg.new_keep_days;
                    self.measure(&mut db, rows, sc, Step::Change, &t2, nk);
                }
                self.drop_db(db);

                // The same backlog enforced at a partition bound: no
                // boundary partition to handle row by row.
                if sc == Scenario::Uniform
                    && matches!(m, Method::Pgretain | Method::Delete)
                    && self.t0_bound != t0
                {
                    let name = format!("{}_{}_bound_{}", m.letter(), sc.name(), rows);
                    let mut db = self.clone_db(&templates[template_for(m)], &name, m);
                    let tb = self.t0_bound.clone();
                    self.measure(&mut db, rows, sc, Step::CatchUpBound, &tb, keep);
                    self.drop_db(db);
                }
            }
        }
        for t in templates {
            self.drop_db(t);
        }
    }
}

// ---------------------------------------------------------------------------
// Cluster tuning
// ---------------------------------------------------------------------------

/// The harness's clusters are tuned for tests (fsync, synchronous_commit and
/// full_page_writes off, 32 MB of shared_buffers). A benchmark of WAL and
/// latency needs production defaults: they are restored here, shared_buffers
/// raised, autovacuum turned off (so it never runs in the middle of a
/// measurement; the VACUUM each method leaves behind is measured instead),
/// and the server restarted.
fn tune_and_restart(cluster: &Cluster, shared_buffers: &str) {
    let mut c = cluster.client("postgres");
    for (k, v) in [
        ("shared_buffers", shared_buffers),
        ("fsync", "on"),
        ("synchronous_commit", "on"),
        ("full_page_writes", "on"),
        ("autovacuum", "off"),
        ("max_wal_size", "2GB"),
        ("checkpoint_timeout", "1h"),
        ("max_locks_per_transaction", "256"),
        ("work_mem", "16MB"),
        ("maintenance_work_mem", "256MB"),
    ] {
        q(&mut c, &format!("ALTER SYSTEM SET {k} = '{v}'"));
    }
    drop(c);
    let pg_ctl = Path::new(common::PG_BIN_DIR).join("pg_ctl");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
        c
    } else {
        Command::new(&pg_ctl)
    };
    cmd.arg("-D")
        .arg(cluster.data_dir())
        .arg("-l")
        .arg(cluster.log_file())
        .args(["-w", "-t", "120", "-m", "fast", "restart"])
        .current_dir(cluster.socket_dir())
        .stdin(Stdio::null());
    for var in [
        "PGDATA",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGOPTIONS",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("running pg_ctl restart");
    assert!(
        out.status.success(),
        "pg_ctl restart failed: {}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout),
        cluster.log_tail(30)
    );
    let mut c = cluster.client("postgres");
    let sb: String = c.query_one("SHOW shared_buffers", &[]).unwrap().get(0);
    let fpw: String = c.query_one("SHOW full_page_writes", &[]).unwrap().get(0);
    assert!(
        fpw == "on",
        "the restart did not take the benchmark settings (full_page_writes = {fpw}, shared_buffers = {sb})"
    );
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

fn thousands(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn human_rows(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        thousands(n as i64)
    }
}

fn bytes(n: i64) -> String {
    let n = n as f64;
    if n >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", n / (1024.0 * 1024.0 * 1024.0))
    } else if n >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    } else if n >= 1024.0 {
        format!("{:.0} KiB", n / 1024.0)
    } else {
        format!("{n:.0} B")
    }
}

fn secs(s: f64) -> String {
    if s < 0.01 {
        format!("{:.1} ms", s * 1e3)
    } else if s < 10.0 {
        format!("{s:.3} s")
    } else {
        format!("{s:.1} s")
    }
}

fn ratio(x: f64) -> String {
    if !x.is_finite() {
        "n/a".to_string()
    } else if x >= 10.0 {
        format!("{x:.0}×")
    } else if x >= 0.1 {
        format!("{x:.2}×")
    } else {
        format!("{x:.3}×")
    }
}

/// `x` = their time / our time, as "N× faster" or "N× slower".
fn faster(x: f64) -> String {
    if !x.is_finite() {
        "n/a".to_string()
    } else if x >= 1.0 {
        format!("{} faster", ratio(x))
    } else {
        format!("{} slower", ratio(1.0 / x))
    }
}

fn ms(x: f64) -> String {
    if x.is_nan() {
        "–".to_string()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

impl Bench {
    fn find(&self, rows: u64, sc: Scenario, step: Step, m: Method) -> Option<&Measurement> {
        self.results
            .iter()
            .find(|r| r.rows == rows && r.scenario == sc && r.step == step && r.method == m)
    }

    fn markdown_table(&self) -> String {
        let mut s = String::new();
        s.push_str(
            "| rows | scenario | moment | method | rows removed | time | time ÷ pgretain's | WAL | WAL ÷ pgretain's \
             | size after | dead tuples | exact | insert p50 / p99 idle (ms) | insert p50 / p99 / max during (ms) \
             | insert errors | VACUUM after |\n",
        );
        s.push_str("|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|\n");
        for r in &self.results {
            let base = self.find(r.rows, r.scenario, r.step, Method::Pgretain);
            let (tv, wv) = match base {
                Some(b) if r.method != Method::Pgretain => (
                    ratio(r.secs / b.secs),
                    ratio(r.wal as f64 / b.wal.max(1) as f64),
                ),
                _ => ("–".to_string(), "–".to_string()),
            };
            let exact = if r.exact() {
                "yes".to_string()
            } else {
                let mut parts = Vec::new();
                if r.expired_left > 0 {
                    parts.push(format!("{} expired rows left", thousands(r.expired_left)));
                }
                if r.wrongly_removed > 0 {
                    parts.push(format!(
                        "{} unexpired rows removed",
                        thousands(r.wrongly_removed)
                    ));
                }
                format!("**no**: {}", parts.join(", "))
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} / {} | {} | {} |",
                human_rows(r.rows),
                r.scenario.name(),
                r.step.label(&self.cfg),
                r.method.name(),
                thousands(r.removed),
                secs(r.secs),
                tv,
                bytes(r.wal),
                wv,
                bytes(r.size_after),
                thousands(r.dead),
                exact,
                ms(r.idle.p50_ms),
                ms(r.idle.p99_ms),
                ms(r.during.p50_ms),
                ms(r.during.p99_ms),
                ms(r.during.max_ms),
                r.during.errors,
                if r.vacuum_rels == 0 {
                    "nothing to do".to_string()
                } else {
                    secs(r.vacuum_secs)
                },
            );
        }
        s
    }

    /// The issue's targets, each met or missed, with the measured value.
    fn targets(&self) -> String {
        let mut s = String::new();
        let rows = self.cfg.rows;
        let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
        let mut line = |text: String| {
            s.push_str("- ");
            s.push_str(&text);
            s.push('\n');
        };
        let sizes: Vec<u64> = std::iter::once(rows).chain(self.cfg.growth_rows).collect();
        for (&n, step) in sizes
            .iter()
            .flat_map(|n| [(n, Step::CatchUp), (n, Step::CatchUpBound)])
        {
            let (a, b) = (
                self.find(n, Scenario::Uniform, step, Method::Pgretain),
                self.find(n, Scenario::Uniform, step, Method::Delete),
            );
            if let (Some(a), Some(b)) = (a, b) {
                let tr = b.secs / a.secs;
                let wr = a.wal as f64 / b.wal.max(1) as f64;
                line(format!(
                    "{} rows, uniform {}, pgretain vs one DELETE: {} (target ≥ 100× faster: {}); \
                     {:.2}% of its WAL, {} vs {} (target ≤ 1%: {})",
                    human_rows(n),
                    step.label(&self.cfg),
                    faster(tr),
                    verdict(tr >= 100.0),
                    wr * 100.0,
                    bytes(a.wal),
                    bytes(b.wal),
                    verdict(wr <= 0.01)
                ));
            }
        }
        for &n in &sizes {
            if let (Some(a), Some(e), Some(b)) = (
                self.find(n, Scenario::Uniform, Step::CatchUp, Method::Pgretain),
                self.find(n, Scenario::Uniform, Step::CatchUp, Method::Floor),
                self.find(n, Scenario::Uniform, Step::CatchUp, Method::Delete),
            ) {
                line(format!(
                    "{} rows, uniform catch-up, the floor of any partition-dropping method (a bare \
                     `DROP TABLE; COMMIT` per expired partition, nothing else): {} — one DELETE takes {} \
                     ({} of the floor), pgretain {} ({} of the floor)",
                    human_rows(n),
                    secs(e.secs),
                    secs(b.secs),
                    ratio(b.secs / e.secs),
                    secs(a.secs),
                    ratio(a.secs / e.secs)
                ));
            }
        }
        if let Some(g) = self.cfg.growth_rows {
            for step in [Step::CatchUp, Step::CatchUpBound] {
                if let (Some(a1), Some(a10)) = (
                    self.find(rows, Scenario::Uniform, step, Method::Pgretain),
                    self.find(g, Scenario::Uniform, step, Method::Pgretain),
                ) {
                    let gr = a10.secs / a1.secs;
                    line(format!(
                        "pgretain {} time from {} to {} rows: {} → {}, {} (target ≤ 1.2×: {})",
                        step.label(&self.cfg),
                        human_rows(rows),
                        human_rows(g),
                        secs(a1.secs),
                        secs(a10.secs),
                        ratio(gr),
                        verdict(gr <= 1.2)
                    ));
                }
            }
        } else {
            line("growth from 1M to 10M rows: not measured in this run (use --growth-rows)".into());
        }
        if let (Some(a), Some(c)) = (
            self.find(rows, Scenario::Mixed, Step::CatchUp, Method::Pgretain),
            self.find(rows, Scenario::Mixed, Step::CatchUp, Method::Batched),
        ) {
            let tr = c.secs / a.secs;
            line(format!(
                "{} rows, mixed catch-up, pgretain vs batched DELETE: {} (target ≥ 10× faster: {}); \
                 exact guarantee: {} (same rows left as every other method: {})",
                human_rows(rows),
                faster(tr),
                verdict(tr >= 10.0),
                if a.exact() { "yes" } else { "**no**" },
                if a.rows_left == c.rows_left { "yes" } else { "**no**" },
            ));
        }
        for (&n, step) in sizes
            .iter()
            .flat_map(|n| [(n, Step::CatchUp), (n, Step::CatchUpBound)])
        {
            if let Some(a) = self.find(n, Scenario::Uniform, step, Method::Pgretain) {
                let r = a.during.p99_ms / a.idle.p99_ms;
                line(format!(
                    "{} rows, insert p99 during pgretain's uniform {} run: {} ms vs {} ms idle = {} \
                     (target ≤ 1.5×: {}), {} errors in {} inserts (target 0: {})",
                    human_rows(n),
                    step.label(&self.cfg),
                    ms(a.during.p99_ms),
                    ms(a.idle.p99_ms),
                    ratio(r),
                    verdict(r <= 1.5),
                    a.during.errors,
                    a.during.n,
                    verdict(a.during.errors == 0)
                ));
            }
        }
        for &n in &sizes {
            for step in [Step::Steady, Step::Aligned, Step::Change] {
                if let (Some(a), Some(b)) = (
                    self.find(n, Scenario::Uniform, step, Method::Pgretain),
                    self.find(n, Scenario::Uniform, step, Method::Delete),
                ) {
                    let tr = b.secs / a.secs;
                    let wr = a.wal as f64 / b.wal.max(1) as f64;
                    let target = if step == Step::Change {
                        "(no target)".to_string()
                    } else {
                        format!("(target ≥ 20× faster: {})", verdict(tr >= 20.0))
                    };
                    line(format!(
                        "{} rows, {}: pgretain {} vs DELETE {}: {} {target}; \
                         pgretain's WAL is {:.0}% of DELETE's ({} vs {})",
                        human_rows(n),
                        step.label(&self.cfg),
                        secs(a.secs),
                        secs(b.secs),
                        faster(tr),
                        wr * 100.0,
                        bytes(a.wal),
                        bytes(b.wal)
                    ));
                }
            }
        }
        s
    }

    /// Every exact method must leave the same rows in each (size, scenario, moment).
    fn check_same_rows(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for r in &self.results {
            if !r.method.exact() {
                continue;
            }
            for o in &self.results {
                if o.method.exact()
                    && (o.rows, o.scenario, o.step) == (r.rows, r.scenario, r.step)
                    && o.rows_left != r.rows_left
                {
                    problems.push(format!(
                        "{} {} {}: {} left {} rows, {} left {}",
                        human_rows(r.rows),
                        r.scenario.name(),
                        r.step.label(&self.cfg),
                        r.method.name(),
                        r.rows_left,
                        o.method.name(),
                        o.rows_left
                    ));
                }
            }
        }
        problems
    }

    /// A horizontal bar chart of the run times, log scale, one group per
    /// (size, scenario, moment), one bar per method.
    fn svg(&self) -> String {
        let label_w = 330.0;
        let chart_w = 470.0;
        let value_w = 90.0;
        let bar_h = 14.0;
        let gap = 4.0;
        let group_gap = 14.0;
        let top = 58.0;
        let mut groups: Vec<(u64, Scenario, Step)> = Vec::new();
        for r in &self.results {
            let k = (r.rows, r.scenario, r.step);
            if !groups.contains(&k) {
                groups.push(k);
            }
        }
        let min = self
            .results
            .iter()
            .map(|r| r.secs)
            .fold(f64::INFINITY, f64::min)
            .max(1e-4);
        let max = self
            .results
            .iter()
            .map(|r| r.secs)
            .fold(0.0, f64::max)
            .max(min * 10.0);
        let (lmin, lmax) = (min.log10().floor(), max.log10().ceil());
        let x = |v: f64| label_w + (v.max(1e-6).log10() - lmin) / (lmax - lmin) * chart_w;
        let n_bars = self.results.len() as f64;
        let height =
            top + n_bars * (bar_h + gap) + groups.len() as f64 * (group_gap + bar_h + gap) + 40.0;
        let width = label_w + chart_w + value_w + 10.0;
        let esc = |t: &str| {
            t.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(
            s,
            r##"<rect width="100%" height="100%" fill="#ffffff"/>
<text x="10" y="18" font-size="14" font-weight="bold">Time of one enforcement run (log scale; shorter is better)</text>"##
        );
        let mut lx = 10.0;
        for m in Method::ALL {
            if self.results.iter().any(|r| r.method == m) {
                let _ = writeln!(
                    s,
                    r#"<rect x="{lx}" y="28" width="12" height="12" fill="{}"/><text x="{}" y="38">{}</text>"#,
                    m.color(),
                    lx + 16.0,
                    esc(m.name())
                );
                lx += 40.0 + 7.0 * m.name().len() as f64;
            }
        }
        let axis_bottom = height - 30.0;
        let mut e = lmin;
        while e <= lmax + 1e-9 {
            let v = 10f64.powf(e);
            let gx = x(v);
            let k = e.round() as i32;
            let label = if k < 0 {
                format!("{} ms", 10u64.pow((k + 3).max(0) as u32))
            } else {
                format!("{} s", 10u64.pow(k as u32))
            };
            let _ = writeln!(
                s,
                r##"<line x1="{gx:.1}" y1="{top}" x2="{gx:.1}" y2="{axis_bottom:.1}" stroke="#dddddd"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle" fill="#555555">{label}</text>"##,
                axis_bottom + 14.0
            );
            e += 1.0;
        }
        let mut y = top;
        for (rows, sc, step) in &groups {
            let title = format!(
                "{} rows · {} · {}",
                human_rows(*rows),
                sc.name(),
                step.label(&self.cfg)
            );
            let _ = writeln!(
                s,
                r#"<text x="10" y="{:.1}" font-weight="bold">{}</text>"#,
                y + bar_h - 3.0,
                esc(&title)
            );
            y += bar_h + gap;
            for r in self
                .results
                .iter()
                .filter(|r| (r.rows, r.scenario, r.step) == (*rows, *sc, *step))
            {
                let w = (x(r.secs) - label_w).max(1.0);
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{label_w}" y="{y:.1}" width="{w:.1}" height="{bar_h}" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                    label_w - 6.0,
                    y + bar_h - 3.0,
                    esc(r.method.name()),
                    r.method.color(),
                    label_w + w + 4.0,
                    y + bar_h - 3.0,
                    esc(&secs(r.secs))
                );
                y += bar_h + gap;
            }
            y += group_gap;
        }
        s.push_str("</svg>\n");
        s
    }
}

// ---------------------------------------------------------------------------

fn main() {
    let cfg = Config::from_env_and_args();
    let started = Instant::now();
    eprintln!("retention bench: {cfg:?}");

    let cluster = Cluster::start();
    tune_and_restart(&cluster, &cfg.shared_buffers);
    let mut admin = cluster.client("postgres");
    let r = admin
        .query_one(
            "SELECT t0::text, (t0 + interval '1 day')::text,
                    (date_trunc('day', t0 + interval '1 day') + interval '1 day')::text,
                    extract(epoch FROM (date_trunc('day', t0 + interval '1 day') + interval '1 day')
                                       - (t0 + interval '1 day'))::float8 / 3600,
                    date_trunc('day', t0)::text
               FROM (SELECT CASE WHEN date_trunc('day', now()) + $1::text::interval <= now()
                                 THEN date_trunc('day', now()) + $1::text::interval
                                 ELSE date_trunc('day', now()) - interval '1 day' + $1::text::interval
                            END AS t0) s",
            &[&cfg.run_at],
        )
        .unwrap();
    let mut versions = Vec::new();
    for (what, sql) in [
        ("PostgreSQL", "SELECT version()"),
        ("pg_cron", "SELECT default_version FROM pg_available_extensions WHERE name = 'pg_cron'"),
        ("pg_partman", "SELECT coalesce((SELECT default_version FROM pg_available_extensions WHERE name = 'pg_partman'), 'not installed')"),
        ("shared_buffers", "SHOW shared_buffers"),
    ] {
        let v: String = admin.query_one(sql, &[]).unwrap().get(0);
        versions.push((what.to_string(), v));
    }
    drop(admin);
    let mut bench = Bench {
        t0: r.get(0),
        t1: r.get(1),
        t2: r.get(2),
        t1_t2_hours: r.get(3),
        t0_bound: r.get(4),
        cfg: cfg.clone(),
        cluster,
        started,
        results: Vec::new(),
        versions,
    };
    bench.log(&format!(
        "T0 = {}, T1 = {}, T2 = {}; {:?}",
        bench.t0, bench.t1, bench.t2, bench.versions
    ));

    let mut methods = cfg.methods.clone();
    if methods.contains(&Method::Partman)
        && bench
            .versions
            .iter()
            .any(|(k, v)| k == "pg_partman" && v == "not installed")
    {
        bench.log(
            "pg_partman is not installed (apt-get install postgresql-15-partman): skipping (d)",
        );
        methods.retain(|m| *m != Method::Partman);
    }
    bench.run_size(cfg.rows, &cfg.scenarios, &methods);
    if let Some(g) = cfg.growth_rows {
        let mut gm = cfg.growth_methods.clone();
        // Without pg_partman installed, (d) is skipped at every size.
        gm.retain(|m| *m != Method::Partman || methods.contains(m));
        bench.run_size(g, &[Scenario::Uniform], &gm);
    }

    let total = started.elapsed();
    bench
        .results
        .sort_by_key(|r| (r.rows, r.scenario as u8, r.step as u8, r.method as u8));
    let svg = bench.svg();
    if let Some(parent) = cfg.svg.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&cfg.svg, svg).unwrap_or_else(|e| panic!("writing {}: {e}", cfg.svg.display()));

    let nproc = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    println!("\n## Results\n");
    println!(
        "{} rows over {} days, {} tenants, retention {} days (→ {} days for the policy change); \
         T0 = {}; insert load {}/s; machine: {nproc} CPUs, {mem}; load average at the end: {}",
        thousands(cfg.rows as i64),
        cfg.days,
        cfg.tenants,
        cfg.keep_days,
        cfg.new_keep_days,
        bench.t0,
        cfg.rate,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (k, v) in &bench.versions {
        println!("- {k}: {v}");
    }
    println!();
    print!("{}", bench.markdown_table());
    println!("\n### Targets\n");
    print!("{}", bench.targets());
    let problems = bench.check_same_rows();
    println!(
        "\nSame rows left by every exact method in every scenario and moment: {}",
        if problems.is_empty() { "yes" } else { "**NO**" }
    );
    println!("\nChart: {}", cfg.svg.display());
    println!("Total bench time: {:.1} s", total.as_secs_f64());
    assert!(problems.is_empty(), "methods disagree: {problems:#?}");
}
