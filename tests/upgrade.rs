//! Deployed databases upgrade in place: a database running the committed
//! V1 of the example policy (runtime version 1, no `access`), with data,
//! run-time settings, holds and a run log, takes the committed `generated/`
//! (V2: runtime version 2 and `access`) and keeps every setting, hold and
//! log row; the machinery and the tables then belong to the owner role, the
//! jobs run as it, and enforcement is exact.
//!
//! `tests/upgrade/v1/` is V1 as it was deployed: `V1__init.sql` and the
//! state file `compile` wrote with it.

mod common;

use std::path::Path;

use common::Cluster;
use pgretain::cmd::apply::{apply, ApplyOptions};

fn apply_dir(url: &str, dir: &Path) -> Vec<String> {
    apply(&ApplyOptions {
        database_url: Some(url.to_string()),
        generated_dir: dir.to_path_buf(),
        dry_run: false,
        cron_database: None,
    })
    .unwrap_or_else(|e| panic!("apply {}: {e}", dir.display()))
    .migrations
}

fn rows(db: &mut postgres::Client, sql: &str) -> Vec<String> {
    db.query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn the_committed_v1_upgrades_in_place_keeping_settings_holds_and_the_run_log() {
    // The V1 that was deployed is the V1 in generated/, byte for byte.
    let v1 = std::fs::read("tests/upgrade/v1/V1__init.sql").unwrap();
    assert!(
        v1 == std::fs::read("generated/V1__init.sql").unwrap(),
        "generated/V1__init.sql changed: applied migrations must never change"
    );

    let cluster = Cluster::start();
    cluster.create_example_roles();
    let url = cluster.create_database("app");
    assert_eq!(apply_dir(&url, Path::new("tests/upgrade/v1")), ["V1__init"]);
    let mut db = cluster.client("app");
    // Life under V1: rows (one session with a forged stamp, which V1
    // kept), a tenant setting, a run, an erasure logged with its key.
    db.batch_execute(
        "SELECT retention.create_partition('conversations', d)
           FROM generate_series(date_trunc('day', now() - interval '400 days', 'UTC'), now(), interval '1 day') d;
         SELECT retention.create_partition('sessions', d)
           FROM generate_series(date_trunc('day', now() - interval '30 days', 'UTC'), now(), interval '1 day') d;
         INSERT INTO app.conversations (bot_id, environment, conversation_id, channel, started_at)
         SELECT 'bot-' || (g % 5), CASE WHEN g % 2 = 0 THEN 'live' ELSE 'draft' END, gen_random_uuid(), 'web',
                now() - g * interval '1 day'
           FROM generate_series(0, 399) g;
         INSERT INTO app.sessions (bot_id, environment, conversation_id, last_activity_at, retention_keep) VALUES
           ('bot-1', 'live', '00000000-0000-0000-0000-0000000000aa', now() - interval '20 days', '1 second'),
           ('bot-1', 'live', gen_random_uuid(), now() - interval '10 days', NULL);
         INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep)
           VALUES ('conversations', 'bot-3', NULL, '200 days');",
    )
    .unwrap();
    db.batch_execute(r#"CALL retention."enforce_error_logs"()"#)
        .unwrap();
    db.query(
        "SELECT * FROM retention.erase('sessions', 'secret-key')",
        &[],
    )
    .unwrap();
    let forged: String = db
        .query_one(
            "SELECT retention_keep::text FROM app.sessions WHERE conversation_id = '00000000-0000-0000-0000-0000000000aa'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(forged, "00:00:01", "runtime version 1 kept a forged stamp");
    let log_before = rows(
        &mut db,
        "SELECT id::text || ' ' || dataset || ' ' || action FROM retention.run_log ORDER BY id",
    );
    let settings_before = rows(
        &mut db,
        "SELECT dataset || ' ' || tenant || ' ' || keep::text FROM retention.tenant_setting",
    );
    let holds_before = rows(
        &mut db,
        "SELECT dataset || ' ' || tenant || ' ' || reason FROM retention.hold",
    );
    let overrides_before = rows(&mut db, "SELECT dataset || ' ' || coalesce(tenant, '-') || ' ' || coalesce(environment, '-') || ' ' || keep::text FROM retention.policy_override ORDER BY 1");
    let conversations_before: i64 = db
        .query_one("SELECT count(*) FROM app.conversations", &[])
        .unwrap()
        .get(0);

    // The upgrade: the committed generated/ (V1, then V2, V3, V4, V5, V6 and V7).
    assert_eq!(
        apply_dir(&url, Path::new("generated")),
        [
            "V2__upgrade_runtime_and_access",
            "V3__upgrade_runtime_and_subjects",
            "V4__upgrade_runtime",
            "V5__upgrade_runtime",
            "V6__upgrade_runtime",
            "V7__upgrade_runtime"
        ]
    );
    let mut db = cluster.client("app");
    assert_eq!(
        rows(
            &mut db,
            "SELECT id::text || ' ' || dataset || ' ' || action FROM retention.run_log ORDER BY id"
        ),
        log_before
    );
    assert_eq!(
        rows(
            &mut db,
            "SELECT dataset || ' ' || tenant || ' ' || keep::text FROM retention.tenant_setting"
        ),
        settings_before
    );
    assert_eq!(
        rows(
            &mut db,
            "SELECT dataset || ' ' || tenant || ' ' || reason FROM retention.hold"
        ),
        holds_before
    );
    assert_eq!(rows(&mut db, "SELECT dataset || ' ' || coalesce(tenant, '-') || ' ' || coalesce(environment, '-') || ' ' || keep::text FROM retention.policy_override ORDER BY 1"), overrides_before);
    let n: i64 = db
        .query_one("SELECT count(*) FROM app.conversations", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, conversations_before, "the upgrade removed no row");
    // The key of the earlier erasure is now its hash.
    let erase_detail: String = db
        .query_one(
            "SELECT detail FROM retention.run_log WHERE action = 'erase'",
            &[],
        )
        .unwrap()
        .get(0);
    let hash: String = db
        .query_one(
            "SELECT encode(sha256(convert_to('secret-key', 'UTF8')), 'hex')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(erase_detail, format!("erase_by sha256 = {hash}"));
    // The forged stamp is the retention in force; the honest one is untouched.
    let stamps = rows(
        &mut db,
        "SELECT retention_keep::text FROM app.sessions ORDER BY last_activity_at",
    );
    assert_eq!(stamps, ["30 days", "30 days"]);
    // The descriptions are stored.
    let desc: String = db
        .query_one(
            "SELECT description FROM retention.dataset WHERE name = 'sessions'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(desc.starts_with("Session information"), "{desc}");
    // Everything belongs to the owner now.
    let foreign = rows(
        &mut db,
        "SELECT c.oid::regclass::text FROM pg_class c
          WHERE (c.relnamespace IN ('retention'::regnamespace, 'archive'::regnamespace)
                 OR c.oid IN (SELECT relid FROM retention.dataset d, pg_partition_tree(d.relation::regclass)))
            AND c.relkind IN ('r', 'p', 'v')
            AND c.relowner <> 'retention_owner'::regrole
          UNION ALL
         SELECT p.oid::regprocedure::text FROM pg_proc p
          WHERE p.pronamespace = 'retention'::regnamespace AND p.proowner <> 'retention_owner'::regrole",
    );
    assert!(foreign.is_empty(), "not the owner's: {foreign:?}");
    // The jobs run as the owner, once each (the superuser's are gone).
    let mut cron = cluster.client("postgres");
    let jobs = rows(
        &mut cron,
        "SELECT jobname::text || ' ' || username FROM cron.job ORDER BY 1",
    );
    assert_eq!(
        jobs,
        [
            "pgretain:app:conversations retention_owner",
            "pgretain:app:error_logs retention_owner",
            "pgretain:app:sessions retention_owner",
            "pgretain:app:training_expressions retention_owner",
            "pgretain:trim-job-run-details retention_owner",
        ]
    );
    // Enforcement is exact, run as pg_cron would: by the owner.
    let mut owner = postgres::Client::connect(
        &cluster
            .conninfo("app")
            .replace("user=postgres", "user=retention_owner"),
        postgres::NoTls,
    )
    .unwrap();
    owner
        .batch_execute(r#"CALL retention."enforce_conversations"()"#)
        .unwrap();
    let overdue: i64 = db
        .query_one("SELECT count(*) FROM retention.expired_conversations", &[])
        .unwrap()
        .get(0);
    assert_eq!(overdue, 0);
    let outcome: String = db
        .query_one(
            "SELECT outcome FROM retention.run_log WHERE dataset = 'conversations' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(outcome, "ok");
    // Every remembered retention is kept, in force until a run sees
    // otherwise (runtime version 4); a run of the new_rows dataset, as the
    // owner, marks what no source gives any more and forgets nothing yet.
    let unmarked: i64 = db
        .query_one(
            "SELECT count(*) FROM retention.keep_history WHERE out_of_force_xmax IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    let remembered: i64 = db
        .query_one("SELECT count(*) FROM retention.keep_history", &[])
        .unwrap()
        .get(0);
    assert_eq!(unmarked, remembered);
    owner
        .batch_execute(r#"CALL retention."enforce_sessions"()"#)
        .unwrap();
    let (outcome, after): (String, i64) = db
        .query_one(
            "SELECT (SELECT outcome FROM retention.run_log WHERE dataset = 'sessions' ORDER BY id DESC LIMIT 1),
                    (SELECT count(*) FROM retention.keep_history)",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((outcome.as_str(), after), ("ok", remembered));
    // No row within its retention was removed: the youngest rows of every
    // tenant (draft conversations keep 730 days, live 365, bot-3 200,
    // bot-7 is held) are all still there.
    let young: i64 = db
        .query_one(
            "SELECT count(*) FROM app.conversations WHERE started_at > now() - interval '199 days'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(young, 199);
    // And verify finds nothing: the database is what generated/ says.
    let report = pgretain::cmd::verify::verify(&pgretain::cmd::verify::VerifyOptions {
        database_url: Some(url.clone()),
        generated_dir: "generated".into(),
        cron_database: None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let unexpected: Vec<String> = report.findings.iter().map(|f| f.message.clone()).collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
}
