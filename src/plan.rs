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
//! migrations took; lock waits are bounded (`lock_timeout`) and every count
//! by `--count-timeout`, after which the planner's row estimate is reported
//! instead, labelled as such. Nothing here writes files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{SimpleQueryMessage, Transaction};

use crate::db::{self, ctx, DbError};
use crate::generated::{read_state, STATE_FILE};
use crate::render::text::ident;
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// How many rows a run would remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub rows: i64,
    /// Distinct tenants among them (`None`: no tenant column, or estimated).
    pub tenants: Option<i64>,
    /// The count timed out: `rows` is the planner's estimate.
    pub estimated: bool,
}

/// A retention as the database stores it (an interval), for sentences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    pub months: i32,
    pub days: i32,
    pub hours: i32,
}

impl Interval {
    /// The three select-list items that read `expr` (an interval) as an `Interval`.
    pub fn select(expr: &str) -> String {
        format!(
            "(date_part('year', {expr})::int * 12 + date_part('month', {expr})::int), date_part('day', {expr})::int, date_part('hour', {expr})::int"
        )
    }

    /// Read the three columns written by [`Interval::select`] starting at `i`.
    pub fn from_row(row: &postgres::Row, i: usize) -> Option<Interval> {
        Some(Interval {
            months: row.get::<_, Option<i32>>(i)?,
            days: row.get::<_, Option<i32>>(i + 1)?,
            hours: row.get::<_, Option<i32>>(i + 2)?,
        })
    }

    /// The length PostgreSQL compares intervals by, in days (a month is 30 days).
    pub fn days(&self) -> f64 {
        self.months as f64 * 30.0 + self.days as f64 + self.hours as f64 / 24.0
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = |n: i32, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        let mut parts = Vec::new();
        if self.months / 12 != 0 {
            parts.push(unit(self.months / 12, "year"));
        }
        if self.months % 12 != 0 {
            parts.push(unit(self.months % 12, "month"));
        }
        if self.days != 0 {
            parts.push(unit(self.days, "day"));
        }
        if self.hours != 0 {
            parts.push(unit(self.hours, "hour"));
        }
        if parts.is_empty() {
            parts.push("0 days".into());
        }
        f.write_str(&parts.join(" "))
    }
}

/// The impact of the plan on one dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetImpact {
    pub dataset: String,
    /// What the pending migrations change for it, in words (empty: nothing).
    pub changes: Vec<String>,
    /// The next run under the current database state (`None`: not deployed yet).
    pub now: Option<Count>,
    /// The next run under the new policy (`None`: the dataset is removed).
    pub next: Option<Count>,
    /// The quoted table, for a dataset the new policy removes.
    pub relation: String,
    /// Removed rows are moved to the archive.
    pub archives: bool,
}

/// What `plan` found.
#[derive(Debug, Clone)]
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

impl Count {
    /// "1,204 rows of 52 tenants", "no rows", "≈ 1,200,000 rows (estimate: …)".
    fn removal(&self, timeout: Duration) -> String {
        if self.estimated {
            return format!(
                "≈ {} (estimate: counting took longer than {})",
                plural(self.rows, "row"),
                seconds(timeout)
            );
        }
        if self.rows == 0 {
            return "no rows".into();
        }
        match self.tenants {
            Some(t) => format!("{} of {}", plural(self.rows, "row"), plural(t, "tenant")),
            None => plural(self.rows, "row"),
        }
    }

