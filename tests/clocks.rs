//! Retention clocks that are not instants (SPEC §2 `time`, `time_zone`): a
//! `timestamp without time zone` written in a declared zone, and a `date`
//! (midnight in that zone). For each, on a real PostgreSQL: the boundary is
//! exact to the microsecond whatever the session's TimeZone, partitions
//! start at midnight in the clock's zone, rows of recent past periods land
//! in partitions (not the default), and the run, the expired view and
//! `status` read the clock the same way.

mod common;

use common::deploy::Deployed;
use postgres::Client;

/// Session time zones every check runs under: the server's (UTC), one
/// ahead of UTC by a half hour, one behind it with summer time.
const SESSION_ZONES: &[&str] = &["UTC", "Asia/Kolkata", "America/Los_Angeles"];

fn policy(clock: &str, zone: Option<&str>) -> String {
    let zone = zone
        .map(|z| format!("    time_zone: {z}\n"))
        .unwrap_or_default();
    format!(
        r#"
version: 1
datasets:
  events:
    description: Test events with a wall-time clock.
    table: app.events
    columns:
      id: bigint generated always as identity
      label: text not null
      at: {clock} not null
    time: at
{zone}    keep: 10 days
    partition: day
"#
    )
}

/// A client of database `app` whose session runs in `zone`.
fn session(d: &Deployed, zone: &str) -> Client {
    let mut c = d.app();
    c.batch_execute(&format!("SET TimeZone = '{zone}'"))
        .unwrap();
    c
}

