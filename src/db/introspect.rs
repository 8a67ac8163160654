//! The shape of an existing table, read from the catalog for `pgretain
//! init`: its kind, comment, columns (with their clock type, when they are
//! one), unique keys and partition key. Read-only; the table is named by a
//! bound parameter resolved with `to_regclass`, never spliced into SQL.

use postgres::GenericClient;

use super::{col, ctx, DbError};

/// The clock types a retention clock may have (SPEC §2 `time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockType {
    Timestamptz,
    /// `timestamp without time zone`.
    Timestamp,
    Date,
}

/// One column of a table (`pg_attribute`), in column order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRow {
    pub name: String,
    /// `format_type`: `timestamp(6) without time zone`, `integer`, …
    pub sql_type: String,
    /// `Some` when the column's type is one a clock may have.
    pub clock: Option<ClockType>,
    pub not_null: bool,
}

/// A unique index of a table (a primary key, a unique constraint or a
/// unique index of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueKeyRow {
    pub primary: bool,
    /// The constraint's name, else the index's.
    pub name: String,
    /// Whether a constraint (primary key or unique) owns the index.
    pub constraint: bool,
    /// The key columns in order; `None` for an expression.
    pub columns: Vec<Option<String>>,
}

/// How a partitioned table is partitioned (`pg_partitioned_table`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionKeyRow {
    /// `r` range, `l` list, `h` hash.
    pub strategy: String,
    /// The key columns in order; `None` for an expression.
    pub columns: Vec<Option<String>>,
}

/// A relation named on the command line, as the catalog has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationRow {
    pub schema: String,
    pub name: String,
    /// `pg_class.relkind`: `r` table, `p` partitioned table, `v` view, …
    pub kind: String,
    /// The table it is a partition of, when it is one.
    pub partition_of: Option<String>,
    /// `COMMENT ON TABLE`.
    pub comment: Option<String>,
    pub columns: Vec<ColumnRow>,
    pub unique_keys: Vec<UniqueKeyRow>,
    pub partition_key: Option<PartitionKeyRow>,
}

/// The name of the database connected to.
pub fn database_name(client: &mut impl GenericClient) -> Result<String, DbError> {
    let row = client
        .query_one("SELECT pg_catalog.current_database()::text", &[])
        .map_err(ctx("reading the database name"))?;
    col(&row, 0)
}

/// The relation `qualified` (`schema.table`, as `to_regclass` reads it),
/// or `None` when there is none of that name.
pub fn relation(
    client: &mut impl GenericClient,
    qualified: &str,
) -> Result<Option<RelationRow>, DbError> {
    let what = format!("reading the catalog entry of {qualified}");
    let Some(row) = client
        .query_opt(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text,
                    (SELECT i.inhparent::pg_catalog.regclass::text
                       FROM pg_catalog.pg_inherits i
                      WHERE i.inhrelid = c.oid AND c.relispartition
                      LIMIT 1),
                    pg_catalog.obj_description(c.oid, 'pg_class')
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = pg_catalog.to_regclass($1)",
            &[&qualified],
        )
        .map_err(ctx(&what))?
    else {
        return Ok(None);
    };
    let oid: u32 = col(&row, 0)?;
    let mut rel = RelationRow {
        schema: col(&row, 1)?,
        name: col(&row, 2)?,
        kind: col(&row, 3)?,
        partition_of: col(&row, 4)?,
        comment: col(&row, 5)?,
        columns: Vec::new(),
        unique_keys: Vec::new(),
        partition_key: None,
    };
    rel.columns = client
        .query(
            "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod),
                    CASE a.atttypid
                         WHEN 'pg_catalog.timestamptz'::pg_catalog.regtype THEN 'timestamptz'
                         WHEN 'pg_catalog.timestamp'::pg_catalog.regtype THEN 'timestamp'
                         WHEN 'pg_catalog.date'::pg_catalog.regtype THEN 'date'
                    END,
                    a.attnotnull
               FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&oid],
        )
        .map_err(ctx(&format!("reading the columns of {qualified}")))?
        .iter()
        .map(|r| {
            Ok(ColumnRow {
                name: col(r, 0)?,
                sql_type: col(r, 1)?,
                clock: match col::<Option<String>>(r, 2)?.as_deref() {
                    Some("timestamptz") => Some(ClockType::Timestamptz),
                    Some("timestamp") => Some(ClockType::Timestamp),
                    Some("date") => Some(ClockType::Date),
                    _ => None,
                },
                not_null: col(r, 3)?,
            })
        })
        .collect::<Result<_, DbError>>()?;
    rel.unique_keys = client
        .query(
            "SELECT i.indisprimary, coalesce(con.conname, ci.relname)::text, con.oid IS NOT NULL,
                    ARRAY(SELECT a.attname::text
                            FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY k(attnum, ord)
                            LEFT JOIN pg_catalog.pg_attribute a
                              ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
                           WHERE k.ord <= i.indnkeyatts
                           ORDER BY k.ord)
               FROM pg_catalog.pg_index i
               JOIN pg_catalog.pg_class ci ON ci.oid = i.indexrelid
               LEFT JOIN pg_catalog.pg_constraint con
                 ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u')
              WHERE i.indrelid = $1 AND i.indisunique
              ORDER BY i.indisprimary DESC, 2",
            &[&oid],
        )
        .map_err(ctx(&format!("reading the unique keys of {qualified}")))?
        .iter()
        .map(|r| {
            Ok(UniqueKeyRow {
                primary: col(r, 0)?,
                name: col(r, 1)?,
                constraint: col(r, 2)?,
                columns: col(r, 3)?,
            })
        })
        .collect::<Result<_, DbError>>()?;
    rel.partition_key = client
        .query_opt(
            "SELECT p.partstrat::text,
                    ARRAY(SELECT a.attname::text
                            FROM pg_catalog.unnest(p.partattrs::pg_catalog.int2[]) WITH ORDINALITY k(attnum, ord)
                            LEFT JOIN pg_catalog.pg_attribute a
                              ON a.attrelid = p.partrelid AND a.attnum = k.attnum AND k.attnum > 0
                           ORDER BY k.ord)
               FROM pg_catalog.pg_partitioned_table p
              WHERE p.partrelid = $1",
            &[&oid],
        )
        .map_err(ctx(&format!("reading the partition key of {qualified}")))?
        .map(|r| {
            Ok::<_, DbError>(PartitionKeyRow {
                strategy: col(&r, 0)?,
                columns: col(&r, 1)?,
            })
        })
        .transpose()?;
    Ok(Some(rel))
}
