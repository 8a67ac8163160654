//! Policy changes compile into one new migration each, in the same
//! `generated/` directory, and every step applies to a real database:
//! V1 init → V2 shorten conversations → V3 an override added and a hold
//! removed → V4 a dataset added → V5 a nullable column added → V6 a dataset
//! removed (with --allow-destructive). V2..V6 are pinned with insta.
//!
//! Also: no change writes nothing; `--check`; hand-edited migrations;
//! refused changes (a removed dataset, `time`, `partition`); edits that only
//! shift line numbers; and the committed `generated/` is current.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::Cluster;
use pgretain::cmd::apply::{apply, ApplyOptions};
use pgretain::cmd::compile::{compile, CompileError, CompileOptions, CompileOutcome};
use pgretain::generated::STATE_FILE;
use pgretain::render::names::job_command;
use pgretain::render::names::job_name;

/// The starting policy: a frozen copy of the example policy.
fn example() -> String {
    std::fs::read_to_string("tests/fixtures/changes/chatbot.yaml").unwrap()
}

/// `text` with the one occurrence of `from` replaced by `to`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the policy must hold exactly one `{from}`"
    );
    text.replacen(from, to, 1)
}

/// A policy directory and a generated directory, both temporary.
struct Work {
    policy: tempfile::TempDir,
    generated: tempfile::TempDir,
}

impl Work {
    fn new(policy_text: &str) -> Work {
        let w = Work {
            policy: tempfile::tempdir().unwrap(),
            generated: tempfile::tempdir().unwrap(),
        };
        w.write(policy_text);
        w
    }

    fn write(&self, policy_text: &str) {
        std::fs::write(self.policy.path().join("chatbot.yaml"), policy_text).unwrap();
    }

    fn gen(&self) -> &Path {
        self.generated.path()
    }

    fn run(&self, check: bool, allow_destructive: bool) -> Result<CompileOutcome, CompileError> {
        compile(&CompileOptions {
            policy_dir: self.policy.path().to_path_buf(),
            generated_dir: self.gen().to_path_buf(),
            check,
            allow_destructive,
        })
    }

    /// Compile; expect exactly `file` written.
    fn compile_expecting(&self, file: &str, allow_destructive: bool) -> String {
        let before = self.files();
        match self.run(false, allow_destructive) {
            Ok(CompileOutcome::Written { file: f, .. }) => assert_eq!(f, file),
            other => panic!("expected {file} to be written, got {other:?}"),
        }
        let after = self.files();
        // Exactly one new migration; every earlier one byte-identical.
        let new: Vec<&String> = after
            .keys()
            .filter(|k| !before.contains_key(*k) && k.as_str() != STATE_FILE)
            .collect();
        assert_eq!(new, [file]);
        for (name, bytes) in &before {
            if name != STATE_FILE {
                assert!(after[name] == *bytes, "{name} was rewritten");
            }
        }
        // Compiling again with no change writes nothing.
        assert_eq!(self.run(false, false).unwrap(), CompileOutcome::UpToDate);
        assert_eq!(self.run(true, false).unwrap(), CompileOutcome::UpToDate);
        assert!(self.files() == after);
        String::from_utf8(after[file].clone()).unwrap()
    }

    /// The SQL with the temporary policy path shown as `policies`, so that
    /// snapshots are the same on every machine.
    fn portable(&self, sql: &str) -> String {
        sql.replace(&self.policy.path().display().to_string(), "policies")
    }

