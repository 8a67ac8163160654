//! `pgretain init [--out DIR] TABLE...`: a policy stub for existing tables,
//! from the live database (SPEC §3 "Existing tables", §5), so adopting a
//! database starts from its real shape. The shape is read by
//! `db::introspect`; `guess` picks the clock, tenant and environment
//! columns and the default retention; `stub` writes the YAML, each guess
//! with a comment saying why. The stub is checked as `pgretain check` would
//! before it is shown or written.
//!
//! Decisions:
//! - a TABLE that is not `schema.table` in lowercase identifiers, that does
//!   not exist, that is not a table (a view, a partition), or that has no
//!   column a retention clock can be (timestamptz, timestamp or date) is
//!   invalid input: exit 2, every such table named in one run, nothing
//!   written. A database that cannot be reached is exit 3.
//! - without `--out`, the stub (one file, all the datasets) goes to stdout;
//!   with `--out DIR`, each table gets `DIR/<dataset>.yaml`, so tables can
//!   be adopted one at a time into the policy directory. An existing file
//!   is never overwritten: if any target exists, nothing is written (exit 2).
//! - the stub has no timestamp, so the same database gives the same bytes.

mod guess;
mod stub;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{exit, Failure, Outcome};
use crate::db::{adopt, connect, introspect, DbError};
use crate::render::text::ident;

pub use guess::TODO_DESCRIPTION;

/// What `pgretain init` reads and where it writes.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// The database (URL or key-value string); `None`: the PG* variables.
    pub database_url: Option<String>,
    /// The tables, `schema.table`, in the order their datasets are written.
    pub tables: Vec<String>,
    /// Write `DIR/<dataset>.yaml` per table here; `None`: the stub is the output.
    pub out: Option<PathBuf>,
}

/// One dataset of the stub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StubDataset {
    pub dataset: String,
    pub table: String,
    /// The clock guessed.
    pub time: String,
    /// The file written, with `--out`.
    pub file: Option<PathBuf>,
}

/// What `init` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Initialized {
    /// The database the tables were read from.
    pub database: String,
    pub datasets: Vec<StubDataset>,
    /// The stub, without `--out`.
    pub yaml: Option<String>,
    /// Things to fix before adoption (a clock that may be NULL).
    #[serde(skip)]
    pub notes: Vec<String>,
}

impl Outcome for Initialized {
    fn text(&self) -> String {
        match &self.yaml {
            Some(y) => y.clone(),
            None => self
                .datasets
                .iter()
                .map(|d| {
                    format!(
                        "wrote {}: dataset `{}` for {} (time: {}); review every guess in it\n",
                        d.file.as_deref().unwrap_or(Path::new("?")).display(),
                        d.dataset,
                        d.table,
                        d.time
                    )
                })
                .collect(),
        }
    }

    fn warnings(&self) -> Vec<String> {
        self.notes.clone()
    }
}

