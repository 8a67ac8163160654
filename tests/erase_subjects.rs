//! Erasure across datasets by subject (SPEC §2 `subjects`, §5 `pgretain
//! erase --subject NAME KEY`), on a real PostgreSQL 15 with pg_cron: the
//! key's rows go from every dataset of the subject (archives included),
//! other keys stay, a hold on one dataset keeps its rows (exit 1, with the
//! hold's reason), the run log has one row per dataset with the key's hash
//! and never the key, the whole erasure is one transaction, the
//! application may call it and a reader may not, an unknown subject is a
//! usage error (exit 2), and a uuid or bigint key is found through an index.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};

use common::deploy::Deployed;
use common::pgretain_bin;
use postgres::Client;

const POLICY: &str = r#"
version: 1
access:
  owner: retention_owner
  application: [chatbot_app]
  readers: [compliance_auditor]
datasets:
  conversations:
    description: Conversations.
    table: app.conversations
    columns:
      id: bigint generated always as identity
      label: text not null
      bot_id: text not null
      conversation_id: uuid not null
      user_id: bigint
      started_at: timestamptz not null default now()
    time: started_at
    tenant: bot_id
    keep: 365 days
    on_expiry: archive
    archive: { schema: archive, keep: 90 days }
    erase_by: conversation_id
  sessions:
    description: Sessions.
    table: app.sessions
    columns:
      id: bigint generated always as identity
      label: text not null
      bot_id: text not null
      conversation_id: uuid not null
      last_activity_at: timestamptz not null default now()
    time: last_activity_at
    tenant: bot_id
    keep: 30 days
holds:
  - tenant: "bot-7"
    datasets: [sessions]
    reason: "litigation hold 2026-14"
subjects:
  conversation: { conversations: conversation_id, sessions: conversation_id }
  user: { conversations: user_id }
"#;

const K1: &str = "00000000-0000-0000-0000-0000000000a1";
const K2: &str = "00000000-0000-0000-0000-0000000000a2";
const K3: &str = "00000000-0000-0000-0000-0000000000a3";

fn conv(c: &mut Client, label: &str, bot: &str, key: &str, user: Option<i64>) {
    c.execute(
        "INSERT INTO app.conversations (label, bot_id, conversation_id, user_id) VALUES ($1, $2, $3::text::uuid, $4)",
        &[&label, &bot, &key, &user],
    )
    .unwrap();
}

fn session(c: &mut Client, label: &str, bot: &str, key: &str) {
    c.execute(
        "INSERT INTO app.sessions (label, bot_id, conversation_id) VALUES ($1, $2, $3::text::uuid)",
        &[&label, &bot, &key],
    )
    .unwrap();
}

