//! `pgretain check`: validate the policy (SPEC §5; exit 0 valid, 2
//! invalid). The checks are `policy`'s; this says what it found.

use std::path::Path;

use serde::Serialize;

use super::Outcome;
use crate::diagnostic::Diagnostics;
use crate::model::Policy;
use crate::words::noun;

/// `pgretain check`: validate the policy in `dir`. On success, a one-line
/// summary; on failure, every error found.
pub fn check(dir: &Path) -> Result<String, Diagnostics> {
    let policy = crate::policy::load(dir)?;
    Ok(summary(&policy))
}

/// "policy ok: 4 datasets, 3 overrides, 1 hold (2 files)".
pub fn summary(p: &Policy) -> String {
    let count = |n: usize, w: &str| format!("{n} {}", noun(n as i64, w));
    format!(
        "policy ok: {}, {}, {} ({})",
        count(p.datasets.len(), "dataset"),
        count(p.overrides.len(), "override"),
        count(p.holds.len(), "hold"),
        count(p.files.len(), "file"),
    )
}

/// A valid policy, summed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checked {
    pub summary: String,
}

impl Outcome for Checked {
    fn text(&self) -> String {
        format!("{}\n", self.summary)
    }
}
