//! `pgretain status`: what the live database is doing about retention, per
//! dataset (SPEC §5): the retention in force, how much data there is, the
//! oldest row, the rows overdue right now, the partitions, the last
//! enforcement run and the pg_cron job with its last and next run.
//!
//! Read-only: every query runs in one read-only, repeatable-read
//! transaction of the data database (one consistent snapshot, one `now()`),
//! plus plain reads of `cron.job` and `cron.job_run_details` in the cron
//! database. Counts that could scan a large table stop at [`COUNT_CAP`] rows
//! and say "at least"; the rows overdue are counted reading at most
//! [`EXAMINE_BUDGET`] rows, else estimated and labelled so. Every query is `db`'s; rendering (text, JSON) is
//! pure, and the JSON shape is documented in
//! `docs/status-json.md` and changes only with [`FORMAT_VERSION`].

use chrono::{DateTime, Utc};
use postgres::Transaction;
use serde::{Serialize, Serializer};

use super::Outcome;
use crate::db::catalog::{self, DatasetRow};
use crate::db::cron::{self, JobRow};
use crate::db::expired::{self, Expired, EXAMINE_BUDGET};
use crate::db::runs::{self, RunRow};
use crate::db::tables::{self, PartitionRow, COUNT_CAP};
use crate::db::{connect, session, DbError};
use crate::model::schedule::next_run;
use crate::render::names::job_name;
use crate::words::{self, bytes, plural, rfc3339, thousands};

/// Version of the JSON shape (`format_version`); bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// Options of `status` (and the connection part of `verify`).
#[derive(Debug, Clone, Default)]
pub struct StatusOptions {
    /// `--database-url` / `DATABASE_URL`; `None` reads the `PG*` variables.
    pub database_url: Option<String>,
    /// Where pg_cron lives; default: the server's `cron.database_name`, else `postgres`.
    pub cron_database: Option<String>,
}

/// The whole status: one entry per dataset of `retention.dataset`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Version of this shape.
    pub format_version: u32,
    /// The database's `now()` when the snapshot was taken.
    #[serde(serialize_with = "ser_time")]
    pub at: DateTime<Utc>,
    /// The data database.
    pub database: String,
    /// The database where pg_cron keeps its jobs.
    pub cron_database: String,
    /// Whether pg_cron is installed there (else every job is reported missing).
    pub cron_installed: bool,
    pub datasets: Vec<DatasetStatus>,
}

/// One dataset.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetStatus {
    pub name: String,
    /// The partitioned table.
    pub relation: String,
    /// The retention clock (a timestamptz column).
    pub time_column: String,
    /// Partition granularity: day, week or month.
    pub granularity: String,
    /// The enforcement schedule the policy sets (pg_cron syntax, GMT).
    pub schedule: String,
    pub retention: Retention,
    pub rows: Rows,
    /// The smallest value of the time column; `null` when the table is empty.
    #[serde(serialize_with = "ser_opt_time")]
    pub oldest_row: Option<DateTime<Utc>>,
    /// Rows whose deadline has passed and no hold covers: what a run
    /// starting now would remove (`retention.expired_<dataset>`), counted,
    /// or estimated where counting would read too many rows.
    pub overdue: Overdue,
    pub partitions: Partitions,
    /// The latest enforcement run in `retention.run_log`.
    pub last_run: Option<LastRun>,
    /// The pg_cron job; `null` when it is missing.
    pub job: Option<JobStatus>,
    /// When the job runs next (GMT); `null` when it is missing or inactive.
    #[serde(serialize_with = "ser_opt_time")]
    pub next_run: Option<DateTime<Utc>>,
}

/// The retention in force.
#[derive(Debug, Clone, Serialize)]
pub struct Retention {
    /// The dataset's default `keep`, as PostgreSQL prints the interval.
    pub keep: String,
    /// Bounds of run-time tenant settings.
    pub min_keep: Option<String>,
    pub max_keep: Option<String>,
    /// Overrides from the policy (`retention.policy_override`).
    pub policy_overrides: i64,
    /// Run-time settings written by the application (`retention.tenant_setting`).
    pub tenant_settings: i64,
    /// Legal holds in force now.
    pub active_holds: Vec<HoldStatus>,
}

