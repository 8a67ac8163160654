//! Connecting to PostgreSQL and reporting its errors.
//!
//! Database commands take `--database-url` or `DATABASE_URL` (a URL or a
//! libpq key-value string); without either, the libpq `PG*` variables are
//! read, as psql would. Errors become one paragraph saying what failed and
//! what to do, with the server's SQLSTATE, detail and hint when it sent them.

use std::fmt;
use std::str::FromStr;

use postgres::{Client, Config, NoTls};

/// A database failure, rendered for people (exit 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError(pub String);

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.0)
    }
}

impl std::error::Error for DbError {}

/// The connection settings: the URL given, or the `PG*` environment.
pub fn config(url: Option<&str>) -> Result<Config, DbError> {
    match url {
        Some(u) if !u.trim().is_empty() => Config::from_str(u).map_err(|e| {
            DbError(format!(
                "the database URL is not valid ({e}); write it as `postgresql://user@host:port/dbname` or `host=... dbname=...`"
            ))
        }),
        _ => {
            let mut c = Config::new();
            let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
            c.host(&env("PGHOST").unwrap_or_else(|| "/var/run/postgresql".into()));
            if let Some(p) = env("PGPORT") {
                let port = p.parse::<u16>().map_err(|_| DbError(format!("PGPORT `{p}` is not a port number")))?;
                c.port(port);
            }
            let user = env("PGUSER").or_else(|| env("USER")).unwrap_or_else(|| "postgres".into());
            c.user(&user);
            if let Some(p) = env("PGPASSWORD") {
                c.password(p);
            }
            c.dbname(&env("PGDATABASE").unwrap_or(user));
            Ok(c)
        }
    }
}

/// What the connection points at, for messages (never the password).
pub fn describe(c: &Config) -> String {
    let host = c
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(s) => s.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "database `{}` on {host}:{port} as `{}`",
        c.get_dbname().unwrap_or("?"),
        c.get_user().unwrap_or("?")
    )
}

/// Connect, or explain why not.
pub fn connect(c: &Config) -> Result<Client, DbError> {
    c.connect(NoTls).map_err(|e| {
        DbError(format!(
            "cannot connect to {}: {}. Check --database-url (or DATABASE_URL / PG* variables), that the server is running and accepts this user",
            describe(c),
            pg_message(&e)
        ))
    })
}

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