    fn files(&self) -> BTreeMap<String, Vec<u8>> {
        files(self.gen())
    }
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

fn apply_to(url: &str, gen: &Path) -> Vec<String> {
    apply(&ApplyOptions {
        database_url: Some(url.to_string()),
        generated_dir: gen.to_path_buf(),
        dry_run: false,
        cron_database: None,
    })
    .unwrap_or_else(|e| panic!("apply failed: {e}"))
    .migrations
}

/// Run every dataset's job command; each run must log `ok`.
fn run_jobs(db: &mut postgres::Client, gen: &Path) {
    let state = pgretain::generated::read_state(gen).unwrap().unwrap();
    for ds in &state.policy.datasets {
        db.batch_execute(&job_command(ds))
            .unwrap_or_else(|e| panic!("{}: {e:?}", job_command(ds)));
        let outcome: String = db
            .query_one(
                "SELECT outcome FROM retention.run_log WHERE dataset = $1 ORDER BY id DESC LIMIT 1",
                &[&ds.name],
            )
            .unwrap()
            .get(0);
        assert_eq!(outcome, "ok", "{}", ds.name);
    }
}

fn strings(db: &mut postgres::Client, sql: &str) -> Vec<String> {
    db.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn count(db: &mut postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).unwrap().get(0)
}

const HOLD: &str = r#"
holds:
  - tenant: "bot-7"
    datasets: [conversations]
    reason: "litigation hold 2026-14"
    until: 2027-06-30
"#;

const NEW_OVERRIDE: &str = r#"    reason: Customer contract DPA-2026-042 limits retention of live data.
  - tenant: "bot-9"
    keep: { error_logs: 30 days }
    reason: Bot 9 asked for short error logs.
"#;

const FEEDBACK: &str = r#"
  feedback:
    description: Ratings users gave to the bot's answers.
    owner: product@example.com
    table: app.feedback
    columns:
      id: bigint generated always as identity
      bot_id: text not null
      environment: text not null
      conversation_id: uuid not null
      given_at: timestamptz not null default now()
      rating: smallint not null
    time: given_at
    tenant: bot_id
    environment: environment
    keep: 180 days
    erase_by: conversation_id

overrides:
"#;

const TRANSCRIPT: &str = "      transcript: jsonb not null default '[]'::jsonb\n";

#[test]
fn policy_changes_migrate_step_by_step() {
    let cluster = Cluster::start();
    let url = cluster.create_database("app");
    let mut db = cluster.client("app");
    let mut cron = cluster.client("postgres");

    // V1: the example policy.
    let v1 = example();
    let w = Work::new(&v1);
    w.compile_expecting("V1__init.sql", false);
    assert_eq!(apply_to(&url, w.gen()), ["V1__init"]);
    // A live conversation 100 days old: kept under 365 days.
    db.batch_execute(
        "INSERT INTO app.conversations (bot_id, environment, conversation_id, channel, started_at)
         VALUES ('bot-1', 'live', gen_random_uuid(), 'web', now() - interval '100 days')",
    )
    .unwrap();
    run_jobs(&mut db, w.gen());
    assert_eq!(count(&mut db, "SELECT count(*) FROM app.conversations"), 1);

    // V2: conversations are kept 90 days instead of 365.
    let v2 = edit(
        &v1,
        "    keep: 365 days\n    min_keep: 1 day\n    max_keep: 3650 days\n",
        "    keep: 90 days\n    min_keep: 1 day\n    max_keep: 3650 days\n",
    );
    w.write(&v2);
    let sql = w.compile_expecting("V2__shorten_conversations.sql", false);
    insta::assert_snapshot!("v2_shorten_conversations", w.portable(&sql));
    assert_eq!(apply_to(&url, w.gen()), ["V2__shorten_conversations"]);
    assert_eq!(
        strings(
            &mut db,
            "SELECT name || ' ' || keep::text FROM retention.dataset ORDER BY name"
        ),
        [
            "conversations 90 days",
            "error_logs 365 days",
            "sessions 30 days",
            "training_expressions 365 days",
        ]
    );
    // The 100-day-old conversation is now past its deadline: archived.
    run_jobs(&mut db, w.gen());
    assert_eq!(count(&mut db, "SELECT count(*) FROM app.conversations"), 0);
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM archive.conversations"),
        1
    );

