//! A run survives ordinary production events (SPEC §3 "Resilience"), each
//! reproduced on a real PostgreSQL 15 with pg_cron: the run goes on with
//! the other partitions, `retention.run_log` says what happened (`partial`
//! with a detail, never `ok`), and the next run finishes the job once the
//! cause is gone.
//!
//! Every test has its own cluster; they run one at a time (a file-wide
//! lock), since some measure how long a run takes.

mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::deploy::Deployed;
use common::{pgretain_bin, wait_for};
use postgres::Client;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Events with a tenant, archived, and `access`: the jobs run as the owner.
const EVENTS: &str = r#"
version: 1
access:
  owner: retention_owner
  application: [chatbot_app]
  readers: [compliance_auditor]
datasets:
  events:
    description: Test events.
    table: app.events
    columns:
      id: bigint generated always as identity
      bot_id: text not null
      label: text not null
      at: timestamptz not null
    time: at
    tenant: bot_id
    keep: 10 days
    min_keep: 1 day
    max_keep: 365 days
    partition: day
    on_expiry: archive
    archive: { schema: archive, keep: 10 years }
"#;

/// Sessions that slide, archived.
const SESSIONS: &str = r#"
version: 1
access:
  owner: retention_owner
datasets:
  sessions:
    description: Sessions.
    table: app.sessions
    columns:
      id: bigint generated always as identity
      label: text not null
      last_activity_at: timestamptz not null default now()
    time: last_activity_at
    sliding: true
    keep: 10 days
    partition: day
    on_expiry: archive
    archive: { schema: archive, keep: 10 years }
"#;

/// A client of database `app` as `role`.
fn as_role(d: &Deployed, role: &str) -> Client {
    Client::connect(
        &d.url.replace("user=postgres", &format!("user={role}")),
        postgres::NoTls,
    )
    .unwrap_or_else(|e| panic!("connecting as {role}: {e}"))
}

/// The owner: the role the jobs run as.
fn owner(d: &Deployed) -> Client {
    as_role(d, "retention_owner")
}

/// Partitions for the last `days` days, made by the owner (as premake
/// would have made them), so its runs can drop them.
fn backfill(d: &Deployed, dataset: &str, days: i32) {
    owner(d)
        .batch_execute(&format!(
            "SELECT retention.create_partition('{dataset}', g)
               FROM generate_series(date_trunc('day', now() - interval '{days} days', 'UTC'), now(), interval '1 day') g"
        ))
        .unwrap();
}

/// Run the job's exact command as pg_cron does: a session of the owner.
fn run_job(d: &Deployed, dataset: &str) -> Result<(), postgres::Error> {
    owner(d).batch_execute(&d.job_command(dataset))
}

#[derive(Debug)]
struct Run {
    outcome: String,
    dropped: Vec<String>,
    skipped: Vec<String>,
    archived: i64,
    detail: String,
}

fn last_run(d: &Deployed, dataset: &str) -> Run {
    let r = d
        .app()
        .query_one(
            "SELECT outcome, partitions_dropped, partitions_skipped, rows_archived, coalesce(detail, '')
               FROM retention.run_log WHERE dataset = $1 AND action = 'enforce' ORDER BY id DESC LIMIT 1",
            &[&dataset],
        )
        .unwrap();
    Run {
        outcome: r.get(0),
        dropped: r.get(1),
        skipped: r.get(2),
        archived: r.get(3),
        detail: r.get(4),
    }
}

