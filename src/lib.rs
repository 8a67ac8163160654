//! pgretain: compile declarative YAML data-retention policies into
//! PostgreSQL partitioning, enforcement procedures and pg_cron jobs.
//!
//! The pipeline, one module per stage:
//! `policy` (parse & validate) → `model` (resolved policy) → SQL rendering
//! → `generated/` migrations → database commands. `main.rs` only parses
//! arguments and calls the library functions below.

pub mod apply;
pub mod cmd;
pub mod compile;
pub mod db;
pub mod diagnostic;
pub mod enforce;
pub mod generated;
pub mod hash;
pub mod model;
pub mod plan;
pub mod policy;
pub mod render;
pub mod report;
pub mod status;
pub mod verify;
pub mod words;

use std::path::Path;

pub use diagnostic::{Diagnostic, Diagnostics};

/// Process exit codes (SPEC §5).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// A check found a problem (stale output, overdue rows, rows kept by a hold).
    pub const PROBLEM: i32 = 1;
    /// Invalid input or usage.
    pub const INVALID: i32 = 2;
    /// Database error.
    pub const DATABASE: i32 = 3;
}

/// `pgretain check`: validate the policy in `dir`. On success, a one-line
/// summary; on failure, every error found.
pub fn check(dir: &Path) -> Result<String, Diagnostics> {
    let policy = policy::load(dir)?;
    Ok(summary(&policy))
}

/// "policy OK: 4 datasets, 3 overrides, 1 hold (2 files)".
pub fn summary(p: &model::Policy) -> String {
    let plural = |n: usize, w: &str| format!("{n} {}", words::noun(n as i64, w));
    format!(
        "policy ok: {}, {}, {} ({})",
        plural(p.datasets.len(), "dataset"),
        plural(p.overrides.len(), "override"),
        plural(p.holds.len(), "hold"),
        plural(p.files.len(), "file"),
    )
}

/// `pgretain schema`: the JSON Schema of a policy file.
pub fn schema() -> String {
    policy::spec::json_schema()
}
