//! Who may do what (SPEC §3 "Access"), as SQL: the opening and closing
//! statements of every migration.
//!
//! Every migration opens by pinning its search_path, so that no function or
//! operator another role created is used while it runs, and closes by taking
//! EXECUTE on schema retention's routines from PUBLIC. With `access`, the
//! opening also makes the schemas (as the role that applies), hands what
//! pgretain made before to the owner when the owner changes, gives the
//! owner's sessions in this database their own statement_timeout, and then
//! switches to the owner role, so that everything the migration creates is
//! the owner's; the closing grants the application roles and readers exactly
//! what SPEC §3 lists. Pure functions, no I/O.

use crate::model::{Access, ChangesApplyTo, Dataset, Engine, Policy, STAMP_COLUMN};

use super::names::{self, archive_relation, relation, FINGERPRINT_TABLE};
use super::text::{comment, dollar_quoted, ident, lit};

/// Hand the objects pgretain made to another role, at the start of a
/// migration (run as the role that applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// To the policy's `access.owner` (access added, or its owner changed, or
    /// a runtime upgrade that brings access).
    ToOwner,
    /// To the role that applies (`access` removed from the policy).
    ToApplier,
}

/// The routines readers may execute: read-only helpers the views and the
/// operator commands (status, verify, plan, report) call.
const READER_ROUTINES: &[&str] = &[
    "retention.keep_for(text, text, text)",
    "retention.is_held(text, text, text, timestamptz)",
    "retention.calendar_slack(interval)",
    "retention.possible_keeps(text)",
    "retention.partition_bounds(text, regclass)",
    "retention.ranges(text)",
    "retention.partitions(text)",
    "retention.clock_type(text)",
    "retention.clock_of(text, text)",
    "retention.instant(timestamptz, text)",
    "retention.instant(timestamp without time zone, text)",
    "retention.instant(date, text)",
    "retention.period_start(text, timestamptz)",
    "retention.period_start(text, timestamptz, text)",
    "retention.column_as_text(text, text)",
    "retention.expired_predicate(text)",
    "retention.held_predicate(text)",
    "retention.pages_of(regclass)",
];

/// The tables of `runtime.sql` readers may read: settings, holds, the
/// evidence (and, besides them, [`FINGERPRINT_TABLE`]).
const READER_TABLES: &[&str] = &[
    "retention.dataset",
    "retention.environment",
    "retention.policy_override",
    "retention.hold",
    "retention.subject",
    "retention.tenant_setting",
    "retention.keep_history",
    "retention.config",
    "retention.run_log",
];

fn roles(list: &[String]) -> String {
    list.iter().map(|r| ident(r)).collect::<Vec<_>>().join(", ")
}

/// The schemas of the datasets' tables and archives, in policy order, once.
fn schemas(policy: &Policy) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for ds in &policy.datasets {
        for s in std::iter::once(&ds.schema).chain(ds.archive.as_ref().map(|a| &a.schema)) {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
    }
    out
}