    /// "0", "1,204", "≈ 1,200,000 (estimate)".
    fn short(&self) -> String {
        if self.estimated {
            format!("≈ {} (estimate)", thousands(self.rows))
        } else {
            thousands(self.rows)
        }
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
        let removal = next.removal(timeout);
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
                now.short()
            ),
            (Some(now), true) => format!(
                "{name}: unchanged; the next run removes {removal} (now: {}){archive}",
                now.short()
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
    match (tenant, env) {
        (Some(t), Some(e)) => format!("tenant {t}, environment {e}"),
        (Some(t), None) => format!("tenant {t}"),
        (None, Some(e)) => format!("environment {e}"),
        (None, None) => "every row".into(),
    }
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
    let exists: bool = tx
        .query_one("SELECT to_regclass('retention.dataset') IS NOT NULL", &[])
        .map_err(ctx("looking for the retention schema"))?
        .get(0);
    if !exists {
        return Ok(out);
    }
    let sql = format!(
        "SELECT name, tenant_column, relation, archive_relation IS NOT NULL, {} FROM retention.dataset ORDER BY name",
        Interval::select("keep")
    );
    for r in tx
        .query(sql.as_str(), &[])
        .map_err(ctx("reading retention.dataset"))?
    {
        out.insert(
            r.get(0),
            Settings {
                tenant_column: r.get(1),
                relation: r.get(2),
                archives: r.get(3),
                keep: Interval::from_row(&r, 4),
                ..Default::default()
            },
        );
    }
    let sql = format!(
        "SELECT dataset, tenant, environment, {} FROM retention.policy_override",
        Interval::select("keep")
    );
    for r in tx
        .query(sql.as_str(), &[])
        .map_err(ctx("reading retention.policy_override"))?
    {
        let ds: String = r.get(0);
        if let (Some(s), Some(k)) = (out.get_mut(&ds), Interval::from_row(&r, 3)) {
            s.overrides.insert((r.get(1), r.get(2)), k);
        }
    }
    for r in tx
        .query(
            "SELECT dataset, tenant, environment, reason, until::text FROM retention.hold",
            &[],
        )
        .map_err(ctx("reading retention.hold"))?
    {
        let ds: String = r.get(0);
        if let Some(s) = out.get_mut(&ds) {
            s.holds.insert((r.get(1), r.get(2), r.get(3)), r.get(4));
        }
    }
    Ok(out)
}

/// Count the rows of `retention.expired_<dataset>` (and their tenants) in a
/// savepoint; on a statement timeout, fall back to the planner's estimate.
fn count_expired(
    tx: &mut Transaction,
    dataset: &str,
    tenant: Option<&str>,
    timeout: Duration,
) -> Result<Count, DbError> {
    let view = format!("retention.{}", ident(&format!("expired_{dataset}")));
    let sql = match tenant {
        Some(t) => format!("SELECT count(*), count(DISTINCT {}) FROM {view}", ident(t)),
        None => format!("SELECT count(*), NULL::bigint FROM {view}"),
    };
    let mut sp = tx
        .savepoint("pgretain_plan_count")
        .map_err(ctx("starting a savepoint"))?;
    sp.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        timeout.as_millis().max(1)
    ))
    .map_err(ctx("setting the count timeout"))?;
    match sp.query_one(sql.as_str(), &[]) {
        Ok(row) => {
            // The timeout bounds the count only, not what follows.
            sp.batch_execute("SET LOCAL statement_timeout TO DEFAULT")
                .map_err(ctx("lifting the count timeout"))?;
            sp.commit().map_err(ctx("releasing a savepoint"))?;
            Ok(Count {
                rows: row.get(0),
                tenants: row.get(1),
                estimated: false,
            })
        }
        Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => {
            sp.rollback().map_err(ctx("rolling back a savepoint"))?;
            estimate(tx, dataset, &view, timeout)
        }
        Err(e) => Err(DbError(format!(
            "counting the rows {view} lists failed: {}",
            db::pg_message(&e)
        ))),
    }
}

/// The planner's row estimate for the view (EXPLAIN; nothing is read).
fn estimate(
    tx: &mut Transaction,
    dataset: &str,
    view: &str,
    timeout: Duration,
) -> Result<Count, DbError> {
    let mut sp = tx
        .savepoint("pgretain_plan_estimate")
        .map_err(ctx("starting a savepoint"))?;
    let explain = format!(
        "SET LOCAL statement_timeout = {}; EXPLAIN (FORMAT JSON) SELECT * FROM {view}",
        timeout.max(Duration::from_secs(5)).as_millis()
    );
    let messages = sp.simple_query(&explain).map_err(|e| {
        DbError(format!(
            "counting the expired rows of `{dataset}` took longer than {} and estimating them failed too: {}. Retry with a longer --count-timeout, or when the table is not locked",
            seconds(timeout),
            db::pg_message(&e)
        ))
    })?;
    sp.rollback().map_err(ctx("rolling back a savepoint"))?;
    let text = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_default();
    let rows = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v[0]["Plan"]["Plan Rows"].as_f64())
        .ok_or_else(|| {
            DbError(format!(
                "cannot read the row estimate of {view} from EXPLAIN"
            ))
        })?;
    Ok(Count {
        rows: rows.round() as i64,
        tenants: None,
        estimated: true,
    })
}

fn count_all(
    tx: &mut Transaction,
    settings: &BTreeMap<String, Settings>,
    timeout: Duration,
) -> Result<BTreeMap<String, Count>, DbError> {
    let mut out = BTreeMap::new();
    for (name, s) in settings {
        out.insert(
            name.clone(),
            count_expired(tx, name, s.tenant_column.as_deref(), timeout)?,
        );
    }
    Ok(out)
}

