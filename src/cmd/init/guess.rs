//! What `pgretain init` guesses from a table's shape: the retention clock,
//! the tenant and environment columns, the default retention, and the
//! unique keys that do not include the clock; or why the table cannot be a
//! dataset. Pure: the catalog rows come in, the guesses go out, each with
//! the reason the stub's comments show.

use crate::db::introspect::{ClockType, ColumnRow, RelationRow, UniqueKeyRow};

/// The placeholder description of a table without a comment.
pub const TODO_DESCRIPTION: &str = "TODO: what this data is";

/// Longest dataset name (the policy's limit).
const MAX_DATASET_NAME: usize = 40;

/// Names that say when a row was created (or the event it records
/// happened), best first.
const INSERT_TIME: &[&str] = &[
    "created_at",
    "inserted_at",
    "created_on",
    "created",
    "creation_date",
    "creation_time",
    "create_time",
    "created_date",
    "created_time",
    "date_created",
    "inserted_on",
    "added_at",
    "added_on",
    "timestamp",
    "ts",
    "time",
    "occurred_at",
    "happened_at",
    "logged_at",
    "recorded_at",
    "event_time",
    "sent_at",
    "received_at",
    "started_at",
    "start_time",
    "date",
];

/// Words in the names of times that change after a row is written, or are
/// not when it was written: a poor clock without `sliding: true`.
const CHANGING_WORDS: &[&str] = &[
    "updated", "modified", "changed", "deleted", "archived", "expire", "last_", "seen",
];

/// Tenant column names, best first.
pub const TENANT_NAMES: &[&str] = &[
    "tenant_id",
    "account_id",
    "organization_id",
    "organisation_id",
    "org_id",
    "workspace_id",
    "team_id",
    "company_id",
    "customer_id",
    "bot_id",
    "project_id",
];

/// Environment column names, best first.
pub const ENVIRONMENT_NAMES: &[&str] = &["environment", "env"];

/// A lowercase SQL identifier, as the policy language accepts them.
pub fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && s.len() <= 63
}

/// A TABLE argument: `schema.table`, both lowercase identifiers.
pub fn parse_table(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('.') {
        Some((s, t)) if is_ident(s) && is_ident(t) => Ok((s.to_string(), t.to_string())),
        Some(_) => Err(format!(
            "error: `{}` is not a table pgretain can adopt: write `schema.table` in lowercase letters, digits and `_` (pgretain refuses names that need quoting; rename the table, e.g. `ALTER TABLE \"Messages\" RENAME TO messages`)",
            arg.escape_debug()
        )),
        None => Err(format!(
            "error: table `{}` names no schema: write `schema.table`, e.g. `public.{}` (pgretain never relies on the search path)",
            arg.escape_debug(),
            arg.escape_debug()
        )),
    }
}

/// A dataset name for each table (`[a-z][a-z0-9_]*`, at most 40
/// characters, unique): the table's name; `schema_table` for tables whose
/// names are alike; a number after it if still taken.
pub fn dataset_names(tables: &[(String, String)]) -> Vec<String> {
    let base: Vec<String> = tables.iter().map(|(_, t)| dataset_name(t)).collect();
    let mut out: Vec<String> = Vec::with_capacity(tables.len());
    for (i, (schema, table)) in tables.iter().enumerate() {
        let shared = base.iter().filter(|b| **b == base[i]).count() > 1;
        let mut name = if shared {
            dataset_name(&format!("{schema}_{table}"))
        } else {
            base[i].clone()
        };
        let stem = name.clone();
        let mut n = 2;
        while out.contains(&name) {
            let suffix = format!("_{n}");
            let keep = MAX_DATASET_NAME - suffix.len();
            let cut: String = stem.chars().take(keep).collect();
            name = format!("{}{suffix}", cut.trim_end_matches('_'));
            n += 1;
        }
        out.push(name);
    }
    out
}

/// `_events` → `events`, `_2024_log` → `t_2024_log`, at most 40 characters.
fn dataset_name(table: &str) -> String {
    let trimmed = table.trim_start_matches('_');
    let name = match trimmed.chars().next() {
        None => "t".to_string(),
        Some(c) if c.is_ascii_lowercase() => trimmed.to_string(),
        Some(_) => format!("t_{trimmed}"),
    };
    let cut: String = name.chars().take(MAX_DATASET_NAME).collect();
    cut.trim_end_matches('_').to_string()
}