/// The opening of a migration: name resolution pinned and, with `access`,
/// the schemas, the ownership `transfer` if any, and the switch to the owner.
pub fn prologue(policy: &Policy, transfer: Option<Transfer>) -> String {
    let mut s = String::from(
        "-- ---------------------------------------------------------------------------\n\
         -- Name resolution: until the end of this migration names are looked up in\n\
         -- pg_catalog only, and everything else is schema-qualified, so no function or\n\
         -- operator that another role creates (in public or elsewhere) is ever used.\n\
         -- ---------------------------------------------------------------------------\n\
         SET LOCAL search_path = pg_catalog, pg_temp;\n",
    );
    if policy.engine == Engine::Citus {
        s.push_str(&super::citus::preamble());
    }
    if transfer == Some(Transfer::ToApplier) {
        s.push_str("\n-- access removed from the policy: what pgretain made now belongs to the role that applies\n");
        s.push_str(&ownership("CURRENT_USER"));
    }
    let Some(a) = &policy.access else {
        // Without `access` the jobs run as the role that applies: it gets
        // the jobs' own statement_timeout in this database (see below).
        s.push_str(&format!(
            "\n-- the jobs run as the role that applies (the policy has no `access`): no statement_timeout\n-- of the database or of every role cuts a run short\nDO {};\n",
            dollar_quoted("timeout", &timeout_body("CURRENT_USER"))
        ));
        return s;
    };
    let owner = ident(&a.owner);
    s.push_str(&format!(
        "\n-- ---------------------------------------------------------------------------\n\
         -- access ({src}): role {owner} owns schema retention and everything in it,\n\
         -- and the datasets' tables with their partitions and archives; the pg_cron\n\
         -- jobs run as it (`pgretain apply` registers them so). It is not a superuser.\n\
         -- Done here as the role that applies: the schemas, with the right to create\n\
         -- partitions in them, and the owner's own statement_timeout in this database.\n\
         -- ---------------------------------------------------------------------------\n",
        src = comment(&a.source.to_string()),
    ));
    s.push_str(&format!(
        "CREATE SCHEMA IF NOT EXISTS retention AUTHORIZATION {owner};\n"
    ));
    for schema in schemas(policy) {
        let sch = ident(&schema);
        s.push_str(&format!(
            "CREATE SCHEMA IF NOT EXISTS {sch} AUTHORIZATION {owner};\n\
             GRANT USAGE, CREATE ON SCHEMA {sch} TO {owner};   -- premake creates partitions there\n"
        ));
    }
    // The application reaches its tables through their schemas, and readers
    // look the tables up by name (USAGE on a schema reads no table). Granted
    // here, as the role that applies: a schema that existed before is its own.
    if !a.application.is_empty() {
        let app = roles(&a.application);
        let mut done: Vec<&str> = Vec::new();
        for ds in &policy.datasets {
            if !done.contains(&ds.schema.as_str()) {
                done.push(&ds.schema);
                s.push_str(&format!(
                    "GRANT USAGE ON SCHEMA {} TO {app};   -- the application's way to its tables\n",
                    ident(&ds.schema)
                ));
            }
        }
    }
    if !a.readers.is_empty() {
        let readers = roles(&a.readers);
        for schema in schemas(policy) {
            s.push_str(&format!(
                "GRANT USAGE ON SCHEMA {} TO {readers};   -- to name the tables, not to read them\n",
                ident(&schema)
            ));
        }
    }
    // A procedure cannot reset the timer of the CALL that runs it, so a
    // statement_timeout set on the database (or on every role) would kill
    // the nightly run: the jobs' role gets its own, for this database only.
    s.push_str(&format!(
        "-- the jobs' role is never cut short by a statement_timeout of the database or of every role\nDO {};\n",
        dollar_quoted("timeout", &timeout_body(&lit(&a.owner)))
    ));
    if transfer == Some(Transfer::ToOwner) {
        s.push_str(&format!(
            "\n-- access: what pgretain made before (as the role that applied it) now belongs to {owner}\n"
        ));
        s.push_str(&ownership(&lit(&a.owner)));
    }
    if policy.engine == Engine::Citus {
        // One connection per role to each worker: what the owner made
        // would not see what the role that applies made before it, not yet
        // committed. So the role that applies makes everything, and gives
        // it to the owner at the end (epilogue).
        s.push_str(&format!(
            "\n-- access (engine: citus): everything is created by the role that applies and given to {owner}\n-- at the end of the migration (see docs/citus.md)\n"
        ));
        return s;
    }
    s.push_str(&format!(
        "\n-- access: from here on, everything is created by (and owned by) {owner}\nSET LOCAL ROLE {owner};\n"
    ));
    s
}

/// The body of a DO block that gives role `role_sql` (an SQL expression)
/// `statement_timeout = 0` in the current database.
fn timeout_body(role_sql: &str) -> String {
    format!(
        "\nBEGIN\n    EXECUTE pg_catalog.format('ALTER ROLE %I IN DATABASE %I SET statement_timeout = 0',\n                              {role_sql}, pg_catalog.current_database());\nEND\n"
    )
}

