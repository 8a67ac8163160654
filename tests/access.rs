//! Safe on a production database (SPEC §2 `access`, §3 "Access"): the
//! generated machinery among hostile roles, on a real PostgreSQL 15 with
//! pg_cron.
//!
//! * another role's functions and operators, planted in `public` and
//!   first on the database's search_path, never run: not during apply, a
//!   run, an erasure, status, verify, plan or report, nor in the
//!   application's own sessions;
//! * each role of `access` can do exactly what SPEC §3 lists, and gets
//!   SQLSTATE 42501 for everything else;
//! * the jobs run as the owner, which is not a superuser;
//! * a forged stamp changes nothing;
//! * apply refuses roles that cannot do their part, warns when a superuser
//!   applies without `access`, and refuses a migration history another role
//!   planted.

mod common;

use std::process::Command;
use std::time::Duration;

use common::deploy::Deployed;
use common::{pgretain_bin, wait_for};
use postgres::Client;

/// The roles of `access`, created by `Deployed` (the example policy's).
const OWNER: &str = "retention_owner";
const APP: &str = "chatbot_app";
const READER: &str = "compliance_auditor";

/// Sessions and conversations, like the example policy, with `access`.
const POLICY: &str = r#"
version: 1
environments: [draft, live]
access:
  owner: retention_owner
  application: [chatbot_app]
  readers: [compliance_auditor]
datasets:
  sessions:
    description: Session information and variables.
    table: app.sessions
    columns:
      id: bigint generated always as identity
      bot_id: text not null
      environment: text not null
      conversation_id: uuid not null
      last_activity_at: timestamptz not null default now()
      variables: jsonb not null default '{}'::jsonb
      label: text
    time: last_activity_at
    sliding: true
    changes_apply_to: new_rows
    tenant: bot_id
    environment: environment
    keep: 30 days
    min_keep: 1 hour
    max_keep: 365 days
    partition: day
    on_expiry: archive
    archive: { schema: archive, keep: 90 days }
    erase_by: conversation_id
    sensitive:
      variables: [password]
  conversations:
    description: Conversations users had with the bot.
    table: app.conversations
    columns:
      id: serial
      bot_id: text not null
      environment: text not null
      started_at: timestamptz not null default now()
      label: text
    time: started_at
    tenant: bot_id
    environment: environment
    keep: 365 days
    min_keep: 1 day
    max_keep: 3650 days
    partition: day
holds:
  - tenant: bot-7
    datasets: [conversations]
    reason: litigation hold
"#;

