//! SPEC §3 "The guarantee", clause by clause, against a real PostgreSQL 15
//! with pg_cron. Each test compiles a policy, applies it with `apply`,
//! inserts rows of known ages, runs the exact command stored in `cron.job`
//! (or, where T must be pinned to the microsecond, the same procedure with
//! an explicit `p_now`), and checks row by row which rows remain.

mod common;

use std::time::Duration;

use common::deploy::Deployed;
use postgres::Client;

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
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

#[test]
fn dataset_keep_removes_exactly_the_expired_rows_with_partition_drops() {
    let d = Deployed::new(EVENTS);
    d.backfill_partitions("events", 40);
    d.app()
        .batch_execute(
            "INSERT INTO app.events (label, at) VALUES
               ('1 day',        now() - interval '1 day'),
               ('9d 23h',       now() - interval '9 days 23 hours'),
               ('10d 1h',       now() - interval '10 days 1 hour'),
               ('20 days',      now() - interval '20 days'),
               ('35 days',      now() - interval '35 days'),
               ('far past',     now() - interval '400 days'),
               ('far future',   now() + interval '400 days'),
               ('next week',    now() + interval '7 days')",
        )
        .unwrap();
    // Far past and far future rows sit in the default partition.
    let in_default: i64 = d
        .app()
        .query_one("SELECT count(*) FROM ONLY app.events_default", &[])
        .unwrap()
        .get(0);
    assert_eq!(in_default, 2);

    d.run_job("events");
    assert_eq!(
        d.labels("app.events"),
        sorted(&["1 day", "9d 23h", "far future", "next week"])
    );

    // Whole partitions went: none left ends more than 10 days before now.
    let old_parts: i64 = d
        .app()
        .query_one(
            "SELECT count(*) FROM retention.partitions('events')
              WHERE upper_bound <= now() - interval '11 days'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(old_parts, 0);
    let log = d
        .app()
        .query_one(
            "SELECT outcome, cardinality(partitions_dropped), rows_deleted FROM retention.run_log
              WHERE dataset = 'events' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    assert_eq!(log.get::<_, String>(0), "ok");
    assert!(
        log.get::<_, i32>(1) >= 28,
        "partitions dropped: {}",
        log.get::<_, i32>(1)
    );
    // The far-past row was deleted row by row, and so was the 10d1h row,
    // unless its whole day is past the deadline (a run in the first hour of
    // a UTC day), when its partition was dropped whole instead.
    let boundary_dropped: bool = d
        .app()
        .query_one(
            "SELECT date_trunc('day', now() - interval '10 days 1 hour', 'UTC') + interval '11 days' <= now()",
            &[],
        )
        .unwrap()
        .get(0);
    let expected = if boundary_dropped { 1 } else { 2 };
    assert_eq!(log.get::<_, i64>(2), expected, "rows deleted row by row");

    // A second run removes nothing more.
    d.run_job("events");
    assert_eq!(
        d.labels("app.events"),
        sorted(&["1 day", "9d 23h", "far future", "next week"])
    );
    let last = d
        .app()
        .query_one(
            "SELECT cardinality(partitions_dropped), rows_deleted FROM retention.run_log
              WHERE dataset = 'events' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    assert_eq!((last.get::<_, i32>(0), last.get::<_, i64>(1)), (0, 0));
}

#[test]
fn boundary_is_exact_to_the_microsecond() {
    let d = Deployed::new(EVENTS);
    d.backfill_partitions("events", 20);
    let t = "2026-11-27 12:00:00+00";
    d.app()
        .batch_execute(&format!(
            "INSERT INTO app.events (label, at) VALUES
               ('deadline T-1us', '{t}'::timestamptz - interval '10 days' - interval '1 microsecond'),
               ('deadline T',     '{t}'::timestamptz - interval '10 days'),
               ('deadline T+1s',  '{t}'::timestamptz - interval '10 days' + interval '1 second'),
               ('deadline T-1d',  '{t}'::timestamptz - interval '11 days')"
        ))
        .unwrap();
    d.run_at("events", t);
    // Deadline before T: removed. At or after T: kept (SPEC §3).
    assert_eq!(
        d.labels("app.events"),
        sorted(&["deadline T", "deadline T+1s"])
    );
}

#[test]
fn calendar_retention_is_exact_at_month_ends() {
    let policy = EVENTS.replace("keep: 10 days", "keep: 1 month");
    let d = Deployed::new(&policy);
    d.backfill_partitions("events", 70);
    // T = 2026-03-31 00:00 UTC. With a 1 month retention:
    //   2026-02-28 12:00 + 1 month = 2026-03-28 12:00 < T  -> removed
    //   2026-03-01 00:00 + 1 month = 2026-04-01 00:00 >= T -> kept
    //   2026-01-31 00:00 + 1 month = 2026-02-28 00:00 < T  -> removed
    let t = "2026-03-31 00:00:00+00";
    d.app()
        .batch_execute(
            "SELECT retention.create_partition('events', d)
               FROM generate_series('2026-01-01'::timestamptz, '2026-04-10', interval '1 day') AS d;
             INSERT INTO app.events (label, at) VALUES
               ('feb 28 noon', '2026-02-28 12:00:00+00'),
               ('mar 1',       '2026-03-01 00:00:00+00'),
               ('jan 31',      '2026-01-31 00:00:00+00'),
               ('mar 30',      '2026-03-30 00:00:00+00')",
        )
        .unwrap();
    d.run_at("events", t);
    assert_eq!(d.labels("app.events"), sorted(&["mar 1", "mar 30"]));
}

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
  - environment: draft
    keep: { conversations: 60 days }
  - tenant: "bot-42"
    keep: { conversations: 20 days }
  - tenant: "bot-42"
    environment: live
    keep: { conversations: 5 days }
holds:
  - tenant: "bot-7"
    reason: "litigation hold 2026-14"
  - tenant: "bot-8"
    reason: "ended hold"
    until: 2020-01-31
"#;

/// Insert one conversation `age` ago.
fn conv(c: &mut Client, label: &str, bot: &str, env: &str, age: &str) {
    c.execute(
        "INSERT INTO app.conversations (label, bot_id, env, conversation_id, started_at)
         VALUES ($1, $2, $3, $1, now() - $4::text::interval)",
        &[&label, &bot, &env, &age],
    )
    .unwrap();
}

#[test]
fn effective_retention_follows_the_spec_order() {
    let d = Deployed::new(BOTS);
    d.backfill_partitions("conversations", 90);
    let mut c = d.app();
    // dataset keep 30 days
    conv(&mut c, "bot-1 live 29d", "bot-1", "live", "29 days");
    conv(&mut c, "bot-1 live 31d", "bot-1", "live", "31 days");
    // environment override: draft keeps 60 days
    conv(&mut c, "bot-1 draft 59d", "bot-1", "draft", "59 days");
    conv(&mut c, "bot-1 draft 61d", "bot-1", "draft", "61 days");
    // tenant + environment beats tenant alone: bot-42 live 5 days, bot-42 draft 20 days
    conv(&mut c, "bot-42 live 4d", "bot-42", "live", "4 days");
    conv(&mut c, "bot-42 live 6d", "bot-42", "live", "6 days");
    conv(&mut c, "bot-42 draft 19d", "bot-42", "draft", "19 days");
    conv(&mut c, "bot-42 draft 21d", "bot-42", "draft", "21 days");
    // run-time tenant setting (bot-9: 10 days, every environment) beats the
    // environment override, and is itself beaten by policy tenant overrides.
    c.batch_execute(
        "INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep)
         VALUES ('conversations', 'bot-9', NULL, '10 days'),
                ('conversations', 'bot-42', 'live', '300 days')",
    )
    .unwrap();
    conv(&mut c, "bot-9 draft 9d", "bot-9", "draft", "9 days");
    conv(&mut c, "bot-9 draft 11d", "bot-9", "draft", "11 days");
    // active hold: nothing of bot-7 goes; ended hold: bot-8 is enforced
    conv(&mut c, "bot-7 live 80d", "bot-7", "live", "80 days");
    conv(&mut c, "bot-8 live 31d", "bot-8", "live", "31 days");
    d.run_job("conversations");
    assert_eq!(
        d.labels("app.conversations"),
        sorted(&[
            "bot-1 live 29d",
            "bot-1 draft 59d",
            "bot-42 live 4d",
            "bot-42 draft 19d",
            "bot-9 draft 9d",
            "bot-7 live 80d",
        ])
    );
    // The view shows exactly what a run would remove: nothing now.
    let pending: i64 = c
        .query_one("SELECT count(*) FROM retention.expired_conversations", &[])
        .unwrap()
        .get(0);
    assert_eq!(pending, 0);
}

#[test]
fn tenant_settings_outside_the_bounds_are_rejected_by_the_database() {
    let d = Deployed::new(BOTS);
    let mut c = d.app();
    for (keep, env) in [
        ("2 years", "live"),
        ("1 hour", "live"),
        ("0 days", "live"),
        ("30 days", "prod"),
    ] {
        let err = c
            .execute(
                "INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep) VALUES ('conversations', 'bot-1', $2, $1::text::interval)",
                &[&keep, &env],
            )
            .expect_err(keep);
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "23514", "{keep}: {}", db.message());
        assert!(db.message().contains("conversations"), "{}", db.message());
    }
    c.execute(
        "INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep) VALUES ('conversations', 'bot-1', 'live', '1 year')",
        &[],
    )
    .unwrap();
}

#[test]
fn holds_outrank_erasure_and_erasure_is_logged() {
    let d = Deployed::new(BOTS);
    let mut c = d.app();
    conv(&mut c, "keep-me", "bot-7", "live", "1 day");
    c.execute("UPDATE app.conversations SET conversation_id = 'c-1'", &[])
        .unwrap();
    conv(&mut c, "erase-me", "bot-1", "live", "1 day");
    c.execute(
        "UPDATE app.conversations SET conversation_id = 'c-1' WHERE label = 'erase-me'",
        &[],
    )
    .unwrap();
    conv(&mut c, "other", "bot-1", "live", "1 day");
    let r = pgretain::cmd::erase::erase(Some(&d.url), "conversations", "c-1").unwrap();
    assert_eq!((r.rows_deleted, r.rows_kept_by_hold), (1, 1));
    assert_eq!(r.holds.as_deref(), Some("litigation hold 2026-14"));
    assert_eq!(d.labels("app.conversations"), sorted(&["keep-me", "other"]));
    let logged: String = c
        .query_one(
            "SELECT detail FROM retention.run_log WHERE action = 'erase'",
            &[],
        )
        .unwrap()
        .get(0);
    // The key is logged as its SHA-256 hash, never in clear (SPEC §3).
    let hash: String = c
        .query_one(
            "SELECT encode(sha256(convert_to('c-1', 'UTF8')), 'hex')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        logged.contains(&format!("erase_by sha256 = {hash}"))
            && !logged.contains("c-1")
            && logged.contains("litigation"),
        "{logged}"
    );
    // The CLI says the same and exits 1.
    let out = std::process::Command::new(common::pgretain_bin())
        .args(["erase", "conversations", "c-1", "--database-url", &d.url])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("litigation hold 2026-14"));
}

const SESSIONS: &str = r#"
version: 1
datasets:
  sessions:
    description: Sessions.
    table: app.sessions
    columns:
      id: bigint generated always as identity
      label: text not null
      bot_id: text not null
      last_activity_at: timestamptz not null default now()
      variables: jsonb not null default '{}'::jsonb
    time: last_activity_at
    sliding: true
    changes_apply_to: new_rows
    tenant: bot_id
    keep: 30 days
    on_expiry: archive
    archive: { schema: archive, keep: 10 days }
    sensitive:
      variables: [password, iban]
"#;

#[test]
fn new_rows_keep_the_retention_they_were_stamped_with() {
    let d = Deployed::new(SESSIONS);
    d.backfill_partitions("sessions", 60);
    let mut c = d.app();
    c.batch_execute(
        "INSERT INTO app.sessions (label, bot_id, last_activity_at) VALUES
           ('old 20d', 'bot-1', now() - interval '20 days')",
    )
    .unwrap();
    // Shorten the retention to 15 days: a new migration, applied.
    d.deploy(&SESSIONS.replace("keep: 30 days", "keep: 15 days"));
    c.batch_execute(
        "INSERT INTO app.sessions (label, bot_id, last_activity_at) VALUES
           ('new 20d', 'bot-1', now() - interval '20 days'),
           ('new 10d', 'bot-1', now() - interval '10 days')",
    )
    .unwrap();
    d.run_job("sessions");
    // The old row keeps its 30 days; the new one gets 15 and is gone.
    assert_eq!(d.labels("app.sessions"), sorted(&["new 10d", "old 20d"]));
    // ... and the removed row is in the archive, with its deadline.
    let archived: Vec<String> = c
        .query("SELECT label FROM archive.sessions", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(archived, vec!["new 20d".to_string()]);
}

#[test]
fn all_rows_retention_changes_reach_old_rows() {
    let d = Deployed::new(EVENTS);
    d.backfill_partitions("events", 30);
    d.app()
        .batch_execute("INSERT INTO app.events (label, at) VALUES ('8 days', now() - interval '8 days'), ('2 days', now() - interval '2 days')")
        .unwrap();
    d.run_job("events");
    assert_eq!(d.labels("app.events"), sorted(&["2 days", "8 days"]));
    d.deploy(&EVENTS.replace("keep: 10 days", "keep: 5 days"));
    d.run_job("events");
    assert_eq!(d.labels("app.events"), sorted(&["2 days"]));
}

#[test]
fn sliding_sessions_survive_activity_and_sensitive_values_never_stored() {
    let d = Deployed::new(SESSIONS);
    d.backfill_partitions("sessions", 60);
    let mut c = d.app();
    c.batch_execute(
        r#"INSERT INTO app.sessions (label, bot_id, last_activity_at, variables) VALUES
           ('active', 'bot-1', now() - interval '40 days', '{"name": "Ann", "Password": "x", "nested": {"iban": "BE1"}}'),
           ('idle',   'bot-1', now() - interval '40 days', '{}')"#,
    )
    .unwrap();
    // Activity moves the clock forward (and the row to a newer partition);
    // an update cannot move it back.
    c.batch_execute(
        r#"UPDATE app.sessions SET last_activity_at = now() - interval '1 day' WHERE label = 'active';
           UPDATE app.sessions SET last_activity_at = now() - interval '50 days' WHERE label = 'active';
           UPDATE app.sessions SET variables = variables || '{"password": "y"}' WHERE label = 'active';"#,
    )
    .unwrap();
    let vars: serde_json::Value = c
        .query_one(
            "SELECT variables::text FROM app.sessions WHERE label = 'active'",
            &[],
        )
        .map(|r| serde_json::from_str(&r.get::<_, String>(0)).unwrap())
        .unwrap();
    assert_eq!(vars, serde_json::json!({"name": "Ann", "nested": {}}));
    d.run_job("sessions");
    assert_eq!(d.labels("app.sessions"), sorted(&["active"]));
}

#[test]
fn archived_rows_expire_after_deadline_plus_archive_keep() {
    let d = Deployed::new(SESSIONS);
    d.backfill_partitions("sessions", 60);
    let mut c = d.app();
    // Stamped 30 days: deadlines 5 and 15 days ago; archive keeps 10 days more.
    c.batch_execute(
        "INSERT INTO app.sessions (label, bot_id, last_activity_at) VALUES
           ('deadline 5d ago',  'bot-1', now() - interval '35 days'),
           ('deadline 15d ago', 'bot-1', now() - interval '45 days'),
           ('live',             'bot-1', now() - interval '1 day')",
    )
    .unwrap();
    d.run_job("sessions");
    assert_eq!(d.labels("app.sessions"), sorted(&["live"]));
    // The run archived both, then removed the one whose deadline + 10 days passed.
    // Their partitions were moved into the archive whole (every row in
    // them expired): archive.sessions_moved holds them.
    let mut archived_labels = d.labels("archive.sessions");
    archived_labels.extend(d.labels("archive.sessions_moved"));
    assert_eq!(archived_labels, sorted(&["deadline 5d ago"]));
    let (archived, arch_deleted, detail): (i64, i64, String) = c
        .query_one(
            "SELECT rows_archived, archive_rows_deleted, coalesce(detail, '') FROM retention.run_log ORDER BY id DESC LIMIT 1",
            &[],
        )
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap();
    assert_eq!(archived, 2, "{detail}");
    // Deleted from the archive row by row, or its moved partition dropped
    // whole (archive_rows_deleted counts the former only, as rows_deleted
    // does for the table).
    assert!(
        arch_deleted == 1 || detail.contains("1 archive partition(s) dropped whole"),
        "{arch_deleted} deleted from the archive: {detail}"
    );
}

#[test]
fn pg_cron_fires_the_job_by_itself() {
    let d = Deployed::new(&EVENTS.replace("version: 1\n", "version: 1\nschedule: \"* * * * *\"\n"));
    d.app()
        .batch_execute("INSERT INTO app.events (label, at) VALUES ('old', now() - interval '20 days'), ('new', now())")
        .unwrap();
    let fired = common::wait_for(Duration::from_secs(75), || {
        d.labels("app.events") == vec!["new".to_string()]
    });
    let details: Vec<(String, String)> = d
        .cluster
        .client("postgres")
        .query(
            "SELECT status, coalesce(return_message, '') FROM cron.job_run_details",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        fired,
        "the job did not remove the expired row within 75 s; runs: {details:?}"
    );
    let logged: i64 = d
        .app()
        .query_one(
            "SELECT count(*) FROM retention.run_log WHERE dataset = 'events' AND outcome = 'ok'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(logged >= 1);
}
