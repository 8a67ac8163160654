//! `pgretain report`: the compliance report (SPEC §1, §5): what is kept for
//! how long and why, and, with a database, the evidence that it is enforced.
//!
//! Two stages. `gather::build` reads a `Report`: the policy and the evidence
//! (`gather`). Then it is rendered with no I/O: in words (`prose`), as
//! Markdown (`markdown`) and as one self-contained HTML page (`html`, with
//! the charts of `svg`). Nothing here changes the database.

pub mod gather;
pub mod html;
pub mod markdown;
mod prose;
pub mod svg;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{exit, Failure, Outcome};
use crate::db::DbError;
use crate::diagnostic::Diagnostics;

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

/// Run report: build it and write or return it.
pub fn report(opts: &ReportOptions) -> Result<ReportOutput, ReportError> {
    let r = gather::build(opts)?;
    let Some(out) = &opts.out else {
        return Ok(ReportOutput::Markdown(markdown::markdown(&r)));
    };
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text)
            .map_err(|e| ReportError::Input(format!("cannot write {}: {e}", path.display())))
    };
    if out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("md"))
    {
        write(out, &markdown::markdown(&r))?;
        return Ok(ReportOutput::Files(vec![out.clone()]));
    }
    let md = out.with_extension("md");
    write(out, &html::html(&r))?;
    write(&md, &markdown::markdown(&r))?;
    Ok(ReportOutput::Files(vec![out.clone(), md]))
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
