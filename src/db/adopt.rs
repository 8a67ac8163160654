//! Existing tables (SPEC §3 "Existing tables"): what `apply` asks and does
//! before the migrations that adopt them run.
//!
//! - [`refusal`]: why a table cannot be adopted, asked of every dataset
//!   without `columns` before anything is changed. It runs the body of the
//!   runtime's own `retention.adopt_refusal()` (the text between its
//!   `$refusal$` quotes), so the preflight and the migration refuse exactly
//!   the same tables, even before the runtime is installed.
//! - [`prepare`]: the slow, online part of adopting an ordinary table,
//!   outside any transaction, so that the migration's `retention.adopt()`
//!   only changes the catalog: the indexes the partitioned table will have
//!   (unique keys extended by the clock, and pgretain's own), built with
//!   `CREATE INDEX CONCURRENTLY`, and the bound `CHECK (time < F)` added
//!   `NOT VALID` and then validated (reads and writes go on). Every step is
//!   idempotent: a killed `apply` leaves at most an invalid index, which the
//!   next one drops and builds again, and a constraint it validates.

use std::time::Instant;

use postgres::types::Type;
use postgres::Client;

use super::{col, ctx, DbError};
use crate::model::{Dataset, Granularity, UniqueKeys};
use crate::render::names::{self, relation};
use crate::render::text::{ident, lit};
use crate::render::RUNTIME_SQL;

/// The name of the constraint that bounds the old storage.
pub const BOUND_CONSTRAINT: &str = "pgretain_adopt_bound";

/// The body of a runtime function written as one query over positional
/// parameters between `$tag$` quotes (`retention.adopt_refusal`,
/// `retention.has_index`), to run before the runtime is installed.
fn runtime_body(tag: &str) -> Result<&'static str, DbError> {
    let open = format!("AS ${tag}$\n");
    let close = format!("${tag}$;");
    let start = RUNTIME_SQL.find(&open).map(|i| i + open.len());
    let end = RUNTIME_SQL.find(&close);
    match (start, end) {
        (Some(s), Some(e)) if s < e => Ok(&RUNTIME_SQL[s..e]),
        _ => Err(DbError(format!(
            "pgretain's runtime has no {tag} body (a build of pgretain from damaged sources)"
        ))),
    }
}

/// Why `ds`'s existing table cannot be adopted; `None` when it can.
pub fn refusal(client: &mut Client, ds: &Dataset) -> Result<Option<String>, DbError> {
    refusal_of(
        client,
        &relation(ds),
        &ds.time,
        ds.zone(),
        ds.unique_keys == UniqueKeys::IncludeTime,
    )
}

/// Why table `relation` (quoted, schema-qualified) with clock `time` in
/// `zone` cannot be adopted; `None` when it can.
pub fn refusal_of(
    client: &mut Client,
    relation: &str,
    time: &str,
    zone: &str,
    include_time: bool,
) -> Result<Option<String>, DbError> {
    let stmt = client
        .prepare_typed(
            runtime_body("refusal")?,
            &[Type::TEXT, Type::TEXT, Type::TEXT, Type::BOOL],
        )
        .map_err(ctx("checking the existing table"))?;
    let row = client
        .query_one(&stmt, &[&relation, &time, &zone, &include_time])
        .map_err(ctx("checking the existing table"))?;
    col(&row, 0)
}

/// What [`prepare`] did, a line each, for stderr.
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// Whether `ds`'s table is an ordinary table (not yet adopted).
fn is_plain_table(client: &mut Client, ds: &Dataset) -> Result<bool, DbError> {
    let row = client
        .query_one(
            "SELECT coalesce((SELECT c.relkind = 'r' FROM pg_catalog.pg_class c
                               WHERE c.oid = pg_catalog.to_regclass($1)), false)",
            &[&relation(ds)],
        )
        .map_err(ctx("reading the existing table"))?;
    col(&row, 0)
}

