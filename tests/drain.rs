//! SPEC §3 "History and the default partition": an adopted table's old
//! storage (one partition, `[MINVALUE, F)`) is drained by the run: its rows
//! still within retention move to partitions of their own periods, and it
//! is dropped with its expired rows (`retention.run_drain`). These tests
//! prove that the drain loses and changes nothing while the application
//! writes to the old rows, and that a drain interrupted and resumed by a
//! later run, or started over because a setting changed, is still exact.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::deploy::Deployed;

const POLICY: &str = r#"
version: 1
datasets:
  events:
    description: Events of an existing application table.
    table: public.events
    time: at
    tenant: account
    unique_keys: include_time
    keep: 90 days
    max_keep: 400 days
    partition: week

holds:
  - tenant: "3"
    datasets: [events]
    reason: "litigation hold 2026-77"
"#;

/// The application's table, 40,000 rows over 400 days (10 accounts), and a
/// shadow copy the test keeps in step with every write it makes.
const TABLE: &str = r#"
CREATE TABLE public.events (
    id bigserial PRIMARY KEY,
    account integer NOT NULL,
    at timestamptz NOT NULL,
    body text NOT NULL,
    attrs jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX events_at ON public.events (at);
CREATE INDEX events_body ON public.events (lower(body));
INSERT INTO public.events (account, at, body, attrs)
SELECT n % 10, now() - (n % 400) * interval '1 day' - (n % 3600) * interval '1 second',
       'event ' || n, jsonb_build_object('n', n)
  FROM generate_series(1, 40000) AS n;
CREATE TABLE public.shadow AS SELECT * FROM public.events;
"#;

fn deployed() -> Deployed {
    let d = Deployed::compiled(POLICY);
    d.sql(TABLE);
    d.apply();
    d
}

/// The rows of `from` (SQL after FROM) as one digest.
fn digest(c: &mut postgres::Client, from: &str) -> String {
    c.query_one(
        &format!(
            "SELECT md5(string_agg(format('%s|%s|%s|%s|%s', e.id, e.account, e.at, e.body, e.attrs), ';' ORDER BY e.id)) FROM {from}"
        ),
        &[],
    )
    .unwrap()
    .get(0)
}

/// What the oracle keeps at T, from the shadow: 90 days (`extra` adds
/// tenant rules), account 3 held.
fn kept(t: &str, extra: &str) -> String {
    kept_held(t, extra, true)
}

fn kept_held(t: &str, extra: &str, held: bool) -> String {
    format!(
        "public.shadow e WHERE (e.account = 3 AND {held})
            OR NOT (e.at + CASE WHEN false THEN NULL {extra} ELSE interval '90 days' END < '{t}'::timestamptz)"
    )
}

fn old_storage_exists(c: &mut postgres::Client) -> bool {
    c.query_one(
        "SELECT to_regclass('public.events_adopted') IS NOT NULL",
        &[],
    )
    .unwrap()
    .get(0)
}

fn last_detail(c: &mut postgres::Client) -> (String, String) {
    let r = c
        .query_one(
            "SELECT outcome, coalesce(detail, '') FROM retention.run_log WHERE dataset = 'events' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

fn now_t(c: &mut postgres::Client, days_later: i32) -> String {
    c.query_one(
        "SELECT to_char((date_trunc('second', now()) + $1::int * interval '1 day') AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'",
        &[&days_later],
    )
    .unwrap()
    .get(0)
}

#[test]
fn the_drain_follows_every_write_the_application_makes_meanwhile() {
    let d = deployed();
    let mut c = d.app();
    assert!(old_storage_exists(&mut c));
    let t = now_t(&mut c, 0);

    // The application updates, deletes and inserts (late events, 50 days
    // old: into the old storage) rows of the old storage throughout the run,
    // each write made to the shadow in the same transaction.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, writes, url) = (stop.clone(), writes.clone(), d.url.clone());
        std::thread::spawn(move || {
            let mut app = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let mut n: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = (n * 7919) % 40000 + 1;
                let sql = match n % 4 {
                    0 | 1 => format!(
                        "BEGIN;
                         UPDATE public.events SET body = body || ' +{n}', attrs = attrs || jsonb_build_object('u', {n}) WHERE id = {id};
                         UPDATE public.shadow SET body = body || ' +{n}', attrs = attrs || jsonb_build_object('u', {n}) WHERE id = {id};
                         COMMIT;"
                    ),
                    2 => format!(
                        "BEGIN;
                         DELETE FROM public.events WHERE id = {id};
                         DELETE FROM public.shadow WHERE id = {id};
                         COMMIT;"
                    ),
                    _ => format!(
                        "BEGIN;
                         WITH i AS (INSERT INTO public.events (account, at, body)
                                    VALUES ({n} % 10, date_trunc('second', now()) - interval '50 days', 'late {n}')
                                    RETURNING *)
                         INSERT INTO public.shadow SELECT * FROM i;
                         COMMIT;"
                    ),
                };
                app.batch_execute(&sql).unwrap();
                writes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let before = writes.load(Ordering::Relaxed);
    d.run_at("events", &t);
    let during = writes.load(Ordering::Relaxed) - before;
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();

    let (outcome, detail) = last_detail(&mut c);
    assert_eq!(outcome, "ok", "{detail}");
    assert!(detail.contains("drained"), "{detail}");
    assert!(!old_storage_exists(&mut c));
    eprintln!("{during} writes by the application during the run; {detail}");
    assert!(
        during > 20,
        "the load must overlap the drain ({during} writes)"
    );
    // Exactly the oracle's rows, with every write the application made.
    assert_eq!(
        digest(&mut c, "public.events e"),
        digest(&mut c, &kept(&t, ""))
    );
    let left: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM retention.drain) + (SELECT count(*) FROM retention.drain_log)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    // No row within its retention sits in a default partition.
    let in_default: i64 = c
        .query_one(
            "SELECT count(*) FROM public.events e
              WHERE e.tableoid IN ('public.events_default'::regclass, 'public.events_history_default'::regclass)
                AND e.account <> 3",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(in_default, 0);
    // The next run drops the history a period at a time: 8 weeks later,
    // whole weeks of it are gone without a row deleted. (With the hold
    // lifted: a held row in every week keeps each week's partition.)
    let unheld = POLICY.split("\nholds:").next().unwrap();
    d.deploy(unheld);
    let later = now_t(&mut c, 56);
    d.run_at("events", &later);
    let dropped: i64 = c
        .query_one(
            "SELECT cardinality(partitions_dropped)::bigint FROM retention.run_log WHERE dataset = 'events' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(dropped >= 7, "{dropped} partitions dropped");
    assert_eq!(
        digest(&mut c, "public.events e"),
        digest(&mut c, &kept_held(&later, "", false))
    );
}

/// One step of the drain at `t`, as the run makes it (20 pages a step).
fn step(c: &mut postgres::Client, t: &str) -> String {
    c.query_one(
        "SELECT d.state FROM retention.partitions('events') p,
                LATERAL retention.run_drain('events', $1::text::timestamptz, '5s', p.partition, p.upper_bound, 20) d
          WHERE p.partition = 'public.events_adopted'::regclass",
        &[&t],
    )
    .unwrap()
    .get(0)
}

#[test]
fn a_drain_resumed_by_a_later_run_or_started_over_is_exact() {
    let d = deployed();
    let mut c = d.app();
    let t1 = now_t(&mut c, 0);
    // A run at T1 that stopped after two steps: started, one batch copied.
    assert_eq!(step(&mut c, &t1), "started");
    assert_eq!(step(&mut c, &t1), "copying");
    let copied: i64 = c
        .query_one("SELECT count(*) FROM public.events_history", &[])
        .unwrap()
        .get(0);
    assert!(copied > 0);

    // Ten days later, the next run goes on from there: what expired in
    // the meantime is taken out of the copy, and the rest is exact.
    let t2 = now_t(&mut c, 10);
    d.run_at("events", &t2);
    let (outcome, detail) = last_detail(&mut c);
    assert_eq!(outcome, "ok", "{detail}");
    assert!(detail.contains("drained"), "{detail}");
    assert!(!old_storage_exists(&mut c));
    assert_eq!(
        digest(&mut c, "public.events e"),
        digest(&mut c, &kept(&t2, ""))
    );

    // Started over: a drain begun at T, then a tenant's retention is made
    // longer (rows the copy left out are live again). The run sees the
    // change, starts over, and keeps them.
    let d = deployed();
    let mut c = d.app();
    let t = now_t(&mut c, 0);
    assert_eq!(step(&mut c, &t), "started");
    assert_eq!(step(&mut c, &t), "copying");
    c.batch_execute(
        "INSERT INTO retention.tenant_setting (dataset, tenant, keep) VALUES ('events', '5', '300 days')",
    )
    .unwrap();
    let t = now_t(&mut c, 1);
    d.run_at("events", &t);
    let (outcome, detail) = last_detail(&mut c);
    assert_eq!(outcome, "ok", "{detail}");
    assert!(detail.contains("starts over"), "{detail}");
    assert!(detail.contains("drained"), "{detail}");
    assert_eq!(
        digest(&mut c, "public.events e"),
        digest(
            &mut c,
            &kept(&t, "WHEN e.account = 5 THEN interval '300 days'")
        )
    );
}