/// The retention clock chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    pub column: String,
    pub clock: ClockType,
    pub not_null: bool,
    /// Why this column: "named for when a row was created".
    pub why: String,
    /// The other columns that could be the clock, best first, each with a
    /// note when it may be NULL.
    pub others: Vec<String>,
    /// Clock-typed columns whose names pgretain cannot use (they need quoting).
    pub unusable: Vec<String>,
}

/// A tenant or environment column chosen by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub column: String,
    pub sql_type: String,
    pub not_null: bool,
    /// Other columns with a name from the same list.
    pub others: Vec<String>,
}

/// Everything the stub says about one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guess {
    /// `schema.table`.
    pub table: String,
    /// The table's comment, when it has one that is not blank.
    pub comment: Option<String>,
    pub time: Clock,
    pub tenant: Option<Named>,
    pub environment: Option<Named>,
    /// The name says sessions: the seed's 30-day default.
    pub sessions: bool,
    /// The unique keys without the clock, in words: "the primary key (id)".
    pub keys_without_time: Vec<String>,
    /// For sessions: a NOT NULL `last_…` column, the seed's sliding clock
    /// (sessions expire after their last activity).
    pub activity: Option<String>,
}

impl Guess {
    /// The description the stub writes.
    pub fn description(&self) -> &str {
        self.comment.as_deref().unwrap_or(TODO_DESCRIPTION)
    }

    /// The default retention the stub writes.
    pub fn keep(&self) -> &'static str {
        if self.sessions {
            "30 days"
        } else {
            "365 days"
        }
    }
}

/// How a clock type reads in a comment.
pub fn clock_words(c: ClockType) -> &'static str {
    match c {
        ClockType::Timestamptz => "timestamptz",
        ClockType::Timestamp => "timestamp (without time zone)",
        ClockType::Date => "date",
    }
}

/// How good a clock a column's name makes: (group, tier), lower is better.
/// 0: named for when the row was written; 1: another time (`*_at`,
/// `*_on`, `*_date`, `*_time`); 2: a time that changes; 3: anything else.
fn rank(name: &str) -> (u8, usize) {
    if let Some(i) = INSERT_TIME.iter().position(|n| *n == name) {
        return (0, i);
    }
    if CHANGING_WORDS.iter().any(|w| name.contains(w)) {
        return (2, 0);
    }
    if ["_at", "_on", "_date", "_time", "_ts"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        return (1, 0);
    }
    (3, 0)
}

fn why(group: u8) -> &'static str {
    match group {
        0 => "named for when a row was written",
        1 => "named like a time, and no column is named for when a row was written (created_at, inserted_at, timestamp, …)",
        2 => "the only clock-typed columns are named like times that change after a row is written (updated_at, last_…): a row's deadline would move with them; prefer a creation time, or add `sliding: true` if expiry should count from the latest change",
        _ => "the only column of a clock type; nothing is named like a time",
    }
}

fn with_null_note(c: &ColumnRow) -> String {
    if c.not_null {
        c.name.clone()
    } else {
        format!("{} (may be NULL)", c.name)
    }
}

