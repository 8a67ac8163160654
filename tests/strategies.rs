//! SPEC §3 "Cost": a run's work on a partition follows what it removes, not
//! the partition's size. Here: when only tenants with a rule of their own
//! (a shorter run-time setting) can have expired rows in a partition, the
//! run finds them through the (tenant, time) index and never reads the
//! partition's pages; and when every row of a partition is expired but a
//! few held ones, or a few of a tenant with a longer retention, those are
//! copied to a new partition of the period and the old one is dropped,
//! rather than deleting the rest row by row. The
//! result is exact against an oracle.

mod common;

use std::time::Duration;

use common::deploy::Deployed;

const POLICY: &str = r#"
version: 1
datasets:
  conversations:
    description: Conversations.
    table: app.conversations
    columns:
      id: bigint generated always as identity
      bot_id: integer not null
      started_at: timestamptz not null
      body: text not null
    time: started_at
    tenant: bot_id
    keep: 90 days
    min_keep: 7 days
    max_keep: 730 days
    partition: day

holds:
  - tenant: "3"
    datasets: [conversations]
    reason: "litigation hold 2026-12"
"#;

fn oracle(t: &str) -> String {
    format!(
        "SELECT count(*) FROM app.conversations c
          WHERE c.bot_id = 3
             OR NOT (c.started_at + CASE WHEN c.bot_id = 5 THEN interval '30 days'
                                         WHEN c.bot_id = 7 THEN interval '365 days'
                                         ELSE interval '90 days' END
                     < '{t}'::timestamptz)"
    )
}