    // V3: an override added, the hold removed.
    let v3 = edit(
        &edit(&v2, HOLD, ""),
        NEW_OVERRIDE.lines().next().unwrap(),
        NEW_OVERRIDE.trim_end(),
    );
    w.write(&v3);
    let sql = w.compile_expecting("V3__overrides_and_holds.sql", false);
    insta::assert_snapshot!("v3_overrides_and_holds", w.portable(&sql));
    assert_eq!(apply_to(&url, w.gen()), ["V3__overrides_and_holds"]);
    assert_eq!(
        strings(
            &mut db,
            "SELECT concat_ws('/', dataset, tenant, environment, keep::text) FROM retention.policy_override ORDER BY 1"
        ),
        [
            "conversations/bot-42/live/90 days",
            "conversations/draft/730 days",
            "error_logs/bot-9/30 days",
            "sessions/bot-42/live/7 days",
        ]
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM retention.hold"), 0);
    run_jobs(&mut db, w.gen());

    // V4: a dataset added.
    let v4 = edit(&v3, "\noverrides:\n", FEEDBACK);
    w.write(&v4);
    let sql = w.compile_expecting("V4__add_feedback.sql", false);
    insta::assert_snapshot!("v4_add_feedback", w.portable(&sql));
    assert_eq!(apply_to(&url, w.gen()), ["V4__add_feedback"]);
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM retention.dataset WHERE name = 'feedback' AND keep = interval '180 days'"
        ),
        1
    );
    db.batch_execute(
        "INSERT INTO app.feedback (bot_id, environment, conversation_id, rating)
         VALUES ('bot-1', 'live', gen_random_uuid(), 5)",
    )
    .unwrap();
    assert_eq!(count(&mut db, "SELECT count(*) FROM app.feedback"), 1);
    let job = job_name("app", "feedback");
    assert_eq!(
        count(
            &mut cron,
            &format!("SELECT count(*) FROM cron.job WHERE jobname = '{job}' AND database = 'app'")
        ),
        1
    );
    run_jobs(&mut db, w.gen());

    // V5: a nullable column added to conversations (and its archive).
    let v5 = edit(
        &v4,
        TRANSCRIPT,
        &format!("{TRANSCRIPT}      language: text\n"),
    );
    w.write(&v5);
    let sql = w.compile_expecting("V5__add_language_to_conversations.sql", false);
    insta::assert_snapshot!("v5_add_language_to_conversations", w.portable(&sql));
    assert_eq!(
        apply_to(&url, w.gen()),
        ["V5__add_language_to_conversations"]
    );
    assert_eq!(
        strings(
            &mut db,
            "SELECT table_schema || '.' || table_name || ' ' || data_type FROM information_schema.columns
              WHERE column_name = 'language'
                AND table_name IN ('conversations', 'expired_conversations') ORDER BY 1"
        ),
        [
            "app.conversations text",
            "archive.conversations text",
            "retention.expired_conversations text",
        ]
    );
    db.batch_execute(
        "INSERT INTO app.conversations (bot_id, environment, conversation_id, channel, language, started_at)
         VALUES ('bot-1', 'live', gen_random_uuid(), 'web', 'fr', now() - interval '91 days')",
    )
    .unwrap();
    run_jobs(&mut db, w.gen());
    assert_eq!(
        strings(
            &mut db,
            "SELECT language FROM archive.conversations WHERE language IS NOT NULL"
        ),
        ["fr"]
    );

    // V6: the dataset removed again: refused (nothing written), then
    // accepted with --allow-destructive.
    let v6 = edit(
        &v3,
        TRANSCRIPT,
        &format!("{TRANSCRIPT}      language: text\n"),
    );
    w.write(&v6);
    let before = w.files();
    match w.run(false, false) {
        Err(CompileError::Refused(why)) => {
            assert_eq!(why.len(), 1, "{why:?}");
            assert!(why[0].contains("dataset `feedback` was removed"), "{why:?}");
            assert!(why[0].contains("\"app\".\"feedback\""), "{why:?}");
            assert!(why[0].contains("--allow-destructive"), "{why:?}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(w.files() == before, "a refused compile writes nothing");
    let sql = w.compile_expecting("V6__remove_feedback.sql", true);
    insta::assert_snapshot!("v6_remove_feedback", w.portable(&sql));
    assert_eq!(apply_to(&url, w.gen()), ["V6__remove_feedback"]);
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'feedback%'"
        ),
        0
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM retention.dataset WHERE name = 'feedback'"
        ),
        0
    );
    assert_eq!(
        count(
            &mut cron,
            &format!("SELECT count(*) FROM cron.job WHERE jobname = '{job}'")
        ),
        0
    );
    run_jobs(&mut db, w.gen());
    // The whole history applies to a fresh database too, in one go.
    let fresh = cluster.create_database("fresh");
    assert_eq!(apply_to(&fresh, w.gen()).len(), 6);
}

