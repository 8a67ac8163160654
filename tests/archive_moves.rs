//! SPEC §3 "Cost", archive: a partition every row of which has expired is
//! moved into the archive whole (detached, and made a child of
//! `<archive>_moved`), not copied row by row; the archive's expiry of those
//! rows stays exact, with each row's retention as it was when it moved,
//! whatever the settings become afterwards. Checked against an oracle
//! written here (the policy's precedence as SQL over the test's own table
//! of rows), at several T, with per-environment and per-tenant retention,
//! a run-time setting changed after the move, a hold and an erasure.

mod common;

use common::deploy::Deployed;
use postgres::Client;

const POLICY: &str = r#"
version: 1
environments: [draft, live]
datasets:
  events:
    description: Events, archived when they end.
    table: app.events
    columns:
      id: bigint generated always as identity
      bot_id: text not null
      env: text not null
      ref: text not null
      at: timestamptz not null
    time: at
    tenant: bot_id
    environment: env
    keep: 30 days
    min_keep: 1 day
    max_keep: 1 year
    partition: day
    erase_by: ref
    on_expiry: archive
    archive: { schema: archive, keep: 60 days }
overrides:
  - environment: draft
    keep: { events: 60 days }
  - tenant: "bot-42"
    keep: { events: 20 days }
  - tenant: "bot-42"
    environment: live
    keep: { events: 5 days }
holds:
  - tenant: "bot-7"
    reason: "litigation hold 2026-14"
"#;

/// The retention the policy gives a row of `bot`/`env` when bot-9 has a
/// run-time setting of 10 days and bot-1 has `bot1` (NULL: none), in the
/// spec's order: tenant and environment override, tenant override, tenant
/// setting, environment override, the dataset's keep. SQL over `t`.
fn oracle_keep(bot1: Option<&str>) -> String {
    format!(
        "CASE WHEN t.bot_id = 'bot-42' AND t.env = 'live' THEN interval '5 days'
              WHEN t.bot_id = 'bot-42' THEN interval '20 days'
              WHEN t.bot_id = 'bot-9' THEN interval '10 days'
              {}
              WHEN t.env = 'draft' THEN interval '60 days'
              ELSE interval '30 days' END",
        bot1.map(|k| format!("WHEN t.bot_id = 'bot-1' THEN interval '{k}'"))
            .unwrap_or_default()
    )
}

fn at_plus(c: &mut Client, t0: &str, days: i32) -> String {
    c.query_one(
        "SELECT to_char(($1::text::timestamptz + make_interval(days => $2)) AT TIME ZONE 'UTC',
                        'YYYY-MM-DD HH24:MI:SS') || '+00'",
        &[&t0, &days],
    )
    .unwrap()
    .get(0)
}