/// The migrations in `generated/` not yet in the history table, sorted by
/// version. Fails, like apply, when an applied migration was changed or
/// removed.
fn pending_migrations(
    client: &mut postgres::Client,
    opts: &PlanOptions,
) -> Result<Vec<refinery::Migration>, PlanError> {
    let dir = &opts.generated_dir;
    let mut migrations = refinery::load_sql_migrations(dir).map_err(|e| {
        PlanError::Generated(format!(
            "cannot load the migrations in {}: {e}",
            dir.display()
        ))
    })?;
    if migrations.is_empty() {
        return Err(PlanError::Generated(format!(
            "{} holds no migrations: run `pgretain compile` first",
            dir.display()
        )));
    }
    migrations.sort_by_key(|m| m.version());
    let applied = if let Some(history) = crate::db::history_table(client)? {
        let runner = crate::apply::runner(&migrations, &history);
        runner.get_applied_migrations(client).map_err(|e| {
            DbError(format!(
                "reading the migration history ({history}) failed: {e}"
            ))
        })?
    } else {
        Vec::new()
    };
    for a in &applied {
        match migrations.iter().find(|m| m.version() == a.version()) {
            Some(m) if m.checksum() != a.checksum() => {
                return Err(PlanError::Generated(format!(
                    "migration {a} in {} differs from the one applied to this database, so apply would refuse to run; restore the file from git",
                    dir.display()
                )))
            }
            Some(_) => {}
            None => {
                return Err(PlanError::Generated(format!(
                    "migration {a} was applied to this database but is missing from {}, so apply would refuse to run; restore it from git",
                    dir.display()
                )))
            }
        }
    }
    Ok(migrations
        .into_iter()
        .filter(|m| !applied.iter().any(|a| a.version() == m.version()))
        .collect())
}

/// Run plan.
pub fn plan(opts: &PlanOptions) -> Result<Plan, PlanError> {
    let dir = &opts.generated_dir;
    let state = read_state(dir)
        .map_err(|e| PlanError::Generated(format!("cannot read the compiled state: {e}")))?
        .ok_or_else(|| {
            PlanError::Generated(format!(
                "{} has no {STATE_FILE}: run `pgretain compile` first",
                dir.display()
            ))
        })?;
    let cfg = db::config(opts.database_url.as_deref())?;
    let mut client = db::connect(&cfg)?;
    let pending = pending_migrations(&mut client, opts)?;

    let mut tx = client
        .transaction()
        .map_err(ctx("starting the plan transaction"))?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .map_err(ctx("setting the plan's lock timeout"))?;
    let before = read_settings(&mut tx)?;
    let now = count_all(&mut tx, &before, opts.count_timeout)?;
    let (after, next) = if pending.is_empty() {
        (before.clone(), now.clone())
    } else {
        for m in &pending {
            tx.batch_execute(m.sql().unwrap_or_default()).map_err(|e| {
                let lock = e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE);
                DbError(format!(
                    "the pending migration {m} fails on this database, so apply would fail too: {}{}",
                    db::pg_message(&e),
                    if lock {
                        format!(" (plan waits at most {LOCK_TIMEOUT} for a lock; a long transaction holds one the migration needs — apply would wait for it)")
                    } else {
                        "; fix the policy or the database and compile again".into()
                    }
                ))
            })?;
        }
        let after = read_settings(&mut tx)?;
        let next = count_all(&mut tx, &after, opts.count_timeout)?;
        (after, next)
    };
    tx.rollback()
        .map_err(ctx("rolling back the plan transaction"))?;

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
            now: Some(Count {
                rows: 0,
                tenants: Some(0),
                estimated: false,
            }),
            next: Some(Count {
                rows: 1204,
                tenants: Some(52),
                estimated: false,
            }),
            relation: "\"app\".\"conversations\"".into(),
            archives: false,
        };
        assert_eq!(
            d.sentence(Duration::from_secs(30), true),
            "conversations: shortening keep from 365 days to 90 days removes 1,204 rows of 52 tenants at the next run (now: 0)"
        );
    }

    #[test]
    fn intervals_read_like_the_policy() {
        let i = |months, days, hours| Interval {
            months,
            days,
            hours,
        };
        assert_eq!(i(0, 365, 0).to_string(), "365 days");
        assert_eq!(i(18, 0, 0).to_string(), "1 year 6 months");
        assert_eq!(i(0, 0, 12).to_string(), "12 hours");
        assert_eq!(i(1, 0, 0).to_string(), "1 month");
    }
}
