//! `pgretain erase DATASET KEY`: on-demand erasure through the generated
//! `retention.erase()` function, as the role the jobs run as; and `pgretain
//! erase --subject NAME KEY`: erasure across every dataset of a subject
//! (the policy's `subjects`), through `retention.erase_subject()`, in one
//! transaction. A legal hold outranks the request: held rows stay, and the
//! outcome says how many and under which hold (exit 1).
//!
//! `erase` reads no policy files: the subjects are the database's
//! (`retention.subject`, written by the applied migrations), so an unknown
//! subject is refused (exit 2) with the list of the ones it has.

use std::fmt;

use serde::Serialize;

use super::{exit, Failure, Outcome};
use crate::db::{connect, enforce, DbError};

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EraseResult {
    /// The dataset erased from.
    pub dataset: String,
    /// The erase_by value erased.
    pub key: String,
    pub rows_deleted: i64,
    pub archive_rows_deleted: i64,
    pub rows_kept_by_hold: i64,
    /// The holds that kept rows.
    pub holds: Option<String>,
}

/// `pgretain erase DATASET KEY`.
pub fn erase(database_url: Option<&str>, dataset: &str, key: &str) -> Result<EraseResult, DbError> {
    let cfg = connect::config(database_url)?;
    let mut client = connect::connect(&cfg)?;
    connect::act_as_retention_owner(&mut client)?;
    enforce::datasets(&mut client, &[dataset.to_string()])?;
    let e = enforce::erase(&mut client, dataset, key)?;
    Ok(EraseResult {
        dataset: dataset.to_string(),
        key: key.to_string(),
        rows_deleted: e.rows_deleted,
        archive_rows_deleted: e.archive_rows_deleted,
        rows_kept_by_hold: e.rows_kept_by_hold,
        holds: e.holds,
    })
}

impl Outcome for EraseResult {
    fn text(&self) -> String {
        format!(
            "{} {}: erased {} row(s) and {} archived row(s)\n",
            self.dataset, self.key, self.rows_deleted, self.archive_rows_deleted
        )
    }

    fn problem(&self) -> Option<String> {
        (self.rows_kept_by_hold > 0).then(|| {
            format!(
                "kept {} row(s) under legal hold: {}",
                self.rows_kept_by_hold,
                self.holds.clone().unwrap_or_default()
            )
        })
    }
}

/// What an erasure by subject did, per dataset (by dataset name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectErased {
    /// The subject erased.
    pub subject: String,
    /// The key erased.
    pub key: String,
    /// One result per dataset of the subject.
    pub datasets: Vec<EraseResult>,
}

/// Why an erasure by subject could not be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectError {
    /// The database has no such subject (exit 2).
    UnknownSubject { subject: String, known: Vec<String> },
    /// The database failed or refused; nothing was erased (exit 3).
    Db(DbError),
}

impl From<DbError> for SubjectError {
    fn from(e: DbError) -> Self {
        SubjectError::Db(e)
    }
}

impl fmt::Display for SubjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectError::UnknownSubject { subject, known } if known.is_empty() => write!(
                f,
                "unknown subject `{subject}`: this database has no subjects; add `subjects` to the policy, then `pgretain compile` and `pgretain apply`"
            ),
            SubjectError::UnknownSubject { subject, known } => write!(
                f,
                "unknown subject `{subject}`; this database's subjects are: {}",
                known.join(", ")
            ),
            SubjectError::Db(e) => e.fmt(f),
        }
    }
}

impl Failure for SubjectError {
    fn exit_code(&self) -> i32 {
        match self {
            SubjectError::UnknownSubject { .. } => exit::INVALID,
            SubjectError::Db(_) => exit::DATABASE,
        }
    }
}

/// `pgretain erase --subject NAME KEY`.
pub fn erase_subject(
    database_url: Option<&str>,
    subject: &str,
    key: &str,
) -> Result<SubjectErased, SubjectError> {
    let cfg = connect::config(database_url)?;
    let mut client = connect::connect(&cfg)?;
    connect::act_as_retention_owner(&mut client)?;
    let known = enforce::subjects(&mut client)?;
    if !known.iter().any(|s| s == subject) {
        return Err(SubjectError::UnknownSubject {
            subject: subject.to_string(),
            known,
        });
    }
    let erased = enforce::erase_subject(&mut client, subject, key)?;
    Ok(SubjectErased {
        subject: subject.to_string(),
        key: key.to_string(),
        datasets: erased
            .into_iter()
            .map(|e| EraseResult {
                dataset: e.dataset,
                key: key.to_string(),
                rows_deleted: e.erased.rows_deleted,
                archive_rows_deleted: e.erased.archive_rows_deleted,
                rows_kept_by_hold: e.erased.rows_kept_by_hold,
                holds: e.erased.holds,
            })
            .collect(),
    })
}

impl Outcome for SubjectErased {
    fn text(&self) -> String {
        let mut s = format!("subject {} {}:\n", self.subject, self.key);
        for d in &self.datasets {
            s.push_str(&format!("  {}", d.text()));
        }
        s
    }

    fn problem(&self) -> Option<String> {
        let kept: Vec<String> = self
            .datasets
            .iter()
            .filter_map(|d| d.problem().map(|p| format!("{}: {p}", d.dataset)))
            .collect();
        (!kept.is_empty()).then(|| kept.join("\n"))
    }
}
