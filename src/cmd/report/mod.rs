//! `pgretain report`: the compliance report (SPEC §1, §5): what is kept for
//! how long and why, and, with a database, the evidence that it is enforced.
//!
//! Two stages. [`build`] gathers a [`Report`]: the policy (from the compiled
//! state in `generated/`, or from a policy directory) and, when a database
//! URL is given, the evidence from it, read in one read-only snapshot:
//! `retention.run_log`, the age of the stored rows against their deadline,
//! the oldest row. [`markdown`] and [`html`] render it, with no I/O: the
//! HTML is one self-contained file (inline CSS, inline SVG charts drawn
//! here, no script, no network), so it renders offline and can be archived
//! as evidence. Nothing here changes the database.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use postgres::Transaction;

use serde::Serialize;

use super::{exit, Failure, Outcome};
use crate::db::catalog::{self, Interval, TenantSettings};
use crate::db::evidence::{self, Oldest};
use crate::db::runs::{self, RunRow};
use crate::db::{connect, session, DbError};
use crate::diagnostic::Diagnostics;
use crate::generated::{read_state, STATE_FILE};
use crate::model::{ChangesApplyTo, Dataset, Duration, OnExpiry, Policy};
use crate::render::names::{job_command, qualified};
use crate::words::{age, thousands};

/// Buckets of the age histogram between 0 and 1.5 × the retention.
const AGE_BUCKETS: i32 = 12;
/// Above this many rows (planner estimate), the age histogram is computed
/// from a sample of about [`SAMPLE_ROWS`] rows instead of a full scan.
const SAMPLE_ABOVE: f64 = 2_000_000.0;
const SAMPLE_ROWS: f64 = 1_000_000.0;
/// Runs listed in the table, and shown in the chart.
const RUNS_LISTED: i64 = 10;
const RUNS_CHARTED: i64 = 30;

/// Options of `report`.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// `--database-url` / `DATABASE_URL`. `None`: the report shows the policy only.
    pub database_url: Option<String>,
    /// The compiled state is read from here (default `generated`).
    pub generated_dir: PathBuf,
    /// Read the policy from this directory instead of the compiled state.
    pub policy_dir: Option<PathBuf>,
    /// `report.html` writes HTML and `report.md` beside it; `x.md` writes
    /// Markdown only; `None` returns the Markdown for stdout.
    pub out: Option<PathBuf>,
    /// The report's "now" (default: the database's clock, or this machine's).
    pub now: Option<DateTime<Utc>>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            database_url: None,
            generated_dir: PathBuf::from("generated"),
            policy_dir: None,
            out: None,
            now: None,
        }
    }
}

/// Why the report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The policy directory is invalid (exit 2).
    #[error("{0}")]
    Policy(Diagnostics),
    /// No compiled state, or the output cannot be written (exit 2).
    #[error("error: {0}")]
    Input(String),
    /// The database could not be read (exit 3).
    #[error("{0}")]
    Database(#[from] DbError),
}

/// Where the report went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ReportOutput {
    /// No `--out`: the Markdown, for stdout.
    Markdown(String),
    /// The files written.
    Files(Vec<PathBuf>),
}

/// Everything the report shows.
#[derive(Debug, Clone)]
pub struct Report {
    pub generated_at: DateTime<Utc>,
    /// Where the policy was read: "the compiled state generated/pgretain-state.json".
    pub policy_source: String,
    pub policy: Policy,
    /// `None`: no database was given.
    pub database: Option<DatabaseEvidence>,
}

/// What the database shows.
#[derive(Debug, Clone)]
pub struct DatabaseEvidence {
    /// `database app on /run/postgresql:5432 as postgres` (no password).
    pub name: String,
    /// Whether `pgretain apply` has run there (the retention schema exists).
    pub deployed: bool,
    /// Per dataset of the policy that the database enforces.
    pub datasets: BTreeMap<String, Evidence>,
}

/// The evidence for one dataset.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub total_rows: i64,
    /// Rows whose deadline has passed and no hold covers: the next run removes them.
    pub past_deadline: i64,
    /// Rows whose deadline has passed but a legal hold keeps.
    pub held_past_deadline: i64,
    /// The histogram was computed from a sample of this many percent of the rows.
    pub sampled_percent: Option<f64>,
    /// The dataset's default retention, in days (where the deadline mark goes).
    pub keep_days: f64,
    /// Age histogram: future rows, `AGE_BUCKETS` buckets to 1.5 × keep, older.
    pub buckets: Vec<Bucket>,
    pub oldest: Option<Oldest>,
    /// The last runs (enforcement and erasure), newest first.
    pub runs: Vec<RunRow>,
    /// The last enforcement runs, oldest first (the chart).
    pub history: Vec<RunRow>,
    /// Run-time tenant settings: how many, shortest, longest.
    pub tenant_settings: Option<(i64, Interval, Interval)>,
    /// Removed rows move to the archive (rows_archived counts them).
    pub archives: bool,
}

/// One bar of the age histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Ages from (days; `None`: in the future).
    pub from_days: Option<f64>,
    /// Ages to (days; `None`: older than the last bucket).
    pub to_days: Option<f64>,
    pub rows: i64,
    pub past_deadline: i64,
    pub held: i64,
}

impl Bucket {
    fn label(&self) -> String {
        match (self.from_days, self.to_days) {
            (None, _) => "future".into(),
            (Some(a), None) => format!("≥ {}", age(a)),
            (Some(a), Some(b)) => format!("{}–{}", age_short(a, b), age(b)),
        }
    }
}

// ---------------------------------------------------------------------------
// Gathering
// ---------------------------------------------------------------------------

/// Run report: build it and write or return it.
pub fn report(opts: &ReportOptions) -> Result<ReportOutput, ReportError> {
    let r = build(opts)?;
    let Some(out) = &opts.out else {
        return Ok(ReportOutput::Markdown(markdown(&r)));
    };
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text)
            .map_err(|e| ReportError::Input(format!("cannot write {}: {e}", path.display())))
    };
    if out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("md"))
    {
        write(out, &markdown(&r))?;
        return Ok(ReportOutput::Files(vec![out.clone()]));
    }
    let md = out.with_extension("md");
    write(out, &html(&r))?;
    write(&md, &markdown(&r))?;
    Ok(ReportOutput::Files(vec![out.clone(), md]))
}

