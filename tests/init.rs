//! `pgretain init` (SPEC §3 "Existing tables", §5) on a real PostgreSQL:
//! the stub for a Chatwoot-shaped schema (a `timestamp without time zone`
//! clock written by Rails, serial keys, json and jsonb, a GIN index, unique
//! indexes), byte for byte; that `check` accepts it as written; that it is
//! the same every time; that a table's comment stays data; and the
//! refusals (exit 2 for bad input, 3 for an unreachable database).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::Cluster;
use pgretain::cmd::init::{init, InitError, InitOptions};
use pgretain::cmd::{exit, Failure, Outcome};

const CHATWOOT: &str = r#"
CREATE TABLE public.messages (
    id serial PRIMARY KEY,
    content text,
    account_id integer NOT NULL,
    inbox_id integer NOT NULL,
    conversation_id integer NOT NULL,
    message_type integer NOT NULL,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL,
    private boolean DEFAULT false NOT NULL,
    status integer DEFAULT 0,
    source_id text,
    content_type integer DEFAULT 0 NOT NULL,
    content_attributes json DEFAULT '{}'::json,
    sender_type character varying,
    sender_id bigint,
    external_source_ids jsonb DEFAULT '{}'::jsonb,
    additional_attributes jsonb DEFAULT '{}'::jsonb
);
CREATE INDEX index_messages_on_account_id ON public.messages (account_id);
CREATE INDEX index_messages_on_conversation_id ON public.messages (conversation_id);
CREATE INDEX index_messages_on_source_id ON public.messages (source_id);
CREATE INDEX index_messages_on_content ON public.messages USING gin (to_tsvector('english', content));
CREATE INDEX idx_messages_account_created ON public.messages (account_id, created_at);
COMMENT ON TABLE public.messages IS 'Messages of conversations, from every channel';

CREATE TABLE public.conversations (
    id serial PRIMARY KEY,
    account_id integer NOT NULL,
    inbox_id integer NOT NULL,
    status integer DEFAULT 0 NOT NULL,
    assignee_id integer,
    created_at timestamp without time zone NOT NULL,
    updated_at timestamp without time zone NOT NULL,
    contact_id bigint,
    display_id integer NOT NULL,
    contact_last_seen_at timestamp without time zone,
    uuid uuid DEFAULT gen_random_uuid() NOT NULL,
    last_activity_at timestamp without time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    custom_attributes jsonb DEFAULT '{}'::jsonb
);
CREATE UNIQUE INDEX index_conversations_on_account_id_and_display_id ON public.conversations (account_id, display_id);
CREATE UNIQUE INDEX index_conversations_on_uuid ON public.conversations (uuid);
CREATE INDEX index_conversations_on_status_and_account_id ON public.conversations (status, account_id);

CREATE SCHEMA app;
CREATE TABLE app.user_sessions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL,
    environment text NOT NULL,
    token text UNIQUE,
    expires_at timestamptz,
    last_seen_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"#;

const TABLES: &[&str] = &[
    "public.messages",
    "public.conversations",
    "app.user_sessions",
];

fn chatwoot(cluster: &Cluster) -> String {
    let url = cluster.create_database("chatwoot");
    cluster
        .client("chatwoot")
        .batch_execute(CHATWOOT)
        .expect("the Chatwoot-shaped schema");
    url
}

fn opts(url: &str, tables: &[&str], out: Option<&Path>) -> InitOptions {
    InitOptions {
        database_url: Some(url.to_string()),
        tables: tables.iter().map(|t| t.to_string()).collect(),
        out: out.map(Path::to_path_buf),
    }
}

fn cli(url: &str, args: &[&str]) -> Output {
    Command::new(common::pgretain_bin())
        .arg("init")
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .expect("running pgretain")
}

