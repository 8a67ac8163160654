//! The SQL of a change to a policy already applied: what a later migration
//! holds besides what a new dataset or rule needs (`dataset`, `rules`).
//! `compile` decides what changed and which changes are safe; here is how
//! each one is written. Pure functions, no I/O.

use crate::model::{
    ChangesApplyTo, Column, ColumnType, Dataset, Engine, Policy, Source, STAMP_COLUMN,
};

use super::dataset::{dataset_settings, expired_view, index, procedure_sql, replica_identity};
use super::expiry::Expiry;
use super::names::{self, archive_relation, procedure, relation, Trigger};
use super::rules::config;
use super::text::{comment, dollar_quoted, ident, lit};
use super::triggers::triggers;
use super::{runtime_for, RUNTIME_VERSION};

/// The runtime of this pgretain installed over the one of version
/// `old_runtime`, and every dataset `old` and `new` share re-emitted as this
/// runtime writes it (its settings row as `old` had it: a change of the
/// dataset in the same migration follows).
pub fn runtime_upgrade(old_runtime: u32, old: &Policy, new: &Policy) -> String {
    let mut sql = format!(
        "-- pgretain's runtime changed (version {old_runtime} -> {RUNTIME_VERSION}): install the new one\n"
    );
    sql.push_str(&runtime_for(new.engine));
    sql.push('\n');
    sql.push_str(&config(new));
    for ds in &new.datasets {
        if let Some(before) = old.dataset(&ds.name) {
            sql.push_str(&format!(
                "\n-- {}: its settings, triggers, procedure and view, as runtime version {RUNTIME_VERSION} writes them\n",
                ds.name,
            ));
            sql.push_str(&dataset_settings(before));
            sql.push_str(&triggers(before));
            if old_runtime < 2 {
                sql.push_str(&restamp(before));
            }
            sql.push_str(&procedure_sql(before));
            sql.push_str(&expired_view(before, new.engine));
            if old_runtime < 3 && before.columns.is_some() {
                sql.push_str(&replica_identity(before));
                sql.push_str(&format!(
                    "SELECT retention.follow_replica_identity({});\n",
                    lit(&before.name)
                ));
            }
        }
    }
    sql
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
    format!(
        "-- {name}: a stamp no retention of the dataset ever had was sent by an INSERT, not\n\
         -- given by pgretain (runtime version 1 kept it): such rows get the retention in force\n\
         -- now (the triggers are off for this one statement, so the stamp can be written)\n\
         ALTER TABLE {rel} DISABLE TRIGGER USER;\n\
         UPDATE {rel} t SET {stamp} = {keep}\n \
         WHERE NOT EXISTS (SELECT 1 FROM retention.keep_history h\n                    \
         WHERE h.dataset = {l}::text AND h.keep = t.{stamp});\n\
         ALTER TABLE {rel} ENABLE TRIGGER USER;\n",
        name = ds.name,
        stamp = ident(STAMP_COLUMN),
        keep = Expiry::of(ds).keep_in_force(),
        l = lit(&ds.name),
    )
}

/// The role that owned the machinery no longer runs the jobs: its own
/// statement_timeout in this database goes (if the role still exists).
pub fn forget_owner_timeout(owner: &str) -> String {
    let body = format!(
        "\nBEGIN\n    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {l}) THEN\n        EXECUTE pg_catalog.format('ALTER ROLE %I IN DATABASE %I RESET statement_timeout',\n                                  {l}, pg_catalog.current_database());\n    END IF;\nEND\n",
        l = lit(owner)
    );
    format!(
        "-- access: {} no longer runs the jobs: its own statement_timeout in this database goes\nDO {};\n",
        ident(owner),
        dollar_quoted("timeout", &body)
    )
}

/// The settings row re-emitted whole (it is the whole truth about the
/// dataset the engine reads), under a comment listing `what` changed, as
/// written at `source`.
pub fn settings(ds: &Dataset, what: &str, source: &Source) -> String {
    format!(
        "-- {}: settings: {what} ({})\n{}",
        ds.name,
        comment(&source.to_string()),
        dataset_settings(ds)
    )
}