/// Gather the report: the policy and, with a database, the evidence.
pub fn build(opts: &ReportOptions) -> Result<Report, ReportError> {
    let (policy, policy_source) = match &opts.policy_dir {
        Some(dir) => (
            crate::policy::load(dir).map_err(ReportError::Policy)?,
            format!("the policy files in {}", dir.display()),
        ),
        None => {
            let dir = &opts.generated_dir;
            let state = read_state(dir)
                .map_err(|e| ReportError::Input(format!("cannot read the compiled state: {e}")))?
                .ok_or_else(|| {
                    ReportError::Input(format!(
                        "{} has no {STATE_FILE}: run `pgretain compile` first, or pass --policies DIR",
                        dir.display()
                    ))
                })?;
            (
                state.policy,
                format!("the compiled state {}", dir.join(STATE_FILE).display()),
            )
        }
    };
    let Some(url) = opts
        .database_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    else {
        return Ok(Report {
            generated_at: opts.now.unwrap_or_else(Utc::now),
            policy_source,
            policy,
            database: None,
        });
    };
    let cfg = connect::config(Some(url))?;
    let mut client = connect::connect(&cfg)?;
    let mut tx = session::snapshot(&mut client)?;
    let now = match opts.now {
        Some(n) => n,
        None => session::now(&mut tx)?,
    };
    let deployed = session::has_runtime(&mut tx)?;
    let mut datasets = BTreeMap::new();
    if deployed {
        let enforced: Vec<String> = catalog::datasets(&mut tx)?
            .into_iter()
            .map(|d| d.name)
            .collect();
        for ds in &policy.datasets {
            if enforced.contains(&ds.name) {
                datasets.insert(ds.name.clone(), gather(&mut tx, ds, now)?);
            }
        }
    }
    session::end(tx)?;
    Ok(Report {
        generated_at: now,
        policy_source,
        policy,
        database: Some(DatabaseEvidence {
            name: connect::describe(&cfg),
            deployed,
            datasets,
        }),
    })
}

fn days(d: Duration) -> f64 {
    d.pg_micros() as f64 / 86_400_000_000.0
}

/// The evidence of one dataset at `now`.
fn gather(tx: &mut Transaction, ds: &Dataset, now: DateTime<Utc>) -> Result<Evidence, DbError> {
    let keep_days = days(ds.keep);
    let range = keep_days * 1.5;

    // The age histogram, from a sample on very large tables.
    let estimated = evidence::estimated_rows(tx, ds)?;
    let sampled_percent = (estimated > SAMPLE_ABOVE).then(|| 100.0 * SAMPLE_ROWS / estimated);
    let scale = sampled_percent.map(|p| 100.0 / p).unwrap_or(1.0);
    let s = |n: i64| (n as f64 * scale).round() as i64;
    let by_bucket = evidence::age_histogram(tx, ds, now, range, AGE_BUCKETS, sampled_percent)?;
    let width = range / AGE_BUCKETS as f64;
    let mut buckets = Vec::new();
    for b in 0..=AGE_BUCKETS + 1 {
        let c = by_bucket.get(&b).copied().unwrap_or_default();
        let (rows, past, held) = (s(c.rows), s(c.past_deadline), s(c.held));
        if (b == 0 || b == AGE_BUCKETS + 1) && rows == 0 {
            continue;
        }
        buckets.push(Bucket {
            from_days: (b > 0).then(|| (b - 1) as f64 * width),
            to_days: (b <= AGE_BUCKETS && b > 0).then_some(b as f64 * width),
            rows,
            past_deadline: past,
            held,
        });
    }
    let total_rows = buckets.iter().map(|b| b.rows).sum();
    let mut past_deadline: i64 = buckets.iter().map(|b| b.past_deadline).sum();
    let mut held_past_deadline: i64 = buckets.iter().map(|b| b.held).sum();
    if sampled_percent.is_some() {
        // The headline numbers are exact, whatever the histogram's sample.
        (past_deadline, held_past_deadline) = evidence::past_deadline(tx, ds, now)?;
    }
    let oldest = evidence::oldest(tx, ds, now)?;
    let runs = runs::runs(tx, &ds.name, &["enforce", "erase"], RUNS_LISTED)?;
    let mut history = runs::runs(tx, &ds.name, &["enforce"], RUNS_CHARTED)?;
    history.reverse();
    let tenant_settings = if ds.tenant.is_some() {
        match catalog::tenant_settings(tx, &ds.name)? {
            TenantSettings {
                count,
                shortest: Some(a),
                longest: Some(b),
            } if count > 0 => Some((count, a, b)),
            _ => None,
        }
    } else {
        None
    };

    Ok(Evidence {
        total_rows,
        past_deadline,
        held_past_deadline,
        sampled_percent,
        keep_days,
        buckets,
        oldest,
        runs,
        history,
        tenant_settings,
        archives: ds.on_expiry == OnExpiry::Archive,
    })
}

// ---------------------------------------------------------------------------
// Words
// ---------------------------------------------------------------------------

