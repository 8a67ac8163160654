//! The live database, and the only module with SQL that runs against one.
//!
//! Every query pgretain sends is here, one function each, returning one row
//! type per kind of row: the connection (`connect`), the session's facts
//! and switches (`session`), refinery's migration history against the files
//! (`history`), what schema `retention` holds (`catalog`: datasets,
//! overrides, holds, tenant settings, partitions, runs, expired rows),
//! pg_cron's jobs (`cron`), the routine fingerprints (`fingerprint`), the
//! roles of `access` (`roles`), existing tables before they are adopted
//! (`adopt`), enforcement and erasure (`enforce`), the report's evidence
//! (`evidence`), the rows a run would remove counted in bounded time for
//! status, verify and plan (`expired`), plan's rolled-back rehearsal
//! (`rehearsal`) and the shape
//! of an existing table for `init` (`introspect`). The commands
//! orchestrate; they never write SQL. Names of
//! what pgretain created come from `render::names`, literals and
//! identifiers from `render::text`.
//!
//! Every session pins its search_path to `pg_catalog, pg_temp` and every
//! query names its objects schema-qualified, so no function or operator
//! another role created is ever run by pgretain's own queries. Errors become
//! one paragraph saying what failed and what to do, with the server's
//! SQLSTATE, detail and hint when it sent them.

pub mod adopt;
pub mod catalog;
pub mod connect;
pub mod cron;
pub mod enforce;
pub mod evidence;
pub mod expired;
pub mod fingerprint;
pub mod history;
pub mod introspect;
pub mod rehearsal;
pub mod roles;
pub mod runs;
pub mod session;
pub mod tables;

use std::fmt;

use postgres::types::FromSql;
use postgres::Row;

/// A database failure, rendered for people (exit 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError(pub String);

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.0)
    }
}

impl std::error::Error for DbError {}

/// The server's message with SQLSTATE, detail and hint, or the client's error.
pub fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!("; detail: {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            if let Some(w) = db.where_() {
                s.push_str(&format!("; where: {}", w.replace('\n', " / ")));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(&format!(": {inner}"));
                src = inner.source();
            }
            s
        }
    }
}

/// Find the PostgreSQL error anywhere in an error's source chain.
pub fn find_pg_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a postgres::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(pg) = err.downcast_ref::<postgres::Error>() {
            return Some(pg);
        }
        cur = err.source();
    }
    None
}

/// Wrap a query error with what we were doing.
pub fn ctx(what: &str) -> impl Fn(postgres::Error) -> DbError + '_ {
    move |e| DbError(format!("{what} failed: {}", pg_message(&e)))
}

/// Column `i` of `row`, or an error naming it (a column of another type
/// than pgretain expects: the table was changed by hand).
pub(crate) fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, DbError> {
    row.try_get(i).map_err(|e| {
        DbError(format!(
            "column {} of a row pgretain read has an unexpected type or value ({e}); was a table of schema retention or pg_cron changed by hand?",
            row.columns().get(i).map(|c| c.name()).unwrap_or("?")
        ))
    })
}
