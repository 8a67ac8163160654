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
    d.sql(&fill(300_000));
    d.sql("ANALYZE public.messages");
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
        "adopted 300k rows in {:.1} s; the application ran {statements} statements, {failed} failed, max latency {} ms",
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
    d.run_at("messages", &t);
    let left: i64 = c
        .query_one("SELECT count(*) FROM public.messages", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, expected_left);
    let still: i64 = c.query_one(oracle.as_str(), &[]).unwrap().get(0);
    assert_eq!(still, left, "a row was removed that the oracle keeps");
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
