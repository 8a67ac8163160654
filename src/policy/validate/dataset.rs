//! One dataset's own keys: its table, columns, retention and bounds,
//! expiry and archive, clock, tenant and environment columns, erasure,
//! sensitive keys, lock timeout — resolved into a `model::Dataset` with
//! every default filled in, or every error reported. No I/O here.

use crate::model::{
    Archive, ChangesApplyTo, Clock, Column, Dataset, Duration, Granularity, OnExpiry, Source,
    UniqueKeys, ARCHIVE_COLUMNS, DEFAULT_PARTITION_SUFFIX, STAMP_COLUMN,
};
use crate::policy::columns::{self, COLUMN_HELP};
use crate::policy::cron;
use crate::policy::spec::DatasetSpec;
use crate::policy::{At, ParsedFile};
use crate::ypath;

use super::{choices, free_text, is_ident, source, Ctx, IDENT_HELP};

/// Schemas pgretain must never create tables in.
const RESERVED_SCHEMAS: &[&str] = &[
    "pg_catalog",
    "information_schema",
    "pg_toast",
    "retention",
    "cron",
    "public_retention",
];

/// Longest table name: partition names add `_pYYYYMMDD` (10 bytes) within 63.
const MAX_TABLE_NAME: usize = 50;

/// `x_default` or `x_p20260101`: names pgretain gives partitions.
fn looks_like_partition(table: &str) -> bool {
    if table.ends_with(DEFAULT_PARTITION_SUFFIX) {
        return true;
    }
    match table.rsplit_once("_p") {
        Some((_, digits)) => digits.len() == 8 && digits.chars().all(|c| c.is_ascii_digit()),
        None => false,
    }
}

/// Longest dataset name: generated object names are `enforce_<name>` etc.
pub(super) const MAX_DATASET_NAME: usize = 40;

/// `Some(why)` when `keep` lies outside the dataset's [min_keep, max_keep]
/// for some row: bounds are compared as PostgreSQL applies intervals to a
/// row's time (`Fields::at_least`), so `1 month` is below a `min_keep` of
/// `30 days` (February rows), as the database's check of tenant settings
/// agrees.
pub(super) fn bounds(ds: &Dataset, keep: Duration) -> Option<String> {
    // "for some rows" when it depends on the row's month (`1 month` against
    // `30 days`); plainly below or above otherwise.
    let some = |always: bool| {
        if always {
            ""
        } else {
            " for some rows (months last 28 to 31 days)"
        }
    };
    if let Some(min) = ds.min_keep {
        if !keep.fields().at_least(&min.fields()) {
            let always = min.fields().at_least(&keep.fields());
            return Some(format!("is below `min_keep` ({min}){}", some(always)));
        }
    }
    if let Some(max) = ds.max_keep {
        if !max.fields().at_least(&keep.fields()) {
            let always = keep.fields().at_least(&max.fields());
            return Some(format!("is above `max_keep` ({max}){}", some(always)));
        }
    }
    None
}

pub(super) fn bounds_help(ds: &Dataset) -> String {
    let range = match (ds.min_keep, ds.max_keep) {
        (Some(a), Some(b)) => format!("between {a} and {b}"),
        (Some(a), None) => format!("at least {a}"),
        (None, Some(b)) => format!("at most {b}"),
        (None, None) => String::new(),
    };
    format!("choose a retention {range} for dataset `{}`, or widen its bounds (a retention in months and a bound in days compare for the shortest and longest months: write both in the same unit)", ds.name)
}

