//! Every name pgretain gives something in the database, decided once:
//! the dataset's relations (table, default partition, archive), its
//! procedure, the pg_cron job's name and command, the view of its expired
//! rows, its trigger functions and indexes, and the tables pgretain keeps
//! outside `runtime.sql` (refinery's history, the routine fingerprints).
//!
//! Everyone who needs a name asks here: the migrations (`render`), the
//! changes (`compile`), the queries (`db`) and the commands, so the report
//! prints the command the job runs and `verify` compares with the name
//! `apply` registered. The fixed objects of schema `retention` (its tables
//! and routines) are named by `runtime.sql` itself. Pure functions, no I/O.

use crate::hash::fnv1a64;
use crate::model::{Dataset, DEFAULT_PARTITION_SUFFIX};

use super::text::ident;

/// refinery's migration history table, unqualified (where version 1 of
/// pgretain let the search_path put it: `public`, normally).
pub const HISTORY_TABLE: &str = "pgretain_schema_history";

/// Where `apply` records the fingerprint of every routine of schema
/// `retention`, for `verify`.
pub const FINGERPRINT_TABLE: &str = "retention.fingerprint";

/// Name of the job that trims `cron.job_run_details`.
pub const TRIM_JOB: &str = "pgretain:trim-job-run-details";

/// The command of the job that trims pg_cron's run history: rows of
/// pgretain's jobs only, older than 30 days. Run as the jobs' role, which
/// pg_cron's row security limits to its own rows anyway.
pub const TRIM_COMMAND: &str = "SET LOCAL search_path = pg_catalog, pg_temp; \
     DELETE FROM cron.job_run_details d \
      WHERE d.end_time < now() - interval '30 days' \
        AND d.jobid IN (SELECT j.jobid FROM cron.job j WHERE starts_with(j.jobname::text, 'pgretain:'))";

/// The first key of every advisory lock pgretain takes (`hashtext` of it):
/// apply's, and each run's, whose second key is the dataset's name.
pub const LOCK_CLASS: &str = "pgretain";

/// The second key of the advisory lock `apply` holds for its whole run.
pub const APPLY_LOCK: &str = "pgretain apply";

/// `"schema"."table"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// The dataset's table, quoted: also the text stored in
/// `retention.dataset.relation`.
pub fn relation(ds: &Dataset) -> String {
    qualified(&ds.schema, &ds.table)
}

/// The quoted archive table, when the dataset archives.
pub fn archive_relation(ds: &Dataset) -> Option<String> {
    ds.archive.as_ref().map(|a| qualified(&a.schema, &ds.table))
}

/// The default partition of `schema.table` (the dataset's table, or its
/// archive): where rows outside every partition land.
pub fn default_partition(schema: &str, table: &str) -> String {
    qualified(schema, &format!("{table}{DEFAULT_PARTITION_SUFFIX}"))
}

/// The enforcement procedure the job calls.
pub fn procedure(ds: &Dataset) -> String {
    procedure_named(&ds.name)
}

/// The enforcement procedure of the dataset named `dataset`.
pub fn procedure_named(dataset: &str) -> String {
    format!("retention.{}", ident(&format!("enforce_{dataset}")))
}

/// The exact command stored in the dataset's pg_cron job.
pub fn job_command(ds: &Dataset) -> String {
    job_command_named(&ds.name)
}

/// The job command of the dataset named `dataset`: what the job runs, what
/// `pgretain run` runs, and what the report shows.
pub fn job_command_named(dataset: &str) -> String {
    format!("CALL {}()", procedure_named(dataset))
}

/// `pgretain:<database>:<dataset>`: the dataset's job, unique per data
/// database, so one cron database can serve several.
pub fn job_name(database: &str, dataset: &str) -> String {
    format!("{}{dataset}", job_prefix(database))
}

/// `pgretain:<database>:`: what the names of a data database's jobs start with.
pub fn job_prefix(database: &str) -> String {
    format!("pgretain:{database}:")
}

