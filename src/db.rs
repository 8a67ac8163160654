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

/// The connection settings: the URL (or key-value string) given, with what
/// it leaves out taken from the libpq `PG*` variables, as psql does:
/// PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGOPTIONS,
/// PGAPPNAME and PGCONNECT_TIMEOUT.
pub fn config(url: Option<&str>) -> Result<Config, DbError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut c = match url {
        Some(u) if !u.trim().is_empty() => Config::from_str(u).map_err(|e| {
            DbError(format!(
                "the database URL is not valid ({e}); write it as `postgresql://user@host:port/dbname` or `host=... dbname=...`"
            ))
        })?,
        _ => Config::new(),
    };
    if c.get_hosts().is_empty() {
        c.host(&env("PGHOST").unwrap_or_else(|| "/var/run/postgresql".into()));
    }
    if c.get_ports().is_empty() {
        if let Some(p) = env("PGPORT") {
            let port = p
                .parse::<u16>()
                .map_err(|_| DbError(format!("PGPORT `{p}` is not a port number")))?;
            c.port(port);
        }
    }
    if c.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(|| env("USER"))
            .unwrap_or_else(|| "postgres".into());
        c.user(&user);
    }
    if c.get_password().is_none() {
        if let Some(p) = env("PGPASSWORD") {
            c.password(p);
        }
    }
    if c.get_dbname().is_none() {
        let db = env("PGDATABASE")
            .or_else(|| c.get_user().map(str::to_string))
            .unwrap_or_else(|| "postgres".into());
        c.dbname(&db);
    }
    if c.get_options().is_none() {
        if let Some(o) = env("PGOPTIONS") {
            c.options(&o);
        }
    }
    if c.get_application_name().is_none() {
        c.application_name(&env("PGAPPNAME").unwrap_or_else(|| "pgretain".into()));
    }
    if c.get_connect_timeout().is_none() {
        if let Some(t) = env("PGCONNECT_TIMEOUT") {
            let secs = t.parse::<u64>().map_err(|_| {
                DbError(format!(
                    "PGCONNECT_TIMEOUT `{t}` is not a number of seconds"
                ))
            })?;
            c.connect_timeout(std::time::Duration::from_secs(secs));
        }
    }
    Ok(c)
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

/// Connect, or explain why not. The session's search_path is pinned to
/// `pg_catalog, pg_temp` at once (whatever the database, the role or
/// PGOPTIONS set), and every query of pgretain names its objects
/// schema-qualified: no function or operator another role created is ever
/// run by pgretain's own queries, in a DBA's superuser session least of all.
pub fn connect(c: &Config) -> Result<Client, DbError> {
    let mut client = c.connect(NoTls).map_err(|e| {
        DbError(format!(
            "cannot connect to {}: {}. Check --database-url (or DATABASE_URL / PG* variables), that the server is running and accepts this user",
            describe(c),
            pg_message(&e)
        ))
    })?;
    client
        .batch_execute(PIN_SEARCH_PATH)
        .map_err(ctx("pinning the search_path"))?;
    Ok(client)
}

/// The statement that pins a session's search_path, and the settings that
/// change how timestamps and intervals are read and written as text (so
/// the output of pgretain, and anything it creates, does not depend on
/// PGOPTIONS or the role's settings).
pub const PIN_SEARCH_PATH: &str =
    "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false),
            pg_catalog.set_config('TimeZone', 'UTC', false),
            pg_catalog.set_config('DateStyle', 'ISO, YMD', false),
            pg_catalog.set_config('IntervalStyle', 'postgres', false)";

/// refinery's migration history table, unqualified (where version 1 of
/// pgretain let the search_path put it: `public`, normally).
pub const HISTORY_TABLE: &str = "pgretain_schema_history";

/// The migration history table to use, schema-qualified and checked: the
/// one that exists, or `public.pgretain_schema_history` when there is none
/// (refinery creates it). A table of that name that another role owns (not
/// the current user, not a superuser), or with triggers or rules, could
/// make apply run that role's code as the DBA: refused, with the fix.
pub fn history_table(client: &mut Client) -> Result<Option<String>, DbError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relkind::text, pg_catalog.pg_get_userbyid(c.relowner)::text,
                    coalesce(r.rolsuper, false) OR c.relowner = (SELECT u.oid FROM pg_catalog.pg_roles u
                                                                   WHERE u.rolname = current_user),
                    EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid)
                    OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite w WHERE w.ev_class = c.oid)
                    OR EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid)
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               LEFT JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
              WHERE c.relname = $1 AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast%'
              ORDER BY 1",
            &[&HISTORY_TABLE],
        )
        .map_err(ctx("looking for the migration history"))?;
    match rows.as_slice() {
        [] => Ok(None),
        [r] => {
            let (schema, kind, owner, trusted, hooked): (String, String, String, bool, bool) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            let name = format!("{}.{}", crate::render::text::ident(&schema), crate::render::text::ident(HISTORY_TABLE));
            if kind != "r" || !trusted || hooked {
                return Err(DbError(format!(
                    "refusing to use the migration history {name}: it is {}, owned by role `{owner}`{}. Another role may have made it to run its own code when apply records a migration. If pgretain was never applied here, drop it (`DROP TABLE {name}`); otherwise check it and give it to the role that applies (`ALTER TABLE {name} OWNER TO ...`). Nothing was changed",
                    if kind == "r" { "a table" } else { "not a plain table" },
                    if hooked { ", with triggers, rules or row security" } else { "" },
                )));
            }
            Ok(Some(name))
        }
        many => Err(DbError(format!(
            "the migration history table {HISTORY_TABLE} exists in several schemas ({}): pgretain cannot tell which is its own. Keep the one pgretain wrote (in `public` normally) and drop the others; nothing was changed",
            many.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Where refinery keeps (or will create) the history: the checked table of
/// [`history_table`], or `public.pgretain_schema_history`.
pub fn history_table_or_default(client: &mut Client) -> Result<String, DbError> {
    Ok(history_table(client)?.unwrap_or_else(|| {
        format!(
            "{}.{}",
            crate::render::text::ident("public"),
            crate::render::text::ident(HISTORY_TABLE)
        )
    }))
}

/// The owner of schema `retention`, when it is not the current user and the
/// current user may act as it (a superuser, or a member of it).
pub fn retention_owner(client: &mut Client) -> Result<Option<String>, DbError> {
    let row = client
        .query_opt(
            "SELECT pg_catalog.pg_get_userbyid(n.nspowner)::text
               FROM pg_catalog.pg_namespace n
              WHERE n.nspname = 'retention'
                AND n.nspowner <> (SELECT u.oid FROM pg_catalog.pg_roles u WHERE u.rolname = current_user)
                AND pg_catalog.pg_has_role(current_user, n.nspowner, 'MEMBER')",
            &[],
        )
        .map_err(ctx("reading the owner of schema retention"))?;
    Ok(row.map(|r| r.get(0)))
}

/// Act as the owner of schema retention for the rest of the session, when
/// it is another role the current user may act as: `pgretain run` and
/// `erase` then do exactly what the job does, with the job's rights, not a
/// superuser's. Returns the role switched to.
pub fn act_as_retention_owner(client: &mut Client) -> Result<Option<String>, DbError> {
    let owner = retention_owner(client)?;
    if let Some(o) = &owner {
        client
            .batch_execute(&format!("SET ROLE {}", crate::render::text::ident(o)))
            .map_err(ctx("switching to the owner of schema retention"))?;
    }
    Ok(owner)
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