fn check_cli(dir: &Path) -> Output {
    Command::new(common::pgretain_bin())
        .arg("check")
        .arg(dir)
        .output()
        .expect("running pgretain check")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn chatwoot_stub_is_exact_deterministic_and_checks() {
    let cluster = Cluster::start();
    let url = chatwoot(&cluster);

    let first = init(&opts(&url, TABLES, None)).unwrap_or_else(|e| panic!("{e}"));
    let yaml = first.yaml.clone().expect("the stub on stdout");
    insta::assert_snapshot!("chatwoot_stub", yaml);
    assert_eq!(first.text(), yaml);
    // A clock that may be NULL is the only thing warned about; none here.
    assert!(first.warnings().is_empty(), "{:?}", first.warnings());

    // The same database gives the same bytes, from the library and the binary.
    let again = init(&opts(&url, TABLES, None)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.yaml.as_deref(), Some(yaml.as_str()));
    let out = cli(&url, TABLES);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), yaml);
    assert_eq!(text(&out.stderr), "");

    // `check` accepts the stub as written.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("existing.yaml"), &yaml).unwrap();
    let checked = check_cli(dir.path());
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{}{}",
        text(&checked.stdout),
        text(&checked.stderr)
    );
    assert_eq!(
        text(&checked.stdout),
        "policy ok: 3 datasets, 0 overrides, 0 holds (1 file)\n"
    );

    // --out: one file per table, each a policy file of its own that checks,
    // together with the others; the messages file is the same stub for one table.
    let policies = tempfile::tempdir().unwrap();
    let out_dir = policies.path().join("policies");
    let out_arg = out_dir.to_str().unwrap();
    let out = Command::new(common::pgretain_bin())
        .args(["init", "--database-url", &url, "--out", out_arg])
        .args(TABLES)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["conversations.yaml", "messages.yaml", "user_sessions.yaml"]
    );
    assert!(
        text(&out.stdout).contains("wrote ")
            && text(&out.stdout).contains("dataset `user_sessions` for app.user_sessions"),
        "{}",
        text(&out.stdout)
    );
    let one = init(&opts(&url, &["public.messages"], None))
        .unwrap()
        .yaml
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(out_dir.join("messages.yaml")).unwrap(),
        one
    );
    // The policy reference shows this very stub.
    let reference = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/policy-reference.md"),
    )
    .unwrap();
    let shown = reference
        .split("The stub for a Chatwoot `messages` table, `pgretain init public.messages`:\n\n```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the stub in docs/policy-reference.md §11");
    assert_eq!(shown, one, "docs/policy-reference.md §11 shows an old stub");
    let summary = pgretain::cmd::check::check(&out_dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        summary,
        "policy ok: 3 datasets, 0 overrides, 0 holds (3 files)"
    );

    // Never over an existing file: nothing is written, exit 2, the file named.
    let before = std::fs::read_to_string(out_dir.join("messages.yaml")).unwrap();
    std::fs::remove_file(out_dir.join("conversations.yaml")).unwrap();
    let out = cli(
        &url,
        &["--out", out_arg, "public.conversations", "public.messages"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("messages.yaml exists") && err.contains("never overwrites"),
        "{err}"
    );
    assert!(!out_dir.join("conversations.yaml").exists());
    assert_eq!(
        std::fs::read_to_string(out_dir.join("messages.yaml")).unwrap(),
        before
    );
}

/// A table comment with a newline, `#`, quotes, `: ` and invisible
/// characters is the description, exactly, and starts no key.
#[test]
fn a_table_comment_stays_data() {
    let cluster = Cluster::start();
    let url = cluster.create_database("app");
    let hostile = "Daily audit rows.\nkeep: 1 day\n# tenant: x\n  time: note\n\"quoted\" and 'single' \\ back: slash \u{2028}ls \u{85}nel";
    let mut c = cluster.client("app");
    c.batch_execute("CREATE SCHEMA audit; CREATE TABLE audit.days (day date NOT NULL, tenant_id text, note text)")
        .unwrap();
    // The comment goes in as a bound parameter, quoted by format('%L').
    let row = c
        .query_one(
            "SELECT format('COMMENT ON TABLE audit.days IS %L', $1::text)",
            &[&hostile],
        )
        .unwrap();
    let stmt: String = row.get(0);
    c.batch_execute(&stmt).unwrap();

    let done = init(&opts(&url, &["audit.days"], None)).unwrap_or_else(|e| panic!("{e}"));
    let yaml = done.yaml.unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let ds = &doc["datasets"]["days"];
    assert_eq!(ds["description"].as_str(), Some(hostile), "{yaml}");
    assert_eq!(ds["keep"].as_str(), Some("365 days"));
    assert_eq!(ds["time"].as_str(), Some("day"));
    assert_eq!(ds["time_zone"].as_str(), Some("UTC"));
    assert_eq!(ds["tenant"].as_str(), Some("tenant_id"));
    let keys: Vec<&str> = ds
        .as_mapping()
        .unwrap()
        .keys()
        .filter_map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "description",
            "table",
            "time",
            "time_zone",
            "tenant",
            "keep"
        ]
    );

    // And pgretain itself reads the same description.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("audit.yaml"), &yaml).unwrap();
    let policy = pgretain::policy::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.datasets[0].description, hostile);
}

