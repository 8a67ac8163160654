//! `pgretain plan`: what `apply` would change, and how many rows the next
//! enforcement run would remove per dataset (SPEC §5).
//!
//! Read-only towards the database: the pending migrations (the files in
//! `generated/` missing from refinery's history table) are executed inside
//! one transaction that is always rolled back. In that transaction the rows
//! of every `retention.expired_<dataset>` view are counted twice, under the
//! current state and after the pending migrations, so the second count is
//! exactly what a run starting at the same moment under the new policy
//! would remove. While the counts run, the transaction holds the locks the
//! migrations took; lock waits are bounded (`lock_timeout`), every count by
//! the rows it may read (`db::expired::EXAMINE_BUDGET`, past which it is an
//! estimate) and by `--count-timeout`, after which the estimate from the
//! catalog alone is reported instead; estimates are labelled as such.
//! Nothing here writes files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::Transaction;
use serde::Serialize;

use super::{exit, Failure, Outcome};
use crate::db::catalog::{self, Interval};
use crate::db::history::{self, Divergence};
use crate::db::rehearsal::{self, ExpiredCount};
use crate::db::{connect, session, DbError};
use crate::generated::{self, STATE_FILE};
use crate::words::{join_words, plural, seconds, thousands};

/// How long plan waits for a lock the pending migrations need.
const LOCK_TIMEOUT: &str = "5s";

/// Options of `plan`.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// `--database-url` / `DATABASE_URL`; `None` reads the `PG*` variables.
    pub database_url: Option<String>,
    /// The compiled migrations (default `generated`).
    pub generated_dir: PathBuf,
    /// The longest a single count may take before plan falls back to the
    /// planner's estimate (default 30 s).
    pub count_timeout: Duration,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            database_url: None,
            generated_dir: PathBuf::from("generated"),
            count_timeout: Duration::from_secs(30),
        }
    }
}

/// Why plan could not say what apply would do.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `generated/` is missing, damaged or holds no migrations (exit 2).
    #[error("error: {0}")]
    Generated(String),
    /// The database could not be read, or the pending migrations fail on it (exit 3).
    #[error("{0}")]
    Database(#[from] DbError),
}

/// A migration `apply` would run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingMigration {
    /// `V2__shorten_conversations`.
    pub name: String,
    /// The title line of its header, in words: `V2: what changed in the policy since V1:`.
    pub title: String,
    /// The `--   - ...` lines under the title: `conversations: keep 365 days -> 90 days`.
    pub changes: Vec<String>,
    /// Its SQL, exactly as apply would run it.
    pub sql: String,
}

/// The impact of the plan on one dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetImpact {
    pub dataset: String,
    /// What the pending migrations change for it, in words (empty: nothing).
    pub changes: Vec<String>,
    /// The next run under the current database state (`None`: not deployed yet).
    pub now: Option<ExpiredCount>,
    /// The next run under the new policy (`None`: the dataset is removed).
    pub next: Option<ExpiredCount>,
    /// The quoted table, for a dataset the new policy removes.
    pub relation: String,
    /// Removed rows are moved to the archive.
    pub archives: bool,
}

/// What `plan` found.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Pending migrations, in the order apply would run them.
    pub migrations: Vec<PendingMigration>,
    /// Per dataset, in policy order (datasets being removed last).
    pub datasets: Vec<DatasetImpact>,
    /// The count timeout in force (for the estimate labels).
    pub count_timeout: Duration,
}

impl Plan {
    /// Whether the next run (or the migrations themselves) would remove rows:
    /// `--fail-if-removes` exits 1 then.
    pub fn removes_rows(&self) -> bool {
        self.datasets
            .iter()
            .any(|d| d.next.is_none_or(|c| c.rows > 0))
    }
}