/// An active legal hold.
#[derive(Debug, Clone, Serialize)]
pub struct HoldStatus {
    /// `null`: every tenant.
    pub tenant: Option<String>,
    /// `null`: every environment.
    pub environment: Option<String>,
    /// Last day in force (UTC, `YYYY-MM-DD`); `null`: until removed.
    pub until: Option<String>,
    pub reason: String,
}

/// How much data the dataset holds.
#[derive(Debug, Clone, Serialize)]
pub struct Rows {
    /// Sum of `pg_class.reltuples` over the partitions: an estimate, as of
    /// the last VACUUM / ANALYZE.
    pub estimate: i64,
    /// Partitions never analyzed, whose rows the estimate does not count.
    pub unanalyzed_partitions: i64,
    /// Total size on disk of every partition, indexes and TOAST included.
    pub total_bytes: i64,
}

/// A count that stops at [`COUNT_CAP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Count {
    pub count: i64,
    /// The count reached the cap: there are at least `count` rows.
    pub at_least: bool,
}

/// The rows overdue: counted, or estimated when counting them would read
/// more than [`EXAMINE_BUDGET`] rows (`db::expired`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Overdue {
    /// The number: exact unless `estimate`.
    pub count: i64,
    /// Kept from the capped count this replaced: always false.
    pub at_least: bool,
    /// `count` is an estimate (partitions' `reltuples`, and the share of
    /// expired rows among those read), not a count.
    pub estimate: bool,
    /// Rows actually seen overdue: a lower bound; equals `count` when exact.
    pub counted: i64,
}

impl From<Expired> for Overdue {
    fn from(e: Expired) -> Overdue {
        Overdue {
            count: e.rows,
            at_least: false,
            estimate: !e.exact,
            counted: e.counted,
        }
    }
}

impl Count {
    fn capped(n: i64) -> Count {
        Count {
            count: n,
            at_least: n >= COUNT_CAP,
        }
    }
}

/// The dataset's partitions.
#[derive(Debug, Clone, Serialize)]
pub struct Partitions {
    /// Range partitions (the default partition not included).
    pub count: i64,
    #[serde(serialize_with = "ser_opt_time")]
    pub oldest_lower_bound: Option<DateTime<Utc>>,
    #[serde(serialize_with = "ser_opt_time")]
    pub newest_upper_bound: Option<DateTime<Utc>>,
    /// Partitions that start after now: ready for future rows.
    pub future_ready: i64,
    /// The default partition, if any.
    pub default_partition: Option<String>,
    /// Rows in the default partition (outside every range partition).
    pub default_rows: Count,
}

/// The latest enforcement run (`retention.run_log`, action `enforce`).
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub id: i64,
    #[serde(serialize_with = "ser_time")]
    pub started_at: DateTime<Utc>,
    #[serde(serialize_with = "ser_opt_time")]
    pub finished_at: Option<DateTime<Utc>>,
    /// running, ok, partial, failed or skipped.
    pub outcome: String,
    /// Still `running` for over an hour with no backend holding its lock: it died.
    pub stuck: bool,
    pub rows_deleted: i64,
    pub rows_archived: i64,
    pub partitions_dropped: i64,
    /// Estimated rows of the dropped partitions.
    pub rows_in_dropped: i64,
    pub archive_rows_deleted: i64,
    /// Partitions left for the next run (lock timeout).
    pub partitions_skipped: Vec<String>,
    pub detail: Option<String>,
}

/// The dataset's pg_cron job as `cron.job` has it.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub name: String,
    pub id: i64,
    pub schedule: String,
    pub command: String,
    pub database: String,
    /// The role it runs as.
    pub username: String,
    pub active: bool,
    /// Its latest run in `cron.job_run_details`.
    pub last_run: Option<JobRun>,
}