#[test]
fn only_the_tenants_that_can_have_expired_rows_are_read_through_their_index() {
    let d = Deployed::new(POLICY);
    let mut c = d.app();
    // Partitions over the whole span of the rows, as an old table would have.
    d.sql(
        "SELECT retention.create_partition('conversations', g)
           FROM generate_series(retention.period_start('day', now() - interval '130 days'), now(), interval '1 day') AS g",
    );
    d.sql(
        "INSERT INTO app.conversations (bot_id, started_at, body)
         SELECT (n / 120) % 20, now() - (n % 120) * interval '1 day' - (n % 3600) * interval '1 second', 'conversation ' || n
           FROM generate_series(1, 600000) AS n;
         INSERT INTO retention.tenant_setting (dataset, tenant, keep)
         VALUES ('conversations', '5', '30 days'), ('conversations', '7', '365 days');
         ANALYZE app.conversations",
    );
    let t: String = c
        .query_one(
            "SELECT to_char(date_trunc('second', now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'",
            &[],
        )
        .unwrap()
        .get(0);
    let expected: i64 = c.query_one(oracle(&t).as_str(), &[]).unwrap().get(0);
    // A partition 60 days old: bot 5's rows in it are expired (30 days),
    // nobody else's (90 days).
    let part: String = c
        .query_one(
            "SELECT p.partition::text FROM retention.partitions('conversations') p
              WHERE p.lower_bound <= now() - interval '60 days' AND p.upper_bound > now() - interval '60 days'",
            &[],
        )
        .unwrap()
        .get(0);
    let scans = |c: &mut postgres::Client| -> i64 {
        std::thread::sleep(Duration::from_millis(1200));
        c.query_one(
            "SELECT coalesce(seq_scan, 0) FROM pg_stat_user_tables WHERE relid = $1::text::regclass",
            &[&part],
        )
        .unwrap()
        .get(0)
    };
    let before = scans(&mut c);
    d.run_at("conversations", &t);
    let after = scans(&mut c);

    let left = d.count("app.conversations");
    assert_eq!(left, expected);
    let still: i64 = c.query_one(oracle(&t).as_str(), &[]).unwrap().get(0);
    assert_eq!(still, left, "a row was removed that the oracle keeps");
    let bot5: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM {part} WHERE bot_id = 5"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(bot5, 0);
    let (outcome, detail): (String, String) = {
        let r = c
            .query_one(
                "SELECT outcome, coalesce(detail, '') FROM retention.run_log WHERE dataset = 'conversations' ORDER BY id DESC LIMIT 1",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(outcome, "ok", "{detail}");
    assert!(
        detail.contains("rows found through the tenant index in 6"),
        "{detail}"
    );
    // Its pages were never read in sequence: the index found bot 5's rows.
    assert_eq!(after, before, "{part} was scanned ({detail})");
    // Past 90 days only bot 3's held rows and bot 7's (365 days) were left
    // in each day: they were copied out, the neighbouring days' together
    // into one partition spanning their range, which holds them alone.
    assert!(
        detail.contains("row(s) were copied to a new partition"),
        "{detail}"
    );
    let old = c
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE c.bot_id NOT IN (3, 7)),
                    count(DISTINCT c.tableoid), min(c.tableoid::regclass::text)
               FROM app.conversations c WHERE c.started_at < now() - interval '100 days'",
            &[],
        )
        .unwrap();
    assert!(old.get::<_, i64>(0) > 0);
    assert_eq!(old.get::<_, i64>(1), 0);
    // The rows reach back 120 days: those of the 20 days from 100 to 120
    // days old are in 2 partitions (of at most 12 days each), not 20.
    assert_eq!(old.get::<_, i64>(2), 2, "neighbouring days copied together");
    let name = old.get::<_, String>(3);
    assert!(
        name.starts_with("app.conversations_p")
            && name.len() == "app.conversations_p20260101_20260125".len(),
        "{name}: named for its range"
    );
    assert!(
        detail.contains("neighbouring ones were copied together, into 3 partition(s)"),
        "{detail}"
    );
    let deleted: i64 = c
        .query_one(
            "SELECT rows_deleted FROM retention.run_log WHERE dataset = 'conversations' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    // Row by row only bot 5's expired rows, not the held days' others.
    assert!(deleted < 20_000, "{deleted} rows deleted one by one");
}

/// Imported history: applied on an empty table, then 400 days of rows
/// imported. The rows within every retention land in their partitions
/// (premake made them back to the longest retention); the older ones land
/// in the default partition, past every retention but a hold's. The run
/// keeps only the held ones: copied to a new default partition, the old
/// one dropped, nothing deleted row by row.
#[test]
fn imported_history_in_the_default_partition_is_dropped_not_deleted() {
    let d = Deployed::new(POLICY);
    let mut c = d.app();
    d.sql(
        "INSERT INTO app.conversations (bot_id, started_at, body)
         SELECT (n / 400) % 20, now() - (n % 400) * interval '1 day' - (n % 3600) * interval '1 second', 'imported ' || n
           FROM generate_series(1, 100000) AS n;
         ANALYZE app.conversations",
    );
    let in_default: i64 = c
        .query_one("SELECT count(*) FROM ONLY app.conversations_default", &[])
        .unwrap()
        .get(0);
    assert!(
        in_default > 70_000,
        "{in_default} rows in the default partition"
    );
    let t: String = c
        .query_one(
            "SELECT to_char(date_trunc('second', now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'",
            &[],
        )
        .unwrap()
        .get(0);
    let oracle = format!(
        "SELECT count(*) FROM app.conversations c
          WHERE c.bot_id = 3 OR NOT (c.started_at + interval '90 days' < '{t}'::timestamptz)"
    );
    let expected: i64 = c.query_one(oracle.as_str(), &[]).unwrap().get(0);
    d.run_at("conversations", &t);
    assert_eq!(d.count("app.conversations"), expected);
    let r = c
        .query_one(
            "SELECT outcome, coalesce(detail, ''), rows_deleted,
                    (SELECT count(*) FROM ONLY app.conversations_default WHERE bot_id <> 3)
               FROM retention.run_log WHERE dataset = 'conversations' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    let detail: String = r.get(1);
    assert_eq!(r.get::<_, String>(0), "ok", "{detail}");
    assert!(
        detail.contains("row(s) were copied to a new partition"),
        "{detail}"
    );
    assert!(
        r.get::<_, i64>(2) < 1_000,
        "{} rows deleted one by one",
        r.get::<_, i64>(2)
    );
    assert_eq!(
        r.get::<_, i64>(3),
        0,
        "only held rows are left in the default partition"
    );
}

/// Steady state under a hold: once a run has copied the held rows out of
/// partitions past every retention, those partitions hold nothing but held
/// rows. Later runs find that through the tenant index (no row outside the
/// held tenants) and leave them alone: their pages are not read again run
/// after run while the hold lasts. Released, they go at drop cost.
#[test]
fn partitions_of_held_rows_alone_are_not_read_each_run() {
    let d = Deployed::new(POLICY);
    d.backfill_partitions("conversations", 130);
    let mut c = d.app();
    d.sql(
        "INSERT INTO app.conversations (bot_id, started_at, body)
         SELECT (n / 120) % 20, now() - (n % 120) * interval '1 day' - (n % 3600) * interval '1 second', 'conversation ' || n
           FROM generate_series(1, 200000) AS n;
         ANALYZE app.conversations",
    );
    let at = |days: i32| -> String {
        let mut c = d.app();
        c.query_one(
            "SELECT to_char(date_trunc('second', now() + $1::int * interval '1 day') AT TIME ZONE 'UTC',
                            'YYYY-MM-DD HH24:MI:SS') || '+00'",
            &[&days],
        )
        .unwrap()
        .get(0)
    };
    // 400 days on, every row but the held bot 3's is past its retention:
    // the held ones (a twentieth) are copied out, the rest dropped.
    d.run_at("conversations", &at(400));
    let held: i64 = c
        .query_one(
            "SELECT count(*) FROM app.conversations WHERE bot_id = 3",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(held > 9_000, "{held} held rows");
    assert_eq!(d.count("app.conversations"), held);
    d.sql("VACUUM ANALYZE app.conversations");
    let touched = |c: &mut postgres::Client| -> (i64, i64) {
        std::thread::sleep(Duration::from_millis(1200));
        let r = c
            .query_one(
                "SELECT coalesce(sum(coalesce(s.heap_blks_read, 0) + coalesce(s.heap_blks_hit, 0)), 0)::bigint,
                        coalesce(sum(c.relpages), 0)::bigint
                   FROM retention.partitions('conversations') p
                   JOIN pg_statio_user_tables s ON s.relid = p.partition
                   JOIN pg_class c ON c.oid = p.partition",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let (before, pages) = touched(&mut c);
    d.run_at("conversations", &at(401));
    let (after, _) = touched(&mut c);
    assert_eq!(d.count("app.conversations"), held);
    let parts: i64 = c
        .query_one(
            "SELECT count(DISTINCT tableoid) FROM app.conversations",
            &[],
        )
        .unwrap()
        .get(0);
    eprintln!(
        "held rows in {parts} partition(s) of {pages} pages: the run touched {} heap block(s)",
        after - before
    );
    // At most a page or two per partition (the index's first match), never
    // the held rows' pages themselves.
    assert!(
        after - before <= 2 * parts && (after - before) * 4 < pages,
        "{} heap blocks touched of {pages} (in {parts} partitions)",
        after - before
    );
    // Released, the hold's rows are past their retention: dropped whole.
    let released = POLICY.split("holds:").next().unwrap_or(POLICY);
    d.deploy(released);
    d.run_at("conversations", &at(402));
    assert_eq!(d.count("app.conversations"), 0);
    let deleted: i64 = c
        .query_one(
            "SELECT rows_deleted FROM retention.run_log WHERE dataset = 'conversations' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(deleted, 0, "dropped, not deleted row by row");
}

const ARCHIVED: &str = r#"
version: 1
datasets:
  events:
    description: Events, archived when they end.
    table: app.events
    columns:
      id: bigint generated always as identity
      bot_id: integer not null
      at: timestamptz not null
    time: at
    tenant: bot_id
    keep: 30 days
    partition: day
    on_expiry: archive
    archive: { schema: archive, keep: 60 days }
"#;

/// Archive expiry follows what it removes: an archive month none of whose
/// rows can be past its deadline plus the archive's keep is not read, one
/// all of whose rows are is dropped whole, and the months between are
/// deleted from batch by batch; the rows left are exactly those whose
/// deadline plus the keep has not passed, at every T.
#[test]
fn archive_months_past_their_keep_are_dropped_whole() {
    let d = Deployed::new(ARCHIVED);
    d.backfill_partitions("events", 140);
    let mut c = d.app();
    // 130 days of rows, one every 10 minutes: deadlines from 100 days ago
    // to now.
    d.sql(
        "INSERT INTO app.events (bot_id, at)
         SELECT n % 7, now() - interval '30 days' - n * interval '10 minutes'
           FROM generate_series(0, 100 * 144) AS n;
         INSERT INTO app.events (bot_id, at) SELECT 1, now() - interval '1 day';
         ANALYZE app.events;
         CREATE TABLE public.truth AS SELECT id, at FROM app.events",
    );
    let t0: String = c
        .query_one(
            "SELECT to_char(date_trunc('second', now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'",
            &[],
        )
        .unwrap()
        .get(0);
    // At each T the archive holds exactly the rows that expired by T
    // (deadline at + 30 days before T, so archived by a run at or before
    // T) whose deadline plus 60 days is not before T.
    let check = |c: &mut postgres::Client, t: &str| {
        let r = c
            .query_one(
                &format!(
                    "WITH want AS (SELECT id FROM public.truth
                                    WHERE at + interval '30 days' < '{t}'::timestamptz
                                      AND NOT (at + interval '90 days' < '{t}'::timestamptz)),
                          arch AS (SELECT id FROM archive.events UNION ALL SELECT id FROM archive.events_moved)
                     SELECT (SELECT count(*) FROM arch),
                            (SELECT count(*) FROM want WHERE id NOT IN (SELECT id FROM arch)),
                            (SELECT count(*) FROM arch WHERE id NOT IN (SELECT id FROM want)),
                            (SELECT count(*) FROM archive.events WHERE retention_deadline <> at + interval '30 days')"
                ),
                &[],
            )
            .unwrap();
        let (n, over, under, wrong): (i64, i64, i64, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        assert_eq!(
            (over, under, wrong),
            (0, 0, 0),
            "at {t}: {n} archived rows; over-deleted, under-deleted, wrong deadlines"
        );
        n
    };
    d.run_at("events", &t0);
    // Archived: the rows of the last 60 days of deadlines (at from 90 to 30
    // days ago); the older ones were archived and removed in the same run.
    let kept = check(&mut c, &t0);
    assert!(
        kept > 8_000,
        "{kept} rows whose deadline plus 60 days is ahead"
    );
    let in_default: i64 = c
        .query_one("SELECT count(*) FROM ONLY archive.events_default", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        in_default, 0,
        "every archived row has its month's partition"
    );
    // 40 days on: months whose rows are all past are dropped, the rest
    // read batch by batch; 100 days on, every month is past.
    let mut dropped_whole = false;
    for days in [40, 100] {
        let t: String = c
            .query_one(
                "SELECT to_char(($1::text::timestamptz + make_interval(days => $2)) AT TIME ZONE 'UTC',
                                'YYYY-MM-DD HH24:MI:SS') || '+00'",
                &[&t0, &days],
            )
            .unwrap()
            .get(0);
        d.run_at("events", &t);
        let left = check(&mut c, &t);
        let r = c
            .query_one(
                "SELECT outcome, coalesce(detail, '') FROM retention.run_log WHERE dataset = 'events' ORDER BY id DESC LIMIT 1",
                &[],
            )
            .unwrap();
        let detail: String = r.get(1);
        assert_eq!(r.get::<_, String>(0), "ok", "{detail}");
        dropped_whole |= detail.contains("archive partition(s) dropped whole");
        if days == 100 {
            assert_eq!(left, 0);
        }
    }
    assert!(dropped_whole, "no archive month was dropped whole");
    // The dropped months do not come back.
    let months: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'archive.events'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(months <= 6, "{months} archive partitions left");
}
