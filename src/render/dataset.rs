//! A dataset's SQL: its settings row, its table with the default
//! partition, indexes, triggers and archive, the procedure its job calls,
//! and the view of its expired rows. Pure functions, no I/O.

use sea_query::{Alias, ColumnDef, Expr, Index, PostgresQueryBuilder, TableBuilder};

use crate::model::{ChangesApplyTo, Clock, Dataset, Engine, Granularity, UniqueKeys, STAMP_COLUMN};

use super::expiry::Expiry;
use super::names::{
    self, archive_relation, default_partition, job_command, procedure, qualified, relation,
};
use super::text::{comment, dollar_quoted, ident, lit};
use super::triggers::triggers;
use super::{interval, rule};

/// Future partitions kept ready, by granularity: two weeks of days, eight
/// weeks, four months.
pub fn premake(g: Granularity) -> u32 {
    match g {
        Granularity::Day => 14,
        Granularity::Week => 8,
        Granularity::Month => 4,
    }
}

/// `INSERT INTO retention.dataset … ON CONFLICT DO UPDATE`: the dataset's
/// settings as the engine reads them, one per line so a diff shows exactly
/// which changed. Every value goes through `lit` / `interval`.
pub fn dataset_settings(ds: &Dataset) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "NULL".into());
    let mut rows: Vec<(&str, String, &str)> = vec![
        ("name", lit(&ds.name), "the dataset"),
        ("relation", lit(&relation(ds)), "its table"),
        ("time_column", lit(&ds.time), "the retention clock"),
        (
            "tenant_column",
            opt(ds.tenant.as_deref().map(lit)),
            "per-tenant settings",
        ),
        (
            "environment_column",
            opt(ds.environment.as_deref().map(lit)),
            "per-environment settings",
        ),
        (
            "erase_column",
            opt(ds.erase_by.as_deref().map(lit)),
            "what erase() matches",
        ),
        ("granularity", lit(ds.partition.as_str()), "partition size"),
        (
            "premake",
            premake(ds.partition).to_string(),
            "partitions made ahead",
        ),
        ("keep", interval(ds.keep), "default retention"),
        (
            "min_keep",
            opt(ds.min_keep.map(interval)),
            "lowest tenant setting allowed",
        ),
        (
            "max_keep",
            opt(ds.max_keep.map(interval)),
            "highest tenant setting allowed",
        ),
        (
            "new_rows",
            (ds.changes_apply_to == ChangesApplyTo::NewRows).to_string(),
            "retention stamped on insert",
        ),
        (
            "archive_relation",
            opt(archive_relation(ds).as_deref().map(lit)),
            "where expired rows go",
        ),
        (
            "archive_keep",
            opt(ds.archive.as_ref().map(|a| interval(a.keep))),
            "how long they stay there",
        ),
        ("schedule", lit(&ds.schedule), "enforcement job, GMT"),
        (
            "lock_timeout",
            lit(&format!("{}ms", ds.lock_timeout_ms)),
            "the longest lock wait of a run",
        ),
        ("description", lit(&ds.description), "what the data is"),
        (
            "owner",
            opt(ds.owner.as_deref().map(lit)),
            "who answers for it",
        ),
        (
            "legal_basis",
            opt(ds.legal_basis.as_deref().map(lit)),
            "why it may be kept",
        ),
        (
            "source",
            lit(&ds.source.to_string()),
            "where the policy defines it",
        ),
    ];
    // The zone of a wall-time clock, right after the clock (a timestamptz
    // clock leaves the column at its default, UTC).
    if ds.clock() != Some(Clock::Timestamptz) {
        rows.insert(
            3,
            (
                "time_zone",
                lit(ds.zone()),
                "the zone the clock's values are written in",
            ),
        );
    }
    // Comments line up after the values, except after a long one (free
    // text such as the description), which is followed by one space.
    let width = rows
        .iter()
        .map(|r| r.1.len())
        .filter(|l| *l <= 48)
        .max()
        .unwrap_or(0)
        + 1;
    let mut s = format!(
        "INSERT INTO retention.dataset ({})
VALUES (
",
        rows.iter().map(|r| r.0).collect::<Vec<_>>().join(", ")
    );
    for (i, (col, value, what)) in rows.iter().enumerate() {
        let comma = if i + 1 < rows.len() { "," } else { " " };
        let cell = format!("{value}{comma}");
        let pad = width.saturating_sub(cell.len()).max(1);
        s.push_str(&format!("    {cell}{:pad$}-- {col}: {what}\n", ""));
    }
    s.push_str(
        ")
ON CONFLICT (name) DO UPDATE SET
",
    );
    let updates: Vec<String> = rows
        .iter()
        .skip(1)
        .map(|r| format!("    {0} = EXCLUDED.{0}", r.0))
        .collect();
    s.push_str(&updates.join(",\n"));
    s.push_str(";\n");
    s
}

