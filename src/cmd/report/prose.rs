//! The report in words, for both renderings: the policy of each dataset in
//! plain sentences, the evidence in sentences, each dataset's status, the
//! rows of the summary and run tables. Pure functions, no I/O.

use chrono::{DateTime, Utc};

use super::gather::{Bucket, DatabaseEvidence, Evidence, Report};
use crate::db::runs::RunRow;
use crate::model::{ChangesApplyTo, Dataset, Duration, OnExpiry, Policy};
use crate::render::names::{job_command, qualified};
use crate::words::{self, age, plural, thousands};

/// A bucket's ages in words: "future", "30–60 days", "≥ 2.7 years".
pub(super) fn bucket_label(b: &Bucket) -> String {
    match (b.from_days, b.to_days) {
        (None, _) => "future".into(),
        (Some(a), None) => format!("≥ {}", age(a)),
        (Some(a), Some(z)) => format!("{}–{}", age_short(a, z), age(z)),
    }
}

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

pub(super) fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub(super) fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

pub(super) fn who(tenant: &Option<String>, env: &Option<String>) -> String {
    words::who(tenant.as_deref(), env.as_deref())
        .unwrap_or_else(|| "every tenant and environment".into())
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
pub(super) fn status(
    e: Option<&Evidence>,
    db: Option<&DatabaseEvidence>,
) -> (String, &'static str) {
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
pub(super) fn evidence_sentences(e: &Evidence, now: DateTime<Utc>) -> Vec<String> {
    let mut s = Vec::new();
    if e.total_rows > 0 {
        s.push(format!(
            "{} stored now{}.",
            plural(e.total_rows, "row"),
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
            plural(r.removed(e.archives), "row")
        )),
        None => s.push("No enforcement run is recorded yet.".into()),
    }
    s
}

pub(super) fn run_cells(r: &RunRow, archives: bool) -> Vec<String> {
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

pub(super) const RUN_HEADERS: [&str; 9] = [
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

/// The report as Markdown.
/// The summary table, one row per dataset: name, table, retention, on
/// expiry and, with a database, rows, overdue rows and the last run (shown
/// by `last_run`), else the owner; with each row its status badge.
pub(super) fn summary_rows(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_well() {
        assert_eq!(age_short(30.0, 60.0), "30");
        assert_eq!(age_short(1.0, 30.0), "24 h");
        assert_eq!(age_short(0.0, 45.6), "0");
    }
}
