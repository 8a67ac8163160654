//! `pgretain status` and `pgretain verify` against a real PostgreSQL 15 with
//! pg_cron. Each test deploys a small policy (compile + apply, as
//! tests/guarantee.rs does), then makes one thing go wrong for real and
//! checks that verify names it; status is snapshotted with its volatile
//! fields (times, sizes, ids) redacted.

mod common;

use std::path::Path;
use std::process::Output;

use common::deploy::Deployed;
use pgretain::cmd::compile::CompileOutcome;
use pgretain::cmd::status::{status, StatusOptions};
use pgretain::cmd::verify::{verify, FindingKind, VerifyOptions, VerifyReport};
use postgres::Client;

const POLICY: &str = r#"
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
  sessions:
    description: Test sessions, per bot.
    table: app.sessions
    columns:
      id: bigint generated always as identity
      bot_id: text not null
      at: timestamptz not null
    time: at
    tenant: bot_id
    keep: 30 days
    min_keep: 1 day
    max_keep: 1 year
    partition: month
overrides:
  - tenant: "bot-42"
    keep: { sessions: 7 days }
holds:
  - tenant: "bot-7"
    datasets: [sessions]
    reason: "litigation hold 2026-14"
"#;

impl Deployed {
    fn cron(&self) -> Client {
        self.cluster.client("postgres")
    }