/// Everything a new dataset needs: settings, table, partitions, triggers,
/// archive, the enforcement procedure and the view of its expired rows.
pub fn dataset_create(ds: &Dataset, engine: Engine) -> String {
    let mut s = String::new();
    let rel = relation(ds);
    let name = &ds.name;
    s.push_str("-- ===========================================================================\n");
    s.push_str(&format!(
        "-- Dataset {name} ({}): {}\n",
        comment(&ds.source.to_string()),
        comment(&ds.description)
    ));
    s.push_str(&format!(
        "-- Table {}, range-partitioned by {} on {}.\n",
        rel,
        ds.partition.as_str(),
        ident(&ds.time)
    ));
    s.push_str(&Expiry::of(ds).in_words());
    if let Some(a) = &ds.archive {
        s.push_str(&format!(
            "-- Removed rows are moved to {} and deleted {} after their deadline.\n",
            qualified(&a.schema, &ds.table),
            a.keep
        ));
    }
    s.push_str(
        "-- ===========================================================================\n\n",
    );

    s.push_str(&rule(
        name,
        "settings: retention, bounds, schedule",
        &ds.keep_source,
    ));
    s.push_str(&dataset_settings(ds));
    s.push('\n');

    if let Some(columns) = &ds.columns {
        s.push_str(&rule(
            name,
            "the table, range-partitioned on the retention clock",
            &ds.source,
        ));
        s.push_str(&create_schema(&ds.schema));
        s.push_str(&table_guard(ds));
        // Each column rendered by sea-query, one per line for review.
        let mut defs: Vec<String> = Vec::new();
        for c in columns {
            let mut def = ColumnDef::new(Alias::new(c.name.as_str()));
            def.custom(Alias::new(c.ty.sql_type.as_str()));
            if let Some(kind) = &c.ty.identity {
                def.extra(format!("GENERATED {} AS IDENTITY", kind.to_uppercase()));
            }
            if c.ty.not_null {
                def.not_null();
            }
            if let Some(d) = &c.ty.default {
                def.default(Expr::cust(d.clone()));
            }
            defs.push(column_sql(&def));
        }
        if ds.changes_apply_to == ChangesApplyTo::NewRows {
            let mut def = ColumnDef::new(Alias::new(STAMP_COLUMN));
            def.custom(Alias::new("interval")).not_null();
            defs.push(format!(
                "{}  -- changes_apply_to: new_rows: the retention in force at insert",
                column_sql(&def)
            ));
        }
        let mut body = String::new();
        for (i, d) in defs.iter().enumerate() {
            let (def, comment) = match d.split_once("  --") {
                Some((a, b)) => (a.to_string(), format!("  --{b}")),
                None => (d.clone(), String::new()),
            };
            let comma = if i + 1 < defs.len() { "," } else { "" };
            body.push_str(&format!("    {def}{comma}{comment}\n"));
        }
        s.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {rel} (\n{body}) PARTITION BY RANGE ({});\n",
            ident(&ds.time)
        ));
        s.push_str(&format!(
            "COMMENT ON TABLE {rel} IS {};\n",
            lit(&format!("{} (pgretain dataset {name})", ds.description))
        ));
        s.push_str(&replica_identity(ds));
    } else {
        s.push_str(&rule(
            name,
            "the application's existing table, adopted in place (see retention.adopt)",
            &ds.source,
        ));
        s.push_str(&format!(
            "-- An ordinary table becomes partition [MINVALUE, F) of a range-partitioned table\n\
             -- of the same name and shape (no row is copied); one already range-partitioned\n\
             -- on {time} is kept as it is. Anything pgretain cannot convert safely stops the\n\
             -- migration with the reason. Waits for the table's lock at most lock_timeout.\n\
             SET LOCAL lock_timeout = {timeout};\n\
             SELECT retention.adopt({l}, {include});\n",
            time = ident(&ds.time),
            timeout = lit(&format!("{}ms", ds.lock_timeout_ms)),
            l = lit(name),
            include = ds.unique_keys == UniqueKeys::IncludeTime,
        ));
    }
    s.push_str(&format!(
        "\n-- {name}: rows outside every partition (far past or future) land here and are enforced too ({})\n", comment(&ds.source.to_string())
    ));
    s.push_str(&format!(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF {rel} DEFAULT;\n",
        default_partition(&ds.schema, &ds.table)
    ));
    if let (Engine::Citus, Some(tenant)) = (engine, &ds.tenant) {
        s.push_str(&super::citus::distribute(&rel, tenant, name));
    }
    s.push_str(&format!(
        "\n-- {name}: indexes for enforcement, holds and erasure ({})\n",
        comment(&ds.source.to_string())
    ));
    for cols in names::enforcement_indexes(ds) {
        if ds.columns.is_some() {
            s.push_str(&index(&ds.schema, &ds.table, &cols));
        } else {
            s.push_str(&ensure_index(ds, &cols));
        }
    }
    s.push_str(&triggers(ds));
    if let Some(a) = &ds.archive {
        let arch = qualified(&a.schema, &ds.table);
        s.push_str(&format!(
            "\n-- {name}: the archive (on_expiry: archive), partitioned by month of the rows' deadline ({})\n",
            comment(&ds.source.to_string())
        ));
        s.push_str(&create_schema(&a.schema));
        s.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {arch} (\n    LIKE {rel},\n    archived_at timestamptz NOT NULL,\n    retention_deadline timestamptz NOT NULL\n) PARTITION BY RANGE (retention_deadline);\n"
        ));
        s.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF {arch} DEFAULT;\n",
            default_partition(&a.schema, &ds.table)
        ));
        if let (Engine::Citus, Some(tenant)) = (engine, &ds.tenant) {
            s.push_str(&super::citus::distribute(
                &arch,
                tenant,
                &format!("{name} (archive)"),
            ));
        }
        s.push_str(&index(&a.schema, &ds.table, &["retention_deadline"]));
        if let Some(e) = &ds.erase_by {
            s.push_str(&index(&a.schema, &ds.table, &[e]));
        }
    }
    s.push_str(&procedure_sql(ds));
    s.push_str(&expired_view(ds, engine));
    s.push_str(&format!(
        "\n-- {name}: partitions from as far back as a row can still be live through {} ahead ({})\n",
        premake(ds.partition),
        comment(&ds.source.to_string())
    ));
    s.push_str(&format!("SELECT retention.premake({});\n", lit(name)));
    s.push_str(&format!(
        "SELECT retention.follow_replica_identity({});\n",
        lit(name)
    ));
    s
}

