//! `pgretain compile`: the policy into refinery migrations in `generated/`
//! (SPEC §4), or, with `--check`, whether `generated/` is current.
//!
//! Orchestration only: the policy is loaded by `policy`, the next migration
//! decided by `compile`, the files read and written by `generated`. Nothing
//! is written unless the policy is valid, `generated/` intact and the change
//! allowed.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{exit, Failure, Outcome};
use crate::compile::{self, Previous};
use crate::diagnostic::Diagnostics;
use crate::generated::{self, STATE_FILE};
use crate::render::RUNTIME_VERSION;

/// Options of `compile`.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// The policy directory (default `policies`).
    pub policy_dir: PathBuf,
    /// Where migrations go (default `generated`).
    pub generated_dir: PathBuf,
    /// Write nothing; report whether `generated/` is current.
    pub check: bool,
    /// Accept changes that destroy data (removing a dataset drops its table).
    pub allow_destructive: bool,
}

/// What compile did or found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CompileOutcome {
    /// Nothing changed since the last compile.
    UpToDate,
    /// A migration was written (its file name) with these changes.
    Written { file: String, changes: Vec<String> },
    /// `--check`: `generated/` is stale, for these reasons.
    Stale(Vec<String>),
}

/// Why compile failed.
#[derive(Debug)]
pub enum CompileError {
    /// The policy is invalid.
    Invalid(Diagnostics),
    /// The change cannot be migrated safely (or needs `--allow-destructive`).
    Refused(Vec<String>),
    /// `generated/` cannot be read or written, or its state file is damaged.
    Io(String),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::Invalid(d) => write!(f, "{d}"),
            CompileError::Refused(reasons) => {
                for r in reasons {
                    writeln!(f, "error: {r}")?;
                }
                write!(f, "error: compile refused the change; nothing was written")
            }
            CompileError::Io(e) => write!(f, "error: {e}"),
        }
    }
}

impl From<generated::Error> for CompileError {
    fn from(e: generated::Error) -> Self {
        CompileError::Io(e.0)
    }
}

/// Run compile.
pub fn compile(opts: &CompileOptions) -> Result<CompileOutcome, CompileError> {
    let dir = &opts.generated_dir;
    let policy = crate::policy::load(&opts.policy_dir).map_err(CompileError::Invalid)?;
    let state = generated::read_state(dir)?;
    let files = generated::migration_files(dir)?;
    let damaged = match &state {
        Some(st) => generated::damaged(dir, st, &files),
        None if !files.is_empty() => {
            return Err(CompileError::Io(format!(
                "{} holds migrations but no {STATE_FILE}; restore the state file from git, or start from an empty directory",
                dir.display()
            )))
        }
        None => Vec::new(),
    };
    if !damaged.is_empty() {
        return if opts.check {
            Ok(CompileOutcome::Stale(damaged))
        } else {
            Err(CompileError::Io(damaged.join("; ")))
        };
    }
    if let Some(st) = state
        .as_ref()
        .filter(|st| st.runtime_version > RUNTIME_VERSION)
    {
        return Err(CompileError::Refused(vec![format!(
            "{} was written by a newer pgretain (runtime version {}; this pgretain has version {RUNTIME_VERSION}): compiling with this one would install an older runtime. Upgrade pgretain",
            dir.join(STATE_FILE).display(),
            st.runtime_version,
        )]));
    }
    let previous = state.as_ref().map(|st| Previous {
        policy: &st.policy,
        runtime_version: st.runtime_version,
        last_version: generated::last_version(&files),
    });
    let Some(migration) = compile::next_migration(previous, &policy, opts.allow_destructive)
        .map_err(CompileError::Refused)?
    else {
        return Ok(CompileOutcome::UpToDate);
    };
    if opts.check {
        let mut reasons = vec![format!(
            "the policy changed since the last compile; `pgretain compile` would write {}:",
            migration.file
        )];
        reasons.extend(migration.changes.iter().map(|c| format!("  {c}")));
        return Ok(CompileOutcome::Stale(reasons));
    }
    generated::write(
        dir,
        state,
        &migration.file,
        &migration.sql,
        policy,
        RUNTIME_VERSION,
    )?;
    Ok(CompileOutcome::Written {
        file: migration.file,
        changes: migration.changes,
    })
}

impl Failure for CompileError {
    fn exit_code(&self) -> i32 {
        exit::INVALID
    }
}

/// What compile did or found in `generated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compiled {
    /// The generated directory.
    pub generated: PathBuf,
    pub outcome: CompileOutcome,
}

impl Compiled {
    /// The outcome of compiling into `generated`.
    pub fn new(generated: &Path, outcome: CompileOutcome) -> Compiled {
        Compiled {
            generated: generated.to_path_buf(),
            outcome,
        }
    }
}

impl Outcome for Compiled {
    fn text(&self) -> String {
        let dir = self.generated.display();
        match &self.outcome {
            CompileOutcome::UpToDate => format!("{dir} is up to date\n"),
            CompileOutcome::Written { file, changes } => {
                let mut s = format!("wrote {}\n", self.generated.join(file).display());
                for c in changes {
                    s.push_str(&format!("  {c}\n"));
                }
                s
            }
            CompileOutcome::Stale(_) => String::new(),
        }
    }

    fn problem(&self) -> Option<String> {
        let CompileOutcome::Stale(reasons) = &self.outcome else {
            return None;
        };
        let mut s = format!("error: {} is out of date:", self.generated.display());
        for r in reasons {
            s.push_str(&format!("\n  {r}"));
        }
        Some(s)
    }
}