/// The index erasure by `column` uses, on the table and its archive (the
/// same name `dataset::dataset_create` gives it).
pub fn erase_index(ds: &Dataset, column: &str) -> String {
    let mut s = format!(
        "\n-- {}: erase_by `{column}`: index what erasure matches ({})\n",
        ds.name,
        comment(&ds.source.to_string())
    );
    s.push_str(&index(&ds.schema, &ds.table, &[column]));
    if let Some(a) = &ds.archive {
        s.push_str(&index(&a.schema, &ds.table, &[column]));
    }
    s
}

/// The table's comment, for a new description.
pub fn description(ds: &Dataset) -> String {
    format!(
        "\n-- {name}: description ({})\nCOMMENT ON TABLE {} IS {};\n",
        comment(&ds.source.to_string()),
        relation(ds),
        lit(&format!(
            "{} (pgretain dataset {})",
            ds.description, ds.name
        )),
        name = ds.name,
    )
}

/// A column added to the table and, when the dataset archives, to its archive.
pub fn add_column(ds: &Dataset, c: &Column) -> String {
    let mut s = format!(
        "\n-- {}: new column {} `{}`{} ({})\n",
        ds.name,
        c.name,
        c.ty.sql(),
        if ds.archive.is_some() {
            ", in the table and its archive"
        } else {
            ""
        },
        comment(&ds.source.to_string())
    );
    s.push_str(&format!(
        "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {};\n",
        relation(ds),
        ident(&c.name),
        c.ty.sql()
    ));
    if let Some(arch) = archive_relation(ds) {
        s.push_str(&format!(
            "ALTER TABLE {arch} ADD COLUMN IF NOT EXISTS {} {};\n",
            ident(&c.name),
            archive_type(&c.ty)
        ));
    }
    s
}

/// The type of an added column in the archive table. The archive was made
/// with `LIKE`, which copies types but not defaults, identity or
/// constraints; serial types become their plain integer type there.
fn archive_type(ty: &ColumnType) -> &str {
    match ty.sql_type.as_str() {
        "serial" => "integer",
        "bigserial" => "bigint",
        "smallserial" => "smallint",
        other => other,
    }
}

/// The view of expired rows rebuilt: it lists `t.*`, frozen when it was
/// created, so it shows added columns only when made again.
pub fn rebuild_view(ds: &Dataset, engine: Engine) -> String {
    format!(
        "\n-- {}: the view of expired rows is rebuilt to show the new column(s)\nDROP VIEW IF EXISTS {};{}{}",
        ds.name,
        names::expired_view(ds),
        if engine == Engine::Citus {
            format!("\nDROP FUNCTION IF EXISTS {}();", names::expired_rows_function(ds))
        } else {
            String::new()
        },
        expired_view(ds, engine)
    )
}

