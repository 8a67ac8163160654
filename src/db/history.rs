//! refinery's migration history: which table it is (checked before anyone
//! reads or writes it), what it records, and how that compares with the
//! files in `generated/` — in one function, [`compare`], as refinery's own
//! `verify_migrations` does — and running the pending migrations with it.

use postgres::Client;
use refinery::{Migration, Runner};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{col, ctx, find_pg_error, pg_message, DbError};
use crate::render::names::{qualified, HISTORY_TABLE};

/// The migration history table to use, schema-qualified and checked: the
/// one that exists, or `None` when there is none (refinery creates
/// `public.pgretain_schema_history`, see [`default_table`]). A table of that
/// name that another role owns (not the current user, not a superuser), or
/// with triggers or rules, could make apply run that role's code as the
/// DBA: refused, with the fix.
pub fn table(client: &mut Client) -> Result<Option<String>, DbError> {
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
                (col(r, 0)?, col(r, 1)?, col(r, 2)?, col(r, 3)?, col(r, 4)?);
            let name = qualified(&schema, HISTORY_TABLE);
            if kind != "r" || !trusted || hooked {
                return Err(DbError(format!(
                    "refusing to use the migration history {name}: it is {}, owned by role `{owner}`{}. Another role may have made it to run its own code when apply records a migration. If pgretain was never applied here, drop it (`DROP TABLE {name}`); otherwise check it and give it to the role that applies (`ALTER TABLE {name} OWNER TO ...`). Nothing was changed",
                    if kind == "r" { "a table" } else { "not a plain table" },
                    if hooked { ", with triggers, rules or row security" } else { "" },
                )));
            }
            Ok(Some(name))
        }
        many => {
            let schemas = many
                .iter()
                .map(|r| col::<String>(r, 0))
                .collect::<Result<Vec<_>, _>>()?;
            Err(DbError(format!(
                "the migration history table {HISTORY_TABLE} exists in several schemas ({}): pgretain cannot tell which is its own. Keep the one pgretain wrote (in `public` normally) and drop the others; nothing was changed",
                schemas.join(", ")
            )))
        }
    }
}

/// Where refinery creates the history when there is none yet.
pub fn default_table() -> String {
    qualified("public", HISTORY_TABLE)
}

/// One migration the history records as applied, as stored (refinery
/// writes text; a hand edit may have left anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i64,
    pub name: String,
    /// refinery's checksum of the applied file, as text.
    pub checksum: Option<String>,
    /// When it was applied (RFC 3339, as refinery writes it).
    pub applied_on: Option<String>,
}

impl Applied {
    /// `V1__init`.
    pub fn label(&self) -> String {
        format!("V{}__{}", self.version, self.name)
    }

    /// When it was applied, as refinery shows it (`2026-05-01 3:30:00.0 +00:00:00`),
    /// else as stored.
    pub fn applied_on_shown(&self) -> Option<String> {
        let raw = self.applied_on.as_deref()?;
        Some(
            OffsetDateTime::parse(raw, &Rfc3339)
                .map(|t| t.to_string())
                .unwrap_or_else(|_| raw.to_string()),
        )
    }

    /// Whether refinery can read this row back (it stops the process on
    /// one it cannot): a name, an RFC 3339 time and a numeric checksum.
    fn readable_by_refinery(&self) -> bool {
        i32::try_from(self.version).is_ok()
            && self
                .applied_on
                .as_deref()
                .is_some_and(|a| OffsetDateTime::parse(a, &Rfc3339).is_ok())
            && self
                .checksum
                .as_deref()
                .is_some_and(|c| c.parse::<u64>().is_ok())
    }

    /// Whether `file` is the migration this row records.
    fn matches(&self, file: &Migration) -> bool {
        let recorded = self.checksum.as_deref().and_then(|c| c.parse::<u64>().ok());
        recorded == Some(file.checksum()) && self.name == file.name()
    }
}

/// Every migration `history` (a checked table, see [`table`]) records, by version.
pub fn read(client: &mut Client, history: &str) -> Result<Vec<Applied>, DbError> {
    client
        .query(
            &format!(
                "SELECT version::int8, name::text, checksum::text, applied_on::text FROM {history} ORDER BY version"
            ),
            &[],
        )
        .map_err(ctx("reading the migration history"))?
        .iter()
        .map(|r| {
            Ok(Applied {
                version: col(r, 0)?,
                name: col::<Option<String>>(r, 1)?.unwrap_or_default(),
                checksum: col(r, 2)?,
                applied_on: col(r, 3)?,
            })
        })
        .collect()
}

