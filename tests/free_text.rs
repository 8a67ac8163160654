//! Free text is data (SPEC §2): arbitrary strings in every free-text field
//! (description, owner, legal basis, override and hold reasons), in tenant
//! and environment values and in sensitive keys, compiled and applied to a
//! real PostgreSQL. For each case, the database objects are exactly those of
//! the same policy with plain text (nothing more was created, nothing
//! dropped), every value stored equals the YAML value byte for byte, the
//! sensitive key is stripped, and the job runs.
//!
//! The strings mix what ends comments and literals (newlines, carriage
//! returns, `*/`, `$$`, `$body$`, quotes, backslashes), SQL, format()
//! directives, invisible and bidirectional characters, and random code
//! points. Deterministic: case `i` uses seed `i` (`PGRETAIN_FREE_TEXT_CASES`
//! sets how many; 12 by default).

mod common;

use std::collections::BTreeSet;

use common::Cluster;
use pgretain::cmd::apply::{apply, ApplyOptions};
use pgretain::cmd::compile::{compile, CompileOptions};
use serde_yaml::{Mapping, Value};

/// A tiny deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Pieces that end or confuse SQL comments, literals, dollar quotes,
/// format() and YAML.
const NASTY: &[&str] = &[
    "\n",
    "\r",
    "\r\n",
    "\t",
    "*/",
    "/*",
    "--",
    ";",
    "$$",
    "$body$",
    "$guard$",
    "$owner$",
    "$schema$",
    "$timeout$",
    "$grant$",
    "$revoke$",
    "'",
    "''",
    "\"",
    "\\",
    "\\n",
    "E'",
    "%s",
    "%L",
    "%I",
    "%",
    "$1",
    "::text",
    "DROP TABLE app.t; --",
    "'); DROP SCHEMA retention CASCADE; --",
    "*/ DROP TABLE app.t; /*",
    "\n-- refinery:noTransaction\n",
    "\u{202E}",
    "\u{2066}",
    "\u{2028}",
    "\u{2029}",
    "\u{0085}",
    "\u{200B}",
    "\u{FEFF}",
    "é",
    "日本語",
    "🙂",
    " ",
    "  ",
    "x",
    "#",
    ": ",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "&a",
    "*a",
    "!",
    "|",
    ">",
    "@",
    "`",
    "\u{7F}",
    "\u{1B}[31m",
];

/// A non-empty string that is not only whitespace, of at most `max` bytes,
/// with no NUL (which PostgreSQL text cannot hold; `check` refuses it).
fn nasty(rng: &mut Rng, max: usize) -> String {
    let mut s = String::from("v");
    for _ in 0..1 + rng.below(8) {
        let piece = if rng.below(4) == 0 {
            // any code point but NUL and the surrogates
            let c = loop {
                let n = 1 + rng.below(0x10FFFF) as u32;
                if let Some(c) = char::from_u32(n) {
                    break c;
                }
            };
            c.to_string()
        } else {
            NASTY[rng.below(NASTY.len() as u64) as usize].to_string()
        };
        if s.len() + piece.len() > max {
            break;
        }
        s.push_str(&piece);
    }
    s
}

/// Every free-text value of one case.
#[derive(Debug, Clone)]
struct Texts {
    description: String,
    owner: String,
    legal_basis: String,
    env_a: String,
    env_b: String,
    tenant: String,
    held_tenant: String,
    override_reason: String,
    hold_reason: String,
    key: String,
}

impl Texts {
    fn plain() -> Texts {
        Texts {
            description: "Events.".into(),
            owner: "owner".into(),
            legal_basis: "basis".into(),
            env_a: "draft".into(),
            env_b: "live".into(),
            tenant: "bot-1".into(),
            held_tenant: "bot-2".into(),
            override_reason: "reason".into(),
            hold_reason: "hold".into(),
            key: "password".into(),
        }
    }

