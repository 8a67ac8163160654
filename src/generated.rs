//! The `generated/` directory: the migrations `compile` wrote, and its state
//! file recording the policy they bring a database to and a hash of each
//! migration (SPEC §4).
//!
//! `generated/` is append-only: files are written by rename, so it is never
//! half-written, and a migration once written never changes. This module
//! reads and writes the files and loads them for refinery; it knows nothing
//! about what the SQL says (`render`) or why a migration exists
//! (`compile`). It never touches a database.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::hash::fnv1a64;
use crate::model::Policy;

/// The state file's name inside `generated/`.
pub const STATE_FILE: &str = "pgretain-state.json";

/// What `compile` records in `generated/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Format of this file.
    pub state_format: u32,
    /// The runtime version installed by the migrations so far.
    pub runtime_version: u32,
    /// Every migration written, in order, with its FNV-1a hash.
    pub migrations: Vec<MigrationRecord>,
    /// The policy the last migration brings the database to.
    pub policy: Policy,
}

/// One migration file written by compile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRecord {
    pub file: String,
    pub fnv1a64: String,
}

/// `generated/` cannot be read or written, or its state file is damaged:
/// what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.0)
    }
}

impl std::error::Error for Error {}

/// The state file, if `dir` has one.
pub fn read_state(dir: &Path) -> Result<Option<State>, Error> {
    let path = dir.join(STATE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            Error(format!(
                "{} is damaged ({e}); restore it from git",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error(format!("cannot read {}: {e}", path.display()))),
    }
}

/// `V<n>__*.sql` files in `dir`, sorted by version.
pub fn migration_files(dir: &Path) -> Result<Vec<String>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error(format!("cannot read {}: {e}", dir.display()))),
    };
    let mut files: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| version_of(n).is_some())
        .collect();
    files.sort_by_key(|f| version_of(f));
    Ok(files)
}

/// The version of a migration file: `V12__x.sql` → 12.
pub fn version_of(file: &str) -> Option<u32> {
    let rest = file.strip_prefix('V')?;
    let (num, tail) = rest.split_once("__")?;
    if !tail.ends_with(".sql") {
        return None;
    }
    num.parse().ok()
}

/// The highest version among `files` (0 when there is none).
pub fn last_version(files: &[String]) -> u32 {
    files
        .iter()
        .filter_map(|f| version_of(f))
        .max()
        .unwrap_or(0)
}

/// What is wrong with the files of `dir` against its state: a migration
/// edited after compile wrote it, missing, or not written by compile.
pub fn damaged(dir: &Path, state: &State, files: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for rec in &state.migrations {
        match std::fs::read(dir.join(&rec.file)) {
            Ok(bytes) if fnv1a64(&bytes) == rec.fnv1a64 => {}
            Ok(_) => out.push(format!(
                "{} was edited after compile wrote it; restore it (git checkout) — applied migrations must never change",
                rec.file
            )),
            Err(_) => out.push(format!("{} is missing from {}", rec.file, dir.display())),
        }
    }
    for f in files {
        if !state.migrations.iter().any(|r| &r.file == f) {
            out.push(format!(
                "{f} was not written by pgretain compile; remove it"
            ));
        }
    }
    out
}

/// Add migration `file` holding `sql` to `dir` and record it, with `policy`
/// and `runtime_version`, in the state file (`state`: the one read before,
/// if any). The migration is written first, each file by rename.
pub fn write(
    dir: &Path,
    state: Option<State>,
    file: &str,
    sql: &str,
    policy: Policy,
    runtime_version: u32,
) -> Result<(), Error> {
    let mut migrations = state.map(|s| s.migrations).unwrap_or_default();
    migrations.push(MigrationRecord {
        file: file.to_string(),
        fnv1a64: fnv1a64(sql.as_bytes()),
    });
    let new_state = State {
        state_format: 1,
        runtime_version,
        migrations,
        policy,
    };
    let state_text =
        serde_json::to_string_pretty(&new_state).map_err(|e| Error(e.to_string()))? + "\n";
    std::fs::create_dir_all(dir)
        .map_err(|e| Error(format!("cannot create {}: {e}", dir.display())))?;
    write_atomic(&dir.join(file), sql.as_bytes())?;
    write_atomic(&dir.join(STATE_FILE), state_text.as_bytes())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error(format!("cannot write {}: {e}", path.display())))
}

/// The migrations of `dir` as refinery reads them, sorted by version.
pub fn load_migrations(dir: &Path) -> Result<Vec<refinery::Migration>, Error> {
    let mut migrations = refinery::load_sql_migrations(dir).map_err(|e| {
        Error(format!(
            "cannot load the migrations in {}: {e}",
            dir.display()
        ))
    })?;
    migrations.sort_by_key(|m| m.version());
    Ok(migrations)
}

/// The error for a `dir` without migrations, for commands that need some.
pub fn no_migrations(dir: &Path) -> Error {
    Error(format!(
        "{} holds no migrations: run `pgretain compile` first",
        dir.display()
    ))
}
