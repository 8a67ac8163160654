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
    // in each day: they were copied out, and each day's partition, under its
    // name, holds them alone.
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
    assert!(old.get::<_, i64>(2) >= 19, "one partition per day");
    assert!(old.get::<_, String>(3).starts_with("app.conversations_p"));
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
