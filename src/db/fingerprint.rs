//! Fingerprints of the routines of schema `retention`: `apply` records the
//! md5 of each routine's definition as the migrations left it (in
//! `render::names::FINGERPRINT_TABLE`), and `verify` compares the routines
//! of now with them, so a hand edit shows.

use std::collections::BTreeMap;

use postgres::{Client, GenericClient};

use super::{col, ctx, DbError};
use crate::render::names::FINGERPRINT_TABLE;

/// Every routine (function, procedure, trigger function) of schema
/// `retention` with the md5 of its definition, keyed by its signature.
/// Run with `search_path = pg_catalog, pg_temp`, so signatures are always
/// schema-qualified and the same whoever asks.
const ROUTINES_SQL: &str = "SELECT p.oid::regprocedure::text, md5(pg_get_functiondef(p.oid))
  FROM pg_proc p
 WHERE p.pronamespace = 'retention'::regnamespace AND p.prokind IN ('f', 'p')";

/// Whether apply has recorded routine fingerprints in this database.
pub fn recorded_any(client: &mut impl GenericClient) -> Result<bool, DbError> {
    let row = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&FINGERPRINT_TABLE])
        .map_err(ctx("looking for the routine fingerprints"))?;
    col(&row, 0)
}

/// The routines of schema `retention` and their md5, now (in a transaction:
/// it pins the search_path for the rest of it).
pub fn routines(tx: &mut postgres::Transaction<'_>) -> Result<BTreeMap<String, String>, DbError> {
    tx.batch_execute("SET LOCAL search_path = pg_catalog, pg_temp")
        .map_err(ctx("setting the search path"))?;
    tx.query(ROUTINES_SQL, &[])
        .map_err(ctx("fingerprinting the routines of schema retention"))?
        .iter()
        .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
        .collect()
}

/// The fingerprints apply recorded, by routine.
pub fn recorded(client: &mut impl GenericClient) -> Result<BTreeMap<String, String>, DbError> {
    client
        .query(
            &format!("SELECT routine, md5 FROM {FINGERPRINT_TABLE}"),
            &[],
        )
        .map_err(ctx("reading the routine fingerprints"))?
        .iter()
        .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
        .collect()
}

/// Record the fingerprint of every routine of schema `retention` in
/// [`FINGERPRINT_TABLE`] (created if needed), replacing what was there, in
/// one transaction. Called by apply right after migrations ran; returns how
/// many routines it recorded.
pub fn record(client: &mut Client) -> Result<usize, DbError> {
    let mut tx = client
        .transaction()
        .map_err(ctx("starting the fingerprint transaction"))?;
    tx.batch_execute(&format!(
        "SET LOCAL search_path = pg_catalog, pg_temp;
         CREATE TABLE IF NOT EXISTS {FINGERPRINT_TABLE} (
             routine text PRIMARY KEY,   -- signature: retention.keep_for(text,text,text)
             md5     text NOT NULL       -- md5(pg_get_functiondef(oid))
         );
         COMMENT ON TABLE {FINGERPRINT_TABLE} IS
             'pgretain: every routine of schema retention as apply left it; pgretain verify reports hand edits';
         DELETE FROM {FINGERPRINT_TABLE};
         INSERT INTO {FINGERPRINT_TABLE} (routine, md5) {ROUTINES_SQL};"
    ))
    .map_err(ctx("recording the routine fingerprints"))?;
    let row = tx
        .query_one(&format!("SELECT count(*) FROM {FINGERPRINT_TABLE}"), &[])
        .map_err(ctx("counting the routine fingerprints"))?;
    let n: i64 = col(&row, 0)?;
    tx.commit()
        .map_err(ctx("committing the routine fingerprints"))?;
    Ok(usize::try_from(n).unwrap_or_default())
}