/// The view of a dataset's expired rows (a contract: SPEC §3).
pub fn expired_view(ds: &Dataset) -> String {
    expired_view_named(&ds.name)
}

/// The view of the expired rows of the dataset named `dataset`.
pub fn expired_view_named(dataset: &str) -> String {
    format!("retention.{}", ident(&format!("expired_{dataset}")))
}

/// The function behind the view of expired rows on Citus:
/// `retention."expired_rows_sessions"`.
pub fn expired_rows_function(ds: &Dataset) -> String {
    format!("retention.{}", ident(&format!("expired_rows_{}", ds.name)))
}

/// The triggers pgretain puts on a dataset's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Sensitive keys stripped on every write.
    StripSensitive,
    /// The retention in force stamped on insert (`changes_apply_to: new_rows`).
    StampKeep,
    /// The clock only moves forward (`sliding`).
    SlidingClock,
}

impl Trigger {
    /// Every trigger, in the order a table gets them.
    pub const ALL: [Trigger; 3] = [
        Trigger::StripSensitive,
        Trigger::StampKeep,
        Trigger::SlidingClock,
    ];

    fn suffix(self) -> &'static str {
        match self {
            Trigger::StripSensitive => "strip_sensitive",
            Trigger::StampKeep => "stamp_keep",
            Trigger::SlidingClock => "sliding_clock",
        }
    }

    /// The trigger's name on the table: `pgretain_strip_sensitive`.
    pub fn name(self) -> String {
        format!("pgretain_{}", self.suffix())
    }

    /// Its function, one per dataset: `retention."sessions_strip_sensitive"`.
    pub fn function(self, dataset: &str) -> String {
        format!(
            "retention.{}",
            ident(&format!("{dataset}_{}", self.suffix()))
        )
    }
}

/// `base` + `suffix`, within PostgreSQL's 63-byte identifier limit: longer
/// names are cut and made unique with a hash of the full name, so two long
/// names never collide by truncation.
pub fn object_name(base: &str, suffix: &str) -> String {
    let full = format!("{base}{suffix}");
    if full.len() <= 63 {
        return full;
    }
    let hash = fnv1a64(full.as_bytes());
    let keep = 63 - suffix.len() - 9;
    let cut: String = base.chars().take(keep).collect();
    format!("{cut}_{}{suffix}", &hash[..8])
}

/// The index of `table` (the dataset's, or its archive's: both keep the
/// table's name) on `columns`, unquoted: `sessions_bot_id_created_at_idx`.
pub fn index(table: &str, columns: &[&str]) -> String {
    object_name(&format!("{}_{}", table, columns.join("_")), "_idx")
}

/// The columns of each index pgretain gives a dataset's table: the clock,
/// (tenant, clock) with a tenant, and the erase_by column.
pub fn enforcement_indexes(ds: &Dataset) -> Vec<Vec<&str>> {
    let mut out = vec![vec![ds.time.as_str()]];
    if let Some(t) = &ds.tenant {
        out.push(vec![t.as_str(), ds.time.as_str()]);
    }
    if let Some(e) = &ds.erase_by {
        out.push(vec![e.as_str()]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_stay_unique_within_63_bytes() {
        let a = object_name(&"a".repeat(70), "_idx");
        let b = object_name(&format!("{}b", "a".repeat(69)), "_idx");
        assert!(a.len() <= 63 && b.len() <= 63);
        assert_ne!(a, b);
        assert_eq!(object_name("events_at", "_idx"), "events_at_idx");
    }

    #[test]
    fn jobs_and_views_are_named_for_their_dataset() {
        assert_eq!(job_name("app", "sessions"), "pgretain:app:sessions");
        assert_eq!(
            job_command_named("sessions"),
            "CALL retention.\"enforce_sessions\"()"
        );
        assert_eq!(
            expired_view_named("sessions"),
            "retention.\"expired_sessions\""
        );
        assert_eq!(
            Trigger::SlidingClock.function("sessions"),
            "retention.\"sessions_sliding_clock\""
        );
        assert_eq!(Trigger::StripSensitive.name(), "pgretain_strip_sensitive");
    }
}