fn labels(c: &mut Client) -> Vec<String> {
    let mut v: Vec<String> = c
        .query("SELECT label FROM app.events", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    v.sort();
    v
}

/// The rows `retention.expired_predicate()` (the exact rule verify and the
/// report use) selects at `t` (its `$1`, written in as a literal).
fn expired_at(c: &mut Client, t: &str) -> Vec<String> {
    let pred: String = c
        .query_one("SELECT retention.expired_predicate('events')", &[])
        .unwrap()
        .get(0);
    let pred = pred.replace("$1", &format!("'{t}'::timestamptz"));
    let mut v: Vec<String> = c
        .query(&format!("SELECT label FROM app.events t WHERE {pred}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    v.sort();
    v
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// T: a whole hour two days ago, as an RFC 3339 text in UTC.
fn pinned_t(c: &mut Client) -> String {
    c.query_one(
        "SELECT to_char(date_trunc('hour', now() - interval '2 days') AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'",
        &[],
    )
    .unwrap()
    .get(0)
}

/// The boundary of a `timestamp` clock written in `zone`, under every
/// session zone: a row whose wall time is T - 10 days (read in `zone`) has
/// its deadline at T and stays; one microsecond earlier goes.
fn timestamp_boundary(zone: Option<&str>) {
    let d = Deployed::new(&policy("timestamp", zone));
    let z = zone.unwrap_or("UTC");
    for session_zone in SESSION_ZONES {
        let mut c = session(&d, session_zone);
        let t = pinned_t(&mut c);
        c.batch_execute(&format!(
            "DELETE FROM app.events;
             INSERT INTO app.events (label, at) VALUES
               ('deadline T-1us', ('{t}'::timestamptz AT TIME ZONE '{z}') - interval '10 days' - interval '1 microsecond'),
               ('deadline T',     ('{t}'::timestamptz AT TIME ZONE '{z}') - interval '10 days'),
               ('deadline T+1us', ('{t}'::timestamptz AT TIME ZONE '{z}') - interval '10 days' + interval '1 microsecond'),
               ('deadline T-1d',  ('{t}'::timestamptz AT TIME ZONE '{z}') - interval '11 days'),
               ('today',          (now() AT TIME ZONE '{z}'))"
        ))
        .unwrap();
        assert_eq!(
            expired_at(&mut c, &t),
            sorted(&["deadline T-1d", "deadline T-1us"]),
            "expired_predicate, timestamp clock in {z}, session TimeZone {session_zone}"
        );
        // (A CALL that commits must be a statement of its own.)
        c.batch_execute(&format!(
            "CALL retention.\"enforce_events\"(p_now => '{t}'::timestamptz)"
        ))
        .unwrap();
        assert_eq!(
            labels(&mut c),
            sorted(&["deadline T", "deadline T+1us", "today"]),
            "timestamp clock in {z}, session TimeZone {session_zone}"
        );
    }
}

#[test]
fn a_timestamp_clock_in_utc_is_exact_under_any_session_zone() {
    timestamp_boundary(None);
}

#[test]
fn a_timestamp_clock_in_another_zone_is_exact_under_any_session_zone() {
    timestamp_boundary(Some("America/New_York"));
}

#[test]
fn a_date_clock_is_exact_under_any_session_zone() {
    let d = Deployed::new(&policy("date", Some("Europe/Paris")));
    for session_zone in SESSION_ZONES {
        let mut c = session(&d, session_zone);
        // Day D, 12 days ago in Paris; its rows' instant is midnight there,
        // so their deadline is that instant + 10 days: T exactly.
        let row = c
            .query_one(
                "WITH x AS (SELECT (now() AT TIME ZONE 'Europe/Paris')::date - 12 AS day)
                 SELECT x.day::text,
                        to_char(((x.day::timestamp AT TIME ZONE 'Europe/Paris') AT TIME ZONE 'UTC') + interval '10 days',
                                'YYYY-MM-DD HH24:MI:SS') || '+00'
                   FROM x",
                &[],
            )
            .unwrap();
        let (day, t): (String, String) = (row.get(0), row.get(1));
        let insert = format!(
            "DELETE FROM app.events;
             INSERT INTO app.events (label, at) VALUES
               ('day before D', '{day}'::date - 1),
               ('D',            '{day}'::date),
               ('day after D',  '{day}'::date + 1)"
        );
        c.batch_execute(&insert).unwrap();
        assert_eq!(
            expired_at(&mut c, &t),
            sorted(&["day before D"]),
            "expired_predicate, date clock, session TimeZone {session_zone}"
        );
        c.batch_execute(&format!(
            "CALL retention.\"enforce_events\"(p_now => '{t}'::timestamptz)"
        ))
        .unwrap();
        assert_eq!(
            labels(&mut c),
            sorted(&["D", "day after D"]),
            "date clock, run at T, session TimeZone {session_zone}"
        );
        c.batch_execute(&insert).unwrap();
        c.batch_execute(&format!(
            "CALL retention.\"enforce_events\"(p_now => '{t}'::timestamptz + interval '1 microsecond')"
        ))
        .unwrap();
        assert_eq!(
            labels(&mut c),
            sorted(&["day after D"]),
            "date clock, run at T + 1us, session TimeZone {session_zone}"
        );
    }
}

#[test]
fn partitions_of_a_wall_time_clock_start_at_midnight_in_its_zone_and_reach_back() {
    let d = Deployed::new(&policy("timestamp", Some("America/New_York")));
    let mut c = session(&d, "Asia/Kolkata");
    // Every partition's bounds are midnights, as wall times of the clock.
    let bounds: Vec<String> = c
        .query(
            "SELECT pg_get_expr(c.relpartbound, c.oid)
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'app.events'::regclass
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .filter(|b: &String| b != "DEFAULT")
        .collect();
    assert!(bounds.len() > 20, "{bounds:?}");
    for b in &bounds {
        assert!(
            b.starts_with("FOR VALUES FROM ('") && b.matches(" 00:00:00')").count() == 2,
            "a bound that is not a local midnight: {b}"
        );
    }
    // Rows written for every day of the retention (late events, an import)
    // land in partitions, none in the default one; the partitions the
    // runtime reports as instants hold midnight New York.
    c.batch_execute(
        "INSERT INTO app.events (label, at)
         SELECT 'day ' || n, (now() AT TIME ZONE 'America/New_York') - n * interval '1 day'
           FROM generate_series(0, 10) AS n",
    )
    .unwrap();
    let in_default: i64 = c
        .query_one("SELECT count(*) FROM ONLY app.events_default", &[])
        .unwrap()
        .get(0);
    assert_eq!(in_default, 0);
    let not_midnight: i64 = c
        .query_one(
            "SELECT count(*) FROM retention.partitions('events')
              WHERE lower_bound IS NOT NULL
                AND (lower_bound AT TIME ZONE 'America/New_York')::time <> '00:00'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(not_midnight, 0);
}

#[test]
fn the_view_and_status_read_a_wall_time_clock_as_the_run_does() {
    let d = Deployed::new(&policy("timestamp", Some("Asia/Tokyo")));
    d.sql(
        "INSERT INTO app.events (label, at) VALUES
           ('expired', (now() AT TIME ZONE 'Asia/Tokyo') - interval '10 days 1 minute'),
           ('live',    (now() AT TIME ZONE 'Asia/Tokyo') - interval '9 days 23 hours')",
    );
    let mut c = session(&d, "America/Los_Angeles");
    let expired: Vec<String> = c
        .query("SELECT label FROM retention.expired_events", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(expired, vec!["expired".to_string()]);
    // status: the oldest row, as an instant, is 10 days and a minute old.
    let st = pgretain::cmd::status::status(&pgretain::cmd::status::StatusOptions {
        database_url: Some(d.url.clone()),
        cron_database: None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let oldest = st.datasets[0].oldest_row.expect("an oldest row");
    let age = chrono::Utc::now() - oldest;
    assert!(
        (age.num_seconds() - (10 * 86_400 + 60)).abs() < 120,
        "oldest row read as {oldest} ({} s old)",
        age.num_seconds()
    );
    d.run_job("events");
    assert_eq!(d.labels("app.events"), vec!["live".to_string()]);
}
