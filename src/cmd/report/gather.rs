//! Gathering the report: the policy (from the compiled state in
//! `generated/`, or from a policy directory) and, with a database, the
//! evidence from it, read in one read-only snapshot: `retention.run_log`,
//! the age of the stored rows against their deadline, the oldest row, the
//! tenant settings. Every query is `db`'s.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use postgres::Transaction;

use super::{ReportError, ReportOptions};
use crate::db::catalog::{self, Interval, TenantSettings};
use crate::db::evidence::{self, Oldest};
use crate::db::runs::{self, RunRow};
use crate::db::{connect, session, DbError};
use crate::generated::{read_state, STATE_FILE};
use crate::model::{Dataset, Duration, OnExpiry, Policy};

/// Buckets of the age histogram between 0 and 1.5 × the retention.
pub(super) const AGE_BUCKETS: i32 = 12;

/// Above this many rows (planner estimate), the age histogram is computed
/// from a sample of about [`SAMPLE_ROWS`] rows instead of a full scan.
const SAMPLE_ABOVE: f64 = 2_000_000.0;

const SAMPLE_ROWS: f64 = 1_000_000.0;

/// Runs listed in the table, and shown in the chart.
const RUNS_LISTED: i64 = 10;

pub(super) const RUNS_CHARTED: i64 = 30;

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
