//! `pgretain erase DATASET KEY`: on-demand erasure through the generated
//! `retention.erase()` function, as the role the jobs run as. A legal hold
//! outranks the request: held rows stay, and the outcome says how many and
//! under which hold (exit 1).

use serde::Serialize;

use super::Outcome;
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