/// "1,204 rows of 52 tenants", "no rows", "≈ 1,200,000 rows (estimate: …)".
fn removal(c: &ExpiredCount, timeout: Duration) -> String {
    if c.timed_out {
        return format!(
            "≈ {} (estimate: counting took longer than {})",
            plural(c.rows, "row"),
            seconds(timeout)
        );
    }
    if c.estimated {
        return format!(
            "≈ {} (estimate; {} counted)",
            plural(c.rows, "row"),
            thousands(c.counted)
        );
    }
    if c.rows == 0 {
        return "no rows".into();
    }
    match c.tenants {
        Some(t) => format!("{} of {}", plural(c.rows, "row"), plural(t, "tenant")),
        None => plural(c.rows, "row"),
    }
}

/// "0", "1,204", "≈ 1,200,000 (estimate)".
fn short(c: &ExpiredCount) -> String {
    if c.estimated {
        format!("≈ {} (estimate)", thousands(c.rows))
    } else {
        thousands(c.rows)
    }
}

impl DatasetImpact {
    /// One sentence: "conversations: shortening keep from 365 days to 90 days
    /// removes 1,204 rows of 52 tenants at the next run (now: 0)".
    pub fn sentence(&self, timeout: Duration, pending: bool) -> String {
        let name = &self.dataset;
        let Some(next) = &self.next else {
            return format!(
                "{name}: removed from the policy: apply drops table {} and every row in it",
                self.relation
            );
        };
        let archive = if self.archives && next.rows > 0 {
            "; they move to the archive"
        } else {
            ""
        };
        let removal = removal(next, timeout);
        match (&self.now, pending) {
            (None, _) => format!(
                "{name}: {} removes {removal} at its first run (now: not deployed){archive}",
                if self.changes.is_empty() {
                    "the new dataset".to_string()
                } else {
                    join_words(&self.changes)
                }
            ),
            (Some(now), true) if !self.changes.is_empty() => format!(
                "{name}: {} removes {removal} at the next run (now: {}){archive}",
                join_words(&self.changes),
                short(now)
            ),
            (Some(now), true) => format!(
                "{name}: unchanged; the next run removes {removal} (now: {}){archive}",
                short(now)
            ),
            (Some(_), false) => format!("{name}: the next run removes {removal}{archive}"),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pending = !self.migrations.is_empty();
        if pending {
            writeln!(
                f,
                "{} pending migration(s) `pgretain apply` would run, in one transaction:",
                self.migrations.len()
            )?;
            for m in &self.migrations {
                writeln!(f, "  {}.sql  {}", m.name, m.title)?;
                for c in &m.changes {
                    writeln!(f, "      - {c}")?;
                }
            }
            for m in &self.migrations {
                writeln!(f, "\n-- ---- {}.sql ----", m.name)?;
                f.write_str(&m.sql)?;
                if !m.sql.ends_with('\n') {
                    writeln!(f)?;
                }
            }
            writeln!(f, "-- ---- end of pending migrations ----\n")?;
            writeln!(
                f,
                "Impact on data (counted in a transaction that ran the pending migrations, then rolled back):"
            )?;
        } else {
            writeln!(
                f,
                "No pending migrations: the database is up to date with generated/.\n"
            )?;
            writeln!(f, "Impact on data:")?;
        }
        if self.datasets.is_empty() {
            writeln!(f, "  (no datasets)")?;
        }
        for d in &self.datasets {
            writeln!(f, "  {}", d.sentence(self.count_timeout, pending))?;
        }
        Ok(())
    }
}

/// The `-- V2: ...` title line of a migration's header (or its name), and
/// the `--   - ...` lines listing the changes under it.
pub fn migration_title(name: &str, sql: &str) -> (String, Vec<String>) {
    let mut lines = sql
        .lines()
        .take_while(|l| l.starts_with("--") || l.trim().is_empty());
    let title = lines.by_ref().find_map(|l| {
        let rest = l.strip_prefix("-- V")?;
        let (num, title) = rest.split_once(": ")?;
        num.chars()
            .all(|c| c.is_ascii_digit())
            .then(|| format!("V{num}: {title}"))
    });
    let Some(title) = title else {
        return (name.to_string(), Vec::new());
    };
    let changes = lines
        .map_while(|l| l.strip_prefix("--   - ").map(str::to_string))
        .collect();
    (title, changes)
}

impl PendingMigration {
    /// The title and its changes on one line.
    pub fn summary(&self) -> String {
        if self.changes.is_empty() {
            self.title.clone()
        } else {
            format!("{} {}", self.title, self.changes.join("; "))
        }
    }
}

/// Parse `--count-timeout`: `30s`, `500ms`, `2m`, or a number of seconds.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix("min").or_else(|| t.strip_suffix('m')) {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() && v * scale <= 86_400.0 => {
            Ok(Duration::from_secs_f64(v * scale).max(Duration::from_millis(1)))
        }
        _ => Err(format!(
            "`{text}` is not a timeout; write e.g. `30s`, `500ms` or `2m` (at most a day)"
        )),
    }
}