/// One run of a pg_cron job (`cron.job_run_details`).
#[derive(Debug, Clone, Serialize)]
pub struct JobRun {
    /// starting, running, sending, connecting, succeeded or failed.
    pub status: String,
    pub message: Option<String>,
    #[serde(serialize_with = "ser_opt_time")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "ser_opt_time")]
    pub finished_at: Option<DateTime<Utc>>,
}

fn ser_time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

fn ser_opt_time<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

// ---------------------------------------------------------------------------
// status
// ---------------------------------------------------------------------------

impl From<RunRow> for LastRun {
    fn from(r: RunRow) -> Self {
        LastRun {
            id: r.id,
            started_at: r.started_at,
            finished_at: r.finished_at,
            outcome: r.outcome,
            stuck: r.stuck,
            rows_deleted: r.rows_deleted,
            rows_archived: r.rows_archived,
            partitions_dropped: r.partitions_dropped.len() as i64,
            rows_in_dropped: r.rows_in_dropped,
            archive_rows_deleted: r.archive_rows_deleted,
            partitions_skipped: r.partitions_skipped,
            detail: r.detail,
        }
    }
}

impl From<JobRow> for JobStatus {
    fn from(j: JobRow) -> Self {
        JobStatus {
            name: j.name,
            id: j.id,
            schedule: j.schedule,
            command: j.command,
            database: j.database,
            username: j.username,
            active: j.active,
            last_run: j.last_run.map(|r| JobRun {
                status: r.status,
                message: r.message,
                started_at: r.started_at,
                finished_at: r.finished_at,
            }),
        }
    }
}

/// Run `status`: read everything; change nothing.
pub fn status(opts: &StatusOptions) -> Result<Status, DbError> {
    let cfg = connect::config(opts.database_url.as_deref())?;
    let mut client = connect::connect(&cfg)?;
    let (data_db, cron_db) = session::databases(&mut client, opts.cron_database.as_deref())?;
    let mut cron = connect::connect_cron(&cfg, &cron_db)?;
    let installed = cron::installed(&mut cron)?;

    let mut tx = session::snapshot(&mut client)?;
    let at = session::now(&mut tx)?;
    if !session::has_runtime(&mut tx)? {
        return Err(DbError(format!(
            "database `{data_db}` has no retention schema: run `pgretain apply` first"
        )));
    }
    let mut out = Vec::new();
    let datasets = catalog::datasets(&mut tx)?;
    let overrides = catalog::overrides(&mut tx)?;
    let holds = catalog::holds(&mut tx)?;
    for d in datasets {
        let job = if installed {
            cron::job(&mut cron, &job_name(&data_db, &d.name))?.map(JobStatus::from)
        } else {
            None
        };
        let policy_overrides = overrides.iter().filter(|o| o.dataset == d.name).count() as i64;
        let active_holds = holds
            .iter()
            .filter(|h| h.dataset == d.name && h.active)
            .map(|h| HoldStatus {
                tenant: h.tenant.clone(),
                environment: h.environment.clone(),
                until: h.until.clone(),
                reason: h.reason.clone(),
            })
            .collect();
        out.push(dataset_status(
            &mut tx,
            d,
            policy_overrides,
            active_holds,
            job,
            at,
        )?);
    }
    session::end(tx)?;
    Ok(Status {
        format_version: FORMAT_VERSION,
        at,
        database: data_db,
        cron_database: cron_db,
        cron_installed: installed,
        datasets: out,
    })
}

