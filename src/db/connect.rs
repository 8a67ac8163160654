//! Connecting to PostgreSQL: the settings (a URL or libpq key-value string,
//! with what it leaves out taken from the `PG*` variables, as psql does),
//! the session pinned so that nothing another role created runs, the cron
//! database beside the data database, and the role a run acts as.

use std::str::FromStr;

use postgres::{Client, Config, NoTls};

use super::{col, ctx, pg_message, DbError};
use crate::render::text::ident;

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
    // Progress of long steps (a drain's copy, say) reaches the operator:
    // the runtime's NOTICEs that start with `pgretain:` go to stderr, with
    // control characters taken out (the text comes from the database).
    c.notice_callback(|n| {
        if n.message().starts_with("pgretain: ") {
            let clean: String = n.message().chars().filter(|ch| !ch.is_control()).collect();
            eprintln!("{clean}");
        }
    });
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

/// Connect to the cron database `cron_db` with the settings of `cfg`, or
/// explain that it is where pg_cron keeps its jobs.
pub fn connect_cron(cfg: &Config, cron_db: &str) -> Result<Client, DbError> {
    let mut c = cfg.clone();
    c.dbname(cron_db);
    connect(&c).map_err(|e| {
        DbError(format!(
            "{} (the cron database `{cron_db}` is where pg_cron keeps its jobs; pass --cron-database if it is another)",
            e.0
        ))
    })
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
    row.map(|r| col(&r, 0)).transpose()
}

/// Act as the owner of schema retention for the rest of the session, when
/// it is another role the current user may act as: `pgretain run` and
/// `erase` then do exactly what the job does, with the job's rights, not a
/// superuser's. Returns the role switched to.
pub fn act_as_retention_owner(client: &mut Client) -> Result<Option<String>, DbError> {
    let owner = retention_owner(client)?;
    if let Some(o) = &owner {
        client
            .batch_execute(&format!("SET ROLE {}", ident(o)))
            .map_err(ctx("switching to the owner of schema retention"))?;
    }
    Ok(owner)
}
