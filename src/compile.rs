//! `pgretain compile`: turn the policy into refinery migrations in
//! `generated/` (SPEC §4).
//!
//! `generated/` is append-only. A state file records the policy last
//! compiled and a hash of every migration written; the next compile diffs
//! the new policy against it and writes one new migration holding only what
//! changed. Changes that cannot be migrated safely are refused. Nothing is
//! written unless the policy is valid and the change allowed, and files are
//! written by rename, so `generated/` is never half-written.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diagnostic::Diagnostics;
use crate::model::{
    Access, ChangesApplyTo, Dataset, Granularity, Hold, OnExpiry, Override, Policy,
};
use crate::render::access::{self, Transfer};
use crate::render::{self, comment, ident, lit, qualified, relation, who};

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
#[derive(Debug, Clone, PartialEq, Eq)]
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

use crate::hash::fnv1a64;

/// What the opening and closing statements of a migration do besides
/// pinning its search_path (see `render::access`).
#[derive(Debug, Clone, Copy, Default)]
struct Frame {
    /// Hand what pgretain made to another role first.
    transfer: Option<Transfer>,
    /// Re-issue every grant of `access` at the end (new objects, new roles).
    grants: bool,
}

/// One change between two policies, rendered.
struct Change {
    /// A line for humans: "conversations: keep 365 days -> 90 days".
    what: String,
    /// A word or two for the migration's file name.
    slug: String,
    sql: String,
}