/// Run the pgretain binary; returns (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(pgretain_bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A client connected to database `app` as `role`, its search_path pinned.
fn as_role(d: &Deployed, role: &str) -> Client {
    let conninfo = d.url.replace("user=postgres", &format!("user={role}"));
    let mut c = Client::connect(&conninfo, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting as {role}: {e}"));
    c.batch_execute("SET search_path = pg_catalog, pg_temp")
        .unwrap();
    c
}

fn sqlstate(c: &mut Client, sql: &str) -> Option<String> {
    c.batch_execute(sql)
        .err()
        .map(|e| e.code().map(|s| s.code().to_string()).unwrap_or_default())
}

fn hash(c: &mut Client, key: &str) -> String {
    c.query_one(
        "SELECT encode(sha256(convert_to($1::text, 'UTF8')), 'hex')",
        &[&key],
    )
    .unwrap()
    .get(0)
}

#[test]
fn a_subject_is_erased_from_every_dataset_in_one_transaction() {
    let d = Deployed::new(POLICY);
    let mut c = d.app();
    conv(&mut c, "c1 bot-1 K1", "bot-1", K1, Some(41));
    conv(&mut c, "c2 bot-1 K2", "bot-1", K2, Some(42));
    conv(&mut c, "c3 bot-7 K1", "bot-7", K1, None);
    session(&mut c, "s1 bot-1 K1", "bot-1", K1);
    session(&mut c, "s2 bot-7 K1", "bot-7", K1);
    session(&mut c, "s3 bot-1 K2", "bot-1", K2);
    // An archived conversation of K1 goes too.
    c.batch_execute(&format!(
        "INSERT INTO archive.conversations (id, label, bot_id, conversation_id, user_id, started_at, archived_at, retention_deadline)
         VALUES (1000, 'a1 bot-1 K1', 'bot-1', '{K1}', NULL, now() - interval '2 years', now(), now() - interval '1 year')"
    ))
    .unwrap();

    // The CLI, as the DBA: the hold on bot-7's sessions keeps one row (exit 1).
    let (code, out, err) = cli(&[
        "erase",
        "--subject",
        "conversation",
        K1,
        "--database-url",
        &d.url,
    ]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("conversations") && out.contains("sessions"),
        "{out}"
    );
    assert!(
        err.contains("sessions: kept 1 row(s) under legal hold: litigation hold 2026-14"),
        "{err}"
    );
    assert_eq!(d.labels("app.conversations"), ["c2 bot-1 K2"]);
    assert_eq!(d.labels("app.sessions"), ["s2 bot-7 K1", "s3 bot-1 K2"]);
    assert_eq!(d.count("archive.conversations"), 0);

    // One run_log row per dataset, with the key's hash and not the key.
    let h = hash(&mut c, K1);
    let logged: Vec<(String, i64, i64, i64, String)> = c
        .query(
            "SELECT dataset, rows_deleted, archive_rows_deleted, rows_kept_by_hold, detail
               FROM retention.run_log WHERE action = 'erase' ORDER BY dataset",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(
        (logged[0].0.as_str(), logged[0].1, logged[0].2, logged[0].3),
        ("conversations", 2, 1, 0)
    );
    assert_eq!(
        (logged[1].0.as_str(), logged[1].1, logged[1].2, logged[1].3),
        ("sessions", 1, 0, 1)
    );
    for (ds, _, _, _, detail) in &logged {
        assert!(
            detail.contains(&format!(
                "subject conversation: conversation_id sha256 = {h}"
            )),
            "{ds}: {detail}"
        );
        assert!(!detail.contains(K1), "{ds}: {detail}");
    }
    assert!(logged[1]
        .4
        .contains("kept by hold: litigation hold 2026-14"));

    // An unknown subject is a usage error naming the known ones; nothing is logged.
    let (code, _, err) = cli(&[
        "erase",
        "--subject",
        "conversations",
        K2,
        "--database-url",
        &d.url,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("unknown subject `conversations`") && err.contains("conversation, user"),
        "{err}"
    );
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM retention.run_log WHERE action = 'erase'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    // The function says the same to a caller of its own.
    let e = c
        .query("SELECT * FROM retention.erase_subject('nobody', 'x')", &[])
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42704", "{}", db.message());
    assert!(
        db.hint().unwrap_or("").contains("conversation, user"),
        "{db:?}"
    );

    // Atomic: the second dataset's delete fails, so nothing of the first goes.
    conv(&mut c, "c4 bot-1 K3", "bot-1", K3, None);
    session(&mut c, "s4 bot-1 K3", "bot-1", K3);
    c.batch_execute(
        "CREATE FUNCTION public.refuse_delete() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'no deletes today'; END $$;
         CREATE TRIGGER refuse_delete BEFORE DELETE ON app.sessions
           FOR EACH ROW EXECUTE FUNCTION public.refuse_delete();",
    )
    .unwrap();
    let (code, _, err) = cli(&[
        "erase",
        "--subject",
        "conversation",
        K3,
        "--database-url",
        &d.url,
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("nothing was erased") && err.contains("no deletes today"),
        "{err}"
    );
    assert_eq!(
        d.labels("app.conversations"),
        ["c2 bot-1 K2", "c4 bot-1 K3"]
    );
    assert_eq!(
        d.labels("app.sessions"),
        ["s2 bot-7 K1", "s3 bot-1 K2", "s4 bot-1 K3"]
    );
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM retention.run_log WHERE action = 'erase'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "a failed erasure logs nothing");
    c.batch_execute("DROP TRIGGER refuse_delete ON app.sessions")
        .unwrap();

    // The application may erase a subject; a reader may not (42501), but
    // may read which subjects there are.
    let mut app = as_role(&d, "chatbot_app");
    let rows = app
        .query(
            "SELECT dataset, rows_deleted FROM retention.erase_subject('conversation', $1)",
            &[&K3],
        )
        .unwrap();
    let got: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        [
            ("conversations".to_string(), 1),
            ("sessions".to_string(), 1)
        ]
    );
    let mut reader = as_role(&d, "compliance_auditor");
    assert_eq!(
        sqlstate(
            &mut reader,
            &format!("SELECT * FROM retention.erase_subject('conversation', '{K2}')")
        )
        .as_deref(),
        Some("42501")
    );
    assert_eq!(
        sqlstate(&mut reader, "SELECT * FROM retention.erase_one('conversations', 'conversation_id', 'x', now(), 'x')").as_deref(),
        Some("42501")
    );
    assert_eq!(sqlstate(&mut app, "SELECT * FROM retention.erase_one('conversations', 'conversation_id', 'x', now(), 'x')").as_deref(), Some("42501"));
    assert_eq!(
        sqlstate(&mut reader, "SELECT * FROM retention.subject"),
        None
    );
    assert_eq!(
        sqlstate(
            &mut app,
            "INSERT INTO retention.subject VALUES ('x', 'sessions', 'label', 'x')"
        )
        .as_deref(),
        Some("42501")
    );

    // The `user` subject: a bigint key; a key that is no bigint matches nothing.
    let (code, out, err) = cli(&["erase", "--subject", "user", "42", "--database-url", &d.url]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("conversations 42: erased 1 row(s)"), "{out}");
    assert_eq!(d.count("app.conversations"), 0);
    let (code, _, err) = cli(&[
        "erase",
        "--subject",
        "user",
        "not-a-number",
        "--database-url",
        &d.url,
    ]);
    assert_eq!(code, 0, "{err}");

    // `pgretain erase DATASET KEY` still works as before.
    let (code, out, err) = cli(&["erase", "sessions", K2, "--database-url", &d.url]);
    assert_eq!(code, 3, "sessions has no erase_by: {out}\n{err}");
    let (code, out, err) = cli(&["erase", "conversations", K2, "--database-url", &d.url]);
    assert_eq!(code, 0, "{out}\n{err}");
}

/// The plans of the statements `f` runs in a session of `d` (auto_explain,
/// nested statements included, sent back as notices).
fn plans(d: &Deployed, f: impl FnOnce(&mut Client)) -> String {
    let seen = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&seen);
    let mut cfg: postgres::Config = d.url.parse().unwrap();
    cfg.notice_callback(move |n| {
        if let Ok(mut s) = sink.lock() {
            s.push_str(n.message());
            s.push('\n');
        }
    });
    let mut c = cfg.connect(postgres::NoTls).unwrap();
    c.batch_execute(
        "LOAD 'auto_explain';
         SET auto_explain.log_min_duration = 0;
         SET auto_explain.log_nested_statements = on;
         SET auto_explain.log_level = notice;",
    )
    .unwrap();
    f(&mut c);
    let s = seen.lock().unwrap().clone();
    s
}