/// The lower bound of a range, unit omitted when `age` of the upper has the same unit.
fn age_short(a: f64, b: f64) -> String {
    if a <= 0.0 {
        return "0".into();
    }
    let full = age(a);
    let unit_b = age(b).rsplit(' ').next().unwrap_or("").to_string();
    match full.rsplit_once(' ') {
        Some((num, unit)) if unit == unit_b => num.to_string(),
        _ => full,
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

fn who(tenant: &Option<String>, env: &Option<String>) -> String {
    match (tenant, env) {
        (Some(t), Some(e)) => format!("tenant {t}, environment {e}"),
        (Some(t), None) => format!("tenant {t}"),
        (None, Some(e)) => format!("environment {e}"),
        (None, None) => "every tenant and environment".into(),
    }
}

/// Whether a hold is in force on `today` (its `until` day included).
fn hold_active(until: &Option<String>, today: &str) -> bool {
    until.as_deref().is_none_or(|u| u >= today)
}

/// The policy of one dataset in plain words: (label, lines).
pub fn policy_in_words(
    policy: &Policy,
    ds: &Dataset,
    today: &str,
) -> Vec<(&'static str, Vec<String>)> {
    let mut out: Vec<(&'static str, Vec<String>)> = Vec::new();
    out.push(("What", vec![ds.description.clone()]));
    out.push((
        "Owner",
        vec![ds.owner.clone().unwrap_or_else(|| "not stated".into())],
    ));
    out.push((
        "Legal basis",
        vec![ds
            .legal_basis
            .clone()
            .unwrap_or_else(|| "not stated".into())],
    ));
    out.push((
        "Table",
        vec![format!(
            "{}.{}, retention clock `{}`",
            ds.schema, ds.table, ds.time
        )],
    ));
    let mut keep = format!("{} after `{}`", ds.keep, ds.time);
    if ds.sliding {
        keep.push_str(" — sliding: counted from the latest activity, so activity extends it");
    }
    out.push(("Retention", vec![keep]));
    out.push((
        "Changes apply to",
        vec![match ds.changes_apply_to {
            ChangesApplyTo::AllRows => {
                "every row: a changed retention reaches rows already stored at the next run".into()
            }
            ChangesApplyTo::NewRows => {
                "new rows only: each row keeps the retention in force when it was stored".into()
            }
        }],
    ));
    let overrides = policy.overrides_by_dataset();
    let mine = overrides.get(ds.name.as_str()).cloned().unwrap_or_default();
    if ds.environment.is_some() {
        let by_env: Vec<String> = mine
            .iter()
            .filter(|o| o.tenant.is_none())
            .map(|o| {
                let mut s = format!("{}: {}", o.environment.as_deref().unwrap_or("?"), o.keep);
                if let Some(r) = &o.reason {
                    s.push_str(&format!(" — {r}"));
                }
                s
            })
            .collect();
        out.push((
            "By environment",
            if by_env.is_empty() {
                vec![format!("{} in every environment", ds.keep)]
            } else {
                by_env
            },
        ));
    }
    let by_tenant: Vec<String> = mine
        .iter()
        .filter(|o| o.tenant.is_some())
        .map(|o| {
            let mut s = format!("{}: {}", who(&o.tenant, &o.environment), o.keep);
            if let Some(r) = &o.reason {
                s.push_str(&format!(" — {r}"));
            }
            s
        })
        .collect();
    if !by_tenant.is_empty() {
        out.push(("Overrides", by_tenant));
    }
    if ds.tenant.is_some() {
        let bound = |d: Option<Duration>, none: &str| {
            d.map(|d| d.to_string()).unwrap_or_else(|| none.into())
        };
        out.push((
            "Bounds",
            vec![format!(
                "each tenant (`{}`) may choose between {} and {}; the database rejects anything else",
                ds.tenant.as_deref().unwrap_or_default(),
                bound(ds.min_keep, "any positive time"),
                bound(ds.max_keep, "any length")
            )],
        ));
    }
    out.push((
        "On expiry",
        vec![match &ds.archive {
            Some(a) if ds.on_expiry == OnExpiry::Archive => format!(
                "moved to {} at the first run after the deadline, and deleted from there {} after the deadline",
                qualified(&a.schema, &ds.table).replace('"', ""),
                a.keep
            ),
            _ => "deleted at the first run after the deadline".into(),
        }],
    ));
    out.push((
        "Schedule",
        vec![format!(
            "pg_cron `{}` (GMT), job command `{}`",
            ds.schedule,
            job_command(ds)
        )],
    ));
    out.push((
        "Erasure on request",
        vec![match &ds.erase_by {
            Some(c) => format!(
                "by `{c}`: `pgretain erase {} KEY` or `SELECT * FROM retention.erase('{}', KEY)`",
                ds.name, ds.name
            ),
            None => "not configured (no erase_by column)".into(),
        }],
    ));
    out.push((
        "Never stored",
        if ds.sensitive.is_empty() {
            vec!["no sensitive keys declared".into()]
        } else {
            ds.sensitive
                .iter()
                .map(|(col, keys)| {
                    format!(
                        "keys {} in `{col}` — stripped by the database on every write",
                        keys.join(", ")
                    )
                })
                .collect()
        },
    ));
    let holds: Vec<String> = policy
        .holds
        .iter()
        .filter(|h| h.datasets.contains(&ds.name))
        .map(|h| {
            format!(
                "{}: {}{} ({})",
                who(&h.tenant, &h.environment),
                h.reason,
                h.until
                    .as_ref()
                    .map(|u| format!(", until {u}"))
                    .unwrap_or_else(|| ", until lifted".into()),
                if hold_active(&h.until, today) {
                    "in force"
                } else {
                    "ended"
                }
            )
        })
        .collect();
    out.push((
        "Legal holds",
        if holds.is_empty() {
            vec!["none".into()]
        } else {
            holds
        },
    ));
    out.push(("Defined in", vec![ds.source.to_string()]));
    out
}

/// The status of a dataset in one phrase, and its tone (ok, warn, bad, none).
fn status(e: Option<&Evidence>, db: Option<&DatabaseEvidence>) -> (String, &'static str) {
    let Some(db) = db else {
        return ("policy only".into(), "none");
    };
    let Some(e) = e else {
        return (
            if db.deployed {
                "not deployed"
            } else {
                "pgretain not applied"
            }
            .into(),
            "bad",
        );
    };
    match e.history.last() {
        Some(r) if r.outcome == "failed" => ("last run failed".into(), "bad"),
        _ if e.past_deadline > 0 => (format!("{} overdue", thousands(e.past_deadline)), "warn"),
        None => ("no runs yet".into(), "warn"),
        Some(r) if r.outcome == "partial" => ("last run partial".into(), "warn"),
        Some(_) => ("enforced".into(), "ok"),
    }
}

/// Sentences about the oldest row and the rows past their deadline.
fn evidence_sentences(e: &Evidence, now: DateTime<Utc>) -> Vec<String> {
    let mut s = Vec::new();
    if e.total_rows > 0 {
        s.push(format!(
            "{} stored now{}.",
            plural_rows(e.total_rows),
            e.sampled_percent
                .map(|p| format!(
                    " (≈, the age histogram is from a {p:.2}% sample; the counts below are exact)"
                ))
                .unwrap_or_default()
        ));
    }
    match &e.oldest {
        None => s.push("The table is empty.".into()),
        Some(o) => {
            let age_days = (now - o.time).num_seconds() as f64 / 86_400.0;
            let to_deadline = (o.deadline - now).num_seconds() as f64 / 86_400.0;
            let mut t = format!(
                "Oldest row: {} ({} old); its deadline {} ",
                when(o.time),
                age(age_days),
                day(o.deadline)
            );
            if to_deadline >= 0.0 {
                t.push_str(&format!("is in {}.", age(to_deadline)));
            } else {
                t.push_str(&format!("passed {} ago", age(-to_deadline)));
                t.push_str(if o.held {
                    ", and a legal hold keeps it."
                } else {
                    ": the next run removes it."
                });
            }
            s.push(t);
        }
    }
    s.push(if e.past_deadline == 0 {
        "Rows overdue now (past their deadline, no hold): 0 — nothing is kept longer than the policy allows.".into()
    } else {
        format!(
            "Rows overdue now (past their deadline, no hold): {} — the next scheduled run removes them.",
            thousands(e.past_deadline)
        )
    });
    if e.held_past_deadline > 0 {
        s.push(format!(
            "Rows past their deadline kept by a legal hold: {}.",
            thousands(e.held_past_deadline)
        ));
    }
    if let Some((n, a, b)) = &e.tenant_settings {
        s.push(if a == b {
            format!("{} run-time tenant setting(s), all {a}.", thousands(*n))
        } else {
            format!(
                "{} run-time tenant setting(s), from {a} to {b}.",
                thousands(*n)
            )
        });
    }
    match e.runs.iter().find(|r| r.action == "enforce") {
        Some(r) => s.push(format!(
            "Last enforcement run: {} ({}), removed {}.",
            when(r.started_at),
            r.outcome,
            plural_rows(r.removed(e.archives))
        )),
        None => s.push("No enforcement run is recorded yet.".into()),
    }
    s
}

fn plural_rows(n: i64) -> String {
    format!("{} row{}", thousands(n), if n == 1 { "" } else { "s" })
}

fn run_cells(r: &RunRow, archives: bool) -> Vec<String> {
    vec![
        when(r.started_at),
        r.action.clone(),
        r.outcome.clone(),
        r.partitions_dropped.len().to_string(),
        thousands(r.removed(archives)),
        thousands(r.archive_rows_deleted),
        thousands(r.rows_kept_by_hold),
        r.finished_at
            .map(|_| format!("{:.2} s", r.seconds))
            .unwrap_or_else(|| "running".into()),
        r.detail.clone().unwrap_or_default(),
    ]
}

const RUN_HEADERS: [&str; 9] = [
    "Started",
    "Action",
    "Outcome",
    "Partitions dropped",
    "Rows removed",
    "Archive rows deleted",
    "Kept by hold",
    "Duration",
    "Detail",
];

fn retention_summary(policy: &Policy, ds: &Dataset) -> String {
    let n = policy
        .overrides
        .iter()
        .filter(|o| o.dataset == ds.name)
        .count();
    match n {
        0 => ds.keep.to_string(),
        1 => format!("{}, 1 override", ds.keep),
        n => format!("{}, {n} overrides", ds.keep),
    }
}

fn on_expiry(ds: &Dataset) -> String {
    match &ds.archive {
        Some(a) if ds.on_expiry == OnExpiry::Archive => format!("archive +{}", a.keep),
        _ => "delete".into(),
    }
}

// ---------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------

/// Prose for Markdown: angle brackets would be read as HTML.
fn md_text(s: &str) -> String {
    s.replace('<', "&lt;").replace('>', "&gt;")
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\n', '\r'], " ")
}

fn md_table(out: &mut String, headers: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", headers.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(headers.len()));
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

/// The report as Markdown.
/// The summary table, one row per dataset: name, table, retention, on
/// expiry and, with a database, rows, overdue rows and the last run (shown
/// by `last_run`), else the owner; with each row its status badge.
fn summary_rows(
    r: &Report,
    last_run: impl Fn(&RunRow) -> String,
) -> Vec<(Vec<String>, (String, &'static str))> {
    r.policy
        .datasets
        .iter()
        .map(|ds| {
            let e = r.database.as_ref().and_then(|d| d.datasets.get(&ds.name));
            let mut row = vec![
                ds.name.clone(),
                format!("{}.{}", ds.schema, ds.table),
                retention_summary(&r.policy, ds),
                on_expiry(ds),
            ];
            if r.database.is_some() {
                let dash = || "—".to_string();
                row.push(e.map(|e| thousands(e.total_rows)).unwrap_or_else(dash));
                row.push(e.map(|e| thousands(e.past_deadline)).unwrap_or_else(dash));
                row.push(
                    e.and_then(|e| e.runs.iter().find(|run| run.action == "enforce"))
                        .map(&last_run)
                        .unwrap_or_else(dash),
                );
            } else {
                row.push(ds.owner.clone().unwrap_or_default());
            }
            (row, status(e, r.database.as_ref()))
        })
        .collect()
}

pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let today = day(r.generated_at);
    let _ = writeln!(s, "# Data retention report\n");
    let _ = writeln!(
        s,
        "Generated {} by pgretain from {}.",
        when(r.generated_at),
        r.policy_source
    );
    match &r.database {
        None => {
            let _ = writeln!(
                s,
                "\n> **Policy only.** No database was given (`--database-url` or `DATABASE_URL`), so this report shows what the policy says, not evidence that it is enforced.\n"
            );
        }
        Some(db) => {
            let _ = writeln!(s, "Evidence read from {} in one snapshot.\n", db.name);
            if !db.deployed {
                let _ = writeln!(s, "> **pgretain has not been applied to this database**: nothing in it is enforced.\n");
            }
        }
    }
    let _ = writeln!(s, "## Summary\n");
    let rows: Vec<Vec<String>> = summary_rows(r, |run| {
        format!("{} ({})", when(run.started_at), run.outcome)
    })
    .into_iter()
    .map(|(mut row, badge)| {
        if r.database.is_some() {
            row.push(badge.0);
        }
        row
    })
    .collect();
    if r.database.is_some() {
        md_table(
            &mut s,
            &[
                "Dataset",
                "Table",
                "Retention",
                "On expiry",
                "Rows",
                "Overdue now",
                "Last run",
                "Status",
            ],
            &rows,
        );
    } else {
        md_table(
            &mut s,
            &["Dataset", "Table", "Retention", "On expiry", "Owner"],
            &rows,
        );
    }

    for ds in &r.policy.datasets {
        let _ = writeln!(s, "## {}\n", ds.name);
        let _ = writeln!(s, "### Policy\n");
        for (label, lines) in policy_in_words(&r.policy, ds, &today) {
            if lines.len() == 1 {
                let _ = writeln!(s, "- **{label}:** {}", md_text(&lines[0]));
            } else {
                let _ = writeln!(s, "- **{label}:**");
                for l in lines {
                    let _ = writeln!(s, "  - {}", md_text(&l));
                }
            }
        }
        s.push('\n');
        let Some(db) = &r.database else { continue };
        let _ = writeln!(s, "### Evidence\n");
        let Some(e) = db.datasets.get(&ds.name) else {
            let _ = writeln!(
                s,
                "Not enforced in this database: `pgretain apply` has not created it.\n"
            );
            continue;
        };
        for line in evidence_sentences(e, r.generated_at) {
            let _ = writeln!(s, "- {}", md_text(&line));
        }
        s.push('\n');
        let _ = writeln!(
            s,
            "Age of the stored rows (retention {} marked by ◆):\n",
            ds.keep
        );
        let rows: Vec<Vec<String>> = e
            .buckets
            .iter()
            .map(|b| {
                let mark = match (b.from_days, b.to_days) {
                    (Some(a), Some(z)) if a < e.keep_days && e.keep_days <= z => " ◆",
                    _ => "",
                };
                vec![
                    format!("{}{mark}", b.label()),
                    thousands(b.rows),
                    thousands(b.past_deadline),
                    thousands(b.held),
                ]
            })
            .collect();
        md_table(
            &mut s,
            &["Age", "Rows", "Past deadline", "Held past deadline"],
            &rows,
        );
        if e.runs.is_empty() {
            let _ = writeln!(s, "No runs recorded in retention.run_log.\n");
        } else {
            let _ = writeln!(s, "Last runs (retention.run_log):\n");
            let rows: Vec<Vec<String>> = e.runs.iter().map(|r| run_cells(r, e.archives)).collect();
            md_table(&mut s, &RUN_HEADERS, &rows);
        }
    }
    s
}

// ---------------------------------------------------------------------------
// HTML and SVG
// ---------------------------------------------------------------------------

/// Escape text for HTML and SVG content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Escape, then show `code` spans (from the words) as <code>.
fn esc_code(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", esc(part));
        } else {
            out.push_str(&esc(part));
        }
    }
    out
}

fn compact(n: f64) -> String {
    if n >= 1e9 {
        format!("{}G", trim(n / 1e9))
    } else if n >= 1e6 {
        format!("{}M", trim(n / 1e6))
    } else if n >= 1e4 {
        format!("{}k", trim(n / 1e3))
    } else {
        thousands(n.round() as i64)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.trim_end_matches(".0").to_string()
}

/// 1, 2, 2.5 or 5 × 10^k, at least `v`: a tick step.
fn nice_step(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

/// The Y axis (grid lines and labels) of a chart; returns the scale max.
fn y_axis(svg: &mut String, max: f64, left: f64, top: f64, w: f64, h: f64) -> f64 {
    let step = nice_step(max / 5.0);
    let n = ((max / step).ceil() as i64).max(1);
    let top_value = step * n as f64;
    for i in 0..=n {
        let v = step * i as f64;
        let y = top + h - h * v / top_value;
        let _ = write!(
            svg,
            r#"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"#,
            left + w,
            left - 6.0,
            y + 4.0,
            esc(&compact(v))
        );
    }
    top_value
}

const CHART_W: f64 = 1000.0;
const CHART_H: f64 = 260.0;

/// A compact chart saying there is nothing to draw.
fn svg_empty(kind: &str, label: &str, note: &str) -> String {
    format!(
        r#"<svg class="chart chart-{kind}" viewBox="0 0 {CHART_W} 64" width="{CHART_W}" height="64" role="img" aria-label="{}"><rect x="64" y="6" width="{}" height="52" rx="4" class="empty"/><text x="{}" y="37" text-anchor="middle" class="note">{}</text></svg>"#,
        esc(label),
        CHART_W - 84.0,
        64.0 + (CHART_W - 84.0) / 2.0,
        esc(note)
    )
}

fn svg_open(kind: &str, label: &str) -> String {
    format!(
        r#"<svg class="chart chart-{kind}" viewBox="0 0 {CHART_W} {CHART_H}" width="{CHART_W}" height="{CHART_H}" role="img" aria-label="{}">"#,
        esc(label)
    )
}

/// Bar chart: rows removed per enforcement run, coloured by outcome.
pub fn svg_runs(dataset: &str, runs: &[RunRow], archives: bool) -> String {
    let label = format!("rows removed per run, {dataset}");
    if runs.is_empty() {
        return svg_empty("runs", &label, "no enforcement run recorded yet");
    }
    let mut s = svg_open("runs", &label);
    let (left, top, w, h) = (60.0, 14.0, CHART_W - 74.0, CHART_H - 60.0);
    let max = runs.iter().map(|r| r.removed(archives)).max().unwrap_or(0) as f64;
    let top_value = y_axis(&mut s, max, left, top, w, h);
    let slot = w / runs.len() as f64;
    let bar = (slot * 0.7).min(36.0);
    for (i, r) in runs.iter().enumerate() {
        let v = r.removed(archives) as f64;
        let bh = if v > 0.0 {
            (h * v / top_value).max(1.5)
        } else {
            0.0
        };
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let _ = write!(
            s,
            r#"<rect x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{bh:.1}" class="bar {}"><title>{}</title></rect>"#,
            top + h - bh,
            esc(match r.outcome.as_str() {
                "ok" => "ok",
                "partial" | "skipped" | "running" => "warn",
                _ => "bad",
            }),
            esc(&format!(
                "{}: {} removed ({}{})",
                when(r.reference_time),
                plural_rows(r.removed(archives)),
                r.outcome,
                r.detail
                    .as_ref()
                    .map(|d| format!("; {d}"))
                    .unwrap_or_default()
            ))
        );
        if v == 0.0 {
            let _ = write!(
                s,
                r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" class="zero"/>"#,
                x + bar,
                y = top + h
            );
        }
    }
    let labels = runs.len().min(6);
    for k in 0..labels {
        let i = if labels == 1 {
            0
        } else {
            k * (runs.len() - 1) / (labels - 1)
        };
        let x = left + slot * i as f64 + slot / 2.0;
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"#,
            top + h + 16.0,
            esc(&runs[i].reference_time.format("%m-%d %H:%M").to_string())
        );
    }
    let _ = write!(
        s,
        r#"<line x1="{left}" y1="{y}" x2="{:.1}" y2="{y}" class="axis"/><text x="{:.1}" y="{:.1}" class="label" text-anchor="middle">enforcement runs by their time T (UTC), oldest to newest</text></svg>"#,
        left + w,
        left + w / 2.0,
        CHART_H - 8.0,
        y = top + h
    );
    s
}

/// Histogram: stored rows by age, split into within retention, past the
/// deadline (the next run removes them) and held; the retention marked.
pub fn svg_ages(ds: &Dataset, e: &Evidence) -> String {
    let label = format!("age of the stored rows, {}", ds.name);
    if e.buckets.iter().all(|b| b.rows == 0) {
        return svg_empty("ages", &label, "no rows stored");
    }
    let mut s = svg_open("ages", &label);
    let (left, top, w, h) = (64.0, 24.0, CHART_W - 84.0, CHART_H - 92.0);
    // One unit for the whole axis.
    let range = e.keep_days * 1.5;
    let (unit, per_day) = if range < 3.0 {
        ("hours", 24.0)
    } else if range > 1500.0 {
        ("years", 1.0 / 365.25)
    } else {
        ("days", 1.0)
    };
    let num = |d: f64| {
        let v = d * per_day;
        if unit == "years" {
            format!("{v:.1}")
        } else {
            format!("{}", v.round())
        }
    };
    let max = e.buckets.iter().map(|b| b.rows).max().unwrap_or(0) as f64;
    let top_value = y_axis(&mut s, max, left, top, w, h);
    let slot = w / e.buckets.len() as f64;
    let mut deadline_x = None;
    let tick_y = top + h + 15.0;
    for (i, b) in e.buckets.iter().enumerate() {
        let x0 = left + slot * i as f64;
        let x = x0 + 1.0;
        let bw = slot - 2.0;
        let within = b.rows - b.past_deadline - b.held;
        let mut y = top + h;
        for (v, class, what) in [
            (within, "within", "within their retention"),
            (b.held, "held", "past their deadline, kept by a legal hold"),
            (
                b.past_deadline,
                "past",
                "past their deadline, removed by the next run",
            ),
        ] {
            if v <= 0 {
                continue;
            }
            let bh = (h * v as f64 / top_value).max(1.5);
            y -= bh;
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" class="bar {class}"><title>{}</title></rect>"#,
                esc(&format!("age {}: {} {what}", b.label(), plural_rows(v)))
            );
        }
        // Ages at the bucket edges; the open buckets are named.
        match (b.from_days, b.to_days) {
            (None, _) => {
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{tick_y:.1}" class="tick" text-anchor="middle">future</text>"#,
                    x0 + slot / 2.0
                );
            }
            (Some(_), None) => {
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{tick_y:.1}" class="tick" text-anchor="middle">older</text>"#,
                    x0 + slot / 2.0
                );
            }
            (Some(a), Some(z)) => {
                let _ = write!(
                    s,
                    r#"<text x="{x0:.1}" y="{tick_y:.1}" class="tick" text-anchor="middle">{}</text>"#,
                    num(a)
                );
                let last = e.buckets.get(i + 1).is_none_or(|n| n.to_days.is_none());
                if last {
                    let _ = write!(
                        s,
                        r#"<text x="{:.1}" y="{tick_y:.1}" class="tick" text-anchor="middle">{}</text>"#,
                        x0 + slot,
                        num(z)
                    );
                }
                if a <= e.keep_days && e.keep_days <= z && deadline_x.is_none() {
                    deadline_x = Some(x0 + slot * (e.keep_days - a) / (z - a));
                }
            }
        }
    }
    if let Some(x) = deadline_x {
        let anchor = if x > left + w * 0.75 { "end" } else { "start" };
        let dx = if anchor == "end" { -5.0 } else { 5.0 };
        let _ = write!(
            s,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" class="deadline"/><text x="{:.1}" y="{:.1}" class="deadline-label" text-anchor="{anchor}">deadline: retention {}</text>"#,
            top - 10.0,
            top + h,
            x + dx,
            top - 2.0,
            esc(&ds.keep.to_string())
        );
    }
    let _ = write!(
        s,
        r#"<line x1="{left}" y1="{y}" x2="{:.1}" y2="{y}" class="axis"/><text x="{:.1}" y="{:.1}" class="label" text-anchor="middle">age of the row in {unit} (now − {}){}</text>"#,
        left + w,
        left + w / 2.0,
        top + h + 34.0,
        esc(&ds.time),
        if e.sampled_percent.is_some() {
            ", from a sample"
        } else {
            ""
        },
        y = top + h
    );
    let ly = top + h + 58.0;
    let mut lx = left;
    for (class, text) in [
        ("within", "within retention"),
        ("held", "past deadline, kept by a legal hold"),
        ("past", "past deadline, removed by the next run"),
    ] {
        let _ = write!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="11" height="11" class="bar {class}"/><text x="{:.1}" y="{ly:.1}" class="legend">{}</text>"#,
            ly - 10.0,
            lx + 16.0,
            esc(text)
        );
        lx += 16.0 + text.chars().count() as f64 * 6.8 + 26.0;
    }
    s.push_str("</svg>");
    s
}