/// The sensitive-key and sliding-clock triggers as `new` has them, where
/// they differ from `old`: dropped when no longer wanted, made (again) when
/// changed. The stamp trigger never changes.
pub fn triggers_change(old: &Dataset, new: &Dataset) -> String {
    let mut sql = String::new();
    let src = comment(&new.source.to_string());
    let name = &new.name;
    if new.sensitive.is_empty() && !old.sensitive.is_empty() {
        sql.push_str(&format!(
            "\n-- {name}: no sensitive keys any more: stop stripping them ({src})\nDROP TRIGGER IF EXISTS {} ON {};\n",
            Trigger::StripSensitive.name(),
            relation(new)
        ));
    }
    if !new.sliding && old.sliding {
        sql.push_str(&format!(
            "\n-- {name}: sliding: false: the clock no longer follows activity ({src})\nDROP TRIGGER IF EXISTS {} ON {};\n",
            Trigger::SlidingClock.name(),
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
    sql.push_str(&triggers(&only));
    sql
}

/// Remove a dataset entirely (only with `--allow-destructive`). An adopted
/// table (no `columns`) is the application's: it stays, with every row;
/// only pgretain's machinery on it goes.
pub fn remove_dataset(ds: &Dataset, engine: Engine) -> String {
    if ds.columns.is_none() {
        return release_dataset(ds);
    }
    let mut s = format!(
        "-- {name}: removed from the policy (it was defined at {source}) and compiled with\n-- --allow-destructive: its table{archive} and every row in {them} are dropped\n-- (CASCADE: views and foreign keys that depend on {them} go too); `pgretain apply`\n-- removes its pg_cron job\n",
        name = ds.name,
        source = comment(&ds.source.to_string()),
        archive = archive_relation(ds)
            .map(|a| format!(", its archive {a}"))
            .unwrap_or_default(),
        them = if ds.archive.is_some() { "them" } else { "it" },
    );
    // Overrides, holds and tenant settings go with the row (ON DELETE
    // CASCADE; on Citus tenant settings have no foreign key: docs/citus.md).
    s.push_str(&drop_moved(ds));
    if engine == Engine::Citus {
        s.push_str(&format!(
            "DELETE FROM retention.tenant_setting WHERE dataset = {};\n",
            lit(&ds.name)
        ));
    }
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
        "DROP VIEW IF EXISTS {};\n",
        names::expired_view(ds)
    ));
    s.push_str(&format!(
        "DROP PROCEDURE IF EXISTS {}(timestamptz);\n",
        procedure(ds)
    ));
    s.push_str(&format!("DROP TABLE IF EXISTS {} CASCADE;\n", relation(ds)));
    if let Some(a) = archive_relation(ds) {
        s.push_str(&format!("DROP TABLE IF EXISTS {a} CASCADE;\n"));
    }
    for t in Trigger::ALL {
        s.push_str(&format!(
            "DROP FUNCTION IF EXISTS {}();\n",
            t.function(&ds.name)
        ));
    }
    s
}

/// The partitions the archive took whole and their parent (`<archive>_moved`,
/// runtime version 6) go with the archive, before the dataset's row.
fn drop_moved(ds: &Dataset) -> String {
    if ds.archive.is_none() {
        return String::new();
    }
    format!("SELECT retention.drop_moved({});\n", lit(&ds.name))
}

/// An adopted table removed from the policy: pgretain stops enforcing it
/// and takes its machinery away (settings, view, procedure, its triggers on
/// the table, the archive pgretain made), and leaves the table, still
/// partitioned, with every row.
fn release_dataset(ds: &Dataset) -> String {
    let mut s = format!(
        "-- {name}: removed from the policy (it was defined at {source}): pgretain stops enforcing\n-- the application's table {rel}, which stays as it is (partitioned, every row kept);\n-- its triggers, view and procedure go{archive}; `pgretain apply` removes its pg_cron job\n",
        name = ds.name,
        source = comment(&ds.source.to_string()),
        rel = relation(ds),
        archive = archive_relation(ds)
            .map(|a| format!(", and the archive {a} with its rows"))
            .unwrap_or_default(),
    );
    s.push_str(&drop_moved(ds));
    s.push_str(&format!(
        "DELETE FROM retention.dataset WHERE name = {};\n",
        lit(&ds.name)
    ));
    s.push_str(&format!(
        "DELETE FROM retention.keep_history WHERE dataset = {};\n",
        lit(&ds.name)
    ));
    s.push_str(&format!(
        "DROP VIEW IF EXISTS {};\n",
        names::expired_view(ds)
    ));
    s.push_str(&format!(
        "DROP PROCEDURE IF EXISTS {}(timestamptz);\n",
        procedure(ds)
    ));
    if let Some(a) = archive_relation(ds) {
        s.push_str(&format!("DROP TABLE IF EXISTS {a} CASCADE;\n"));
    }
    // CASCADE: the triggers on the table that call them go too.
    for t in Trigger::ALL {
        s.push_str(&format!(
            "DROP FUNCTION IF EXISTS {}() CASCADE;\n",
            t.function(&ds.name)
        ));
    }
    s
}