/// A DO block that gives schema retention, every relation and routine in it
/// and every dataset's table, partitions and archive to `role_sql` (an SQL
/// expression: a literal role name, or CURRENT_USER). Sequences owned by a
/// column follow their table; indexes follow their table.
fn ownership(role_sql: &str) -> String {
    let body = format!(
        "
DECLARE
    v_role text := {role_sql};
    v_rels text[];
    v_moved text[];
    v_funcs text[];
    x text;
BEGIN
    IF pg_catalog.to_regclass('retention.dataset') IS NULL THEN
        RETURN;   -- nothing made yet
    END IF;
    -- Listed first, altered after: a table cannot change owner while a query reads it.
    SELECT pg_catalog.array_agg(pg_catalog.format('%s %s',
               CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                              WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.rel))
      INTO v_rels
      FROM (SELECT c.oid::pg_catalog.regclass AS rel, c.relkind
              FROM pg_catalog.pg_class c
             WHERE c.relnamespace = 'retention'::pg_catalog.regnamespace
               AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend dp
                                WHERE dp.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                  AND dp.objid = c.oid AND dp.deptype IN ('a', 'i'))
            UNION ALL
            SELECT t.relid, 'r'
              FROM retention.dataset d,
                   LATERAL (SELECT d.relation UNION ALL SELECT d.archive_relation) x(rel),
                   LATERAL pg_catalog.pg_partition_tree(x.rel::pg_catalog.regclass) t
             WHERE x.rel IS NOT NULL) r;
    -- The partitions an archive took whole, and their parents (version 6).
    IF pg_catalog.to_regclass('retention.archive_moved') IS NOT NULL THEN
        EXECUTE 'SELECT pg_catalog.array_agg(pg_catalog.format(''TABLE %s'', x.rel) ORDER BY x.rel::text)
                   FROM (SELECT pg_catalog.to_regclass(m.relation) FROM retention.archive_moved m
                         UNION SELECT pg_catalog.to_regclass(retention.moved_relation(d.name)) FROM retention.dataset d) x(rel)
                  WHERE x.rel IS NOT NULL'
            INTO v_moved;
        v_rels := coalesce(v_rels, '{{}}') || coalesce(v_moved, '{{}}');
    END IF;
    SELECT pg_catalog.array_agg(p.oid::pg_catalog.regprocedure::text) INTO v_funcs
      FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'retention'::pg_catalog.regnamespace;
    EXECUTE pg_catalog.format('ALTER SCHEMA retention OWNER TO %I', v_role);
    FOREACH x IN ARRAY coalesce(v_rels, '{{}}') LOOP
        EXECUTE pg_catalog.format('ALTER %s OWNER TO %I', x, v_role);
    END LOOP;
    FOREACH x IN ARRAY coalesce(v_funcs, '{{}}') LOOP
        EXECUTE pg_catalog.format('ALTER ROUTINE %s OWNER TO %I', x, v_role);
    END LOOP;
END
"
    );
    format!("DO {};\n", dollar_quoted("owner", &body))
}

/// The closing of a migration: PUBLIC's rights on schema retention taken
/// away and, with `access` and `grants`, the application roles' and readers'
/// grants (all of them, for every dataset: idempotent); then the role that
/// applies is itself again.
pub fn epilogue(policy: &Policy, grants: bool) -> String {
    let mut s = String::from(
        "-- ---------------------------------------------------------------------------\n\
         -- PUBLIC gets nothing in schema retention: no role may run, read or change\n\
         -- the machinery unless granted below.\n\
         -- ---------------------------------------------------------------------------\n\
         REVOKE ALL ON SCHEMA retention FROM PUBLIC;\n\
         REVOKE ALL ON ALL TABLES IN SCHEMA retention FROM PUBLIC;\n\
         REVOKE ALL ON ALL SEQUENCES IN SCHEMA retention FROM PUBLIC;\n\
         REVOKE ALL ON ALL ROUTINES IN SCHEMA retention FROM PUBLIC;\n",
    );
    if let (Some(a), Engine::Citus) = (&policy.access, policy.engine) {
        s.push_str(&format!(
            "\n-- access (engine: citus): what this migration made now belongs to {}\n",
            ident(&a.owner)
        ));
        s.push_str(&ownership(&lit(&a.owner)));
    }
    if let (Some(a), true) = (&policy.access, grants) {
        s.push_str(&grants_sql(policy, a));
    }
    // Back to the role that applies, for the rest of this transaction (its
    // next migration, and refinery recording this one); the pinned
    // search_path stays until the transaction ends. (Not RESET: that would
    // replace the session's own settings by the database's defaults.)
    if policy.access.is_some() {
        s.push_str("SET LOCAL ROLE NONE;\n");
    }
    s
}