/// Why `init` wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitError {
    /// Invalid input (exit 2): each message names the table or file.
    Invalid(Vec<String>),
    /// The database could not be read (exit 3).
    Database(DbError),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::Invalid(msgs) => write!(f, "{}", msgs.join("\n")),
            InitError::Database(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for InitError {}

impl Failure for InitError {
    fn exit_code(&self) -> i32 {
        match self {
            InitError::Invalid(_) => exit::INVALID,
            InitError::Database(_) => exit::DATABASE,
        }
    }
}

impl From<DbError> for InitError {
    fn from(e: DbError) -> Self {
        InitError::Database(e)
    }
}

/// `pgretain init [--out DIR] TABLE...`.
pub fn init(opts: &InitOptions) -> Result<Initialized, InitError> {
    if opts.tables.is_empty() {
        return Err(InitError::Invalid(vec![
            "error: name at least one table, e.g. `pgretain init public.messages`".into(),
        ]));
    }
    // The arguments, checked before any connection; a table named twice is one dataset.
    let mut errors = Vec::new();
    let mut tables: Vec<(String, String)> = Vec::new();
    for arg in &opts.tables {
        match guess::parse_table(arg) {
            Ok(t) if !tables.contains(&t) => tables.push(t),
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(InitError::Invalid(errors));
    }
    let names = guess::dataset_names(&tables);
    let files: Option<Vec<PathBuf>> = opts.out.as_ref().map(|dir| {
        names
            .iter()
            .map(|n| dir.join(format!("{n}.yaml")))
            .collect()
    });
    for f in files.iter().flatten() {
        if f.symlink_metadata().is_ok() {
            errors.push(format!(
                "error: {} exists, and pgretain init never overwrites a file: move it away, or choose another --out",
                f.display()
            ));
        }
    }
    if !errors.is_empty() {
        return Err(InitError::Invalid(errors));
    }

    let cfg = connect::config(opts.database_url.as_deref())?;
    let mut client = connect::connect(&cfg)?;
    let database = introspect::database_name(&mut client)?;
    let mut guesses = Vec::new();
    for (schema, table) in &tables {
        let qualified = format!("{schema}.{table}");
        match introspect::relation(&mut client, &qualified)? {
            None => errors.push(format!(
                "error: table `{qualified}` does not exist in database `{}`: check the schema and the name (`\\dt {schema}.*` in psql lists the tables)",
                database.escape_debug()
            )),
            Some(rel) => match guess::guess(&rel) {
                Ok(g) => guesses.push(g),
                Err(e) => errors.push(e),
            },
        }
    }
    if !errors.is_empty() {
        return Err(InitError::Invalid(errors));
    }
    let entries: Vec<(String, guess::Guess)> = names.iter().cloned().zip(guesses).collect();
    let mut notes: Vec<String> = entries
        .iter()
        .filter(|(_, g)| !g.time.not_null)
        .map(|(_, g)| {
            format!(
                "{}: the clock `{c}` may be NULL, and adoption refuses it until it is NOT NULL (`ALTER TABLE {} ALTER COLUMN {c} SET NOT NULL`, once no row holds NULL)",
                g.table, g.table, c = g.time.column
            )
        })
        .collect();
    // What `apply` would refuse besides (unique keys are the stub's own
    // comment, and a nullable clock the note above).
    for ((schema, table), (_, g)) in tables.iter().zip(&entries) {
        if !g.time.not_null {
            continue;
        }
        let rel = format!("{}.{}", ident(schema), ident(table));
        if let Some(why) = adopt::refusal_of(&mut client, &rel, &g.time.column, "UTC", true)? {
            notes.push(format!(
                "{}: `pgretain apply` would refuse to adopt it as it is now: {why}",
                g.table
            ));
        }
    }
    let datasets = |files: Option<&[PathBuf]>| -> Vec<StubDataset> {
        entries
            .iter()
            .enumerate()
            .map(|(i, (n, g))| StubDataset {
                dataset: n.clone(),
                table: g.table.clone(),
                time: g.time.column.clone(),
                file: files.and_then(|f| f.get(i).cloned()),
            })
            .collect()
    };

    let Some(files) = files else {
        let yaml = stub::render(&database, &entries);
        self_check(Path::new("<pgretain init>"), &yaml)?;
        return Ok(Initialized {
            datasets: datasets(None),
            database,
            yaml: Some(yaml),
            notes,
        });
    };
    let texts: Vec<String> = entries
        .iter()
        .map(|e| stub::render(&database, std::slice::from_ref(e)))
        .collect();
    for (f, t) in files.iter().zip(&texts) {
        self_check(f, t)?;
    }
    write_all(
        opts.out.as_deref().unwrap_or(Path::new(".")),
        &files,
        &texts,
    )?;
    Ok(Initialized {
        datasets: datasets(Some(&files)),
        database,
        yaml: None,
        notes,
    })
}

/// The stub passes `pgretain check` as written, or init fails saying why.
fn self_check(display: &Path, text: &str) -> Result<(), InitError> {
    crate::policy::load_text(display, text)
        .map(|_| ())
        .map_err(|d| {
            InitError::Invalid(vec![format!(
                "error: the stub pgretain init would write does not pass `pgretain check`, so nothing was written:\n{d}"
            )])
        })
}

/// Write each file new (never over an existing one); on any failure,
/// remove the files this run wrote, so nothing is half-written.
fn write_all(dir: &Path, files: &[PathBuf], texts: &[String]) -> Result<(), InitError> {
    let fail = |what: String| InitError::Invalid(vec![what]);
    std::fs::create_dir_all(dir)
        .map_err(|e| fail(format!("error: cannot create {}: {e}", dir.display())))?;
    let mut written: Vec<&PathBuf> = Vec::new();
    for (f, t) in files.iter().zip(texts) {
        let result = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(f)
            .and_then(|mut h| {
                written.push(f);
                h.write_all(t.as_bytes())?;
                h.sync_all()
            });
        if let Err(e) = result {
            for w in &written {
                let _ = std::fs::remove_file(w);
            }
            let why = if e.kind() == std::io::ErrorKind::AlreadyExists {
                "it exists, and pgretain init never overwrites a file".to_string()
            } else {
                e.to_string()
            };
            return Err(fail(format!(
                "error: cannot write {}: {why}; nothing was written",
                f.display()
            )));
        }
    }
    Ok(())
}