    fn random(seed: u64) -> Texts {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x1000_0000_01B3));
        let env_a = nasty(&mut rng, 100);
        let mut env_b = nasty(&mut rng, 100);
        if env_b == env_a {
            env_b.push('2');
        }
        let tenant = nasty(&mut rng, 100);
        let mut held_tenant = nasty(&mut rng, 100);
        if held_tenant == tenant {
            held_tenant.push('2');
        }
        Texts {
            description: nasty(&mut rng, 400),
            owner: nasty(&mut rng, 200),
            legal_basis: nasty(&mut rng, 200),
            env_a,
            env_b,
            tenant,
            held_tenant,
            override_reason: nasty(&mut rng, 300),
            hold_reason: nasty(&mut rng, 300),
            key: nasty(&mut rng, 60),
        }
    }

    /// The policy, built as YAML values and serialized, so every string is
    /// written exactly (quoted and escaped by the YAML library).
    fn policy(&self) -> String {
        let s = |v: &str| Value::String(v.to_string());
        let map = |pairs: Vec<(&str, Value)>| {
            let mut m = Mapping::new();
            for (k, v) in pairs {
                m.insert(s(k), v);
            }
            Value::Mapping(m)
        };
        let columns = map(vec![
            ("id", s("bigint generated always as identity")),
            ("bot_id", s("text not null")),
            ("environment", s("text not null")),
            ("created_at", s("timestamptz not null default now()")),
            ("payload", s("jsonb")),
        ]);
        let dataset = map(vec![
            ("description", s(&self.description)),
            ("owner", s(&self.owner)),
            ("legal_basis", s(&self.legal_basis)),
            ("table", s("app.events")),
            ("columns", columns),
            ("time", s("created_at")),
            ("tenant", s("bot_id")),
            ("environment", s("environment")),
            ("keep", s("30 days")),
            ("min_keep", s("1 day")),
            ("max_keep", s("365 days")),
            ("partition", s("day")),
            (
                "sensitive",
                map(vec![("payload", Value::Sequence(vec![s(&self.key)]))]),
            ),
        ]);
        let policy = map(vec![
            ("version", Value::Number(1.into())),
            (
                "environments",
                Value::Sequence(vec![s(&self.env_a), s(&self.env_b)]),
            ),
            ("datasets", map(vec![("events", dataset)])),
            (
                "overrides",
                Value::Sequence(vec![
                    map(vec![
                        ("tenant", s(&self.tenant)),
                        ("environment", s(&self.env_b)),
                        ("keep", map(vec![("events", s("7 days"))])),
                        ("reason", s(&self.override_reason)),
                    ]),
                    map(vec![
                        ("environment", s(&self.env_a)),
                        ("keep", map(vec![("events", s("90 days"))])),
                    ]),
                ]),
            ),
            (
                "holds",
                Value::Sequence(vec![map(vec![
                    ("tenant", s(&self.held_tenant)),
                    ("reason", s(&self.hold_reason)),
                ])]),
            ),
        ]);
        serde_yaml::to_string(&policy).expect("a YAML policy")
    }
}

/// The objects of a database that a policy's migration makes: relations,
/// routines, triggers, schemas, views, roles; by name, not by OID.
fn objects(db: &mut postgres::Client) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for sql in [
        "SELECT 'rel ' || n.nspname::text || '.' || regexp_replace(c.relname::text, '_p[0-9]{8}$', '_pN') || ' ' || c.relkind::text
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
        "SELECT 'fn ' || n.nspname || '.' || p.oid::regprocedure::text
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')",
        "SELECT DISTINCT 'trigger ' || t.tgname || ' on ' || c.relname
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          WHERE NOT t.tgisinternal AND c.relname NOT LIKE '%\\_p________'",
        "SELECT 'schema ' || nspname FROM pg_namespace",
        "SELECT 'role ' || rolname FROM pg_roles",
    ] {
        for r in db.query(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e:?}")) {
            all.insert(r.get::<_, String>(0));
        }
    }
    all
}

/// Compile `texts` and apply it to a new database `name` of `cluster`;
/// returns a client of it.
fn deploy(cluster: &Cluster, name: &str, texts: &Texts) -> postgres::Client {
    let policy = tempfile::tempdir().unwrap();
    let generated = tempfile::tempdir().unwrap();
    let yaml = texts.policy();
    std::fs::write(policy.path().join("policy.yaml"), &yaml).unwrap();
    compile(&CompileOptions {
        policy_dir: policy.path().to_path_buf(),
        generated_dir: generated.path().to_path_buf(),
        check: false,
        allow_destructive: false,
    })
    .unwrap_or_else(|e| panic!("{name}: compile failed: {e}\n--- policy ---\n{yaml}"));
    let url = cluster.create_database(name);
    apply(&ApplyOptions {
        database_url: Some(url),
        generated_dir: generated.path().to_path_buf(),
        dry_run: false,
        cron_database: None,
    })
    .unwrap_or_else(|e| {
        let sql =
            std::fs::read_to_string(generated.path().join("V1__init.sql")).unwrap_or_default();
        panic!(
            "{name}: apply failed: {e}\n--- policy ---\n{yaml}\n--- SQL (tail) ---\n{}",
            &sql[sql.len().saturating_sub(3000)..]
        )
    });
    cluster.client(name)
}