fn dataset_status(
    tx: &mut Transaction<'_>,
    d: DatasetRow,
    policy_overrides: i64,
    active_holds: Vec<HoldStatus>,
    job: Option<JobStatus>,
    at: DateTime<Utc>,
) -> Result<DatasetStatus, DbError> {
    let name = d.name.as_str();
    let tenant_settings = catalog::tenant_settings(tx, name)?.count;
    let parts = tables::partitions(tx, name)?;
    let ranges: Vec<&PartitionRow> = parts.iter().filter(|p| !p.is_default).collect();
    let default = parts.iter().find(|p| p.is_default);
    let default_rows = match default {
        Some(p) => Count::capped(tables::rows_in_partition(tx, &p.name)?),
        None => Count::capped(0),
    };
    let oldest = tables::oldest_row(tx, &d.name, &d.table, &d.time_column)?;
    let overdue = expired::expired(tx, name, at, EXAMINE_BUDGET, false)?
        .map(Overdue::from)
        .unwrap_or(Overdue {
            count: 0,
            at_least: false,
            estimate: false,
            counted: 0,
        });

    let next = job
        .as_ref()
        .filter(|j| j.active)
        .and_then(|j| next_run(&j.schedule, at));
    Ok(DatasetStatus {
        retention: Retention {
            keep: d.keep.clone(),
            min_keep: d.min_keep.clone(),
            max_keep: d.max_keep.clone(),
            policy_overrides,
            tenant_settings,
            active_holds,
        },
        rows: Rows {
            estimate: parts.iter().map(|p| p.reltuples.max(0.0) as i64).sum(),
            unanalyzed_partitions: parts.iter().filter(|p| p.reltuples < 0.0).count() as i64,
            total_bytes: parts.iter().map(|p| p.total_bytes).sum(),
        },
        oldest_row: oldest,
        overdue,
        partitions: Partitions {
            count: ranges.len() as i64,
            oldest_lower_bound: ranges.iter().filter_map(|p| p.lower).min(),
            newest_upper_bound: ranges.iter().filter_map(|p| p.upper).max(),
            future_ready: ranges
                .iter()
                .filter(|p| p.lower.is_some_and(|l| l > at))
                .count() as i64,
            default_partition: default.map(|p| p.name.clone()),
            default_rows,
        },
        last_run: runs::last_run(tx, name)?.map(LastRun::from),
        job,
        next_run: next,
        name: d.name,
        relation: d.table,
        time_column: d.time_column,
        granularity: d.granularity,
        schedule: d.schedule,
    })
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

impl Status {
    /// The documented JSON shape, pretty-printed.
    /// (Serializing these plain types cannot fail; [`Outcome::json`] says
    /// so if it ever did, and this gives an empty string.)
    pub fn to_json(&self) -> String {
        self.json().unwrap_or_default()
    }

    /// Aligned text for people.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "retention status of database {} at {} (jobs in database {}{})\n",
            self.database,
            when(self.at),
            self.cron_database,
            if self.cron_installed {
                ""
            } else {
                ", where pg_cron is NOT installed"
            }
        );
        if self.datasets.is_empty() {
            s.push_str("\nno datasets\n");
        }
        for d in &self.datasets {
            s.push('\n');
            s.push_str(&d.to_text());
        }
        s
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn opt_when(t: Option<DateTime<Utc>>) -> String {
    t.map(when).unwrap_or_else(|| "-".into())
}

fn count_text(c: Count, word: &str) -> String {
    match (c.count, c.at_least) {
        (0, _) => "none".into(),
        (_, true) => format!("at least {}", plural(c.count, word)),
        (_, false) => plural(c.count, word),
    }
}

/// "none", "3 rows", "~1,204,000 rows (estimate; 98,000 counted)".
fn overdue_text(o: Overdue) -> String {
    match (o.count, o.estimate) {
        (0, false) => "none".into(),
        (_, false) => plural(o.count, "row"),
        (_, true) => format!(
            "~{} (estimate; {} counted)",
            plural(o.count, "row"),
            thousands(o.counted)
        ),
    }
}

impl DatasetStatus {
    fn to_text(&self) -> String {
        let mut lines: Vec<(&str, String)> = Vec::new();
        let r = &self.retention;
        let mut retention = format!("keep {}", r.keep);
        if r.min_keep.is_some() || r.max_keep.is_some() {
            retention.push_str(&format!(
                " (tenant settings between {} and {})",
                r.min_keep.as_deref().unwrap_or("-"),
                r.max_keep.as_deref().unwrap_or("-")
            ));
        }
        retention.push_str(&format!(
            "; {}; {}",
            plural(r.policy_overrides, "policy override"),
            plural(r.tenant_settings, "tenant setting")
        ));
        lines.push(("retention", retention));
        let holds = if r.active_holds.is_empty() {
            "none active".to_string()
        } else {
            r.active_holds
                .iter()
                .map(|h| {
                    let mut who = vec![words::who(h.tenant.as_deref(), h.environment.as_deref())
                        .unwrap_or_else(|| "every row".into())];
                    if let Some(u) = &h.until {
                        who.push(format!("until {u}"));
                    }
                    format!("\"{}\" ({})", h.reason, who.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        lines.push(("legal holds", holds));
        let mut rows = format!(
            "~{} (estimate from pg_class.reltuples), {} on disk",
            thousands(self.rows.estimate),
            bytes(self.rows.total_bytes)
        );
        if self.rows.unanalyzed_partitions > 0 {
            rows.push_str(&format!(
                "; {} not analyzed yet, not counted",
                plural(self.rows.unanalyzed_partitions, "partition")
            ));
        }
        lines.push(("rows", rows));
        lines.push((
            "oldest row",
            self.oldest_row
                .map(when)
                .unwrap_or_else(|| "- (empty)".into()),
        ));
        lines.push(("overdue now", overdue_text(self.overdue)));
        let p = &self.partitions;
        let mut parts = format!(
            "{}, from {} to {}; {} future ready",
            thousands(p.count),
            opt_when(p.oldest_lower_bound),
            opt_when(p.newest_upper_bound),
            thousands(p.future_ready)
        );
        match &p.default_partition {
            Some(_) => parts.push_str(&format!(
                "; default partition: {}",
                match count_text(p.default_rows, "row") {
                    n if n == "none" => "empty".to_string(),
                    n => n,
                }
            )),
            None => parts.push_str("; no default partition"),
        }
        lines.push(("partitions", parts));
        let last = match &self.last_run {
            None => "never".to_string(),
            Some(l) => {
                let mut s = format!(
                    "{}: {}{}; deleted {}, archived {}, dropped {}",
                    when(l.started_at),
                    l.outcome,
                    if l.stuck {
                        " (stuck: no backend holds its lock)"
                    } else {
                        ""
                    },
                    plural(l.rows_deleted, "row"),
                    thousands(l.rows_archived),
                    plural(l.partitions_dropped, "partition")
                );
                if l.partitions_dropped > 0 {
                    s.push_str(&format!(" (~{} rows)", thousands(l.rows_in_dropped)));
                }
                if !l.partitions_skipped.is_empty() {
                    s.push_str(&format!("; skipped {}", l.partitions_skipped.join(", ")));
                }
                if let Some(d) = &l.detail {
                    s.push_str(&format!("; {d}"));
                }
                s
            }
        };
        lines.push(("last run", last));
        let job = match &self.job {
            None => "MISSING: run `pgretain apply` to register it".to_string(),
            Some(j) => {
                let mut s = format!(
                    "{} `{}` in database {}, {}",
                    j.name,
                    j.schedule,
                    j.database,
                    if j.active { "active" } else { "INACTIVE" }
                );
                match &j.last_run {
                    None => s.push_str("; never ran"),
                    Some(r) => {
                        s.push_str(&format!(
                            "; last run {} at {}",
                            r.status,
                            opt_when(r.started_at)
                        ));
                        if let Some(m) = r.message.as_deref().filter(|m| !m.is_empty()) {
                            s.push_str(&format!(": {}", m.trim()));
                        }
                    }
                }
                s
            }
        };
        lines.push(("job", job));
        lines.push((
            "next run",
            match (&self.job, self.next_run) {
                (_, Some(t)) => when(t),
                (Some(j), None) if !j.active => "- (job inactive)".into(),
                (Some(j), None) => format!("- (cannot read schedule `{}`)", j.schedule),
                (None, None) => "- (no job)".into(),
            },
        ));

        let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut s = format!(
            "{}  {} (clock {}, {} partitions, schedule `{}`)\n",
            self.name, self.relation, self.time_column, self.granularity, self.schedule
        );
        for (k, v) in lines {
            s.push_str(&format!("  {k:<width$}  {v}\n"));
        }
        s
    }
}

impl Outcome for Status {
    fn text(&self) -> String {
        self.to_text()
    }
}