/// Run compile.
pub fn compile(opts: &CompileOptions) -> Result<CompileOutcome, CompileError> {
    let policy = crate::policy::load(&opts.policy_dir).map_err(CompileError::Invalid)?;
    // SPEC §3 "Existing tables": converting a table that already exists is
    // not built yet. Refuse rather than emit SQL that assumes a new table.
    let existing_tables: Vec<String> = policy
        .datasets
        .iter()
        .filter(|d| d.columns.is_none())
        .map(|d| {
            format!(
                "dataset `{}` ({}) has no `columns`, so it names an existing table; converting existing tables in place is not supported yet. Declare the table's `columns` so pgretain creates it partitioned, or leave this dataset out of the policy",
                d.name, d.source
            )
        })
        .collect();
    if !existing_tables.is_empty() {
        return Err(CompileError::Refused(existing_tables));
    }
    let state = read_state(&opts.generated_dir)?;
    let existing = migration_files(&opts.generated_dir)?;

    let mut stale = Vec::new();
    if let Some(st) = &state {
        for rec in &st.migrations {
            match std::fs::read(opts.generated_dir.join(&rec.file)) {
                Ok(bytes) if fnv1a64(&bytes) == rec.fnv1a64 => {}
                Ok(_) => stale.push(format!(
                    "{} was edited after compile wrote it; restore it (git checkout) — applied migrations must never change",
                    rec.file
                )),
                Err(_) => stale.push(format!("{} is missing from {}", rec.file, opts.generated_dir.display())),
            }
        }
        for f in &existing {
            if !st.migrations.iter().any(|r| &r.file == f) {
                stale.push(format!(
                    "{f} was not written by pgretain compile; remove it"
                ));
            }
        }
    } else if !existing.is_empty() {
        return Err(CompileError::Io(format!(
            "{} holds migrations but no {STATE_FILE}; restore the state file from git, or start from an empty directory",
            opts.generated_dir.display()
        )));
    }
    if !stale.is_empty() {
        return if opts.check {
            Ok(CompileOutcome::Stale(stale))
        } else {
            Err(CompileError::Io(stale.join("; ")))
        };
    }

    let mut frame = Frame::default();
    let (title, changes) = match &state {
        None => (
            "init".to_string(),
            vec![Change {
                what: format!(
                    "create the retention runtime and {} dataset(s)",
                    policy.datasets.len()
                ),
                slug: "init".into(),
                sql: render::initial(&policy),
            }],
        ),
        Some(st) => {
            if st.runtime_version > render::RUNTIME_VERSION {
                return Err(CompileError::Refused(vec![format!(
                    "{} was written by a newer pgretain (runtime version {}; this pgretain has version {}): compiling with this one would install an older runtime. Upgrade pgretain",
                    opts.generated_dir.join(STATE_FILE).display(),
                    st.runtime_version,
                    render::RUNTIME_VERSION
                )]));
            }
            let (changes, f) = diff(
                &st.policy,
                st.runtime_version,
                &policy,
                opts.allow_destructive,
            )?;
            frame = f;
            (name_for(&changes), changes)
        }
    };
    if changes.is_empty() {
        return Ok(CompileOutcome::UpToDate);
    }
    let number = existing
        .iter()
        .filter_map(|f| version_of(f))
        .max()
        .unwrap_or(0)
        + 1;
    let file = format!("V{number}__{title}.sql");
    if opts.check {
        let mut reasons = vec![format!(
            "the policy changed since the last compile; `pgretain compile` would write {file}:"
        )];
        reasons.extend(changes.iter().map(|c| format!("  {}", c.what)));
        return Ok(CompileOutcome::Stale(reasons));
    }
    let sql = if state.is_none() {
        changes[0].sql.clone()
    } else {
        let mut title = format!(
            "V{number}: what changed in the policy since V{}:",
            number - 1
        );
        for c in &changes {
            for line in c.what.split("; ") {
                title.push_str(&format!("\n--   - {}", comment(line)));
            }
        }
        let mut s = render::header(&policy.files, &title);
        s.push_str(&access::prologue(&policy, frame.transfer));
        for c in &changes {
            s.push('\n');
            // One blank line between groups, whatever each starts with.
            s.push_str(c.sql.trim_start_matches('\n'));
        }
        s.push('\n');
        s.push_str(&access::epilogue(&policy, frame.grants));
        s
    };
    let mut migrations = state.map(|s| s.migrations).unwrap_or_default();
    migrations.push(MigrationRecord {
        file: file.clone(),
        fnv1a64: fnv1a64(sql.as_bytes()),
    });
    let new_state = State {
        state_format: 1,
        runtime_version: render::RUNTIME_VERSION,
        migrations,
        policy,
    };
    let state_text = serde_json::to_string_pretty(&new_state)
        .map_err(|e| CompileError::Io(e.to_string()))?
        + "\n";
    std::fs::create_dir_all(&opts.generated_dir).map_err(|e| {
        CompileError::Io(format!(
            "cannot create {}: {e}",
            opts.generated_dir.display()
        ))
    })?;
    write_atomic(&opts.generated_dir.join(&file), sql.as_bytes())?;
    write_atomic(&opts.generated_dir.join(STATE_FILE), state_text.as_bytes())?;
    Ok(CompileOutcome::Written {
        file,
        changes: changes.into_iter().map(|c| c.what).collect(),
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CompileError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| CompileError::Io(format!("cannot write {}: {e}", path.display())))
}

/// The state file, if `generated/` has one.
pub fn read_state(dir: &Path) -> Result<Option<State>, CompileError> {
    let path = dir.join(STATE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            CompileError::Io(format!(
                "{} is damaged ({e}); restore it from git",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CompileError::Io(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// `V<n>__*.sql` files in `dir`, sorted by version.
pub fn migration_files(dir: &Path) -> Result<Vec<String>, CompileError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(CompileError::Io(format!(
                "cannot read {}: {e}",
                dir.display()
            )))
        }
    };
    let mut files: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| version_of(n).is_some())
        .collect();
    files.sort_by_key(|f| version_of(f));
    Ok(files)
}

fn version_of(file: &str) -> Option<u32> {
    let rest = file.strip_prefix('V')?;
    let (num, tail) = rest.split_once("__")?;
    if !tail.ends_with(".sql") {
        return None;
    }
    num.parse().ok()
}

/// A file name slug from the changes.
fn name_for(changes: &[Change]) -> String {
    let mut slugs: Vec<&str> = Vec::new();
    for c in changes {
        if !slugs.contains(&c.slug.as_str()) {
            slugs.push(&c.slug);
        }
    }
    let name = match slugs.len() {
        1 => slugs[0].to_string(),
        2 => format!("{}_and_{}", slugs[0], slugs[1]),
        _ => "policy_update".to_string(),
    };
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    clean.chars().take(60).collect()
}

/// The changes from `old` to `new`, or why they are refused.
fn diff(
    old: &Policy,
    old_runtime: u32,
    new: &Policy,
    allow_destructive: bool,
) -> Result<(Vec<Change>, Frame), CompileError> {
    let mut changes = Vec::new();
    let mut refused = Vec::new();
    let mut frame = Frame::default();

    if old_runtime != render::RUNTIME_VERSION {
        let mut sql = format!(
            "-- pgretain's runtime changed (version {old_runtime} -> {}): install the new one\n",
            render::RUNTIME_VERSION
        );
        sql.push_str(render::RUNTIME_SQL);
        sql.push('\n');
        sql.push_str(&render::config(new));
        for ds in &new.datasets {
            if let Some(before) = old.dataset(&ds.name) {
                sql.push_str(&format!(
                    "\n-- {}: its settings, triggers, procedure and view, as runtime version {} writes them\n",
                    ds.name,
                    render::RUNTIME_VERSION
                ));
                // The settings row as the policy had it (a change of the
                // dataset in this same compile follows below).
                sql.push_str(&render::dataset_settings(before));
                sql.push_str(&render::triggers(before));
                if old_runtime < 2 {
                    sql.push_str(&restamp(before));
                }
                sql.push_str(&render::procedure_sql(before));
                sql.push_str(&render::expired_view(before));
            }
        }
        frame.grants = true;
        if new.access.is_some() {
            frame.transfer = Some(Transfer::ToOwner);
        }
        changes.push(Change {
            what: format!(
                "install pgretain runtime version {}",
                render::RUNTIME_VERSION
            ),
            slug: "upgrade_runtime".into(),
            sql,
        });
    }

    if old.run_log_keep != new.run_log_keep {
        changes.push(Change {
            what: format!("run_log_keep {} -> {}", old.run_log_keep, new.run_log_keep),
            slug: "run_log_keep".into(),
            sql: render::config(new),
        });
    }

    if let Some(c) = access_change(old.access.as_ref(), new, &mut frame) {
        changes.push(c);
    }

    // The allowed environments are a set: their order in the file means nothing.
    let set = |v: &[String]| v.iter().cloned().collect::<std::collections::BTreeSet<_>>();
    if set(&old.environments) != set(&new.environments) {
        changes.push(Change {
            what: format!(
                "environments: [{}] -> [{}]",
                old.environments.join(", "),
                new.environments.join(", ")
            ),
            slug: "environments".into(),
            sql: render::environments(&new.environments),
        });
    }

    for ds in &new.datasets {
        match old.dataset(&ds.name) {
            None => {
                frame.grants = true;
                changes.push(Change {
                    what: format!("add dataset {}", ds.name),
                    slug: format!("add_{}", ds.name),
                    sql: render::dataset_create(ds),
                })
            }
            Some(before) => match dataset_change(before, ds) {
                Ok(Some(c)) => {
                    if c.what.contains(": add column ") {
                        frame.grants = true;
                    }
                    changes.push(c)
                }
                Ok(None) => {}
                Err(mut why) => refused.append(&mut why),
            },
        }
    }
    for before in &old.datasets {
        if new.dataset(&before.name).is_none() {
            if allow_destructive {
                changes.push(Change {
                    what: format!("remove dataset {} and drop its table", before.name),
                    slug: format!("remove_{}", before.name),
                    sql: remove_dataset(before),
                });
            } else {
                refused.push(format!(
                    "dataset `{}` was removed from the policy: that would drop table {} and every row in it{}; pgretain would also stop enforcing it. If that is what you want, run `pgretain compile --allow-destructive`; otherwise restore the dataset in the policy",
                    before.name,
                    relation(before),
                    render::archive_relation(before).map(|a| format!(" (and the archive {a})")).unwrap_or_default()
                ));
            }
        }
    }
    if !refused.is_empty() {
        return Err(CompileError::Refused(refused));
    }

    // Overrides, keyed by dataset, tenant and environment.
    type Key = (String, Option<String>, Option<String>);
    let okey =
        |o: &Override| -> Key { (o.dataset.clone(), o.tenant.clone(), o.environment.clone()) };
    let olds: BTreeMap<Key, &Override> = old.overrides.iter().map(|o| (okey(o), o)).collect();
    let news: BTreeMap<Key, &Override> = new.overrides.iter().map(|o| (okey(o), o)).collect();
    let mut sql = String::new();
    let mut whats = Vec::new();
    for (k, o) in &news {
        let who = who(o.tenant.as_deref(), o.environment.as_deref());
        match olds.get(k) {
            Some(prev) if prev.keep == o.keep && prev.reason == o.reason => {}
            Some(prev) => {
                whats.push(if prev.keep == o.keep {
                    format!("{}: override for {who}: reason changed", o.dataset)
                } else {
                    format!(
                        "{}: override for {who}: keep {} -> {}",
                        o.dataset, prev.keep, o.keep
                    )
                });
                sql.push_str(&render::override_upsert(o));
            }
            None => {
                whats.push(format!(
                    "{}: new override for {who}: keep {}",
                    o.dataset, o.keep
                ));
                sql.push_str(&render::override_upsert(o));
            }
        }
    }
    for (k, o) in &olds {
        if !news.contains_key(k) && new.dataset(&o.dataset).is_some() {
            whats.push(format!(
                "{}: override for {} removed",
                o.dataset,
                who(o.tenant.as_deref(), o.environment.as_deref())
            ));
            sql.push_str(&render::override_delete(o));
        }
    }
    if !whats.is_empty() {
        changes.push(Change {
            what: whats.join("; "),
            slug: "overrides".into(),
            sql,
        });
    }

    // Holds, per dataset, keyed by dataset, tenant, environment and reason.
    type HKey = (String, Option<String>, Option<String>, String);
    let expand = |p: &Policy| -> BTreeMap<HKey, Hold> {
        let mut m = BTreeMap::new();
        for h in &p.holds {
            for d in &h.datasets {
                m.insert(
                    (
                        d.clone(),
                        h.tenant.clone(),
                        h.environment.clone(),
                        h.reason.clone(),
                    ),
                    h.clone(),
                );
            }
        }
        m
    };
    let (oh, nh) = (expand(old), expand(new));
    let mut sql = String::new();
    let mut whats = Vec::new();
    for (k, h) in &nh {
        let what = match oh.get(k) {
            Some(prev) if prev.until == h.until => continue,
            Some(prev) => format!(
                "until {} -> {}",
                prev.until.as_deref().unwrap_or("(none)"),
                h.until.as_deref().unwrap_or("(none)")
            ),
            None => "added".to_string(),
        };
        whats.push(format!("{}: hold \"{}\" {what}", k.0, h.reason));
        sql.push_str(&render::hold_upsert(h, &k.0));
    }
    for (k, h) in &oh {
        if !nh.contains_key(k) && new.dataset(&k.0).is_some() {
            whats.push(format!("{}: hold \"{}\" removed", k.0, h.reason));
            sql.push_str(&render::hold_delete(h, &k.0));
        }
    }
    if !whats.is_empty() {
        changes.push(Change {
            what: whats.join("; "),
            slug: "holds".into(),
            sql,
        });
    }
    Ok((changes, frame))
}

/// A change of `access`: who owns the machinery, who is granted what. The
/// ownership moves in the migration's opening (`frame.transfer`), the grants
/// are re-issued in its closing (`frame.grants`); here, what is taken back.
fn access_change(old: Option<&Access>, new: &Policy, frame: &mut Frame) -> Option<Change> {
    let new_access = new.access.as_ref();
    let same = |a: &Access, b: &Access| {
        (&a.owner, &a.application, &a.readers) == (&b.owner, &b.application, &b.readers)
    };
    match (old, new_access) {
        (None, None) => return None,
        (Some(a), Some(b)) if same(a, b) => return None,
        _ => {}
    }
    let mut whats = Vec::new();
    let mut sql = String::new();
    let old_owner = old.map(|a| a.owner.as_str());
    let new_owner = new_access.map(|a| a.owner.as_str());
    if old_owner != new_owner {
        frame.transfer = Some(if new_owner.is_some() {
            Transfer::ToOwner
        } else {
            Transfer::ToApplier
        });
        whats.push(format!(
            "access: owner {} -> {}",
            old_owner.unwrap_or("(the role that applies)"),
            new_owner.unwrap_or("(the role that applies)")
        ));
        if let Some(o) = old_owner {
            sql.push_str(&format!(
                "-- access: {} no longer runs the jobs: its own statement_timeout in this database goes\n",
                ident(o)
            ));
            let body = format!(
                "\nBEGIN\n    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {l}) THEN\n        EXECUTE pg_catalog.format('ALTER ROLE %I IN DATABASE %I RESET statement_timeout',\n                                  {l}, pg_catalog.current_database());\n    END IF;\nEND\n",
                l = lit(o)
            );
            sql.push_str(&format!(
                "DO {};\n",
                render::dollar_quoted("timeout", &body)
            ));
        }
    }
    let list = |a: Option<&Access>, f: fn(&Access) -> &Vec<String>| {
        a.map(|a| f(a).join(", ")).unwrap_or_default()
    };
    for (label, f) in [
        (
            "application",
            (|a: &Access| &a.application) as fn(&Access) -> &Vec<String>,
        ),
        ("readers", |a: &Access| &a.readers),
    ] {
        if list(old, f) != list(new_access, f) {
            whats.push(format!(
                "access: {label} [{}] -> [{}]",
                list(old, f),
                list(new_access, f)
            ));
        }
    }
    sql.push_str(&access::revoke(
        &access::removed_roles(old, new_access),
        new,
    ));
    frame.grants = true;
    Some(Change {
        what: whats.join("; "),
        slug: "access".into(),
        sql,
    })
}

/// Runtime version 1 kept any stamp an INSERT sent (`changes_apply_to:
/// new_rows`). A stamp no retention of the dataset ever had cannot have come
/// from pgretain: such rows get the retention in force now (the true one at
/// their insert is not known), so a forged stamp stops deciding their fate.
fn restamp(ds: &Dataset) -> String {
    if ds.changes_apply_to != ChangesApplyTo::NewRows {
        return String::new();
    }
    let rel = relation(ds);
    let col = |c: &Option<String>| {
        c.as_ref()
            .map(|c| format!("t.{}::text", ident(c)))
            .unwrap_or_else(|| "NULL::text".into())
    };
    format!(
        "-- {name}: a stamp no retention of the dataset ever had was sent by an INSERT, not\n\
         -- given by pgretain (runtime version 1 kept it): such rows get the retention in force\n\
         -- now (the triggers are off for this one statement, so the stamp can be written)\n\
         ALTER TABLE {rel} DISABLE TRIGGER USER;\n\
         UPDATE {rel} t SET {stamp} = retention.keep_for({l}::text, {tenant}, {env})\n \
         WHERE NOT EXISTS (SELECT 1 FROM retention.keep_history h\n                    \
         WHERE h.dataset = {l}::text AND h.keep = t.{stamp});\n\
         ALTER TABLE {rel} ENABLE TRIGGER USER;\n",
        name = ds.name,
        stamp = ident(crate::model::STAMP_COLUMN),
        l = lit(&ds.name),
        tenant = col(&ds.tenant),
        env = col(&ds.environment),
    )
}

/// `delete`, or `archive` with its schema.
fn expiry_name(ds: &Dataset) -> String {
    match (&ds.on_expiry, &ds.archive) {
        (OnExpiry::Archive, Some(a)) => format!("`archive` (to schema `{}`)", a.schema),
        (OnExpiry::Archive, None) => "`archive`".into(),
        (OnExpiry::Delete, _) => "`delete`".into(),
    }
}

/// The type of an added column in the archive table. The archive was made
/// with `LIKE`, which copies types but not defaults, identity or
/// constraints; serial types become their plain integer type there.
fn archive_type(ty: &crate::model::ColumnType) -> &str {
    match ty.sql_type.as_str() {
        "serial" => "integer",
        "bigserial" => "bigint",
        "smallserial" => "smallint",
        other => other,
    }
}

/// The change to one dataset present in both policies: `Ok(None)` when
/// nothing changed, `Err` when the change cannot be migrated safely.
fn dataset_change(old: &Dataset, new: &Dataset) -> Result<Option<Change>, Vec<String>> {
    let name = &new.name;
    let mut refused = Vec::new();
    let mut refuse = |what: &str, before: String, after: String, consequence: &str| {
        refused.push(format!(
            "dataset `{name}` ({}): changing `{what}` from {before} to {after} cannot be migrated safely: {consequence}. Keep the old value, or add a new dataset (a new table) and remove this one with `--allow-destructive` once its data is no longer needed",
            new.source
        ));
    };
    let show = |v: &Option<String>| {
        v.as_deref()
            .map(|s| format!("`{s}`"))
            .unwrap_or_else(|| "(none)".into())
    };
    if (old.schema.as_str(), old.table.as_str()) != (new.schema.as_str(), new.table.as_str()) {
        refuse(
            "table",
            format!("`{}.{}`", old.schema, old.table),
            format!("`{}.{}`", new.schema, new.table),
            "the existing rows would stay in the old table, unenforced",
        );
    }
    if old.time != new.time {
        refuse(
            "time",
            format!("`{}`", old.time),
            format!("`{}`", new.time),
            &format!(
                "table {} is range-partitioned on `{}`, so every existing partition would have to be rebuilt, and the deadline of every stored row would change",
                relation(old),
                old.time
            ),
        );
    }
    if old.partition != new.partition {
        let defaulted = if new.partition == Granularity::default_for(new.keep) {
            format!(
                " (when `partition` is not written, it follows `keep`: {} gives `{}`; write `partition: {}` in the dataset to keep the existing partitions)",
                new.keep,
                new.partition.as_str(),
                old.partition.as_str()
            )
        } else {
            String::new()
        };
        refuse(
            "partition",
            format!("`{}`", old.partition.as_str()),
            format!("`{}`{defaulted}", new.partition.as_str()),
            &format!(
                "the existing {} partitions of {} would overlap the new {} ones, so new partitions could not be created and inserts would pile up in the default partition",
                old.partition.as_str(),
                relation(old),
                new.partition.as_str()
            ),
        );
    }
    if old.tenant != new.tenant {
        refuse(
            "tenant",
            show(&old.tenant),
            show(&new.tenant),
            "tenant settings and overrides already applied name the old column",
        );
    }
    if old.environment != new.environment {
        refuse(
            "environment",
            show(&old.environment),
            show(&new.environment),
            "environment overrides already applied name the old column",
        );
    }
    if old.changes_apply_to != new.changes_apply_to {
        refuse(
            "changes_apply_to",
            format!("`{}`", old.changes_apply_to.as_str()),
            format!("`{}`", new.changes_apply_to.as_str()),
            "rows already stored were written under the other rule",
        );
    }
    if old.on_expiry != new.on_expiry
        || old.archive.as_ref().map(|a| &a.schema) != new.archive.as_ref().map(|a| &a.schema)
    {
        refuse(
            "on_expiry / archive.schema",
            expiry_name(old),
            expiry_name(new),
            "rows already archived would be stranded in the old archive, and the enforcement of stored rows would change",
        );
    }
    let mut added_columns = Vec::new();
    match (&old.columns, &new.columns) {
        (Some(a), Some(b)) => {
            for c in a {
                match b.iter().find(|x| x.name == c.name) {
                    None => refuse(&format!("columns.{}", c.name), format!("`{}`", c.ty.sql()), "(removed)".into(), "dropping a column destroys its data"),
                    Some(x) if x.ty != c.ty => refuse(&format!("columns.{}", c.name), format!("`{}`", c.ty.sql()), format!("`{}`", x.ty.sql()), "pgretain does not rewrite column types; alter the column in a migration of your own first"),
                    _ => {}
                }
            }
            for c in b {
                if !a.iter().any(|x| x.name == c.name) {
                    if c.ty.identity.is_some() {
                        refuse(&format!("columns.{}", c.name), "(absent)".into(), format!("`{}`", c.ty.sql()), "PostgreSQL cannot add an identity column to a partitioned table; use `bigserial`, or a column without identity");
                    } else if c.ty.not_null && c.ty.default.is_none() {
                        refuse(&format!("columns.{}", c.name), "(absent)".into(), format!("`{}`", c.ty.sql()), "existing rows have no value for a new `not null` column without a default; give it a default");
                    } else {
                        added_columns.push(c.clone());
                    }
                }
            }
        }
        (a, b) if a.is_some() != b.is_some() => refuse(
            "columns",
            if a.is_some() {
                "a table pgretain creates".into()
            } else {
                "an existing table".into()
            },
            if b.is_some() {
                "a table pgretain creates".into()
            } else {
                "an existing table".into()
            },
            "a dataset cannot switch between a table pgretain creates and an existing table",
        ),
        _ => {}
    }
    if !refused.is_empty() {
        return Err(refused);
    }

    let mut whats = Vec::new();
    let mut sql = String::new();
    let src = comment(&new.source.to_string());
    if old.keep != new.keep {
        whats.push(format!("{name}: keep {} -> {}", old.keep, new.keep));
    }
    for (label, a, b) in [
        ("min_keep", old.min_keep, new.min_keep),
        ("max_keep", old.max_keep, new.max_keep),
    ] {
        if a != b {
            whats.push(format!(
                "{name}: {label} {} -> {}",
                a.map(|d| d.to_string()).unwrap_or_else(|| "(none)".into()),
                b.map(|d| d.to_string()).unwrap_or_else(|| "(none)".into())
            ));
        }
    }
    if old.schedule != new.schedule {
        whats.push(format!(
            "{name}: schedule `{}` -> `{}`",
            old.schedule, new.schedule
        ));
    }
    let (oak, nak) = (
        old.archive.as_ref().map(|a| a.keep),
        new.archive.as_ref().map(|a| a.keep),
    );
    if oak != nak {
        whats.push(format!(
            "{name}: archive keep {} -> {}",
            oak.map(|d| d.to_string())
                .unwrap_or_else(|| "(none)".into()),
            nak.map(|d| d.to_string())
                .unwrap_or_else(|| "(none)".into())
        ));
    }
    if old.erase_by != new.erase_by {
        whats.push(format!(
            "{name}: erase_by {} -> {}",
            show(&old.erase_by),
            show(&new.erase_by)
        ));
    }
    if old.description != new.description {
        whats.push(format!("{name}: description"));
    }
    if old.owner != new.owner {
        whats.push(format!("{name}: owner"));
    }
    if old.legal_basis != new.legal_basis {
        whats.push(format!("{name}: legal_basis"));
    }
    if old.lock_timeout_ms != new.lock_timeout_ms {
        whats.push(format!(
            "{name}: lock_timeout {} ms -> {} ms",
            old.lock_timeout_ms, new.lock_timeout_ms
        ));
    }
    if !whats.is_empty() {
        // One statement updates every setting the engine reads (the row is
        // the whole truth about the dataset), so it is re-emitted whole.
        sql.push_str(&format!(
            "-- {name}: settings: {} ({})\n",
            whats
                .iter()
                .map(|w| w.strip_prefix(&format!("{name}: ")).unwrap_or(w))
                .collect::<Vec<_>>()
                .join("; "),
            comment(
                &if old.keep != new.keep {
                    &new.keep_source
                } else {
                    &new.source
                }
                .to_string()
            )
        ));
        sql.push_str(&render::dataset_settings(new));
    }
    if let (Some(e), true) = (&new.erase_by, old.erase_by != new.erase_by) {
        sql.push_str(&format!(
            "\n-- {name}: erase_by `{e}`: index what erasure matches ({})\n",
            src
        ));
        // The same name `render::dataset_create` gives it.
        let index = ident(&render::object_name(
            &format!("{}_{}", new.table, e),
            "_idx",
        ));
        sql.push_str(&format!(
            "CREATE INDEX IF NOT EXISTS {index} ON {} ({});\n",
            relation(new),
            ident(e)
        ));
        if let Some(a) = &new.archive {
            sql.push_str(&format!(
                "CREATE INDEX IF NOT EXISTS {index} ON {} ({});\n",
                qualified(&a.schema, &new.table),
                ident(e)
            ));
        }
    }
    if old.description != new.description {
        sql.push_str(&format!(
            "\n-- {name}: description ({})\nCOMMENT ON TABLE {} IS {};\n",
            src,
            relation(new),
            lit(&format!("{} (pgretain dataset {name})", new.description))
        ));
    }
    if !added_columns.is_empty() {
        for c in &added_columns {
            whats.push(format!("{name}: add column {}", c.name));
            sql.push_str(&format!(
                "\n-- {name}: new column {} `{}`{} ({})\n",
                c.name,
                c.ty.sql(),
                if new.archive.is_some() {
                    ", in the table and its archive"
                } else {
                    ""
                },
                src
            ));
            sql.push_str(&format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {};\n",
                relation(new),
                ident(&c.name),
                c.ty.sql()
            ));
            if let Some(a) = &new.archive {
                sql.push_str(&format!(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {};\n",
                    qualified(&a.schema, &new.table),
                    ident(&c.name),
                    archive_type(&c.ty)
                ));
            }
        }
        // The view lists t.*, frozen when it was created: recreate it so it
        // shows the new columns.
        sql.push_str(&format!(
            "\n-- {name}: the view of expired rows is rebuilt to show the new column(s)\nDROP VIEW IF EXISTS retention.{};",
            ident(&format!("expired_{name}"))
        ));
        sql.push_str(&render::expired_view(new));
    }
    if old.sensitive != new.sensitive || old.sliding != new.sliding {
        if old.sensitive != new.sensitive {
            whats.push(format!("{name}: sensitive keys"));
        }
        if old.sliding != new.sliding {
            whats.push(format!(
                "{name}: sliding {} -> {}",
                old.sliding, new.sliding
            ));
        }
        if new.sensitive.is_empty() && !old.sensitive.is_empty() {
            sql.push_str(&format!(
                "\n-- {name}: no sensitive keys any more: stop stripping them ({})\nDROP TRIGGER IF EXISTS pgretain_strip_sensitive ON {};\n",
                src,
                relation(new)
            ));
        }
        if !new.sliding && old.sliding {
            sql.push_str(&format!(
                "\n-- {name}: sliding: false: the clock no longer follows activity ({})\nDROP TRIGGER IF EXISTS pgretain_sliding_clock ON {};\n",
                src,
                relation(new)
            ));
        }
        let mut only = new.clone();
        // Re-emit only the sensitive and sliding triggers (the stamp trigger is unchanged).
        only.changes_apply_to = ChangesApplyTo::AllRows;
        if old.sensitive == new.sensitive {
            only.sensitive.clear();
        }
        if old.sliding == new.sliding {
            only.sliding = false;
        }
        sql.push_str(&render::triggers(&only));
    }
    if whats.is_empty() {
        return Ok(None);
    }
    let only_columns = whats.iter().all(|w| w.contains(": add column "));
    let slug = if whats.len() == 1 && old.keep != new.keep {
        match new.keep.cmp(&old.keep) {
            std::cmp::Ordering::Less => format!("shorten_{name}"),
            std::cmp::Ordering::Greater => format!("lengthen_{name}"),
            std::cmp::Ordering::Equal => format!("keep_{name}"),
        }
    } else if only_columns && added_columns.len() == 1 {
        format!("add_{}_to_{name}", added_columns[0].name)
    } else if only_columns {
        format!("add_columns_to_{name}")
    } else {
        format!("update_{name}")
    };
    Ok(Some(Change {
        what: whats.join("; "),
        slug,
        sql,
    }))
}

/// Remove a dataset entirely (only with `--allow-destructive`).
fn remove_dataset(ds: &Dataset) -> String {
    let mut s = format!(
        "-- {name}: removed from the policy (it was defined at {source}) and compiled with\n-- --allow-destructive: its table{archive} and every row in {them} are dropped\n-- (CASCADE: views and foreign keys that depend on {them} go too); `pgretain apply`\n-- removes its pg_cron job\n",
        name = ds.name,
        source = comment(&ds.source.to_string()),
        archive = render::archive_relation(ds)
            .map(|a| format!(", its archive {a}"))
            .unwrap_or_default(),
        them = if ds.archive.is_some() { "them" } else { "it" },
    );
    // Overrides, holds and tenant settings go with the row (ON DELETE CASCADE).
    s.push_str(&format!(
        "DELETE FROM retention.dataset WHERE name = {};\n",
        lit(&ds.name)
    ));
    // Retentions ever stamped: a dataset added again later starts afresh.
    s.push_str(&format!(
        "DELETE FROM retention.keep_history WHERE dataset = {};\n",
        lit(&ds.name)
    ));
    s.push_str(&format!(
        "DROP VIEW IF EXISTS retention.{};\n",
        ident(&format!("expired_{}", ds.name))
    ));
    s.push_str(&format!(
        "DROP PROCEDURE IF EXISTS {}(timestamptz);\n",
        render::procedure(ds)
    ));
    s.push_str(&format!("DROP TABLE IF EXISTS {} CASCADE;\n", relation(ds)));
    if let Some(a) = render::archive_relation(ds) {
        s.push_str(&format!("DROP TABLE IF EXISTS {a} CASCADE;\n"));
    }
    for f in ["strip_sensitive", "stamp_keep", "sliding_clock"] {
        s.push_str(&format!(
            "DROP FUNCTION IF EXISTS retention.{}();\n",
            ident(&format!("{}_{f}", ds.name))
        ));
    }
    s
}
