//! `engine: citus` on a real Citus cluster (SPEC §3 "Citus"): a coordinator
//! and two workers, each a throwaway cluster (tests/common/citus.rs).
//!
//! * the property test's random policies, enforced by the same procedure
//!   the jobs call, checked row by row against the oracle of
//!   tests/property.rs (0 over-deleted, 0 under-deleted), with partitions
//!   dropped on both workers;
//! * a policy with every kind of rule the guarantee tests cover (per-tenant
//!   and per-environment retention, holds, new_rows stamps, a sliding
//!   clock, archive and its expiry, erasure by key and by subject,
//!   sensitive keys), checked row by row;
//! * the example policy compiled for Citus, applied, distributed as it says
//!   and enforced by pg_cron firing on the coordinator; `status`, `verify`
//!   and `report` against the coordinator.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::citus::CitusCluster;
use common::deploy::{compile_and_apply, deploy_policy as deploy};
use common::oracle::{check_case_with, Case, Rng};
use postgres::Client;

/// How many shards (tables on the workers) of partitions of `app.<table>`
/// each worker holds.
fn partition_shards(citus: &CitusCluster, db: &str, table: &str) -> Vec<i64> {
    citus.shards_on_workers(db, "app", &format!("{table}_p[0-9]+"))
}

#[test]
fn random_policies_on_citus_remove_exactly_the_expired_rows() {
    let cases: u64 = std::env::var("PGRETAIN_CITUS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let citus = CitusCluster::start();
    let (mut checked, mut removed) = (0usize, 0usize);
    let (mut seen_index, mut seen_drop) = (false, false);
    for case_no in 0..cases {
        // The same cases as tests/property.rs, in the same order.
        let mut r = Rng(0x9E37_79B9_7F4A_7C15 ^ (case_no + 1).wrapping_mul(0x1000_0000_01B3));
        let case = Case::random(&mut r);
        let db = format!("case{case_no}");
        let url = citus.create_database(&db);
        let _files = deploy(&case.policy_for("citus"), &url);
        let mut c = citus.coordinator.client(&db);
        // The table is distributed, by its tenant, across both workers.
        let method: String = c
            .query_one(
                "SELECT partmethod::text FROM pg_dist_partition WHERE logicalrelid = 'app.d'::regclass",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(method, "h");
        let mut before_tables = Vec::new();
        let seen = check_case_with(&mut c, case_no, &mut r, &case, &mut |_| {
            let before = partition_shards(&citus, &db, "d");
            assert!(
                before.iter().all(|&n| n > 0),
                "case {case_no}: shards per worker {before:?}"
            );
            before_tables = citus.shard_tables(&db, "app", "d_p[0-9]+");
        });
        // Each partition is a table on the coordinator and a shard on the
        // workers: a dropped partition's shards are gone from both.
        let dropped: Vec<String> = c
            .query(
                "SELECT unnest(partitions_dropped) FROM retention.run_log WHERE dataset = 'd'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        for p in &dropped {
            let name = p.trim_start_matches("app.").trim_matches('"');
            assert!(
                before_tables.iter().all(|w| w.contains(name)),
                "case {case_no}: partition {p} had shards on both workers before the runs"
            );
            assert_eq!(
                citus.shards_on_workers(&db, "app", name),
                vec![0, 0],
                "case {case_no}: partition {p} dropped, its shards must be gone from both workers"
            );
        }
        for detail in &seen.details {
            seen_index |= detail.contains("rows found through the tenant index");
            seen_drop |= !detail.ends_with(" dropped=0");
            assert!(
                !detail.contains("error ("),
                "case {case_no}: a run met an error on Citus: {detail}"
            );
        }
        checked += seen.rows;
        removed += seen.removed;
    }
    eprintln!("citus: {cases} random policies, {checked} row checks, {removed} rows removed: 0 over-deleted, 0 under-deleted");
    assert!(
        removed > 0 && removed < checked,
        "the cases must remove some rows and keep others"
    );
    assert!(seen_drop && seen_index, "the cases must drop partitions and read through the tenant index (drop {seen_drop}, index {seen_index})");
}

/// One policy with every kind of rule: conversations with overrides per
/// tenant and environment, a hold, an archive, erasure and sensitive keys;
/// sessions stamped at insert (new_rows) with a sliding clock.
const SCENARIOS: &str = r#"version: 1
engine: citus
environments: [draft, live]
datasets:
  conversations:
    description: Conversations.
    table: app.conversations
    columns:
      id: bigint generated always as identity
      bot_id: text not null
      environment: text not null
      conversation_id: uuid not null
      label: text not null
      started_at: timestamptz not null
      transcript: jsonb not null default '{}'::jsonb
    time: started_at
    tenant: bot_id
    environment: environment
    keep: 30 days
    min_keep: 1 day
    max_keep: 400 days
    on_expiry: archive
    archive: { schema: archive, keep: 10 days }
    erase_by: conversation_id
    sensitive:
      transcript: [password]
  sessions:
    description: Sessions.
    table: app.sessions
    columns:
      id: bigint generated always as identity
      bot_id: text not null
      environment: text not null
      conversation_id: uuid not null
      label: text not null
      last_activity_at: timestamptz not null
    time: last_activity_at
    tenant: bot_id
    environment: environment
    keep: 20 days
    min_keep: 1 day
    max_keep: 100 days
    sliding: true
    changes_apply_to: new_rows
    erase_by: conversation_id
overrides:
  - environment: draft
    keep: { conversations: 10 days }
  - tenant: "bot-long"
    keep: { conversations: 90 days }
holds:
  - tenant: "bot-held"
    reason: "litigation 2026-1"
    datasets: [conversations]
subjects:
  conversation:
    conversations: conversation_id
    sessions: conversation_id
"#;

fn labels(c: &mut Client, table: &str) -> BTreeSet<String> {
    c.query(&format!("SELECT label FROM {table}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_kind_of_rule_is_exact_on_citus() {
    let citus = CitusCluster::start();
    let url = citus.create_database("app");
    citus.create_example_roles("app");
    let _files = deploy(SCENARIOS, &url);
    let mut c = citus.coordinator.client("app");
    // T: the runs' reference time; partitions back far enough for every row.
    let t = "2026-06-15 12:00:00+00";
    for ds in ["conversations", "sessions"] {
        c.batch_execute(&format!(
            "SELECT retention.create_partition('{ds}', g)
               FROM generate_series(timestamptz '2026-01-01', timestamptz '2026-07-01', interval '1 day') AS g"
        ))
        .unwrap();
    }
    // A run-time setting: bot-set keeps conversations 50 days.
    c.batch_execute(
        "INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep) VALUES ('conversations', 'bot-set', NULL, '50 days')",
    )
    .unwrap();
    // Conversations: (label, bot, environment, age in days at T).
    let convs: &[(&str, &str, &str, i64)] = &[
        ("live-old", "bot-a", "live", 31),       // 30 days: expired
        ("live-young", "bot-a", "live", 29),     // kept
        ("draft-old", "bot-a", "draft", 11),     // draft: 10 days: expired
        ("draft-young", "bot-a", "draft", 9),    // kept
        ("long-old", "bot-long", "draft", 91),   // tenant override 90 days beats draft: expired
        ("long-young", "bot-long", "draft", 60), // kept
        ("set-old", "bot-set", "live", 51),      // setting 50 days: expired
        ("set-young", "bot-set", "live", 40),    // kept
        ("held", "bot-held", "live", 120),       // held: kept
        ("erased", "bot-b", "live", 1),          // erased below
        ("subject", "bot-c", "live", 2),         // erased by subject below
        ("ancient", "bot-d", "live", 150),       // archived now, and its archive copy expires
    ];
    for (label, bot, env, age) in convs {
        c.execute(
            "INSERT INTO app.conversations (bot_id, environment, conversation_id, label, started_at, transcript)
             VALUES ($1, $2, CASE WHEN $3 = 'subject' THEN '00000000-0000-0000-0000-00000000000c'::uuid
                                  WHEN $3 = 'erased' THEN '00000000-0000-0000-0000-00000000000b'::uuid
                                  ELSE gen_random_uuid() END,
                     $3, $4::text::timestamptz - make_interval(days => $5::int), '{\"password\": \"hunter2\", \"text\": \"hi\"}')",
            &[bot, env, label, &t, &(*age as i32)],
        )
        .unwrap();
    }
    // Sensitive keys never reach the workers' disks.
    let stripped: i64 = c
        .query_one(
            "SELECT count(*) FROM app.conversations WHERE transcript ? 'password'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stripped, 0);
    // Sessions: stamped at insert with the retention in force then.
    c.batch_execute(&format!(
        "INSERT INTO app.sessions (bot_id, environment, conversation_id, label, last_activity_at) VALUES
           ('bot-a', 'live', gen_random_uuid(), 's-old', '{t}'::timestamptz - interval '21 days'),
           ('bot-a', 'live', gen_random_uuid(), 's-young', '{t}'::timestamptz - interval '19 days'),
           ('bot-c', 'live', '00000000-0000-0000-0000-00000000000c', 's-subject', '{t}'::timestamptz - interval '1 day')"
    ))
    .unwrap();
    // bot-x gets 60 days: rows inserted after are stamped so, earlier ones keep 20.
    c.batch_execute(&format!(
        "INSERT INTO app.sessions (bot_id, environment, conversation_id, label, last_activity_at) VALUES
           ('bot-x', 'live', gen_random_uuid(), 'x-before', '{t}'::timestamptz - interval '25 days');"
    ))
    .unwrap();
    c.batch_execute(
        "INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep) VALUES ('sessions', 'bot-x', NULL, '60 days')",
    )
    .unwrap();
    c.batch_execute(&format!(
        "INSERT INTO app.sessions (bot_id, environment, conversation_id, label, last_activity_at) VALUES
           ('bot-x', 'live', gen_random_uuid(), 'x-after', '{t}'::timestamptz - interval '25 days');"
    ))
    .unwrap();
    c.batch_execute(
        "UPDATE retention.tenant_setting SET keep = '30 days' WHERE dataset = 'sessions' AND tenant = 'bot-x';",
    )
    .unwrap();
    let stamps: Vec<(String, String)> = c
        .query("SELECT label, retention_keep::text FROM app.sessions WHERE bot_id = 'bot-x' ORDER BY label", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        stamps,
        vec![
            ("x-after".into(), "60 days".into()),
            ("x-before".into(), "20 days".into())
        ]
    );
    // Sliding: activity moves s-old's clock forward (to 5 days before T).
    c.batch_execute(&format!(
        "UPDATE app.sessions SET last_activity_at = '{t}'::timestamptz - interval '5 days' WHERE label = 's-old'"
    ))
    .unwrap();
    // ... and never back.
    c.batch_execute(&format!(
        "UPDATE app.sessions SET last_activity_at = '{t}'::timestamptz - interval '50 days' WHERE label = 's-old'"
    ))
    .unwrap();
    // Erasure: by key in one dataset, and by subject across both.
    c.batch_execute(
        "SELECT retention.erase('conversations', '00000000-0000-0000-0000-00000000000b');
         SELECT retention.erase_subject('conversation', '00000000-0000-0000-0000-00000000000c');",
    )
    .unwrap();
    for ds in ["conversations", "sessions"] {
        c.batch_execute(&format!("CALL retention.\"enforce_{ds}\"(p_now => '{t}')"))
            .unwrap();
    }
    assert_eq!(
        labels(&mut c, "app.conversations"),
        set(&[
            "live-young",
            "draft-young",
            "long-young",
            "set-young",
            "held"
        ])
    );
    // Expired rows went to the archive, with their deadline.
    // ("ancient", archived at T with its deadline T-120, is past its
    // archive keep already: the same run removed it from the archive.)
    assert_eq!(
        labels(&mut c, "archive.conversations"),
        set(&["live-old", "draft-old", "long-old", "set-old"])
    );
    assert_eq!(
        labels(&mut c, "app.sessions"),
        set(&["s-old", "s-young", "x-after"])
    );
    let logged: Vec<(String, String)> = c
        .query("SELECT dataset, outcome || ' ' || coalesce(detail, '') FROM retention.run_log WHERE action = 'enforce'", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (ds, what) in &logged {
        assert!(what.starts_with("ok"), "{ds}: {what}");
    }
    // Archived rows stay their archive keep (10 days) past their deadline.
    // At T + 5 days: the four archived at T (deadline T - 1 day) stay, and
    // live-young and draft-young (deadline T + 1 day) join them.
    c.batch_execute("CALL retention.\"enforce_conversations\"(p_now => '2026-06-20 12:00:00+00')")
        .unwrap();
    assert_eq!(
        labels(&mut c, "archive.conversations"),
        set(&[
            "live-old",
            "draft-old",
            "long-old",
            "set-old",
            "live-young",
            "draft-young"
        ])
    );
    // At T + 12 days: those six are past deadline + 10 days and go;
    // set-young (deadline T + 10 days) is archived and stays.
    c.batch_execute("CALL retention.\"enforce_conversations\"(p_now => '2026-06-27 12:00:00+00')")
        .unwrap();
    assert_eq!(labels(&mut c, "archive.conversations"), set(&["set-young"]));
    assert_eq!(
        labels(&mut c, "app.conversations"),
        set(&["long-young", "held"])
    );
    // The view of expired rows reads every shard, at now() (months after
    // T): long-young has expired since; held is held.
    assert_eq!(
        labels(&mut c, "retention.expired_conversations"),
        set(&["long-young"])
    );
}

/// The example policy, for Citus.
fn example_for_citus() -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/chatbot.yaml"
    ))
    .unwrap();
    text.replacen("version: 1\n", "version: 1\nengine: citus\n", 1)
}

#[test]
fn the_example_policy_runs_on_citus_by_pg_cron() {
    let citus = CitusCluster::start();
    let url = citus.create_database("app");
    citus.create_example_roles("app");
    let policy = example_for_citus();
    assert!(policy.contains("engine: citus") && policy.contains("schedule: \"30 3 * * *\""));
    let dir = tempfile::tempdir().unwrap();
    let generated = tempfile::tempdir().unwrap();
    let deploy_in = |policy: &str| {
        std::fs::write(dir.path().join("chatbot.yaml"), policy).unwrap();
        compile_and_apply(dir.path(), generated.path(), &url)
    };
    deploy_in(&policy);
    let mut c = citus.coordinator.client("app");
    // Every dataset table and archive is distributed by bot_id, co-located;
    // the settings are reference tables.
    let placed: Vec<(String, String, i32)> = c
        .query(
            "SELECT logicalrelid::text, partmethod::text, colocationid FROM pg_dist_partition
              WHERE logicalrelid::text IN ('app.conversations', 'app.sessions', 'app.error_logs',
                                           'app.training_expressions', 'archive.conversations')
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(placed.len(), 5, "{placed:?}");
    assert!(
        placed.iter().all(|p| p.1 == "h" && p.2 == placed[0].2),
        "{placed:?}"
    );
    let reference: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_dist_partition WHERE repmodel = 't'
                AND logicalrelid::text IN ('retention.dataset', 'retention.policy_override', 'retention.hold',
                                           'retention.keep_history', 'retention.tenant_keep', 'retention.environment')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(reference, 6);
    // Every partition premake makes, made now (it makes 100 a call): the
    // jobs' first runs, all at the same minute, then find them there. (On
    // Citus making a partition makes a shard of it on the workers under a
    // lock the datasets share, being co-located: four first runs making
    // hundreds at once wait for each other, and one past its lock_timeout
    // logs `partial`, as it should.)
    // (As the owner, which owns what premake makes.)
    c.batch_execute("SET ROLE retention_owner").unwrap();
    for ds in [
        "conversations",
        "sessions",
        "error_logs",
        "training_expressions",
    ] {
        while c
            .query_one("SELECT retention.premake($1)", &[&ds])
            .unwrap()
            .get::<_, i32>(0)
            > 0
        {}
    }
    c.batch_execute("RESET ROLE").unwrap();
    // The application's rows: one expired conversation, one live, written
    // as the application; a run-time setting, as the application.
    let mut app = postgres::Client::connect(
        &format!(
            "{} user=chatbot_app",
            citus
                .coordinator
                .conninfo("app")
                .replace("user=postgres", "")
        ),
        postgres::NoTls,
    )
    .unwrap();
    app.batch_execute(
        "INSERT INTO app.conversations (bot_id, environment, conversation_id, channel, started_at)
         VALUES ('bot-1', 'live', gen_random_uuid(), 'web', now() - interval '400 days'),
                ('bot-1', 'live', gen_random_uuid(), 'web', now() - interval '1 day');
         INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep) VALUES ('sessions', 'bot-1', NULL, '60 days');",
    )
    .unwrap_or_else(|e| panic!("the application's writes: {e:?}"));
    // (A later transaction: on Citus a row inserted in the transaction that
    // changed the setting gets the retention in force before it; docs/citus.md.)
    app.batch_execute(
        "INSERT INTO app.sessions (bot_id, environment, conversation_id, last_activity_at, variables)
         VALUES ('bot-1', 'live', gen_random_uuid(), now(), '{\"password\": \"x\", \"lang\": \"en\"}');",
    )
    .unwrap_or_else(|e| panic!("the application's writes: {e:?}"));
    let (stamp, vars): (String, String) = {
        let rows = c
            .query(
                "SELECT retention_keep::text, variables::text FROM app.sessions",
                &[],
            )
            .unwrap();
        assert_eq!(rows.len(), 1, "one session");
        (rows[0].get(0), rows[0].get(1))
    };
    assert_eq!(stamp, "60 days");
    assert!(!vars.contains("password"), "{vars}");
    // Status before the job: one overdue conversation, counted across shards.
    let status = Command::new(common::pgretain_bin())
        .args(["status", "--format", "json", "--database-url", &url])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let overdue = json["datasets"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["name"] == "conversations"))
        .map(|d| d["overdue"]["count"].clone())
        .unwrap_or_default();
    assert_eq!(overdue, serde_json::json!(1), "{json}");
    // The jobs every minute: a second migration (a policy change on Citus).
    let report =
        deploy_in(&policy.replacen("schedule: \"30 3 * * *\"", "schedule: \"* * * * *\"", 1));
    assert_eq!(report.migrations.len(), 1, "{:?}", report.migrations);
    // pg_cron, on the coordinator, fires the job by itself.
    let fired = common::wait_for(Duration::from_secs(90), || {
        citus
            .coordinator
            .client("app")
            .query_one("SELECT count(*) FROM app.conversations", &[])
            .map(|r| r.get::<_, i64>(0) == 1)
            .unwrap_or(false)
    });
    let runs: Vec<(String, String)> = citus
        .coordinator
        .client("postgres")
        .query(
            "SELECT status, coalesce(return_message, '') FROM cron.job_run_details",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let logged: Vec<String> = c
        .query("SELECT dataset || ' ' || outcome || ' ' || rows_deleted || ' ' || rows_archived || ' ' || coalesce(detail, '') FROM retention.run_log ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(fired, "the job did not remove the expired conversation within 90 s; runs: {runs:?}\nlog: {logged:#?}");
    let archived: i64 = c
        .query_one("SELECT count(*) FROM archive.conversations", &[])
        .unwrap()
        .get(0);
    assert_eq!(archived, 1);
    // The run that removed it logs its outcome when it ends.
    let mut outcome = String::new();
    common::wait_for(Duration::from_secs(30), || {
        outcome = c
            .query(
                "SELECT outcome || ' ' || coalesce(detail, '') FROM retention.run_log
                  WHERE dataset = 'conversations' AND outcome <> 'running' ORDER BY id LIMIT 1",
                &[],
            )
            .ok()
            .and_then(|rows| rows.first().map(|r| r.get(0)))
            .unwrap_or_default();
        !outcome.is_empty()
    });
    let all_runs: Vec<String> = c
        .query("SELECT dataset || ' ' || started_at::text || ' ' || outcome || ' ' || coalesce(detail, '') FROM retention.run_log ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(outcome.starts_with("ok"), "{outcome}\nruns: {all_runs:#?}");
    // verify and report against the coordinator.
    let gen = generated.path().to_str().unwrap();
    let verify = Command::new(common::pgretain_bin())
        .args(["verify", "--database-url", &url, "--generated", gen])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "verify: {}\n{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let plan = Command::new(common::pgretain_bin())
        .args(["plan", "--database-url", &url, "--generated", gen])
        .output()
        .unwrap();
    assert!(
        plan.status.success(),
        "plan: {}\n{}",
        String::from_utf8_lossy(&plan.stdout),
        String::from_utf8_lossy(&plan.stderr)
    );
    // A reader (compliance_auditor) reads the view of expired rows (on
    // Citus, through its function) and the evidence, not the rows.
    let mut reader = postgres::Client::connect(
        &format!(
            "{} user=compliance_auditor",
            citus
                .coordinator
                .conninfo("app")
                .replace("user=postgres", "")
        ),
        postgres::NoTls,
    )
    .unwrap();
    for sql in [
        "SELECT count(*) FROM retention.expired_conversations",
        "SELECT count(*) FROM retention.expired_sessions",
        "SELECT count(*) FROM retention.run_log",
        "SELECT retention.run_predicate('conversations', now())",
    ] {
        reader
            .query(sql, &[])
            .unwrap_or_else(|e| panic!("as a reader, `{sql}`: {e:?}"));
    }
    assert!(reader
        .query("SELECT count(*) FROM app.conversations", &[])
        .is_err());
    let report = Command::new(common::pgretain_bin())
        .args(["report", "--database-url", &url, "--generated", gen])
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "report: {}",
        String::from_utf8_lossy(&report.stderr)
    );
    assert!(String::from_utf8_lossy(&report.stdout).contains("conversations"));
}