#[test]
fn refusals_name_the_table_and_exit_2_or_3() {
    let cluster = Cluster::start();
    let url = cluster.create_database("app");
    cluster
        .client("app")
        .batch_execute(
            "CREATE TABLE public.tags (id serial PRIMARY KEY, name text NOT NULL);
             CREATE TABLE public.events (id bigint, created_at timestamptz);
             CREATE VIEW public.recent AS SELECT * FROM public.events;",
        )
        .unwrap();

    // A table that does not exist: bad input, named.
    let out = cli(&url, &["public.nope"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("table `public.nope` does not exist in database `app`"),
        "{err}"
    );
    assert_eq!(text(&out.stdout), "");

    // No temporal column: no retention clock exists.
    let e = init(&opts(&url, &["public.tags"], None)).unwrap_err();
    assert_eq!(e.exit_code(), exit::INVALID);
    assert!(
        e.to_string()
            .contains("table `public.tags` has no timestamptz, timestamp or date column"),
        "{e}"
    );

    // Every bad table at once, nothing else printed.
    let out = cli(
        &url,
        &[
            "public.nope",
            "public.tags",
            "public.recent",
            "public.events",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("public.nope") && err.contains("public.tags"),
        "{err}"
    );
    assert!(
        err.contains("`public.recent` is a view, not a table"),
        "{err}"
    );
    assert_eq!(text(&out.stdout), "");

    // Names checked before any connection: not schema-qualified, capitals.
    let e = init(&opts(
        "host=/nonexistent port=1",
        &["messages", "public.Messages"],
        None,
    ))
    .unwrap_err();
    assert!(
        matches!(e, InitError::Invalid(ref m) if m.len() == 2),
        "{e}"
    );
    assert!(e.to_string().contains("names no schema"), "{e}");

    // A nullable clock is written, with a warning and a comment.
    let done = init(&opts(&url, &["public.events"], None)).unwrap();
    assert!(done
        .yaml
        .as_deref()
        .unwrap()
        .contains("adoption refuses a clock that may be NULL"));
    assert_eq!(done.warnings().len(), 1);
    assert!(done.warnings()[0]
        .contains("ALTER TABLE public.events ALTER COLUMN created_at SET NOT NULL"));

    // What apply would refuse besides is said as a warning: a view reading
    // the table.
    let mut c = cluster.client("app");
    c.batch_execute(
        "CREATE TABLE public.viewed (id bigint, created_at timestamptz NOT NULL);
         CREATE VIEW public.recent_viewed AS SELECT * FROM public.viewed",
    )
    .unwrap();
    let done = init(&opts(&url, &["public.viewed"], None)).unwrap();
    assert_eq!(done.warnings().len(), 1, "{:?}", done.warnings());
    assert!(
        done.warnings()[0].contains("would refuse to adopt it")
            && done.warnings()[0].contains("view public.recent_viewed reads public.viewed"),
        "{:?}",
        done.warnings()
    );

    // A database that cannot be reached: exit 3.
    let down = format!(
        "host={} port={} user=postgres dbname=app",
        cluster.socket_dir().display(),
        cluster.port() + 1
    );
    let out = cli(&down, &["public.events"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );

    // Usage: no table at all.
    let out = cli(&url, &[]);
    assert_eq!(out.status.code(), Some(2));
}

/// What the stub says is true of adoption: as written, `apply` refuses the
/// primary key without the clock, as its `unique_keys` comment says; with
/// that line uncommented, the Chatwoot table is adopted in place and keeps
/// its rows.
#[test]
fn the_stub_adopts_once_its_unique_keys_line_is_uncommented() {
    use pgretain::cmd::apply::{apply, ApplyOptions};
    use pgretain::cmd::compile::{compile, CompileOptions};

    let cluster = Cluster::start();
    let url = chatwoot(&cluster);
    cluster
        .client("chatwoot")
        .batch_execute(
            "INSERT INTO public.messages (content, account_id, inbox_id, conversation_id, message_type, created_at, updated_at)
             SELECT 'hello ' || g, 1 + g % 3, 1, g, 0, now() - g * interval '1 day', now()
               FROM generate_series(1, 50) g",
        )
        .unwrap();
    let yaml = init(&opts(&url, &["public.messages"], None))
        .unwrap()
        .yaml
        .unwrap();
    let deploy = |yaml: &str| {
        let policy = tempfile::tempdir().unwrap();
        let generated = tempfile::tempdir().unwrap();
        std::fs::write(policy.path().join("messages.yaml"), yaml).unwrap();
        compile(&CompileOptions {
            policy_dir: policy.path().to_path_buf(),
            generated_dir: generated.path().to_path_buf(),
            check: false,
            allow_destructive: false,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        apply(&ApplyOptions {
            database_url: Some(url.clone()),
            generated_dir: generated.path().to_path_buf(),
            dry_run: false,
            cron_database: None,
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
    };

    let refused = deploy(&yaml).unwrap_err();
    assert!(refused.contains("unique_keys: include_time"), "{refused}");

    let line = yaml
        .lines()
        .find(|l| l.trim_start().starts_with("# unique_keys: include_time"))
        .expect("the commented unique_keys line");
    let allowed = yaml.replace(line, "    unique_keys: include_time");
    deploy(&allowed).unwrap_or_else(|e| panic!("{e}"));
    let mut c = cluster.client("chatwoot");
    let kind: String = c
        .query_one(
            "SELECT relkind::text FROM pg_class WHERE oid = 'public.messages'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(kind, "p");
    let rows: i64 = c
        .query_one("SELECT count(*) FROM public.messages", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 50);
}