/// Log-scale chart of every dataset's retention: the default (bar), the
/// archive period after it, the tenant bounds (whisker) and overrides (dots).
pub fn svg_retention(policy: &Policy) -> String {
    let row_h = 30.0;
    let (left, top, w) = (170.0, 12.0, CHART_W - 190.0);
    let h = row_h * policy.datasets.len().max(1) as f64;
    let total_h = top + h + 52.0;
    let mut s = format!(
        r#"<svg class="chart chart-retention" viewBox="0 0 {CHART_W} {total_h}" width="{CHART_W}" height="{total_h}" role="img" aria-label="retention by dataset">"#
    );
    let hours = |d: Duration| d.pg_micros() as f64 / 3_600_000_000.0;
    let mut max_h: f64 = 24.0 * 30.0;
    for ds in &policy.datasets {
        max_h =
            max_h.max(hours(ds.keep) + ds.archive.as_ref().map(|a| hours(a.keep)).unwrap_or(0.0));
        if let Some(m) = ds.max_keep {
            max_h = max_h.max(hours(m));
        }
    }
    for o in &policy.overrides {
        max_h = max_h.max(hours(o.keep));
    }
    let lo = 1.0f64.ln();
    let hi = (max_h * 1.3).ln();
    let x = |hrs: f64| left + w * (hrs.max(1.0).ln() - lo) / (hi - lo);
    for (label, hrs) in [
        ("1 hour", 1.0),
        ("1 day", 24.0),
        ("1 week", 168.0),
        ("1 month", 720.0),
        ("1 year", 8_640.0),
        ("10 years", 86_400.0),
        ("100 years", 864_000.0),
    ] {
        if hrs > max_h * 1.3 {
            break;
        }
        let xx = x(hrs);
        let _ = write!(
            s,
            r#"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" class="grid"/><text x="{xx:.1}" y="{:.1}" class="tick" text-anchor="middle">{label}</text>"#,
            top + h,
            top + h + 14.0
        );
    }
    let overrides = policy.overrides_by_dataset();
    for (i, ds) in policy.datasets.iter().enumerate() {
        let cy = top + row_h * i as f64 + row_h / 2.0;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="name" text-anchor="end">{}</text>"#,
            left - 8.0,
            cy + 4.0,
            esc(&ds.name)
        );
        let kx = x(hours(ds.keep));
        let _ = write!(
            s,
            r#"<rect x="{left}" y="{:.1}" width="{:.1}" height="12" class="bar within"><title>{}</title></rect>"#,
            cy - 6.0,
            (kx - left).max(1.0),
            esc(&format!("{}: kept {}", ds.name, ds.keep))
        );
        if let (Some(a), OnExpiry::Archive) = (&ds.archive, ds.on_expiry) {
            let ax = x(hours(ds.keep) + hours(a.keep));
            let _ = write!(
                s,
                r#"<rect x="{kx:.1}" y="{:.1}" width="{:.1}" height="12" class="bar archive"><title>{}</title></rect>"#,
                cy - 6.0,
                (ax - kx).max(1.0),
                esc(&format!("{}: then {} in the archive", ds.name, a.keep))
            );
        }
        if ds.tenant.is_some() && (ds.min_keep.is_some() || ds.max_keep.is_some()) {
            let a = x(ds.min_keep.map(hours).unwrap_or(1.0));
            let b = x(ds.max_keep.map(hours).unwrap_or(max_h * 1.3));
            let y = cy + 10.0;
            let _ = write!(
                s,
                r#"<g class="bounds"><title>{}</title><line x1="{a:.1}" y1="{y:.1}" x2="{b:.1}" y2="{y:.1}"/><line x1="{a:.1}" y1="{:.1}" x2="{a:.1}" y2="{:.1}"/><line x1="{b:.1}" y1="{:.1}" x2="{b:.1}" y2="{:.1}"/></g>"#,
                esc(&format!(
                    "{}: tenants may choose {} to {}",
                    ds.name,
                    ds.min_keep
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "any".into()),
                    ds.max_keep
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "any".into())
                )),
                y - 3.0,
                y + 3.0,
                y - 3.0,
                y + 3.0
            );
        }
        for o in overrides.get(ds.name.as_str()).into_iter().flatten() {
            let ox = x(hours(o.keep));
            let _ = write!(
                s,
                r#"<circle cx="{ox:.1}" cy="{cy:.1}" r="4.5" class="override"><title>{}</title></circle>"#,
                esc(&format!(
                    "{}: {} keeps {}",
                    ds.name,
                    who(&o.tenant, &o.environment),
                    o.keep
                ))
            );
        }
    }
    let ly = top + h + 38.0;
    let mut lx = left;
    for (class, text) in [
        ("bar within", "retention"),
        ("bar archive", "then in the archive"),
        ("override", "override"),
    ] {
        if class == "override" {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4.5" class="override"/>"#,
                lx + 5.0,
                ly - 4.0
            );
        } else {
            let _ = write!(
                s,
                r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" class="{class}"/>"#,
                ly - 9.0
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{ly:.1}" class="legend">{text}</text>"#,
            lx + 14.0
        );
        lx += 14.0 + text.len() as f64 * 6.8 + 26.0;
    }
    let y = ly - 4.0;
    let _ = write!(
        s,
        r#"<g class="bounds"><line x1="{lx:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><line x1="{lx:.1}" y1="{:.1}" x2="{lx:.1}" y2="{:.1}"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/></g><text x="{:.1}" y="{ly:.1}" class="legend">tenant bounds</text><text x="{:.1}" y="{ly:.1}" class="note" text-anchor="end">log scale</text></svg>"#,
        lx + 22.0,
        y - 3.0,
        y + 3.0,
        lx + 22.0,
        y - 3.0,
        lx + 22.0,
        y + 3.0,
        lx + 28.0,
        left + w,
    );
    s
}