#[test]
fn subject_keys_are_found_through_an_index() {
    let d = Deployed::new(POLICY);
    // 20 000 conversations and sessions in today's partitions, analyzed.
    d.sql(
        "INSERT INTO app.conversations (label, bot_id, conversation_id, user_id)
           SELECT 'bulk', 'bot-1', gen_random_uuid(), i FROM generate_series(1, 20000) i;
         INSERT INTO app.sessions (label, bot_id, conversation_id)
           SELECT 'bulk', 'bot-1', gen_random_uuid() FROM generate_series(1, 20000);",
    );
    let mut c = d.app();
    let part = |c: &mut Client, t: &str| -> String {
        c.query_one(
            &format!("SELECT tableoid::regclass::text FROM {t} LIMIT 1"),
            &[],
        )
        .unwrap()
        .get(0)
    };
    let conv_part = part(&mut c, "app.conversations");
    let sess_part = part(&mut c, "app.sessions");
    d.sql(&format!("ANALYZE {conv_part}; ANALYZE {sess_part};"));
    conv(&mut c, "k", "bot-1", K1, Some(-5));
    session(&mut c, "k", "bot-1", K1);

    let seen = plans(&d, |c| {
        let n: i64 = c
            .query_one(
                "SELECT sum(rows_deleted)::bigint FROM retention.erase_subject('conversation', $1)",
                &[&K1],
            )
            .unwrap()
            .get(0);
        assert_eq!(n, 2);
        c.query("SELECT * FROM retention.erase_subject('user', '-5')", &[])
            .unwrap();
    });
    let deletes: Vec<&str> = seen
        .split("Query Text:")
        .filter(|p| p.contains("DELETE FROM"))
        .collect();
    assert_eq!(deletes.len(), 3, "{seen}");
    for plan in &deletes {
        for p in [&conv_part, &sess_part] {
            let short = p.rsplit('.').next().unwrap_or(p);
            assert!(
                !plan.contains(&format!("Seq Scan on {short}")),
                "a seq scan of the populated partition {p}:\n{plan}"
            );
        }
        assert!(plan.contains("Index"), "no index used:\n{plan}");
    }
}