/// Guess the dataset of one table, or say why it cannot be one (the
/// message of an invalid-input error).
pub fn guess(rel: &RelationRow) -> Result<Guess, String> {
    let table = format!("{}.{}", rel.schema, rel.name);
    let shown = table.escape_debug().to_string();
    if let Some(parent) = &rel.partition_of {
        return Err(format!(
            "error: table `{shown}` is a partition of `{}`: name the partitioned table instead",
            parent.escape_debug()
        ));
    }
    let kind = match rel.kind.as_str() {
        "r" | "p" => None,
        "v" => Some("a view"),
        "m" => Some("a materialized view"),
        "f" => Some("a foreign table"),
        "S" => Some("a sequence"),
        "i" | "I" => Some("an index"),
        "c" => Some("a composite type"),
        _ => Some("not a table"),
    };
    if let Some(kind) = kind {
        return Err(format!(
            "error: `{shown}` is {kind}, not a table: pgretain enforces retention on tables"
        ));
    }
    let clocks: Vec<&ColumnRow> = rel.columns.iter().filter(|c| c.clock.is_some()).collect();
    let (usable, unusable): (Vec<&ColumnRow>, Vec<&ColumnRow>) =
        clocks.iter().partition(|c| is_ident(&c.name));
    let unusable: Vec<String> = unusable
        .iter()
        .map(|c| c.name.escape_debug().to_string())
        .collect();
    if usable.is_empty() {
        return Err(if unusable.is_empty() {
            format!(
                "error: table `{shown}` has no timestamptz, timestamp or date column, so it has no retention clock: add one (e.g. `created_at timestamptz not null default now()`) or leave the table out"
            )
        } else {
            format!(
                "error: table `{shown}` has no clock column pgretain can use: {} need quoting (pgretain refuses names with capitals, spaces or other characters); rename one, e.g. `ALTER TABLE {shown} RENAME COLUMN \"{}\" TO created_at`",
                unusable.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                unusable[0]
            )
        });
    }
    let mut ranked = usable.clone();
    ranked.sort_by_key(|c| {
        let (g, t) = rank(&c.name);
        (g, !c.not_null, t)
    });
    // A table already range-partitioned on one clock column: that column.
    let partitioned_on = match &rel.partition_key {
        None => None,
        Some(k) => match (k.strategy.as_str(), k.columns.as_slice()) {
            ("r", [Some(c)]) if usable.iter().any(|u| &u.name == c) => Some(c.clone()),
            _ => {
                let how = match k.strategy.as_str() {
                    "r" => "range",
                    "l" => "list",
                    "h" => "hash",
                    _ => "another strategy",
                };
                let on: Vec<String> = k
                    .columns
                    .iter()
                    .map(|c| {
                        c.as_deref()
                            .unwrap_or("an expression")
                            .escape_debug()
                            .to_string()
                    })
                    .collect();
                return Err(format!(
                    "error: table `{shown}` is partitioned by {how} on {}, and pgretain adopts only tables range-partitioned on one timestamptz, timestamp or date column",
                    on.join(", ")
                ));
            }
        },
    };
    let chosen = match &partitioned_on {
        Some(c) => ranked.iter().position(|r| &r.name == c).unwrap_or(0),
        None => 0,
    };
    let best = ranked[chosen];
    let mut reason = match &partitioned_on {
        Some(_) => "the table is already range-partitioned on it".to_string(),
        None => why(rank(&best.name).0).to_string(),
    };
    if !best.not_null {
        reason.push_str(
            "; it may be NULL, and adoption refuses a clock that may be NULL: make it NOT NULL first",
        );
    }
    let others = ranked
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != chosen)
        .map(|(_, c)| with_null_note(c))
        .collect();
    let time = Clock {
        column: best.name.clone(),
        clock: best.clock.unwrap_or(ClockType::Timestamptz),
        not_null: best.not_null,
        why: reason,
        others,
        unusable,
    };
    let named = |names: &[&str]| -> Option<Named> {
        let found: Vec<&ColumnRow> = names
            .iter()
            .filter_map(|n| rel.columns.iter().find(|c| c.name == *n))
            .filter(|c| c.name != time.column)
            .collect();
        let first = found.first()?;
        Some(Named {
            column: first.name.clone(),
            sql_type: first.sql_type.clone(),
            not_null: first.not_null,
            others: found[1..].iter().map(|c| c.name.clone()).collect(),
        })
    };
    let keys_without_time = rel
        .unique_keys
        .iter()
        .filter(|k| !k.columns.iter().any(|c| c.as_deref() == Some(&time.column)))
        .map(key_words)
        .collect();
    let sessions = rel.name.contains("session");
    let activity = ranked
        .iter()
        .find(|c| sessions && c.not_null && c.name != time.column && c.name.starts_with("last_"))
        .map(|c| c.name.clone());
    Ok(Guess {
        activity,
        sessions,
        comment: rel.comment.clone().filter(|c| !c.trim().is_empty()),
        tenant: named(TENANT_NAMES),
        environment: named(ENVIRONMENT_NAMES),
        keys_without_time,
        time,
        table,
    })
}