#[test]
fn compiling_again_without_a_change_writes_nothing() {
    let w = Work::new(&example());
    w.compile_expecting("V1__init.sql", false);
    let before = w.files();
    assert_eq!(w.run(false, false).unwrap(), CompileOutcome::UpToDate);
    assert!(w.files() == before);
}

#[test]
fn check_says_stale_with_the_changes_and_writes_nothing() {
    let w = Work::new(&example());
    // Nothing compiled yet.
    match w.run(true, false).unwrap() {
        CompileOutcome::Stale(why) => {
            assert!(why[0].contains("V1__init.sql"), "{why:?}")
        }
        other => panic!("expected Stale, got {other:?}"),
    }
    assert!(w.files().is_empty(), "--check writes nothing");

    w.compile_expecting("V1__init.sql", false);
    assert_eq!(w.run(true, false).unwrap(), CompileOutcome::UpToDate);

    let before = w.files();
    w.write(&edit(
        &example(),
        "    keep: 365 days\n    min_keep: 1 day\n    max_keep: 3650 days\n",
        "    keep: 90 days\n    min_keep: 1 day\n    max_keep: 3650 days\n",
    ));
    match w.run(true, false).unwrap() {
        CompileOutcome::Stale(why) => {
            assert_eq!(
                why,
                [
                    "the policy changed since the last compile; `pgretain compile` would write V2__shorten_conversations.sql:",
                    "  conversations: keep 365 days -> 90 days",
                ]
            );
        }
        other => panic!("expected Stale, got {other:?}"),
    }
    assert!(w.files() == before, "--check writes nothing");
}

