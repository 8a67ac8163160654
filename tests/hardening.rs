//! Hardening (issue "harden under load, faults and hostile input"): the
//! enforcement procedure and `apply` against a real PostgreSQL 15 with
//! pg_cron, when a run is killed, when a partition is locked by a long
//! transaction, when deploys race each other or a run, under insert load,
//! and with hostile values in the data.
//!
//! Every test has its own cluster. They run one at a time (a file-wide
//! lock), so the latencies one measures are not another's load.
//!
//! Slow runs: the dataset's `batch_pages` is set to 10 and a statement
//! trigger on the default partition sleeps 20 ms per DELETE, so a run over a
//! large default partition takes seconds whatever the machine's speed and
//! there is always a "mid-run" to act in. Figures are printed with
//! `--nocapture`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Barrier, Mutex, MutexGuard};
use std::thread::{self, Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use common::deploy::Deployed;
use common::wait_for;
use pgretain::cmd::apply::{apply, ApplyOptions, ApplyReport};
use pgretain::render::names::HISTORY_TABLE;
use postgres::types::{FromSqlOwned, ToSql};
use postgres::Client;

static SERIAL: Mutex<()> = Mutex::new(());

/// The file-wide lock: one test at a time (a failed test poisons nothing).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `apply`, returning its result instead of panicking: the concurrency
/// tests check each deploy's outcome themselves.
fn try_apply(d: &Deployed) -> Result<ApplyReport, pgretain::db::DbError> {
    apply(&ApplyOptions {
        database_url: Some(d.url.clone()),
        generated_dir: d.generated.path().to_path_buf(),
        dry_run: false,
        cron_database: None,
    })
}

/// The single value of a query without parameters.
fn one<T: FromSqlOwned>(c: &mut Client, sql: &str) -> T {
    one_p(c, sql, &[])
}

fn one_p<T: FromSqlOwned>(c: &mut Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> T {
    c.query_one(sql, params)
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

/// The last enforcement run of `events` in the log.
#[derive(Debug)]
struct Run {
    id: i64,
    outcome: String,
    finished: bool,
    dropped: Vec<String>,
    skipped: Vec<String>,
    rows_deleted: i64,
    seconds: f64,
    detail: Option<String>,
}

fn run_by_id(c: &mut Client, id: Option<i64>) -> Run {
    let r = c
        .query_one(
            "SELECT id, outcome, finished_at IS NOT NULL, partitions_dropped, partitions_skipped,
                    rows_deleted,
                    extract(epoch FROM coalesce(finished_at, clock_timestamp()) - started_at)::float8,
                    detail
               FROM retention.run_log
              WHERE action = 'enforce' AND ($1::bigint IS NULL OR id = $1)
              ORDER BY id DESC LIMIT 1",
            &[&id],
        )
        .unwrap();
    Run {
        id: r.get(0),
        outcome: r.get(1),
        finished: r.get(2),
        dropped: r.get(3),
        skipped: r.get(4),
        rows_deleted: r.get(5),
        seconds: r.get(6),
        detail: r.get(7),
    }
}

fn last_run(c: &mut Client) -> Run {
    run_by_id(c, None)
}

const EVENTS: &str = r#"
version: 1
datasets:
  events:
    description: Test events.
    table: app.events
    columns:
      id: bigint generated always as identity
      label: text not null
      at: timestamptz not null
    time: at
    keep: 10 days
    partition: day
"#;

/// `n` rows in the default partition, alternately expired (400 days old)
/// and kept (400 days ahead), so every batch both deletes and keeps rows;
/// batches of 10 pages, each slowed down by 20 ms (see the module comment).
/// Plus 2000 kept rows within the last 9 days and 2000 expired rows 12 to 36
/// days old (whole partitions to drop). No row's deadline is within a day of
/// now, so "kept" and "expired" do not depend on when exactly a run starts.
fn slow_setup(c: &mut Client, n: i64) {
    c.batch_execute(&format!(
        "UPDATE retention.dataset SET batch_pages = 10 WHERE name = 'events';
         INSERT INTO app.events (label, at)
           SELECT CASE WHEN g % 2 = 0 THEN 'expired' ELSE 'kept' END,
                  CASE WHEN g % 2 = 0 THEN now() - interval '400 days' - g * interval '1 second'
                       ELSE now() + interval '400 days' + g * interval '1 second' END
             FROM generate_series(1, {n}) AS g;
         INSERT INTO app.events (label, at)
           SELECT 'kept', now() - interval '1 hour' - (g % 9) * interval '1 day' FROM generate_series(1, 2000) AS g;
         INSERT INTO app.events (label, at)
           SELECT 'expired', now() - interval '12 days' - (g % 25) * interval '1 day' FROM generate_series(1, 2000) AS g;
         ANALYZE app.events;
         CREATE FUNCTION app.slow_batch() RETURNS trigger LANGUAGE plpgsql
           AS $$ BEGIN PERFORM pg_sleep(0.02); RETURN NULL; END $$;
         CREATE TRIGGER slow_batch AFTER DELETE ON app.events_default
           FOR EACH STATEMENT EXECUTE FUNCTION app.slow_batch();"
    ))
    .unwrap();
}

fn count_label(c: &mut Client, label: &str) -> i64 {
    one_p(
        c,
        "SELECT count(*) FROM app.events WHERE label = $1",
        &[&label],
    )
}

/// Rows whose deadline is at or after now.
fn count_within_retention(c: &mut Client) -> i64 {
    one(
        c,
        "SELECT count(*) FROM app.events WHERE at + interval '10 days' >= now()",
    )
}

fn expired_in_default(c: &mut Client) -> i64 {
    one(
        c,
        "SELECT count(*) FROM ONLY app.events_default WHERE label = 'expired'",
    )
}

type RunHandle<'scope> = ScopedJoinHandle<'scope, (Result<(), postgres::Error>, Duration)>;

/// Start `cmd` (a job command) on its own connection in a thread of `s`;
/// returns that connection's backend pid and the thread (its result and how
/// long the command took).
fn spawn_run<'scope, 'env>(
    s: &'scope Scope<'scope, 'env>,
    d: &'env Deployed,
    cmd: String,
) -> (i32, RunHandle<'scope>) {
    let (tx, rx) = mpsc::channel();
    let h = s.spawn(move || {
        let mut c = d.app();
        // A hang guard: the test fails rather than waits forever.
        c.batch_execute("SET statement_timeout = '120s'").unwrap();
        let pid: i32 = one(&mut c, "SELECT pg_backend_pid()");
        tx.send(pid).unwrap();
        let t = Instant::now();
        let r = c.batch_execute(&cmd);
        (r, t.elapsed())
    });
    let pid = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the run's connection did not start");
    (pid, h)
}

/// Wait until the run's backend shows in pg_stat_activity running the CALL,
/// and its first batches have committed (the default partition lost rows).
fn wait_until_deleting(c: &mut Client, pid: i32, expired_before: i64) {
    let started = wait_for(Duration::from_secs(60), || {
        one_p::<i64>(
            c,
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE 'CALL %'",
            &[&pid],
        ) == 1
            && expired_in_default(c) < expired_before
    });
    assert!(started, "the run did not start deleting within 60 s");
}

// ---------------------------------------------------------------------------
// 1. The enforcing backend is killed mid-run.
// ---------------------------------------------------------------------------

#[test]
fn killed_run_loses_nothing_and_the_next_run_finishes_the_work() {
    let _serial = serial();
    let d = Deployed::new(EVENTS);
    d.backfill_partitions("events", 40);
    let mut c = d.app();
    slow_setup(&mut c, 200_000);
    let kept_before = count_label(&mut c, "kept");
    let within_before = count_within_retention(&mut c);
    let expired_before = count_label(&mut c, "expired");
    let default_expired_before = expired_in_default(&mut c);
    assert_eq!(kept_before, within_before);
    assert_eq!(kept_before, 102_000);
    let partitions_before: Vec<String> = c
        .query(
            "SELECT partition::text FROM retention.partitions('events') ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    let cmd = d.job_command("events");
    let (victim, result) = thread::scope(|s| {
        let (pid, h) = spawn_run(s, &d, cmd.clone());
        wait_until_deleting(&mut c, pid, default_expired_before);
        thread::sleep(Duration::from_millis(300));
        assert!(
            !h.is_finished(),
            "the run finished before it could be killed"
        );
        let terminated: bool = one_p(
            &mut c,
            "SELECT pg_terminate_backend($1, $2)",
            &[&pid, &30_000i64],
        );
        assert!(terminated, "pg_terminate_backend did not end the run");
        (pid, h.join().unwrap())
    });
    let err = result.0.expect_err("the killed run returned success");
    eprintln!(
        "killed backend {victim} after {:?}: {}",
        result.1,
        err.as_db_error()
            .map(|e| e.message())
            .unwrap_or("connection closed")
    );

    // The run's log row: it started and never finished.
    let killed = last_run(&mut c);
    assert_eq!(killed.outcome, "running", "{killed:?}");
    assert!(!killed.finished);

    // Killed mid-way: some expired rows of the default partition are gone,
    // not all of them.
    let default_left = expired_in_default(&mut c);
    eprintln!(
        "expired rows in the default partition: {default_expired_before} before, {default_left} after the kill"
    );
    assert!(default_left > 0 && default_left < default_expired_before);

    // No row within retention was lost.
    assert_eq!(count_label(&mut c, "kept"), kept_before);
    assert_eq!(count_within_retention(&mut c), within_before);

    // The advisory lock went with the backend.
    let advisory: i64 = one(
        &mut c,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
    );
    assert_eq!(advisory, 0);

    // No partition half-dropped: every child is an attached, readable
    // table; the parent still has its default partition; no table of the
    // dataset is left detached; partitions within retention are all there.
    let children: Vec<(String, String, bool)> = c
        .query(
            "SELECT c.oid::regclass::text, c.relkind::text, pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'app.events'::regclass",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(children.iter().filter(|c| c.2).count(), 1, "{children:?}");
    for (name, kind, _) in &children {
        assert_eq!(kind, "r", "{name}");
        let _: i64 = one(&mut c, &format!("SELECT count(*) FROM {name}"));
    }
    let orphans: i64 = one(
        &mut c,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'app' AND c.relname LIKE 'events\\_%' AND c.relkind = 'r'
            AND NOT c.relispartition",
    );
    assert_eq!(orphans, 0);
    let live_partitions_lost: Vec<String> = partitions_before
        .iter()
        .filter(|p| !children.iter().any(|c| &c.0 == *p))
        .filter(|p| {
            one_p::<bool>(
                &mut c,
                "SELECT $1::text NOT LIKE 'app.events_p%'
                     OR to_date(right($1::text, 8), 'YYYYMMDD') >= (now() AT TIME ZONE 'UTC')::date - 11",
                &[p],
            )
        })
        .cloned()
        .collect();
    assert!(live_partitions_lost.is_empty(), "{live_partitions_lost:?}");

    // The next run completes the work.
    c.batch_execute(
        "DROP TRIGGER slow_batch ON app.events_default;
         UPDATE retention.dataset SET batch_pages = 1000 WHERE name = 'events'",
    )
    .unwrap();
    let t = Instant::now();
    d.run_job("events");
    let next = last_run(&mut c);
    eprintln!("next run: {next:?} in {:?}", t.elapsed());
    assert_eq!(next.outcome, "ok", "{next:?}");
    // The evidence names the partitions it dropped.
    assert_eq!(next.dropped.len(), 30, "{next:?}");
    assert!(
        next.dropped.iter().all(|p| p.starts_with("app.events_p")),
        "{next:?}"
    );
    assert_eq!(count_label(&mut c, "expired"), 0);
    let pending: i64 = one(&mut c, "SELECT count(*) FROM retention.expired_events");
    assert_eq!(pending, 0);
    assert_eq!(count_label(&mut c, "kept"), kept_before);
    assert_eq!(count_within_retention(&mut c), within_before);
    eprintln!(
        "rows: {expired_before} expired (removed over both runs), {kept_before} kept; partitions dropped by the next run: {}",
        next.dropped.len()
    );

    // The killed run's row stayed 'running' until the next run took the
    // lock: then it is closed as 'failed', saying what happened (its end
    // time is unknown and stays NULL).
    let stale = run_by_id(&mut c, Some(killed.id));
    eprintln!("the killed run's log row after the next run: {stale:?}");
    assert_eq!(stale.outcome, "failed", "{stale:?}");
    assert!(!stale.finished);
    let why = stale.detail.unwrap_or_default();
    assert!(
        why.contains("without logging its outcome") && why.contains(&format!("run {}", next.id)),
        "{why}"
    );
    assert_eq!(next.detail, None);
}

// ---------------------------------------------------------------------------
// 2. A long transaction holds a lock on a partition the run must drop.
// ---------------------------------------------------------------------------

/// Inserts one row into the parent every few ms until `stop`; returns
/// (inserted, failed, max latency).
fn insert_loop(d: &Deployed, stop: &AtomicBool, rows: &[(&str, &str)]) -> (i64, i64, Duration) {
    let mut c = d.app();
    c.batch_execute("SET statement_timeout = '60s'").unwrap();
    let (mut ok, mut failed, mut max) = (0i64, 0i64, Duration::ZERO);
    while !stop.load(Ordering::Relaxed) {
        for (label, at) in rows {
            let t = Instant::now();
            let r = c.execute(
                &format!("INSERT INTO app.events (label, at) VALUES ($1, {at})"),
                &[label],
            );
            max = max.max(t.elapsed());
            match r {
                Ok(_) => ok += 1,
                Err(e) => {
                    failed += 1;
                    eprintln!("insert of {label} failed: {e:?}");
                }
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    (ok, failed, max)
}

#[test]
fn a_locked_partition_is_skipped_after_lock_timeout_and_inserts_keep_flowing() {
    let _serial = serial();
    let d = Deployed::new(EVENTS);
    d.backfill_partitions("events", 40);
    let mut c = d.app();
    c.batch_execute(
        "UPDATE retention.dataset SET lock_timeout = '1s' WHERE name = 'events';
         INSERT INTO app.events (label, at)
           SELECT 'expired', now() - interval '12 days' - (g % 25) * interval '1 day' FROM generate_series(1, 2000) AS g;
         INSERT INTO app.events (label, at)
           SELECT 'kept', now() - interval '1 hour' - (g % 9) * interval '1 day' FROM generate_series(1, 2000) AS g;",
    )
    .unwrap();
    // The partition holding rows 20 days old: wholly expired, to be dropped.
    let part: String = one(
        &mut c,
        "SELECT partition::text FROM retention.partitions('events')
          WHERE lower_bound <= now() - interval '20 days' AND upper_bound > now() - interval '20 days'",
    );
    let mut holder = d.app();
    let mut long_tx = holder.transaction().unwrap();
    long_tx
        .batch_execute(&format!("SELECT 1 FROM {part} LIMIT 1"))
        .unwrap();

    let cmd = d.job_command("events");
    let stop = AtomicBool::new(false);
    let (run, lock_wait, inserts) = thread::scope(|s| {
        let inserter = s.spawn(|| insert_loop(&d, &stop, &[("load", "now()")]));
        // Let the inserter get going before the run starts.
        thread::sleep(Duration::from_millis(300));
        let (pid, h) = spawn_run(s, &d, cmd.clone());
        // Sample the run's lock waits until it ends.
        let mut waiting = Duration::ZERO;
        let mut last = Instant::now();
        while !h.is_finished() {
            let w: bool = one_p(
                &mut c,
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock')",
                &[&pid],
            );
            let now = Instant::now();
            if w {
                waiting += now - last;
            }
            last = now;
            thread::sleep(Duration::from_millis(10));
        }
        let run = h.join().unwrap();
        thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        (run, waiting, inserter.join().unwrap())
    });
    run.0.unwrap_or_else(|e| panic!("{cmd}: {e:?}"));
    let logged = last_run(&mut c);
    eprintln!(
        "run with {part} locked: {:?} (client saw {:?}); sampled lock wait {lock_wait:?}; inserts: {} ok, {} failed, max latency {:?}",
        logged, run.1, inserts.0, inserts.1, inserts.2
    );
    assert_eq!(logged.outcome, "partial", "{logged:?}");
    assert_eq!(logged.skipped, vec![part.clone()]);
    assert_eq!(logged.dropped.len(), 29, "{logged:?}");
    // It waited about lock_timeout (1 s) and finished in bounded time.
    assert!(lock_wait < Duration::from_secs(4), "{lock_wait:?}");
    assert!(run.1 < Duration::from_secs(30), "{:?}", run.1);
    assert!(logged.seconds < 30.0, "{logged:?}");
    // Inserts into the parent were never blocked much longer than the lock
    // timeout, and none failed.
    assert_eq!(inserts.1, 0);
    assert!(inserts.0 > 0);
    assert!(inserts.2 < Duration::from_secs(4), "{:?}", inserts.2);
    // The partition and its rows are still there.
    let left: i64 = one(&mut c, &format!("SELECT count(*) FROM {part}"));
    assert!(left > 0);

    // Once the long transaction ends, the next run drops it.
    long_tx.rollback().unwrap();
    d.run_job("events");
    let next = last_run(&mut c);
    assert_eq!(next.outcome, "ok", "{next:?}");
    assert_eq!(next.dropped, vec![part.clone()]);
    let gone: bool = one_p(&mut c, "SELECT to_regclass($1) IS NULL", &[&part]);
    assert!(gone);
    assert_eq!(count_label(&mut c, "expired"), 0);
    assert_eq!(count_label(&mut c, "kept"), 2000);
}

/// One run under a long transaction that reads the whole table, with an
/// insert load: returns the run's log row, how long the CALL took and
/// (inserted, failed, max insert latency).
fn run_under_long_reader(d: &Deployed) -> (Run, Duration, (i64, i64, Duration)) {
    let mut holder = d.app();
    let mut long_tx = holder.transaction().unwrap();
    let _: i64 = long_tx
        .query_one("SELECT count(*) FROM app.events", &[])
        .unwrap()
        .get(0);
    let cmd = d.job_command("events");
    let stop = AtomicBool::new(false);
    let (run, inserts) = thread::scope(|s| {
        let inserter = s.spawn(|| insert_loop(d, &stop, &[("load", "now()")]));
        thread::sleep(Duration::from_millis(300));
        let (_pid, h) = spawn_run(s, d, cmd.clone());
        let run = h.join().unwrap();
        thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        (run, inserter.join().unwrap())
    });
    long_tx.rollback().unwrap();
    run.0.unwrap_or_else(|e| panic!("{cmd}: {e:?}"));
    (last_run(&mut d.app()), run.1, inserts)
}

/// A long transaction reading the whole table (a report, pg_dump) holds a
/// lock on the parent and every partition. Creating a partition (premake)
/// and dropping one both need ACCESS EXCLUSIVE on the parent, and inserts
/// queue behind each such wait. The run waits at most lock_timeout once,
/// then leaves every drop for the next run instead of stalling inserts
/// again for each.
#[test]
fn a_long_reader_of_the_table_stalls_the_run_and_inserts_once_at_most() {
    let _serial = serial();
    let d = Deployed::new(EVENTS);
    d.backfill_partitions("events", 14);
    let mut c = d.app();
    c.batch_execute(
        "UPDATE retention.dataset SET lock_timeout = '1s' WHERE name = 'events';
         INSERT INTO app.events (label, at)
           SELECT 'expired', now() - interval '12 days' - (g % 3) * interval '1 day' FROM generate_series(1, 300) AS g;
         INSERT INTO app.events (label, at)
           SELECT 'kept', now() - interval '1 hour' - (g % 9) * interval '1 day' FROM generate_series(1, 300) AS g;",
    )
    .unwrap();
    let droppable: i64 = one(
        &mut c,
        "SELECT count(*) FROM retention.partitions('events') WHERE upper_bound + interval '10 days' <= now()",
    );
    assert!(droppable >= 3);

    // a) Nothing to premake: the first drop waits lock_timeout on the table.
    let (run, took, inserts) = run_under_long_reader(&d);
    eprintln!(
        "long reader, drops only: {run:?} (client saw {took:?}); inserts: {} ok, {} failed, max latency {:?}",
        inserts.0, inserts.1, inserts.2
    );
    assert_eq!(run.outcome, "partial", "{run:?}");
    assert_eq!(run.skipped.len() as i64, droppable, "{run:?}");
    assert!(run.dropped.is_empty(), "{run:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(inserts.1, 0);
    assert!(inserts.2 < Duration::from_secs(4), "{:?}", inserts.2);

    // b) A partition to premake: premake waits lock_timeout, says why, and
    //    the drops are not even tried.
    let furthest: String = one(
        &mut c,
        "SELECT partition::text FROM retention.partitions('events')
          WHERE lower_bound IS NOT NULL ORDER BY lower_bound DESC LIMIT 1",
    );
    c.batch_execute(&format!("DROP TABLE {furthest}")).unwrap();
    let (run, took, inserts) = run_under_long_reader(&d);
    eprintln!(
        "long reader, premake and drops: {run:?} (client saw {took:?}); inserts: {} ok, {} failed, max latency {:?}",
        inserts.0, inserts.1, inserts.2
    );
    let detail = run.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("premake failed") && detail.contains("lock timeout"),
        "{run:?}"
    );
    assert_eq!(run.outcome, "partial", "{run:?}");
    assert_eq!(run.skipped.len() as i64, droppable, "{run:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(inserts.1, 0);
    assert!(inserts.2 < Duration::from_secs(4), "{:?}", inserts.2);

    // Once the reader is gone, the next run makes the partition and drops
    // the expired ones.
    d.run_job("events");
    let next = last_run(&mut c);
    assert_eq!(next.outcome, "ok", "{next:?}");
    assert_eq!(next.dropped.len() as i64, droppable, "{next:?}");
    let made: bool = one_p(&mut c, "SELECT to_regclass($1) IS NOT NULL", &[&furthest]);
    assert!(made);
    assert_eq!(count_label(&mut c, "expired"), 0);
    assert_eq!(count_label(&mut c, "kept"), 300);
}

// ---------------------------------------------------------------------------
// 3. Deploys racing each other, and a deploy racing a run.
// ---------------------------------------------------------------------------

#[test]
fn concurrent_applies_and_an_apply_racing_a_run() {
    let _serial = serial();
    let d = Deployed::compiled(EVENTS);

    // Three deploys of a fresh database at once.
    let barrier = Barrier::new(3);
    let reports: Vec<Result<ApplyReport, pgretain::db::DbError>> = thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    try_apply(&d)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let applied: Vec<Vec<String>> = reports
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|e| panic!("a concurrent apply failed: {e}"))
                .migrations
        })
        .collect();
    eprintln!("concurrent applies applied: {applied:?}");
    assert_eq!(applied.iter().filter(|m| !m.is_empty()).count(), 1);
    let mut c = d.app();
    let history: Vec<(i32, i64)> = c
        .query(
            &format!(
                "SELECT version, count(*) FROM {HISTORY_TABLE} GROUP BY version ORDER BY version"
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(history, vec![(1, 1)]);
    let mut cron = d.cluster.client("postgres");
    let jobs: Vec<(String, i64)> = cron
        .query(
            "SELECT jobname, count(*) FROM cron.job GROUP BY jobname ORDER BY jobname",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        jobs,
        vec![
            ("pgretain:app:events".to_string(), 1),
            ("pgretain:trim-job-run-details".to_string(), 1)
        ]
    );

    // A deploy shortening keep (V2) while a run is in progress.
    d.backfill_partitions("events", 40);
    slow_setup(&mut c, 100_000);
    c.batch_execute(
        "INSERT INTO app.events (label, at) VALUES
           ('7 days', now() - interval '7 days'), ('3 days', now() - interval '3 days')",
    )
    .unwrap();
    let default_expired_before = expired_in_default(&mut c);
    d.compile(&EVENTS.replace("keep: 10 days", "keep: 5 days"));
    let cmd = d.job_command("events");
    let (run, report, apply_took, run_running_after_apply) = thread::scope(|s| {
        let (pid, h) = spawn_run(s, &d, cmd.clone());
        wait_until_deleting(&mut c, pid, default_expired_before);
        let t = Instant::now();
        let report = try_apply(&d);
        let took = t.elapsed();
        let still = !h.is_finished();
        (h.join().unwrap(), report, took, still)
    });
    let report = report.unwrap_or_else(|e| panic!("apply during a run failed: {e}"));
    run.0
        .unwrap_or_else(|e| panic!("the run during apply failed: {e:?}"));
    let raced = last_run(&mut c);
    eprintln!(
        "apply of {:?} took {apply_took:?} while the run was in progress ({run_running_after_apply}); run: {raced:?}",
        report.migrations
    );
    assert!(
        run_running_after_apply,
        "the run ended before apply did: no race"
    );
    assert_eq!(report.migrations.len(), 1, "{:?}", report.migrations);
    assert_eq!(raced.outcome, "ok", "{raced:?}");
    let history: Vec<(i32, i64)> = c
        .query(
            &format!(
                "SELECT version, count(*) FROM {HISTORY_TABLE} GROUP BY version ORDER BY version"
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(history, vec![(1, 1), (2, 1)]);
    let keep: String = one(
        &mut c,
        "SELECT keep::text FROM retention.dataset WHERE name = 'events'",
    );
    assert_eq!(keep, "5 days");
    // The next run uses the new keep: the 7-day-old row goes, the 3-day-old stays.
    c.batch_execute("DROP TRIGGER slow_batch ON app.events_default")
        .unwrap();
    d.run_job("events");
    let next = last_run(&mut c);
    assert_eq!(next.outcome, "ok", "{next:?}");
    assert_eq!(count_label(&mut c, "7 days"), 0);
    assert_eq!(count_label(&mut c, "3 days"), 1);
    assert_eq!(count_label(&mut c, "expired"), 0);
    let pending: i64 = one(&mut c, "SELECT count(*) FROM retention.expired_events");
    assert_eq!(pending, 0);
    let jobs: i64 = one(
        &mut cron,
        "SELECT count(*) FROM cron.job WHERE jobname = 'pgretain:app:events'",
    );
    assert_eq!(jobs, 1);
}

// ---------------------------------------------------------------------------
// 4. Insert load during enforcement.
// ---------------------------------------------------------------------------

#[test]
fn inserts_never_fail_during_a_run_that_drops_and_deletes() {
    let _serial = serial();
    let d = Deployed::new(EVENTS);
    d.backfill_partitions("events", 40);
    let mut c = d.app();
    slow_setup(&mut c, 100_000);
    let rows: &[(&str, &str)] = &[
        ("load now", "now()"),
        ("load 20 days ago", "now() - interval '20 days'"),
        ("load far past", "now() - interval '3 years'"),
        ("load far future", "now() + interval '3 years'"),
        ("load tomorrow", "now() + interval '1 day'"),
    ];
    let cmd = d.job_command("events");
    let stop = AtomicBool::new(false);
    let (run, inserts) = thread::scope(|s| {
        let inserter = s.spawn(|| insert_loop(&d, &stop, rows));
        thread::sleep(Duration::from_millis(300));
        let (_pid, h) = spawn_run(s, &d, cmd.clone());
        let run = h.join().unwrap();
        thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        (run, inserter.join().unwrap())
    });
    run.0.unwrap_or_else(|e| panic!("{cmd}: {e:?}"));
    let logged = last_run(&mut c);
    eprintln!(
        "run under insert load: {:?} (client saw {:?}); inserts: {} ok, {} failed, max latency {:?}",
        logged, run.1, inserts.0, inserts.1, inserts.2
    );
    assert_eq!(inserts.1, 0, "inserts failed during the run");
    assert!(
        inserts.0 >= 50,
        "too few inserts to mean anything: {}",
        inserts.0
    );
    assert_eq!(logged.outcome, "ok", "{logged:?}");
    assert!(logged.dropped.len() >= 25, "{logged:?}");
    assert!(logged.rows_deleted >= 50_000, "{logged:?}");
    // Every inserted row within retention is there.
    let per = inserts.0 / rows.len() as i64;
    for label in ["load now", "load far future", "load tomorrow"] {
        let n = count_label(&mut c, label);
        assert!(n == per || n == per + 1, "{label}: {n} of ~{per}");
    }
    assert_eq!(count_label(&mut c, "kept"), 52_000);
    // Expired rows inserted while the run was going (far past, 20 days ago)
    // can land behind its scan; they are not in the guarantee for a run
    // that started before they existed, and the next run removes them.
    let behind: i64 = one(&mut c, "SELECT count(*) FROM retention.expired_events");
    eprintln!("expired rows inserted during the run and left for the next one: {behind}");
    c.batch_execute("DROP TRIGGER slow_batch ON app.events_default")
        .unwrap();
    d.run_job("events");
    assert_eq!(last_run(&mut c).outcome, "ok");
    let pending: i64 = one(&mut c, "SELECT count(*) FROM retention.expired_events");
    assert_eq!(pending, 0);
}

// ---------------------------------------------------------------------------
// 5. Hostile input through the database.
// ---------------------------------------------------------------------------

const BOTS: &str = r#"
version: 1
environments: [draft, live]
datasets:
  conversations:
    description: Conversations.
    table: app.conversations
    columns:
      id: bigint generated always as identity
      label: text not null
      bot_id: text not null
      env: text not null
      conversation_id: text not null
      started_at: timestamptz not null default now()
    time: started_at
    tenant: bot_id
    environment: env
    keep: 30 days
    min_keep: 1 day
    max_keep: 1 year
    erase_by: conversation_id
overrides:
  - tenant: "o'brien\\'; DROP TABLE app.x; --"
    keep: { conversations: 2 days }
"#;

#[test]
fn hostile_tenants_and_erase_keys_are_data() {
    let _serial = serial();
    let d = Deployed::new(BOTS);
    d.backfill_partitions("conversations", 10);
    let mut c = d.app();
    c.batch_execute("CREATE TABLE app.x (v int); INSERT INTO app.x VALUES (1)")
        .unwrap();
    let injected = "'; DROP TABLE app.x; --";
    let obrien = r"o'brien\'; DROP TABLE app.x; --";

    // The policy override for a tenant with quotes and a backslash was
    // compiled into exactly that tenant.
    let k: String = one_p(
        &mut c,
        "SELECT retention.keep_for('conversations', $1, 'live')::text",
        &[&obrien],
    );
    assert_eq!(k, "2 days");

    // The application writes a tenant setting for a hostile tenant name.
    c.execute(
        "INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep) VALUES ('conversations', $1, NULL, '1 day')",
        &[&injected],
    )
    .unwrap();
    // ... and a hostile environment is refused, as data.
    let err = c
        .execute(
            "INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep) VALUES ('conversations', 'bot-1', $1, '1 day')",
            &[&"live'); DROP TABLE app.x; --"],
        )
        .expect_err("an unknown environment was accepted");
    assert_eq!(err.as_db_error().unwrap().code().code(), "23514");

    let keys = [
        r"it's a \'key\' with \\ backslashes'); DROP TABLE app.x; --",
        r"it's a \'key\' with \ backslashes'); DROP TABLE app.x; --",
        r"it''s a \'key\' with \\ backslashes'); DROP TABLE app.x; --",
        "%",
        "_",
        ".*",
        "$1",
        "Ünïcødé \u{202e}rtl 🙂",
        "e'\\x41'",
    ];
    let ins = "INSERT INTO app.conversations (label, bot_id, env, conversation_id, started_at)
               VALUES ($1, $2, 'live', $3, now() - $4::text::interval)";
    for (i, k) in keys.iter().enumerate() {
        c.execute(ins, &[&format!("key {i}"), &"bot-1", k, &"1 hour"])
            .unwrap();
    }
    for (label, bot, age) in [
        ("injected 2d", injected, "2 days"),
        ("injected 12h", injected, "12 hours"),
        ("obrien 3d", obrien, "3 days"),
        ("obrien 1d", obrien, "1 day"),
        ("plain 3d", "bot-1", "3 days"),
    ] {
        c.execute(ins, &[&label, &bot, &format!("c-{label}"), &age])
            .unwrap();
    }

    d.run_job("conversations");
    let run = last_run(&mut c);
    assert_eq!(run.outcome, "ok", "{run:?}");
    let labels = |c: &mut Client| -> Vec<String> {
        c.query("SELECT label FROM app.conversations ORDER BY label", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let mut expected: Vec<String> = (0..keys.len()).map(|i| format!("key {i}")).collect();
    expected.extend(["injected 12h", "obrien 1d", "plain 3d"].map(String::from));
    expected.sort();
    assert_eq!(labels(&mut c), expected);
    let x: i64 = one(&mut c, "SELECT count(*) FROM app.x");
    assert_eq!(x, 1);

    // Erasure matches exactly one key each, whatever it contains: through
    // the SQL function, the library and the command line.
    for (i, k) in keys.iter().enumerate() {
        let deleted: i64 = if i % 3 == 0 {
            one_p(
                &mut c,
                "SELECT rows_deleted FROM retention.erase('conversations', $1)",
                &[k],
            )
        } else if i % 3 == 1 {
            pgretain::cmd::erase::erase(Some(&d.url), "conversations", k)
                .unwrap_or_else(|e| panic!("{e}"))
                .rows_deleted
        } else {
            let out = std::process::Command::new(common::pgretain_bin())
                .args(["erase", "conversations", k, "--database-url", &d.url])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            1
        };
        assert_eq!(deleted, 1, "key {i}: {k}");
        expected.retain(|l| l != &format!("key {i}"));
        assert_eq!(labels(&mut c), expected, "after erasing key {i}: {k}");
    }
    // Each erasure is logged with its key, quoted.
    let logged: Vec<String> = c
        .query(
            "SELECT detail FROM retention.run_log WHERE action = 'erase' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(logged.len(), keys.len());

    // A hostile dataset name is an unknown dataset, nothing more.
    for sql in [
        "SELECT * FROM retention.erase($1, 'x')",
        "CALL retention.enforce($1)",
    ] {
        let err = c
            .execute(sql, &[&"conversations'; DROP TABLE app.x; --"])
            .expect_err(sql);
        let msg = err.as_db_error().unwrap().message().to_string();
        assert!(msg.contains("unknown dataset"), "{sql}: {msg}");
    }
    let x: i64 = one(&mut c, "SELECT count(*) FROM app.x");
    assert_eq!(x, 1);
    let tables: i64 = one(
        &mut c,
        "SELECT count(*) FROM pg_tables WHERE schemaname IN ('app', 'retention')",
    );
    assert!(tables > 5);
}