const CSS: &str = r#"
:root { --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --card: #ffffff; --bg: #f6f7f9;
        --ok: #0f766e; --warn: #b45309; --bad: #b91c1c; --within: #3b82f6; --past: #dc2626; --held: #7c3aed; --archive: #93c5fd; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 18px 0 8px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
p.meta { color: var(--muted); margin: 0 0 16px; }
.notice { border-left: 4px solid var(--warn); background: #fffbeb; padding: 10px 14px; margin: 12px 0 20px; border-radius: 4px; }
section.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 20px 22px; margin: 18px 0; break-inside: avoid-page; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
table.runs td:first-child, table.summary td:nth-child(4), table.summary td:nth-child(7), table.summary td:nth-child(8) { white-space: nowrap; }
table.runs th { white-space: normal; }
.scroll { overflow-x: auto; }
table.runs td:last-child { color: var(--muted); font-size: 12px; }
dl.policy { display: grid; grid-template-columns: 170px 1fr; gap: 4px 16px; margin: 0; }
dl.policy dt { color: var(--muted); font-weight: 600; }
dl.policy dd { margin: 0; }
dl.policy ul { margin: 0; padding-left: 18px; }
code { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f3f4f6; padding: 1px 4px; border-radius: 3px; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 12px; font-weight: 600; white-space: nowrap; }
.badge.ok { background: #ccfbf1; color: var(--ok); } .badge.warn { background: #fef3c7; color: var(--warn); }
.badge.bad { background: #fee2e2; color: var(--bad); } .badge.none { background: #e5e7eb; color: var(--muted); }
.head { display: flex; justify-content: space-between; align-items: baseline; gap: 12px; }
ul.facts { margin: 0; padding-left: 18px; }
.charts { display: grid; grid-template-columns: 1fr; gap: 8px; }
.chart-box { margin: 6px 0 4px; }
.chart-box figcaption { color: var(--muted); font-size: 12px; margin-bottom: 2px; }
svg.chart { width: 100%; height: auto; display: block; }
svg .grid { stroke: #eef0f3; stroke-width: 1; }
svg .axis { stroke: #9ca3af; stroke-width: 1; }
svg .zero { stroke: var(--ok); stroke-width: 2; }
svg .tick { fill: var(--muted); font-size: 10.5px; }
svg .label, svg .note { fill: var(--muted); font-size: 11.5px; }
svg .legend { fill: var(--ink); font-size: 11.5px; }
svg .name { fill: var(--ink); font-size: 12.5px; font-weight: 600; }
svg .empty { fill: #fafafa; stroke: var(--line); }
svg .bar.ok { fill: var(--ok); } svg .bar.warn { fill: #f59e0b; } svg .bar.bad { fill: var(--bad); }
svg .bar.within, svg .within { fill: var(--within); } svg .bar.past { fill: var(--past); }
svg .bar.held { fill: var(--held); } svg .bar.archive, svg .archive { fill: var(--archive); }
svg .override { fill: #f59e0b; stroke: #fff; stroke-width: 1.5; }
svg .bounds line { stroke: var(--ink); stroke-width: 1.2; }
svg .deadline { stroke: var(--ink); stroke-width: 1.5; stroke-dasharray: 5 3; }
svg .deadline-label { fill: var(--ink); font-size: 11px; font-weight: 600; }
footer { color: var(--muted); font-size: 12px; margin-top: 24px; }
@media print { body { background: #fff; } section.card { border-color: #ccc; } }
"#;

/// A table; `escape: false` when the cells are HTML already.
fn html_table(
    out: &mut String,
    class: &str,
    headers: &[&str],
    numeric: &[usize],
    rows: &[Vec<String>],
    escape: bool,
) {
    let _ = write!(out, "<table class=\"{class}\"><thead><tr>");
    for (i, h) in headers.iter().enumerate() {
        let class = if numeric.contains(&i) {
            " class=\"num\""
        } else {
            ""
        };
        let _ = write!(out, "<th{class}>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            let class = if numeric.contains(&i) {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(
                out,
                "<td{class}>{}</td>",
                if escape { esc(c) } else { c.clone() }
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n");
}

/// The report as one self-contained HTML page.
pub fn html(r: &Report) -> String {
    let today = day(r.generated_at);
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(s, "<title>Data retention report — {}</title>", esc(&today));
    let _ = writeln!(s, "<style>{CSS}</style>\n</head>\n<body>\n<main>");
    let _ = writeln!(s, "<h1>Data retention report</h1>");
    let _ = writeln!(
        s,
        "<p class=\"meta\">Generated {} by pgretain from {}.{}</p>",
        esc(&when(r.generated_at)),
        esc(&r.policy_source),
        r.database
            .as_ref()
            .map(|d| format!(" Evidence read from {} in one snapshot.", esc(&d.name)))
            .unwrap_or_default()
    );
    match &r.database {
        None => s.push_str("<div class=\"notice\"><strong>Policy only.</strong> No database was given (<code>--database-url</code> or <code>DATABASE_URL</code>), so this report shows what the policy says, not evidence that it is enforced.</div>\n"),
        Some(db) if !db.deployed => s.push_str("<div class=\"notice\"><strong>pgretain has not been applied to this database</strong>: nothing in it is enforced.</div>\n"),
        Some(_) => {}
    }

    s.push_str("<section class=\"card\"><h2>Summary</h2>\n");
    let (rows, badges): (Vec<Vec<String>>, Vec<(String, &str)>) =
        summary_rows(r, |run| run.started_at.format("%Y-%m-%d %H:%M").to_string())
            .into_iter()
            .unzip();
    let mut table = String::new();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .zip(&badges)
        .map(|(row, (text, tone))| {
            let mut cells: Vec<String> = row.iter().map(|c| esc(c)).collect();
            cells[0] = format!("<a href=\"#{}\">{}</a>", esc(&row[0]), esc(&row[0]));
            if r.database.is_some() {
                cells.push(format!("<span class=\"badge {tone}\">{}</span>", esc(text)));
            }
            cells
        })
        .collect();
    if r.database.is_some() {
        html_table(
            &mut table,
            "summary",
            &[
                "Dataset",
                "Table",
                "Retention",
                "On expiry",
                "Rows",
                "Overdue now",
                "Last run (UTC)",
                "Status",
            ],
            &[4, 5],
            &cells,
            false,
        );
    } else {
        html_table(
            &mut table,
            "summary",
            &["Dataset", "Table", "Retention", "On expiry", "Owner"],
            &[],
            &cells,
            false,
        );
    }
    s.push_str("<div class=\"scroll\">");
    s.push_str(&table);
    s.push_str("</div>\n<h3>Retention at a glance</h3>\n<figure class=\"chart-box\">");
    s.push_str(&svg_retention(&r.policy));
    s.push_str("</figure>\n</section>\n");

    for ds in &r.policy.datasets {
        let e = r.database.as_ref().and_then(|d| d.datasets.get(&ds.name));
        let (text, tone) = status(e, r.database.as_ref());
        let _ = writeln!(
            s,
            "<section class=\"card\" id=\"{}\"><div class=\"head\"><h2>{}</h2><span class=\"badge {tone}\">{}</span></div>",
            esc(&ds.name),
            esc(&ds.name),
            esc(&text)
        );
        s.push_str("<h3>Policy</h3>\n<dl class=\"policy\">");
        for (label, lines) in policy_in_words(&r.policy, ds, &today) {
            let _ = write!(s, "<dt>{}</dt><dd>", esc(label));
            if lines.len() == 1 {
                s.push_str(&esc_code(&lines[0]));
            } else {
                s.push_str("<ul>");
                for l in &lines {
                    let _ = write!(s, "<li>{}</li>", esc_code(l));
                }
                s.push_str("</ul>");
            }
            s.push_str("</dd>");
        }
        s.push_str("</dl>\n");
        if let Some(db) = &r.database {
            s.push_str("<h3>Evidence</h3>\n");
            match e {
                None => {
                    let _ = writeln!(
                        s,
                        "<p>Not enforced in {}: <code>pgretain apply</code> has not created this dataset there.</p>",
                        esc(&db.name)
                    );
                }
                Some(e) => {
                    s.push_str("<ul class=\"facts\">");
                    for line in evidence_sentences(e, r.generated_at) {
                        let _ = write!(s, "<li>{}</li>", esc(&line));
                    }
                    s.push_str("</ul>\n<div class=\"charts\">");
                    let _ = write!(
                        s,
                        "<figure class=\"chart-box\"><figcaption>Age of the stored rows against the deadline</figcaption>{}</figure>",
                        svg_ages(ds, e)
                    );
                    let _ = write!(
                        s,
                        "<figure class=\"chart-box\"><figcaption>Rows removed per enforcement run (last {RUNS_CHARTED})</figcaption>{}</figure>",
                        svg_runs(&ds.name, &e.history, e.archives)
                    );
                    s.push_str("</div>\n");
                    let _ = writeln!(s, "<h3>Last runs (retention.run_log)</h3>");
                    if e.runs.is_empty() {
                        s.push_str("<p>No runs recorded yet.</p>\n");
                    } else {
                        let rows: Vec<Vec<String>> =
                            e.runs.iter().map(|r| run_cells(r, e.archives)).collect();
                        s.push_str("<div class=\"scroll\">");
                        html_table(&mut s, "runs", &RUN_HEADERS, &[3, 4, 5, 6, 7], &rows, true);
                        s.push_str("</div>\n");
                    }
                }
            }
        }
        s.push_str("</section>\n");
    }
    let _ = writeln!(
        s,
        "<footer>Deadlines are computed as the database computes them: the row's time (UTC) plus the retention in force for its tenant and environment. A run removes exactly the rows whose deadline is before its start, unless a legal hold covers them. This file is self-contained and needs no network.</footer>"
    );
    s.push_str("</main>\n</body>\n</html>\n");
    s
}

impl Outcome for ReportOutput {
    fn text(&self) -> String {
        match self {
            ReportOutput::Markdown(md) => md.clone(),
            ReportOutput::Files(files) => files
                .iter()
                .map(|f| format!("wrote {}\n", f.display()))
                .collect(),
        }
    }
}

impl Failure for ReportError {
    fn exit_code(&self) -> i32 {
        match self {
            ReportError::Database(_) => exit::DATABASE,
            ReportError::Policy(_) | ReportError::Input(_) => exit::INVALID,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_five_characters() {
        assert_eq!(
            esc(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(esc_code("by `id` <x>"), "by <code>id</code> &lt;x&gt;");
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(221.6), 250.0);
        assert_eq!(nice_step(12.0), 20.0);
        assert_eq!(nice_step(500.0), 500.0);
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(age_short(30.0, 60.0), "30");
        assert_eq!(age_short(1.0, 30.0), "24 h");
        assert_eq!(age_short(0.0, 45.6), "0");
    }
}
