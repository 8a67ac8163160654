//! SPEC §3 "Existing tables": a Chatwoot-shaped table the application
//! created and owns (serial primary key, `timestamp` clocks written in UTC,
//! json and jsonb, a dozen indexes with a pg_trgm GIN one, a trigger, a
//! grant to a reporting role) is adopted in place by `apply` while the
//! application goes on inserting and reading; and every table pgretain
//! cannot convert safely is refused with the object named, nothing changed.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::deploy::Deployed;
use pgretain::cmd::apply::{apply, ApplyOptions};

const POLICY: &str = r#"
version: 1
datasets:
  messages:
    description: Chat messages (History > Conversations).
    table: public.messages
    time: created_at
    tenant: account_id
    unique_keys: include_time
    keep: 180 days
    partition: month

  conversations:
    description: Conversations (History > Conversations).
    table: public.conversations
    time: last_activity_at
    tenant: account_id
    unique_keys: include_time
    keep: 365 days
    partition: month

overrides:
  - tenant: "7"
    keep: { messages: 365 days }

holds:
  - tenant: "3"
    datasets: [messages]
    reason: "litigation hold 2026-31"
"#;

/// The table as Chatwoot's Rails migrations leave it (trimmed to what
/// matters here), owned by the application's migration role.
const CHATWOOT_MESSAGES: &str = r#"
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE ROLE chatwoot LOGIN;
CREATE ROLE reporting LOGIN;
CREATE TABLE public.messages (
    id serial PRIMARY KEY,
    content text,
    account_id integer NOT NULL,
    inbox_id integer NOT NULL,
    conversation_id integer NOT NULL,
    message_type integer NOT NULL CHECK (message_type >= 0),
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
CREATE INDEX index_messages_on_inbox_id ON public.messages (inbox_id);
CREATE INDEX index_messages_on_conversation_id ON public.messages (conversation_id);
CREATE INDEX index_messages_on_source_id ON public.messages (source_id);
CREATE INDEX index_messages_on_sender_type_and_sender_id ON public.messages (sender_type, sender_id);
CREATE INDEX index_messages_on_created_at ON public.messages (created_at);
CREATE INDEX idx_messages_account_content_created ON public.messages (account_id, content_type, created_at);
CREATE INDEX index_messages_on_account_created_type ON public.messages (account_id, created_at, message_type);
CREATE INDEX index_messages_on_content ON public.messages USING gin (content public.gin_trgm_ops);
CREATE INDEX index_messages_on_additional_attributes ON public.messages USING gin (additional_attributes);
CREATE INDEX index_messages_private_outgoing ON public.messages (conversation_id) WHERE private AND message_type = 1;
CREATE INDEX index_messages_on_lower_source ON public.messages (lower(source_id));
COMMENT ON TABLE public.messages IS 'chat messages';
COMMENT ON COLUMN public.messages.content IS 'what was said';
CREATE FUNCTION public.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.updated_at := now() AT TIME ZONE 'UTC'; RETURN NEW; END $$;
CREATE TRIGGER messages_touch BEFORE UPDATE ON public.messages
  FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();
ALTER TABLE public.messages OWNER TO chatwoot;
GRANT SELECT ON public.messages TO reporting;

CREATE TABLE public.conversations (
    id serial PRIMARY KEY,
    account_id integer NOT NULL,
    inbox_id integer NOT NULL,
    status integer DEFAULT 0 NOT NULL,
    assignee_id integer,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL,
    contact_id bigint,
    display_id integer NOT NULL,
    contact_last_seen_at timestamp without time zone,
    agent_last_seen_at timestamp without time zone,
    additional_attributes jsonb DEFAULT '{}'::jsonb,
    contact_inbox_id bigint,
    uuid uuid DEFAULT gen_random_uuid() NOT NULL,
    identifier character varying,
    last_activity_at timestamp without time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    team_id bigint,
    campaign_id bigint,
    snoozed_until timestamp without time zone,
    custom_attributes jsonb DEFAULT '{}'::jsonb,
    assignee_last_seen_at timestamp without time zone,
    first_reply_created_at timestamp without time zone,
    priority integer,
    sla_policy_id bigint,
    cached_label_list text
);
CREATE UNIQUE INDEX index_conversations_on_account_id_and_display_id ON public.conversations (account_id, display_id);
CREATE INDEX index_conversations_on_account_id ON public.conversations (account_id);
CREATE INDEX conv_acid_inbid_stat_asgnid_idx ON public.conversations (account_id, inbox_id, status, assignee_id);
CREATE INDEX index_conversations_on_assignee_id_and_account_id ON public.conversations (assignee_id, account_id);
CREATE INDEX index_conversations_on_campaign_id ON public.conversations (campaign_id);
CREATE INDEX index_conversations_on_contact_id ON public.conversations (contact_id);
CREATE INDEX index_conversations_on_contact_inbox_id ON public.conversations (contact_inbox_id);
CREATE INDEX index_conversations_on_first_reply_created_at ON public.conversations (first_reply_created_at);
CREATE INDEX index_conversations_on_id_and_account_id ON public.conversations (account_id, id);
CREATE INDEX index_conversations_on_inbox_id ON public.conversations (inbox_id);
CREATE INDEX index_conversations_on_priority ON public.conversations (priority);
CREATE INDEX index_conversations_on_status_and_account_id ON public.conversations (status, account_id);
CREATE INDEX index_conversations_on_status_and_priority ON public.conversations (status, priority);
CREATE INDEX index_conversations_on_team_id ON public.conversations (team_id);
CREATE UNIQUE INDEX index_conversations_on_uuid ON public.conversations (uuid);
CREATE INDEX index_conversations_on_last_activity_at ON public.conversations (last_activity_at);
CREATE INDEX index_conversations_on_custom_attributes ON public.conversations USING gin (custom_attributes);
ALTER TABLE public.conversations OWNER TO chatwoot;
GRANT SELECT ON public.conversations TO reporting;
"#;

/// ~`rows` messages spread over 540 days, times in UTC wall time.
fn fill(rows: i64) -> String {
    format!(
        "INSERT INTO public.messages (content, account_id, inbox_id, conversation_id, message_type,
                                      created_at, updated_at, source_id, content_attributes, additional_attributes)
         SELECT 'message ' || n || ' about order ' || (n % 977), n % 20, n % 50, n / 7, n % 3,
                (now() AT TIME ZONE 'UTC') - (n % 540) * interval '1 day' - (n % 86400) * interval '1 second',
                (now() AT TIME ZONE 'UTC') - (n % 540) * interval '1 day',
                'src-' || n, json_build_object('n', n), jsonb_build_object('k', n % 11)
           FROM generate_series(1, {rows}) AS n"
    )
}

