//! The change to one dataset both policies have: what changed, in a line
//! for people; the SQL that migrates it (written by `render::change`); or
//! why it cannot be migrated safely. Pure functions, no I/O.

use crate::model::{Dataset, Engine, Granularity, OnExpiry};
use crate::render::change;
use crate::render::names::relation;

use super::{naming, Change};

/// `delete`, or `archive` with its schema.
fn expiry_name(ds: &Dataset) -> String {
    match (&ds.on_expiry, &ds.archive) {
        (OnExpiry::Archive, Some(a)) => format!("`archive` (to schema `{}`)", a.schema),
        (OnExpiry::Archive, None) => "`archive`".into(),
        (OnExpiry::Delete, _) => "`delete`".into(),
    }
}

/// The change to one dataset present in both policies: `Ok(None)` when
/// nothing changed, `Err` when the change cannot be migrated safely.
pub(super) fn dataset_change(
    old: &Dataset,
    new: &Dataset,
    engine: Engine,
) -> Result<Option<Change>, Vec<String>> {
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
    if (old.clock(), old.zone()) != (new.clock(), new.zone()) {
        refuse(
            "time_zone",
            format!("`{}`", old.zone()),
            format!("`{}`", new.zone()),
            "the stored values of the clock would name other instants: every deadline would move, and the partitions' bounds would no longer be midnights",
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
        let what = whats
            .iter()
            .map(|w| w.strip_prefix(&format!("{name}: ")).unwrap_or(w))
            .collect::<Vec<_>>()
            .join("; ");
        let source = if old.keep != new.keep {
            &new.keep_source
        } else {
            &new.source
        };
        sql.push_str(&change::settings(new, &what, source));
    }
    if let (Some(e), true) = (&new.erase_by, old.erase_by != new.erase_by) {
        sql.push_str(&change::erase_index(new, e));
    }
    if old.description != new.description {
        sql.push_str(&change::description(new));
    }
    if !added_columns.is_empty() {
        for c in &added_columns {
            whats.push(format!("{name}: add column {}", c.name));
            sql.push_str(&change::add_column(new, c));
        }
        sql.push_str(&change::rebuild_view(new, engine));
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
        sql.push_str(&change::triggers_change(old, new));
    }
    if whats.is_empty() {
        return Ok(None);
    }
    let keep_only = whats.len() == 1 && old.keep != new.keep;
    let slug = naming::dataset_slug(
        name,
        &whats,
        keep_only.then(|| new.keep.cmp(&old.keep)),
        &added_columns,
    );
    Ok(Some(Change {
        what: whats.join("; "),
        slug,
        sql,
    }))
}