/// Validate one dataset; `None` when it has errors (already reported).
pub(super) fn dataset(
    cx: &mut Ctx,
    f: &ParsedFile,
    name: &str,
    s: &DatasetSpec,
    envs: &[String],
) -> Option<Dataset> {
    let src = &f.src;
    let p = |k: &str| ypath!["datasets", name, k];
    let before = cx.diags.len();
    let what = format!("dataset `{name}`");

    let name_ok = name.len() <= MAX_DATASET_NAME
        && matches!(name.chars().next(), Some('a'..='z'))
        && name
            .chars()
            .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'));
    if !name_ok {
        let mut example: String = name
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(MAX_DATASET_NAME)
            .collect();
        if !matches!(example.chars().next(), Some('a'..='z')) {
            example = "conversations".into();
        }
        let why = if name.len() > MAX_DATASET_NAME {
            format!("is longer than {MAX_DATASET_NAME} characters")
        } else {
            "is not lowercase letters, digits and `_` starting with a letter".into()
        };
        cx.err(
            src,
            &ypath!["datasets", name],
            At::Key,
            format!("dataset name `{name}` {why}"),
            &format!(
                "use `[a-z][a-z0-9_]*`, at most {MAX_DATASET_NAME} characters, e.g. `{example}`"
            ),
        );
    }
    // Keys whose error was reported while parsing (missing, wrong type).
    let reported = |k: &str| f.was_reported(&p(k));
    if s.description.trim().is_empty() && !reported("description") {
        cx.err(
            src,
            &p("description"),
            At::Value,
            format!("{what} has an empty `description`"),
            "say in a sentence what the data is; reports show it to auditors",
        );
    }
    for (key, text) in [
        ("description", Some(&s.description)),
        ("owner", s.owner.as_ref()),
        ("legal_basis", s.legal_basis.as_ref()),
    ] {
        if let Some(text) = text {
            free_text(cx, src, &p(key), &format!("{what}: `{key}`"), text);
        }
    }

    // Table.
    let (schema, table) = match s.table.split_once('.') {
        _ if reported("table") => (String::new(), String::new()),
        None if is_ident(&s.table) => {
            cx.err(
                src,
                &p("table"),
                At::Value,
                format!("{what}: `table` `{}` names no schema", s.table),
                &format!(
                    "write `schema.table`, e.g. `app.{}`; pgretain never relies on the search path",
                    s.table
                ),
            );
            (String::new(), String::new())
        }
        Some((a, b)) if is_ident(a) && is_ident(b) => {
            if RESERVED_SCHEMAS.contains(&a) || a.starts_with("pg_") {
                cx.err(
                    src,
                    &p("table"),
                    At::Value,
                    format!("{what}: schema `{a}` is reserved"),
                    "put the table in an application schema, e.g. `app.conversations`",
                );
            }
            // pgretain names the table's partitions `<table>_pYYYYMMDD` and
            // `<table>_default`: keep those within PostgreSQL's 63-byte
            // identifiers, and never let a table look like another's partition.
            if b.len() > MAX_TABLE_NAME {
                cx.err(
                    src,
                    &p("table"),
                    At::Value,
                    format!("{what}: table name `{b}` is longer than {MAX_TABLE_NAME} characters"),
                    "shorten it: pgretain adds `_pYYYYMMDD` and `_default` for partition names, which PostgreSQL limits to 63 bytes",
                );
            } else if looks_like_partition(b) {
                cx.err(
                    src,
                    &p("table"),
                    At::Value,
                    format!("{what}: table name `{b}` looks like the name of a pgretain partition"),
                    "choose a name that does not end in `_default` or `_p` followed by eight digits",
                );
            }
            (a.to_string(), b.to_string())
        }
        _ => {
            cx.err(
                src,
                &p("table"),
                At::Value,
                format!(
                    "{what}: `table` `{}` is not a schema-qualified SQL identifier",
                    s.table
                ),
                &format!("write `schema.table`, e.g. `app.{name}`; {IDENT_HELP}"),
            );
            (String::new(), String::new())
        }
    };

    // Columns.
    let mut columns: Option<Vec<Column>> = None;
    if let Some(cols) = &s.columns {
        let mut out = Vec::new();
        if cols.is_empty() {
            cx.err(
                src,
                &p("columns"),
                At::Key,
                format!("{what} has an empty `columns`"),
                "list the table's columns, or omit `columns` to use an existing table",
            );
        }
        for (cname, def) in cols {
            let cpath = ypath!["datasets", name, "columns", cname];
            if !is_ident(cname) {
                cx.err(
                    src,
                    &cpath,
                    At::Key,
                    format!("{what}: column name `{cname}` is not a valid SQL identifier"),
                    IDENT_HELP,
                );
                continue;
            }
            if cname == STAMP_COLUMN {
                cx.err(src, &cpath, At::Key, format!("{what}: column name `{STAMP_COLUMN}` is reserved for pgretain's retention stamp"), "rename the column");
                continue;
            }
            if ARCHIVE_COLUMNS.contains(&cname.as_str()) && s.on_expiry == Some(OnExpiry::Archive) {
                cx.err(src, &cpath, At::Key, format!("{what}: column name `{cname}` is reserved: the archive table adds it to every archived row"), "rename the column");
                continue;
            }
            match columns::parse(def) {
                Ok(ty) => out.push(Column {
                    name: cname.clone(),
                    ty,
                }),
                Err(why) => cx.err(
                    src,
                    &cpath,
                    At::Value,
                    format!("{what}: column `{cname}` definition `{def}` {why}"),
                    COLUMN_HELP,
                ),
            }
        }
        columns = Some(out);
    }
    let declared: Vec<&str> = s
        .columns
        .as_ref()
        .map(|c| c.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let col_type = |c: &str| {
        columns
            .as_ref()
            .and_then(|cs| cs.iter().find(|x| x.name == c))
            .map(|x| x.ty.clone())
    };
    let check_col = |cx: &mut Ctx, key: &str, col: &str| -> bool {
        if !is_ident(col) {
            cx.err(
                src,
                &p(key),
                At::Value,
                format!("{what}: `{key}` `{col}` is not a valid SQL identifier"),
                IDENT_HELP,
            );
            return false;
        }
        // (An empty `columns` is reported once, not once per column named.)
        if s.columns.is_some() && !declared.is_empty() && !declared.contains(&col) {
            cx.err(
                src,
                &p(key),
                At::Value,
                format!("{what}: `{key}` names column `{col}`, which is not in `columns`"),
                &format!(
                    "name one of the declared columns: {}",
                    choices(col, &declared)
                ),
            );
            return false;
        }
        true
    };
    let mut time_ok = !reported("time") && check_col(cx, "time", &s.time);
    let mut clock = None;
    if time_ok {
        if let Some(ty) = col_type(&s.time) {
            clock = ty.clock();
            time_ok = clock.is_some() && ty.not_null;
            if clock.is_none() {
                cx.err(src, &p("time"), At::Value, format!("{what}: the time column `{}` is `{}`, not a timestamp", s.time, ty.sql_type), "the retention clock must be a `timestamptz` (an instant), `timestamp` or `date` column, e.g. `created_at: timestamptz not null default now()`");
            } else if !ty.not_null {
                cx.err(src, &p("time"), At::Value, format!("{what}: the time column `{}` may be null, and a row without a time never expires", s.time), &format!("declare it `not null`, e.g. `{}: {} not null{}`", s.time, ty.sql_type, if clock == Some(Clock::Timestamptz) { " default now()" } else { "" }));
            } else if clock != Some(Clock::Timestamptz)
                && ty.default.as_deref().is_some_and(|d| d.ends_with("()"))
            {
                // now() into a timestamp or date is the session's local time:
                // the same instant would get a different clock value (and
                // deadline) for each TimeZone an application connects with.
                time_ok = false;
                cx.err(src, &p("time"), At::Value, format!("{what}: the time column `{}` is a `{}` with `default {}`, which writes the session's local time: rows inserted under different TimeZone settings would get different deadlines", s.time, ty.sql_type, ty.default.as_deref().unwrap_or_default()), &format!("make it `{}: timestamptz not null default now()` (an instant), or drop the default and have the application write the time in the dataset's `time_zone`", s.time));
            }
        }
    }
    if s.columns.is_some() && s.unique_keys.is_some() && !reported("unique_keys") {
        cx.err(
            src,
            &p("unique_keys"),
            At::Key,
            format!("{what}: `unique_keys` is set, but pgretain creates this table (it has `columns`), with no unique key of its own"),
            "remove `unique_keys` (it is only for an existing table, a dataset without `columns`)",
        );
    }
    if s.columns.is_none()
        && s.changes_apply_to == Some(ChangesApplyTo::NewRows)
        && !reported("changes_apply_to")
    {
        cx.err(
            src,
            &p("changes_apply_to"),
            At::Value,
            format!("{what}: `changes_apply_to: new_rows` needs a stamped retention on every row, which an existing table's rows do not have yet"),
            "use `changes_apply_to: all_rows` (the default) for an existing table, or declare `columns` so pgretain creates the table",
        );
    }
    if let (Some(zone), false) = (&s.time_zone, reported("time_zone")) {
        if clock == Some(Clock::Timestamptz) {
            cx.err(
                src,
                &p("time_zone"),
                At::Key,
                format!("{what}: `time_zone` is set, but the time column `{}` is a `timestamptz`, an instant that needs no zone", s.time),
                "remove `time_zone` (it is only for `timestamp` and `date` clocks, whose values are wall times)",
            );
        } else if !is_time_zone(zone) {
            cx.err(
                src,
                &p("time_zone"),
                At::Value,
                format!("{what}: `time_zone` is `{zone}`, which is not a time zone name"),
                "write an IANA time zone name, e.g. `UTC`, `Europe/Paris` or `America/New_York`",
            );
        }
    }
    for (key, val) in [
        ("tenant", &s.tenant),
        ("environment", &s.environment),
        ("erase_by", &s.erase_by),
    ] {
        if let Some(col) = val {
            if check_col(cx, key, col) && time_ok && col == &s.time {
                let holds = match key {
                    "tenant" => "the tenant (e.g. `bot_id`)",
                    "environment" => "the environment (e.g. `environment`)",
                    _ => "the key `pgretain erase` removes rows by (e.g. `conversation_id`)",
                };
                cx.err(
                    src,
                    &p(key),
                    At::Value,
                    format!("{what}: `{key}` names the time column `{col}`"),
                    &format!("name the column that holds {holds}"),
                );
            }
        }
    }
    if s.environment.is_some() && envs.is_empty() {
        // Allowed: without a declared list, any environment value is stored,
        // but overrides and holds cannot name environments.
    }

    // Retention.
    let keep = if reported("keep") {
        None
    } else {
        cx.duration(src, &p("keep"), &s.keep, &format!("{what}: `keep`"))
    };
    let min_keep = s
        .min_keep
        .as_ref()
        .and_then(|t| cx.duration(src, &p("min_keep"), t, &format!("{what}: `min_keep`")));
    let max_keep = s
        .max_keep
        .as_ref()
        .and_then(|t| cx.duration(src, &p("max_keep"), t, &format!("{what}: `max_keep`")));
    if let (Some(a), Some(b)) = (min_keep, max_keep) {
        if !b.fields().at_least(&a.fields()) {
            cx.err(
                src,
                &p("min_keep"),
                At::Value,
                format!(
                    "{what}: `min_keep` ({a}) is above `max_keep` ({b}){}",
                    if a.fields().at_least(&b.fields()) {
                        ""
                    } else {
                        " for some rows (months last 28 to 31 days)"
                    }
                ),
                "make `min_keep` at most `max_keep`",
            );
        }
    }
    if (s.min_keep.is_some() || s.max_keep.is_some())
        && s.tenant.is_none()
        && s.environment.is_none()
        && !reported("tenant")
        && !reported("environment")
    {
        cx.err(src, &p(if s.min_keep.is_some() { "min_keep" } else { "max_keep" }), At::Key, format!("{what} sets bounds but has neither a `tenant` nor an `environment` column, so nothing can vary its retention"), "declare `tenant:` (for per-tenant settings) or remove `min_keep` / `max_keep`");
    }
    let bounds_ok =
        !matches!((min_keep, max_keep), (Some(a), Some(b)) if !b.fields().at_least(&a.fields()));
    if let (Some(k), true) = (keep, bounds_ok) {
        let tmp = Dataset {
            min_keep,
            max_keep,
            ..placeholder(name)
        };
        if let Some(msg) = bounds(&tmp, k) {
            cx.err(
                src,
                &p("keep"),
                At::Value,
                format!("{what}: `keep` ({k}) {msg}"),
                &bounds_help(&tmp),
            );
        }
    }

    // Expiry.
    let on_expiry = s.on_expiry.unwrap_or(OnExpiry::Delete);
    let archive = match (&s.archive, on_expiry) {
        // One of the two had an error already: their pairing is unknown.
        _ if reported("on_expiry") || reported("archive") => None,
        (Some(_), OnExpiry::Delete) => {
            cx.err(
                src,
                &p("archive"),
                At::Key,
                format!("{what} has `archive` settings but does not archive"),
                "add `on_expiry: archive`, or remove `archive`",
            );
            None
        }
        (None, OnExpiry::Archive) => {
            cx.err(
                src,
                &p("on_expiry"),
                At::Value,
                format!("{what} archives but says nothing of how long the archive keeps rows"),
                "add `archive: { schema: archive, keep: 1 year }`",
            );
            None
        }
        (Some(a), OnExpiry::Archive) => {
            let apath = ypath!["datasets", name, "archive", "schema"];
            let schema_name = a.schema.clone().unwrap_or_else(|| "archive".into());
            if !is_ident(&schema_name)
                || RESERVED_SCHEMAS.contains(&schema_name.as_str())
                || schema_name.starts_with("pg_")
            {
                cx.err(src, &apath, At::Value, format!("{what}: archive schema `{schema_name}` is not a valid, unreserved SQL identifier"), IDENT_HELP);
            } else if schema_name == schema {
                cx.err(
                    src,
                    &apath,
                    At::Value,
                    format!("{what}: the archive schema is the table's own schema `{schema}`"),
                    "use a separate schema for archives, e.g. `archive`",
                );
            }
            let akeep = cx.duration(
                src,
                &ypath!["datasets", name, "archive", "keep"],
                &a.keep,
                &format!("{what}: `archive.keep`"),
            );
            akeep.map(|k| Archive {
                schema: schema_name,
                keep: k,
            })
        }
        (None, OnExpiry::Delete) => None,
    };

    // Sensitive keys.
    let mut sensitive = Vec::new();
    if let Some(map) = &s.sensitive {
        for (col, keys) in map {
            let spath = ypath!["datasets", name, "sensitive", col];
            if !is_ident(col) {
                cx.err(
                    src,
                    &spath,
                    At::Key,
                    format!("{what}: sensitive column `{col}` is not a valid SQL identifier"),
                    IDENT_HELP,
                );
                continue;
            }
            if s.columns.is_some() && !declared.is_empty() && !declared.contains(&col.as_str()) {
                cx.err(
                    src,
                    &spath,
                    At::Key,
                    format!("{what}: sensitive column `{col}` is not in `columns`"),
                    &{
                        let json: Vec<&str> = columns
                            .iter()
                            .flatten()
                            .filter(|c| c.ty.is_json())
                            .map(|c| c.name.as_str())
                            .collect();
                        if json.is_empty() {
                            "name a declared json or jsonb column; this dataset declares none"
                                .to_string()
                        } else {
                            format!(
                                "name a declared json or jsonb column: {}",
                                choices(col, &json)
                            )
                        }
                    },
                );
                continue;
            }
            if let Some(ty) = col_type(col) {
                if !ty.is_json() {
                    cx.err(src, &spath, At::Key, format!("{what}: sensitive column `{col}` is `{}`; only json and jsonb keys can be stripped", ty.sql_type), "make the column `jsonb`, or remove it from `sensitive`");
                    continue;
                }
            }
            if keys.is_empty() {
                cx.err(
                    src,
                    &spath,
                    At::Value,
                    format!("{what}: sensitive column `{col}` lists no keys"),
                    "list the JSON keys never to store, e.g. `[password, iban]`",
                );
            }
            for (j, k) in keys.iter().enumerate() {
                if k.is_empty() || k.contains('\0') {
                    cx.err(
                        src,
                        &ypath!["datasets", name, "sensitive", col, j],
                        At::Value,
                        format!("{what}: sensitive key #{} of `{col}` is empty or holds a NUL character", j + 1),
                        "write the JSON key's name, e.g. `password`",
                    );
                }
            }
            sensitive.push((col.clone(), keys.clone()));
        }
    }

    let mut lock_timeout_ms = crate::model::default_lock_timeout_ms();
    if let Some(text) = &s.lock_timeout {
        match lock_timeout(text) {
            Some(ms) => lock_timeout_ms = ms,
            None => cx.err(
                src,
                &p("lock_timeout"),
                At::Value,
                format!("{what}: `lock_timeout` `{}` is not a lock timeout between 1 millisecond and 10 minutes", text.trim()),
                "write a whole number of milliseconds or seconds, e.g. `5 seconds` or `500 milliseconds`",
            ),
        }
    }

    if cx.diags.len() > before || f.reported_under(&ypath!["datasets", name]) {
        return None;
    }
    let keep = keep?;
    let partition = s.partition.unwrap_or(Granularity::default_for(keep));
    Some(Dataset {
        name: name.to_string(),
        description: s.description.clone(),
        owner: s.owner.clone(),
        legal_basis: s.legal_basis.clone(),
        schema,
        table,
        columns,
        time: s.time.clone(),
        time_zone: s
            .time_zone
            .clone()
            .filter(|z| clock != Some(Clock::Timestamptz) && z != "UTC"),
        tenant: s.tenant.clone(),
        environment: s.environment.clone(),
        keep,
        min_keep,
        max_keep,
        partition,
        on_expiry,
        archive,
        sliding: s.sliding.unwrap_or(false),
        changes_apply_to: s.changes_apply_to.unwrap_or(ChangesApplyTo::AllRows),
        unique_keys: s.unique_keys.unwrap_or_default(),
        erase_by: s.erase_by.clone(),
        sensitive,
        schedule: f
            .schedule
            .clone()
            .unwrap_or_else(|| cron::DEFAULT_SCHEDULE.to_string())
            .trim()
            .to_string(),
        source: source(src, &ypath!["datasets", name]),
        keep_source: source(src, &p("keep")),
        lock_timeout_ms,
    })
}

/// An IANA time zone name PostgreSQL knows (its tz database is the same).
fn is_time_zone(name: &str) -> bool {
    name.parse::<chrono_tz::Tz>().is_ok()
}

/// `5 seconds`, `500 ms` → milliseconds, within 1 ms ..= 10 minutes.
fn lock_timeout(text: &str) -> Option<u32> {
    let mut parts = text.split_whitespace();
    let (Some(num), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let n: u64 = num.parse().ok()?;
    let ms = match unit.to_ascii_lowercase().as_str() {
        "millisecond" | "milliseconds" | "ms" => n,
        "second" | "seconds" | "s" => n.checked_mul(1000)?,
        _ => return None,
    };
    (1..=600_000).contains(&ms).then_some(ms as u32)
}

/// A dataset with nothing set, for bounds checks before the real one exists.
fn placeholder(name: &str) -> Dataset {
    Dataset {
        name: name.to_string(),
        description: String::new(),
        owner: None,
        legal_basis: None,
        schema: String::new(),
        table: String::new(),
        columns: None,
        time: String::new(),
        time_zone: None,
        unique_keys: UniqueKeys::Refuse,
        tenant: None,
        environment: None,
        keep: Duration {
            n: 1,
            unit: crate::model::Unit::Day,
        },
        min_keep: None,
        max_keep: None,
        partition: Granularity::Day,
        on_expiry: OnExpiry::Delete,
        archive: None,
        sliding: false,
        changes_apply_to: ChangesApplyTo::AllRows,
        erase_by: None,
        sensitive: Vec::new(),
        schedule: String::new(),
        lock_timeout_ms: crate::model::default_lock_timeout_ms(),
        source: Source {
            file: String::new(),
            line: 0,
        },
        keep_source: Source {
            file: String::new(),
            line: 0,
        },
    }
}