#[test]
fn check_reports_hand_edited_missing_and_foreign_migrations() {
    let w = Work::new(&example());
    w.compile_expecting("V1__init.sql", false);
    let v1 = w.gen().join("V1__init.sql");
    let original = std::fs::read(&v1).unwrap();

    let mut edited = original.clone();
    edited.extend_from_slice(b"-- a DBA's note\n");
    std::fs::write(&v1, &edited).unwrap();
    let why = match w.run(true, false).unwrap() {
        CompileOutcome::Stale(why) => why,
        other => panic!("expected Stale, got {other:?}"),
    };
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(
        why[0].starts_with("V1__init.sql was edited after compile wrote it"),
        "{why:?}"
    );
    // Without --check, compile refuses to go on from an edited history.
    match w.run(false, false) {
        Err(CompileError::Io(msg)) => assert!(msg.contains("V1__init.sql was edited"), "{msg}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(std::fs::read(&v1).unwrap(), edited, "nothing rewritten");

    std::fs::remove_file(&v1).unwrap();
    std::fs::write(w.gen().join("V2__by_hand.sql"), "SELECT 1;\n").unwrap();
    let why = match w.run(true, false).unwrap() {
        CompileOutcome::Stale(why) => why,
        other => panic!("expected Stale, got {other:?}"),
    };
    assert_eq!(why.len(), 2, "{why:?}");
    assert!(why[0].starts_with("V1__init.sql is missing"), "{why:?}");
    assert!(
        why[1].starts_with("V2__by_hand.sql was not written by pgretain compile"),
        "{why:?}"
    );

    std::fs::remove_file(w.gen().join("V2__by_hand.sql")).unwrap();
    std::fs::write(&v1, &original).unwrap();
    assert_eq!(w.run(true, false).unwrap(), CompileOutcome::UpToDate);
}

#[test]
fn removing_a_dataset_needs_allow_destructive() {
    let w = Work::new(&example());
    w.compile_expecting("V1__init.sql", false);
    let text = example();
    let start = text.find("  training_expressions:\n").unwrap();
    let end = text.find("\noverrides:\n").unwrap();
    w.write(&format!("{}{}", &text[..start], &text[end + 1..]));

    let before = w.files();
    for check in [false, true] {
        match w.run(check, false) {
            Err(CompileError::Refused(why)) => {
                assert_eq!(why.len(), 1, "{why:?}");
                assert_eq!(
                    why[0],
                    "dataset `training_expressions` was removed from the policy: that would drop table \"app\".\"training_expressions\" and every row in it (and the archive \"archive\".\"training_expressions\"); pgretain would also stop enforcing it. If that is what you want, run `pgretain compile --allow-destructive`; otherwise restore the dataset in the policy"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(w.files() == before, "a refused compile writes nothing");
    }

    let sql = w.compile_expecting("V2__remove_training_expressions.sql", true);
    for stmt in [
        "DELETE FROM retention.dataset WHERE name = 'training_expressions';",
        "DROP TABLE IF EXISTS \"app\".\"training_expressions\" CASCADE;",
        "DROP TABLE IF EXISTS \"archive\".\"training_expressions\" CASCADE;",
        "DROP PROCEDURE IF EXISTS retention.\"enforce_training_expressions\"(timestamptz);",
    ] {
        assert!(sql.contains(stmt), "missing `{stmt}` in:\n{sql}");
    }
}

/// The refusal of a change to a dataset, with nothing written.
fn refused(w: &Work, policy: &str) -> String {
    w.write(policy);
    let before = w.files();
    let why = match w.run(false, false) {
        Err(CompileError::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(w.files() == before, "a refused compile writes nothing");
    match w.run(true, false) {
        Err(CompileError::Refused(again)) => assert_eq!(again, why),
        other => panic!("expected a refusal with --check too, got {other:?}"),
    }
    assert_eq!(why.len(), 1, "{why:?}");
    w.portable(&why[0])
}

#[test]
fn changing_time_or_partition_is_refused_with_what_would_happen() {
    let w = Work::new(&example());
    w.compile_expecting("V1__init.sql", false);

    let why = refused(
        &w,
        &edit(
            &example(),
            "    time: last_activity_at\n",
            "    time: created_at\n",
        ),
    );
    assert_eq!(
        why,
        "dataset `sessions` (policies/chatbot.yaml:42): changing `time` from `last_activity_at` to `created_at` cannot be migrated safely: table \"app\".\"sessions\" is range-partitioned on `last_activity_at`, so every existing partition would have to be rebuilt, and the deadline of every stored row would change. Keep the old value, or add a new dataset (a new table) and remove this one with `--allow-destructive` once its data is no longer needed"
    );

    let why = refused(
        &w,
        &edit(
            &example(),
            "    time: started_at\n",
            "    time: started_at\n    partition: week\n",
        ),
    );
    assert_eq!(
        why,
        "dataset `conversations` (policies/chatbot.yaml:16): changing `partition` from `day` to `week` cannot be migrated safely: the existing day partitions of \"app\".\"conversations\" would overlap the new week ones, so new partitions could not be created and inserts would pile up in the default partition. Keep the old value, or add a new dataset (a new table) and remove this one with `--allow-destructive` once its data is no longer needed"
    );

    // A partition that follows from `keep` changes with it: say so, and how
    // to keep the existing partitions.
    let why = refused(
        &w,
        &edit(
            &example(),
            "    keep: 365 days\n    min_keep: 1 day\n    max_keep: 730 days\n",
            "    keep: 730 days\n    min_keep: 1 day\n    max_keep: 730 days\n",
        ),
    );
    assert!(
        why.contains("changing `partition` from `day` to `week` (when `partition` is not written, it follows `keep`: 730 days gives `week`; write `partition: day` in the dataset to keep the existing partitions)"),
        "{why}"
    );
    // ... and doing so compiles.
    w.write(&edit(
        &example(),
        "    keep: 365 days\n    min_keep: 1 day\n    max_keep: 730 days\n",
        "    keep: 730 days\n    min_keep: 1 day\n    max_keep: 730 days\n    partition: day\n",
    ));
    w.compile_expecting("V2__lengthen_error_logs.sql", false);
}

#[test]
fn shifting_line_numbers_only_writes_no_migration() {
    let w = Work::new(&example());
    w.compile_expecting("V1__init.sql", false);
    let before = w.files();

    let shifted = edit(
        &example(),
        "version: 1\n",
        "version: 1\n# Reviewed by the privacy team.\n",
    );
    w.write(&shifted);
    assert_eq!(w.run(true, false).unwrap(), CompileOutcome::UpToDate);
    assert_eq!(w.run(false, false).unwrap(), CompileOutcome::UpToDate);
    assert!(w.files() == before, "nothing written");

    // The next real change cites the lines as they are now.
    w.write(&edit(
        &shifted,
        "    keep: 365 days\n    min_keep: 1 day\n    max_keep: 3650 days\n",
        "    keep: 90 days\n    min_keep: 1 day\n    max_keep: 3650 days\n",
    ));
    let sql = w.portable(&w.compile_expecting("V2__shorten_conversations.sql", false));
    assert!(
        sql.contains(
            "-- conversations: settings: keep 365 days -> 90 days (policies/chatbot.yaml:34)"
        ),
        "{sql}"
    );
}

#[test]
fn reordering_environments_writes_no_migration() {
    let w = Work::new(&example());
    w.compile_expecting("V1__init.sql", false);
    w.write(&edit(
        &example(),
        "environments: [draft, live]",
        "environments: [live, draft]",
    ));
    assert_eq!(w.run(true, false).unwrap(), CompileOutcome::UpToDate);
}

/// CI fails when the committed `generated/` does not match `policies/`:
/// run `cargo run -- compile policies` and commit `generated/`.
#[test]
fn committed_generated_dir_is_up_to_date() {
    let out = compile(&CompileOptions {
        policy_dir: PathBuf::from("policies"),
        generated_dir: PathBuf::from("generated"),
        check: true,
        allow_destructive: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out,
        CompileOutcome::UpToDate,
        "generated/ is stale: run `cargo run -- compile policies` and commit generated/"
    );
}

#[test]
fn column_changes_that_cannot_be_migrated_are_refused() {
    let w = Work::new(&example());
    w.compile_expecting("V1__init.sql", false);
    let cases = [
        (
            "      channel: text not null\n",
            "      channel: text not null\n      seq: bigint generated always as identity\n",
            "changing `columns.seq` from (absent) to `bigint generated always as identity not null` cannot be migrated safely: PostgreSQL cannot add an identity column to a partitioned table",
        ),
        (
            "      channel: text not null\n",
            "      channel: text not null\n      score: integer not null\n",
            "changing `columns.score` from (absent) to `integer not null` cannot be migrated safely: existing rows have no value for a new `not null` column without a default",
        ),
        (
            "      channel: text not null\n",
            "      channel: varchar(20) not null\n",
            "changing `columns.channel` from `text not null` to `varchar(20) not null` cannot be migrated safely: pgretain does not rewrite column types",
        ),
        (
            "      channel: text not null\n",
            "",
            "changing `columns.channel` from `text not null` to (removed) cannot be migrated safely: dropping a column destroys its data",
        ),
    ];
    for (from, to, expected) in cases {
        let why = refused(&w, &edit(&example(), from, to));
        assert!(why.contains(expected), "{why}\nexpected: {expected}");
    }
    // A new column with a default is fine.
    w.write(&edit(
        &example(),
        "      channel: text not null\n",
        "      channel: text not null\n      score: integer not null default 0\n",
    ));
    let sql = w.compile_expecting("V2__add_score_to_conversations.sql", false);
    assert!(sql.contains(
        "ALTER TABLE \"app\".\"conversations\" ADD COLUMN IF NOT EXISTS \"score\" integer not null default 0;\n\
         ALTER TABLE \"archive\".\"conversations\" ADD COLUMN IF NOT EXISTS \"score\" integer;\n"
    ), "{sql}");
}

/// A `generated/` compiled by an older pgretain gets a migration that
/// installs the current runtime, and it applies on top of the old one.
#[test]
fn a_runtime_change_compiles_into_an_upgrade_migration() {
    let w = Work::new(&example());
    w.compile_expecting("V1__init.sql", false);
    let cluster = Cluster::start();
    let url = cluster.create_database("app");
    assert_eq!(apply_to(&url, w.gen()), ["V1__init"]);

    let state_path = w.gen().join(STATE_FILE);
    let state = std::fs::read_to_string(&state_path).unwrap();
    let current = format!(
        "\"runtime_version\": {},",
        pgretain::render::RUNTIME_VERSION
    );
    // Newer than this pgretain: refused.
    std::fs::write(
        &state_path,
        edit(&state, &current, "\"runtime_version\": 999,"),
    )
    .unwrap();
    match w.run(false, false) {
        Err(CompileError::Refused(why)) => {
            assert!(why[0].contains("written by a newer pgretain"), "{why:?}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Older: an upgrade migration.
    std::fs::write(
        &state_path,
        edit(&state, &current, "\"runtime_version\": 0,"),
    )
    .unwrap();
    let sql = w.compile_expecting("V2__upgrade_runtime.sql", false);
    assert!(sql.contains(pgretain::render::RUNTIME_SQL));
    assert!(
        sql.contains("--   - install pgretain runtime version"),
        "{sql}"
    );
    assert_eq!(apply_to(&url, w.gen()), ["V2__upgrade_runtime"]);
    let mut db = cluster.client("app");
    run_jobs(&mut db, w.gen());
}

/// The committed `generated/V1__init.sql` is what this pgretain writes for
/// `policies/`: a change to the runtime or rendering without a new runtime
/// version would otherwise go unnoticed by `compile --check` (which diffs
/// policies, not output).
#[test]
fn committed_v1_matches_what_this_pgretain_writes() {
    let state = pgretain::generated::read_state(Path::new("generated"))
        .unwrap()
        .expect("generated/pgretain-state.json");
    if state.migrations.len() != 1 {
        return; // later migrations carry the history; V1 is then frozen
    }
    let fresh = tempfile::tempdir().unwrap();
    compile(&CompileOptions {
        policy_dir: PathBuf::from("policies"),
        generated_dir: fresh.path().to_path_buf(),
        check: false,
        allow_destructive: false,
    })
    .unwrap();
    let committed = std::fs::read_to_string("generated/V1__init.sql").unwrap();
    let written = std::fs::read_to_string(fresh.path().join("V1__init.sql")).unwrap();
    assert!(
        committed == written,
        "generated/V1__init.sql differs from what pgretain writes now: bump render::RUNTIME_VERSION so compile writes an upgrade migration, or (before any deploy) delete generated/ and run `cargo run -- compile policies`"
    );
}