fn last_detail(c: &mut Client) -> (String, String) {
    let r = c
        .query_one(
            "SELECT outcome, coalesce(detail, '') FROM retention.run_log
              WHERE dataset = 'events' AND action = 'enforce' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

#[test]
fn expired_partitions_move_whole_and_their_archive_expiry_is_exact() {
    let d = Deployed::new(POLICY);
    d.backfill_partitions("events", 200);
    let mut c = d.app();
    // 190 days of rows, one every 2 hours for each tenant and environment;
    // the held tenant's rows only in the last 40 days (a partition with a
    // held row is not moved whole).
    d.sql(
        "INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep)
             VALUES ('events', 'bot-9', NULL, '10 days');
         INSERT INTO app.events (bot_id, env, ref, at)
         SELECT b, e, b || '/' || e || '/' || n, now() - interval '1 hour' - n * interval '2 hours'
           FROM unnest(ARRAY['bot-1', 'bot-9', 'bot-42', 'bot-7']) AS b,
                unnest(ARRAY['draft', 'live']) AS e,
                generate_series(0, 190 * 12) AS n
          WHERE b <> 'bot-7' OR n < 40 * 12;
         ANALYZE app.events;
         CREATE TABLE public.truth AS SELECT id, bot_id, env, ref, at FROM app.events;
         -- What another role left on a partition must not follow it into
         -- the archive: a grant and a trigger of its own.
         CREATE FUNCTION public.noisy() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;",
    );
    let oldest: String = c
        .query_one(
            "SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'app.events'::regclass AND c.relname <> 'events_default'
              ORDER BY c.relname LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    d.sql(&format!(
        "GRANT SELECT ON {oldest} TO PUBLIC;
         CREATE TRIGGER noisy BEFORE DELETE ON {oldest} FOR EACH ROW EXECUTE FUNCTION public.noisy();"
    ));
    let t0: String = c
        .query_one(
            "SELECT to_char(date_trunc('second', now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'",
            &[],
        )
        .unwrap()
        .get(0);
    let keep_then = oracle_keep(None);
    let keep_now = oracle_keep(Some("200 days"));
    // Each truth row's deadline at t0, and (bot-1's setting changes right
    // after the run at t0) the one it has afterwards. A row archived at t0
    // keeps its t0 deadline; a later one is archived with the later one.
    d.sql(&format!(
        "ALTER TABLE public.truth ADD COLUMN d0 timestamptz, ADD COLUMN d1 timestamptz;
         UPDATE public.truth t SET d0 = t.at + {keep_then}, d1 = t.at + {keep_now};"
    ));
    // At T (>= t0): which rows are in the table, which in the archive
    // (copied or moved), with the right deadline. Returns (archived rows,
    // moved rows).
    let check = |c: &mut Client, t: &str| -> (i64, i64) {
        let r = c
            .query_one(
                &format!(
                    "WITH truth AS (SELECT t.*, CASE WHEN t.d0 < '{t0}' THEN t.d0 ELSE t.d1 END AS deadline
                                      FROM public.truth t),
                          gone AS (SELECT id, deadline FROM truth
                                    WHERE bot_id <> 'bot-7' AND deadline < '{t}'::timestamptz),
                          want AS (SELECT id, deadline FROM gone
                                    WHERE NOT (deadline + interval '60 days' < '{t}'::timestamptz)),
                          moved AS (SELECT a.id, a.at + retention.moved_keep(m.keep_map, a.bot_id, a.env) AS deadline
                                      FROM archive.events_moved a
                                      JOIN retention.archive_moved m ON m.relation = a.tableoid::regclass::text),
                          arch AS (SELECT id, retention_deadline AS deadline FROM archive.events
                                   UNION ALL SELECT id, deadline FROM moved)
                     SELECT (SELECT count(*) FROM arch),
                            (SELECT count(*) FROM moved),
                            (SELECT count(*) FROM want WHERE id NOT IN (SELECT id FROM arch)),
                            (SELECT count(*) FROM arch WHERE id NOT IN (SELECT id FROM want)),
                            (SELECT count(*) FROM arch a JOIN want w USING (id) WHERE a.deadline <> w.deadline),
                            (SELECT count(*) FROM app.events WHERE id IN (SELECT id FROM gone)),
                            (SELECT count(*) FROM truth WHERE id NOT IN (SELECT id FROM gone)
                                AND id NOT IN (SELECT id FROM app.events))"
                ),
                &[],
            )
            .unwrap();
        let v: Vec<i64> = (0..7).map(|i| r.get(i)).collect();
        assert_eq!(
            &v[2..],
            &[0, 0, 0, 0, 0],
            "at {t}: {} archived ({} moved); archive: missing, extra, wrong deadline; table: left past deadline, removed early",
            v[0],
            v[1]
        );
        (v[0], v[1])
    };

    d.run_at("events", &t0);
    let (outcome, detail) = last_detail(&mut c);
    assert_eq!(outcome, "ok", "{detail}");
    assert!(detail.contains("moved whole into"), "{detail}");
    let (archived, moved) = check(&mut c, &t0);
    eprintln!("T = t0: {archived} rows in the archive, {moved} of them moved whole");
    assert!(
        moved > 1_000 && archived > moved,
        "{archived} archived, {moved} of them moved whole"
    );
    // Moved without a copy: the moved partitions' rows were never written
    // again (their xmin is the insert's), and nothing of the other role's
    // came along.
    let r = c
        .query_one(
            "SELECT (SELECT count(DISTINCT xmin::text) FROM archive.events_moved),
                    (SELECT count(*) FROM pg_inherits WHERE inhparent = 'archive.events_moved'::regclass),
                    (SELECT count(*) FROM pg_trigger g JOIN pg_inherits i ON i.inhrelid = g.tgrelid
                      WHERE i.inhparent = 'archive.events_moved'::regclass),
                    (SELECT count(*) FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
                      WHERE i.inhparent = 'archive.events_moved'::regclass AND c.relacl IS NOT NULL
                        AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner))",
            &[],
        )
        .unwrap();
    let (xmins, children, triggers, grants): (i64, i64, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!(xmins, 1, "moved rows were rewritten");
    assert!(children > 50, "{children} partitions moved");
    assert_eq!(
        (triggers, grants),
        (0, 0),
        "triggers and grants left on moved partitions"
    );

    // bot-1's retention changes; rows already moved keep the one they had.
    d.sql(
        "INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep)
             VALUES ('events', 'bot-1', NULL, '200 days')",
    );
    // An erasure reaches moved rows too.
    let key: String = c
        .query_one(
            "SELECT ref FROM archive.events_moved ORDER BY id LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    let r = c
        .query_one(
            "SELECT rows_deleted, archive_rows_deleted FROM retention.erase('events', $1)",
            &[&key],
        )
        .unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (0, 1));
    d.sql(&format!(
        "DELETE FROM public.truth WHERE ref = '{}'",
        key.replace('\'', "''")
    ));

    let mut dropped_whole = false;
    for days in [20, 45, 100] {
        let t = at_plus(&mut c, &t0, days);
        d.run_at("events", &t);
        let (outcome, detail) = last_detail(&mut c);
        assert_eq!(outcome, "ok", "{detail}");
        dropped_whole |= detail.contains("archive partition(s) dropped whole");
        let (archived, moved) = check(&mut c, &t);
        eprintln!(
            "T = t0 + {days} days: {archived} rows in the archive, {moved} of them moved whole"
        );
    }
    assert!(dropped_whole, "no moved partition was dropped whole");
    let left: i64 = c
        .query_one(
            "SELECT count(*) FROM retention.archive_moved m
              WHERE NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = to_regclass(m.relation))",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "a moved partition recorded but not there");
}

/// A parent another role made first (`archive.events_moved` owned by
/// someone else) would read every moved partition through inheritance: no
/// partition is moved under it. The rows are archived by copy instead, the
/// run says why, and the other role's table gets no child.
#[test]
fn no_partition_moves_under_a_parent_another_role_made() {
    let d = Deployed::new(POLICY);
    d.backfill_partitions("events", 120);
    let mut c = d.app();
    // 100 days of bot-1's live rows (30 days); past 60 days (the longest
    // retention a row can have) whole partitions would move.
    d.sql(
        "CREATE ROLE squatter;
         CREATE TABLE archive.events_moved (LIKE app.events, archived_at timestamptz NOT NULL);
         ALTER TABLE archive.events_moved OWNER TO squatter;
         INSERT INTO app.events (bot_id, env, ref, at)
         SELECT 'bot-1', 'live', 'r' || n, now() - interval '1 hour' - n * interval '2 hours'
           FROM generate_series(0, 100 * 12) AS n;
         ANALYZE app.events",
    );
    let expired: i64 = c
        .query_one(
            "SELECT count(*) FROM app.events
              WHERE at + interval '30 days' < now() AND NOT (at + interval '90 days' < now())",
            &[],
        )
        .unwrap()
        .get(0);
    // Past their deadline, not yet past the archive's keep as well.
    assert!(expired > 100);
    let t0: String = c
        .query_one(
            "SELECT to_char(date_trunc('second', now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'",
            &[],
        )
        .unwrap()
        .get(0);
    d.run_at("events", &t0);
    let (outcome, detail) = last_detail(&mut c);
    assert_eq!(outcome, "ok", "{detail}");
    assert!(
        detail.contains("not moved into the archive whole") && detail.contains("is not owned by"),
        "{detail}"
    );
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM archive.events),
                    (SELECT count(*) FROM pg_inherits WHERE inhparent = 'archive.events_moved'::regclass),
                    (SELECT count(*) FROM retention.archive_moved)",
            &[],
        )
        .unwrap();
    assert_eq!(
        (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)),
        (expired, 0, 0),
        "{detail}"
    );
}