/// The database's view of one dataset's settings, for describing changes.
#[derive(Debug, Clone, Default, PartialEq)]
struct Settings {
    tenant_column: Option<String>,
    relation: String,
    archives: bool,
    keep: Option<Interval>,
    /// (tenant, environment) → keep.
    overrides: BTreeMap<(Option<String>, Option<String>), Interval>,
    /// (tenant, environment, reason) → until.
    holds: BTreeMap<(Option<String>, Option<String>, String), Option<String>>,
}

fn who(tenant: &Option<String>, env: &Option<String>) -> String {
    crate::words::who(tenant.as_deref(), env.as_deref()).unwrap_or_else(|| "every row".into())
}

fn until(u: &Option<String>) -> String {
    u.as_ref()
        .map(|d| format!(" (until {d})"))
        .unwrap_or_default()
}

/// The changes from `old` to `new` settings of one dataset, in words.
fn describe_changes(old: &Settings, new: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(a), Some(b)) = (old.keep, new.keep) {
        if a != b {
            let verb = if b.days() < a.days() {
                "shortening"
            } else {
                "lengthening"
            };
            out.push(format!("{verb} keep from {a} to {b}"));
        }
    }
    for (k, b) in &new.overrides {
        match old.overrides.get(k) {
            Some(a) if a == b => {}
            Some(a) => out.push(format!(
                "{} the override for {} from {a} to {b}",
                if b.days() < a.days() {
                    "shortening"
                } else {
                    "lengthening"
                },
                who(&k.0, &k.1)
            )),
            None => out.push(format!("adding an override for {} ({b})", who(&k.0, &k.1))),
        }
    }
    for (k, a) in &old.overrides {
        if !new.overrides.contains_key(k) {
            out.push(format!(
                "removing the override for {} ({a})",
                who(&k.0, &k.1)
            ));
        }
    }
    for (k, u) in &new.holds {
        match old.holds.get(k) {
            Some(prev) if prev == u => {}
            Some(_) => out.push(format!(
                "changing the hold \"{}\" on {} to{}",
                k.2,
                who(&k.0, &k.1),
                until(u).replace(" (", " ").replace(')', "")
            )),
            None => out.push(format!(
                "adding the hold \"{}\" on {}{}",
                k.2,
                who(&k.0, &k.1),
                until(u)
            )),
        }
    }
    for k in old.holds.keys() {
        if !new.holds.contains_key(k) {
            out.push(format!(
                "lifting the hold \"{}\" on {}",
                k.2,
                who(&k.0, &k.1)
            ));
        }
    }
    if old.archives != new.archives {
        out.push("changing what happens on expiry".into());
    }
    out
}