    fn cron_sql(&self, sql: &str) {
        self.cron()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    fn verify(&self) -> VerifyReport {
        verify(&VerifyOptions {
            database_url: Some(self.url.clone()),
            generated_dir: self.generated.path().to_path_buf(),
            cron_database: None,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn status(&self) -> pgretain::cmd::status::Status {
        status(&StatusOptions {
            database_url: Some(self.url.clone()),
            cron_database: None,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Run the pgretain binary with `--database-url`.
    fn bin(&self, args: &[&str]) -> Output {
        std::process::Command::new(common::pgretain_bin())
            .args(args)
            .arg("--database-url")
            .arg(&self.url)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    }

    fn generated(&self) -> &Path {
        self.generated.path()
    }
}

/// The findings of one kind, with the dataset they name; fails, showing the
/// whole report, when there are none.
fn expect(report: &VerifyReport, kind: FindingKind, dataset: Option<&str>) -> String {
    let hits: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.kind == kind && f.dataset.as_deref() == dataset)
        .collect();
    assert!(
        !hits.is_empty(),
        "expected a {kind} finding for {dataset:?}, got:\n{}",
        report.to_text()
    );
    assert!(!report.is_clean());
    hits.iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn kinds(report: &VerifyReport) -> Vec<(FindingKind, Option<String>)> {
    report
        .findings
        .iter()
        .map(|f| (f.kind, f.dataset.clone()))
        .collect()
}

/// Replace the values of volatile keys (times, sizes, ids) by "[redacted]",
/// keeping nulls, so the snapshot shows the shape and the stable values.
/// Keys come out sorted, whether or not serde_json preserves order.
fn redact(v: &mut serde_json::Value) {
    const VOLATILE: [&str; 9] = [
        "at",
        "oldest_row",
        "oldest_lower_bound",
        "newest_upper_bound",
        "next_run",
        "started_at",
        "finished_at",
        "total_bytes",
        "id",
    ];
    match v {
        serde_json::Value::Object(m) => {
            let mut entries: Vec<(String, serde_json::Value)> =
                std::mem::take(m).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, mut val) in entries {
                if VOLATILE.contains(&k.as_str()) && !val.is_null() {
                    val = serde_json::Value::String("[redacted]".into());
                } else {
                    redact(&mut val);
                }
                m.insert(k, val);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

#[test]
fn status_json_shows_every_dataset() {
    let d = Deployed::new(POLICY);
    d.sql(
        "INSERT INTO app.events (label, at) VALUES ('now', now()), ('an hour ago', now() - interval '1 hour'),
                                                   ('expired', now() - interval '11 days');
         INSERT INTO retention.tenant_setting (dataset, tenant, keep) VALUES ('sessions', 'bot-1', '14 days');
         INSERT INTO app.sessions (bot_id, at) VALUES ('bot-1', now());",
    );
    // One run (removes 'expired'), then a new expired row it has not seen.
    let runs = pgretain::cmd::run::run(Some(&d.url), &["events".to_string()]).unwrap();
    assert_eq!(runs[0].rows_deleted, 1);
    d.sql("INSERT INTO app.events (label, at) VALUES ('expired too', now() - interval '12 days')");

    let st = d.status();
    let mut v: serde_json::Value = serde_json::from_str(&st.to_json()).unwrap();
    redact(&mut v);
    insta::assert_snapshot!(serde_json::to_string_pretty(&v).unwrap());

    // Times are RFC 3339 in UTC; next run is the next 03:30 GMT.
    let events = &st.datasets[0];
    let next = events.next_run.expect("an active job has a next run");
    assert!(next > st.at && next - st.at <= chrono::TimeDelta::hours(24));
    assert_eq!(next.format("%H:%M:%S").to_string(), "03:30:00");
    let json: serde_json::Value = serde_json::from_str(&st.to_json()).unwrap();
    let at = json["at"].as_str().unwrap();
    assert!(at.ends_with('Z'), "{at}");
    chrono::DateTime::parse_from_rfc3339(at).unwrap();

    // The binary prints the same shape.
    let out = d.bin(&["status", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let bin: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bin["datasets"].as_array().unwrap().len(), 2);
    assert_eq!(bin["format_version"], 1);
}

#[test]
fn status_text_shows_every_dataset() {
    let d = Deployed::new(POLICY);
    d.sql("INSERT INTO app.events (label, at) VALUES ('old', now() - interval '30 days')");
    let text = d.status().to_text();
    for needle in [
        "retention status of database app",
        "events  app.events",
        "sessions  app.sessions",
        "keep 10 days",
        "keep 30 days (tenant settings between 1 day and 1 year); 1 policy override",
        "\"litigation hold 2026-14\" (tenant bot-7)",
        "overdue now  ",
        "1 row",
        "pgretain:app:events `30 3 * * *` in database app, active; never ran",
        "next run",
        "03:30:00 UTC",
        "default partition: 1 row",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let out = d.bin(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        text.lines().count()
    );
}

#[test]
fn verify_is_clean_after_a_fresh_deploy() {
    let d = Deployed::new(POLICY);
    d.sql("INSERT INTO app.events (label, at) VALUES ('now', now()), ('tomorrow', now() + interval '1 day')");
    let report = d.verify();
    assert!(report.is_clean(), "{}", report.to_text());
    assert_eq!(report.datasets, 2);
    assert_eq!(report.migrations, 1);
    assert!(report.routines > 10, "{}", report.routines);

    let out = d.bin(&["verify", "--generated", d.generated().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("verify ok: database app matches generated/"),
        "{stdout}"
    );
}

#[test]
fn verify_finds_a_row_overdue_beyond_the_tolerance() {
    let d = Deployed::new(POLICY);
    // Give the old rows a partition of their own, so only overdue is found.
    d.sql(
        "SELECT retention.create_partition('events', x)
           FROM generate_series(date_trunc('day', now() - interval '40 days', 'UTC'), now(), interval '1 day') x;
         INSERT INTO app.events (label, at) VALUES
           ('deadline 20 days ago', now() - interval '30 days'),
           ('deadline 2 hours ago, within tolerance', now() - interval '10 days 2 hours')",
    );
    let report = d.verify();
    assert_eq!(
        kinds(&report),
        vec![(FindingKind::Overdue, Some("events".into()))],
        "{}",
        report.to_text()
    );
    let msg = expect(&report, FindingKind::Overdue, Some("events"));
    assert!(msg.contains("1 row is past its deadline"), "{msg}");
    assert!(
        msg.contains("tolerance of 25 h (one period of the schedule `30 3 * * *`, 24 h, plus 1 h)"),
        "{msg}"
    );

    // The binary exits 1 and lists the finding.
    let out = d.bin(&["verify", "--generated", d.generated().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout.starts_with("verify found 1 problem in database app"),
        "{stdout}"
    );
    assert!(stdout.contains("overdue"), "{stdout}");

    // After a run, nothing is overdue.
    pgretain::cmd::run::run(Some(&d.url), &[]).unwrap();
    assert!(d.verify().is_clean(), "{}", d.verify().to_text());
}

#[test]
fn verify_finds_an_unscheduled_job() {
    let d = Deployed::new(POLICY);
    d.cron_sql("SELECT cron.unschedule('pgretain:app:events')");
    let report = d.verify();
    let msg = expect(&report, FindingKind::JobMissing, Some("events"));
    assert!(
        msg.contains("job pgretain:app:events is not in cron.job"),
        "{msg}"
    );
    assert_eq!(report.findings.len(), 1, "{}", report.to_text());
}

#[test]
fn verify_finds_an_inactive_job() {
    let d = Deployed::new(POLICY);
    d.cron_sql(
        "SELECT cron.alter_job(jobid, active := false) FROM cron.job WHERE jobname = 'pgretain:app:sessions'",
    );
    let report = d.verify();
    let msg = expect(&report, FindingKind::JobInactive, Some("sessions"));
    assert!(msg.contains("cron.job.active = false"), "{msg}");
    assert_eq!(report.findings.len(), 1, "{}", report.to_text());
    // Status shows it too, with no next run.
    let st = d.status();
    let sessions = st.datasets.iter().find(|s| s.name == "sessions").unwrap();
    assert!(!sessions.job.as_ref().unwrap().active);
    assert_eq!(sessions.next_run, None);
}

#[test]
fn verify_finds_a_job_altered_by_hand() {
    let d = Deployed::new(POLICY);
    d.cron_sql(
        "SELECT cron.alter_job(jobid, schedule := '0 4 * * *', database := 'postgres',
                               command := 'SELECT 1')
           FROM cron.job WHERE jobname = 'pgretain:app:events'",
    );
    let report = d.verify();
    let msg = expect(&report, FindingKind::JobScheduleChanged, Some("events"));
    assert!(msg.contains("`0 4 * * *`, not `30 3 * * *`"), "{msg}");
    let msg = expect(&report, FindingKind::JobWrongDatabase, Some("events"));
    assert!(msg.contains("runs in database postgres, not app"), "{msg}");
    let msg = expect(&report, FindingKind::JobCommandChanged, Some("events"));
    assert!(
        msg.contains(r#"runs `SELECT 1`, not `CALL retention."enforce_events"()`"#),
        "{msg}"
    );
}

#[test]
fn verify_finds_a_hand_edited_function_even_after_apply_runs_again() {
    let d = Deployed::new(POLICY);
    d.sql(
        "CREATE OR REPLACE FUNCTION retention.keep_for(p_dataset text, p_tenant text, p_environment text)
         RETURNS interval LANGUAGE sql STABLE PARALLEL SAFE
         AS $$ SELECT interval '100 years' $$",
    );
    let report = d.verify();
    let msg = expect(&report, FindingKind::RoutineChanged, None);
    assert!(
        msg.contains("retention.keep_for(text,text,text) was changed"),
        "{msg}"
    );
    assert_eq!(report.findings.len(), 1, "{}", report.to_text());

    // An apply with nothing to do does not bless the edit.
    d.apply();
    expect(&d.verify(), FindingKind::RoutineChanged, None);

    // Routines added or dropped by hand are found too.
    d.sql(
        "CREATE FUNCTION retention.helper() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
         DROP FUNCTION retention.calendar_slack(interval) CASCADE;",
    );
    let report = d.verify();
    let msg = expect(&report, FindingKind::RoutineAdded, None);
    assert!(msg.contains("retention.helper()"), "{msg}");
    let msg = expect(&report, FindingKind::RoutineRemoved, None);
    assert!(msg.contains("retention.calendar_slack(interval)"), "{msg}");
}

#[test]
fn verify_finds_a_failed_job_run() {
    let d = Deployed::new(POLICY);
    d.cron_sql(
        "INSERT INTO cron.job_run_details (jobid, job_pid, database, username, command, status,
                                           return_message, start_time, end_time)
         SELECT jobid, 4242, database, username, command, 'failed',
                'ERROR:  canceling statement due to lock timeout', now() - interval '1 minute', now()
           FROM cron.job WHERE jobname = 'pgretain:app:events'",
    );
    let report = d.verify();
    let msg = expect(&report, FindingKind::JobFailed, Some("events"));
    assert!(
        msg.contains("failed: ERROR:  canceling statement due to lock timeout"),
        "{msg}"
    );
    assert_eq!(report.findings.len(), 1, "{}", report.to_text());
    let st = d.status();
    let run = st.datasets[0]
        .job
        .as_ref()
        .unwrap()
        .last_run
        .as_ref()
        .unwrap();
    assert_eq!(run.status, "failed");
}

#[test]
fn verify_finds_failed_and_stuck_enforcement_runs() {
    let d = Deployed::new(POLICY);
    d.sql(
        "INSERT INTO retention.run_log (dataset, action, reference_time, started_at, finished_at, outcome, detail)
              VALUES ('events', 'enforce', now(), now(), now(), 'failed', 'could not extend file: No space left on device');
         INSERT INTO retention.run_log (dataset, action, reference_time, started_at, outcome)
              VALUES ('sessions', 'enforce', now() - interval '2 hours', now() - interval '2 hours', 'running');",
    );
    let report = d.verify();
    let msg = expect(&report, FindingKind::RunFailed, Some("events"));
    assert!(msg.contains("No space left on device"), "{msg}");
    let msg = expect(&report, FindingKind::RunStuck, Some("sessions"));
    assert!(msg.contains("still 'running' after more than 1 h"), "{msg}");
    assert_eq!(report.findings.len(), 2, "{}", report.to_text());

    // A run in progress (its lock held) is not stuck.
    let mut holder = d.app();
    holder
        .batch_execute("SELECT pg_advisory_lock(hashtext('pgretain'), hashtext('sessions'))")
        .unwrap();
    let report = d.verify();
    assert!(
        report.of(FindingKind::RunStuck).is_empty(),
        "{}",
        report.to_text()
    );
    drop(holder);
}

#[test]
fn verify_finds_rows_in_the_default_partition() {
    let d = Deployed::new(POLICY);
    d.sql("INSERT INTO app.sessions (bot_id, at) VALUES ('bot-1', now() + interval '400 days')");
    let report = d.verify();
    let msg = expect(
        &report,
        FindingKind::RowsInDefaultPartition,
        Some("sessions"),
    );
    assert!(
        msg.contains("1 row sits in the default partition app.sessions_default"),
        "{msg}"
    );
    assert_eq!(report.findings.len(), 1, "{}", report.to_text());
}

#[test]
fn verify_finds_partitions_running_out() {
    let d = Deployed::new(POLICY);
    d.sql(
        "DO $$ DECLARE p regclass; BEGIN
           FOR p IN SELECT partition FROM retention.partitions('events') WHERE lower_bound > now() + interval '1 day' LOOP
             EXECUTE format('DROP TABLE %s', p);
           END LOOP;
         END $$",
    );
    let report = d.verify();
    let msg = expect(&report, FindingKind::PartitionsRunningOut, Some("events"));
    assert!(msg.contains("less than 2 days ahead"), "{msg}");
    assert_eq!(report.findings.len(), 1, "{}", report.to_text());
}

#[test]
fn verify_finds_a_migration_edited_after_apply() {
    let d = Deployed::new(POLICY);
    let v1 = std::fs::read_dir(d.generated())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("V1__"))
        .unwrap();
    let mut sql = std::fs::read_to_string(&v1).unwrap();
    sql.push_str("\n-- tweaked after deploy\n");
    std::fs::write(&v1, sql).unwrap();
    let report = d.verify();
    let msg = expect(&report, FindingKind::MigrationChanged, None);
    assert!(msg.contains("V1__init"), "{msg}");
    assert!(msg.contains("must never change"), "{msg}");
    assert_eq!(report.findings.len(), 1, "{}", report.to_text());
}

#[test]
fn verify_finds_a_migration_not_yet_applied() {
    let d = Deployed::new(POLICY);
    let out = d.compile(&POLICY.replace("keep: 10 days", "keep: 20 days"));
    let CompileOutcome::Written { file, .. } = out else {
        panic!("{out:?}")
    };
    assert!(file.starts_with("V2__"), "{file}");
    let report = d.verify();
    let msg = expect(&report, FindingKind::MigrationPending, None);
    assert!(msg.contains("V2__"), "{msg}");
    assert!(msg.contains("run `pgretain apply`"), "{msg}");
    assert_eq!(report.findings.len(), 1, "{}", report.to_text());

    // Applying it makes the database match again.
    d.apply();
    assert!(d.verify().is_clean(), "{}", d.verify().to_text());
}

/// One dataset of known expired rows: 3 day partitions 20 to 22 days old,
/// wholly expired (their bounds prove it: upper bound + 10 days is past);
/// one partition 7 days old, partly expired (bot-42's 5 days: 50 rows;
/// bot-1's 10 days: 150 rows kept); 100 rows of today.
const LOGS: &str = r#"
version: 1
datasets:
  logs:
    description: Test logs, per bot.
    table: app.logs
    columns:
      id: bigint generated always as identity
      bot_id: text not null
      at: timestamptz not null
    time: at
    tenant: bot_id
    keep: 10 days
    partition: day
overrides:
  - tenant: "bot-42"
    keep: { logs: 5 days }
"#;

/// Rows `from..=to` of `bot` at noon (UTC) of the day `days` ago, a
/// millisecond apart.
fn noon_rows(bot: &str, days: i32, from: i32, to: i32) -> String {
    format!(
        "INSERT INTO app.logs (bot_id, at)
         SELECT '{bot}', date_trunc('day', now() - interval '{days} days', 'UTC') + interval '12 hours'
                         + i * interval '1 millisecond'
           FROM generate_series({from}, {to}) AS i;"
    )
}

#[test]
fn overdue_counts_are_exact_when_cheap_and_labelled_estimates_past_the_budget() {
    use pgretain::cmd::plan::{plan, PlanOptions};
    use pgretain::db::expired::EXAMINE_BUDGET;

    let d = Deployed::new(LOGS);
    let mut setup = String::from(
        "SELECT retention.create_partition('logs', x)
           FROM generate_series(date_trunc('day', now() - interval '30 days', 'UTC'), now(), interval '1 day') x;",
    );
    for days in [20, 21, 22] {
        setup.push_str(&noon_rows("bot-1", days, 1, 400));
    }
    setup.push_str(&noon_rows("bot-42", 7, 1, 50));
    setup.push_str(&noon_rows("bot-1", 7, 1, 150));
    setup.push_str(
        "INSERT INTO app.logs (bot_id, at) SELECT 'bot-1', now() FROM generate_series(1, 100);",
    );
    d.sql(&setup);
    let plan_opts = PlanOptions {
        database_url: Some(d.url.clone()),
        generated_dir: d.generated().to_path_buf(),
        ..PlanOptions::default()
    };

    // Small: every candidate row is read, the count is exact.
    let st = d.status();
    let o = st.datasets[0].overdue;
    assert_eq!(
        (o.count, o.estimate, o.counted),
        (1250, false, 1250),
        "{o:?}"
    );
    let json: serde_json::Value = serde_json::from_str(&st.to_json()).unwrap();
    assert_eq!(
        json["datasets"][0]["overdue"],
        serde_json::json!({"count": 1250, "at_least": false, "estimate": false, "counted": 1250})
    );
    let text = st.to_text();
    assert!(text.contains("overdue now  1,250 rows\n"), "{text}");
    let report = d.verify();
    let msg = expect(&report, FindingKind::Overdue, Some("logs"));
    assert!(msg.contains("1250 rows are past their deadline"), "{msg}");
    assert!(report.unproven.is_empty(), "{}", report.to_text());
    let p = plan(&plan_opts).unwrap_or_else(|e| panic!("{e}"));
    let next = p.datasets[0].next.unwrap();
    assert_eq!(
        (next.rows, next.estimated, next.counted, next.tenants),
        (1250, false, 1250, Some(2))
    );
    assert!(
        p.to_string()
            .contains("logs: the next run removes 1,250 rows of 2 tenants"),
        "{p}"
    );

    // Large: 40,000 rows in each wholly expired partition, more than a
    // count may read. The partly expired partition is read first (200
    // rows, 50 expired), then the whole ones oldest first until the budget
    // is spent: 40,000 + 40,000 + 19,800 rows counted; the rest of the
    // third is its reltuples (40,000, after ANALYZE) less what was counted.
    let mut more = String::new();
    for days in [20, 21, 22] {
        more.push_str(&noon_rows("bot-1", days, 401, 40_000));
    }
    more.push_str("ANALYZE app.logs;");
    d.sql(&more);
    assert_eq!(EXAMINE_BUDGET, 100_000);
    let counted = 50 + 40_000 + 40_000 + (EXAMINE_BUDGET - 200 - 80_000);
    let estimate = counted + (40_000 - (EXAMINE_BUDGET - 200 - 80_000));
    assert_eq!((counted, estimate), (99_850, 120_050));

    let st = d.status();
    let o = st.datasets[0].overdue;
    assert!(o.estimate, "{o:?}");
    assert_eq!(o.counted, counted, "{o:?}");
    assert!((o.count - estimate).abs() <= 400, "{o:?}");
    let json: serde_json::Value = serde_json::from_str(&st.to_json()).unwrap();
    assert_eq!(json["datasets"][0]["overdue"]["estimate"], true);
    assert_eq!(json["datasets"][0]["overdue"]["counted"], counted);
    let text = st.to_text();
    assert!(
        text.contains(&format!(
            "overdue now  ~{} rows (estimate; 99,850 counted)",
            pgretain::words::thousands(o.count)
        )),
        "{text}"
    );

    // verify claims only the rows it saw, and says the rest is an estimate.
    let report = d.verify();
    let msg = expect(&report, FindingKind::Overdue, Some("logs"));
    assert!(
        msg.contains(&format!(
            "at least 99850 (about {} by estimate) rows are past their deadline",
            o.count
        )),
        "{msg}"
    );

    // plan labels its estimate too; no tenants are claimed.
    let p = plan(&plan_opts).unwrap_or_else(|e| panic!("{e}"));
    let next = p.datasets[0].next.unwrap();
    assert!(next.estimated && !next.timed_out, "{next:?}");
    assert_eq!((next.counted, next.tenants), (counted, None));
    let text = p.to_string();
    assert!(
        text.contains(&format!(
            "logs: the next run removes ≈ {} rows (estimate; 99,850 counted)",
            pgretain::words::thousands(next.rows)
        )),
        "{text}"
    );

    // After a run nothing is overdue, exactly: the whole partitions are
    // gone and the partly expired one is read.
    pgretain::cmd::run::run(Some(&d.url), &[]).unwrap();
    let o = d.status().datasets[0].overdue;
    assert_eq!((o.count, o.estimate, o.counted), (0, false, 0), "{o:?}");
    let report = d.verify();
    assert!(
        report.is_clean() && report.unproven.is_empty(),
        "{}",
        report.to_text()
    );
}

#[test]
fn verify_says_what_it_could_not_prove_past_the_budget() {
    // 120,000 rows under a legal hold in wholly expired partitions: none is
    // overdue, but proving it would read them all, more than a check may.
    let held = LOGS.replace(
        "overrides:",
        "holds:\n  - tenant: \"bot-7\"\n    reason: \"litigation hold 2026-15\"\noverrides:",
    );
    let d = Deployed::new(&held);
    let mut setup = String::from(
        "SELECT retention.create_partition('logs', x)
           FROM generate_series(date_trunc('day', now() - interval '30 days', 'UTC'), now(), interval '1 day') x;",
    );
    for days in [20, 21, 22] {
        setup.push_str(&noon_rows("bot-7", days, 1, 40_000));
    }
    setup.push_str("ANALYZE app.logs;");
    d.sql(&setup);

    let report = d.verify();
    assert!(report.is_clean(), "{}", report.to_text());
    assert_eq!(report.unproven.len(), 1, "{}", report.to_text());
    assert_eq!(report.unproven[0].dataset, "logs");
    let text = report.to_text();
    assert!(
        text.contains("nothing overdue among the rows read (not proven for every row: see below)"),
        "{text}"
    );
    assert!(
        text.contains(
            "not proven: logs: no row overdue beyond the tolerance among the 100000 rows read"
        ),
        "{text}"
    );
    let out = d.bin(&["verify", "--generated", d.generated().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not proven: logs:"),
        "{out:?}"
    );

    // status: nothing seen overdue, and the figure is labelled an estimate.
    let o = d.status().datasets[0].overdue;
    assert_eq!((o.count, o.estimate, o.counted), (0, true, 0), "{o:?}");
}
