//! Issue 11, "Enforcement cost follows what changes", on a real PostgreSQL
//! 15: the sensitive-value trigger costs only what a write changes (an
//! update of another column writes the WAL it would write without the
//! trigger), and a retention a tenant setting had for a minute stops
//! counting once no stored row can carry it, so partitions are dropped
//! again, while a row stamped with it is kept to its own deadline.

mod common;

use common::deploy::Deployed;
use postgres::Client;

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
      raw: json
    time: last_activity_at
    sliding: true
    changes_apply_to: new_rows
    tenant: bot_id
    keep: 30 days
    partition: day
    sensitive:
      variables: [password, iban]
      raw: [password, card_number]
"#;

/// A document of about 27 kB of text (stored compressed in TOAST), like the
/// session variables of the measurement in issue 11.
const BIG_DOC: &str =
    "(SELECT jsonb_object_agg('var_' || i, jsonb_build_object('v', md5(i::text || g::text), \
     'list', jsonb_build_array(i, md5(g::text || i::text)))) FROM generate_series(1, 360) AS i)";

fn text(c: &mut Client, sql: &str) -> String {
    c.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

fn json(c: &mut Client, sql: &str) -> serde_json::Value {
    serde_json::from_str(&text(c, sql)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// WAL written by `statements`, one transaction each, in bytes.
fn wal_of(c: &mut Client, statements: &[String]) -> i64 {
    let before = text(c, "SELECT pg_current_wal_insert_lsn()::text");
    for s in statements {
        c.batch_execute(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    let after = text(c, "SELECT pg_current_wal_insert_lsn()::text");
    c.query_one(
        "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::bigint",
        &[&after, &before],
    )
    .unwrap()
    .get(0)
}

/// One activity update per row of `label`: the sliding clock moves a second.
fn activity(c: &mut Client, label: &str) -> Vec<String> {
    let ids: Vec<i64> = c
        .query(
            "SELECT id FROM app.sessions WHERE label = $1 ORDER BY id",
            &[&label],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    ids.iter()
        .map(|id| {
            format!(
                "UPDATE app.sessions SET last_activity_at = last_activity_at + interval '1 second' WHERE id = {id}"
            )
        })
        .collect()
}

#[test]
fn sensitive_values_are_stripped_and_other_writes_cost_what_they_cost_without_the_trigger() {
    let d = Deployed::new(SESSIONS);
    let mut c = d.app();
    // No autovacuum writing WAL while it is measured.
    let mut pg = d.cluster.client("postgres");
    pg.batch_execute("ALTER SYSTEM SET autovacuum = off")
        .unwrap();
    pg.batch_execute("SELECT pg_reload_conf()").unwrap();

    // What SPEC §3 asks: the keys never stored, at any depth, whatever
    // their case, on insert and on update, in jsonb and json columns; what
    // is not one of the keys is stored as written.
    c.batch_execute(
        r#"INSERT INTO app.sessions (label, bot_id, variables, raw) VALUES
             ('keys', 'bot-1',
              '{"name": "Ann", "PassWord": "x", "nested": [{"iban": "BE1", "keep": 1}], "note": "password"}',
              '{"card_number": "4111", "Password": "y", "ok": true}'),
             ('clean', 'bot-1', '{"passwords": 2, "note": "my iban is private"}', '{"a": 1}');"#,
    )
    .unwrap();
    assert_eq!(
        json(
            &mut c,
            "SELECT variables::text FROM app.sessions WHERE label = 'keys'"
        ),
        serde_json::json!({"name": "Ann", "nested": [{"keep": 1}], "note": "password"})
    );
    assert_eq!(
        json(
            &mut c,
            "SELECT raw::text FROM app.sessions WHERE label = 'keys'"
        ),
        serde_json::json!({"ok": true})
    );
    assert_eq!(
        text(
            &mut c,
            "SELECT variables::text || ' ' || raw::text FROM app.sessions WHERE label = 'clean'"
        ),
        r#"{"note": "my iban is private", "passwords": 2} {"a": 1}"#,
        "a document without the keys is stored as written"
    );
    c.batch_execute(
        r#"UPDATE app.sessions SET variables = variables || '{"deep": {"IBAN": "x"}, "more": 1}',
                                   raw = '{"x": {"password": 1}}' WHERE label = 'clean';
           UPDATE app.sessions SET last_activity_at = last_activity_at + interval '1 minute' WHERE label = 'keys';
           UPDATE app.sessions SET variables = variables || '{"password": "z"}' WHERE label = 'keys';"#,
    )
    .unwrap();
    assert_eq!(
        json(
            &mut c,
            "SELECT variables::text FROM app.sessions WHERE label = 'clean'"
        ),
        serde_json::json!({"note": "my iban is private", "passwords": 2, "deep": {}, "more": 1})
    );
    assert_eq!(
        json(
            &mut c,
            "SELECT raw::text FROM app.sessions WHERE label = 'clean'"
        ),
        serde_json::json!({"x": {}})
    );
    assert_eq!(
        json(
            &mut c,
            "SELECT variables::text FROM app.sessions WHERE label = 'keys'"
        ),
        serde_json::json!({"name": "Ann", "nested": [{"keep": 1}], "note": "password"})
    );

    // The measurement: 400 sessions with big variables each, in two groups,
    // at noon two days ago (so that a second's activity keeps every row in
    // its partition).
    c.batch_execute(&format!(
        "INSERT INTO app.sessions (label, bot_id, last_activity_at, variables)
         SELECT CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 'bot-1',
                date_trunc('day', now() - interval '2 days', 'UTC') + interval '12 hours', {BIG_DOC}
           FROM generate_series(1, 400) AS g"
    ))
    .unwrap();
    let size = text(
        &mut c,
        "SELECT round(avg(length(variables::text)))::text || ' chars, '
                || round(avg(pg_column_size(variables)))::text || ' bytes stored'
           FROM app.sessions WHERE label = 'a'",
    );
    c.batch_execute("CHECKPOINT").unwrap();

    // Activity (only last_activity_at), with the trigger and without it.
    let a = activity(&mut c, "a");
    let b = activity(&mut c, "b");
    let with_trigger = wal_of(&mut c, &a);
    c.batch_execute("ALTER TABLE app.sessions DISABLE TRIGGER pgretain_strip_sensitive")
        .unwrap();
    let bare = wal_of(&mut c, &b);
    c.batch_execute("ALTER TABLE app.sessions ENABLE TRIGGER pgretain_strip_sensitive")
        .unwrap();

    // An application that writes every column back (an ORM's save): the
    // same variables, sent again as text.
    let orm: Vec<String> = a
        .iter()
        .map(|u| u.replace(" WHERE id", ", variables = variables::text::jsonb WHERE id"))
        .collect();
    let orm_trigger = wal_of(&mut c, &orm);
    // An update that adds a sensitive key: stripped, so nothing changed.
    let pw: Vec<String> = a
        .iter()
        .map(|u| {
            u.replace(
                " WHERE id",
                r#", variables = variables || '{"password": "secret"}' WHERE id"#,
            )
        })
        .collect();
    let pw_trigger = wal_of(&mut c, &pw);
    let leaked: i64 = c
        .query_one(
            "SELECT count(*) FROM app.sessions WHERE variables::text ILIKE '%\"password\":%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0, "a password reached the table");

    // Inserts: the same 100 big documents with and without the trigger.
    let insert = format!(
        "INSERT INTO app.sessions (label, bot_id, variables)
         SELECT 'ins', 'bot-1', ({BIG_DOC})::text::jsonb FROM generate_series(1, 100) AS g"
    );
    let t0 = std::time::Instant::now();
    c.batch_execute(&insert).unwrap();
    let insert_trigger = t0.elapsed();
    c.batch_execute("ALTER TABLE app.sessions DISABLE TRIGGER pgretain_strip_sensitive")
        .unwrap();
    let t0 = std::time::Instant::now();
    c.batch_execute(&insert).unwrap();
    let insert_bare = t0.elapsed();
    c.batch_execute("ALTER TABLE app.sessions ENABLE TRIGGER pgretain_strip_sensitive")
        .unwrap();

    eprintln!(
        "variables: {size}; WAL of 200 activity updates: {with_trigger} bytes with the trigger, \
         {bare} without; 200 ORM-style updates (variables sent back unchanged) with the trigger: \
         {orm_trigger}; 200 updates adding a password key with the trigger: {pw_trigger}; \
         100 inserts: {insert_trigger:?} with the trigger, {insert_bare:?} without"
    );
    assert!(
        with_trigger < 3 * bare,
        "activity updates wrote {with_trigger} bytes of WAL with the trigger, {bare} without"
    );
    assert!(
        orm_trigger < 3 * bare,
        "writing the same variables back wrote {orm_trigger} bytes of WAL ({bare} for activity alone)"
    );
    assert!(
        pw_trigger < 3 * bare,
        "an update whose stripped value is the stored one wrote {pw_trigger} bytes of WAL ({bare} for activity alone)"
    );
}

const EVENTS: &str = r#"
version: 1
datasets:
  events:
    description: Events.
    table: app.events
    columns:
      id: bigint generated always as identity
      label: text not null
      bot_id: text not null
      at: timestamptz not null
    time: at
    tenant: bot_id
    changes_apply_to: new_rows
    keep: 10 days
    max_keep: 365 days
    partition: day
"#;

fn run(d: &Deployed, days: i32) {
    d.sql(&format!(
        "CALL retention.\"enforce_events\"(p_now => now() + interval '{days} days')"
    ));
}

fn remembered(c: &mut Client) -> Vec<String> {
    c.query(
        "SELECT keep_text || CASE WHEN out_of_force_xmax IS NULL THEN '' ELSE ' (out of force)' END
           FROM retention.keep_history WHERE dataset = 'events' ORDER BY keep_text",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Partitions of events for the last six days before today (the days the
/// rows below are in).
fn old_partitions(c: &mut Client) -> i64 {
    c.query_one(
        "SELECT count(*) FROM retention.partitions('events')
          WHERE lower_bound >= now() - interval '7 days' AND upper_bound <= now()",
        &[],
    )
    .unwrap()
    .get(0)
}

fn last_run(c: &mut Client) -> (String, i32, String) {
    let r = c
        .query_one(
            "SELECT outcome, cardinality(partitions_dropped), coalesce(detail, '')
               FROM retention.run_log WHERE dataset = 'events' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

#[test]
fn a_retention_set_for_a_minute_stops_counting_once_no_row_can_carry_it() {
    let d = Deployed::new(EVENTS);
    d.backfill_partitions("events", 8);
    let mut c = d.app();
    // bot-1's retention is 365 days for a minute: one row is stamped with it.
    c.batch_execute(
        "INSERT INTO retention.tenant_setting (dataset, tenant, keep) VALUES ('events', 'bot-1', '365 days');
         INSERT INTO app.events (label, bot_id, at) VALUES ('long', 'bot-1', now() - interval '1 day'),
                                                           ('long, 300 days old', 'bot-1', now() - interval '300 days');
         DELETE FROM retention.tenant_setting WHERE dataset = 'events' AND tenant = 'bot-1';
         INSERT INTO app.events (label, bot_id, at)
         SELECT 'short ' || n, CASE WHEN n % 2 = 0 THEN 'bot-1' ELSE 'bot-2' END, now() - n * interval '1 day'
           FROM generate_series(1, 5) AS n;",
    )
    .unwrap();
    assert_eq!(
        text(
            &mut c,
            "SELECT string_agg(label || '=' || retention_keep::text, ', ' ORDER BY label) FROM app.events WHERE label IN ('long', 'short 2')"
        ),
        "long=365 days, short 2=10 days"
    );
    assert_eq!(remembered(&mut c), ["10 days", "365 days"]);

    // T = now + 20 days: every short row is past its deadline and removed,
    // the long one is kept; 365 days still counts (a row carries it), so the
    // partitions of the last days are not dropped whole. This run is the
    // first to see 365 days out of force: it marks it.
    run(&d, 20);
    assert_eq!(d.labels("app.events"), ["long", "long, 300 days old"]);
    assert_eq!(remembered(&mut c), ["10 days", "365 days (out of force)"]);
    let before = old_partitions(&mut c);
    assert!(before >= 5, "partitions before now: {before}");
    assert_eq!(last_run(&mut c).0, "ok");

    // T = now + 21 days: marked, but the long rows still carry it: kept,
    // and so are the rows (their deadlines are 364 and 65 days from now),
    // the old one too, though a row of its time stamped 10 days would have
    // gone long ago.
    run(&d, 21);
    assert_eq!(d.labels("app.events"), ["long", "long, 300 days old"]);
    assert_eq!(remembered(&mut c), ["10 days", "365 days (out of force)"]);
    assert_eq!(old_partitions(&mut c), before);
    assert_eq!(last_run(&mut c).1, 0, "a partition was dropped");

    // The application deletes them: no row carries 365 days now.
    c.batch_execute("DELETE FROM app.events WHERE label LIKE 'long%'")
        .unwrap();
    run(&d, 22);
    let (outcome, _, detail) = last_run(&mut c);
    assert_eq!(outcome, "ok");
    assert!(
        detail.contains("retention 365 days forgotten"),
        "detail: {detail}"
    );
    assert_eq!(remembered(&mut c), ["10 days"]);

    // The next run counts 10 days only: every partition wholly more than
    // 10 days before T goes whole.
    run(&d, 23);
    let (outcome, dropped, _) = last_run(&mut c);
    assert_eq!(outcome, "ok");
    assert!(dropped as i64 >= before, "dropped {dropped} of {before}");
    assert_eq!(old_partitions(&mut c), 0);
}

#[test]
fn a_remembered_retention_in_force_again_is_not_forgotten() {
    let d = Deployed::new(EVENTS);
    let mut c = d.app();
    c.batch_execute(
        "INSERT INTO retention.tenant_setting (dataset, tenant, keep) VALUES ('events', 'bot-1', '200 days');
         DELETE FROM retention.tenant_setting WHERE dataset = 'events';",
    )
    .unwrap();
    run(&d, 1);
    assert_eq!(remembered(&mut c), ["10 days", "200 days (out of force)"]);
    // Back in force (the mark goes), a row stamped, the setting gone again.
    c.batch_execute(
        "INSERT INTO retention.tenant_setting (dataset, tenant, keep) VALUES ('events', 'bot-1', '200 days');",
    )
    .unwrap();
    assert_eq!(remembered(&mut c), ["10 days", "200 days"]);
    c.batch_execute(
        "INSERT INTO app.events (label, bot_id, at) VALUES ('stamped', 'bot-1', now() - interval '30 days');
         DELETE FROM retention.tenant_setting WHERE dataset = 'events';",
    )
    .unwrap();
    run(&d, 2);
    run(&d, 3);
    run(&d, 4);
    // The stamped row is kept to its own deadline, and its retention with it.
    assert_eq!(d.labels("app.events"), ["stamped"]);
    assert_eq!(remembered(&mut c), ["10 days", "200 days (out of force)"]);
}

#[test]
fn a_remembered_retention_is_not_forgotten_while_a_hold_is_active() {
    let policy = format!("{EVENTS}holds:\n  - tenant: \"bot-9\"\n    reason: \"audit\"\n");
    let d = Deployed::new(&policy);
    let mut c = d.app();
    c.batch_execute(
        "INSERT INTO retention.tenant_setting (dataset, tenant, keep) VALUES ('events', 'bot-1', '200 days');
         DELETE FROM retention.tenant_setting WHERE dataset = 'events';",
    )
    .unwrap();
    run(&d, 1);
    run(&d, 2);
    run(&d, 3);
    // A held row may carry it past its deadline: it stays until the hold ends.
    assert_eq!(remembered(&mut c), ["10 days", "200 days (out of force)"]);
}