/// Every dataset's settings as the transaction sees them (empty when the
/// retention schema does not exist yet).
fn read_settings(tx: &mut Transaction) -> Result<BTreeMap<String, Settings>, DbError> {
    let mut out: BTreeMap<String, Settings> = BTreeMap::new();
    if !session::has_runtime(tx)? {
        return Ok(out);
    }
    for d in catalog::datasets(tx)? {
        out.insert(
            d.name,
            Settings {
                tenant_column: d.tenant_column,
                relation: d.relation,
                archives: d.archive_relation.is_some(),
                keep: d.keep_interval,
                ..Default::default()
            },
        );
    }
    for o in catalog::overrides(tx)? {
        if let (Some(s), Some(k)) = (out.get_mut(&o.dataset), o.keep) {
            s.overrides.insert((o.tenant, o.environment), k);
        }
    }
    for h in catalog::holds(tx)? {
        if let Some(s) = out.get_mut(&h.dataset) {
            s.holds.insert((h.tenant, h.environment, h.reason), h.until);
        }
    }
    Ok(out)
}

fn count_all(
    tx: &mut Transaction,
    settings: &BTreeMap<String, Settings>,
    at: DateTime<Utc>,
    timeout: Duration,
) -> Result<BTreeMap<String, ExpiredCount>, DbError> {
    let mut out = BTreeMap::new();
    for (name, s) in settings {
        out.insert(
            name.clone(),
            rehearsal::count_expired(tx, name, at, s.tenant_column.is_some(), timeout)?,
        );
    }
    Ok(out)
}

/// The migrations in `generated/` not yet in the history table, by
/// version. Fails, like apply, when an applied migration was changed or
/// removed.
fn pending_migrations(
    client: &mut postgres::Client,
    opts: &PlanOptions,
) -> Result<Vec<refinery::Migration>, PlanError> {
    let dir = &opts.generated_dir;
    let migrations = generated::load_migrations(dir).map_err(|e| PlanError::Generated(e.0))?;
    if migrations.is_empty() {
        return Err(PlanError::Generated(generated::no_migrations(dir).0));
    }
    let applied = match history::table(client)? {
        Some(t) => history::read(client, &t)?,
        None => Vec::new(),
    };
    let comparison = history::compare(&applied, &migrations);
    match comparison.first_divergence() {
        Some(Divergence::Changed(a, _)) => {
            return Err(PlanError::Generated(format!(
                "migration {} in {} differs from the one applied to this database, so apply would refuse to run; restore the file from git",
                a.label(),
                dir.display()
            )))
        }
        Some(Divergence::Missing(a)) => {
            return Err(PlanError::Generated(format!(
                "migration {} was applied to this database but is missing from {}, so apply would refuse to run; restore it from git",
                a.label(),
                dir.display()
            )))
        }
        None => {}
    }
    let pending = comparison.pending().into_iter().cloned().collect();
    Ok(pending)
}

/// Run plan.
pub fn plan(opts: &PlanOptions) -> Result<Plan, PlanError> {
    let dir = &opts.generated_dir;
    let state = generated::read_state(dir)
        .map_err(|e| PlanError::Generated(format!("cannot read the compiled state: {e}")))?
        .ok_or_else(|| {
            PlanError::Generated(format!(
                "{} has no {STATE_FILE}: run `pgretain compile` first",
                dir.display()
            ))
        })?;
    let cfg = connect::config(opts.database_url.as_deref())?;
    let mut client = connect::connect(&cfg)?;
    let pending = pending_migrations(&mut client, opts)?;

    let mut tx = rehearsal::begin(&mut client, LOCK_TIMEOUT)?;
    let at = session::now(&mut tx)?;
    let before = read_settings(&mut tx)?;
    let now = count_all(&mut tx, &before, at, opts.count_timeout)?;
    let (after, next) = if pending.is_empty() {
        (before.clone(), now.clone())
    } else {
        for m in &pending {
            rehearsal::run_migration(&mut tx, m, LOCK_TIMEOUT)?;
        }
        let after = read_settings(&mut tx)?;
        let next = count_all(&mut tx, &after, at, opts.count_timeout)?;
        (after, next)
    };
    rehearsal::rollback(tx)?;

    let mut datasets = Vec::new();
    let mut names: Vec<String> = state
        .policy
        .datasets
        .iter()
        .map(|d| d.name.clone())
        .filter(|n| after.contains_key(n))
        .collect();
    names.extend(
        after
            .keys()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect::<Vec<_>>(),
    );
    names.extend(before.keys().filter(|n| !after.contains_key(*n)).cloned());
    for name in names {
        let old = before.get(&name);
        let new = after.get(&name);
        datasets.push(DatasetImpact {
            changes: match (old, new) {
                (Some(o), Some(n)) => describe_changes(o, n),
                _ => Vec::new(),
            },
            now: old.and(now.get(&name).copied()),
            next: new.and(next.get(&name).copied()),
            relation: old.or(new).map(|s| s.relation.clone()).unwrap_or_default(),
            archives: new.is_some_and(|s| s.archives),
            dataset: name,
        });
    }
    Ok(Plan {
        migrations: pending
            .iter()
            .map(|m| {
                let sql = m.sql().unwrap_or_default().to_string();
                let (title, changes) = migration_title(&m.to_string(), &sql);
                PendingMigration {
                    name: m.to_string(),
                    title,
                    changes,
                    sql,
                }
            })
            .collect(),
        datasets,
        count_timeout: opts.count_timeout,
    })
}

