//! Benchmark: pgretain's enforcement against the alternatives a DBA would
//! otherwise use, on identical data.
//!
//! ```text
//! cargo bench --bench retention                       # quick: 200k rows
//! cargo bench --bench retention -- --rows 1000000 --growth-rows 10000000 \
//!     --svg docs/benchmarks.svg                       # what docs/benchmarks.md reports
//! ```
//!
//! Every option is `--name value` or `--name=value` after `--`, or the
//! environment variable `PGRETAIN_BENCH_<NAME>` (upper case, `-` as `_`);
//! `--help` lists them (`config`, parsed by clap).
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
//! The operator commands `status`, `verify` and `plan` are timed on
//! pgretain's database before its catch-up run (the whole backlog overdue)
//! and after it (`ops`; `--ops-only` skips everything else).
//!
//! For each run: wall time, WAL written (`pg_current_wal_lsn()` before and
//! after, minus the concurrent insert load's own WAL), table + index size and
//! dead tuples afterwards, rows left checked against an independent
//! reference predicate, the `VACUUM` the run leaves behind, and the latency
//! of a fixed-rate single-row insert load during the run vs. just before it.

//!
//! The modules: `config` (the options), `setup` (the databases and their
//! rows), `methods` (running and measuring each method), `measure` (one
//! measurement and the insert load), `db` (SQL helpers, cluster tuning),
//! `output` (tables, targets, the chart).

mod citus;
#[path = "../../tests/common/mod.rs"]
mod common;
mod config;
mod db;
mod erase;
mod measure;
mod methods;
mod ops;
mod output;
mod setup;

use std::thread;
use std::time::Instant;

use pgretain::words::thousands;

use common::Cluster;
use config::{Config, Method, Scenario};
use db::tune_and_restart;
use setup::Bench;

fn main() {
    let cfg = Config::parse_checked();
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
        ops: Vec::new(),
        imported_live: Vec::new(),
        erase: Vec::new(),
        archived_left: Vec::new(),
        versions,
    };
    bench.log(&format!(
        "T0 = {}, T1 = {}, T2 = {}; {:?}",
        bench.t0, bench.t1, bench.t2, bench.versions
    ));

    if cfg.citus {
        let results = bench.run_citus(cfg.rows);
        println!("\n## Citus: one catch-up on a coordinator and two workers against one server\n");
        println!(
            "{} rows over {} days, {} tenants, retention {} days (mixed: 5% of tenants {} days); T0 = {}; the three nodes share this machine",
            thousands(cfg.rows as i64),
            cfg.days,
            cfg.tenants,
            cfg.keep_days,
            cfg.tenant_keep_days,
            bench.t0
        );
        for (k, v) in &bench.versions {
            println!("- {k}: {v}");
        }
        println!();
        print!("{}", citus::table(&results));
        println!("Total bench time: {:.1} s", started.elapsed().as_secs_f64());
        return;
    }
    let mut methods = cfg.methods.clone();
    if cfg.ops_only {
        methods = vec![Method::Pgretain];
    }
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
        let mut gm = if cfg.ops_only {
            vec![Method::Pgretain]
        } else {
            cfg.growth_methods.clone()
        };
        // Without pg_partman installed, (d) is skipped at every size.
        gm.retain(|m| *m != Method::Partman || methods.contains(m));
        bench.run_size(g, &[Scenario::Uniform], &gm);
    }

    let total = started.elapsed();
    bench
        .results
        .sort_by_key(|r| (r.rows, r.scenario as u8, r.step as u8, r.method as u8));
    let svg_path = cfg.svg();
    // (--ops-only measures no run: no chart.)
    if !bench.results.is_empty() {
        let svg = bench.svg();
        if let Some(parent) = svg_path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        std::fs::write(&svg_path, svg)
            .unwrap_or_else(|e| panic!("writing {}: {e}", svg_path.display()));
    }

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
    if !bench.results.is_empty() {
        print!("{}", bench.markdown_table());
    }
    if !bench.ops.is_empty() {
        println!("\n### Operator commands\n");
        print!("{}", bench.ops_table());
    }
    print!("{}", bench.erase_table());
    println!("\n### Targets\n");
    print!("{}", bench.targets());
    print!("{}", bench.ops_targets());
    print!("{}", bench.erase_targets());
    let problems = bench.check_same_rows();
    if !bench.results.is_empty() {
        println!(
            "\nSame rows left by every exact method in every scenario and moment: {}",
            if problems.is_empty() { "yes" } else { "**NO**" }
        );
    }
    if !bench.results.is_empty() {
        println!("\nChart: {}", svg_path.display());
    }
    println!("Total bench time: {:.1} s", total.as_secs_f64());
    assert!(problems.is_empty(), "methods disagree: {problems:#?}");
}