/// Index definitions, with the table's name taken out (`ON ONLY` is how a
/// partitioned table's index prints).
fn index_defs(c: &mut postgres::Client) -> Vec<String> {
    let mut v: Vec<String> = c
        .query(
            "SELECT replace(pg_get_indexdef(i.indexrelid), ' ON ONLY ', ' ON ')
               FROM pg_index i WHERE i.indrelid = 'public.messages'::regclass",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    v.sort();
    v
}

fn checksum(c: &mut postgres::Client, max_id: i32) -> String {
    c.query_one(
        "SELECT md5(string_agg(m::text, '|' ORDER BY m.id)) FROM public.messages m WHERE m.id <= $1",
        &[&max_id],
    )
    .unwrap()
    .get(0)
}

#[test]
fn a_chatwoot_table_is_adopted_online_with_everything_it_had() {
    let d = Deployed::compiled(POLICY);
    d.sql(CHATWOOT_MESSAGES);
    // PGRETAIN_ADOPT_ROWS=1000000 measures the figures of docs/adopting.md.
    let rows: i64 = std::env::var("PGRETAIN_ADOPT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    d.sql(&fill(rows));
    d.sql(
        "INSERT INTO public.conversations (account_id, inbox_id, status, created_at, updated_at, display_id,
                                           last_activity_at, custom_attributes)
         SELECT n % 20, n % 50, n % 3, (now() AT TIME ZONE 'UTC') - (n % 540) * interval '1 day',
                (now() AT TIME ZONE 'UTC') - (n % 540) * interval '1 day', n,
                (now() AT TIME ZONE 'UTC') - (n % 540) * interval '1 day' - (n % 86400) * interval '1 second',
                jsonb_build_object('n', n)
           FROM generate_series(1, 50000) AS n",
    );
    d.sql("ANALYZE public.messages; ANALYZE public.conversations");
    let mut c = d.app();
    let max_id: i32 = c
        .query_one("SELECT max(id) FROM public.messages", &[])
        .unwrap()
        .get(0);
    let before_sum = checksum(&mut c, max_id);
    let before_indexes = index_defs(&mut c);

    // The application: inserts and reads by key, as fast as it can, for
    // the whole apply.
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Mutex::new((
        0u64,
        0u64,
        Duration::ZERO,
        Vec::<String>::new(),
    )));
    let load = {
        let (stop, stats) = (stop.clone(), stats.clone());
        let url = d.url.clone();
        std::thread::spawn(move || {
            let mut app = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            app.batch_execute("SET lock_timeout = '5s'").unwrap();
            let mut n: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let t0 = Instant::now();
                let r = if n % 2 == 0 {
                    app.execute(
                        "INSERT INTO public.messages (content, account_id, inbox_id, conversation_id, message_type,
                                                      created_at, updated_at)
                         VALUES ('live', 5, 1, 1, 1, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')",
                        &[],
                    )
                } else {
                    app.execute(
                        "SELECT content FROM public.messages WHERE id = $1",
                        &[&((n % 1000) as i32 + 1)],
                    )
                };
                let dt = t0.elapsed();
                let mut s = stats.lock().unwrap();
                s.0 += 1;
                s.2 = s.2.max(dt);
                if let Err(e) = r {
                    s.1 += 1;
                    s.3.push(format!("{e:?}"));
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let report = apply(&ApplyOptions {
        database_url: Some(d.url.clone()),
        generated_dir: d.generated.path().to_path_buf(),
        dry_run: false,
        cron_database: None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let (statements, failed, max_latency, errors) = stats.lock().unwrap().clone();
    eprintln!(
        "adopted {rows} rows in {:.1} s; the application ran {statements} statements, {failed} failed, max latency {} ms",
        took.as_secs_f64(),
        max_latency.as_millis()
    );
    assert!(report.migrations.len() == 1);
    assert_eq!(failed, 0, "{errors:?}");
    assert!(statements > 100);
    assert!(max_latency < Duration::from_secs(5));

    // Partitioned now, same rows, same bytes.
    let kind: String = c
        .query_one(
            "SELECT relkind::text FROM pg_class WHERE oid = 'public.messages'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(kind, "p");
    assert_eq!(checksum(&mut c, max_id), before_sum);

    // Indexes: every one the application had, under its own name, the
    // primary key extended by the clock, and pgretain's (account_id,
    // created_at); (created_at) was the application's already.
    let after = index_defs(&mut c);
    let mut expected: Vec<String> = before_indexes
        .iter()
        .map(|d| {
            d.replace(
                "CREATE UNIQUE INDEX messages_pkey ON public.messages USING btree (id)",
                "CREATE UNIQUE INDEX messages_pkey ON public.messages USING btree (id, created_at)",
            )
        })
        .collect();
    expected.push(
        "CREATE INDEX messages_account_id_created_at_idx ON public.messages USING btree (account_id, created_at)"
            .into(),
    );
    expected.sort();
    assert_eq!(after, expected);

    // Owner, grants, comments, the trigger, the CHECK, the sequence.
    let row = c
        .query_one(
            "SELECT pg_get_userbyid(c.relowner)::text, has_table_privilege('reporting', c.oid, 'SELECT'),
                    obj_description(c.oid, 'pg_class'), col_description(c.oid, 2),
                    (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'messages_touch'),
                    (SELECT count(*) FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'c'),
                    pg_get_serial_sequence('public.messages', 'id')
               FROM pg_class c WHERE c.oid = 'public.messages'::regclass",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "chatwoot");
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, String>(2), "chat messages");
    assert_eq!(row.get::<_, String>(3), "what was said");
    assert_eq!(row.get::<_, i64>(4), 1);
    assert_eq!(row.get::<_, i64>(5), 1);
    assert_eq!(row.get::<_, String>(6), "public.messages_id_seq");
    let id: i32 = c
        .query_one(
            "INSERT INTO public.messages (content, account_id, inbox_id, conversation_id, message_type, created_at, updated_at)
             VALUES ('after', 1, 1, 1, 0, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC') RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(id > max_id);
    // The application's trigger still fires (once).
    c.batch_execute(&format!(
        "UPDATE public.messages SET updated_at = '2000-01-01' WHERE id = {id}"
    ))
    .unwrap();
    let touched: bool = c
        .query_one(
            &format!("SELECT updated_at > '2020-01-01' FROM public.messages WHERE id = {id}"),
            &[],
        )
        .unwrap()
        .get(0);
    assert!(touched);
    // The application's migrations keep working on the parent.
    c.batch_execute(
        "ALTER TABLE public.messages ADD COLUMN sentiment jsonb DEFAULT '{}'::jsonb;
         CREATE INDEX index_messages_on_sender_id ON public.messages (sender_id);",
    )
    .unwrap();

    // The guarantee, exact at a pinned T, against an oracle: 180 days, 365
    // for account 7, account 3 held.
    let t: String = c
        .query_one(
            "SELECT to_char(date_trunc('second', now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'",
            &[],
        )
        .unwrap()
        .get(0);
    let oracle = format!(
        "SELECT count(*) FROM public.messages m
          WHERE NOT (m.created_at + CASE WHEN m.account_id = 7 THEN interval '365 days' ELSE interval '180 days' END
                       < ('{t}'::timestamptz AT TIME ZONE 'UTC'))
             OR m.account_id = 3"
    );
    let expected_left: i64 = c.query_one(oracle.as_str(), &[]).unwrap().get(0);
    let total: i64 = c
        .query_one("SELECT count(*) FROM public.messages", &[])
        .unwrap()
        .get(0);
    assert!(expected_left < total && expected_left > total / 4);
    let kept_sum: String = c
        .query_one(
            &format!("SELECT md5(string_agg(m::text, '|' ORDER BY m.id)) FROM public.messages m WHERE m.id IN ({})",
                     oracle.replace("SELECT count(*)", "SELECT m.id")),
            &[],
        )
        .unwrap()
        .get(0);
    let indexes_before_run = index_defs(&mut c);

    // The first run's WAL against one DELETE of the same rows from the
    // same table unpartitioned (every index included), each after a
    // checkpoint.
    let expired = format!("NOT ({})", oracle.split_once("WHERE").unwrap().1);
    d.sql(
        "CREATE TABLE public.messages_plain (LIKE public.messages INCLUDING ALL);
         INSERT INTO public.messages_plain SELECT * FROM public.messages;",
    );
    d.sql("VACUUM ANALYZE public.messages_plain");
    // As on a production server (the test clusters turn it off for speed).
    d.sql("ALTER SYSTEM SET full_page_writes = on");
    d.sql("SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(200));
    d.sql("CHECKPOINT");
    let wal = |c: &mut postgres::Client, sql: &str| -> i64 {
        let lsn: String = c
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .unwrap()
            .get(0);
        c.batch_execute(sql).unwrap();
        c.query_one(
            "SELECT (pg_current_wal_lsn() - $1::text::pg_lsn)::bigint",
            &[&lsn],
        )
        .unwrap()
        .get(0)
    };
    let mut su = d.app();
    let delete_wal = wal(
        &mut su,
        &format!("DELETE FROM public.messages_plain m WHERE {expired}"),
    );
    d.sql("DROP TABLE public.messages_plain");
    d.sql("CHECKPOINT");
    let run_wal = wal(
        &mut su,
        &format!("CALL retention.\"enforce_messages\"(p_now => '{t}'::timestamptz)"),
    );
    eprintln!(
        "first run: {} kB of WAL; one DELETE of the same {} rows: {} kB ({:.2}x)",
        run_wal / 1024,
        total - expected_left,
        delete_wal / 1024,
        run_wal as f64 / delete_wal as f64
    );
    let left: i64 = c
        .query_one("SELECT count(*) FROM public.messages", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, expected_left);
    let still: i64 = c.query_one(oracle.as_str(), &[]).unwrap().get(0);
    assert_eq!(still, left, "a row was removed that the oracle keeps");
    // The rows kept are the same bytes, and the table has the same indexes.
    let after_sum: String = c
        .query_one(
            "SELECT md5(string_agg(m::text, '|' ORDER BY m.id)) FROM public.messages m",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(after_sum, kept_sum);
    assert_eq!(index_defs(&mut c), indexes_before_run);
    let in_default: i64 = c
        .query_one("SELECT count(*) FROM ONLY public.messages_default", &[])
        .unwrap()
        .get(0);
    assert_eq!(in_default, 0);
    let outcome: String = c
        .query_one(
            "SELECT outcome FROM retention.run_log WHERE dataset = 'messages' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(outcome, "ok");
    let detail: Option<String> = c
        .query_one(
            "SELECT detail FROM retention.run_log WHERE dataset = 'messages' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    eprintln!("run: {detail:?}");
    // The old storage is gone: drained into partitions of its own periods.
    let drained: bool = c
        .query_one("SELECT to_regclass('public.messages_adopted') IS NULL", &[])
        .unwrap()
        .get(0);
    assert!(drained, "{detail:?}");

    // Conversations: adopted beside it, its 17 indexes kept under their
    // names (both unique keys extended by the clock), drained by its run,
    // exact against its oracle (365 days).
    let conv_oracle = format!(
        "SELECT count(*) FROM public.conversations c
          WHERE NOT (c.last_activity_at + interval '365 days' < ('{t}'::timestamptz AT TIME ZONE 'UTC'))"
    );
    let conv_left: i64 = c.query_one(conv_oracle.as_str(), &[]).unwrap().get(0);
    d.run_at("conversations", &t);
    let conv = c
        .query_one(
            "SELECT (SELECT count(*) FROM public.conversations),
                    (SELECT count(*) FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
                      WHERE i.indrelid = 'public.conversations'::regclass AND x.relname LIKE 'index\\_conversations\\_%'),
                    to_regclass('public.conversations_adopted') IS NULL,
                    (SELECT outcome || ': ' || coalesce(detail, '') FROM retention.run_log
                      WHERE dataset = 'conversations' ORDER BY id DESC LIMIT 1)",
            &[],
        )
        .unwrap();
    assert_eq!(conv.get::<_, i64>(0), conv_left);
    assert_eq!(conv.get::<_, i64>(1), 16);
    assert!(conv.get::<_, bool>(2));
    let conv_outcome: String = conv.get(3);
    assert!(
        conv_outcome.starts_with("ok: ") && conv_outcome.contains("drained"),
        "{conv_outcome}"
    );
    let id: i32 = c
        .query_one(
            "INSERT INTO public.conversations (account_id, inbox_id, created_at, updated_at, display_id)
             VALUES (1, 1, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', 999999) RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(id > 50_000);

    // status and verify read an adopted table (its old storage starts at
    // MINVALUE) like any other.
    let st = pgretain::cmd::status::status(&pgretain::cmd::status::StatusOptions {
        database_url: Some(d.url.clone()),
        cron_database: None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(st.datasets.len(), 2);
    let out = std::process::Command::new(common::pgretain_bin())
        .args([
            "verify",
            "--database-url",
            &d.url,
            "--generated",
            &d.generated.path().display().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Apply refuses `setup` (run on a fresh database) with a message naming
/// `names`, exit 3, and leaves the table as it was, with no schema
/// `retention`.
fn refused(policy: &str, setup: &str, names: &[&str]) {
    let d = Deployed::compiled(policy);
    d.sql(setup);
    let err = apply(&ApplyOptions {
        database_url: Some(d.url.clone()),
        generated_dir: d.generated.path().to_path_buf(),
        dry_run: false,
        cron_database: None,
    })
    .expect_err("apply must refuse the table");
    let msg = err.to_string();
    for n in names {
        assert!(msg.contains(n), "{msg} does not name {n}");
    }
    assert!(msg.contains("Nothing was changed"), "{msg}");
    let mut c = d.app();
    let schema: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'retention')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!schema);
    let extra: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conname = 'pgretain_adopt_bound'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(extra, 0);
}

const SIMPLE: &str = r#"
version: 1
datasets:
  events:
    description: Events.
    table: public.events
    time: at
    keep: 30 days
"#;

#[test]
fn tables_pgretain_cannot_convert_safely_are_refused_and_left_alone() {
    refused(
        SIMPLE,
        "SELECT 1",
        &["table \"public\".\"events\" does not exist"],
    );
    refused(
        SIMPLE,
        "CREATE TABLE public.events (id bigint, at timestamptz)",
        &["column at of public.events may be NULL", "SET NOT NULL"],
    );
    refused(
        SIMPLE,
        "CREATE TABLE public.events (id bigint, at timestamptz NOT NULL, kind text) PARTITION BY LIST (kind)",
        &["partitioned, but not by range on at"],
    );
    refused(
        SIMPLE,
        "CREATE TABLE public.events (id bigserial PRIMARY KEY, at timestamptz NOT NULL)",
        &["events_pkey", "unique_keys: include_time"],
    );
    refused(
        SIMPLE,
        "CREATE TABLE public.events (id bigint, at timestamptz NOT NULL, UNIQUE (id, at));
         CREATE TABLE public.refs (e bigint, a timestamptz, FOREIGN KEY (e, a) REFERENCES public.events (id, at))",
        &["foreign key refs_e_a_fkey on public.refs references public.events"],
    );
    refused(
        SIMPLE,
        "CREATE TABLE public.events (id bigint, at timestamptz NOT NULL);
         CREATE VIEW public.recent AS SELECT * FROM public.events",
        &["view public.recent reads public.events"],
    );
    refused(
        &SIMPLE.replace(
            "    time: at\n",
            "    time: at\n    time_zone: Europe/Paris\n",
        ),
        "CREATE TABLE public.events (id bigint, at timestamptz NOT NULL)",
        &["remove `time_zone`"],
    );
    refused(
        &SIMPLE.replace(
            "    time: at\n",
            "    time: at\n    unique_keys: include_time\n",
        ),
        "CREATE TABLE public.events (id bigint, at timestamptz NOT NULL, code text);
         CREATE UNIQUE INDEX events_code ON public.events (lower(code))",
        &["events_code", "expression or partial unique index"],
    );
}

#[test]
fn a_table_partitioned_by_pg_partman_is_adopted_as_it_is() {
    let d = Deployed::compiled(
        r#"
version: 1
datasets:
  events:
    description: Events, partitioned by pg_partman 4.7.
    table: public.events
    time: created_at
    tenant: account_id
    keep: 10 days
    partition: day
"#,
    );
    d.sql(
        "CREATE SCHEMA partman;
         CREATE EXTENSION pg_partman SCHEMA partman;
         CREATE TABLE public.events (id bigint GENERATED ALWAYS AS IDENTITY, account_id integer NOT NULL,
                                     created_at timestamptz NOT NULL, body text)
             PARTITION BY RANGE (created_at);
         SELECT partman.create_parent('public.events', 'created_at', 'native', 'daily',
                                      p_premake => 3, p_start_partition => (now() - interval '20 days')::date::text);",
    );
    let mut c = d.app();
    let partitions_before: Vec<String> = c
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'public.events'::regclass ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(partitions_before.iter().any(|p| p == "events_default"));
    c.batch_execute(
        "INSERT INTO public.events (account_id, created_at, body)
         SELECT n % 4, now() - n * interval '1 hour', 'e' || n FROM generate_series(0, 20 * 24 - 1) AS n",
    )
    .unwrap();
    d.apply();
    // pg_partman's partitions are kept, its default partition is pgretain's.
    let kept: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'public.events'::regclass AND c.relname = ANY ($1)",
            &[&partitions_before],
        )
        .unwrap()
        .get(0);
    assert_eq!(kept as usize, partitions_before.len());
    let t: String = c
        .query_one(
            "SELECT to_char(date_trunc('second', now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'",
            &[],
        )
        .unwrap()
        .get(0);
    let expected: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM public.events WHERE created_at + interval '10 days' >= '{t}'::timestamptz"),
            &[],
        )
        .unwrap()
        .get(0);
    d.run_at("events", &t);
    let left: i64 = c
        .query_one("SELECT count(*) FROM public.events", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, expected);
    let log = c
        .query_one(
            "SELECT outcome, cardinality(partitions_dropped) FROM retention.run_log
              WHERE dataset = 'events' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    assert_eq!(log.get::<_, String>(0), "ok");
    assert!(
        log.get::<_, i32>(1) >= 8,
        "dropped {}",
        log.get::<_, i32>(1)
    );
}

#[test]
fn a_publication_for_all_tables_keeps_updates_and_erasure_working() {
    // A table pgretain creates (replica identity FULL, on every partition,
    // those made later included) and an adopted one (its primary key).
    let d = Deployed::compiled(
        r#"
version: 1
datasets:
  events:
    description: Events pgretain creates.
    table: app.events
    columns:
      id: bigint generated always as identity
      key: text not null
      at: timestamptz not null default now()
    time: at
    erase_by: key
    keep: 10 days
    partition: day
  messages:
    description: The application's own table.
    table: public.messages
    time: created_at
    unique_keys: include_time
    keep: 30 days
"#,
    );
    d.sql(
        "CREATE TABLE public.messages (id serial PRIMARY KEY, body text, created_at timestamp NOT NULL);
         INSERT INTO public.messages (body, created_at) VALUES ('old', now() AT TIME ZONE 'UTC' - interval '3 days');
         CREATE PUBLICATION everything FOR ALL TABLES;",
    );
    d.apply();
    d.sql(
        "INSERT INTO app.events (key) VALUES ('a'), ('b');
         INSERT INTO app.events (key, at) VALUES ('late', now() - interval '2 days');
         INSERT INTO public.messages (body, created_at) VALUES ('new', now() AT TIME ZONE 'UTC');
         UPDATE app.events SET key = key || '!' WHERE key = 'b';
         UPDATE public.messages SET body = body || '!';
         DELETE FROM public.messages WHERE body = 'old!';",
    );
    // Partitions made by a later run take the identity too.
    d.sql("SELECT retention.premake('events', now() + interval '30 days')");
    d.sql("INSERT INTO app.events (key, at) VALUES ('future', now() + interval '30 days')");
    d.sql("UPDATE app.events SET key = 'future!' WHERE key = 'future'");
    let out = std::process::Command::new(common::pgretain_bin())
        .args(["erase", "events", "a", "--database-url", &d.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = d.app();
    let keys: Vec<String> = c
        .query("SELECT key FROM app.events ORDER BY key", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, vec!["b!", "future!", "late"]);
    let not_full: i64 = c
        .query_one(
            "SELECT count(*) FROM retention.partitions('events') p JOIN pg_class c ON c.oid = p.partition
              WHERE c.relreplident <> 'f'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(not_full, 0);
}

#[test]
fn a_killed_apply_loses_nothing_and_the_next_one_finishes() {
    use std::io::{BufRead, BufReader};
    let d = Deployed::compiled(
        r#"
version: 1
datasets:
  events:
    description: Events of the application's own table.
    table: public.events
    time: created_at
    tenant: account_id
    erase_by: ref
    unique_keys: include_time
    keep: 30 days
"#,
    );
    d.sql(
        "CREATE TABLE public.events (id bigserial PRIMARY KEY, account_id integer NOT NULL, ref uuid NOT NULL,
                                     created_at timestamp NOT NULL, body text);
         INSERT INTO public.events (account_id, ref, created_at, body)
         SELECT n % 100, gen_random_uuid(), (now() AT TIME ZONE 'UTC') - (n % 200) * interval '1 day', repeat('x', 50)
           FROM generate_series(1, 600000) AS n;
         ANALYZE public.events;",
    );
    let mut c = d.app();
    let sum = |c: &mut postgres::Client| -> String {
        c.query_one(
            "SELECT md5(string_agg(e::text, '|' ORDER BY e.id)) FROM public.events e",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let before = sum(&mut c);
    // Kill apply in the middle of its second index build.
    let mut child = std::process::Command::new(common::pgretain_bin())
        .args([
            "apply",
            "--database-url",
            &d.url,
            "--generated",
            &d.generated.path().display().to_string(),
        ])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut builds = 0;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains("done in") && line.contains("building index") {
            builds += 1;
            if builds == 1 {
                std::thread::sleep(Duration::from_millis(150));
                child.kill().unwrap();
                break;
            }
        }
    }
    let _ = child.wait();
    assert_eq!(
        builds, 1,
        "apply finished its builds before it could be killed"
    );
    // The server ends the killed session's statement too (as a restart, or
    // a DBA's pg_terminate_backend, would): the build it was in is left
    // invalid.
    c.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = 'app' AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let invalid: i64 = c
        .query_one("SELECT count(*) FROM pg_index WHERE NOT indisvalid", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        invalid, 1,
        "the interrupted build should have left an invalid index"
    );
    // Killed: the table is still an ordinary table, with every row.
    let kind: String = c
        .query_one(
            "SELECT relkind::text FROM pg_class WHERE oid = 'public.events'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(kind, "r");
    assert_eq!(sum(&mut c), before);
    // The next apply goes on from there and finishes.
    d.apply();
    let row = c
        .query_one(
            "SELECT (SELECT relkind::text FROM pg_class WHERE oid = 'public.events'::regclass),
                    (SELECT count(*) FROM pg_index i WHERE NOT i.indisvalid),
                    (SELECT count(*) FROM pg_constraint WHERE conname = 'pgretain_adopt_bound')",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "p");
    assert_eq!(row.get::<_, i64>(1), 0, "an invalid index was left");
    assert_eq!(row.get::<_, i64>(2), 0);
    assert_eq!(sum(&mut c), before);
}

#[test]
fn removing_an_adopted_dataset_releases_the_table_with_every_row() {
    let both = r#"
version: 1
datasets:
  events:
    description: Events pgretain creates.
    table: app.events
    columns:
      id: bigint generated always as identity
      at: timestamptz not null default now()
    time: at
    keep: 10 days
  messages:
    description: The application's own table.
    table: public.messages
    time: created_at
    sliding: true
    keep: 30 days
"#;
    let d = Deployed::compiled(both);
    d.sql(
        "CREATE TABLE public.messages (body text, created_at timestamp NOT NULL);
         INSERT INTO public.messages SELECT 'm' || n, now() AT TIME ZONE 'UTC' - n * interval '1 day'
           FROM generate_series(1, 60) AS n;",
    );
    d.apply();
    // Without the dataset: no --allow-destructive needed, nothing dropped.
    let only_events = both[..both.find("  messages:").unwrap()].to_string();
    match d.compile(&only_events) {
        pgretain::cmd::compile::CompileOutcome::Written { changes, .. } => assert!(
            changes
                .iter()
                .any(|c| c.contains("release dataset messages")),
            "{changes:?}"
        ),
        other => panic!("{other:?}"),
    }
    d.apply();
    let mut c = d.app();
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM public.messages),
                    (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = 'public.messages'::regclass AND NOT t.tgisinternal),
                    (SELECT count(*) FROM retention.dataset WHERE name = 'messages'),
                    to_regclass('retention.expired_messages') IS NULL",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 60);
    assert_eq!(row.get::<_, i64>(1), 0);
    assert_eq!(row.get::<_, i64>(2), 0);
    assert!(row.get::<_, bool>(3));
}