fn one(db: &mut postgres::Client, sql: &str) -> String {
    db.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

#[test]
fn arbitrary_free_text_round_trips_and_changes_nothing_else() {
    let cases: u64 = std::env::var("PGRETAIN_FREE_TEXT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let cluster = Cluster::start();
    let mut baseline = deploy(&cluster, "plain", &Texts::plain());
    let expected = objects(&mut baseline);

    for seed in 0..cases {
        let texts = Texts::random(seed);
        let name = format!("case_{seed}");
        let mut db = deploy(&cluster, &name, &texts);
        let what = format!("case {seed}: {texts:?}");

        // Exactly the objects of the plain policy: nothing more was made,
        // nothing was dropped.
        let got = objects(&mut db);
        let extra: Vec<&String> = got.difference(&expected).collect();
        let missing: Vec<&String> = expected.difference(&got).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{what}\nextra: {extra:?}\nmissing: {missing:?}"
        );

        // Every value as written, byte for byte.
        let row = db
            .query_one(
                "SELECT description, owner, legal_basis FROM retention.dataset WHERE name = 'events'",
                &[],
            )
            .unwrap();
        let stored: (String, String, String) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(
            stored,
            (
                texts.description.clone(),
                texts.owner.clone(),
                texts.legal_basis.clone()
            ),
            "{what}"
        );
        assert_eq!(
            one(
                &mut db,
                "SELECT obj_description('app.events'::regclass, 'pg_class')"
            ),
            format!("{} (pgretain dataset events)", texts.description),
            "{what}"
        );
        let envs: BTreeSet<String> = db
            .query("SELECT name FROM retention.environment", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            envs,
            [texts.env_a.clone(), texts.env_b.clone()]
                .into_iter()
                .collect(),
            "{what}"
        );
        let o = db
            .query_one(
                "SELECT tenant, environment, reason FROM retention.policy_override WHERE tenant IS NOT NULL",
                &[],
            )
            .unwrap();
        let o: (String, String, String) = (o.get(0), o.get(1), o.get(2));
        assert_eq!(
            o,
            (
                texts.tenant.clone(),
                texts.env_b.clone(),
                texts.override_reason.clone()
            ),
            "{what}"
        );
        let env_override: String = one(
            &mut db,
            "SELECT environment FROM retention.policy_override WHERE tenant IS NULL",
        );
        assert_eq!(env_override, texts.env_a, "{what}");
        let h = db
            .query_one("SELECT tenant, reason FROM retention.hold", &[])
            .unwrap();
        let h: (String, String) = (h.get(0), h.get(1));
        assert_eq!(
            h,
            (texts.held_tenant.clone(), texts.hold_reason.clone()),
            "{what}"
        );

        // The data behaves: the sensitive key is stripped, the override
        // and the hold apply to their tenants, and the job runs.
        db.execute(
            "INSERT INTO app.events (bot_id, environment, created_at, payload)
             VALUES ($1, $2, now() - interval '10 days', jsonb_build_object($3::text, 1, 'kept', 2)),
                    ($4, $2, now() - interval '40 days', '{}'),
                    ('other', $2, now() - interval '40 days', '{}')",
            &[&texts.tenant, &texts.env_b, &texts.key, &texts.held_tenant],
        )
        .unwrap();
        let payload: String = one(
            &mut db,
            "SELECT payload::text FROM app.events WHERE created_at > now() - interval '11 days'",
        );
        assert_eq!(payload, r#"{"kept": 2}"#, "{what}");
        db.batch_execute(r#"CALL retention."enforce_events"()"#)
            .unwrap_or_else(|e| panic!("{what}: the job failed: {e:?}"));
        let left: BTreeSet<String> = db
            .query("SELECT bot_id FROM app.events", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        // The tenant's 7-day override removed its 10-day-old row; the held
        // tenant's 40-day-old row stays; the other tenant's is past 30 days.
        assert_eq!(
            left,
            [texts.held_tenant.clone()].into_iter().collect(),
            "{what}"
        );
        let outcome = one(
            &mut db,
            "SELECT outcome FROM retention.run_log ORDER BY id DESC LIMIT 1",
        );
        assert_eq!(outcome, "ok", "{what}");
    }
}