/// What the history says of one file of `generated/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState<'a> {
    /// Not applied yet.
    Pending,
    /// Applied, and the file is what was applied.
    Applied(&'a Applied),
    /// Applied, but the file changed since (checksum or name).
    Changed(&'a Applied),
}

/// Where the history and the files part ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divergence<'a> {
    /// An applied migration's file changed since.
    Changed(&'a Applied, &'a Migration),
    /// An applied migration's file is gone.
    Missing(&'a Applied),
}

/// The history against the files.
#[derive(Debug, Clone)]
pub struct Comparison<'a> {
    /// Every file, in version order, with what the history says of it.
    pub files: Vec<(&'a Migration, FileState<'a>)>,
    /// Applied migrations with no file, by version.
    pub missing: Vec<&'a Applied>,
    /// The recorded migrations.
    pub applied: &'a [Applied],
}

impl<'a> Comparison<'a> {
    /// The files not applied yet, in the order apply runs them.
    pub fn pending(&self) -> Vec<&'a Migration> {
        self.files
            .iter()
            .filter(|(_, s)| *s == FileState::Pending)
            .map(|(m, _)| *m)
            .collect()
    }

    /// The first applied migration (by version) whose file changed or is
    /// gone: apply and plan refuse to go on past it.
    pub fn first_divergence(&self) -> Option<Divergence<'a>> {
        let changed = self.files.iter().filter_map(|(m, s)| match s {
            FileState::Changed(a) => Some(Divergence::Changed(a, m)),
            _ => None,
        });
        changed
            .chain(self.missing.iter().map(|a| Divergence::Missing(a)))
            .min_by_key(|d| match d {
                Divergence::Changed(a, _) | Divergence::Missing(a) => a.version,
            })
    }

    /// A recorded row refinery could not read back (it would stop the
    /// process), if any: refused before refinery reads it.
    pub fn unreadable(&self) -> Option<&'a Applied> {
        self.applied.iter().find(|a| !a.readable_by_refinery())
    }
}

/// The history `applied` against the migration `files`.
pub fn compare<'a>(applied: &'a [Applied], files: &'a [Migration]) -> Comparison<'a> {
    let files_state = files
        .iter()
        .map(|m| {
            let state = match applied.iter().find(|a| a.version == i64::from(m.version())) {
                None => FileState::Pending,
                Some(a) if a.matches(m) => FileState::Applied(a),
                Some(a) => FileState::Changed(a),
            };
            (m, state)
        })
        .collect();
    let missing = applied
        .iter()
        .filter(|a| !files.iter().any(|m| i64::from(m.version()) == a.version))
        .collect();
    Comparison {
        files: files_state,
        missing,
        applied,
    }
}

/// refinery's runner: every pending migration in one transaction, and the
/// history in `history` (schema-qualified).
pub fn runner(migrations: &[Migration], history: &str) -> Runner {
    let mut r = Runner::new(migrations)
        .set_grouped(true)
        .set_abort_divergent(true)
        .set_abort_missing(true);
    r.set_migration_table_name(history);
    r
}

/// Apply the pending `migrations` in one transaction, recorded in `history`.
pub fn apply_pending(
    client: &mut Client,
    migrations: &[Migration],
    history: &str,
) -> Result<(), DbError> {
    runner(migrations, history)
        .run(client)
        .map(|_| ())
        .map_err(|e| refinery_error(&e, migrations))
}

/// Explain a refinery failure: which migration, which statement, which SQLSTATE.
fn refinery_error(e: &refinery::Error, migrations: &[Migration]) -> DbError {
    use refinery::error::Kind;
    let what = match e.kind() {
        Kind::Connection(msg, _) => msg.clone(),
        other => other.to_string(),
    };
    let Some(pg) = find_pg_error(e) else {
        return DbError(format!(
            "applying the migrations failed: {what}; nothing was applied"
        ));
    };
    let mut s = format!("applying the migrations failed: {what}: {}", pg_message(pg));
    if let (Some(dbe), Some(m)) = (
        pg.as_db_error(),
        migrations.iter().find(|m| what.contains(&m.to_string())),
    ) {
        if let Some(postgres::error::ErrorPosition::Original(pos)) = dbe.position() {
            let sql = m.sql().unwrap_or_default();
            let upto: String = sql.chars().take(*pos as usize).collect();
            let line = upto.matches('\n').count() + 1;
            let text = sql.lines().nth(line - 1).unwrap_or("").trim();
            s.push_str(&format!("; at {m} line {line}: `{text}`"));
        }
    }
    s.push_str(". All pending migrations ran in one transaction, so nothing was applied; fix the cause and run apply again");
    DbError(s)
}