fn count(d: &Deployed, sql: &str) -> i64 {
    d.app()
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

fn verify_kinds(d: &Deployed) -> Vec<String> {
    let r = pgretain::cmd::verify::verify(&pgretain::cmd::verify::VerifyOptions {
        database_url: Some(d.url.clone()),
        generated_dir: d.generated.path().to_path_buf(),
        cron_database: None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    r.findings
        .iter()
        .map(|f| f.kind.as_str().to_string())
        .collect()
}

/// Expired rows (20 and 15 days old), kept rows (2 days old), for tenants
/// bot-1 and bot-2, in partitions the owner made.
fn fill_events(d: &Deployed) {
    backfill(d, "events", 30);
    d.sql(
        "INSERT INTO app.events (bot_id, label, at)
         SELECT 'bot-' || (1 + g % 2), 'expired', now() - interval '20 days' - g * interval '1 minute' FROM generate_series(1, 50) g
         UNION ALL
         SELECT 'bot-' || (1 + g % 2), 'expired', now() - interval '15 days' - g * interval '1 minute' FROM generate_series(1, 50) g
         UNION ALL
         SELECT 'bot-' || (1 + g % 2), 'kept', now() - interval '2 days' - g * interval '1 minute' FROM generate_series(1, 50) g",
    );
}

// ---------------------------------------------------------------------------

#[test]
fn a_column_the_application_adds_is_added_to_the_archive() {
    let _s = serial();
    let d = Deployed::new(EVENTS);
    fill_events(&d);
    // The application's migration adds a column and writes it.
    d.sql(
        "ALTER TABLE app.events ADD COLUMN note text;
           UPDATE app.events SET note = 'n-' || id;",
    );
    run_job(&d, "events").unwrap();
    let run = last_run(&d, "events");
    assert_eq!(run.outcome, "ok", "{run:?}");
    assert!(
        run.detail
            .contains("added column note text to \"archive\".\"events\""),
        "{run:?}"
    );
    assert_eq!(run.archived, 100, "{run:?}");
    assert_eq!(
        count(
            &d,
            "SELECT count(*) FROM app.events WHERE label = 'expired'"
        ),
        0
    );
    assert_eq!(
        count(
            &d,
            "SELECT (SELECT count(*) FROM archive.events WHERE note = 'n-' || id)
                  + (SELECT count(*) FROM archive.events_moved WHERE note = 'n-' || id)"
        ),
        100,
        "archived whole (copied, or in a partition moved whole)"
    );

    // A shape the archive cannot follow: a column whose type differs. No
    // row is archived (none lost, none archived without its value); the run
    // says why, and so does verify.
    d.sql("ALTER TABLE app.events ADD COLUMN score integer;
           ALTER TABLE archive.events ADD COLUMN score text;
           INSERT INTO app.events (bot_id, label, at, score) VALUES ('bot-1', 'expired', now() - interval '12 days', 7);");
    run_job(&d, "events").unwrap();
    let run = last_run(&d, "events");
    assert_eq!(run.outcome, "partial", "{run:?}");
    assert!(
        run.detail
            .contains("the archive cannot take the table's shape"),
        "{run:?}"
    );
    assert!(run.detail.contains("column score is integer in"), "{run:?}");
    assert_eq!(
        count(
            &d,
            "SELECT count(*) FROM app.events WHERE label = 'expired'"
        ),
        1,
        "not lost"
    );
    assert!(verify_kinds(&d).contains(&"archive_shape_drift".to_string()));
    // The DBA makes the columns match; the next run archives the row.
    d.sql("ALTER TABLE archive.events ALTER COLUMN score TYPE integer USING score::integer");
    run_job(&d, "events").unwrap();
    let run = last_run(&d, "events");
    assert_eq!(run.outcome, "ok", "{run:?}");
    assert_eq!(
        count(&d, "SELECT count(*) FROM archive.events WHERE score = 7"),
        1
    );
    assert!(!verify_kinds(&d).contains(&"archive_shape_drift".to_string()));
}

#[test]
fn a_foreign_key_into_a_dataset_table_is_named_and_skipped() {
    let _s = serial();
    let d = Deployed::new(EVENTS);
    fill_events(&d);
    // Rows far in the past (no partition: the default partition) go row by
    // row, whatever references the table.
    d.sql("INSERT INTO app.events (bot_id, label, at) VALUES ('bot-1', 'ancient', now() - interval '400 days')");
    // Another team's table references the events.
    d.sql("ALTER TABLE app.events ADD PRIMARY KEY (id, at);
           CREATE TABLE public.refs (event_id bigint, event_at timestamptz,
                                     FOREIGN KEY (event_id, event_at) REFERENCES app.events (id, at));");
    run_job(&d, "events").unwrap();
    let run = last_run(&d, "events");
    assert_eq!(run.outcome, "partial", "{run:?}");
    assert!(run.dropped.is_empty(), "{run:?}");
    assert!(!run.skipped.is_empty(), "{run:?}");
    assert!(run.detail.contains("not dropped: foreign key refs_event_id_event_at_fkey on public.refs references the table"), "{run:?}");
    assert_eq!(
        count(
            &d,
            "SELECT count(*) FROM app.events WHERE label = 'ancient'"
        ),
        0,
        "the rest went on"
    );
    assert!(verify_kinds(&d).contains(&"foreign_key_blocks_drop".to_string()));
    // The constraint goes; the next run drops the partitions.
    d.sql("DROP TABLE public.refs");
    run_job(&d, "events").unwrap();
    let run = last_run(&d, "events");
    assert_eq!(run.outcome, "ok", "{run:?}");
    assert_eq!(
        count(
            &d,
            "SELECT count(*) FROM app.events WHERE label = 'expired'"
        ),
        0
    );
    assert_eq!(
        count(&d, "SELECT count(*) FROM app.events WHERE label = 'kept'"),
        50
    );
    // Archived by copy (the ancient row, from the default partition) or
    // moved whole (the expired days' partitions).
    assert_eq!(
        count(
            &d,
            "SELECT (SELECT count(*) FROM archive.events) + (SELECT count(*) FROM archive.events_moved)"
        ),
        101
    );
}

#[test]
fn a_sliding_update_racing_the_run_is_retried() {
    let _s = serial();
    let d = Deployed::new(SESSIONS);
    // Far in the past, in the default partition: removed row by row, so the
    // run's DELETE meets the update's row lock (a drop would wait for the
    // table's lock instead, and find the row gone).
    d.sql("INSERT INTO app.sessions (label, last_activity_at) VALUES
             ('racer', now() - interval '400 days'), ('other', now() - interval '400 days' + interval '1 minute'),
             ('young', now())");
    // The application's session moves the racer's clock (and so the row, to
    // today's partition), and holds the row lock until it commits.
    let mut a = as_role(&d, "postgres");
    a.batch_execute(
        "BEGIN; UPDATE app.sessions SET last_activity_at = now() WHERE label = 'racer'",
    )
    .unwrap();
    std::thread::scope(|s| {
        let cmd = d.job_command("sessions");
        let mut run_conn = owner(&d);
        let pid: i32 = run_conn
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0);
        let h = s.spawn(move || run_conn.batch_execute(&cmd));
        // The run's DELETE waits for the racer's row lock...
        let mut watch = as_role(&d, "postgres");
        let waiting = wait_for(Duration::from_secs(20), || {
            let n: i64 = watch
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
                    &[&pid],
                )
                .unwrap()
                .get(0);
            n == 1
        });
        assert!(waiting, "the run never waited for the row lock");
        // ...until the update commits: the row it was deleting has moved
        // (SQLSTATE 40001 for the run), and the run tries again.
        a.batch_execute("COMMIT").unwrap();
        h.join().unwrap().unwrap();
    });
    let run = last_run(&d, "sessions");
    assert_eq!(run.outcome, "ok", "{run:?}");
    assert!(run.detail.contains("serialization failure"), "{run:?}");
    // The racer lives on (its clock moved: it is not expired); the other
    // expired row is archived; the young one stays.
    let mut labels: Vec<String> = d
        .app()
        .query("SELECT label FROM app.sessions", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    labels.sort();
    assert_eq!(labels, ["racer", "young"]);
    assert_eq!(
        count(
            &d,
            "SELECT count(*) FROM archive.sessions WHERE label = 'other'"
        ),
        1
    );
    assert_eq!(
        count(
            &d,
            "SELECT count(*) FROM archive.sessions WHERE label = 'racer'"
        ),
        0
    );
}

#[test]
fn a_statement_timeout_of_the_database_does_not_kill_the_run() {
    let _s = serial();
    let d = Deployed::new(EVENTS);
    fill_events(&d);
    // A slow run: 3,000 expired rows in the default partition, removed 10
    // pages at a time, each batch slowed by 20 ms.
    d.sql("UPDATE retention.dataset SET batch_pages = 1 WHERE name = 'events';
           INSERT INTO app.events (bot_id, label, at)
           SELECT 'bot-1', 'ancient', now() - interval '400 days' - g * interval '1 second' FROM generate_series(1, 3000) g;
           CREATE FUNCTION app.slow_batch() RETURNS trigger LANGUAGE plpgsql
             AS $$ BEGIN PERFORM pg_sleep(0.02); RETURN NULL; END $$;
           CREATE TRIGGER slow_batch AFTER DELETE ON app.events_default
             FOR EACH STATEMENT EXECUTE FUNCTION app.slow_batch();
           ALTER DATABASE app SET statement_timeout = '100ms';");
    // A role without a setting of its own gets the database's 100 ms: the
    // CALL is cancelled mid-run. The run stops where it is, says so, and
    // releases its lock.
    let mut dba = as_role(&d, "postgres");
    let err = dba.batch_execute(&d.job_command("events")).unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err:?}");
    let run = last_run(&d, "events");
    assert_eq!(run.outcome, "failed", "{run:?}");
    assert!(run.detail.contains("cancelled"), "{run:?}");
    let held: i64 = dba
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(held, 0, "the cancelled run released its lock");
    let path: String = dba.query_one("SHOW search_path", &[]).unwrap().get(0);
    assert_eq!(
        path, "\"$user\", public",
        "the caller's search_path is back"
    );
    // The job's role has its own statement_timeout in this database (set by
    // apply): the same run, as pg_cron runs it, is not cut short.
    let t = std::time::Instant::now();
    run_job(&d, "events").unwrap();
    let took = t.elapsed();
    let run = last_run(&d, "events");
    assert_eq!(run.outcome, "ok", "{run:?}");
    assert!(
        took > Duration::from_millis(300),
        "the run took {took:?}: too fast to prove anything"
    );
    assert_eq!(
        count(
            &d,
            "SELECT count(*) FROM app.events WHERE label IN ('ancient', 'expired')"
        ),
        0
    );
    assert_eq!(
        count(&d, "SELECT count(*) FROM app.events WHERE label = 'kept'"),
        50
    );
}

#[test]
fn malformed_settings_are_refused_where_they_are_written() {
    let _s = serial();
    let d = Deployed::new(
        &EVENTS
            .replace(
                "    keep: 10 days
",
                "    keep: 30 days
",
            )
            .replace(
                "    min_keep: 1 day
",
                "    min_keep: 30 days
",
            ),
    );
    backfill(&d, "events", 60);
    d.sql("INSERT INTO app.events (bot_id, label, at) VALUES
             ('bot-1', 'forty', now() - interval '40 days'), ('bot-2', 'forty', now() - interval '40 days')");
    let mut app = as_role(&d, "chatbot_app");
    for (keep, why) in [
        (
            "1 month -29 days",
            "a mixed interval: a February row's deadline would precede it",
        ),
        ("-200000 years", "negative"),
        ("0 days", "zero"),
        (
            "1 month",
            "below a min_keep of 30 days for rows in February",
        ),
        ("366 days", "above max_keep"),
        ("1000 years 1 day", "beyond any retention"),
    ] {
        let e = app
            .execute(
                "INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep) VALUES ('events', 'bot-1', NULL, $1::text::interval)",
                &[&keep],
            )
            .unwrap_err();
        assert_eq!(
            e.code().map(|c| c.code()),
            Some("23514"),
            "{keep} ({why}): {e:?}"
        );
    }
    // Within the bounds for every row: accepted.
    app.batch_execute(
        "INSERT INTO retention.tenant_setting VALUES ('events', 'bot-1', NULL, '45 days')",
    )
    .unwrap();
    // Nothing can put a value the run would choke on into keep_history.
    let e = d
        .app()
        .batch_execute(
            "INSERT INTO retention.keep_history (dataset, keep) VALUES ('events', '-200000 years')",
        )
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23514"), "{e:?}");
    run_job(&d, "events").unwrap();
    let run = last_run(&d, "events");
    assert_eq!(run.outcome, "ok", "{run:?}");
    // bot-1 keeps 45 days now: its 40-day-old row stays; bot-2's goes.
    let left: Vec<String> = d
        .app()
        .query("SELECT bot_id FROM app.events", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["bot-1"]);
}

#[test]
fn session_settings_never_change_what_is_created_or_removed() {
    let _s = serial();
    let d = Deployed::new(EVENTS);
    let t = "2026-06-15 12:00:00+00";
    // Rows at T - 10 days - 1 µs (expired) and T - 10 days (kept), in the
    // default partition, and a partition per day made by premake.
    d.sql(
        "INSERT INTO app.events (bot_id, label, at) VALUES
             ('bot-1', 'expired', timestamptz '2026-06-05 12:00:00+00' - interval '1 microsecond'),
             ('bot-1', 'kept', timestamptz '2026-06-05 12:00:00+00')",
    );
    for (tz, datestyle, intervalstyle) in [
        ("Asia/Kolkata", "Postgres, DMY", "sql_standard"),
        ("Pacific/Chatham", "SQL, MDY", "iso_8601"),
        ("America/St_Johns", "German", "postgres_verbose"),
    ] {
        let mut c = owner(&d);
        c.batch_execute(&format!(
            "SET TimeZone = '{tz}'; SET DateStyle = '{datestyle}'; SET IntervalStyle = '{intervalstyle}'"
        ))
        .unwrap();
        c.batch_execute(&format!(
            r#"CALL retention."enforce_events"(p_now => '{t}')"#
        ))
        .unwrap();
        let run = last_run(&d, "events");
        assert_eq!(run.outcome, "ok", "{tz}, {datestyle}: {run:?}");
        // Every partition starts and ends at midnight UTC.
        let off: i64 = count(
            &d,
            "SELECT count(*) FROM retention.partitions('events')
              WHERE lower_bound IS NOT NULL
                AND (date_trunc('day', lower_bound, 'UTC') <> lower_bound OR upper_bound - lower_bound <> interval '1 day')",
        );
        assert_eq!(off, 0, "{tz}, {datestyle}: partitions off UTC midnight");
        let mut labels: Vec<String> = d
            .app()
            .query("SELECT label FROM app.events", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        labels.sort();
        assert_eq!(
            labels,
            ["kept"],
            "{tz}, {datestyle}: exact to the microsecond"
        );
    }
    // The CLI honours PGOPTIONS (and pins what must not vary).
    let out = std::process::Command::new(pgretain_bin())
        .args(["run", "--database-url", &d.url])
        .env("PGOPTIONS", "-c default_transaction_read_only=on")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "PGOPTIONS must reach the session"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read-only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(pgretain_bin())
        .args(["run", "--database-url", &d.url])
        .env(
            "PGOPTIONS",
            "-c TimeZone=Asia/Kolkata -c DateStyle=Postgres,DMY",
        )
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_failed_premake_is_partial_and_the_next_run_recovers() {
    let _s = serial();
    let d = Deployed::new(EVENTS);
    fill_events(&d);
    // A table in the way of tomorrow's partition.
    let blocker: String = d
        .app()
        .query_one(
            "SELECT 'app.events_p' || to_char((now() AT TIME ZONE 'UTC') + interval '15 days', 'YYYYMMDD')",
            &[],
        )
        .unwrap()
        .get(0);
    d.sql(&format!("CREATE TABLE {blocker} (x int)"));
    // Two days on, premake reaches the period of the table in its way.
    let at_two_days = r#"CALL retention."enforce_events"(p_now => now() + interval '2 days')"#;
    owner(&d).batch_execute(at_two_days).unwrap();
    let run = last_run(&d, "events");
    assert_eq!(run.outcome, "partial", "{run:?}");
    assert!(run.detail.contains("premake failed"), "{run:?}");
    assert_eq!(
        count(
            &d,
            "SELECT count(*) FROM app.events WHERE label = 'expired'"
        ),
        0,
        "the rest went on"
    );
    d.sql(&format!("DROP TABLE {blocker}"));
    owner(&d).batch_execute(at_two_days).unwrap();
    assert_eq!(last_run(&d, "events").outcome, "ok");
    let made: i64 = count(
        &d,
        &format!("SELECT count(*) FROM retention.partitions('events') WHERE partition::text = '{blocker}'"),
    );
    assert_eq!(made, 1, "the partition the table was in the way of is made");
}

#[test]
fn a_far_future_sliding_clock_is_brought_back() {
    let _s = serial();
    let d = Deployed::new(SESSIONS);
    d.sql("INSERT INTO app.sessions (label) VALUES ('typo')");
    d.sql("UPDATE app.sessions SET last_activity_at = '2099-01-01' WHERE label = 'typo'");
    let ahead: bool = d
        .app()
        .query_one(
            "SELECT last_activity_at <= now() + interval '1 hour' FROM app.sessions WHERE label = 'typo'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ahead, "the clock is at most an hour ahead");
    // A far-future clock from before (an insert may carry one) can be set
    // right by the next activity.
    d.sql("INSERT INTO app.sessions (label, last_activity_at) VALUES ('old-typo', '2099-01-01')");
    d.sql("UPDATE app.sessions SET last_activity_at = now() WHERE label = 'old-typo'");
    let fixed: bool = d
        .app()
        .query_one(
            "SELECT last_activity_at <= now() FROM app.sessions WHERE label = 'old-typo'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(fixed);
    // And activity still never moves the clock back.
    d.sql("UPDATE app.sessions SET last_activity_at = now() - interval '5 days' WHERE label = 'old-typo'");
    let kept: bool = d
        .app()
        .query_one(
            "SELECT last_activity_at > now() - interval '1 minute' FROM app.sessions WHERE label = 'old-typo'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(kept);
}

#[test]
fn the_run_log_keeps_its_own_retention_and_no_erasure_key_in_clear() {
    let _s = serial();
    let d = Deployed::new(&EVENTS.replace("version: 1\n", "version: 1\nrun_log_keep: 30 days\n"));
    d.sql("INSERT INTO retention.run_log (dataset, action, reference_time, started_at, finished_at, outcome)
           VALUES ('events', 'enforce', now() - interval '40 days', now() - interval '40 days', now() - interval '40 days', 'ok'),
                  ('events', 'erase', now() - interval '40 days', now() - interval '40 days', now() - interval '40 days', 'ok'),
                  ('events', 'enforce', now() - interval '20 days', now() - interval '20 days', now() - interval '20 days', 'ok')");
    run_job(&d, "events").unwrap();
    assert_eq!(
        count(
            &d,
            "SELECT count(*) FROM retention.run_log WHERE started_at < now() - interval '30 days'"
        ),
        0
    );
    assert_eq!(
        count(
            &d,
            "SELECT count(*) FROM retention.run_log WHERE started_at < now() - interval '10 days'"
        ),
        1
    );
    assert_eq!(
        count(
            &d,
            "SELECT count(*) FROM retention.config WHERE run_log_keep = interval '30 days'"
        ),
        1
    );
}

#[test]
fn the_job_run_details_trim_touches_only_pgretains_jobs() {
    let _s = serial();
    let d = Deployed::new(EVENTS);
    let mut cron = d.cluster.client("postgres");
    cron.batch_execute(
        "SELECT cron.schedule('team:nightly-report', '0 1 * * *', 'SELECT 1');
         INSERT INTO cron.job_run_details (jobid, runid, database, username, command, status, start_time, end_time)
         SELECT j.jobid, nextval('cron.runid_seq'), 'app', j.username, j.command, 'succeeded',
                now() - interval '40 days', now() - interval '40 days'
           FROM cron.job j;",
    )
    .unwrap();
    let cmd: String = cron
        .query_one(
            "SELECT command FROM cron.job WHERE jobname = 'pgretain:trim-job-run-details'",
            &[],
        )
        .unwrap()
        .get(0);
    // As a superuser (a policy without access) and as the owner: only
    // pgretain's old rows go.
    cron.batch_execute(&format!("BEGIN; {cmd}; COMMIT"))
        .unwrap();
    let left: Vec<String> = cron
        .query(
            "SELECT j.jobname::text FROM cron.job_run_details d JOIN cron.job j USING (jobid) ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["team:nightly-report"]);
}

#[test]
fn without_access_no_statement_timeout_of_the_database_kills_the_run_either() {
    let _s = serial();
    let without = EVENTS.replace(
        "access:\n  owner: retention_owner\n  application: [chatbot_app]\n  readers: [compliance_auditor]\n",
        "",
    );
    let d = Deployed::new(&without);
    d.sql("UPDATE retention.dataset SET batch_pages = 1 WHERE name = 'events';
           INSERT INTO app.events (bot_id, label, at)
           SELECT 'bot-1', 'ancient', now() - interval '400 days' - g * interval '1 second' FROM generate_series(1, 3000) g;
           CREATE FUNCTION app.slow_batch() RETURNS trigger LANGUAGE plpgsql
             AS $$ BEGIN PERFORM pg_sleep(0.02); RETURN NULL; END $$;
           CREATE TRIGGER slow_batch AFTER DELETE ON app.events_default
             FOR EACH STATEMENT EXECUTE FUNCTION app.slow_batch();
           ALTER DATABASE app SET statement_timeout = '100ms';");
    // The jobs run as the role that applied (postgres here), which has its
    // own setting in this database.
    let t = std::time::Instant::now();
    as_role(&d, "postgres")
        .batch_execute(&d.job_command("events"))
        .unwrap();
    assert!(
        t.elapsed() > Duration::from_millis(300),
        "too fast to prove anything"
    );
    assert_eq!(last_run(&d, "events").outcome, "ok");
    assert_eq!(count(&d, "SELECT count(*) FROM app.events"), 0);
}