fn grants_sql(policy: &Policy, a: &Access) -> String {
    let src = comment(&a.source.to_string());
    let mut s = format!(
        "\n-- access: the datasets' tables and archives are granted to no one but the roles below ({src})\n"
    );
    for ds in &policy.datasets {
        s.push_str(&format!("REVOKE ALL ON {} FROM PUBLIC;\n", relation(ds)));
        if let Some(arch) = archive_relation(ds) {
            s.push_str(&format!("REVOKE ALL ON {arch} FROM PUBLIC;\n"));
        }
    }
    if !a.application.is_empty() {
        let app = roles(&a.application);
        s.push_str(&format!(
            "\n-- access: application role(s) {app}: the datasets' rows (the triggers work for\n\
             -- them), run-time tenant settings within the bounds, erasure (of one dataset, or\n\
             -- of a subject across datasets). Not the stamped retention, not the settings,\n\
             -- holds, run log or any other part of the machinery ({src})\n\
             GRANT USAGE ON SCHEMA retention TO {app};\n\
             GRANT SELECT, INSERT, UPDATE, DELETE ON retention.tenant_setting TO {app};\n\
             GRANT EXECUTE ON FUNCTION retention.erase(text, text) TO {app};\n\
             GRANT EXECUTE ON FUNCTION retention.erase_subject(text, text) TO {app};\n"
        ));
        for ds in &policy.datasets {
            s.push_str(&table_grants(ds, &app));
        }
    }
    if !a.readers.is_empty() {
        let readers = roles(&a.readers);
        s.push_str(&format!(
            "\n-- access: reader(s) {readers}: the settings, holds, run log and the views of\n\
             -- expired rows, read-only; and the read-only routines those views and\n\
             -- `pgretain status` / `verify` / `plan` / `report` call ({src})\n\
             GRANT USAGE ON SCHEMA retention TO {readers};\n\
             GRANT SELECT ON {} TO {readers};\n",
            READER_TABLES
                .iter()
                .chain([&FINGERPRINT_TABLE])
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let views: Vec<String> = policy.datasets.iter().map(names::expired_view).collect();
        if !views.is_empty() {
            s.push_str(&format!(
                "GRANT SELECT ON {} TO {readers};\n",
                views.join(", ")
            ));
        }
        if policy.engine == Engine::Citus && !policy.datasets.is_empty() {
            let funcs: Vec<String> = policy
                .datasets
                .iter()
                .map(|d| format!("{}()", names::expired_rows_function(d)))
                .collect();
            s.push_str(&format!(
                "GRANT EXECUTE ON FUNCTION {} TO {readers};   -- behind the views (engine: citus)\n",
                funcs.join(", ")
            ));
            // On Citus the operator commands count with the runs' own
            // written-out rules (keep_for() and is_held() cannot be called
            // per row of a distributed table): read-only, from settings
            // the readers may read.
            s.push_str(&format!(
                "GRANT EXECUTE ON FUNCTION retention.run_predicate(text, timestamptz), retention.run_keep(text), \
                 retention.run_held(text, timestamptz), retention.clock_literal(text, timestamptz), \
                 retention.distributed(regclass) TO {readers};   -- the runs' rules, written out (engine: citus)\n\
                 GRANT SELECT ON retention.tenant_keep TO {readers};   -- the tenant settings' copy (engine: citus)\n"
            ));
        }
        s.push_str(&format!(
            "GRANT EXECUTE ON FUNCTION {} TO {readers};\n",
            READER_ROUTINES.join(", ")
        ));
    }
    s
}

/// An application role's rights on one dataset's table: every row, but,
/// with `changes_apply_to: new_rows`, no column privilege on the stamp, so
/// it can neither write a stamp nor change one (42501).
fn table_grants(ds: &Dataset, app: &str) -> String {
    let rel = relation(ds);
    let mut s = String::new();
    match (&ds.columns, ds.changes_apply_to) {
        (Some(cols), ChangesApplyTo::NewRows) => {
            let list = cols
                .iter()
                .map(|c| ident(&c.name))
                .collect::<Vec<_>>()
                .join(", ");
            s.push_str(&format!(
                "GRANT SELECT, DELETE ON {rel} TO {app};\n\
                 GRANT INSERT ({list}), UPDATE ({list}) ON {rel} TO {app};   -- not {}: the stamp is the machinery's\n",
                ident(STAMP_COLUMN)
            ));
        }
        _ => s.push_str(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON {rel} TO {app};\n"
        )),
    }
    // A serial column's default calls nextval() on its sequence, as the
    // inserting role (identity columns need no grant).
    for c in ds.columns.iter().flatten() {
        if c.ty.sql_type.ends_with("serial") {
            let body = format!(
                "\nBEGIN\n    EXECUTE pg_catalog.format('GRANT USAGE ON SEQUENCE %s TO {}',\n                              pg_catalog.pg_get_serial_sequence({}, {}));\nEND\n",
                app.replace('\'', "''"),
                lit(&rel),
                lit(&c.name)
            );
            s.push_str(&format!(
                "DO {};   -- the sequence of serial column {}\n",
                dollar_quoted("grant", &body),
                ident(&c.name)
            ));
        }
    }
    s
}

/// Everything granted to `roles` on the machinery and the datasets taken
/// back: roles removed from `access` (run as the owner).
pub fn revoke(roles_removed: &[String], policy: &Policy) -> String {
    if roles_removed.is_empty() {
        return String::new();
    }
    let names = roles_removed
        .iter()
        .map(|r| lit(r))
        .collect::<Vec<_>>()
        .join(", ");
    let tables = policy
        .datasets
        .iter()
        .map(|ds| lit(&relation(ds)))
        .collect::<Vec<_>>()
        .join(", ");
    // A role the DBA has dropped since has nothing left to take back.
    let body = format!(
        "
DECLARE
    r record;
    t text;
BEGIN
    FOR r IN SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY (ARRAY[{names}]::text[]) LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON ALL TABLES IN SCHEMA retention FROM %I', r.rolname);
        EXECUTE pg_catalog.format('REVOKE ALL ON ALL ROUTINES IN SCHEMA retention FROM %I', r.rolname);
        EXECUTE pg_catalog.format('REVOKE ALL ON SCHEMA retention FROM %I', r.rolname);
        FOREACH t IN ARRAY ARRAY[{tables}]::text[] LOOP
            EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM %I', t, r.rolname);
        END LOOP;
    END LOOP;
END
"
    );
    format!(
        "\n-- access: role(s) {} no longer named in `access`: their rights on the machinery\n-- and the datasets are taken back\nDO {};\n",
        comment(&roles(roles_removed)),
        dollar_quoted("revoke", &body)
    )
}

/// The roles of `old` that `new` no longer names (for [`revoke`]); the
/// owner is not among them (it owns, it is not granted).
pub fn removed_roles(old: Option<&Access>, new: Option<&Access>) -> Vec<String> {
    let Some(old) = old else { return Vec::new() };
    let kept: Vec<&str> = new.map(|a| a.roles().collect()).unwrap_or_default();
    old.application
        .iter()
        .chain(old.readers.iter())
        .filter(|r| !kept.contains(&r.as_str()))
        .cloned()
        .collect()
}