/// A table pgretain creates has no primary key (one would have to include
/// the clock), so its replica identity is FULL: a publication FOR ALL
/// TABLES then accepts the application's UPDATEs and erasure.
pub fn replica_identity(ds: &Dataset) -> String {
    format!(
        "-- {}: no primary key, so the whole row identifies it to logical replication ({})\nALTER TABLE {} REPLICA IDENTITY FULL;\n",
        ds.name,
        comment(&ds.source.to_string()),
        relation(ds)
    )
}

/// A check that a table of the dataset's name, if it already exists, is the
/// range-partitioned table pgretain creates: `CREATE TABLE IF NOT EXISTS`
/// would otherwise silently keep a table of another shape.
fn table_guard(ds: &Dataset) -> String {
    let rel = lit(&relation(ds));
    let body = format!(
        "\nBEGIN\n    IF pg_catalog.to_regclass({rel}) IS NOT NULL AND NOT EXISTS (\n        SELECT 1 FROM pg_catalog.pg_partitioned_table p\n          JOIN pg_catalog.pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]\n         WHERE p.partrelid = pg_catalog.to_regclass({rel}) AND p.partstrat = 'r' AND p.partnatts = 1\n           AND a.attname = {time}) THEN\n        RAISE EXCEPTION 'pgretain: table % already exists and is not range-partitioned on %', {rel}, {time}\n            USING HINT = 'pgretain creates this table itself; rename or drop the existing table, or point the dataset at another table name. Nothing was applied.';\n    END IF;\nEND\n",
        time = lit(&ds.time),
    );
    format!("DO {};\n", dollar_quoted("guard", &body))
}

/// The schema, unless it exists (not `CREATE SCHEMA IF NOT EXISTS`, which
/// needs the right to create schemas in the database even when the schema
/// exists: the owner role of `access` has none, and the migration's opening
/// made the schema already).
fn create_schema(schema: &str) -> String {
    let body = format!(
        "\nBEGIN\n    IF pg_catalog.to_regnamespace({}) IS NULL THEN\n        CREATE SCHEMA {};\n    END IF;\nEND\n",
        lit(&ident(schema)),
        ident(schema)
    );
    format!("DO {};\n", dollar_quoted("schema", &body))
}

/// One column definition, rendered by sea-query.
fn column_sql(def: &ColumnDef) -> String {
    let mut s = String::new();
    PostgresQueryBuilder.prepare_column_def(def, &mut s);
    s
}

/// `CREATE INDEX IF NOT EXISTS` on `schema.table (columns)`, rendered by
/// sea-query, named by [`names::index`].
pub fn index(schema: &str, table: &str, cols: &[&str]) -> String {
    let name = names::index(table, cols);
    let mut i = Index::create();
    i.if_not_exists()
        .name(name.as_str())
        .table((Alias::new(schema), Alias::new(table)));
    for c in cols {
        i.col(Alias::new(*c));
    }
    format!("{};\n", i.to_string(PostgresQueryBuilder))
}

