//! Enforcement and erasure now: the exact command the dataset's pg_cron job
//! runs, and the generated `retention.erase()` and
//! `retention.erase_subject()` functions, with what each did read back from
//! `retention.run_log` or returned.

use postgres::Client;

use super::catalog;
use super::runs::{self, RunRow};
use super::{col, ctx, pg_message, DbError};
use crate::render::names::job_command_named;
use crate::render::text::lit;

/// The datasets this database enforces (all of them when `only` is empty),
/// or an error naming the first of `only` it does not enforce.
pub fn datasets(client: &mut Client, only: &[String]) -> Result<Vec<String>, DbError> {
    let all: Vec<String> = catalog::datasets(client)?
        .into_iter()
        .map(|d| d.name)
        .collect();
    if only.is_empty() {
        return Ok(all);
    }
    for d in only {
        if !all.contains(d) {
            return Err(DbError(format!(
                "unknown dataset `{d}`; this database enforces: {}",
                all.join(", ")
            )));
        }
    }
    Ok(only.to_vec())
}

/// Run the job command of `dataset`, and return the run it logged (`None`
/// if it logged none).
pub fn enforce(client: &mut Client, dataset: &str) -> Result<Option<RunRow>, DbError> {
    let before = runs::last_id(client)?;
    let call = client.batch_execute(&job_command_named(dataset));
    let logged = runs::enforcement_after(client, dataset, before)?;
    if let Err(e) = call {
        return Err(DbError(format!(
            "enforcement of `{dataset}` failed: {}",
            pg_message(&e)
        )));
    }
    Ok(logged)
}

/// What `retention.erase()` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    pub rows_deleted: i64,
    pub archive_rows_deleted: i64,
    pub rows_kept_by_hold: i64,
    /// The holds that kept rows, by reason.
    pub holds: Option<String>,
}

/// Erase every row of `dataset` whose erase_by column equals `key` (archive
/// included), through `retention.erase()`.
pub fn erase(client: &mut Client, dataset: &str, key: &str) -> Result<Erased, DbError> {
    let sql = format!(
        "SELECT * FROM retention.erase({}::text, $1::text)",
        lit(dataset)
    );
    let r = client
        .query_one(sql.as_str(), &[&key])
        .map_err(|e| DbError(format!("erasure in `{dataset}` failed: {}", pg_message(&e))))?;
    Ok(Erased {
        rows_deleted: col(&r, 0)?,
        archive_rows_deleted: col(&r, 1)?,
        rows_kept_by_hold: col(&r, 2)?,
        holds: col(&r, 3)?,
    })
}

/// The subjects of erasure this database knows (`retention.subject`),
/// sorted; none when its runtime predates subjects (version 2 or older).
pub fn subjects(client: &mut Client) -> Result<Vec<String>, DbError> {
    let exists: bool = col(
        &client
            .query_one(
                "SELECT pg_catalog.to_regclass('retention.subject'::text) IS NOT NULL",
                &[],
            )
            .map_err(ctx("looking for retention.subject"))?,
        0,
    )?;
    if !exists {
        return Ok(Vec::new());
    }
    client
        .query(
            "SELECT DISTINCT name FROM retention.subject ORDER BY name",
            &[],
        )
        .map_err(ctx("reading the subjects"))?
        .iter()
        .map(|r| col(r, 0))
        .collect()
}

/// What `retention.erase_subject()` did in one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasedIn {
    pub dataset: String,
    pub erased: Erased,
}

/// Erase the rows of every dataset of `subject` whose subject column equals
/// `key` (archives included), in one transaction, through
/// `retention.erase_subject()`: one result per dataset, by dataset name.
pub fn erase_subject(
    client: &mut Client,
    subject: &str,
    key: &str,
) -> Result<Vec<ErasedIn>, DbError> {
    let rows = client
        .query(
            "SELECT dataset, rows_deleted, archive_rows_deleted, rows_kept_by_hold, holds FROM retention.erase_subject($1::text, $2::text)",
            &[&subject, &key],
        )
        .map_err(|e| {
            DbError(format!(
                "erasure of subject `{subject}` failed, and nothing was erased: {}",
                pg_message(&e)
            ))
        })?;
    rows.iter()
        .map(|r| {
            Ok(ErasedIn {
                dataset: col(r, 0)?,
                erased: Erased {
                    rows_deleted: col(r, 1)?,
                    archive_rows_deleted: col(r, 2)?,
                    rows_kept_by_hold: col(r, 3)?,
                    holds: col(r, 4)?,
                },
            })
        })
        .collect()
}
