//! Issue 11, "Enforcement cost follows what changes", on a real PostgreSQL
//! 15: the sensitive-value trigger costs only what a write changes (an
//! update of another column writes the WAL it would write without the
//! trigger).

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