/// An index pgretain needs on an existing table, unless the table has an
/// equivalent one already (`retention.ensure_index`).
fn ensure_index(ds: &Dataset, cols: &[&str]) -> String {
    format!(
        "SELECT retention.ensure_index({}::regclass, ARRAY[{}]::text[], {});\n",
        lit(&relation(ds)),
        cols.iter().map(|c| lit(c)).collect::<Vec<_>>().join(", "),
        lit(&names::index(&ds.table, cols))
    )
}

/// The per-dataset procedure the pg_cron job calls. It does not pin its
/// search_path itself: retention.enforce() does, first thing, and puts the
/// caller's back at the end (the only name resolved here is the
/// schema-qualified `retention.enforce(text, timestamptz)`).
pub fn procedure_sql(ds: &Dataset) -> String {
    format!(
        "\n-- {name}: the enforcement procedure its pg_cron job calls: `{cmd}` ({src})\n\
         CREATE OR REPLACE PROCEDURE {proc}(p_now timestamptz DEFAULT NULL)\n\
         LANGUAGE plpgsql\nAS $body$\nBEGIN\n    CALL retention.enforce({l}::text, p_now);\nEND\n$body$;\n\
         COMMENT ON PROCEDURE {proc}(timestamptz) IS {comment};\n",
        name = ds.name,
        cmd = job_command(ds),
        src = comment(&ds.source.to_string()),
        proc = procedure(ds),
        l = lit(&ds.name),
        comment = lit(&format!(
            "pgretain: enforces dataset {} on {} (see retention.enforce)",
            ds.name,
            relation(ds)
        )),
    )
}

/// A view of exactly the rows the next enforcement run would remove. On
/// Citus, a function that reads the settings tables cannot filter a
/// distributed table's rows on the workers, so the view reads a function
/// that runs the run's own predicate (`retention.run_predicate`: the policy
/// and the holds at now() written out as literals) on the coordinator.
pub fn expired_view(ds: &Dataset, engine: Engine) -> String {
    if engine == Engine::Citus {
        return expired_view_citus(ds);
    }
    format!(
        "\n-- {name}: exactly the rows a run starting now would remove ({src})\n\
         CREATE OR REPLACE VIEW {view} AS\nSELECT t.* FROM {rel} t\nWHERE {cond};\n",
        name = ds.name,
        src = comment(&ds.keep_source.to_string()),
        view = names::expired_view(ds),
        rel = relation(ds),
        cond = Expiry::of(ds).expired("pg_catalog.now()"),
    )
}

/// The Citus view of expired rows (see [`expired_view`]). SECURITY
/// DEFINER: readers read it as they read a view, with its owner's rights.
/// Its columns are the table's as the policy makes it (a function returning
/// the table's own row type would depend on the table in a way Citus cannot
/// distribute); like a view's `t.*`, a column added later shows once the
/// view is made again.
fn expired_view_citus(ds: &Dataset) -> String {
    let rel = relation(ds);
    let mut cols: Vec<(String, String)> = ds
        .columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.ty.sql_type.clone()))
        .collect();
    if ds.changes_apply_to == ChangesApplyTo::NewRows {
        cols.push((STAMP_COLUMN.to_string(), "interval".to_string()));
    }
    let select = cols
        .iter()
        .map(|(n, _)| format!("t.{}", ident(n)))
        .collect::<Vec<_>>()
        .join(", ");
    let returns = cols
        .iter()
        .map(|(n, ty)| format!("{} {ty}", ident(n)))
        .collect::<Vec<_>>()
        .join(", ");
    let body = format!(
        "\nBEGIN\n    RETURN QUERY EXECUTE pg_catalog.format('SELECT %s FROM %s t WHERE %s', {select}::text, {rel_lit}::text,\n                                           retention.run_predicate({l}::text, pg_catalog.now()))\n        USING pg_catalog.now();\nEND\n",
        select = lit(&select),
        rel_lit = lit(&rel),
        l = lit(&ds.name),
    );
    format!(
        "\n-- {name}: exactly the rows a run starting now would remove: the run's own predicate,\n-- run on the coordinator (engine: citus) ({src})\n\
         CREATE OR REPLACE FUNCTION {func}()\nRETURNS TABLE ({returns})\nLANGUAGE plpgsql STABLE\nSECURITY DEFINER\nSET search_path = pg_catalog, pg_temp\nAS {body};\n\
         CREATE OR REPLACE VIEW {view} AS\nSELECT * FROM {func}();\n",
        name = ds.name,
        src = comment(&ds.keep_source.to_string()),
        func = names::expired_rows_function(ds),
        view = names::expired_view(ds),
        body = dollar_quoted("body", &body),
    )
}