/// A client connected to database `app` as `role`, its search_path pinned
/// to pg_catalog (so the test's own queries never run a planted object).
fn as_role(d: &Deployed, role: &str) -> Client {
    let conninfo = d.url.replace("user=postgres", &format!("user={role}"));
    let mut c = Client::connect(&conninfo, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting as {role}: {e}"));
    c.batch_execute("SET search_path = pg_catalog, pg_temp")
        .unwrap();
    c
}

/// The SQLSTATE of `sql` run as `c`, or None when it succeeded.
fn sqlstate(c: &mut Client, sql: &str) -> Option<String> {
    match c.batch_execute(sql) {
        Ok(()) => None,
        Err(e) => Some(
            e.code()
                .map(|s| s.code().to_string())
                .unwrap_or_else(|| format!("no SQLSTATE: {e}")),
        ),
    }
}

fn allowed(c: &mut Client, role: &str, sql: &str) {
    if let Some(state) = sqlstate(c, sql) {
        panic!("{role} must be allowed `{sql}`, got SQLSTATE {state}");
    }
}

fn denied(c: &mut Client, role: &str, sql: &str) {
    assert_eq!(
        sqlstate(c, sql).as_deref(),
        Some("42501"),
        "{role} must get 42501 for `{sql}`"
    );
}

/// Run the pgretain binary; returns (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(pgretain_bin())
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("PGOPTIONS")
        .output()
        .expect("run pgretain");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------
// The hijack attempt
// ---------------------------------------------------------------------------

/// What `mallory` plants: every function and operator below records each
/// call in a sequence (nextval is not undone by a rollback) and, when a
/// superuser calls it, makes mallory a superuser; then it does what the
/// original does, so nothing else notices. Some shadow pg_catalog's with
/// the exact same arguments (they win once `public` comes first on the
/// search_path, which the database's default here says), others are the
/// better match for a mistyped call (`float8 <> int4`, `cardinality(text[])`).
fn plant(d: &Deployed) {
    let mut su = d.cluster.client("app");
    su.batch_execute(
        "CREATE ROLE mallory LOGIN;
         GRANT CREATE ON SCHEMA public TO mallory;",
    )
    .unwrap();
    let mut m = as_role(d, "mallory");
    m.batch_execute(
        r#"
        CREATE SEQUENCE public.hijack_hits;
        GRANT USAGE, SELECT, UPDATE ON SEQUENCE public.hijack_hits TO PUBLIC;
        CREATE FUNCTION public.hijack(what text) RETURNS boolean
        LANGUAGE plpgsql VOLATILE AS $f$
        BEGIN
            PERFORM pg_catalog.nextval('public.hijack_hits');
            RAISE WARNING 'HIJACKED: % run by %', what, current_user;
            BEGIN
                EXECUTE 'ALTER ROLE mallory SUPERUSER';
            EXCEPTION WHEN OTHERS THEN NULL;
            END;
            RETURN true;
        END
        $f$;
        GRANT EXECUTE ON FUNCTION public.hijack(text) TO PUBLIC;
        "#,
    )
    .unwrap();
    // (name, arguments, return type, body returning the original's result)
    let functions: &[(&str, &str, &str, &str)] = &[
        ("now", "", "timestamptz", "pg_catalog.now()"),
        (
            "clock_timestamp",
            "",
            "timestamptz",
            "pg_catalog.clock_timestamp()",
        ),
        ("format", "text", "text", "pg_catalog.format($1)"),
        (
            "set_config",
            "text, text, boolean",
            "text",
            "pg_catalog.set_config($1, $2, $3)",
        ),
        (
            "current_setting",
            "text",
            "text",
            "pg_catalog.current_setting($1)",
        ),
        ("hashtext", "text", "integer", "pg_catalog.hashtext($1)"),
        (
            "pg_try_advisory_lock",
            "integer, integer",
            "boolean",
            "pg_catalog.pg_try_advisory_lock($1, $2)",
        ),
        (
            "pg_advisory_unlock",
            "integer, integer",
            "boolean",
            "pg_catalog.pg_advisory_unlock($1, $2)",
        ),
        (
            "pg_advisory_lock",
            "integer, integer",
            "void",
            "pg_catalog.pg_advisory_lock($1, $2)",
        ),
        (
            "to_regclass",
            "text",
            "regclass",
            "pg_catalog.to_regclass($1)",
        ),
        (
            "to_regnamespace",
            "text",
            "regnamespace",
            "pg_catalog.to_regnamespace($1)",
        ),
        (
            "cardinality",
            "text[]",
            "integer",
            "pg_catalog.cardinality($1)",
        ),
        (
            "cardinality",
            "interval[]",
            "integer",
            "pg_catalog.cardinality($1)",
        ),
        (
            "array_length",
            "text[], integer",
            "integer",
            "pg_catalog.array_length($1, $2)",
        ),
        (
            "array_to_string",
            "text[], text",
            "text",
            "pg_catalog.array_to_string($1, $2)",
        ),
        ("lower", "text", "text", "pg_catalog.lower($1)"),
        ("quote_ident", "text", "text", "pg_catalog.quote_ident($1)"),
        (
            "quote_literal",
            "text",
            "text",
            "pg_catalog.quote_literal($1)",
        ),
        (
            "date_part",
            "text, interval",
            "double precision",
            "pg_catalog.date_part($1, $2)",
        ),
        (
            "date_trunc",
            "text, timestamptz, text",
            "timestamptz",
            "pg_catalog.date_trunc($1, $2, $3)",
        ),
        (
            "date_trunc",
            "text, timestamptz",
            "timestamptz",
            "pg_catalog.date_trunc($1, $2)",
        ),
        (
            "to_char",
            "timestamp, text",
            "text",
            "pg_catalog.to_char($1, $2)",
        ),
        (
            "jsonb_typeof",
            "jsonb",
            "text",
            "pg_catalog.jsonb_typeof($1)",
        ),
        (
            "pg_relation_size",
            "regclass",
            "bigint",
            "pg_catalog.pg_relation_size($1)",
        ),
        (
            "starts_with",
            "text, text",
            "boolean",
            "pg_catalog.starts_with($1, $2)",
        ),
        ("encode", "bytea, text", "text", "pg_catalog.encode($1, $2)"),
        ("sha256", "bytea", "bytea", "pg_catalog.sha256($1)"),
        (
            "convert_to",
            "text, name",
            "bytea",
            "pg_catalog.convert_to($1, $2)",
        ),
        (
            "format_type",
            "oid, integer",
            "text",
            "pg_catalog.format_type($1, $2)",
        ),
        (
            "pg_get_expr",
            "pg_node_tree, oid",
            "text",
            "pg_catalog.pg_get_expr($1, $2)",
        ),
        (
            "pg_get_userbyid",
            "oid",
            "name",
            "pg_catalog.pg_get_userbyid($1)",
        ),
        (
            "pg_get_functiondef",
            "oid",
            "text",
            "pg_catalog.pg_get_functiondef($1)",
        ),
        ("md5", "text", "text", "pg_catalog.md5($1)"),
        (
            "replace",
            "text, text, text",
            "text",
            "pg_catalog.replace($1, $2, $3)",
        ),
        (
            "substr",
            "text, integer",
            "text",
            "pg_catalog.substr($1, $2)",
        ),
        ("length", "text", "integer", "pg_catalog.length($1)"),
        (
            "extract",
            "text, interval",
            "numeric",
            "pg_catalog.extract($1, $2)",
        ),
        (
            "make_interval",
            "integer, integer",
            "interval",
            "pg_catalog.make_interval($1, $2)",
        ),
        (
            "pg_sleep",
            "double precision",
            "void",
            "pg_catalog.pg_sleep($1)",
        ),
        (
            "pg_current_wal_lsn",
            "",
            "pg_lsn",
            "pg_catalog.pg_current_wal_lsn()",
        ),
        ("version", "", "text", "pg_catalog.version()"),
        (
            "current_database",
            "",
            "name",
            "pg_catalog.current_database()",
        ),
    ];
    for (name, args, ret, body) in functions {
        let params: Vec<String> = args
            .split(", ")
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        m.batch_execute(&format!(
            "CREATE FUNCTION public.{name}({args}) RETURNS {ret} LANGUAGE sql VOLATILE AS $f$
                 SELECT {body} FROM (SELECT public.hijack('{name}({})')) h
             $f$;
             GRANT EXECUTE ON FUNCTION public.{name}({args}) TO PUBLIC;",
            params.join(", ")
        ))
        .unwrap_or_else(|e| panic!("planting {name}({args}): {e}"));
    }
    // (operator, left, right, result, the original's expression)
    let operators: &[(&str, &str, &str, &str, &str)] = &[
        (
            "<>",
            "double precision",
            "integer",
            "boolean",
            "$1 OPERATOR(pg_catalog.<>) $2::float8",
        ),
        (
            "=",
            "double precision",
            "integer",
            "boolean",
            "$1 OPERATOR(pg_catalog.=) $2::float8",
        ),
        (
            "<",
            "double precision",
            "integer",
            "boolean",
            "$1 OPERATOR(pg_catalog.<) $2::float8",
        ),
        (
            ">",
            "double precision",
            "integer",
            "boolean",
            "$1 OPERATOR(pg_catalog.>) $2::float8",
        ),
        (
            "<>",
            "numeric",
            "integer",
            "boolean",
            "$1 OPERATOR(pg_catalog.<>) $2::numeric",
        ),
        (
            ">=",
            "numeric",
            "integer",
            "boolean",
            "$1 OPERATOR(pg_catalog.>=) $2::numeric",
        ),
        (
            "||",
            "integer",
            "text",
            "text",
            "$1::text OPERATOR(pg_catalog.||) $2",
        ),
        (
            "||",
            "text",
            "integer",
            "text",
            "$1 OPERATOR(pg_catalog.||) $2::text",
        ),
        (
            "||",
            "bigint",
            "text",
            "text",
            "$1::text OPERATOR(pg_catalog.||) $2",
        ),
        (
            "||",
            "text",
            "bigint",
            "text",
            "$1 OPERATOR(pg_catalog.||) $2::text",
        ),
        (
            "=",
            "text",
            "text",
            "boolean",
            "$1 OPERATOR(pg_catalog.=) $2",
        ),
        (
            "<>",
            "text",
            "text",
            "boolean",
            "$1 OPERATOR(pg_catalog.<>) $2",
        ),
        (
            "||",
            "text",
            "text",
            "text",
            "$1 OPERATOR(pg_catalog.||) $2",
        ),
        (
            "=",
            "name",
            "text",
            "boolean",
            "$1::text OPERATOR(pg_catalog.=) $2",
        ),
        (
            "=",
            "interval",
            "interval",
            "boolean",
            "$1 OPERATOR(pg_catalog.=) $2",
        ),
        (
            "<",
            "interval",
            "interval",
            "boolean",
            "$1 OPERATOR(pg_catalog.<) $2",
        ),
        (
            ">",
            "interval",
            "interval",
            "boolean",
            "$1 OPERATOR(pg_catalog.>) $2",
        ),
        (
            "<=",
            "interval",
            "interval",
            "boolean",
            "$1 OPERATOR(pg_catalog.<=) $2",
        ),
        (
            ">=",
            "interval",
            "interval",
            "boolean",
            "$1 OPERATOR(pg_catalog.>=) $2",
        ),
        (
            "+",
            "timestamp",
            "interval",
            "timestamp",
            "$1 OPERATOR(pg_catalog.+) $2",
        ),
        (
            "-",
            "timestamp",
            "interval",
            "timestamp",
            "$1 OPERATOR(pg_catalog.-) $2",
        ),
        (
            "<",
            "timestamp",
            "timestamp",
            "boolean",
            "$1 OPERATOR(pg_catalog.<) $2",
        ),
        (
            "<=",
            "timestamp",
            "timestamp",
            "boolean",
            "$1 OPERATOR(pg_catalog.<=) $2",
        ),
        (
            ">=",
            "timestamp",
            "timestamp",
            "boolean",
            "$1 OPERATOR(pg_catalog.>=) $2",
        ),
        (
            "<",
            "timestamptz",
            "timestamptz",
            "boolean",
            "$1 OPERATOR(pg_catalog.<) $2",
        ),
        (
            ">",
            "timestamptz",
            "timestamptz",
            "boolean",
            "$1 OPERATOR(pg_catalog.>) $2",
        ),
        (
            "=",
            "timestamptz",
            "timestamptz",
            "boolean",
            "$1 OPERATOR(pg_catalog.=) $2",
        ),
        (
            "+",
            "timestamptz",
            "interval",
            "timestamptz",
            "$1 OPERATOR(pg_catalog.+) $2",
        ),
        (
            "-",
            "timestamptz",
            "interval",
            "timestamptz",
            "$1 OPERATOR(pg_catalog.-) $2",
        ),
        (
            "+",
            "bigint",
            "bigint",
            "bigint",
            "$1 OPERATOR(pg_catalog.+) $2",
        ),
        (
            "+",
            "integer",
            "integer",
            "integer",
            "$1 OPERATOR(pg_catalog.+) $2",
        ),
        (
            ">",
            "integer",
            "integer",
            "boolean",
            "$1 OPERATOR(pg_catalog.>) $2",
        ),
        (
            "=",
            "integer",
            "integer",
            "boolean",
            "$1 OPERATOR(pg_catalog.=) $2",
        ),
        (
            ">",
            "bigint",
            "integer",
            "boolean",
            "$1 OPERATOR(pg_catalog.>) $2",
        ),
        (
            "=",
            "uuid",
            "uuid",
            "boolean",
            "$1 OPERATOR(pg_catalog.=) $2",
        ),
        (
            "->>",
            "jsonb",
            "text",
            "text",
            "$1 OPERATOR(pg_catalog.->>) $2",
        ),
    ];
    for (i, (op, left, right, ret, body)) in operators.iter().enumerate() {
        m.batch_execute(&format!(
            "CREATE FUNCTION public.hijack_op_{i}({left}, {right}) RETURNS {ret} LANGUAGE sql VOLATILE AS $f$
                 SELECT {body} FROM (SELECT public.hijack('{left} {op} {right}')) h
             $f$;
             CREATE OPERATOR public.{op} (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = public.hijack_op_{i});"
        ))
        .unwrap_or_else(|e| panic!("planting {left} {op} {right}: {e:?}"));
    }
    // The strongest position: `public` before pg_catalog for every session
    // of the database (what a database owner, often the application's
    // migration role, can set). Exact shadows now win every lookup that is
    // not pinned.
    su.batch_execute("ALTER DATABASE app SET search_path = public, pg_catalog")
        .unwrap();
    // The plant works: an unpinned session runs it.
    let mut naive = Client::connect(&d.url, postgres::NoTls).unwrap();
    naive.batch_execute("SELECT now()").unwrap();
    assert_eq!(
        hits(d),
        1,
        "the planted now() must run in an unpinned session"
    );
    su.batch_execute("ALTER ROLE mallory NOSUPERUSER").unwrap();
}

/// How many times a planted object ran.
fn hits(d: &Deployed) -> i64 {
    let mut c = as_role(d, "postgres");
    let (last, called): (i64, bool) = {
        let r = c
            .query_one("SELECT last_value, is_called FROM public.hijack_hits", &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    if called {
        last
    } else {
        0
    }
}

fn mallory_is_superuser(d: &Deployed) -> bool {
    as_role(d, "postgres")
        .query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'mallory'",
            &[],
        )
        .unwrap()
        .get(0)
}

/// Every command and the application's sessions, with mallory's objects
/// planted first on the search_path: none of them runs.
#[test]
fn planted_functions_and_operators_never_run() {
    let d = Deployed::compiled(POLICY);
    plant(&d);
    let base = hits(&d);
    let url = d.url.clone();
    let generated = d.generated.path().to_str().unwrap().to_string();

    // apply (migrations and the job registration), as the DBA's superuser.
    let (code, _, err) = cli(&["apply", "--database-url", &url, "--generated", &generated]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(hits(&d) - base, 0, "apply ran a planted object: {err}");

    // The application's own sessions, unpinned (the database's default
    // search_path puts public first): rows, settings, erasure.
    let mut app = Client::connect(
        &url.replace("user=postgres", "user=chatbot_app"),
        postgres::NoTls,
    )
    .unwrap();
    app.batch_execute(
        "INSERT INTO app.sessions (bot_id, environment, conversation_id, last_activity_at, variables, label)
         VALUES ('bot-1', 'live', '00000000-0000-0000-0000-000000000001', now() - interval '40 days',
                 '{\"password\": \"x\", \"a\": 1}', 'old'),
                ('bot-1', 'live', '00000000-0000-0000-0000-000000000002', now(), '{}', 'new');
         UPDATE app.sessions SET last_activity_at = now(), variables = '{\"password\": \"y\"}' WHERE label = 'new';
         INSERT INTO app.conversations (bot_id, environment, started_at, label)
         SELECT 'bot-' || (g % 7), 'live', now() - g * interval '1 day', 'c' || g FROM generate_series(0, 400) g;
         INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep) VALUES ('conversations', 'bot-3', NULL, '30 days');
         SELECT * FROM retention.erase('sessions', '00000000-0000-0000-0000-000000000002');",
    )
    .unwrap();
    // The application's sessions ran planted objects of their own choice
    // (its own queries, under its own search_path: `now()`, `||`, `-`...),
    // as the application role itself. None ran as a superuser or as the
    // owner: mallory is no superuser, and the machinery's functions ran
    // nothing (checked below with the superuser's commands).
    assert!(!mallory_is_superuser(&d));
    let base = hits(&d);

    // run (as the job does, through the CLI as the DBA), erase, status,
    // verify, plan, report.
    for args in [
        vec!["run", "--database-url", &url],
        vec![
            "erase",
            "sessions",
            "00000000-0000-0000-0000-000000000001",
            "--database-url",
            &url,
        ],
        vec!["status", "--database-url", &url],
        vec!["status", "--format", "json", "--database-url", &url],
        vec!["verify", "--database-url", &url, "--generated", &generated],
        vec!["plan", "--database-url", &url, "--generated", &generated],
    ] {
        let (code, out, err) = cli(&args);
        assert!(
            code == 0 || code == 1,
            "{args:?}: exit {code}\n{out}\n{err}"
        );
        assert_eq!(
            hits(&d) - base,
            0,
            "{args:?} ran a planted object:\n{out}\n{err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let (code, out, err) = cli(&[
        "report",
        "--database-url",
        &url,
        "--generated",
        &generated,
        "--out",
        html.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(hits(&d) - base, 0, "report ran a planted object");

    // The job's own command, in a session of the owner role with the
    // database's hostile default search_path, as pg_cron opens it.
    let mut owner = Client::connect(
        &url.replace("user=postgres", "user=retention_owner"),
        postgres::NoTls,
    )
    .unwrap();
    for cmd in [
        r#"CALL retention."enforce_sessions"()"#,
        r#"CALL retention."enforce_conversations"()"#,
    ] {
        owner.batch_execute(cmd).unwrap();
    }
    assert_eq!(
        hits(&d) - base,
        0,
        "the job's command ran a planted object: {}",
        d.cluster.log_tail(40)
    );
    // A reader's queries of the evidence, unpinned: the views' bodies were
    // bound when they were created.
    let mut reader = Client::connect(
        &url.replace("user=postgres", "user=compliance_auditor"),
        postgres::NoTls,
    )
    .unwrap();
    reader
        .batch_execute(
            "SELECT * FROM retention.expired_conversations; SELECT * FROM retention.run_log",
        )
        .unwrap();
    assert!(!mallory_is_superuser(&d), "mallory became a superuser");
    // And the work was done: the 40-day-old session went to the archive,
    // conversations older than a year (and bot-3's older than 30 days) are gone.
    let mut c = as_role(&d, "postgres");
    let old: i64 = c
        .query_one(
            "SELECT count(*) FROM app.conversations WHERE started_at < now() - interval '366 days'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(old, 0);
}

// ---------------------------------------------------------------------------
// Each role can do exactly what SPEC §3 lists
// ---------------------------------------------------------------------------

#[test]
fn the_application_role_can_do_what_spec_lists_and_nothing_more() {
    let d = Deployed::new(POLICY);
    let mut app = as_role(&d, APP);
    // Its rows, with every trigger working for it.
    allowed(&mut app, APP, "INSERT INTO app.sessions (bot_id, environment, conversation_id, variables, label)
                             VALUES ('bot-1', 'live', gen_random_uuid(), '{\"password\": \"x\", \"k\": 1}', 's1')");
    allowed(&mut app, APP, "UPDATE app.sessions SET last_activity_at = now(), variables = '{\"password\": \"y\"}' WHERE label = 's1'");
    allowed(&mut app, APP, "SELECT * FROM app.sessions");
    allowed(
        &mut app,
        APP,
        "INSERT INTO app.conversations (bot_id, environment, label) VALUES ('bot-1', 'live', 'c1')",
    );
    allowed(&mut app, APP, "UPDATE app.conversations SET label = 'c2'");
    allowed(
        &mut app,
        APP,
        "DELETE FROM app.conversations WHERE label = 'c2'",
    );
    allowed(&mut app, APP, "DELETE FROM app.sessions WHERE false");
    let stripped: String = app
        .query_one(
            "SELECT variables::text FROM app.sessions WHERE label = 's1'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        stripped, "{}",
        "the sensitive trigger ran for the application"
    );
    // Tenant settings within the bounds; outside them, 23514.
    allowed(&mut app, APP, "INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep) VALUES ('sessions', 'bot-1', NULL, '7 days')");
    allowed(
        &mut app,
        APP,
        "UPDATE retention.tenant_setting SET keep = '14 days' WHERE tenant = 'bot-1'",
    );
    allowed(&mut app, APP, "INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep) VALUES ('sessions', 'bot-2', 'live', '2 days')
                             ON CONFLICT (dataset, tenant, environment) DO UPDATE SET keep = EXCLUDED.keep");
    allowed(
        &mut app,
        APP,
        "DELETE FROM retention.tenant_setting WHERE tenant = 'bot-2'",
    );
    assert_eq!(
        sqlstate(
            &mut app,
            "INSERT INTO retention.tenant_setting VALUES ('sessions', 'bot-3', NULL, '2 years')"
        )
        .as_deref(),
        Some("23514")
    );
    // Erasure.
    allowed(
        &mut app,
        APP,
        "SELECT * FROM retention.erase('sessions', gen_random_uuid()::text)",
    );

    // Nothing else: the machinery, the evidence, the stamp, enforcement.
    for sql in [
        "SELECT * FROM retention.dataset",
        "UPDATE retention.dataset SET keep = '1 day'",
        "INSERT INTO retention.policy_override (dataset, tenant, keep, source) VALUES ('sessions', 'x', '1 day', 'x')",
        "DELETE FROM retention.policy_override",
        "DELETE FROM retention.hold",
        "INSERT INTO retention.hold (dataset, reason, source) VALUES ('sessions', 'x', 'x')",
        "SELECT * FROM retention.run_log",
        "INSERT INTO retention.run_log (dataset, action, reference_time, outcome) VALUES ('sessions', 'enforce', now(), 'ok')",
        "UPDATE retention.run_log SET outcome = 'ok'",
        "DELETE FROM retention.run_log",
        "INSERT INTO retention.keep_history (dataset, keep) VALUES ('sessions', '999 days')",
        "DELETE FROM retention.keep_history",
        "UPDATE retention.config SET run_log_keep = '1 day'",
        "DELETE FROM retention.environment",
        "DELETE FROM retention.fingerprint",
        "SELECT * FROM retention.expired_sessions",
        "CALL retention.enforce_sessions()",
        "CALL retention.enforce('sessions')",
        "SELECT retention.premake('sessions')",
        "SELECT retention.create_partition('sessions', now() + interval '100 days')",
        "SELECT retention.remove_batch('sessions', 'app.sessions'::regclass, now(), 0, 1000)",
        "SELECT retention.keep_for('sessions', 'bot-1', 'live')",
        "CREATE FUNCTION retention.mine() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TABLE retention.mine (x int)",
        "CREATE TRIGGER mine BEFORE DELETE ON app.sessions FOR EACH ROW EXECUTE FUNCTION retention.tenant_setting_check()",
        "TRUNCATE app.sessions",
        "ALTER TABLE app.sessions ADD COLUMN x int",
        "DROP TABLE app.sessions_default",
        "CREATE TABLE app.sessions_p29990101 (LIKE app.sessions)",
        "INSERT INTO app.sessions (bot_id, environment, conversation_id, retention_keep) VALUES ('bot-1', 'live', gen_random_uuid(), '400 days')",
        "UPDATE app.sessions SET retention_keep = '1 second'",
        "SELECT * FROM archive.sessions",
        "DELETE FROM archive.sessions",
    ] {
        denied(&mut app, APP, sql);
    }
}

#[test]
fn readers_read_the_evidence_and_nothing_more() {
    let d = Deployed::new(POLICY);
    d.sql("INSERT INTO app.conversations (bot_id, environment, started_at, label) VALUES ('bot-1', 'live', now() - interval '400 days', 'old')");
    d.run_job("conversations");
    let mut r = as_role(&d, READER);
    for sql in [
        "SELECT * FROM retention.dataset",
        "SELECT * FROM retention.environment",
        "SELECT * FROM retention.policy_override",
        "SELECT * FROM retention.hold",
        "SELECT * FROM retention.tenant_setting",
        "SELECT * FROM retention.keep_history",
        "SELECT * FROM retention.run_log",
        "SELECT * FROM retention.config",
        "SELECT * FROM retention.expired_conversations",
        "SELECT * FROM retention.expired_sessions",
        "SELECT * FROM retention.partitions('conversations')",
    ] {
        allowed(&mut r, READER, sql);
    }
    for sql in [
        "SELECT * FROM app.conversations",
        "SELECT * FROM archive.sessions",
        "INSERT INTO app.conversations (bot_id, environment) VALUES ('b', 'live')",
        "INSERT INTO retention.tenant_setting VALUES ('sessions', 'bot-1', NULL, '7 days')",
        "UPDATE retention.run_log SET outcome = 'ok'",
        "DELETE FROM retention.hold",
        "SELECT * FROM retention.erase('sessions', gen_random_uuid()::text)",
        "CALL retention.enforce_conversations()",
        "SELECT retention.premake('conversations')",
        "CREATE TABLE retention.mine (x int)",
    ] {
        denied(&mut r, READER, sql);
    }
}

#[test]
fn public_gets_nothing() {
    let d = Deployed::new(POLICY);
    d.cluster.create_roles(&["stranger"]);
    let mut s = as_role(&d, "stranger");
    for sql in [
        "SELECT * FROM retention.dataset",
        "SELECT * FROM retention.run_log",
        "SELECT * FROM retention.tenant_setting",
        "SELECT retention.keep_for('sessions', 'a', 'b')",
        "SELECT * FROM retention.erase('sessions', 'k')",
        "CALL retention.enforce_sessions()",
        "SELECT * FROM app.sessions",
        "INSERT INTO app.conversations (bot_id, environment) VALUES ('b', 'live')",
        "SELECT * FROM archive.sessions",
    ] {
        denied(&mut s, "a role not in access", sql);
    }
}

// ---------------------------------------------------------------------------
// The jobs run as the owner, not as a superuser
// ---------------------------------------------------------------------------

#[test]
fn jobs_run_as_the_owner_not_a_superuser() {
    let d = Deployed::new(&POLICY.replace("version: 1\n", "version: 1\nschedule: \"* * * * *\"\n"));
    let mut cron = d.cluster.client("postgres");
    let jobs: Vec<(String, String)> = cron
        .query(
            "SELECT jobname::text, username FROM cron.job ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    for (name, user) in &jobs {
        assert_eq!(user, OWNER, "{name} runs as {user}");
    }
    let owner_is_super: bool = d
        .app()
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = $1",
            &[&OWNER],
        )
        .unwrap()
        .get(0);
    assert!(!owner_is_super);
    // pg_cron fires the jobs by itself (every minute here); they run, as
    // the owner, and log who ran them.
    d.sql("INSERT INTO app.conversations (bot_id, environment, started_at, label) VALUES ('bot-1', 'live', now() - interval '400 days', 'old')");
    let ran = wait_for(Duration::from_secs(75), || {
        let n: i64 = d
            .app()
            .query_one(
                "SELECT count(*) FROM retention.run_log WHERE dataset = 'conversations' AND outcome = 'ok'",
                &[],
            )
            .unwrap()
            .get(0);
        n > 0
    });
    assert!(
        ran,
        "pg_cron did not run the job: {}",
        d.cluster.log_tail(30)
    );
    let (run_by, outcome): (String, String) = {
        let r = d
            .app()
            .query_one(
                "SELECT run_by, outcome FROM retention.run_log WHERE dataset = 'conversations' ORDER BY id LIMIT 1",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((run_by.as_str(), outcome.as_str()), (OWNER, "ok"));
    assert_eq!(
        d.count("app.conversations"),
        0,
        "the job removed the expired row"
    );
    let details: Vec<(String, String)> = cron
        .query(
            "SELECT d.username, d.status FROM cron.job_run_details d JOIN cron.job j USING (jobid)
              WHERE j.jobname = 'pgretain:app:conversations' AND status = 'succeeded'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        !details.is_empty() && details.iter().all(|(u, _)| u == OWNER),
        "{details:?}"
    );
    // The trim job runs as the owner too, and can do its work.
    let trim_user: String = cron
        .query_one(
            "SELECT username FROM cron.job WHERE jobname = 'pgretain:trim-job-run-details'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(trim_user, OWNER);
    let cmd: String = cron
        .query_one(
            "SELECT command FROM cron.job WHERE jobname = 'pgretain:trim-job-run-details'",
            &[],
        )
        .unwrap()
        .get(0);
    let mut owner_cron = Client::connect(
        &d.cluster
            .conninfo("postgres")
            .replace("user=postgres", "user=retention_owner"),
        postgres::NoTls,
    )
    .unwrap();
    owner_cron
        .batch_execute(&format!("BEGIN; {cmd}; COMMIT"))
        .unwrap();
    // And `pgretain run` runs as the owner as well, like the job.
    pgretain::cmd::run::run(Some(&d.url), &["sessions".to_string()]).unwrap();
    let run_by: String = d
        .app()
        .query_one(
            "SELECT run_by FROM retention.run_log WHERE dataset = 'sessions' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    // run_by is the login role (postgres, who ran the CLI); the work was
    // done as the owner: it owns every partition made since.
    assert_eq!(run_by, "postgres");
    let foreign: i64 = d
        .app()
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
              WHERE i.inhparent IN ('app.sessions'::regclass, 'app.conversations'::regclass)
                AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = $1)",
            &[&OWNER],
        )
        .unwrap()
        .get(0);
    assert_eq!(foreign, 0, "every partition belongs to the owner");
}

// ---------------------------------------------------------------------------
// A forged stamp changes nothing
// ---------------------------------------------------------------------------

#[test]
fn a_forged_stamp_changes_nothing() {
    let d = Deployed::new(POLICY);
    d.backfill_partitions("sessions", 60);
    // The application cannot send one (it has no right on the column).
    let mut app = as_role(&d, APP);
    denied(
        &mut app,
        APP,
        "INSERT INTO app.sessions (bot_id, environment, conversation_id, retention_keep, label)
                            VALUES ('bot-1', 'live', gen_random_uuid(), '400 days', 'forged')",
    );
    // A role that may write the column (the DBA) is ignored by the trigger:
    // too long, too short, both replaced by the retention in force.
    d.sql("INSERT INTO app.sessions (bot_id, environment, conversation_id, last_activity_at, retention_keep, label) VALUES
             ('bot-1', 'live', gen_random_uuid(), now() - interval '50 days', '400 days', 'long'),
             ('bot-1', 'live', gen_random_uuid(), now() - interval '1 minute', '1 second', 'short')");
    let stamps: Vec<(String, String)> = d
        .app()
        .query(
            "SELECT label, retention_keep::text FROM app.sessions ORDER BY label",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        stamps,
        [
            ("long".to_string(), "30 days".to_string()),
            ("short".to_string(), "30 days".to_string())
        ]
    );
    // A row moved to another partition by an update keeps its stamp (the
    // retention in force when it was inserted), even after a new setting.
    d.sql("INSERT INTO retention.tenant_setting VALUES ('sessions', 'bot-1', NULL, '7 days')");
    d.sql("UPDATE app.sessions SET last_activity_at = now() - interval '40 days' WHERE label = 'long'");
    d.sql(
        "UPDATE app.sessions SET last_activity_at = now() - interval '2 days' WHERE label = 'long'",
    );
    let kept: String = d
        .app()
        .query_one(
            "SELECT retention_keep::text FROM app.sessions WHERE label = 'long'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(kept, "30 days", "a moved row keeps its stamp");

    // A stamp that bypassed the trigger (a bulk load with triggers off, a
    // row from before runtime version 2) can keep a row of an otherwise
    // expired partition: the partition is not dropped, the run is
    // `partial`, and the row is neither lost nor archived early.
    d.sql("ALTER TABLE app.sessions DISABLE TRIGGER pgretain_stamp_keep;
           INSERT INTO app.sessions (bot_id, environment, conversation_id, last_activity_at, retention_keep, label) VALUES
             ('bot-1', 'live', gen_random_uuid(), now() - interval '45 days', '400 days', 'bypassed'),
             ('bot-1', 'live', gen_random_uuid(), now() - interval '45 days', '30 days', 'expired');
           ALTER TABLE app.sessions ENABLE TRIGGER pgretain_stamp_keep;");
    d.run_job("sessions");
    let labels = d.labels("app.sessions");
    assert!(labels.contains(&"bypassed".to_string()), "{labels:?}");
    assert!(!labels.contains(&"expired".to_string()), "{labels:?}");
    let archived = d.labels("archive.sessions");
    assert_eq!(archived, ["expired"], "only the expired row was archived");
    let (outcome, detail): (String, Option<String>) = {
        let r = d
            .app()
            .query_one(
                "SELECT outcome, detail FROM retention.run_log WHERE action = 'enforce' ORDER BY id DESC LIMIT 1",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(outcome, "partial", "{detail:?}");
    assert!(
        detail.as_deref().unwrap_or("").contains("not dropped"),
        "{detail:?}"
    );
}

// ---------------------------------------------------------------------------
// apply checks the roles; warns without access; refuses a planted history
// ---------------------------------------------------------------------------

fn apply_cli(d: &Deployed) -> (i32, String) {
    let (code, _, err) = cli(&[
        "apply",
        "--database-url",
        &d.url,
        "--generated",
        d.generated.path().to_str().unwrap(),
    ]);
    (code, err)
}

fn nothing_applied(d: &Deployed) -> bool {
    let n: i64 = d
        .app()
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'retention'",
            &[],
        )
        .unwrap()
        .get(0);
    n == 0
}

#[test]
fn apply_refuses_roles_that_cannot_do_their_part() {
    let d = Deployed::compiled(POLICY);
    let cases: &[(&str, &str, &str)] = &[
        // (set-up, undo, what the error must say)
        (
            "DROP ROLE compliance_auditor",
            "CREATE ROLE compliance_auditor LOGIN",
            "role `compliance_auditor` named in `access`",
        ),
        (
            "ALTER ROLE retention_owner SUPERUSER",
            "ALTER ROLE retention_owner NOSUPERUSER",
            "is a superuser",
        ),
        (
            "ALTER ROLE retention_owner NOLOGIN",
            "ALTER ROLE retention_owner LOGIN",
            "ALTER ROLE \"retention_owner\" LOGIN",
        ),
        (
            "ALTER ROLE chatbot_app SUPERUSER",
            "ALTER ROLE chatbot_app NOSUPERUSER",
            "role `chatbot_app` of `access` is a superuser",
        ),
        (
            "GRANT retention_owner TO chatbot_app",
            "REVOKE retention_owner FROM chatbot_app",
            "REVOKE \"retention_owner\" FROM \"chatbot_app\"",
        ),
        (
            "REVOKE CONNECT ON DATABASE app FROM PUBLIC",
            "GRANT CONNECT ON DATABASE app TO PUBLIC",
            "GRANT CONNECT ON DATABASE \"app\" TO \"retention_owner\"",
        ),
    ];
    for (setup, undo, expected) in cases {
        d.cluster.client("postgres").batch_execute(setup).unwrap();
        let (code, err) = apply_cli(&d);
        assert_eq!(code, 3, "{setup}: {err}");
        assert!(err.contains(expected), "{setup}: {err}");
        assert!(err.contains("nothing was changed"), "{setup}: {err}");
        assert!(nothing_applied(&d), "{setup}: something was applied");
        d.cluster.client("postgres").batch_execute(undo).unwrap();
    }
    let (code, err) = apply_cli(&d);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn apply_warns_when_a_superuser_applies_without_access() {
    let without = POLICY
        .replace("access:\n  owner: retention_owner\n  application: [chatbot_app]\n  readers: [compliance_auditor]\n", "");
    let d = Deployed::compiled(&without);
    let (code, err) = apply_cli(&d);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: the policy has no `access`, and apply runs as a superuser"),
        "{err}"
    );
    let d = Deployed::compiled(POLICY);
    let (code, err) = apply_cli(&d);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn a_migration_history_planted_by_another_role_is_refused() {
    let d = Deployed::compiled(POLICY);
    d.cluster
        .client("app")
        .batch_execute("CREATE ROLE mallory LOGIN; GRANT CREATE ON SCHEMA public TO mallory;")
        .unwrap();
    as_role(&d, "mallory")
        .batch_execute(
            "CREATE TABLE public.pgretain_schema_history (version int4 PRIMARY KEY, name varchar(255), applied_on varchar(255), checksum varchar(255));
             GRANT ALL ON public.pgretain_schema_history TO PUBLIC;",
        )
        .unwrap();
    let (code, err) = apply_cli(&d);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("refusing to use the migration history \"public\".\"pgretain_schema_history\": it is a table, owned by role `mallory`"), "{err}");
    assert!(nothing_applied(&d));
    d.sql("DROP TABLE public.pgretain_schema_history");
    let (code, err) = apply_cli(&d);
    assert_eq!(code, 0, "{err}");
}