/// "the primary key (id)", "the unique index index_users_on_email (email)".
fn key_words(k: &UniqueKeyRow) -> String {
    let cols: Vec<&str> = k
        .columns
        .iter()
        .map(|c| c.as_deref().unwrap_or("an expression"))
        .collect();
    let what = if k.primary {
        "the primary key".to_string()
    } else if k.constraint {
        format!("the unique constraint {}", k.name)
    } else {
        format!("the unique index {}", k.name)
    };
    format!("{what} ({})", cols.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, clock: Option<ClockType>, not_null: bool) -> ColumnRow {
        ColumnRow {
            name: name.into(),
            sql_type: "x".into(),
            clock,
            not_null,
        }
    }

    fn rel(columns: Vec<ColumnRow>) -> RelationRow {
        RelationRow {
            schema: "public".into(),
            name: "things".into(),
            kind: "r".into(),
            partition_of: None,
            comment: None,
            columns,
            unique_keys: Vec::new(),
            partition_key: None,
        }
    }

    const TS: Option<ClockType> = Some(ClockType::Timestamp);

    #[test]
    fn created_at_beats_a_not_null_updated_at_and_other_times() {
        let r = rel(vec![
            col("updated_at", TS, true),
            col("sent_on", TS, true),
            col("created_at", TS, false),
        ]);
        let g = guess(&r).unwrap();
        assert_eq!(g.time.column, "created_at");
        assert!(g.time.why.contains("may be NULL"));
        assert_eq!(g.time.others, ["sent_on", "updated_at"]);
    }

    #[test]
    fn not_null_wins_within_a_group_and_unusable_names_are_listed() {
        let r = rel(vec![
            col("createdAt", TS, true),
            col("inserted_at", TS, false),
            col("occurred_at", TS, true),
        ]);
        let g = guess(&r).unwrap();
        assert_eq!(g.time.column, "occurred_at");
        assert_eq!(g.time.others, ["inserted_at (may be NULL)"]);
        assert_eq!(g.time.unusable, ["createdAt"]);
    }

    #[test]
    fn no_clock_and_only_unusable_clocks_are_refused() {
        let e = guess(&rel(vec![col("id", None, true)])).unwrap_err();
        assert!(
            e.contains("public.things") && e.contains("no timestamptz"),
            "{e}"
        );
        let e = guess(&rel(vec![col("createdAt", TS, true)])).unwrap_err();
        assert!(
            e.contains("`createdAt`") && e.contains("need quoting"),
            "{e}"
        );
    }

    #[test]
    fn tenant_and_environment_by_name() {
        let r = rel(vec![
            col("created_at", TS, true),
            col("bot_id", None, true),
            col("account_id", None, true),
            col("env", None, false),
        ]);
        let g = guess(&r).unwrap();
        let t = g.tenant.unwrap();
        assert_eq!(
            (t.column.as_str(), t.others.as_slice()),
            ("account_id", &["bot_id".to_string()][..])
        );
        assert_eq!(g.environment.unwrap().column, "env");
    }

    #[test]
    fn dataset_names_are_valid_and_unique() {
        let t = |s: &str, n: &str| (s.to_string(), n.to_string());
        let long = "a".repeat(50);
        let names = dataset_names(&[
            t("public", "messages"),
            t("app", "messages"),
            t("public", "_1x"),
            t("public", &long),
            t("other", &long),
            t("public", "users"),
        ]);
        let want: Vec<String> = vec![
            "public_messages".into(),
            "app_messages".into(),
            "t_1x".into(),
            format!("public_{}", "a".repeat(33)),
            format!("other_{}", "a".repeat(34)),
            "users".into(),
        ];
        assert_eq!(names, want);
        assert_eq!(
            dataset_names(&[
                t("a", "b"),
                t("c", "b"),
                t("z", "a_b"),
                t("z", "_x"),
                t("z", "_")
            ]),
            ["a_b", "c_b", "a_b_2", "x", "t"]
        );
    }

    #[test]
    fn table_arguments() {
        assert_eq!(
            parse_table("public.messages").unwrap(),
            ("public".to_string(), "messages".to_string())
        );
        assert!(parse_table("messages")
            .unwrap_err()
            .contains("names no schema"));
        assert!(parse_table("public.Messages")
            .unwrap_err()
            .contains("lowercase"));
        assert!(parse_table("a.b.c").is_err());
    }
}