impl Failure for PlanError {
    fn exit_code(&self) -> i32 {
        match self {
            PlanError::Generated(_) => exit::INVALID,
            PlanError::Database(_) => exit::DATABASE,
        }
    }
}

/// A plan, and whether the command was asked to fail when the next run
/// would remove rows (`--fail-if-removes`).
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub plan: Plan,
    pub fail_if_removes: bool,
}

impl Outcome for Planned {
    fn text(&self) -> String {
        self.plan.to_string()
    }

    fn problem(&self) -> Option<String> {
        (self.fail_if_removes && self.plan.removes_rows())
            .then(|| "error: the next run would remove rows (--fail-if-removes)".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_the_header() {
        let sql = "-- Generated by pgretain\n--\n-- Policy files:\n--   p.yaml\n--\n-- V2: what changed in the policy since V1:\n--   - conversations: keep 365 days -> 90 days\n--   - sessions: keep 30 days -> 7 days\n\nSELECT 1;\n-- V3: not a header\n";
        let (title, changes) = migration_title("V2__shorten", sql);
        assert_eq!(title, "V2: what changed in the policy since V1:");
        assert_eq!(
            changes,
            vec![
                "conversations: keep 365 days -> 90 days".to_string(),
                "sessions: keep 30 days -> 7 days".to_string()
            ]
        );
        let old_style =
            "-- Generated\n--\n-- V2: conversations: keep 365 days -> 90 days\n\nSELECT 1;\n";
        assert_eq!(
            migration_title("V2__x", old_style),
            (
                "V2: conversations: keep 365 days -> 90 days".to_string(),
                vec![]
            )
        );
        assert_eq!(
            migration_title("V9__x", "SELECT 1;\n"),
            ("V9__x".to_string(), vec![])
        );
    }

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timeout("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_timeout("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_timeout("10").unwrap(), Duration::from_secs(10));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("soon").is_err());
    }

    #[test]
    fn sentences_read_like_the_issue() {
        let d = DatasetImpact {
            dataset: "conversations".into(),
            changes: vec!["shortening keep from 365 days to 90 days".into()],
            now: Some(ExpiredCount {
                rows: 0,
                tenants: Some(0),
                estimated: false,
                counted: 0,
                timed_out: false,
            }),
            next: Some(ExpiredCount {
                rows: 1204,
                tenants: Some(52),
                estimated: false,
                counted: 1204,
                timed_out: false,
            }),
            relation: "\"app\".\"conversations\"".into(),
            archives: false,
        };
        assert_eq!(
            d.sentence(Duration::from_secs(30), true),
            "conversations: shortening keep from 365 days to 90 days removes 1,204 rows of 52 tenants at the next run (now: 0)"
        );
    }
}