/// Runs one statement of the preparation, outside a transaction, with the
/// dataset's lock_timeout, retrying a lock timeout a few times: the
/// application's statements never wait behind it for longer than that.
fn step(
    client: &mut Client,
    ds: &Dataset,
    what: &str,
    sql: &str,
    progress: Progress,
) -> Result<(), DbError> {
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "SET lock_timeout = {}",
            lit(&format!("{}ms", ds.lock_timeout_ms))
        ))
        .map_err(ctx("setting lock_timeout"))?;
    let mut tries = 0;
    let result = loop {
        match client.batch_execute(sql) {
            Err(e)
                if e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE)
                    && tries < 5 =>
            {
                tries += 1;
                progress(&format!(
                    "{}: {what}: the table was busy past lock_timeout; trying again ({tries}/5)",
                    ds.name
                ));
                std::thread::sleep(std::time::Duration::from_millis(500 * tries));
            }
            other => break other,
        }
    };
    let _ = client.batch_execute("RESET lock_timeout");
    result.map_err(ctx(&format!("{}: {what}", ds.name)))?;
    progress(&format!(
        "{}: {what}: done in {:.1} s",
        ds.name,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// The indexes the partitioned table will need that the old storage does
/// not have yet, as (name, unique, columns): each unique key without the
/// clock extended by it (with `unique_keys: include_time`), and pgretain's
/// own (the clock, tenant and clock, erase_by) unless an equivalent exists.
fn missing_indexes(
    client: &mut Client,
    ds: &Dataset,
) -> Result<Vec<(String, bool, String)>, DbError> {
    let rel = relation(ds);
    let mut out = Vec::new();
    if ds.unique_keys == UniqueKeys::IncludeTime {
        let rows = client
            .query(
                "SELECT pg_catalog.left(ic.relname, 50) || '_with_time',
                        (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY k.n)
                           FROM pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                           JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
                   FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                  WHERE i.indrelid = pg_catalog.to_regclass($1) AND i.indisunique
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                     WHERE a.attrelid = i.indrelid AND a.attname = $2
                                       AND a.attnum = ANY (i.indkey::int2[]))
                  ORDER BY ic.relname",
                &[&rel, &ds.time],
            )
            .map_err(ctx("reading the table's unique keys"))?;
        for r in rows {
            let name: String = col(&r, 0)?;
            let cols: String = col(&r, 1)?;
            out.push((name, true, format!("{cols}, {}", ident(&ds.time))));
        }
    }
    let has_index = client
        .prepare_typed(runtime_body("has_index")?, &[Type::TEXT, Type::TEXT_ARRAY])
        .map_err(ctx("reading the table's indexes"))?;
    for cols in names::enforcement_indexes(ds) {
        let have = client
            .query_one(&has_index, &[&rel, &cols])
            .map_err(ctx("reading the table's indexes"))?;
        if !col::<bool>(&have, 0)? {
            // Named as the partitioned table's index will be: adopt() gives
            // it that name back when the old storage steps aside.
            let name = names::index(&ds.table, &cols);
            let list = cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
            out.push((name, false, list));
        }
    }
    Ok(out)
}

/// The wall time (in the clock's zone) of the old storage's bound F: the
/// start of the period after next, counted from the later of now and the
/// newest row, as a literal of the clock's own type.
fn bound_literal(client: &mut Client, ds: &Dataset) -> Result<String, DbError> {
    let g = match ds.partition {
        Granularity::Day => "day",
        Granularity::Week => "week",
        Granularity::Month => "month",
    };
    let sql = format!(
        "WITH m AS (SELECT max(t.{time}) AS v FROM {rel} t),
              k AS (SELECT CASE a.atttypid WHEN 'pg_catalog.timestamptz'::pg_catalog.regtype THEN 'timestamptz'
                                           WHEN 'pg_catalog.date'::pg_catalog.regtype THEN 'date'
                                           ELSE 'timestamp' END AS ty
                      FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attname = $2),
              w AS (SELECT pg_catalog.date_trunc($3, GREATEST(pg_catalog.timezone($4, pg_catalog.now()),
                                 CASE k.ty WHEN 'timestamptz' THEN pg_catalog.timezone('UTC', m.v::text::timestamptz)
                                           ELSE m.v::text::timestamp END))
                           + ('2 ' || $3)::interval AS wall, k.ty FROM m, k)
         SELECT CASE w.ty WHEN 'timestamptz' THEN pg_catalog.quote_literal(w.wall::text || '+00') || '::timestamptz'
                          WHEN 'date' THEN pg_catalog.quote_literal(w.wall::date::text) || '::date'
                          ELSE pg_catalog.quote_literal(w.wall::text) || '::timestamp' END
           FROM w",
        time = ident(&ds.time),
        rel = relation(ds),
    );
    let row = client
        .query_one(sql.as_str(), &[&relation(ds), &ds.time, &g, &ds.zone()])
        .map_err(ctx("computing the bound of the old storage"))?;
    col(&row, 0)
}

/// The online preparation of `ds`'s existing table (see the module's
/// documentation); nothing when it is already partitioned.
pub fn prepare(client: &mut Client, ds: &Dataset, progress: Progress) -> Result<(), DbError> {
    if !is_plain_table(client, ds)? {
        return Ok(());
    }
    let rel = relation(ds);
    let rows: f64 = {
        let r = client
            .query_one(
                "SELECT greatest(c.reltuples, 0)::float8 FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)",
                &[&rel],
            )
            .map_err(ctx("reading the table's size"))?;
        col(&r, 0)?
    };
    progress(&format!(
        "{}: adopting {rel} (about {rows:.0} rows): preparing it online",
        ds.name
    ));
    // An index a killed build left invalid is dropped and built again.
    let planned = missing_indexes(client, ds)?;
    let names: Vec<&str> = planned.iter().map(|p| p.0.as_str()).collect();
    let invalid = client
        .query(
            "SELECT pg_catalog.format('%I.%I', n.nspname, ic.relname)
               FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
               JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace
              WHERE i.indrelid = pg_catalog.to_regclass($1) AND NOT i.indisvalid
                AND ic.relname = ANY ($2::text[])",
            &[&rel, &names],
        )
        .map_err(ctx("reading the table's indexes"))?;
    for r in invalid {
        let name: String = col(&r, 0)?;
        step(
            client,
            ds,
            &format!("dropping the unfinished index {name}"),
            &format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"),
            progress,
        )?;
    }
    for (name, unique, cols) in planned {
        let started = Instant::now();
        step(
            client,
            ds,
            &format!("building index {name} ({cols})"),
            &format!(
                "CREATE {}INDEX CONCURRENTLY IF NOT EXISTS {} ON {rel} ({cols})",
                if unique { "UNIQUE " } else { "" },
                ident(&name)
            ),
            progress,
        )?;
        let secs = started.elapsed().as_secs_f64().max(0.001);
        progress(&format!("{}: {name}: {:.0} rows/s", ds.name, rows / secs));
    }
    // Whether the bound exists (and is validated); a failed query is an
    // error, not "no bound".
    let valid: Option<bool> = client
        .query_opt(
            "SELECT c.convalidated FROM pg_catalog.pg_constraint c
              WHERE c.conrelid = pg_catalog.to_regclass($1) AND c.conname = $2",
            &[&rel, &BOUND_CONSTRAINT],
        )
        .map_err(ctx("reading the bound of the old storage"))?
        .map(|r| col(&r, 0))
        .transpose()?;
    if valid.is_none() {
        let bound = bound_literal(client, ds)?;
        step(
            client,
            ds,
            &format!("bounding the old storage: {} < {bound}", ident(&ds.time)),
            &format!(
                "ALTER TABLE {rel} ADD CONSTRAINT {} CHECK ({} < {bound}) NOT VALID",
                ident(BOUND_CONSTRAINT),
                ident(&ds.time)
            ),
            progress,
        )?;
    }
    if valid != Some(true) {
        let started = Instant::now();
        step(
            client,
            ds,
            "validating the bound (reads and writes go on)",
            &format!(
                "ALTER TABLE {rel} VALIDATE CONSTRAINT {}",
                ident(BOUND_CONSTRAINT)
            ),
            progress,
        )?;
        let secs = started.elapsed().as_secs_f64().max(0.001);
        progress(&format!(
            "{}: bound validated: {:.0} rows/s",
            ds.name,
            rows / secs
        ));
    }
    Ok(())
}
